"""The shared training wrapper: one ``train`` call for every model the builders make.

``train`` compiles with Adam and the loss of the task (mean absolute error for regression, binary
cross-entropy for binary classification, sparse categorical cross-entropy for multiclass), runs
the fastest engine for the active Keras backend, watches for divergence, stops early, restores
the best weights and returns a ``TrainingResult`` of plain data.
"""

from __future__ import annotations

import math
import os
import time
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import keras
import numpy as np
import pandas as pd

from dlstructured._checks import (
    check_bool,
    check_choice,
    check_float,
    check_int,
    check_optional_seed,
)
from dlstructured.errors import CheckpointError
from dlstructured.tasks import (
    TaskPolicy,
    as_loss_object,
    as_metric_objects,
    get_task,
    monitor_mode,
    task_from_activation,
)
from dlstructured.training import checkpoints
from dlstructured.training.contract import ArraySource, BatchSource, Engine, FitSpec
from dlstructured.training.progress import EpochProgress
from dlstructured.training.state import TrainingState, restore_weights, snapshot_weights

ENGINES = ("auto", "keras", "jax")
DIVERGENCE_ADVICE = (
    "scale the inputs (prepare() does it), batch-normalize the inputs "
    "(input_batch_norm=True), or lower the learning rate"
)


class TrainingDivergedWarning(UserWarning):
    """Training stopped because the loss became NaN or infinite."""


class TrainingInterruptedWarning(UserWarning):
    """Training was interrupted (Ctrl-C) and returned the result so far."""


@dataclass(frozen=True)
class EarlyStopping:
    """Early stopping settings: stop when the monitored quantity stops improving.

    Args:
        patience: Epochs without an improvement of at least ``min_delta`` before stopping.
            Defaults to ``20``.
        min_delta: Smallest change that counts as an improvement. Defaults to ``0.001``.
        monitor: Quantity to watch, such as ``"val_loss"`` or ``"val_auc"``. Defaults to
            ``None``: ``"val_loss"`` when there is validation data, else ``"loss"``.
        restore_best_weights: Put back the weights of the best epoch when training ends.
            Defaults to ``True``.
        review_epochs: Epochs (from 1, increasing) at which training also stops when nothing
            improved since the one before: at each of them after the first, if the best epoch
            so far is that earlier one or before it. With a schedule of warm restarts these are
            the ends of its cycles, so a run stops after a whole cycle that found nothing
            better. ``patience`` still applies. Defaults to ``()`` (none).

    Raises:
        TypeError: If an argument has the wrong type.
        ValueError: If ``patience`` is below 1, ``min_delta`` is negative, or
            ``review_epochs`` are not increasing epochs from 1.

    Example:

    >>> from dlstructured import EarlyStopping
    >>> EarlyStopping(patience=10, min_delta=0.0)
    EarlyStopping(patience=10, min_delta=0.0, monitor=None, restore_best_weights=True, \
review_epochs=())
    """

    patience: int = 20
    min_delta: float = 0.001
    monitor: str | None = None
    restore_best_weights: bool = True
    review_epochs: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        check_int("patience", self.patience, minimum=1)
        check_float("min_delta", self.min_delta, minimum=0.0)
        if not isinstance(self.review_epochs, (tuple, list)):
            raise TypeError(
                "`review_epochs` must be a tuple of epochs. Received: "
                f"review_epochs={self.review_epochs!r}"
            )
        epochs = [check_int("review_epochs", epoch, minimum=1) for epoch in self.review_epochs]
        if any(later <= earlier for earlier, later in zip(epochs[:-1], epochs[1:], strict=True)):
            raise ValueError(
                "`review_epochs` must increase. Received: "
                f"review_epochs={tuple(self.review_epochs)!r}"
            )
        object.__setattr__(self, "review_epochs", tuple(epochs))
        if self.monitor is not None and not isinstance(self.monitor, str):
            raise TypeError(
                f"`monitor` must be a string or None. Received: monitor={self.monitor!r}"
            )
        check_bool("restore_best_weights", self.restore_best_weights)


def _resolve_early_stopping(value: Any) -> EarlyStopping | None:
    if isinstance(value, EarlyStopping):
        return value
    if value is None or value is False:
        return None
    if value is True:
        return EarlyStopping()
    if isinstance(value, int) and not isinstance(value, bool):
        if value == 0:
            return None
        return EarlyStopping(patience=check_int("early_stopping", value, minimum=0))
    raise TypeError(
        "`early_stopping` must be True, False, a patience (int, 0 turns it off) or an "
        f"EarlyStopping(...). Received: early_stopping={value!r}"
    )


@dataclass
class TrainingResult:
    """What ``train`` returns: the trained model and plain data about the run.

    Attributes:
        model: The model passed to ``train``, trained in place (best weights restored when early
            stopping asks for it).
        history: One row per epoch (index ``epoch``, from 1), columns ``loss``, each metric,
            ``val_loss`` and ``val_`` + each metric. Regression quantities are in the target's
            original units when the data was prepared with a scaled target.
        task: ``"regression"``, ``"binary"`` or ``"multiclass"``.
        monitor: The quantity used to pick the best epoch.
        best_epoch: Epoch (from 1) with the best ``monitor`` value, or ``None`` if none finished.
        best_metrics: The history row of the best epoch, as a dict of floats.
        final_metrics: The history row of the last epoch, as a dict of floats.
        epochs_run: Number of epochs completed.
        wall_time: Seconds spent in ``train``, preparation included.
        fit_time: Seconds spent in the training loop.
        stopped_early: Whether early stopping ended the run.
        diverged: Whether the loss became NaN or infinite.
        diverged_epoch: The epoch (from 1) where it did, else ``None``.
        interrupted: Whether Ctrl-C ended the run.
        interrupted_epoch: The epoch (from 1) during which it did, else ``None``.
        engine: The training engine that ran (``"jax"`` or ``"keras"``).
    """

    model: Any
    history: pd.DataFrame
    task: str
    monitor: str
    best_epoch: int | None
    best_metrics: dict[str, float]
    final_metrics: dict[str, float]
    epochs_run: int
    wall_time: float
    fit_time: float
    stopped_early: bool = False
    diverged: bool = False
    diverged_epoch: int | None = None
    interrupted: bool = False
    interrupted_epoch: int | None = None
    engine: str = "keras"
    extra: dict[str, Any] = field(default_factory=dict, repr=False)

    def plot(self, *, title: str | None = None):
        """Draw the learning curves: loss, and accuracy for classifiers.

        Args:
            title: Title of the figure. Defaults to ``None`` (no title).

        Returns:
            A ``matplotlib.figure.Figure`` (not shown; save it with ``fig.savefig(path)``).

        Example:

        >>> fig = result.plot()  # doctest: +SKIP
        >>> fig.savefig("curves.png")  # doctest: +SKIP
        """
        from dlstructured.training.plotting import plot_history

        return plot_history(self.history, task=self.task, title=title, best_epoch=self.best_epoch)


# --------------------------------------------------------------------------------------------
# Callbacks shared by every engine


class _Monitor(keras.callbacks.Callback):
    """Records each epoch, stops on divergence, stops early and keeps the best weights.

    Its progress is ``state``, a ``TrainingState`` (what checkpoints write and resume from).
    """

    def __init__(self, monitor: str, mode: str, early_stopping: EarlyStopping | None,
                 seed: int | None = None):
        super().__init__()
        self.monitor = monitor
        self.mode = mode
        self.early_stopping = early_stopping
        self.state = TrainingState(seed=seed)
        self.diverged_epoch: int | None = None
        self.current_epoch = 0

    def resume_from(self, state: TrainingState) -> None:
        """Continue from a saved ``TrainingState`` (its epochs count as completed)."""
        self.state = state
        self.current_epoch = state.epoch

    def on_epoch_begin(self, epoch, logs=None):
        self.current_epoch = epoch + 1

    def _improved(self, value: float) -> bool:
        if self.state.best is None:
            return True
        delta = self.early_stopping.min_delta if self.early_stopping else 0.0
        if self.mode == "min":
            return value < self.state.best - delta
        return value > self.state.best + delta

    def on_epoch_end(self, epoch, logs=None):
        state = self.state
        logs = {name: float(value) for name, value in (logs or {}).items()}
        state.rows.append(logs)
        state.epoch = epoch + 1
        if not all(math.isfinite(logs.get(name, 0.0)) for name in ("loss", "val_loss")):
            self.diverged_epoch = epoch + 1
            self.model.stop_training = True
            return
        value = logs.get(self.monitor)
        if value is None:
            available = ", ".join(sorted(logs)) or "none"
            raise ValueError(
                f"Early stopping monitors {self.monitor!r}, which training does not report. "
                f"Pick one of: {available}. Received: monitor={self.monitor!r}"
            )
        if self._improved(value):
            state.best, state.best_epoch, state.wait = value, epoch + 1, 0
            state.best_weights = snapshot_weights(self.model.weights)
            return
        state.wait += 1
        if self.early_stopping is not None and (
            state.wait >= self.early_stopping.patience or self._reviewed_in_vain(epoch + 1)
        ):
            state.stopped_early = True
            self.model.stop_training = True

    def _reviewed_in_vain(self, epoch: int) -> bool:
        """Whether ``epoch`` is a review epoch and nothing improved since the previous one."""
        reviews = self.early_stopping.review_epochs
        if epoch not in reviews[1:]:
            return False
        previous = reviews[reviews.index(epoch) - 1]
        return self.state.best_epoch is not None and self.state.best_epoch <= previous


# --------------------------------------------------------------------------------------------
# Input handling


def _is_prepared(x: Any) -> bool:
    return hasattr(x, "x_train") and hasattr(x, "y_train") and hasattr(x, "preprocessor")


def _as_features(name: str, value: Any) -> np.ndarray:
    if isinstance(value, pd.DataFrame):
        non_numeric = [c for c in value.columns if not pd.api.types.is_numeric_dtype(value[c])]
        if non_numeric:
            raise TypeError(
                f"`{name}` has non-numeric columns {non_numeric}: encode them first, or pass the "
                "frame to `dlstructured.prepare(frame, target=...)` and train on its result."
            )
        value = value.to_numpy(dtype="float32")
    elif isinstance(value, pd.Series):
        value = value.to_numpy(dtype="float32").reshape(-1, 1)
    try:
        array = np.asarray(value, dtype="float32")
    except (TypeError, ValueError) as error:
        raise TypeError(
            f"`{name}` must be a numeric numpy array or pandas DataFrame. "
            f"Received: {type(value).__name__}"
        ) from error
    if array.ndim == 1:
        array = array.reshape(-1, 1)
    if array.ndim != 2:
        raise ValueError(
            f"`{name}` must be 2-dimensional (rows, features). Received shape {array.shape}"
        )
    if array.shape[0] == 0:
        raise ValueError(f"`{name}` has no rows. Received shape {array.shape}")
    if not np.isfinite(array).all():
        raise ValueError(
            f"`{name}` contains NaN or infinite values: impute or drop them, or use "
            "`dlstructured.prepare`, which imputes and flags missing values."
        )
    return np.ascontiguousarray(array)


def _as_targets(
    name: str, value: Any, task: str, num_rows: int, num_classes: int | None = None
) -> np.ndarray:
    if value is None:
        raise ValueError(f"`{name}` is required when training on arrays. Received: {name}=None")
    if isinstance(value, (pd.Series, pd.DataFrame)):
        value = value.to_numpy()
    array = np.asarray(value)
    if array.ndim == 2 and array.shape[1] == 1:
        array = array[:, 0]
    if array.ndim != 1:
        raise ValueError(f"`{name}` must be one value per row. Received shape {array.shape}")
    if len(array) != num_rows:
        raise ValueError(
            f"`{name}` has {len(array)} rows but the features have {num_rows}: they must match."
        )
    if not np.issubdtype(array.dtype, np.number) and array.dtype != bool:
        raise TypeError(
            f"`{name}` must be numeric (0/1 for binary, class codes for multiclass). Received "
            f"dtype {array.dtype}. Use `dlstructured.prepare` to map labels such as 'good'/'bad'."
        )
    if task == "multiclass":
        return _as_class_codes(name, array, num_classes)
    array = array.astype("float32")
    if not np.isfinite(array).all():
        raise ValueError(f"`{name}` contains NaN or infinite values.")
    if task == "binary" and not np.isin(array, (0.0, 1.0)).all():
        raise ValueError(
            f"`{name}` must hold 0/1 labels for a binary task. Received values "
            f"{np.unique(array)[:5].tolist()}. Map labels with `dlstructured.prepare`."
        )
    return array


def _as_class_codes(name: str, array: np.ndarray, num_classes: int | None) -> np.ndarray:
    """Class codes 0 .. num_classes - 1 as int32; anything else names the fix."""
    numbers = array.astype("float64")
    if not (np.isfinite(numbers).all() and (numbers == np.round(numbers)).all()
            and numbers.min() >= 0):
        raise ValueError(
            f"`{name}` must hold class codes 0, 1, 2, ... for a multiclass task. Received values "
            f"{np.unique(numbers)[:5].tolist()}. Map labels with `dlstructured.prepare`, or pass "
            "task='regression' for a numeric target."
        )
    largest = int(numbers.max())
    if num_classes is not None and largest >= num_classes:
        raise ValueError(
            f"`{name}` holds class code {largest}, but the model has {num_classes} output "
            f"unit(s), one per class. Build it with num_classes={largest + 1} (or more), or "
            "check `task`."
        )
    return array.astype("int32")


def _output_units(network: Any) -> int | None:
    """The width of a built model's single output, else ``None``."""
    outputs = getattr(network, "outputs", None)
    if not outputs or len(outputs) != 1:
        return None
    width = outputs[0].shape[-1]
    return int(width) if width is not None else None


def _as_weights(name: str, value: Any) -> np.ndarray:
    try:
        return np.asarray(value, dtype="float32").reshape(-1)
    except (TypeError, ValueError) as error:
        raise TypeError(
            f"`{name}` must be numbers, one weight per row. Received: {name}={value!r:.80}"
        ) from error


def _infer_task(network: Any) -> str:
    layer = network.layers[-1]
    activation = getattr(layer, "activation", None)
    name = getattr(activation, "__name__", "linear") if activation is not None else "linear"
    return task_from_activation(name)


def _class_weights_to_samples(class_weight: Any, y: np.ndarray, task: str) -> np.ndarray:
    if task == "regression":
        raise ValueError(
            "`class_weight` only applies to classification. Use `sample_weight` for regression."
        )
    labels = y.astype("int64")
    classes, counts = np.unique(labels, return_counts=True)
    if isinstance(class_weight, str):
        check_choice("class_weight", class_weight, ("balanced",))
        weights = {
            int(c): len(labels) / (len(classes) * n) for c, n in zip(classes, counts, strict=True)
        }
    elif isinstance(class_weight, Mapping):
        weights = {
            int(k): check_float(f"class_weight[{k!r}]", v, minimum=0.0)
            for k, v in class_weight.items()
        }
        missing = sorted(set(classes.tolist()) - set(weights))
        if missing:
            raise ValueError(
                f"`class_weight` has no weight for classes {missing}. Received: "
                f"class_weight={dict(class_weight)!r}"
            )
    else:
        raise TypeError(
            "`class_weight` must be a dict {class: weight} or 'balanced'. "
            f"Received: class_weight={class_weight!r}"
        )
    lookup = np.zeros(int(classes.max()) + 1, dtype="float32")
    for c, w in weights.items():
        if 0 <= c < len(lookup):
            lookup[c] = w
    return lookup[labels]


def _split_rows(num_rows: int, fraction: float, seed: int | None):
    if num_rows < 2:
        raise ValueError(
            f"`valid_fraction` needs at least 2 rows to split; the data has {num_rows}."
        )
    from dlstructured.data.split import split_positions

    return split_positions(num_rows, fraction, method="permutation", seed=seed)


def _learning_rate(schedule: Any, learning_rate: float, epochs: int, rows: int, batch_size: int):
    """The optimizer's learning rate: ``learning_rate``, or a schedule over the whole run."""
    if schedule is None:
        return learning_rate
    if isinstance(schedule, keras.optimizers.schedules.LearningRateSchedule):
        return schedule
    if schedule == "log_cosine":
        from dlstructured.models.ensemble_layers import LogCosineRestarts

        steps = epochs * -(-rows // min(batch_size, rows))
        return LogCosineRestarts(learning_rate, total_steps=steps)
    raise ValueError(
        "`learning_rate_schedule` must be None, 'log_cosine' or a "
        "keras.optimizers.schedules.LearningRateSchedule. Received: "
        f"learning_rate_schedule={schedule!r}"
    )


def _loss_and_metrics(network: Any, policy: TaskPolicy, loss: Any, metrics: list, smoothing: Any):
    """The loss and metrics ``train`` compiles with: the task's or the caller's, with label
    smoothing, and for an ensemble (members on an output axis) the members' mean loss and
    metrics of their mean prediction."""
    from dlstructured.models import ensemble_layers

    smoothing = check_float("label_smoothing", smoothing, minimum=0.0, maximum=1.0,
                            max_inclusive=False)
    if smoothing and (policy.name == "regression" or loss is not None):
        raise ValueError(
            "`label_smoothing` applies to classification with the task's loss. Received: "
            f"label_smoothing={smoothing} with task={policy.name!r}"
            + ("" if loss is None else f" and loss={loss!r}")
        )
    ensemble = ensemble_layers.has_member_axis(network)
    if not ensemble and not smoothing:
        return (policy.make_loss() if loss is None else as_loss_object(loss)), metrics
    name = policy.loss if loss is None else loss
    name = {"mean_absolute_error": "mae", "mean_squared_error": "mse"}.get(name, name)
    if not isinstance(name, str) or name not in ensemble_layers.MEMBER_LOSSES:
        valid = ", ".join(repr(n) for n in ensemble_layers.MEMBER_LOSSES)
        raise ValueError(
            f"An ensemble model trains with one of the losses {valid}. Received: loss={loss!r}"
        )
    loss_object = ensemble_layers.MemberMeanLoss(name, label_smoothing=smoothing, name="loss")
    if ensemble:
        metrics = [ensemble_layers.MemberMeanMetric(metric) for metric in metrics]
    return loss_object, metrics


def _make_optimizer(optimizer: Any, learning_rate: Any, beta_2: float = 0.999) -> Any:
    if optimizer is None:
        if beta_2 == 0.999:
            return keras.optimizers.Adam(learning_rate=learning_rate)
        beta_2 = check_float("adam_beta_2", beta_2, minimum=0.0, maximum=1.0,
                             max_inclusive=False)
        return keras.optimizers.Adam(learning_rate=learning_rate, beta_2=beta_2)
    if isinstance(optimizer, str):
        try:
            return keras.optimizers.get(
                {"class_name": optimizer, "config": {"learning_rate": learning_rate}}
            )
        except ValueError as error:
            raise ValueError(
                "`optimizer` must be a Keras optimizer or its name ('adam', 'sgd', 'rmsprop' ...). "
                f"Received: optimizer={optimizer!r}"
            ) from error
    if not isinstance(optimizer, keras.optimizers.Optimizer):
        raise TypeError(
            f"`optimizer` must be a Keras optimizer, its name, or None. Received: {optimizer!r}"
        )
    return optimizer


def _reset_dropout_seeds(network: Any, seed: int) -> None:
    """Put every dropout seed generator of the network in a state fixed by ``seed``."""
    states = [v for v in network.non_trainable_variables if v.path.endswith("seed_generator_state")]
    for index, variable in enumerate(states):
        value = np.array([seed, index], dtype=keras.backend.standardize_dtype(variable.dtype))
        variable.assign(value.reshape(variable.shape))


def _select_engine(engine: str) -> Engine:
    backend = keras.backend.backend()
    if engine == "jax" and backend != "jax":
        raise ValueError(
            f"engine='jax' needs the JAX backend, but Keras runs on {backend!r}. Set "
            "KERAS_BACKEND=jax before importing Keras, or use engine='auto'."
        )
    if engine in ("auto", "jax") and backend == "jax":
        try:
            from dlstructured.training import _engine_jax
        except ImportError as error:  # pragma: no cover - the fast path is optional
            if engine == "jax":
                raise ValueError(
                    "engine='jax' is not available in this installation; use engine='auto' or "
                    f"'keras'. Received: engine={engine!r}"
                ) from error
        else:
            return _engine_jax.ENGINE
    from dlstructured.training import _engine_keras

    return _engine_keras.ENGINE


def _to_original_units(history: pd.DataFrame, policy: TaskPolicy, scale: float) -> pd.DataFrame:
    if policy.name != "regression" or scale == 1.0:
        return history
    history = history.copy()
    for column in history.columns:
        base = column[4:] if column.startswith("val_") else column
        power = policy.unit_powers.get(base)
        if power:
            history[column] = history[column] * scale**power
    return history


# --------------------------------------------------------------------------------------------


def train(
    model: Any,
    x: Any,
    y: Any = None,
    *,
    task: str | None = None,
    validation_data: Sequence | None = None,
    valid_fraction: float | None = None,
    epochs: int = 100,
    batch_size: int = 256,
    learning_rate: float = 0.001,
    optimizer: Any = None,
    loss: Any = None,
    metrics: Sequence[Any] | None = None,
    early_stopping: Any = True,
    class_weight: Any = None,
    sample_weight: Any = None,
    callbacks: Sequence[Any] | None = None,
    verbose: int = 0,
    seed: int | None = None,
    engine: str = "auto",
    on_interrupt: str = "return",
    checkpoint_dir: Any = None,
    resume: bool = False,
    adam_beta_2: float = 0.999,
    label_smoothing: float = 0.0,
    learning_rate_schedule: Any = None,
) -> TrainingResult:
    """Compile and train a model, with early stopping, and return its learning curves and metrics.

    The model is compiled with Adam and the loss its task calls for (one table,
    ``dlstructured.TASKS``): mean absolute error for regression, binary cross-entropy with binary
    accuracy and AUC for binary classification, sparse categorical cross-entropy with accuracy
    for multiclass. The task is ``task`` if given, else the task of prepared data, else the one
    the model's output activation implies (sigmoid: binary, softmax: multiclass, else
    regression).

    On the JAX backend a fast engine compiles whole epochs; elsewhere Keras's ``fit`` runs.
    Both shuffle in an order fixed by ``seed`` and call the same callbacks.

    If the loss becomes NaN or infinite, training stops, the best weights seen before are put
    back, a ``TrainingDivergedWarning`` says what to fix and the result has ``diverged=True``.
    Ctrl-C (``KeyboardInterrupt``) ends training and returns the result so far with
    ``interrupted=True`` (``on_interrupt="raise"`` re-raises instead).

    Args:
        model: A Keras model (from a builder, or any single-input model), or a ``TabularModel``,
            whose network is trained. Trained in place.
        x: Prepared data from ``dlstructured.prepare`` (then ``y``, validation and task come
            from it), the features as a numeric numpy array or pandas DataFrame, or a
            ``BatchSource`` (a streamed table, for example: its batches carry the targets and
            sample weights, so ``y``, ``sample_weight``, ``class_weight`` and
            ``valid_fraction`` stay ``None``, and the task comes from ``task`` or the model's
            output). Under a ``keras.distribution.DataParallel`` scope on JAX, this process's
            rows, and ``batch_size`` is the global batch.
        y: Targets (numbers; 0/1 for binary; class codes for multiclass) when ``x`` is an array.
            Defaults to ``None``.
        task: ``"regression"``, ``"binary"`` or ``"multiclass"``. Defaults to ``None``
            (inferred as above).
        validation_data: ``(x_valid, y_valid)``, ``(x_valid, y_valid, sample_weight)``, or a
            ``BatchSource`` of validation rows (the only kind when ``x`` is a source).
            Defaults to ``None``.
        valid_fraction: Fraction of the rows held out for validation at random (seeded), when
            ``validation_data`` is not given. Defaults to ``None`` (no validation unless the
            prepared data has it).
        epochs: Maximum number of epochs. Defaults to ``100``.
        batch_size: Rows per gradient step. Defaults to ``256``.
        learning_rate: Adam's learning rate (or the named optimizer's). Defaults to ``0.001``.
        optimizer: A Keras optimizer or its name, for example ``"sgd"``. Defaults to ``None``
            (Adam).
        loss: A Keras loss or its name instead of the task's. Defaults to ``None``.
        metrics: Keras metric names or objects instead of the task's, for example
            ``["binary_accuracy"]`` (``"accuracy"`` means the task's accuracy), or ``[]`` for
            the loss alone; each is a history column (and ``val_`` one). Fewer metrics train
            faster: AUC, a default for binary tasks, costs a share of every step. Defaults to
            ``None`` (the task's).
        early_stopping: ``True`` (patience 20, min_delta 0.001, best weights restored),
            ``False``/``0`` (off), an integer patience, or ``EarlyStopping``. Defaults to
            ``True``.
        class_weight: ``{class: weight}`` or ``"balanced"`` for classifiers. Defaults to ``None``.
        sample_weight: One weight per training row. Defaults to ``None``.
        callbacks: Your own Keras callbacks (TensorBoard, learning-rate schedules ...); they get
            epoch events on every engine (batch events only on the Keras engine). Defaults to
            ``None``.
        verbose: ``0`` silent, ``1`` a progress bar over epochs (redrawn on a terminal, a line
            per tenth of the epochs elsewhere), ``2`` one line per epoch.
            Defaults to ``0``.
        seed: Makes shuffling and dropout repeatable for this call, without touching global
            random state. Defaults to ``None`` (a fresh random order each run).
        engine: ``"auto"`` (the fastest for the backend), ``"keras"`` (Keras's ``fit``) or
            ``"jax"``. Defaults to ``"auto"``.
        on_interrupt: ``"return"`` the result so far on Ctrl-C, or ``"raise"``. Defaults to
            ``"return"``.
        checkpoint_dir: A folder where the best model so far (``best.keras``, loadable with
            ``dlstructured.load_checkpoint``) and the latest training state are written
            atomically as training goes, so a crash or kill leaves the previous checkpoint
            intact. Writes are spaced to take about a tenth of the training time; the first
            and the last epoch are always written. Defaults to ``None`` (no checkpoints).
        resume: Continue the run saved in ``checkpoint_dir`` from its next epoch, with its
            weights, optimizer state, history, early-stopping state and seed; pass the same
            model, data and settings as the interrupted run. Defaults to ``False``.
        adam_beta_2: Adam's ``beta_2`` when ``optimizer`` is ``None`` (RealMLP trains with
            ``0.95``). Defaults to ``0.999``, Keras's.
        label_smoothing: For classification with the task's loss, the share of the target
            spread evenly over the classes (RealMLP uses ``0.1``). Defaults to ``0.0``.
        learning_rate_schedule: ``None`` (a constant ``learning_rate``), ``"log_cosine"``
            (``LogCosineRestarts`` peaking at
            ``learning_rate``, over all the steps of ``epochs``) or a Keras
            ``LearningRateSchedule``, for the optimizer built from ``optimizer``. Defaults to
            ``None``.

    Returns:
        A [`TrainingResult`][dlstructured.training.loop.TrainingResult].

    Raises:
        TypeError: If an argument has the wrong type (the message names it).
        ValueError: If an argument has a bad value, shapes disagree, or data has NaN.

    Example:

    >>> import numpy as np
    >>> from dlstructured import linear_unit, train
    >>> x = np.linspace(-1, 1, 64, dtype="float32").reshape(-1, 1)
    >>> result = train(linear_unit(1, seed=0), x, 3 * x[:, 0] + 2, epochs=5, seed=0)
    >>> result.epochs_run, list(result.history.columns)
    (5, ['loss', 'mae'])
    """
    started = time.perf_counter()
    if not isinstance(model, keras.Model):
        raise TypeError(
            "`model` must be a Keras model, such as one from `dense_stack(...)`. "
            f"Received: {type(model).__name__}"
        )
    network = getattr(model, "network", model)
    epochs = check_int("epochs", epochs, minimum=1)
    batch_size = check_int("batch_size", batch_size, minimum=1)
    learning_rate = check_float("learning_rate", learning_rate, minimum=0.0, min_inclusive=False)
    verbose = check_int("verbose", verbose, minimum=0)
    if verbose > 2:
        raise ValueError(f"`verbose` must be 0, 1 or 2. Received: verbose={verbose}")
    seed = check_optional_seed("seed", seed)
    check_choice("engine", engine, ENGINES)
    check_choice("on_interrupt", on_interrupt, ("return", "raise"))
    resumed, seed = _checkpoint_to_resume(checkpoint_dir, resume, seed)
    shuffle_seed = seed if seed is not None else int(np.random.default_rng().integers(2**31))
    stopping = _resolve_early_stopping(early_stopping)
    _check_callbacks(callbacks)

    data = _training_data(
        network, x, y, task=task, validation_data=validation_data,
        valid_fraction=valid_fraction, sample_weight=sample_weight, class_weight=class_weight,
        shuffle_seed=shuffle_seed,
    )
    policy = data.policy
    metric_objects = as_metric_objects(metrics, policy.name)
    loss_object, metric_objects = _loss_and_metrics(
        network, policy, loss, metric_objects, label_smoothing
    )
    monitor = (stopping.monitor if stopping and stopping.monitor else None) or (
        "val_loss" if data.validation is not None else "loss"
    )
    watcher = _Monitor(monitor, monitor_mode(monitor, metric_objects), stopping, shuffle_seed)
    rate = _learning_rate(learning_rate_schedule, learning_rate, epochs, data.num_rows,
                          batch_size)
    optimizer = _make_optimizer(optimizer, rate, adam_beta_2)
    callback_list = _callback_list(
        network, watcher, callbacks, checkpoint_dir=checkpoint_dir, save_model=model,
        optimizer=optimizer, seed=shuffle_seed, epochs=epochs, verbose=verbose,
        loss_scale=data.unit_scale if policy.name == "regression" else 1.0,
    )
    _reset_dropout_seeds(network, shuffle_seed)
    selected = _select_engine(engine)
    if resumed is not None:
        watcher.resume_from(
            checkpoints.restore_checkpoint(resumed, network, optimizer, monitor=monitor)
        )
    spec = FitSpec(
        loss=loss_object, metrics=tuple(metric_objects), optimizer=optimizer, epochs=epochs,
        batch_size=batch_size, callbacks=callback_list, initial_epoch=watcher.state.epoch,
        seed=shuffle_seed, validation=data.validation,
    )
    fit_started = time.perf_counter()
    interrupted_epoch = _run_engine(selected, network, data.source, spec, watcher, on_interrupt)
    fit_time = time.perf_counter() - fit_started
    _keep_best_weights(network, watcher, stopping, interrupted_epoch)
    return _result(
        model, watcher, policy, data.unit_scale, interrupted_epoch, engine=selected.name,
        wall_time=time.perf_counter() - started, fit_time=fit_time,
    )


# --------------------------------------------------------------------------------------------
# The steps of ``train``


@dataclass(frozen=True)
class _TrainingData:
    """The checked training rows (as a batch source), validation rows, task and target unit."""

    source: BatchSource
    validation: tuple | BatchSource | None
    policy: TaskPolicy
    unit_scale: float

    @property
    def num_rows(self) -> int:
        return self.source.num_rows


def _check_callbacks(callbacks: Any) -> None:
    if callbacks is not None and (
        isinstance(callbacks, keras.callbacks.Callback)
        or not all(isinstance(c, keras.callbacks.Callback) for c in callbacks)
    ):
        raise TypeError(
            "`callbacks` must be a list of keras.callbacks.Callback objects. "
            f"Received: callbacks={callbacks!r}"
        )


def _checkpoint_to_resume(checkpoint_dir: Any, resume: Any, seed: int | None):
    """``(state, seed)``: the checkpoint to resume (``None`` when not resuming) and the seed the
    run must use (the interrupted run's when resuming)."""
    if checkpoint_dir is not None and not isinstance(checkpoint_dir, (str, os.PathLike)):
        raise TypeError(
            f"`checkpoint_dir` must be a folder path (str or os.PathLike). "
            f"Received: checkpoint_dir={checkpoint_dir!r}"
        )
    if not check_bool("resume", resume):
        return None, seed
    if checkpoint_dir is None:
        raise ValueError(
            "`resume=True` needs `checkpoint_dir`, the folder of the run to continue. "
            "Received: checkpoint_dir=None"
        )
    try:
        state = checkpoints.read_checkpoint(checkpoint_dir)
    except CheckpointError as error:
        raise CheckpointError(
            f"`resume=True` needs a completed checkpoint in `checkpoint_dir`: {error} Train "
            "without resume=True, or give the folder of the run to continue. Received: "
            f"checkpoint_dir={str(checkpoint_dir)!r}"
        ) from error
    if seed is not None and seed != state.seed:
        raise ValueError(
            f"`seed` must be the interrupted run's seed ({state.seed}) or None to resume it. "
            f"Received: seed={seed}"
        )
    return state, state.seed


def _training_data(
    network: Any, x: Any, y: Any, *, task: Any, validation_data: Any, valid_fraction: Any,
    sample_weight: Any, class_weight: Any, shuffle_seed: int,
) -> _TrainingData:
    """Check the data arguments of ``train`` and turn them into its training rows."""
    if task is not None:
        get_task(task)
    if isinstance(x, BatchSource):
        return _source_data(
            network, x, y, task=task, validation_data=validation_data,
            valid_fraction=valid_fraction, sample_weight=sample_weight,
            class_weight=class_weight,
        )
    if valid_fraction is not None:
        valid_fraction = check_float(
            "valid_fraction", valid_fraction, minimum=0.0, maximum=1.0,
            min_inclusive=False, max_inclusive=False,
        )
    classes = _output_units(network)
    unit_scale = 1.0
    validation = None
    if _is_prepared(x):
        if y is not None:
            raise ValueError(
                "`y` must be None when `x` is prepared data: the targets come from it. "
                "Received: y of type " + type(y).__name__
            )
        task_name = task or x.task
        x_train = np.ascontiguousarray(x.x_train, dtype="float32")
        y_train = _as_targets("y", x.y_train, task_name, len(x_train), classes)
        unit_scale = float(getattr(x, "target_unit_scale", 1.0) or 1.0)
        if x.x_valid is not None and validation_data is None and valid_fraction is None:
            validation = (
                np.ascontiguousarray(x.x_valid, dtype="float32"),
                _as_targets("y_valid", x.y_valid, task_name, len(x.x_valid), classes),
                None,
            )
    else:
        task_name = task or _infer_task(network)
        x_train = _as_features("x", x)
        y_train = _as_targets("y", y, task_name, len(x_train), classes)
    policy = get_task(task_name)

    weights = None
    if sample_weight is not None:
        weights = _as_weights("sample_weight", sample_weight)
        if len(weights) != len(x_train) or not np.isfinite(weights).all() or (weights < 0).any():
            raise ValueError(
                "`sample_weight` must hold one finite, non-negative weight per training row "
                f"({len(x_train)}). Received {len(weights)} values."
            )
    if class_weight is not None:
        from_classes = _class_weights_to_samples(class_weight, y_train, policy.name)
        weights = from_classes if weights is None else weights * from_classes

    if isinstance(validation_data, BatchSource):
        validation = _validation_source(validation_data)
    elif validation_data is not None:
        if not isinstance(validation_data, (tuple, list)) or len(validation_data) not in (2, 3):
            raise TypeError(
                "`validation_data` must be a tuple (x_valid, y_valid) or "
                "(x_valid, y_valid, sample_weight), or a BatchSource. Received: "
                f"validation_data of type {type(validation_data).__name__}"
            )
        x_valid = _as_features("validation_data[0]", validation_data[0])
        y_valid = _as_targets(
            "validation_data[1]", validation_data[1], policy.name, len(x_valid), classes
        )
        w_valid = None
        if len(validation_data) == 3 and validation_data[2] is not None:
            w_valid = _as_weights("validation_data[2]", validation_data[2])
        validation = (x_valid, y_valid, w_valid)
    elif valid_fraction is not None:
        train_rows, valid_rows = _split_rows(len(x_train), valid_fraction, shuffle_seed)
        validation = (
            x_train[valid_rows],
            y_train[valid_rows],
            None if weights is None else weights[valid_rows],
        )
        x_train, y_train = x_train[train_rows], y_train[train_rows]
        weights = None if weights is None else weights[train_rows]

    if x_train.shape[1] != network.input_shape[-1]:
        raise ValueError(
            f"The model expects {network.input_shape[-1]} features but the data has "
            f"{x_train.shape[1]}. Build the model with the data's feature count."
        )
    if isinstance(validation, tuple) and validation[0].shape[1] != x_train.shape[1]:
        raise ValueError(
            f"`validation_data` has {validation[0].shape[1]} feature columns, the training data "
            f"{x_train.shape[1]}: they must match. Received: validation_data[0] of shape "
            f"{tuple(validation[0].shape)}"
        )
    return _TrainingData(ArraySource(x_train, y_train, weights), validation, policy, unit_scale)


def _source_data(
    network: Any, source: BatchSource, y: Any, *, task: Any, validation_data: Any,
    valid_fraction: Any, sample_weight: Any, class_weight: Any,
) -> _TrainingData:
    """The training data when ``x`` is a ``BatchSource`` (a streamed table, for example): its
    batches carry the targets and the weights, so the arguments that would give them must be
    left out."""
    for name, value in (("y", y), ("sample_weight", sample_weight),
                        ("class_weight", class_weight), ("valid_fraction", valid_fraction)):
        if value is not None:
            raise ValueError(
                f"`{name}` must be None when `x` is a BatchSource: its batches carry the "
                "targets and sample weights, and validation rows come as `validation_data`. "
                f"Received: {name}={value!r:.80}"
            )
    _check_rows("x", source)
    if validation_data is not None and not isinstance(validation_data, BatchSource):
        raise TypeError(
            "`validation_data` must be a BatchSource (or None) when `x` is one. Received: "
            f"validation_data of type {type(validation_data).__name__}"
        )
    validation = None if validation_data is None else _validation_source(validation_data)
    policy = get_task(task or _infer_task(network))
    return _TrainingData(source, validation, policy, 1.0)


def _check_rows(name: str, source: BatchSource) -> None:
    rows = source.num_rows
    if isinstance(rows, bool) or not isinstance(rows, (int, np.integer)) or rows < 1:
        raise ValueError(
            f"`{name}` is a BatchSource without rows: `num_rows` must be a positive integer. "
            f"Received: {name}.num_rows={rows!r}"
        )


def _validation_source(source: BatchSource) -> tuple | BatchSource:
    """A validation ``BatchSource``: an ``ArraySource`` as its arrays (the engines' fast path),
    any other as it is."""
    _check_rows("validation_data", source)
    if isinstance(source, ArraySource):
        return (source.x, source.y, source.sample_weight)
    return source


def _callback_list(
    network: Any, watcher: _Monitor, callbacks: Any, *, checkpoint_dir: Any, save_model: Any,
    optimizer: Any, seed: int, epochs: int, verbose: int, loss_scale: float,
) -> Any:
    """The callbacks every engine calls: the monitor first, then checkpoints, progress and the
    caller's own."""
    all_callbacks: list[Any] = [watcher]
    if checkpoint_dir is not None:
        all_callbacks.append(checkpoints.CheckpointWriter(
            checkpoint_dir, watcher, save_model=save_model, optimizer=optimizer, seed=seed,
            epochs=epochs,
        ))
    if verbose:
        all_callbacks.append(
            EpochProgress(epochs, every_epoch=verbose == 2, loss_scale=loss_scale)
        )
    all_callbacks.extend(callbacks or [])
    return keras.callbacks.CallbackList(
        all_callbacks, add_history=False, add_progbar=False, model=network
    )


def _run_engine(
    engine: Engine, network: Any, source: BatchSource, spec: FitSpec, watcher: _Monitor,
    on_interrupt: str,
) -> int | None:
    """Run the engine unless a resumed run had already ended; return the epoch (from 1) that
    Ctrl-C interrupted, else ``None``."""
    network.stop_training = False
    if spec.initial_epoch >= spec.epochs or watcher.state.stopped_early:
        return None
    try:
        engine.fit(network, source, spec)
    except KeyboardInterrupt:
        if on_interrupt == "raise":
            raise
        return max(watcher.current_epoch, 1)
    return None


def _keep_best_weights(
    network: Any, watcher: _Monitor, stopping: EarlyStopping | None, interrupted_epoch: Any
) -> None:
    best_weights = watcher.state.best_weights
    restore = stopping is None or stopping.restore_best_weights
    if best_weights is not None and (
        watcher.diverged_epoch is not None
        or interrupted_epoch is not None
        or (stopping and restore)
    ):
        restore_weights(network.weights, best_weights)


def _result(
    model: Any, watcher: _Monitor, policy: TaskPolicy, unit_scale: float,
    interrupted_epoch: int | None, *, engine: str, wall_time: float, fit_time: float,
) -> TrainingResult:
    """The ``TrainingResult`` of a finished run, with its warnings."""
    state = watcher.state
    history = pd.DataFrame(state.rows)
    history.index = pd.RangeIndex(1, len(history) + 1, name="epoch")
    history = _to_original_units(history, policy, unit_scale)
    best_epoch = state.best_epoch
    best_metrics = history.loc[best_epoch].to_dict() if best_epoch else {}
    final_metrics = history.iloc[-1].to_dict() if len(history) else {}

    if watcher.diverged_epoch is not None:
        warnings.warn(
            f"Training diverged at epoch {watcher.diverged_epoch}: the loss became NaN or "
            f"infinite. To fix it, {DIVERGENCE_ADVICE}. The weights of the best epoch before it "
            f"({best_epoch}) were kept.",
            TrainingDivergedWarning,
            stacklevel=3,
        )
    if interrupted_epoch is not None:
        warnings.warn(
            f"Training was interrupted at epoch {interrupted_epoch}; returning the result so far "
            f"with the weights of the best epoch ({best_epoch}).",
            TrainingInterruptedWarning,
            stacklevel=3,
        )

    return TrainingResult(
        model=model,
        history=history,
        task=policy.name,
        monitor=watcher.monitor,
        best_epoch=best_epoch,
        best_metrics={k: float(v) for k, v in best_metrics.items()},
        final_metrics={k: float(v) for k, v in final_metrics.items()},
        epochs_run=len(history),
        wall_time=wall_time,
        fit_time=fit_time,
        stopped_early=state.stopped_early,
        diverged=watcher.diverged_epoch is not None,
        diverged_epoch=watcher.diverged_epoch,
        interrupted=interrupted_epoch is not None,
        interrupted_epoch=interrupted_epoch,
        engine=engine,
    )
