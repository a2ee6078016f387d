"""The task policy table: one place that says, per task, the output, loss and metrics.

Builders read the output activation from it, training reads the loss and metrics, and the command
line reads the task names. Metric names are fixed here so that history columns never drift (no
``auc_1`` when a notebook builds a second model).
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
    make_metrics: Callable[[], list[Any]] = field(repr=False)
    unit_powers: dict[str, int] = field(default_factory=dict)
    monitor: str = "val_loss"
    monitor_mode: str = "min"

    def make_loss(self) -> Any:
        """Return a new Keras loss object for this task."""
        import keras

        return keras.losses.get(self.loss)


TASKS: dict[str, TaskPolicy] = {
    "regression": TaskPolicy(
        name="regression",
        output_activation="linear",
        loss="mean_absolute_error",
        metric_names=("mae",),
        make_metrics=_regression_metrics,
        unit_powers={"loss": 1, "mae": 1, "mse": 2, "rmse": 1, "mean_absolute_error": 1},
    ),
    "binary": TaskPolicy(
        name="binary",
        output_activation="sigmoid",
        loss="binary_crossentropy",
        metric_names=("binary_accuracy", "auc"),
        make_metrics=_binary_metrics,
    ),
    "multiclass": TaskPolicy(
        name="multiclass",
        output_activation="softmax",
        loss="sparse_categorical_crossentropy",
        metric_names=("accuracy",),
        make_metrics=_multiclass_metrics,
    ),
}

TASK_NAMES = tuple(TASKS)


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
