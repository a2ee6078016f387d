"""The package's public surface: names, version, lazy imports."""

from __future__ import annotations

import importlib.metadata
import os
import subprocess
import sys

import dlstructured

PUBLIC_NAMES = {
    "CheckpointError",
    "ColumnTypeError",
    "ConstantColumnWarning",
    "DLStructuredError",
    "DataError",
    "DataWarning",
    "EarlyStopping",
    "EmbeddingSpec",
    "ColumnNamesWarning",
    "ExtraColumnsWarning",
    "ExtremeValuesWarning",
    "IdentifierColumnWarning",
    "IncompatibleModelError",
    "MissingTargetWarning",
    "ModelFileError",
    "PlaceholderValuesWarning",
    "PreparedData",
    "Run",
    "RunConfig",
    "RunError",
    "SearchResult",
    "SmallTrainingPartWarning",
    "TASKS",
    "TabularModel",
    "TabularPreprocessor",
    "TaskPolicy",
    "TrainingResult",
    "__version__",
    "binary_classifier",
    "dense_block",
    "dense_stack",
    "distributed",
    "ensemble_mlp",
    "fit_table",
    "fit_table_on_ray",
    "linear_unit",
    "load_checkpoint",
    "load_model",
    "multiclass_classifier",
    "plot_history",
    "prepare",
    "read_table",
    "resume_run",
    "search",
    "split_frame",
    "train",
}


def test_public_names_are_pinned():
    # Equality, not a subset: a name added to (or dropped from) the public surface is a decision
    # this list records.
    assert set(dlstructured.__all__) == PUBLIC_NAMES
    assert len(dlstructured.__all__) == len(PUBLIC_NAMES)
    for name in dlstructured.__all__:
        assert getattr(dlstructured, name) is not None


def test_version_comes_from_package_metadata():
    assert dlstructured.__version__ == importlib.metadata.version("dlstructured")


def test_import_does_not_import_keras_until_a_name_needs_it():
    code = (
        "import sys, dlstructured\n"
        "assert 'keras' not in sys.modules, 'keras imported by import dlstructured'\n"
        "dlstructured.EarlyStopping\n"
        "assert 'keras' in sys.modules\n"
        "print('ok')\n"
    )
    env = {**os.environ, "KERAS_BACKEND": "jax"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"


def test_backend_can_be_chosen_after_import():
    code = (
        "import os, dlstructured\n"
        "os.environ['KERAS_BACKEND'] = 'jax'\n"
        "m = dlstructured.linear_unit(3)\n"
        "import keras\n"
        "print(keras.backend.backend())\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "KERAS_BACKEND"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "jax"


def test_unknown_attribute_raises_attribute_error():
    try:
        dlstructured.no_such_name  # noqa: B018
    except AttributeError as error:
        assert "no_such_name" in str(error)
    else:
        raise AssertionError("expected AttributeError")
