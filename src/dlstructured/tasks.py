"""The task policy table: one place that says, per task, the output, loss and metrics.

Builders read the output activation from it, training reads the loss and metrics, the run
configuration and the command line read the task names, and ``dlstructured.fit_table`` reads
which builder makes each task's network. Metric names are fixed here so that history columns
never drift (no ``auc_1`` when a notebook builds a second model).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


def _regression_metrics() -> list[Any]:
    import keras

    return [keras.metrics.MeanAbsoluteError(name="mae")]


def _binary_metrics() -> list[Any]:
    import keras

    return [
        keras.metrics.BinaryAccuracy(name="binary_accuracy"),
        keras.metrics.AUC(name="auc"),
    ]


def _multiclass_metrics() -> list[Any]:
    import keras

    return [keras.metrics.SparseCategoricalAccuracy(name="accuracy")]


@dataclass(frozen=True)
class TaskPolicy:
    """What one task means for the network's output, its loss and its metrics.

    Attributes:
        name: The task's name: ``"regression"``, ``"binary"`` or ``"multiclass"``.
        output_activation: Activation of the output layer.
        loss: Keras loss identifier used when the caller passes none.
        metric_names: History columns the default metrics produce, in order.
        builder: Name of the builder in ``dlstructured.models.builders`` that makes a network for
            this task from prepared data (``"dense_stack"`` for regression).
        unit_powers: For regression, how each reported quantity scales with the target's unit
            (MAE scales with power 1). Used to report metrics in the target's original units
            when the target was scaled for training. Quantities not listed are unitless.
        monitor: The quantity early stopping watches by default.
        monitor_mode: ``"min"`` or ``"max"`` for ``monitor``.
    """

    name: str
    output_activation: str
    loss: str
    metric_names: tuple[str, ...]
    builder: str
    make_metrics: Callable[[], list[Any]] = field(repr=False)
    unit_powers: dict[str, int] = field(default_factory=dict)
    monitor: str = "val_loss"
    monitor_mode: str = "min"

    def make_builder(self) -> Callable[..., Any]:
        """Return the builder function named by ``builder``."""
        from dlstructured.models import builders

        return getattr(builders, self.builder)

    def make_loss(self) -> Any:
        """Return a new Keras loss object (a ``keras.losses.Loss``) for this task."""
        return as_loss_object(self.loss)


def as_loss_object(loss: Any) -> Any:
    """A ``keras.losses.Loss`` for a loss name, function or object (objects pass through).

    Keras's own loss functions become their Loss classes (``"mae"`` and
    ``keras.losses.mean_absolute_error`` give ``MeanAbsoluteError()``), which save with a model
    and reconcile ``(n,)`` targets with ``(n, 1)`` outputs. Other functions are wrapped.

    Raises:
        ValueError: If ``loss`` is not a Keras loss name, function or object.
    """
    import keras

    if isinstance(loss, keras.losses.Loss):
        return loss
    try:
        resolved = keras.losses.get(loss)
    except (ValueError, TypeError) as error:
        resolved = None
        cause = error
    else:
        cause = None
    if resolved is None:
        raise ValueError(
            "`loss` must be a Keras loss, its name ('mae', 'mse', 'binary_crossentropy' ...) or "
            f"a function. Received: loss={loss!r}"
        ) from cause
    if isinstance(resolved, keras.losses.Loss):
        return resolved
    name = getattr(resolved, "__name__", "")
    class_name = "".join(part.capitalize() for part in name.split("_"))
    loss_class = getattr(keras.losses, class_name, None)
    if isinstance(loss_class, type) and issubclass(loss_class, keras.losses.Loss):
        return loss_class()
    return _function_loss(resolved)


def _function_loss(fn: Any) -> Any:
    import keras

    class FunctionLoss(keras.losses.Loss):
        """A custom loss function as a ``keras.losses.Loss``: Keras reduces and weights it."""

        def __init__(self, fn, **kwargs):
            super().__init__(name=getattr(fn, "__name__", "loss"), **kwargs)
            self.fn = fn

        def call(self, y_true, y_pred):
            if len(y_true.shape) == len(y_pred.shape) - 1:
                y_true = keras.ops.expand_dims(y_true, -1)
            return self.fn(y_true, y_pred)

    return FunctionLoss(fn)


def _accuracy_for(task: str) -> Any:
    import keras

    if task == "binary":
        return keras.metrics.BinaryAccuracy(name="accuracy")
    if task == "multiclass":
        return keras.metrics.SparseCategoricalAccuracy(name="accuracy")
    raise ValueError(
        "`metrics` has 'accuracy', which needs a classification task; for regression use "
        "'mae', 'mse' or 'rmse'. Received: metrics=[..., 'accuracy', ...] with task='regression'"
    )


# Keras metrics by the outputs they read, so a metric that means nothing for a task is refused
# instead of reporting a number (AUC of a regression is 0.0). Classes and functions by name.
_BINARY_ONLY = frozenset({
    "AUC", "BinaryAccuracy", "BinaryCrossentropy", "BinaryIoU", "Precision", "Recall",
    "PrecisionAtRecall", "RecallAtPrecision", "SensitivityAtSpecificity",
    "SpecificityAtSensitivity", "TruePositives", "TrueNegatives", "FalsePositives",
    "FalseNegatives", "F1Score", "FBetaScore", "binary_accuracy", "binary_crossentropy",
    "binary_focal_crossentropy",
})
_MULTICLASS_ONLY = frozenset({
    "CategoricalAccuracy", "SparseCategoricalAccuracy", "TopKCategoricalAccuracy",
    "SparseTopKCategoricalAccuracy", "CategoricalCrossentropy", "SparseCategoricalCrossentropy",
    "categorical_accuracy", "sparse_categorical_accuracy", "top_k_categorical_accuracy",
    "sparse_top_k_categorical_accuracy", "categorical_crossentropy",
    "sparse_categorical_crossentropy",
})
_REGRESSION_ONLY = frozenset({
    "MeanAbsoluteError", "MeanSquaredError", "RootMeanSquaredError",
    "MeanAbsolutePercentageError", "MeanSquaredLogarithmicError", "R2Score", "LogCoshError",
    "mean_absolute_error", "mean_squared_error", "mean_absolute_percentage_error",
    "mean_squared_logarithmic_error", "log_cosh",
})
# What each task refuses. A binary model's probability against 0/1 labels gives a meaningful
# mae or mse (the Brier score), so only multiclass refuses the regression metrics.
_REFUSED = {
    "regression": (_BINARY_ONLY | _MULTICLASS_ONLY, "a classification"),
    "binary": (_MULTICLASS_ONLY, "a multiclass"),
    "multiclass": (_BINARY_ONLY | _REGRESSION_ONLY, "a binary or regression"),
}


def _check_metric_fits(metric: Any, item: Any, task: str) -> None:
    kind = getattr(metric, "_fn", None) or metric
    names = {type(metric).__name__, getattr(kind, "__name__", "")}
    refused, needs = _REFUSED[task]
    if names & refused:
        raise ValueError(
            f"`metrics` has {item!r}, a metric for {needs} task, which means nothing for a "
            f"{task} model. Leave it out or choose one for {task} (the default is "
            f"{list(TASKS[task].metric_names)!r}). Received: metrics=[..., {item!r}, ...] with "
            f"task={task!r}"
        )


def as_metric_objects(metrics: Any, task: str) -> list[Any]:
    """Fresh Keras metric objects for ``train(metrics=...)``.

    ``None`` gives the task's defaults. Names become metric objects named as written (``"mae"``
    gives a ``MeanAbsoluteError`` whose history column is ``mae``); ``"accuracy"`` (or ``"acc"``)
    means the task's accuracy, as in Keras's ``compile``; ``"rmse"`` is root mean squared error.
    Metric objects pass through; other callables ``fn(y_true, y_pred)`` are averaged over rows.

    Raises:
        TypeError: If ``metrics`` is not a list or tuple.
        ValueError: If a name is unknown, a Keras metric does not fit ``task`` (``'auc'`` for
            regression, ``'mae'`` for multiclass ...), or two metrics have the same name.
    """
    import keras

    if metrics is None:
        return get_task(task).make_metrics()
    if not isinstance(metrics, (list, tuple)):
        raise TypeError(
            "`metrics` must be a list of Keras metric names or objects, for example "
            f"['binary_accuracy'], or [] for none. Received: metrics={metrics!r}"
        )
    objects = []
    for item in metrics:
        if isinstance(item, keras.metrics.Metric):
            _check_metric_fits(item, item.name, task)
            objects.append(item)
        elif item in ("accuracy", "acc"):
            objects.append(_accuracy_for(task))
        elif item == "rmse":
            objects.append(keras.metrics.RootMeanSquaredError(name="rmse"))
        elif isinstance(item, str):
            try:
                metric = keras.metrics.get(item)
            except (ValueError, TypeError) as error:
                raise ValueError(
                    "`metrics` must hold Keras metric names ('mae', 'binary_accuracy', 'auc' "
                    f"...) or objects. Received: {item!r} in metrics={list(metrics)!r}"
                ) from error
            _check_metric_fits(metric, item, task)
            if isinstance(metric, keras.metrics.Metric):
                metric = type(metric).from_config({**metric.get_config(), "name": item})
            else:  # a metric function
                metric = keras.metrics.MeanMetricWrapper(metric, name=item)
            objects.append(metric)
        elif callable(item):
            name = getattr(item, "__name__", "metric")
            objects.append(keras.metrics.MeanMetricWrapper(item, name=name))
        else:
            raise ValueError(
                "`metrics` must hold Keras metric names or objects. Received: "
                f"{item!r} ({type(item).__name__}) in metrics={list(metrics)!r}"
            )
    names = [metric.name for metric in objects]
    repeated = sorted({name for name in names if names.count(name) > 1 or name == "loss"})
    if repeated:
        raise ValueError(
            f"Each metric needs a name of its own, other than 'loss'. Received: metrics with "
            f"the names {names}; {repeated} repeated or reserved. Give metric objects "
            "distinct `name=` values."
        )
    return objects


TASKS: dict[str, TaskPolicy] = {
    "regression": TaskPolicy(
        name="regression",
        output_activation="linear",
        loss="mean_absolute_error",
        metric_names=("mae",),
        builder="dense_stack",
        make_metrics=_regression_metrics,
        unit_powers={"loss": 1, "mae": 1, "mse": 2, "rmse": 1, "mean_absolute_error": 1},
    ),
    "binary": TaskPolicy(
        name="binary",
        output_activation="sigmoid",
        loss="binary_crossentropy",
        metric_names=("binary_accuracy", "auc"),
        builder="binary_classifier",
        make_metrics=_binary_metrics,
    ),
    "multiclass": TaskPolicy(
        name="multiclass",
        output_activation="softmax",
        loss="sparse_categorical_crossentropy",
        metric_names=("accuracy",),
        builder="multiclass_classifier",
        make_metrics=_multiclass_metrics,
    ),
}

TASK_NAMES = tuple(TASKS)

#: Which way early stopping wants each quantity the tasks' metrics report: ``"min"`` for
#: losses and errors, ``"max"`` for accuracies and ranking scores. ``val_`` columns read the
#: row of their quantity.
MONITOR_MODES: dict[str, str] = {
    "loss": "min",
    "mae": "min",
    "mse": "min",
    "rmse": "min",
    "mean_absolute_error": "min",
    "mean_squared_error": "min",
    "accuracy": "max",
    "binary_accuracy": "max",
    "categorical_accuracy": "max",
    "sparse_categorical_accuracy": "max",
    "auc": "max",
    "precision": "max",
    "recall": "max",
}


def monitor_mode(monitor: str, metrics: Any = ()) -> str:
    """Whether early stopping watching ``monitor`` wants it low (``"min"``) or high (``"max"``).

    The mode comes from ``MONITOR_MODES``; a quantity not in it takes the direction its Keras
    metric object declares (among ``metrics``), else ``"min"``.

    Example:

    >>> from dlstructured.tasks import monitor_mode
    >>> monitor_mode("val_loss"), monitor_mode("val_auc"), monitor_mode("accuracy")
    ('min', 'max', 'max')
    """
    name = monitor[4:] if monitor.startswith("val_") else monitor
    if name in MONITOR_MODES:
        return MONITOR_MODES[name]
    for metric in metrics:
        inner = getattr(metric, "metric", metric)  # an ensemble's member-mean wrapper
        if getattr(metric, "name", None) == name:
            direction = getattr(metric, "_direction", None) or getattr(inner, "_direction", None)
            return "max" if direction == "up" else "min"
    return "min"


def get_task(name: Any, *, argument: str = "task") -> TaskPolicy:
    """Return the policy for ``name``, or raise a ``ValueError`` listing the valid names."""
    if isinstance(name, TaskPolicy):
        return name
    if not isinstance(name, str) or name not in TASKS:
        valid = ", ".join(repr(n) for n in TASK_NAMES)
        raise ValueError(f"`{argument}` must be one of {valid}. Received: {argument}={name!r}")
    return TASKS[name]


def task_from_activation(activation_name: str) -> str:
    """Map an output activation's name to a task name (linear and others mean regression)."""
    for policy in TASKS.values():
        if policy.output_activation == activation_name:
            return policy.name
    return "regression"
