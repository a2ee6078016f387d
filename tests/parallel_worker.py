"""One process of the data-parallel tests (``tests/test_parallel.py`` starts it).

Usage::

    python tests/parallel_worker.py MODE OUT [PROCESS_ID NUM_PROCESSES PORT]

``MODE`` is ``reference`` (one device, no distribution, the shards' batches side by side as one
source), ``local`` (the same source under ``DataParallel`` over this process's devices) or
``processes`` (this process's shard under ``DataParallel`` across processes joined on
127.0.0.1:PORT). Writes the trained weights and the history to ``OUT`` (an ``.npz`` file),
and under a distribution checkpoints to ``OUT.checkpoints``; ``local`` also records Keras's
engine under the distribution and without it, and the error of a batch size that does not split.
The devices per process come from ``XLA_FLAGS`` (set by the caller).
"""

from __future__ import annotations

import sys

import numpy as np

# Unequal shards: the processes agree on 52 rows each per epoch (rank 1 leaves 8 of its 60 out,
# other ones each epoch), and pad their 20 and 13 validation rows to 20.
SHARD_ROWS, VALID_ROWS, FEATURES = (52, 60), (20, 13), 4
BATCH, EPOCHS, SEED = 16, 2, 3  # local batch 8 in two processes: 6 steps and a partial of 4


def shards():
    """Two processes' training and validation rows: ``[(x, y, x_valid, y_valid), ...]``."""
    rng = np.random.default_rng(0)
    coefficients = rng.normal(size=FEATURES)
    parts = []
    for rows, valid_rows in zip(SHARD_ROWS, VALID_ROWS, strict=True):
        x = rng.normal(size=(rows + valid_rows, FEATURES)).astype(np.float32)
        y = (x @ coefficients + 0.3 * x[:, 0] ** 2).astype(np.float32)
        parts.append((x[:rows], y[:rows], x[rows:], y[rows:]))
    return parts


class SideBySide:
    """One source whose batch ``i`` is every shard's batch ``i`` (of ``batch_size // shards``
    rows) one after the other, each shard cut to the smallest one's rows: the global batches
    of the processes, in one process."""

    def __init__(self, sources):
        self.sources = sources
        self.rows_each = min(source.num_rows for source in sources)

    @property
    def num_rows(self):
        return self.rows_each * len(self.sources)

    def batches(self, epoch, *, batch_size, seed):
        local = batch_size // len(self.sources)
        streams = [_first(s.batches(epoch, batch_size=local, seed=seed), self.rows_each)
                   for s in self.sources]
        for parts in zip(*streams, strict=True):
            x, y, _ = zip(*parts, strict=True)
            yield np.concatenate(x), np.concatenate(y), None


def _first(batches, rows):
    """The batches of the first ``rows`` rows."""
    for x, y, weights in batches:
        if rows <= 0:
            return
        yield x[:rows], y[:rows], None if weights is None else weights[:rows]
        rows -= len(x)


def main(mode, out, process_id=0, num_processes=1, port=0):
    import keras

    if mode == "processes":
        keras.distribution.initialize(
            job_addresses=f"127.0.0.1:{port}", num_processes=num_processes,
            process_id=process_id,
        )
    from dlstructured import dense_stack, train
    from dlstructured.training.contract import ArraySource
    from dlstructured.training.parallel import is_primary

    parts = shards()
    if mode == "processes":
        x, y, x_valid, y_valid = parts[process_id]
        rows, validation = ArraySource(x, y), ArraySource(x_valid, y_valid)
    else:
        rows = SideBySide([ArraySource(x, y) for x, y, _, _ in parts])
        validation = ArraySource(
            np.concatenate([p[2] for p in parts]), np.concatenate([p[3] for p in parts])
        )

    def run(engine="jax", batch_size=BATCH, validation_data=validation, **options):
        # Mean squared error: mean absolute error's gradient jumps where a row's error crosses
        # zero, and Adam would scale up the sign flips that rounding causes there.
        network = dense_stack(FEATURES, hidden_units=(8, 8), batch_norm=True, seed=1)
        return train(network, rows, validation_data=validation_data, epochs=EPOCHS, loss="mse",
                     batch_size=batch_size, seed=SEED, early_stopping=True, engine=engine,
                     **options)

    extra = {}
    if mode == "reference":
        result = run()
    else:
        checkpoints = f"{out}.checkpoints"
        with keras.distribution.DataParallel().scope():
            result = run(checkpoint_dir=checkpoints)
        if mode == "local":
            # Keras's own engine under the same distribution, against it without one. Keras
            # shards every batch itself, so each must split over the devices: the 33
            # validation rows would not.
            with keras.distribution.DataParallel().scope():
                keras_history = run(engine="keras", validation_data=None).history.to_numpy()
            extra["keras_history"] = keras_history
            extra["keras_reference"] = run(engine="keras", validation_data=None).history
            extra["keras_reference"] = extra["keras_reference"].to_numpy()
            try:
                with keras.distribution.DataParallel().scope():
                    run(batch_size=BATCH - 1)
            except ValueError as error:
                extra["odd_batch_error"] = np.array(str(error))
    weights = result.model.get_weights()
    np.savez(
        out, history=result.history.to_numpy(), columns=np.array(result.history.columns, dtype=str),
        primary=np.array(is_primary()), devices=np.array(len(keras.distribution.list_devices())),
        **{f"weight_{i}": w for i, w in enumerate(weights)}, **extra,
    )


if __name__ == "__main__":
    arguments = sys.argv[1:]
    main(arguments[0], arguments[1], *(int(a) for a in arguments[2:]))
