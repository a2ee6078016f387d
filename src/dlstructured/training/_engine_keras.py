"""The generic training engine: Keras's own ``fit``, on any backend.

It feeds the batches itself, in an order that depends only on ``(seed, epoch)``, so a run is
repeatable without touching any global random state and a resumed run sees the same order as an
uninterrupted one.
"""

from __future__ import annotations

from typing import Any

import keras
import numpy as np


def epoch_order(num_rows: int, seed: int | None, epoch: int) -> np.ndarray | None:
    """Row order of one epoch: a permutation fixed by ``(seed, epoch)``, or ``None`` (in order)."""
    if seed is None:
        return None
    return np.random.default_rng((seed, epoch)).permutation(num_rows).astype(np.int32)


class _Batches(keras.utils.PyDataset):
    """Batches of ``(x, y[, sample_weight])`` in the order of ``epoch_order``."""

    def __init__(self, x, y, sample_weight, batch_size, seed, initial_epoch):
        super().__init__()
        self.x, self.y, self.sample_weight = x, y, sample_weight
        self.batch_size, self.seed = batch_size, seed
        self.epoch = initial_epoch
        self.order = epoch_order(len(x), seed, initial_epoch)

    def __len__(self) -> int:
        return -(-len(self.x) // self.batch_size)

    def __getitem__(self, index: int):
        rows = slice(index * self.batch_size, (index + 1) * self.batch_size)
        if self.order is not None:
            rows = self.order[rows]
        batch = (self.x[rows], self.y[rows])
        if self.sample_weight is not None:
            batch += (self.sample_weight[rows],)
        return batch

    def on_epoch_end(self) -> None:
        self.epoch += 1
        self.order = epoch_order(len(self.x), self.seed, self.epoch)


def fit(
    network: Any,
    *,
    x: np.ndarray,
    y: np.ndarray,
    sample_weight: np.ndarray | None,
    validation: tuple | None,
    loss: Any,
    metrics: list,
    optimizer: Any,
    epochs: int,
    initial_epoch: int,
    batch_size: int,
    seed: int | None,
    callbacks: Any,
) -> None:
    """Train ``network`` in place with ``keras.Model.fit``; see ``training.train`` for arguments."""
    network.compile(optimizer=optimizer, loss=loss, metrics=metrics)
    validation_data = None
    if validation is not None:
        x_valid, y_valid, w_valid = validation
        validation_data = (x_valid, y_valid) if w_valid is None else (x_valid, y_valid, w_valid)
    steps = -(-len(x) // batch_size)
    if keras.backend.backend() == "tensorflow":
        # A tf.data pipeline built once is far cheaper per epoch than a Python data source.
        batches = _tensorflow_batches(x, y, sample_weight, batch_size, seed, initial_epoch, epochs)
        if validation_data is not None:
            validation_data = _tensorflow_validation(validation_data, max(batch_size, 1024))
    else:
        batches = _Batches(x, y, sample_weight, batch_size, seed, initial_epoch)
    extra = {} if validation_data is None or not isinstance(validation_data, tuple) else {
        "validation_batch_size": max(batch_size, 1024)
    }
    network.fit(
        batches,
        steps_per_epoch=steps,
        epochs=epochs,
        initial_epoch=initial_epoch,
        validation_data=validation_data,
        callbacks=list(callbacks.callbacks),
        shuffle=False,
        verbose=0,
        **extra,
    )


def _tensorflow_batches(x, y, sample_weight, batch_size, seed, initial_epoch, epochs):
    """All epochs' batches as one tf.data pipeline, each epoch's order fixed by (seed, epoch)."""
    import tensorflow as tf

    num_rows = len(x)
    tensors = [tf.constant(x), tf.constant(y)]
    if sample_weight is not None:
        tensors.append(tf.constant(sample_weight))

    def epoch_rows(epoch):
        rows = tf.range(num_rows, dtype=tf.int64)
        if seed is not None:
            rows = tf.random.experimental.stateless_shuffle(
                rows, seed=tf.stack([tf.constant(seed, tf.int64), epoch])
            )
        return tf.data.Dataset.from_tensor_slices(rows).batch(batch_size)

    def gather(rows):
        return tuple(tf.gather(t, rows) for t in tensors)

    return (
        tf.data.Dataset.range(initial_epoch, epochs)
        .flat_map(epoch_rows)
        .map(gather)
        .prefetch(2)
        .with_options(_without_autotuning())
    )


def _tensorflow_validation(validation_data, batch_size):
    import tensorflow as tf

    batches = tf.data.Dataset.from_tensor_slices(validation_data).batch(batch_size).cache()
    return batches.with_options(_without_autotuning())


def _without_autotuning():
    """tf.data options that turn its autotuning thread off.

    Gathering a batch of rows is cheap, so a fixed prefetch of two batches keeps the step fed.
    The autotuning thread would cost CPU during training, and destroying the iterator waits
    for its current optimization round, which took from 1 to 30 seconds at the end of
    training here (2 cores, TensorFlow 2.21).
    """
    import tensorflow as tf

    options = tf.data.Options()
    options.autotune.enabled = False
    return options
