"""The contract between ``train`` and its engines: what an engine is given, and where its rows
come from.

An engine (``_engine_jax``, ``_engine_keras``) is anything with a ``fit(network, source, spec)``
method. ``train`` checks every argument, then hands the engine:

- ``network``: the Keras model to train in place;
- ``source``: a ``BatchSource``, the training rows: how many there are, and the batches of one
  epoch in an order fixed by ``(seed, epoch)``. ``ArraySource`` holds them in memory; a streamed
  table can be another source (the engines treat any source alike, and take a faster path for an
  ``ArraySource``);
- ``spec``: a ``FitSpec``, every other fit argument.

Under a ``keras.distribution.DataParallel`` scope (JAX) the source is this process's rows and
``spec.batch_size`` the global batch (see ``training.parallel``).

Every engine leaves the network in the same state: compiled with ``spec``'s optimizer, loss and
metrics (so ``network.optimizer`` is the run's optimizer, and ``network.evaluate`` works), its
variables holding the trained values, ``network.stop_training`` as the last epoch left it.

Both engines draw the rows of epoch ``e`` from ``source.batches(e, ...)`` (or, for an
``ArraySource``, its ``order(e, seed)``), the epoch number coming from ``on_epoch_begin``, so
the same seed gives the same batches whatever the engine and wherever a run resumes.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import numpy as np

Batch = tuple[np.ndarray, np.ndarray, "np.ndarray | None"]


def epoch_order(num_rows: int, seed: int | None, epoch: int) -> np.ndarray | None:
    """Row order of one epoch: a permutation fixed by ``(seed, epoch)``, or ``None`` (in order).

    Example:

    >>> from dlstructured.training.contract import epoch_order
    >>> sorted(epoch_order(5, 0, 1).tolist())
    [0, 1, 2, 3, 4]
    >>> epoch_order(5, None, 1) is None
    True
    """
    if seed is None:
        return None
    return np.random.default_rng((seed, epoch)).permutation(num_rows).astype(np.int32)


@runtime_checkable
class BatchSource(Protocol):
    """Where an engine takes its training rows from.

    A source knows how many rows it has and gives the batches of one epoch, each a tuple
    ``(x, y, sample_weight_or_None)`` of numpy arrays, in an order that depends only on
    ``(seed, epoch)`` (in order when ``seed`` is ``None``). Every row appears once per epoch;
    every batch has ``batch_size`` rows except possibly the last.
    """

    @property
    def num_rows(self) -> int:
        """Number of training rows."""
        ...

    def batches(self, epoch: int, *, batch_size: int, seed: int | None) -> Iterator[Batch]:
        """The batches of epoch ``epoch`` (from 0)."""
        ...


class ArraySource:
    """Training rows held in memory as numpy arrays.

    Args:
        x: Features, float32 of shape ``(rows, features)``.
        y: Targets of shape ``(rows,)``: float32, or int32 class codes.
        sample_weight: Float32 weights of shape ``(rows,)``. Defaults to ``None``.

    Raises:
        ValueError: If the arrays do not have the same number of rows.

    Example:

    >>> import numpy as np
    >>> from dlstructured.training.contract import ArraySource
    >>> source = ArraySource(np.zeros((5, 2), "float32"), np.arange(5, dtype="float32"))
    >>> [batch[1].tolist() for batch in source.batches(0, batch_size=2, seed=None)]
    [[0.0, 1.0], [2.0, 3.0], [4.0]]
    """

    def __init__(self, x: np.ndarray, y: np.ndarray, sample_weight: np.ndarray | None = None):
        lengths = {len(x), len(y)} | ({len(sample_weight)} if sample_weight is not None else set())
        if len(lengths) != 1:
            raise ValueError(
                "`x`, `y` and `sample_weight` must have one row each per training row. "
                f"Received: {len(x)}, {len(y)} and "
                f"{None if sample_weight is None else len(sample_weight)} rows"
            )
        self.x, self.y, self.sample_weight = x, y, sample_weight

    @property
    def num_rows(self) -> int:
        """Number of training rows."""
        return len(self.x)

    def order(self, epoch: int, seed: int | None) -> np.ndarray | None:
        """The row order of epoch ``epoch``: ``epoch_order(num_rows, seed, epoch)``."""
        return epoch_order(self.num_rows, seed, epoch)

    def batches(self, epoch: int, *, batch_size: int, seed: int | None) -> Iterator[Batch]:
        """The batches of epoch ``epoch``, rows in ``order(epoch, seed)``."""
        order = self.order(epoch, seed)
        for start in range(0, self.num_rows, batch_size):
            rows = slice(start, start + batch_size)
            if order is not None:
                rows = order[rows]
            weights = None if self.sample_weight is None else self.sample_weight[rows]
            yield self.x[rows], self.y[rows], weights


@dataclass(frozen=True)
class FitSpec:
    """Every argument of an engine's ``fit`` other than the network and the rows.

    Attributes:
        loss: A Keras loss object, called as ``loss(y_true, y_pred, sample_weight)``.
        metrics: Fresh Keras metric objects.
        optimizer: A Keras optimizer, built on the network's trainable variables or not yet.
        epochs: Index of the epoch to stop before (0-based, like Keras).
        batch_size: Rows per training step; the last, partial batch is used too.
        callbacks: A ``keras.callbacks.CallbackList`` whose model is the network.
        initial_epoch: Index of the first epoch to run. Defaults to ``0``.
        seed: Fixes the row order of each epoch; ``None`` keeps the rows in order. Defaults to
            ``None``.
        validation: ``None``, ``(x_valid, y_valid, sample_weight_valid_or_None)``, or a
            ``BatchSource`` of the validation rows (read in order, ``seed=None``, epoch 0).
            Defaults to ``None``.
    """

    loss: Any
    metrics: tuple[Any, ...]
    optimizer: Any
    epochs: int
    batch_size: int
    callbacks: Any
    initial_epoch: int = 0
    seed: int | None = None
    validation: tuple | BatchSource | None = None


@runtime_checkable
class Engine(Protocol):
    """A training engine: trains ``network`` in place on ``source`` as ``spec`` says.

    It sends the callbacks ``on_train_begin``, ``on_epoch_begin``, ``on_epoch_end`` (with the
    network's variables up to date) and ``on_train_end``, stops after an epoch that sets
    ``network.stop_training``, and leaves the network compiled with ``spec``'s optimizer, loss
    and metrics.
    """

    def fit(self, network: Any, source: BatchSource, spec: FitSpec) -> None:
        """Train ``network`` in place."""
        ...


def compile_like_every_engine(network: Any, spec: FitSpec) -> None:
    """Compile ``network`` with ``spec``'s optimizer, loss and metrics: the state every engine
    leaves it in."""
    network.compile(optimizer=spec.optimizer, loss=spec.loss, metrics=list(spec.metrics))


__all__ = ["ArraySource", "BatchSource", "Engine", "FitSpec", "epoch_order"]
