"""A trained network together with its preprocessing: raw rows in, labels or units out.

``TabularModel`` is a registered ``keras.Model`` that holds the network (``.network``) and
the fitted ``TabularPreprocessor`` (``.preprocessor``). It saves to one
``.keras`` file; the preprocessing lives in the file's configuration as plain data, so loading
(``load_model``, or ``keras.saving.load_model`` after ``import dlstructured``) keeps Keras's
safe mode on and runs no code from the file. All text handling happens in numpy/pandas before
the network, so the same file predicts identically on the TensorFlow and JAX backends.

Train the ``.network`` (``dlstructured.train`` does); never ``compile``/``fit`` a TabularModel
itself: its ``predict`` and ``evaluate`` take raw DataFrames, not Keras batches.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import keras
import numpy as np
import pandas as pd

from dlstructured import _io
from dlstructured._backend import saving_without_tensorflow
from dlstructured._checks import check_float, check_int
from dlstructured._safe_loading import check_config_is_safe, read_keras_config
from dlstructured._threadsafe import predict_on_batch
from dlstructured.data.preprocessing import (
    TabularPreprocessor,
    _names,
    _rows_with_target,
    check_format_version,
)
from dlstructured.errors import DataError, IncompatibleModelError, ModelFileError

# Registers every layer, loss and metric a model file can name (CategoryEmbedding, the ensemble's).
from dlstructured.models import ensemble_layers as _ensemble_layers  # noqa: F401
from dlstructured.models import layers as _layers  # noqa: F401

__all__ = ["TabularModel", "load_model"]

DEFAULT_BATCH_SIZE = 8192
# On JAX, batches of 2 or more rows are padded to 16, 32, 64 ... rows: few shapes to compile. A
# single row, the serving case, runs unpadded: 16 rows cost it 2-3 times the time.
_MIN_BUCKET = 16


def _as_frame(rows: Any) -> pd.DataFrame:
    """A DataFrame from a DataFrame, one row as a dict or Series, or a list of row dicts."""
    if isinstance(rows, pd.DataFrame):
        return rows
    if isinstance(rows, pd.Series):
        return rows.to_frame().T.infer_objects()
    if isinstance(rows, Mapping):
        values = list(rows.values())
        if all(np.ndim(v) == 0 for v in values):
            return pd.DataFrame([dict(rows)])
        return pd.DataFrame(dict(rows))
    if isinstance(rows, Sequence) and not isinstance(rows, (str, bytes)):
        if all(isinstance(row, Mapping) for row in rows):
            return pd.DataFrame(list(rows))
    raise TypeError(
        "The input must be a pandas DataFrame of raw rows (or one row as a dict, or a list of "
        f"row dicts). Received: {type(rows).__name__}"
    )


@keras.saving.register_keras_serializable(package="dlstructured")
class TabularModel(keras.Model):
    """A network and its preprocessing, predicting on raw rows.

    The builders return one when given prepared data (``dense_stack(data)``); ``call`` runs the
    network on prepared features, and ``predict``, ``predict_proba`` and
    [`evaluate`][dlstructured.tabular.TabularModel.evaluate] take raw DataFrames.

    Args:
        network: The Keras network, whose input is the preprocessor's feature matrix.
        preprocessor: The fitted ``TabularPreprocessor``.
        threshold: For binary tasks, the probability from which the positive label is
            predicted. Defaults to ``0.5``.
        **kwargs: Passed to ``keras.Model`` (e.g. ``name``).

    Raises:
        TypeError: If ``network`` is not a Keras model or ``preprocessor`` is not a fitted
            TabularPreprocessor.
        ValueError: If the network's input width does not match the preprocessor's features.

    Example:

    >>> import pandas as pd
    >>> from dlstructured import prepare, dense_stack
    >>> frame = pd.DataFrame({"x": [0.0, 1.0, 2.0, 3.0], "y": [1.0, 3.0, 5.0, 7.0]})
    >>> model = dense_stack(prepare(frame, "y", valid_fraction=0), hidden_units=(4,), seed=0)
    >>> model.predict(frame).shape
    (4,)
    """

    def __init__(self, network: Any, preprocessor: Any, threshold: float = 0.5, **kwargs):
        kwargs.setdefault("name", "tabular_model")
        super().__init__(**kwargs)
        if not isinstance(network, keras.Model):
            raise TypeError(
                f"`network` must be a Keras model. Received: network of type "
                f"{type(network).__name__}"
            )
        if not isinstance(preprocessor, TabularPreprocessor) or not preprocessor.fitted:
            raise TypeError(
                "`preprocessor` must be a fitted TabularPreprocessor (from `prepare(...)`). "
                f"Received: {preprocessor!r}"
            )
        width = network.input_shape[-1] if not isinstance(network.input_shape, list) else None
        if width is not None and width != preprocessor.num_features:
            raise ValueError(
                f"The network takes {width} input features but the preprocessing produces "
                f"{preprocessor.num_features}. Build the network from the same prepared data."
            )
        if preprocessor._state["task"] is None:
            raise ValueError(
                "`preprocessor` was fitted without a target; a TabularModel needs one to map "
                "predictions back to labels or units."
            )
        self.network = network
        self.preprocessor = preprocessor
        self._threshold = 0.5
        self.threshold = threshold
        self._predict_function = None
        self.built = True

    # -- properties ---------------------------------------------------------------------------

    @property
    def task(self) -> str:
        """``"regression"``, ``"binary"`` or ``"multiclass"``."""
        return self.preprocessor._state["task"]

    @property
    def target(self) -> Any:
        """Name of the target column."""
        return self.preprocessor.target

    @property
    def classes(self) -> list[Any] | None:
        """Class labels, in the order of `predict_proba` columns (`None` for regression)."""
        return self.preprocessor.classes

    @property
    def threshold(self) -> float:
        """Binary decision threshold: the positive label is predicted when its probability is at
        least this. Saved with the model."""
        return self._threshold

    @threshold.setter
    def threshold(self, value: float) -> None:
        self._threshold = check_float("threshold", value, minimum=0.0, maximum=1.0)

    # -- Keras plumbing -----------------------------------------------------------------------

    def call(self, inputs, training=False):
        return self.network(inputs, training=training)

    def compile(self, *args, **kwargs):
        raise TypeError(
            "Do not compile a TabularModel: train its network instead, with "
            "`dlstructured.train(model, data)` or `model.network.compile(...)` and "
            "`model.network.fit(data.x_train, data.y_train)`."
        )

    def get_config(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "network": keras.saving.serialize_keras_object(self.network),
            "preprocessor": self.preprocessor.get_config(),
            "threshold": self._threshold,
        }

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> TabularModel:
        preprocessor_config = config.get("preprocessor") or {}
        check_format_version(preprocessor_config.get("format_version"))
        network = keras.saving.deserialize_keras_object(config["network"])
        preprocessor = TabularPreprocessor.from_config(preprocessor_config)
        return cls(
            network,
            preprocessor,
            threshold=config.get("threshold", 0.5),
            name=config.get("name", "tabular_model"),
        )

    # -- prediction ---------------------------------------------------------------------------

    def _forward(self, features: np.ndarray, batch_size: int) -> np.ndarray:
        """Network outputs for a float32 feature matrix, in batches, as a numpy array.

        ``predict_on_batch`` runs Keras's compiled predict step (a ``jax.jit`` or a
        ``tf.function``), several times faster than calling the network eagerly. On JAX, where
        every new batch shape compiles again, short batches are padded to a power of two (at
        least 16 rows; one row alone is not padded).
        """
        rows, width = features.shape
        units = self.network.output_shape[-1]
        if rows == 0:
            return np.zeros((0, units), np.float32)
        pad = keras.backend.backend() == "jax"
        outputs = []
        for start in range(0, rows, batch_size):
            batch = features[start : start + batch_size]
            count = len(batch)
            if pad and 1 < count < batch_size:
                bucket = min(batch_size, max(_MIN_BUCKET, 1 << (count - 1).bit_length()))
                if bucket > count:
                    filler = np.zeros((bucket - count, width), np.float32)
                    batch = np.concatenate([batch, filler])
            # Keras's predict_on_batch is not thread-safe on JAX: a per-model lock makes it so.
            outputs.append(predict_on_batch(self.network, batch)[:count])
        result = outputs[0] if len(outputs) == 1 else np.concatenate(outputs)
        if result.ndim == 3:  # an ensemble's members (ensemble_mlp): predict their mean
            result = result.mean(axis=1)
        return np.asarray(result, dtype=np.float32).reshape(rows, units)

    def _outputs(self, rows: Any, batch_size: Any) -> tuple[pd.DataFrame, np.ndarray]:
        batch_size = check_int("batch_size", batch_size, minimum=1)
        frame = _as_frame(rows)
        features = self.preprocessor.transform(frame)
        return frame, self._forward(features, batch_size)

    def _decode(self, outputs: np.ndarray) -> np.ndarray:
        if self.task == "regression":
            return self.preprocessor.inverse_transform_target(outputs[:, 0])
        if self.task == "binary":
            codes = (outputs[:, 0] >= self._threshold).astype(np.int64)
        else:
            codes = np.argmax(outputs, axis=1)
        return self.preprocessor.inverse_transform_target(codes)

    def predict(
        self, x: Any, batch_size: int = DEFAULT_BATCH_SIZE, verbose: Any = "auto"
    ) -> np.ndarray:
        """Predict on raw rows: labels for classifiers, the target's units for regression.

        Args:
            x: Raw rows: a DataFrame with the training columns in any order (extra columns are
                ignored with a warning), one row as a dict, or a list of row dicts.
            batch_size: Rows per network call. Defaults to ``8192``.
            verbose: Accepted for compatibility with ``keras.Model.predict``; nothing is
                printed. Defaults to ``"auto"``.

        Returns:
            A numpy array with one prediction per row: float64 in the target's units
            (regression) or the original labels (classification; binary uses
            [`threshold`][dlstructured.tabular.TabularModel.threshold]).

        Raises:
            TypeError: If ``x`` is not a DataFrame of raw rows.
            DataError: If training columns are missing (all are listed), a column's kind
                changed, or values are infinite.
        """
        _, outputs = self._outputs(x, batch_size)
        return self._decode(outputs)

    def predict_proba(self, x: Any, batch_size: int = DEFAULT_BATCH_SIZE) -> pd.DataFrame:
        """Class probabilities for raw rows (classifiers only).

        Args:
            x: Raw rows, as for [`predict`][dlstructured.tabular.TabularModel.predict].
            batch_size: Rows per network call. Defaults to ``8192``.

        Returns:
            A DataFrame with the input's index and one column per class label (for binary
            tasks: the negative label, then the positive one).

        Raises:
            TypeError: If the model is a regression model, or ``x`` is not raw rows.
            DataError: As for [`predict`][dlstructured.tabular.TabularModel.predict].
        """
        if self.task == "regression":
            raise TypeError(
                "`predict_proba` applies to classifiers; this model is a regression model. "
                "Use `predict`."
            )
        frame, outputs = self._outputs(x, batch_size)
        if self.task == "binary":
            positive = outputs[:, 0].astype(np.float64)
            probabilities = np.stack([1.0 - positive, positive], axis=1)
        else:
            probabilities = outputs.astype(np.float64)
        return pd.DataFrame(probabilities, index=frame.index, columns=self.classes)

    def evaluate(
        self, x: Any, batch_size: int = DEFAULT_BATCH_SIZE, verbose: Any = "auto"
    ) -> dict[str, float]:
        """Metrics on labelled raw rows, in the target's original units.

        Rows whose target is missing are left out with a warning.

        Args:
            x: Raw rows including the target column.
            batch_size: Rows per network call. Defaults to ``8192``.
            verbose: Accepted for compatibility with ``keras.Model.evaluate``; nothing is
                printed. Defaults to ``"auto"``.

        Returns:
            Regression: ``{"mae", "mse", "rmse"}``; binary: ``{"accuracy", "auc", "log_loss"}``
            (``auc`` is NaN when only one class is present); multiclass:
            ``{"accuracy", "log_loss"}``. All plain floats.

        Raises:
            DataError: If the target column is missing or holds labels the model does not know,
                or for the reasons of [`predict`][dlstructured.tabular.TabularModel.predict].
        """
        frame = _as_frame(x)
        target = self.target
        if target not in frame.columns:
            raise DataError(
                f"`evaluate` needs the target column {target!r} in the input. Add it, or use "
                "`predict` for unlabelled rows."
            )
        rows = _rows_with_target(frame, target)
        if rows is not None:
            frame = frame.iloc[rows]
        truth = self.preprocessor.transform_target(frame[target])
        _, outputs = self._outputs(frame, batch_size)
        return _metrics(self.task, truth, outputs, self)

    def feature_importance(
        self,
        frame: pd.DataFrame,
        y: Any = None,
        *,
        n_repeats: int = 5,
        random_state: Any = None,
        metric: str | None = None,
    ) -> pd.DataFrame:
        """Permutation importance of each raw column, on held-out rows, in the task's metric.

        See [`feature_importance`][dlstructured.explain.feature_importance] for the arguments,
        the result (a DataFrame of ``importance_mean`` and ``importance_std`` per column, most
        important first) and the errors.
        """
        from dlstructured.explain import feature_importance

        return feature_importance(self, frame, y, n_repeats=n_repeats,
                                  random_state=random_state, metric=metric)

    def save(self, filepath: str | os.PathLike, overwrite: bool = True, **kwargs) -> None:
        """Save to one ``.keras`` file, atomically: a crash never leaves a broken file.

        The file holds the network's weights and configuration and the whole preprocessing.

        Args:
            filepath: Path ending in ``.keras``.
            overwrite: Replace an existing file. Defaults to ``True``.
            **kwargs: Passed to ``keras.Model.save``.

        Raises:
            ValueError: If the path does not end in ``.keras``.
            FileExistsError: If the file exists and ``overwrite=False``.
            FileNotFoundError: If the folder to save in does not exist (the message names it).
        """
        path = Path(os.fspath(filepath))
        if path.suffix != ".keras":
            raise ValueError(
                f"`filepath` must end in .keras (one file with the network and the "
                f"preprocessing). Received: filepath={str(path)!r}"
            )
        if path.exists() and not overwrite:
            raise FileExistsError(f"{str(path)!r} exists and overwrite=False.")
        with _io.atomic_path(path) as temporary, saving_without_tensorflow():
            super().save(temporary, overwrite=True, **kwargs)

    def __repr__(self) -> str:
        return (
            f"<TabularModel name={self.name!r} task={self.task!r} target={self.target!r} "
            f"features={self.preprocessor.num_features}>"
        )


def _metrics(task: str, truth: np.ndarray, outputs: np.ndarray, model: TabularModel) -> dict:
    eps = 1e-7
    if task == "regression":
        predicted = model.preprocessor.inverse_transform_target(outputs[:, 0])
        actual = model.preprocessor.inverse_transform_target(truth)
        error = predicted - actual
        mse = float(np.mean(error**2))
        return {"mae": float(np.mean(np.abs(error))), "mse": mse, "rmse": float(np.sqrt(mse))}
    if task == "binary":
        probability = np.clip(outputs[:, 0].astype(np.float64), eps, 1 - eps)
        predicted = (outputs[:, 0] >= model.threshold).astype(np.float32)
        loss = -np.mean(truth * np.log(probability) + (1 - truth) * np.log(1 - probability))
        return {
            "accuracy": float(np.mean(predicted == truth)),
            "auc": _auc(truth, probability),
            "log_loss": float(loss),
        }
    probability = np.clip(outputs.astype(np.float64), eps, 1.0)
    chosen = probability[np.arange(len(truth)), truth]
    return {
        "accuracy": float(np.mean(np.argmax(outputs, axis=1) == truth)),
        "log_loss": float(-np.mean(np.log(chosen))),
    }


def _auc(truth: np.ndarray, score: np.ndarray) -> float:
    """Area under the ROC curve by the rank-sum formula (ties count half)."""
    positives = truth == 1
    count_positive = int(positives.sum())
    count_negative = len(truth) - count_positive
    if count_positive == 0 or count_negative == 0:
        return float("nan")
    ranks = pd.Series(score).rank(method="average").to_numpy()
    rank_sum = ranks[positives].sum()
    return float(
        (rank_sum - count_positive * (count_positive + 1) / 2) / (count_positive * count_negative)
    )


_MAX_CAUSE_CHARS = 300


def _unregistered_classes(config: Any) -> list[str]:
    """Registered names of dlstructured classes in a model configuration that Keras cannot find."""
    found = []
    stack = [config]
    while stack:
        item = stack.pop()
        if isinstance(item, list):
            stack.extend(item)
        elif isinstance(item, dict):
            name = item.get("registered_name")
            if (
                isinstance(name, str)
                and name.startswith("dlstructured>")
                and keras.saving.get_registered_object(name) is None
                and name not in found
            ):
                found.append(name)
            stack.extend(item.values())
    return found


def _load_failure(path: Path, config: Any, error: BaseException) -> str:
    """A short message for a model file Keras could not rebuild: the file and what is missing.

    Keras's own message repeats the whole configuration (thousands of characters); only its first
    line is kept, cut to a few hundred characters.
    """
    missing = _unregistered_classes(config)
    if missing:
        return (
            f"Could not load the model file {str(path)!r}: it uses {_names(missing)}, which this "
            f"dlstructured ({_version()}) does not define. Load it with the dlstructured release "
            "that wrote it."
        )
    cause = str(error).strip().splitlines()[0] if str(error).strip() else ""
    if len(cause) > _MAX_CAUSE_CHARS:
        cause = cause[:_MAX_CAUSE_CHARS].rstrip() + " ..."
    return f"Could not load the model file {str(path)!r}: {type(error).__name__}: {cause}"


def _version() -> str:
    from dlstructured import __version__

    return __version__


def load_model(path: str | os.PathLike) -> Any:
    """Load a model saved by ``TabularModel.save`` (or a plain Keras ``.keras`` model).

    Keras's safe mode stays on: loading rebuilds registered objects from configuration and never
    runs code from the file.

    Args:
        path: The ``.keras`` file.

    Returns:
        The ``TabularModel``, or the plain Keras model as it was saved.

    Raises:
        TypeError: If ``path`` is not a string or path.
        ModelFileError: If the file is missing, empty, truncated, not a model, or holds a
            custom model class that is neither dlstructured's nor Keras's own.
        IncompatibleModelError: If the file was written by an incompatible dlstructured format
            version (the message names both versions).
    """
    # Present, not empty, a zip archive whose checksums hold, with a JSON configuration.
    config = read_keras_config(path)
    path = Path(path)
    registered = str(config.get("registered_name") or "")
    module = str(config.get("module") or "")
    ours = registered.startswith("dlstructured>")
    if not ours and not module.startswith("keras"):
        raise ModelFileError(
            f"{str(path)!r} holds a {registered or config.get('class_name')!r} object from module "
            f"{module!r}, which is neither a dlstructured model nor a plain Keras model; "
            "dlstructured does not load it. Use `keras.saving.load_model` with its own package."
        )
    check_config_is_safe(config, path)  # no Lambda layer, no code from other packages
    if ours:
        inner = (config.get("config") or {}).get("preprocessor") or {}
        check_format_version(inner.get("format_version"), f"The model file {str(path)!r}")
    try:
        model = keras.saving.load_model(path, safe_mode=True)
    except Exception as error:  # noqa: BLE001 - re-raised as ModelFileError with the cause
        cause = error
        while cause is not None:
            if isinstance(cause, IncompatibleModelError):
                raise cause from error
            cause = cause.__cause__ or cause.__context__
        raise ModelFileError(_load_failure(path, config, error)) from error
    if not isinstance(model, keras.Model):
        raise ModelFileError(f"{str(path)!r} holds a {type(model).__name__}, not a model.")
    return model
