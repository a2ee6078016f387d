"""One side of one benchmark workload, in a process of its own; writes its figures as JSON.

Usage (``run.py`` does this; the Keras backend comes from ``KERAS_BACKEND``)::

    python benchmarks/_worker.py --side keras --workload redwine_512x3 --result out.json

``--side keras`` is the course's recipe in plain Keras, written the way the course writes it: a
pandas split with ``sample(frac=0.7, random_state=0)``, min-max scaling fitted on the training
part (target included), a ``keras.Sequential`` model, ``compile`` and ``fit`` on DataFrames.
``--side dlstructured`` does the same work through dlstructured's public API: ``prepare``, a
builder and ``train``.
"""

from __future__ import annotations

import time

WORKER_START = time.perf_counter()

import argparse  # noqa: E402  (the clock starts before any import)
import json  # noqa: E402
import os  # noqa: E402
import resource  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import traceback  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
from _workloads import COURSE_METRICS, WORKLOADS, course_split, inference_rows, load  # noqa: E402

SEED = 0


# ------------------------------------------------------------------------------------------
# Memory: peak resident set size of a region, measured from just before it.
# ------------------------------------------------------------------------------------------


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"/proc/self/status has no {field}")


class PeakRSS:
    """Peak RSS growth of a ``with`` block: VmHWM after it minus VmRSS just before it.

    Linux resets VmHWM (the peak) to the current RSS when "5" is written to
    ``/proc/self/clear_refs``, so earlier peaks (data generation, imports) do not count. Where
    that is not allowed, the lifetime peak is used and ``reset`` is False (an upper bound).
    """

    def __enter__(self):
        try:
            with open("/proc/self/clear_refs", "w") as refs:
                refs.write("5")
            self.reset = True
        except OSError:
            self.reset = False
        self.before_kib = _status_kib("VmRSS")
        return self

    def __exit__(self, *exc_info):
        self.peak_kib = _status_kib("VmHWM")
        self.growth_mib = (self.peak_kib - self.before_kib) / 1024.0
        return False


# ------------------------------------------------------------------------------------------
# The course's recipe in plain Keras.
# ------------------------------------------------------------------------------------------


def _device(backend: str) -> str:
    """The device the backend computes on, e.g. ``cpu`` or the GPU's name."""
    if backend == "jax":
        import jax

        device = jax.devices()[0]
        return f"{device.platform}: {device.device_kind}"
    if backend == "tensorflow":
        import tensorflow as tf

        gpus = tf.config.list_physical_devices("GPU")
        return f"gpu: {len(gpus)} visible" if gpus else "cpu"
    return backend


def course_model(name: str, input_shape: list[int]):
    """The course's ``keras.Sequential`` model for a workload, layer for layer."""
    import keras
    from keras import layers

    if name in ("redwine_512x3", "inference"):
        return keras.Sequential(
            [
                keras.Input(shape=input_shape),
                layers.Dense(512, activation="relu"),
                layers.Dense(512, activation="relu"),
                layers.Dense(512, activation="relu"),
                layers.Dense(1),
            ]
        )
    if name == "redwine_1024x3_bn":
        return keras.Sequential(
            [
                keras.Input(shape=input_shape),
                layers.Dense(1024, activation="relu"),
                layers.Dropout(0.3),
                layers.BatchNormalization(),
                layers.Dense(1024, activation="relu"),
                layers.Dropout(0.3),
                layers.BatchNormalization(),
                layers.Dense(1024, activation="relu"),
                layers.Dropout(0.3),
                layers.BatchNormalization(),
                layers.Dense(1),
            ]
        )
    if name in ("ionosphere_4x4", "inference_ionosphere"):
        return keras.Sequential(
            [
                keras.Input(shape=input_shape),
                layers.Dense(4, activation="relu"),
                layers.Dense(4, activation="relu"),
                layers.Dense(1, activation="sigmoid"),
            ]
        )
    if name == "hotel_89k":
        return keras.Sequential(
            [
                keras.Input(shape=input_shape),
                layers.BatchNormalization(),
                layers.Dense(256, activation="relu"),
                layers.BatchNormalization(),
                layers.Dropout(0.3),
                layers.Dense(256, activation="relu"),
                layers.BatchNormalization(),
                layers.Dropout(0.3),
                layers.Dense(1, activation="sigmoid"),
            ]
        )
    if name == "memory_1m":
        return keras.Sequential(
            [
                keras.Input(shape=input_shape),
                layers.Dense(64, activation="relu"),
                layers.Dense(64, activation="relu"),
                layers.Dense(1),
            ]
        )
    raise ValueError(f"No course model for workload {name!r}")


def course_prepare(name: str, frame, target: str):
    """Split and scale as the course does. Returns frames and the target's (min, max)."""
    df_train, df_valid = course_split(frame)
    if name == "hotel_89k":
        # The course standardizes the hotel features (StandardScaler) and keeps the 0/1 target.
        features = df_train.columns.drop(target)
        mean, std = df_train[features].mean(), df_train[features].std(ddof=0)
        df_train = df_train.assign(**((df_train[features] - mean) / std))
        df_valid = df_valid.assign(**((df_valid[features] - mean) / std))
        low, high = 0.0, 1.0
    else:
        # Min-max scaling fitted on the training part, target included.
        max_ = df_train.max(axis=0)
        min_ = df_train.min(axis=0)
        df_train = (df_train - min_) / (max_ - min_)
        df_valid = (df_valid - min_) / (max_ - min_)
        low, high = float(min_[target]), float(max_[target])
    X_train = df_train.drop(target, axis=1)
    X_valid = df_valid.drop(target, axis=1)
    y_train = df_train[target]
    y_valid = df_valid[target]
    return X_train, X_valid, y_train, y_valid, (low, high)


def course_compile(model, task: str) -> None:
    if task == "regression":
        model.compile(optimizer="adam", loss="mae")
    else:
        model.compile(optimizer="adam", loss="binary_crossentropy", metrics=["binary_accuracy"])


def course_recipe(workload, frame, target: str):
    """Seed, split, scale, build and compile as the course does; the model and its data."""
    import keras

    keras.utils.set_random_seed(SEED)  # a user script may seed globally; the library never does
    X_train, X_valid, y_train, y_valid, limits = course_prepare(workload.name, frame, target)
    model = course_model(workload.name, [X_train.shape[1]])
    course_compile(model, workload.task)
    return model, (X_train, X_valid, y_train, y_valid), limits


def epoch_clock():
    """A Keras callback that notes when each epoch ends (``perf_counter`` seconds).

    Both sides get one, so the first epoch (which includes compiling) and the steady epochs
    after it can be told apart; one clock read per epoch costs nothing measurable.
    """
    import keras

    class EpochClock(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.ends = []

        def on_epoch_end(self, epoch, logs=None):
            self.ends.append(time.perf_counter())

    return EpochClock()


def record_epochs(clock, fit_start: float, out: dict) -> None:
    out["epoch_end_s"] = [end - fit_start for end in clock.ends]


def course_fit(workload, model, parts, epochs: int, callbacks=()):
    """The course's ``model.fit`` call, without early stopping."""
    X_train, X_valid, y_train, y_valid = parts
    return model.fit(
        X_train,
        y_train,
        validation_data=(X_valid, y_valid),
        batch_size=workload.batch_size,
        epochs=epochs,
        verbose=0,
        callbacks=list(callbacks),
    )


def keras_train(workload, frame, target: str, epochs: int, out: dict) -> None:
    start = time.perf_counter()
    model, parts, (low, high) = course_recipe(workload, frame, target)
    X_train, X_valid = parts[:2]
    out["prepare_s"] = time.perf_counter() - start
    clock = epoch_clock()
    start = time.perf_counter()
    history = course_fit(workload, model, parts, epochs, callbacks=[clock])
    out["fit_s"] = time.perf_counter() - start
    record_epochs(clock, start, out)
    out.update(n_train=len(X_train), n_valid=len(X_valid), num_features=int(X_train.shape[1]))
    out["epochs_run"] = len(history.history["loss"])
    out["engine"] = "keras.Model.fit"
    _record_metrics(history.history, workload.task, high - low, out, in_units=False)


def _record_metrics(history: dict, task: str, unit_scale: float, out: dict, *, in_units: bool):
    """Final and best validation metric; for regression the MAE in the target's own units.

    ``unit_scale`` is the training range of the target (the course's min-max scaling); with
    ``in_units`` the history is already in target units (``dlstructured.train`` reports it so).
    """
    if task == "regression":
        key = "val_mae" if "val_mae" in history else "val_loss"
        values = [float(v) for v in history[key]]
        to_units = 1.0 if in_units else unit_scale
        out["val_metric_name"] = "val_mae_target_units"
        out["val_metric_final"] = values[-1] * to_units
        out["val_metric_best"] = min(values) * to_units
        out["val_mae_scaled_final"] = values[-1] * to_units / unit_scale
        out["target_unit_scale"] = unit_scale
    else:
        values = [float(v) for v in history["val_binary_accuracy"]]
        out["val_metric_name"] = "val_binary_accuracy"
        out["val_metric_final"] = values[-1]
        out["val_metric_best"] = max(values)
    out["val_loss_final"] = float(list(history["val_loss"])[-1])


# ------------------------------------------------------------------------------------------
# The same work through dlstructured's public API.
# ------------------------------------------------------------------------------------------


def dls_build(workload, data):
    import dlstructured as dls

    builder = dls.dense_stack if workload.task == "regression" else dls.binary_classifier
    return builder(
        data,
        hidden_units=workload.hidden_units,
        dropout_rate=workload.dropout_rate,
        batch_norm=workload.batch_norm,
        batch_norm_position=workload.batch_norm_position,
        input_batch_norm=workload.input_batch_norm,
        seed=SEED,
    )


def dls_prepare(workload, frame, target: str):
    """``prepare`` with the course's split (``sample(frac=0.7, random_state=0)``) and a model."""
    import dlstructured as dls

    data = dls.prepare(frame, target, task=workload.task, valid_fraction=0.3, seed=SEED)
    return data, dls_build(workload, data)


def dls_fit(workload, model, data, epochs: int, callbacks=()):
    """``train`` with the workload's batch size and epochs, without early stopping, reporting
    the metrics the course's recipe compiles with (see :data:`COURSE_METRICS`)."""
    import dlstructured as dls

    return dls.train(
        model,
        data,
        epochs=epochs,
        batch_size=workload.batch_size,
        early_stopping=False,
        metrics=COURSE_METRICS[workload.task],
        callbacks=list(callbacks),
        verbose=0,
        seed=SEED,
    )


def dls_train(workload, frame, target: str, epochs: int, out: dict):
    start = time.perf_counter()
    data, model = dls_prepare(workload, frame, target)
    out["prepare_s"] = time.perf_counter() - start
    clock = epoch_clock()
    start = time.perf_counter()
    result = dls_fit(workload, model, data, epochs, callbacks=[clock])
    out["fit_s"] = time.perf_counter() - start
    record_epochs(clock, start, out)
    out["train_result_fit_s"] = float(result.fit_time)
    out.update(
        n_train=len(data.x_train),
        n_valid=len(data.x_valid),
        num_features=int(data.num_features),
        epochs_run=int(result.epochs_run),
        engine=str(result.engine),
    )
    history = {column: result.history[column].tolist() for column in result.history.columns}
    _record_metrics(history, workload.task, float(data.target_unit_scale), out, in_units=True)
    return model


# ------------------------------------------------------------------------------------------
# Inference and memory.
# ------------------------------------------------------------------------------------------


def _time_predictions(predict, rows, calls: int, out: dict) -> None:
    """Median latency of one-row calls, and throughput on all ``rows`` (after warm-up calls)."""
    for index in range(3):  # warm: compile for one-row batches
        predict(rows.iloc[[index]])
    latencies = []
    for index in range(calls):
        row = rows.iloc[[index % len(rows)]]
        start = time.perf_counter()
        predict(row)
        latencies.append(time.perf_counter() - start)
    out["single_row_median_ms"] = float(np.median(latencies) * 1000.0)
    out["single_row_p90_ms"] = float(np.percentile(latencies, 90) * 1000.0)
    out["single_row_calls"] = calls
    # Warm: compile for the batch shapes of a big call (a full batch and a padded remainder on
    # dlstructured's 8192-row batches; Keras's 32-row batches) without paying for a whole call.
    predict(rows.iloc[:10_000])
    start = time.perf_counter()
    predictions = predict(rows)
    elapsed = time.perf_counter() - start
    out["bulk_rows"] = len(rows)
    out["num_features"] = int(rows.shape[1])
    out["bulk_s"] = elapsed
    out["bulk_rows_per_s"] = len(rows) / elapsed
    out["bulk_prediction_mean"] = float(np.mean(np.asarray(predictions, dtype=np.float64)))


def keras_inference(workload, frame, target, epochs, calls, bulk_rows, out) -> None:
    import keras

    model, parts, _ = course_recipe(workload, frame, target)
    course_fit(workload, model, parts, epochs)
    features = parts[0].columns
    df_train, _ = course_split(frame)
    max_, min_ = df_train.max(axis=0), df_train.min(axis=0)
    with tempfile.TemporaryDirectory() as folder:
        path = str(Path(folder) / "model.keras")
        model.save(path)
        start = time.perf_counter()
        loaded = keras.models.load_model(path)
        out["load_s"] = time.perf_counter() - start

    def predict(rows):
        # The plain-Keras way: scale the raw rows as in training, predict, undo the target scale.
        x = (rows[features] - min_[features]) / (max_[features] - min_[features])
        scaled = loaded.predict(x, verbose=0)[:, 0]
        return scaled * (max_[target] - min_[target]) + min_[target]

    _time_predictions(predict, inference_rows(frame, target, bulk_rows), calls, out)
    out["predict_path"] = "keras.Model.predict (default batch_size) after pandas min-max scaling"


def dls_inference(workload, frame, target, epochs, calls, bulk_rows, out) -> None:
    import dlstructured as dls

    data, model = dls_prepare(workload, frame, target)
    dls_fit(workload, model, data, epochs)
    with tempfile.TemporaryDirectory() as folder:
        path = str(Path(folder) / "model.keras")
        model.save(path)
        start = time.perf_counter()
        loaded = dls.load_model(path)
        out["load_s"] = time.perf_counter() - start
    _time_predictions(loaded.predict, inference_rows(frame, target, bulk_rows), calls, out)
    out["predict_path"] = "dlstructured TabularModel.predict(DataFrame)"


def keras_memory(workload, frame, target, epochs, out) -> None:
    with PeakRSS() as whole:
        model, parts, _ = course_recipe(workload, frame, target)
        with PeakRSS() as fit:
            start = time.perf_counter()
            course_fit(workload, model, parts, epochs)
            out["fit_s"] = time.perf_counter() - start
    _record_memory(whole, fit, frame, target, out)


def dls_memory(workload, frame, target, epochs, out) -> None:

    with PeakRSS() as whole:
        data, model = dls_prepare(workload, frame, target)
        with PeakRSS() as fit:
            start = time.perf_counter()
            dls_fit(workload, model, data, epochs)
            out["fit_s"] = time.perf_counter() - start
    _record_memory(whole, fit, frame, target, out)


def _record_memory(whole: PeakRSS, fit: PeakRSS, frame, target: str, out: dict) -> None:
    rows, features = len(frame), frame.shape[1] - 1
    data_mib = rows * features * 4 / 2**20  # float32 size of the feature table
    out.update(
        rows=rows,
        features=features,
        data_float32_mib=data_mib,
        budget_mib=2 * data_mib + 1024.0,
        growth_whole_mib=whole.growth_mib,
        growth_fit_mib=fit.growth_mib,
        rss_before_mib=whole.before_kib / 1024.0,
        peak_reset=bool(whole.reset and fit.reset),
    )


# ------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--side", choices=("keras", "dlstructured"), required=True)
    parser.add_argument("--workload", choices=sorted(WORKLOADS), required=True)
    parser.add_argument("--result", required=True, help="path of the JSON file to write")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)

    workload = WORKLOADS[args.workload]
    epochs = workload.quick_epochs if args.quick else workload.epochs
    out: dict = {
        "side": args.side,
        "workload": workload.name,
        "backend_requested": os.environ.get("KERAS_BACKEND", "(keras default)"),
        "epochs_requested": epochs,
    }
    status = 0
    try:
        start = time.perf_counter()
        import keras

        if args.side == "dlstructured":
            import dlstructured

            out["dlstructured_version"] = dlstructured.__version__
        out["import_s"] = time.perf_counter() - start
        out["backend"] = keras.backend.backend()
        out["keras_version"] = keras.__version__
        out["device"] = _device(out["backend"])
        frame, target, source = load(workload, args.data_dir, args.quick)
        out["data_source"] = source
        keras_side = args.side == "keras"
        if workload.kind == "train":
            (keras_train if keras_side else dls_train)(workload, frame, target, epochs, out)
        elif workload.kind == "inference":
            calls = workload.extra["quick_single_row_calls" if args.quick else "single_row_calls"]
            bulk = workload.quick_rows if args.quick else workload.rows
            run = keras_inference if keras_side else dls_inference
            run(workload, frame, target, epochs, calls, bulk, out)
        else:
            (keras_memory if keras_side else dls_memory)(workload, frame, target, epochs, out)
    except Exception as error:  # reported in the JSON; the harness shows it in the table
        out["error"] = f"{type(error).__name__}: {error}"[:500]
        out["traceback"] = traceback.format_exc()[-3000:]
        status = 1
    out["worker_s"] = time.perf_counter() - WORKER_START
    out["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    Path(args.result).write_text(json.dumps(out, indent=1))
    return status


if __name__ == "__main__":
    sys.exit(main())
