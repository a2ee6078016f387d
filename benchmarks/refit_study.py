"""Research: after the epochs are chosen on a 20% split, does a refit on every row pay?

Usage::

    KERAS_BACKEND=jax python benchmarks/refit_study.py [--data-dir DIR] [--tables NAME ...]
        [--seeds 0]

For each table of the quality benchmark (its fixed 70/30 split), the default model is trained
on the 70% twice with the same seed: once as ``fit_table`` does it (epochs chosen on an internal
20% split, then a refit on the whole 70% for that many epochs), once keeping the model of the
fit that chose the epochs (80% of the 70%). Both are scored on the 30%, which chose nothing.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from _quality_tables import LOADERS, split  # noqa: E402


def score(table, model, test) -> float:
    truth = test[table.target]
    predicted = model.predict(test.drop(columns=[table.target]))
    if table.task == "regression":
        return float(np.mean(np.abs(truth.to_numpy(float) - np.asarray(predicted, float))))
    return float(np.mean(np.asarray(predicted) == truth.to_numpy()))


def main(argv=None) -> int:
    import dlstructured.run as run_module
    from dlstructured import RunConfig, fit_table

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", default=str(HERE.parents[1] / "shared" / "data"))
    parser.add_argument("--tables", nargs="+", default=["red_wine", "diabetes", "breast_cancer",
                                                        "ionosphere", "friedman1", "penguins"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0])
    args = parser.parse_args(argv)
    refits = run_module._should_refit
    print("table,seed,metric,refit,selection_only,refit_s,selection_s")
    for name in args.tables:
        table = LOADERS[name](args.data_dir)
        train_rows, test_rows = split(table)
        fit, test = table.frame.iloc[train_rows], table.frame.iloc[test_rows]
        for seed in args.seeds:
            config = RunConfig(task=table.task, seed=seed)
            scores, seconds = [], []
            for refit in (True, False):
                run_module._should_refit = refits if refit else (lambda run: False)
                started = time.perf_counter()
                run = fit_table(fit, table.target, config)
                seconds.append(time.perf_counter() - started)
                scores.append(score(table, run.model, test))
            run_module._should_refit = refits
            metric = "mae" if table.task == "regression" else "accuracy"
            print(f"{name},{seed},{metric},{scores[0]:.4f},{scores[1]:.4f},{seconds[0]:.1f},"
                  f"{seconds[1]:.1f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
