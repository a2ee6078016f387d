"""Memory across a search: the process's current RSS after each of 30 small trials.

The target (issue 13) is growth of at most 50 MiB from trial 5 to trial 30. Run it with

    KERAS_BACKEND=jax python benchmarks/search_memory.py [--trials 30] [--json FILE]

It prints one line per trial and the growth, and exits with status 1 when the growth is over the
target. Every trial trains (no pruning) so each one builds, trains and drops a model.
"""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np
import pandas as pd

TARGET_MIB = 50.0


def current_rss_mib() -> float:
    """The process's resident set size now (not its peak), in MiB."""
    try:
        with open("/proc/self/statm") as statm:
            pages = int(statm.read().split()[1])
        import os

        return pages * os.sysconf("SC_PAGE_SIZE") / 2**20
    except OSError:  # not Linux
        import psutil

        return psutil.Process().memory_info().rss / 2**20


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=30)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--json", default=None, help="also write the figures to this file")
    args = parser.parse_args(argv)

    import optuna

    import dlstructured

    rng = np.random.default_rng(0)
    x = rng.normal(size=(600, 8))
    table = pd.DataFrame(x, columns=[f"x{i}" for i in range(8)])
    table["kind"] = rng.choice(["a", "b", "c"], size=len(table))
    table["y"] = x @ rng.normal(size=8) + (table["kind"] == "a")
    rss: list[float] = []

    def measure(study, trial):
        rss.append(current_rss_mib())
        print(f"trial {len(rss):>2}: {trial.state.name.lower():<8} RSS {rss[-1]:8.1f} MiB",
              flush=True)

    dlstructured.search(
        table, "y", trials=args.trials, seed=0, pruner=optuna.pruners.NopPruner(),
        config=dlstructured.RunConfig(epochs=args.epochs, patience=0), callbacks=[measure],
    )
    first = min(5, len(rss)) - 1
    growth = rss[-1] - rss[first]
    print(f"RSS growth from trial {first + 1} to trial {len(rss)}: {growth:.1f} MiB "
          f"(target <= {TARGET_MIB:.0f} MiB)")
    if args.json:
        with open(args.json, "w") as file:
            json.dump({"rss_mib": rss, "growth_mib": growth, "target_mib": TARGET_MIB}, file)
    return 0 if growth <= TARGET_MIB else 1


if __name__ == "__main__":
    sys.exit(main())
