"""What the default model costs: the whole ``dlstructured train`` on tables of growing size.

Usage::

    python benchmarks/default_cost.py [--rows 2000 20000 100000] [--backend jax]

Each size is the quality benchmark's mixed synthetic table (``mixed_synthetic``: 48 numeric and
12 text columns of 3 to 1,000 levels, 5% missing values; 60 columns), written to a CSV file; the
command runs in a process of its own, as a user runs it, and its wall time is reported with the
time per 1,000 rows and, beside it, the fit time of scikit-learn's HistGradientBoosting with its
defaults on the same rows, and the median time of 300 one-row predictions on raw rows with the
saved model (``dlstructured.load_model(...).predict``, preprocessing included), in a process of
its own on the same backend. The float32 matrix-product peak is measured in the same run.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from _quality_tables import mixed_synthetic  # noqa: E402
from run import matmul_peak_gflops  # noqa: E402


def trees_seconds(frame, target) -> float:
    from quality import tree_features
    from sklearn.ensemble import HistGradientBoostingRegressor

    x, _ = tree_features(frame.drop(columns=[target]), frame.drop(columns=[target]).head(0))
    started = time.perf_counter()
    HistGradientBoostingRegressor(categorical_features="from_dtype").fit(x, frame[target])
    return time.perf_counter() - started


def one_row_ms(model_path: Path, csv_path: Path, target: str, backend: str) -> float:
    """Median milliseconds of one-row ``predict`` calls on raw rows, in a fresh process."""
    code = f"""
import time, numpy as np, pandas as pd, dlstructured as dls
model = dls.load_model({str(model_path)!r})
rows = pd.read_csv({str(csv_path)!r}).drop(columns=[{target!r}]).head(300)
for index in range(3):
    model.predict(rows.iloc[[index]])
times = []
for index in range(300):
    row = rows.iloc[[index]]
    started = time.perf_counter()
    model.predict(row)
    times.append(time.perf_counter() - started)
print(1000 * float(np.median(times)))
"""
    done = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True,
                          text=True, env={**os.environ, "KERAS_BACKEND": backend})
    return float(done.stdout.split()[-1])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", nargs="+", type=int, default=[2000, 20000, 100000])
    parser.add_argument("--backend", default="jax", choices=("jax", "tensorflow"))
    args = parser.parse_args(argv)
    print(f"float32 matrix-product peak: {matmul_peak_gflops():.0f} GFLOP/s", flush=True)
    print("rows,train_s,s_per_1000_rows,epochs,refit_epochs,trees_s,one_row_predict_ms")
    with tempfile.TemporaryDirectory() as folder:
        for rows in args.rows:
            table = mixed_synthetic(rows)
            path = Path(folder) / f"t{rows}.csv"
            table.frame.to_csv(path, index=False)
            out = Path(folder) / f"run{rows}"
            started = time.perf_counter()
            subprocess.run([sys.executable, "-m", "dlstructured", "train", str(path), "--target",
                            table.target, "--out", str(out), "--quiet", "--backend",
                            args.backend], check=True, env={**os.environ},
                           stdout=subprocess.DEVNULL)
            seconds = time.perf_counter() - started
            metrics = json.loads((out / "metrics.json").read_text())
            refit = (metrics.get("refit") or {}).get("epochs_run")
            print(f"{rows},{seconds:.1f},{1000 * seconds / rows:.2f},{metrics['epochs_run']},"
                  f"{refit},{trees_seconds(table.frame, table.target):.1f},"
                  f"{one_row_ms(out / 'model.keras', path, table.target, args.backend):.2f}",
                  flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
