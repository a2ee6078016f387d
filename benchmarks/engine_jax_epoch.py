"""Per-epoch time of the JAX engine against plain Keras ``fit``, on the JAX backend.

Not a test. Synthetic data shaped like the course's two small workloads:

- ionosphere: 246 training rows x 33 features, Dense(4)-Dense(4)-Dense(1, sigmoid), batch 512
  (one partial batch per epoch, so the epoch time is almost all overhead);
- red wine: 1119 x 11, validation 480 rows, Dense(512) x 3 then Dense(1), MAE, batch 256.

Also measures numpy's float32 matrix-product peak in the same run, and the FLOP rate of the
engine on the red wine model (forward and backward of the training rows, forward of the
validation rows; 2 FLOP per multiply-add, backward counted as twice the forward), from the
fastest epoch.

Usage::

    KERAS_BACKEND=jax PYTHONPATH=src python benchmarks/engine_jax_epoch.py [--epochs N]
"""

from __future__ import annotations

import argparse
import time

import keras
import numpy as np

from dlstructured import binary_classifier, dense_stack
from dlstructured.training import _engine_jax
from dlstructured.training.contract import ArraySource, FitSpec


def matmul_peak(size: int = 1024, repeats: int = 20) -> tuple[float, float]:
    """numpy float32 GFLOP/s: per wall second (best run) and per CPU second (median run)."""
    a = np.random.default_rng(0).random((size, size), dtype=np.float32)
    b = a.copy()
    a @ b
    walls, cpus = [], []
    for _ in range(repeats):
        start, cpu = time.perf_counter(), time.process_time()
        a @ b
        walls.append(time.perf_counter() - start)
        cpus.append(time.process_time() - cpu)
    flop = 2 * size**3
    return flop / min(walls) / 1e9, flop / float(np.median(cpus)) / 1e9


class _Timer(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.ends, self.cpu_ends = [], []

    def on_epoch_end(self, epoch, logs=None):
        self.ends.append(time.perf_counter())
        self.cpu_ends.append(time.process_time())


def per_epoch(timer: _Timer) -> tuple[float, float, float]:
    """Median and minimum wall seconds, and median CPU seconds, between epoch ends.

    The first epoch (compilation) is left out.
    """
    gaps = np.diff(timer.ends[1:])
    cpu_gaps = np.diff(timer.cpu_ends[1:])
    return float(np.median(gaps)), float(np.min(gaps)), float(np.median(cpu_gaps))


def run_engine(build, x, y, valid, loss, metrics, epochs, batch_size):
    network = build()
    timer = _Timer()
    callbacks = keras.callbacks.CallbackList([timer], model=network)
    _engine_jax.ENGINE.fit(
        network,
        ArraySource(x, y),
        FitSpec(
            loss=loss(),
            metrics=tuple(metrics()),
            optimizer=keras.optimizers.Adam(),
            epochs=epochs,
            batch_size=batch_size,
            callbacks=callbacks,
            seed=0,
            validation=None if valid is None else (*valid[:2], None),
        ),
    )
    return per_epoch(timer)


def run_bare_program(build, x, y, valid, loss, metrics, epochs, batch_size):
    """Seconds per call of the compiled epoch alone (no callbacks, no variable write-back)."""
    import jax.numpy as jnp

    network = build()
    optimizer = keras.optimizers.Adam()
    optimizer.build(network.trainable_variables)
    program = _engine_jax._EpochProgram(
        network,
        loss=loss(),
        metrics=metrics(),
        optimizer=optimizer,
        num_rows=len(x),
        batch_size=batch_size,
        num_valid_rows=len(valid[0]),
    )
    data = (jnp.asarray(x), jnp.asarray(y), None)
    valid_data = program.validation_arrays(valid[0], valid[1], None)
    order = jnp.asarray(_engine_jax.epoch_order(len(x), 0, 0))
    state = tuple(
        _engine_jax._values(v, set())
        for v in (network.trainable_variables, network.non_trainable_variables, optimizer.variables)
    )
    times = []
    for _ in range(epochs):
        start = time.perf_counter()
        state, values = program.run(state, data, valid_data, order)
        values.block_until_ready()
        times.append(time.perf_counter() - start)
    return float(np.median(times[1:])), float(np.min(times[1:])), 0.0


def run_keras(build, x, y, valid, loss, metrics, epochs, batch_size):
    network = build()
    network.compile(optimizer=keras.optimizers.Adam(), loss=loss(), metrics=metrics())
    timer = _Timer()
    validation_data = None if valid is None else valid[:2]
    network.fit(
        x,
        y,
        validation_data=validation_data,
        batch_size=batch_size,
        epochs=epochs,
        callbacks=[timer],
        verbose=0,
    )
    return per_epoch(timer)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--epochs", type=int, default=200)
    args = parser.parse_args()
    rng = np.random.default_rng(0)

    x = rng.normal(size=(246, 33)).astype(np.float32)
    y = (x[:, 0] + x[:, 1] > 0).astype(np.float32)
    xv = rng.normal(size=(105, 33)).astype(np.float32)
    yv = (xv[:, 0] + xv[:, 1] > 0).astype(np.float32)
    iono = dict(
        build=lambda: binary_classifier(33, hidden_units=(4, 4), seed=0),
        x=x,
        y=y,
        valid=(xv, yv, None),
        loss=keras.losses.BinaryCrossentropy,
        metrics=lambda: [
            keras.metrics.BinaryAccuracy(name="binary_accuracy"),
            keras.metrics.AUC(name="auc"),
        ],
        batch_size=512,
    )
    x = rng.normal(size=(1119, 11)).astype(np.float32)
    y = rng.normal(size=(1119,)).astype(np.float32)
    xv = rng.normal(size=(480, 11)).astype(np.float32)
    yv = rng.normal(size=(480,)).astype(np.float32)
    wine = dict(
        build=lambda: dense_stack(11, hidden_units=(512, 512, 512), seed=0),
        x=x,
        y=y,
        valid=(xv, yv, None),
        loss=keras.losses.MeanAbsoluteError,
        metrics=lambda: [keras.metrics.MeanAbsoluteError(name="mae")],
        batch_size=256,
    )
    dense_flops = 2 * (11 * 512 + 512 * 512 * 2 + 512)
    wine_flops = 3 * dense_flops * 1119 + dense_flops * 480

    peak, peak_cpu = matmul_peak()
    print(
        f"numpy float32 matmul peak: {peak:.0f} GFLOP/s (best wall), "
        f"{peak_cpu:.0f} GFLOP per CPU-second (median)"
    )
    for name, work, epochs in (
        ("ionosphere 4-4-1", iono, args.epochs),
        ("red wine 512x3", wine, max(args.epochs // 10, 10)),
    ):
        engine_median, engine_min, engine_cpu = run_engine(epochs=epochs, **work)
        bare_median, bare_min, _ = run_bare_program(epochs=epochs, **work)
        keras_median, keras_min, keras_cpu = run_keras(epochs=max(epochs // 4, 5), **work)
        print(
            f"{name}: engine {engine_median * 1e3:.2f} ms/epoch (min {engine_min * 1e3:.2f}, "
            f"CPU {engine_cpu * 1e3:.2f}); compiled epoch alone {bare_median * 1e3:.2f} "
            f"(min {bare_min * 1e3:.2f}); overhead {(engine_median - bare_median) * 1e3:.2f} "
            f"(min-to-min {(engine_min - bare_min) * 1e3:.2f}) ms/epoch; keras fit "
            f"{keras_median * 1e3:.2f} ms/epoch (min {keras_min * 1e3:.2f}, CPU "
            f"{keras_cpu * 1e3:.2f}); engine/keras {engine_median / keras_median:.3f}"
        )
        if name.startswith("red wine"):
            rate = wine_flops / engine_min / 1e9
            rate_cpu = wine_flops / engine_cpu / 1e9
            print(
                f"  red wine engine: {rate:.0f} GFLOP/s in its fastest epoch = {rate / peak:.0%} "
                f"of the matmul peak; {rate_cpu:.0f} GFLOP per CPU-second = "
                f"{rate_cpu / peak_cpu:.0%} of numpy's"
            )


if __name__ == "__main__":
    main()
