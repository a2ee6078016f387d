"""Benchmark: fit and apply the preprocessing on a large mixed frame (issue 3's target).

The frame has 20 numeric and 10 categorical columns (pandas' default ``str`` dtype, cardinalities
from 3 to 10,000), 5% missing values in every column, and a numeric target. Two calls are timed:

* ``prepare(frame, "target")``: split 70/30, fit on the training part, transform both parts;
* ``data.preprocessor.transform(frame)``: apply the fitted preprocessing to every row.

For each call the script reports the wall time and the growth of the process's peak resident
memory from just before the call (imports and the frame itself excluded), next to the frame's own
size (``frame.memory_usage(deep=True)``). The peak is read from ``VmHWM`` after resetting it
through ``/proc/self/clear_refs`` (Linux); elsewhere a thread samples the resident size.

Run:

    PYTHONPATH=src python benchmarks/bench_preprocessing.py --rows 1000000
"""

from __future__ import annotations

import argparse
import gc
import os
import platform
import threading
import time

import numpy as np
import pandas as pd

from dlstructured import prepare

CARDINALITIES = (3, 5, 10, 20, 50, 100, 500, 1000, 5000, 10000)
NUMERIC_COLUMNS = 20
MISSING_SHARE = 0.05


def make_frame(rows: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    columns = {}
    for index in range(NUMERIC_COLUMNS):
        values = rng.normal(loc=index, scale=1.0 + index, size=rows)
        values[rng.random(rows) < MISSING_SHARE] = np.nan
        columns[f"num_{index}"] = values
    for cardinality in CARDINALITIES:
        labels = np.array([f"cat{cardinality}_{k}" for k in range(cardinality)], dtype=object)
        values = labels[rng.integers(0, cardinality, rows)]
        values[rng.random(rows) < MISSING_SHARE] = None
        columns[f"cat_{cardinality}"] = pd.Series(values, dtype="str")
    columns["target"] = rng.normal(size=rows)
    return pd.DataFrame(columns)


def _status(field: str) -> int:
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise KeyError(field)


class PeakMemory:
    """Peak resident memory growth over a block, in bytes."""

    def __enter__(self):
        gc.collect()
        self.growth = None
        self._sampler = None
        try:
            with open("/proc/self/clear_refs", "w") as handle:
                handle.write("5")  # reset VmHWM to the current resident size
            self._start = _status("VmRSS")
            self._mode = "VmHWM"
        except OSError:
            self._mode = "sampling"
            self._start = _rss_now()
            self._peak = self._start
            self._stop = threading.Event()
            self._sampler = threading.Thread(target=self._sample, daemon=True)
            self._sampler.start()
        return self

    def _sample(self):
        while not self._stop.is_set():
            self._peak = max(self._peak, _rss_now())
            time.sleep(0.002)

    def __exit__(self, *exc):
        if self._mode == "VmHWM":
            self.growth = _status("VmHWM") - self._start
        else:
            self._stop.set()
            self._sampler.join()
            self.growth = self._peak - self._start
        return False


def _rss_now() -> int:
    try:
        return _status("VmRSS")
    except (OSError, KeyError):  # pragma: no cover - non-Linux
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    frame = make_frame(args.rows, args.seed)
    size = int(frame.memory_usage(deep=True).sum())
    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs, {platform.platform()}")
    print(f"pandas {pd.__version__}, numpy {np.__version__}")
    print(
        f"frame: {args.rows:,} rows x {frame.shape[1] - 1} feature columns + target, "
        f"{size / 2**20:.0f} MiB"
    )

    with PeakMemory() as memory:
        start = time.perf_counter()
        data = prepare(frame, "target")
        seconds = time.perf_counter() - start
    print(
        f"prepare:   {seconds:6.2f} s, peak RSS growth {memory.growth / 2**20:6.0f} MiB "
        f"({memory.growth / size:.2f}x the frame; {memory._mode}); "
        f"features {data.num_features}, embeddings {len(data.embeddings)}"
    )

    with PeakMemory() as memory:
        start = time.perf_counter()
        features = data.preprocessor.transform(frame)
        seconds = time.perf_counter() - start
    print(
        f"transform: {seconds:6.2f} s, peak RSS growth {memory.growth / 2**20:6.0f} MiB "
        f"({memory.growth / size:.2f}x the frame; {memory._mode}); "
        f"output {features.nbytes / 2**20:.0f} MiB"
    )


if __name__ == "__main__":
    main()
