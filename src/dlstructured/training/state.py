"""The progress of a training run as plain data, and the one routine that snapshots weights.

The training loop's monitor keeps a ``TrainingState``; checkpoints write it and read it back,
so a resumed run continues from the same epoch, history, early-stopping counters, best weights
and shuffle seed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from dlstructured._backend import variable_to_numpy


def snapshot_weights(variables: Any) -> list[np.ndarray]:
    """A host copy of each variable's value (weights, batch-norm statistics, seed states).

    Example:

    >>> import keras
    >>> from dlstructured.training.state import snapshot_weights
    >>> [value.tolist() for value in snapshot_weights([keras.Variable([1.0, 2.0])])]
    [[1.0, 2.0]]
    """
    return [np.array(variable_to_numpy(variable)) for variable in variables]


def restore_weights(variables: Any, values: list[np.ndarray]) -> None:
    """Assign ``values`` (from ``snapshot_weights``) back to ``variables``, in order.

    Without a collective under data-parallel training (``parallel.assign_locally``), so one
    process can do it alone.
    """
    from dlstructured.training.parallel import assign_locally

    assign_locally(variables, values)


@dataclass
class TrainingState:
    """Where a training run stands after its last completed epoch.

    Attributes:
        epoch: Epochs completed (the next one to run is ``epoch``, counting from 0).
        seed: The shuffle seed of the run (each epoch's order is fixed by ``(seed, epoch)``).
        rows: The history so far: one dict of logged values per epoch.
        best: The best value of the monitored quantity so far, or ``None``.
        best_epoch: Epoch (from 1) of the best value, or ``None``.
        wait: Epochs since the last improvement (early stopping's counter).
        stopped_early: Whether early stopping ended the run.
        best_weights: Values of the network's weights at the best epoch (from
            ``snapshot_weights``), or ``None``.

    Example:

    >>> from dlstructured.training.state import TrainingState
    >>> state = TrainingState(epoch=2, seed=0, rows=[{"loss": 1.0}, {"loss": 0.5}], best=0.5,
    ...                       best_epoch=2)
    >>> TrainingState.from_dict(state.to_dict()) == state
    True
    """

    epoch: int = 0
    seed: int | None = None
    rows: list[dict[str, float]] = field(default_factory=list)
    best: float | None = None
    best_epoch: int | None = None
    wait: int = 0
    stopped_early: bool = False
    best_weights: list[np.ndarray] | None = field(default=None, compare=False, repr=False)

    def to_dict(self) -> dict[str, Any]:
        """The state as plain JSON data, best weights left out (they go to a ``.npz`` file)."""
        return {
            "epoch": int(self.epoch),
            "seed": self.seed,
            "rows": [{k: float(v) for k, v in row.items()} for row in self.rows[: self.epoch]],
            "best": None if self.best is None else float(self.best),
            "best_epoch": self.best_epoch,
            "wait": int(self.wait),
            "stopped_early": bool(self.stopped_early),
        }

    @classmethod
    def from_dict(
        cls, payload: dict[str, Any], best_weights: list[np.ndarray] | None = None
    ) -> TrainingState:
        """The state ``to_dict`` gave (also a checkpoint's ``state.json``, format 1)."""
        return cls(
            epoch=int(payload["epoch"]),
            seed=None if payload.get("seed") is None else int(payload["seed"]),
            rows=[dict(row) for row in payload["rows"]],
            best=payload["best"],
            best_epoch=payload["best_epoch"],
            wait=int(payload["wait"]),
            stopped_early=bool(payload["stopped_early"]),
            best_weights=best_weights,
        )


__all__ = ["TrainingState", "restore_weights", "snapshot_weights"]
