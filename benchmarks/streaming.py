"""Streaming a table larger than memory: wall time and peak memory against rows, and steady-epoch
throughput of the streaming path against the in-memory path.

Not a test. For each row count given it writes a synthetic Parquet folder (30 columns: 26
numeric, 4 text categories, and a regression target ``y``) and runs

    dlstructured train DIR --target y --model dense --hidden-units 64,64 --epochs 1 --out OUT

in a subprocess, reporting its wall time and peak RSS (``ru_maxrss`` of that child alone, from
``os.wait4``). Then, on a table that fits in memory (``--compare-rows``), it trains the same
network with the same batch size for a few epochs in this process: from a ``StreamSource``
that keeps its transformed pieces on disk after the first epoch (as ``fit_table`` streams a
table for more than one epoch), from one that decodes and transforms every piece every epoch,
and from the same rows held as arrays; it reports the steady-epoch rows/s (the median of the
epochs after the first, which compiles and fills the cache) and each streaming figure's ratio
to the in-memory one.

    KERAS_BACKEND=jax python benchmarks/streaming.py --rows 100000 1000000 --compare-rows 200000

The data is written under ``--workdir`` (default: a temporary folder, removed afterwards).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

NUMERIC, CATEGORICAL = 26, 4
CATEGORY_COUNTS = (8, 40, 200, 1000)
FILE_ROWS = 250_000
ROW_GROUP_ROWS = 65_536


def write_table(folder: Path, rows: int, seed: int = 0) -> Path:
    """A synthetic Parquet folder of ``rows`` rows, written a file at a time."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    folder.mkdir(parents=True, exist_ok=True)
    weights = np.random.default_rng(seed).normal(size=NUMERIC)
    for index, start in enumerate(range(0, rows, FILE_ROWS)):
        size = min(FILE_ROWS, rows - start)
        rng = np.random.default_rng((seed, index))
        numbers = rng.normal(size=(size, NUMERIC)).astype(np.float32)
        columns = {f"x{k}": numbers[:, k] for k in range(NUMERIC)}
        effect = np.zeros(size)
        for k, count in enumerate(CATEGORY_COUNTS):
            codes = rng.integers(0, count, size)
            columns[f"c{k}"] = pa.array(np.char.add(f"c{k}_", codes.astype(str)).astype(object))
            effect += np.sin(codes)
        columns["y"] = numbers @ weights + effect + rng.normal(0, 0.1, size)
        pq.write_table(pa.table(columns), folder / f"part-{index:04d}.parquet",
                       row_group_size=ROW_GROUP_ROWS)
    return folder


def train_command(data: Path, out: Path) -> dict:
    """Run ``dlstructured train`` on ``data`` in a child process; its wall time and peak RSS."""
    command = [sys.executable, "-m", "dlstructured", "train", str(data), "--target", "y",
               "--model", "dense", "--hidden-units", "64,64", "--epochs", "1", "--out", str(out),
               "--quiet"]
    started = time.perf_counter()
    child = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(child.pid, 0)
    wall = time.perf_counter() - started
    stderr = child.stderr.read().decode(errors="replace")
    if status != 0:
        raise SystemExit(f"train failed ({status}): {stderr[-2000:]}")
    return {"wall_s": round(wall, 1), "peak_rss_mib": round(usage.ru_maxrss / 1024, 1),
            "command": " ".join(command[1:])}


def compare_throughput(data: Path, epochs: int = 6, batch_size: int = 256) -> dict:
    """Steady-epoch rows/s of one network trained from a StreamSource and from arrays."""
    import keras

    from dlstructured import dense_stack, train
    from dlstructured.data.preprocessing import TabularPreprocessor
    from dlstructured.data.stream import StreamTable, prepare_stream

    prepared = prepare_stream(StreamTable(data), TabularPreprocessor("y"), valid_fraction=0.0,
                              seed=0)
    source = prepared.train
    arrays = list(source.arrays())
    x = np.concatenate([part[0] for part in arrays])
    y = np.concatenate([part[1] for part in arrays])

    class Times(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            self.ends = [time.perf_counter()]

        def on_epoch_end(self, epoch, logs=None):
            self.ends.append(time.perf_counter())

    figures = {}
    cached = prepare_stream(StreamTable(data), TabularPreprocessor("y"), valid_fraction=0.0,
                            seed=0).train
    with tempfile.TemporaryDirectory(prefix="dlstructured-bench-") as scratch:
        cached.cache_in(Path(scratch) / "train")  # as fit_table does for more than one epoch
        for name, inputs in (("streaming", {"x": cached}), ("streaming_uncached", {"x": source}),
                             ("in_memory", {"x": x, "y": y})):
            times = Times()
            network = dense_stack(x.shape[1], hidden_units=(64, 64), seed=0)
            train(network, **inputs, task="regression", epochs=epochs, batch_size=batch_size,
                  early_stopping=False, seed=0, callbacks=[times])
            steady = float(np.median(np.diff(times.ends)[1:]))
            figures[name] = {"steady_epoch_s": round(steady, 2),
                             "rows_per_s": round(len(x) / steady)}
    for name in ("streaming", "streaming_uncached"):
        figures[f"{name}_ratio"] = round(figures[name]["rows_per_s"]
                                         / figures["in_memory"]["rows_per_s"], 2)
    figures.update(rows=len(x), batch_size=batch_size, backend=keras.backend.backend())
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, nargs="*", default=[100_000, 1_000_000],
                        help="row counts of the memory runs (none: skip them)")
    parser.add_argument("--compare-rows", type=int, default=200_000,
                        help="rows of the table for the throughput comparison (0: skip it)")
    parser.add_argument("--workdir", default=None, help="where the data goes (kept)")
    parser.add_argument("--json", default=None, help="also write the figures to this file")
    args = parser.parse_args()
    work = Path(args.workdir or tempfile.mkdtemp(prefix="dls-streaming-"))
    report = {"train": [], "throughput": None}
    try:
        for rows in args.rows:
            folder = write_table(work / f"rows-{rows}", rows)
            figures = {"rows": rows, **train_command(folder, work / f"run-{rows}")}
            report["train"].append(figures)
            print(json.dumps(figures), flush=True)
        if args.compare_rows:
            folder = write_table(work / f"compare-{args.compare_rows}", args.compare_rows)
            report["throughput"] = compare_throughput(folder)
            print(json.dumps(report["throughput"]), flush=True)
    finally:
        if args.workdir is None:
            shutil.rmtree(work, ignore_errors=True)
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
