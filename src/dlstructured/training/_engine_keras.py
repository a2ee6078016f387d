"""The generic training engine: Keras's own ``fit``, on any backend.

It implements ``contract.Engine``. The batches come from the ``BatchSource``, for the epoch
that ``on_epoch_begin`` names (not a count of Keras's ``on_epoch_end`` calls on the data,
which Keras also makes once before the first epoch), so a run is repeatable without touching
any global random state, draws the same rows per epoch as the JAX engine, and a resumed run sees
the same order as an uninterrupted one. On TensorFlow an ``ArraySource`` becomes one tf.data
pipeline instead, far cheaper per epoch than a Python data source.
"""

from __future__ import annotations

from typing import Any

import keras

from dlstructured.training.contract import (
    ArraySource,
    BatchSource,
    FitSpec,
    compile_like_every_engine,
    epoch_order,
)

__all__ = ["ENGINE", "KerasEngine", "epoch_order"]


class _Batches(keras.utils.PyDataset):
    """The batches of a ``BatchSource`` for the epoch ``_EpochFollower`` sets.

    Keras asks for the batches of an epoch in order (no workers), so they are read from the
    source's iterator one at a time: memory holds one batch, not the epoch. Asked out of order,
    it starts the epoch's iterator again.
    """

    def __init__(self, source: BatchSource, batch_size: int, seed: int | None, epoch: int):
        super().__init__()
        self.source, self.batch_size, self.seed = source, batch_size, seed
        self.epoch = epoch
        self._reading: tuple[int, int, Any] | None = None  # (epoch, next index, iterator)

    def __len__(self) -> int:
        return -(-self.source.num_rows // self.batch_size)

    def __getitem__(self, index: int):
        if self._reading is None or self._reading[:2] != (self.epoch, index):
            batches = self.source.batches(self.epoch, batch_size=self.batch_size, seed=self.seed)
            self._reading = (self.epoch, 0, iter(batches))
            for _ in range(index):
                next(self._reading[2])
        epoch, _, batches = self._reading
        x, y, weights = next(batches)
        self._reading = (epoch, index + 1, batches)
        return (x, y) if weights is None else (x, y, weights)


class _EpochFollower(keras.callbacks.Callback):
    """Tells the batches which epoch begins."""

    def __init__(self, batches: _Batches):
        super().__init__()
        self.batches = batches

    def on_epoch_begin(self, epoch, logs=None):
        self.batches.epoch = epoch


class KerasEngine:
    """Trains with ``keras.Model.fit``; see ``contract.Engine``."""

    name = "keras"

    def fit(self, network: Any, source: BatchSource, spec: FitSpec) -> None:
        """Train ``network`` in place on ``source`` as ``spec`` says."""
        compile_like_every_engine(network, spec)
        validation_data = None
        if isinstance(spec.validation, BatchSource):
            validation_data = _Batches(
                spec.validation, max(spec.batch_size, 1024), seed=None, epoch=0
            )
        elif spec.validation is not None:
            x_valid, y_valid, w_valid = spec.validation
            validation_data = (x_valid, y_valid) if w_valid is None else (x_valid, y_valid, w_valid)
        steps = -(-source.num_rows // spec.batch_size)
        callbacks = list(spec.callbacks.callbacks)
        validation_batch_size = max(spec.batch_size, 1024)
        extra = {}
        if keras.backend.backend() == "tensorflow" and isinstance(source, ArraySource):
            batches = _tensorflow_batches(
                source.x, source.y, source.sample_weight, spec.batch_size, spec.seed,
                spec.initial_epoch, spec.epochs,
            )
            if isinstance(validation_data, tuple):
                validation_data = _tensorflow_validation(validation_data, validation_batch_size)
        else:
            batches = _Batches(source, spec.batch_size, spec.seed, spec.initial_epoch)
            callbacks.insert(0, _EpochFollower(batches))
            if isinstance(validation_data, tuple):
                extra["validation_batch_size"] = validation_batch_size
        network.fit(
            batches,
            steps_per_epoch=steps,
            epochs=spec.epochs,
            initial_epoch=spec.initial_epoch,
            validation_data=validation_data,
            callbacks=callbacks,
            shuffle=False,
            verbose=0,
            **extra,
        )


ENGINE = KerasEngine()


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
