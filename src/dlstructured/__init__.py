"""dlstructured: Keras neural networks for structured (tabular) data.

Importing the package is cheap and does not import Keras: each public name is loaded on first use,
so a program can still choose its Keras backend (``KERAS_BACKEND``) after ``import dlstructured``.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys
from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("dlstructured")
except PackageNotFoundError:  # pragma: no cover - running from a source tree without install
    __version__ = "0+unknown"

# Public name -> module that defines it. Modules load on first attribute access.
_EXPORTS = {
    # errors (no Keras)
    "DLStructuredError": "errors",
    "DataError": "errors",
    "ModelFileError": "errors",
    "IncompatibleModelError": "errors",
    "CheckpointError": "errors",
    "RunError": "errors",
    "ColumnTypeError": "errors",
    "DataWarning": "errors",
    "ConstantColumnWarning": "errors",
    "IdentifierColumnWarning": "errors",
    "MissingTargetWarning": "errors",
    "ExtraColumnsWarning": "errors",
    "PlaceholderValuesWarning": "errors",
    "ExtremeValuesWarning": "errors",
    "SmallTrainingPartWarning": "errors",
    "ColumnNamesWarning": "errors",
    # what a run is made of (no Keras), and a whole run in one call
    "RunConfig": "config",
    "fit_table": "run",
    "resume_run": "run",
    "Run": "run",
    # task policy (no Keras until a loss or metric object is built)
    "TASKS": "tasks",
    "TaskPolicy": "tasks",
    # blocks and builders
    "dense_block": "models.blocks",
    "linear_unit": "models.builders",
    "dense_stack": "models.builders",
    "binary_classifier": "models.builders",
    "multiclass_classifier": "models.builders",
    "ensemble_mlp": "models.ensemble",
    # data preparation (numpy/pandas only, no Keras)
    "prepare": "data.prepare",
    "PreparedData": "data.prepare",
    "EmbeddingSpec": "data.prepare",
    "split_frame": "data.prepare",
    "read_table": "data.prepare",
    "TabularPreprocessor": "data.preprocessing",
    # trained model with its preprocessing
    "TabularModel": "tabular",
    "load_model": "tabular",
    # training
    "train": "training.loop",
    "EarlyStopping": "training.loop",
    "TrainingResult": "training.loop",
    "plot_history": "training.plotting",
    # checkpoints
    "load_checkpoint": "training.checkpoints",
    # hyperparameter search (needs the optional Optuna)
    "search": "tuning",
    "SearchResult": "tuning",
    # training across processes launched by Ray (needs the optional Ray)
    "fit_table_on_ray": "ray_launch",
}
# Public modules, loaded on first use: ``dlstructured.distributed.initialize(...)``.
_MODULES = ("distributed",)

__all__ = sorted([*_EXPORTS, *_MODULES, "__version__"])


def __getattr__(name: str):
    if name in _MODULES:
        return importlib.import_module(f"{__name__}.{name}")  # the import sets the attribute
    module_name = _EXPORTS.get(name)
    if module_name is None:
        raise AttributeError(f"module 'dlstructured' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module_name}"), name)
    globals()[name] = value  # cache: later lookups skip __getattr__
    return value


def _register_keras_classes() -> None:
    """Register every class dlstructured writes into model files, once Keras is imported.

    ``dlstructured.tabular`` registers ``TabularModel`` and imports ``dlstructured.models.layers``
    (``CategoryEmbedding``); nothing else of the library's appears in a model file.
    """
    if "keras" in sys.modules and f"{__name__}.tabular" not in sys.modules:
        importlib.import_module(f"{__name__}.tabular")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


class _RegisterWhenKerasLoads(importlib.abc.MetaPathFinder):
    """Registers dlstructured's Keras classes right after the program's own ``import keras``.

    It finds nothing itself: on the first import of ``keras`` it steps out of ``sys.meta_path``,
    lets the other finders locate Keras, and has the module register dlstructured's classes once
    it has run. The program's choice of backend is untouched (Keras reads ``KERAS_BACKEND`` when
    the program imports it, as always).
    """

    def find_spec(self, fullname, path=None, target=None):
        if fullname != "keras":
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec("keras")
        if spec is None or spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return spec
        run_keras = spec.loader.exec_module

        def exec_module(module):
            run_keras(module)
            _register_keras_classes()

        spec.loader.exec_module = exec_module
        return spec


# Saved models name registered classes (``dlstructured>TabularModel``, ``CategoryEmbedding``)
# that must exist before ``keras.saving.load_model`` reads a file. If Keras is already imported,
# register them now (it costs no backend choice); otherwise when the program imports Keras.
if "keras" in sys.modules:
    _register_keras_classes()
else:
    sys.meta_path.insert(0, _RegisterWhenKerasLoads())
