"""Rows per second of training across 1 and 2 processes on this machine, and the scaling
efficiency.

Usage::

    python benchmarks/distributed.py [--rows 40000] [--epochs 5] [--batch-size 512]
                                     [--devices-per-process 1] [--model dense]
                                     [--streamed]

The table is synthetic (``--rows`` rows, 16 numeric columns, a linear target with noise),
written to a CSV file that every process reads, or with ``--streamed`` to a folder of four
Parquet files that every process streams (each its own range of the rows). Each process count
trains the same model (``--model dense --hidden-units 256,256`` by default) with the same
global ``--batch-size`` and ``--epochs``; the processes are real ones on 127.0.0.1, each with
``--devices-per-process`` virtual CPU devices. The figure is the steady rate: training rows
times epochs 2 to the last, over the time between the end of epoch 1 and the end of the last
(compilation is left out), measured on process 0. Efficiency is ``rate(2) / (2 * rate(1))``.

Every process count trains on the JAX engine ``fit_table`` picks (the whole-epoch engine for one
process, its chunk-fed data-parallel form under ``keras.distribution.DataParallel`` for two; a
streamed table runs the chunk-fed engine on one process too).
All run on the same CPU cores: on a machine whose cores are fewer than the processes' threads,
two processes share them rather than add any.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SOURCE = str(Path(__file__).resolve().parents[1] / "src")

WORKER = """
import json, sys, time
import keras
from dlstructured import RunConfig, distributed, fit_table
data, processes, rank, port, epochs, batch, model, units, report = sys.argv[1:10]
if int(processes) > 1:
    distributed.initialize(f"127.0.0.1:{port}", int(processes), int(rank), timeout=120)

class Clock(keras.callbacks.Callback):
    ends = []
    def on_epoch_end(self, epoch, logs=None):
        self.ends.append(time.perf_counter())

config = RunConfig(model=model, hidden_units=tuple(int(u) for u in units.split(",")),
                   epochs=int(epochs), batch_size=int(batch), patience=0, valid_fraction=0.1)
run = fit_table(data, "y", config, callbacks=[Clock()])
ends = Clock.ends
steady = run.rows["train"] * (len(ends) - 1) / (ends[-1] - ends[0])
if distributed.is_primary():
    with open(report, "w") as stream:
        json.dump({"rows_per_s": steady, "engine": run.result.engine, "rows": run.rows,
                   "epoch_s": [b - a for a, b in zip(ends, ends[1:])]}, stream)
"""


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def write_table(folder: Path, rows: int, streamed: bool) -> Path:
    """The table in ``folder``: ``table.csv``, or the folder ``parts`` of Parquet files."""
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(0)
    x = rng.normal(size=(rows, 16)).astype("float32")
    frame = pd.DataFrame(x, columns=[f"x{i}" for i in range(16)])
    frame["y"] = x @ rng.normal(size=16) + 0.1 * rng.normal(size=rows)
    if not streamed:
        frame.to_csv(folder / "table.csv", index=False)
        return folder / "table.csv"
    parts = folder / "parts"
    parts.mkdir()
    for number, rows_of_part in enumerate(np.array_split(np.arange(rows), 4)):
        frame.iloc[rows_of_part].to_parquet(parts / f"part-{number}.parquet")
    return parts


def measure(folder: Path, data: Path, processes: int, args: argparse.Namespace) -> dict:
    script = folder / "worker.py"
    script.write_text(WORKER)
    report = folder / f"report-{processes}.json"
    port = _free_port()
    env = {**os.environ, "KERAS_BACKEND": "jax",
           "XLA_FLAGS": f"--xla_force_host_platform_device_count={args.devices_per_process}",
           "PYTHONPATH": os.pathsep.join([SOURCE, os.environ.get("PYTHONPATH", "")])}
    started = time.perf_counter()
    workers = [subprocess.Popen(
        [sys.executable, str(script), str(data), str(processes), str(rank), str(port),
         str(args.epochs), str(args.batch_size), args.model, args.hidden_units, str(report)],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        for rank in range(processes)]
    for worker in workers:
        _, errors = worker.communicate(timeout=1800)
        if worker.returncode:
            raise SystemExit(f"a worker of the {processes}-process run failed:\n{errors[-3000:]}")
    result = json.loads(report.read_text())
    result["wall_s"] = time.perf_counter() - started
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=40_000)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=512)
    parser.add_argument("--devices-per-process", type=int, default=1)
    parser.add_argument("--model", default="dense")
    parser.add_argument("--hidden-units", default="256,256")
    parser.add_argument("--streamed", action="store_true",
                        help="stream the table from Parquet files instead of reading a CSV")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as temporary:
        folder = Path(temporary)
        data = write_table(folder, args.rows, args.streamed)
        results = {"1": measure(folder, data, 1, args),
                   "2": measure(folder, data, 2, args)}
    one, two = (results[key]["rows_per_s"] for key in ("1", "2"))
    print(f"{args.rows} rows, --model {args.model} --hidden-units {args.hidden_units}, global "
          f"batch {args.batch_size}, {args.epochs} epochs, {args.devices_per_process} "
          f"device(s) per process, {os.cpu_count()} CPU cores, "
          f"{'streamed from Parquet' if args.streamed else 'in memory'}")
    print(f"{'processes':>9}  {'engine':>6}  {'rows/s':>10}  {'wall s':>7}")
    for count, result in results.items():
        print(f"{count:>9}  {result['engine']:>6}  {result['rows_per_s']:>10,.0f}  "
              f"{result['wall_s']:>7.1f}")
    print(f"scaling efficiency (rows/s of 2 / (2 x rows/s of 1)): {two / (2 * one):.2f}")


if __name__ == "__main__":
    main()
