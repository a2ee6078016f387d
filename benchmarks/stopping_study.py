"""Research: can the default's selection fit stop before the end of its epoch budget?

Usage::

    KERAS_BACKEND=jax python benchmarks/stopping_study.py fit OUT [--tables NAME ...]
        [--seeds 0 1] [--data-dir DIR]
    python benchmarks/stopping_study.py rules OUT
    KERAS_BACKEND=jax python benchmarks/stopping_study.py fit OUT2 --set members=4
    python benchmarks/stopping_study.py compare OUT2 --base OUT

``fit`` trains the default model on the 70% of each quality table (the fit that chooses the
epochs on its internal 20% split, no refit) and writes each run's per-epoch history to
``OUT/TABLE-SEED.csv`` with its epoch budget. ``rules`` replays stopping rules on those
histories: a rule that stops at epoch ``s`` would have run exactly the first ``s`` epochs of the
same fit, so the epoch it keeps is the best of those. For each rule it prints the share of the
budget's epochs it runs and how much worse the kept epoch's validation loss is than the whole
budget's best. ``--set`` trains a variant (``RunConfig`` fields), and ``compare`` sets each
variant run's best validation loss beside the same table and seed's in ``--base``. Only
validation rows of the training part are used; the test rows choose nothing.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

TABLES = ["red_wine", "ionosphere", "diabetes", "breast_cancer", "wine", "penguins", "digits",
          "friedman1", "classification", "california", "california_grouped"]


def fit(args) -> None:
    from _quality_tables import LOADERS, split

    import dlstructured.run as run_module
    from dlstructured import RunConfig, fit_table

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    run_module._should_refit = lambda run: False
    for name in args.tables:
        table = LOADERS[name](args.data_dir)
        train_rows, _ = split(table)
        frame = table.frame.iloc[train_rows]
        for seed in args.seeds:
            path = out / f"{name}-{seed}.csv"
            if path.exists():
                continue
            run = fit_table(frame, table.target,
                            RunConfig(task=table.task, seed=seed, **overrides(args.set)))
            run.result.history.to_csv(path, index_label="epoch")
            path.with_suffix(".json").write_text(json.dumps(
                {"epochs": run.recipe.config.epochs, "task": table.task}))
            print(f"{name},{seed},{len(run.result.history)} epochs,best "
                  f"{run.result.best_epoch}", flush=True)


def overrides(pairs: list[str]) -> dict:
    """``RunConfig`` fields from ``KEY=VALUE`` pairs (values read as JSON, else as text)."""
    fields = {}
    for pair in pairs:
        key, _, value = pair.partition("=")
        try:
            fields[key] = json.loads(value)
        except json.JSONDecodeError:
            fields[key] = value
        if isinstance(fields[key], list):
            fields[key] = tuple(fields[key])
    return fields


def compare(args) -> None:
    """Each run's best validation loss in ``args.out`` against the same run in ``args.base``."""
    print("run,base_best_val_loss,variant_best_val_loss,change_%")
    changes = []
    for path in sorted(Path(args.out).glob("*.csv")):
        base = Path(args.base) / path.name
        if not base.exists():
            continue
        best = [np.genfromtxt(p, delimiter=",", names=True)["val_loss"].min() for p in (base, path)]
        changes.append(100 * (best[1] - best[0]) / abs(best[0]))
        print(f"{path.stem},{best[0]:.4f},{best[1]:.4f},{changes[-1]:+.2f}")
    print(f"mean change {np.mean(changes):+.2f}%, worst {max(changes):+.2f}%, "
          f"better on {sum(c < 0 for c in changes)}/{len(changes)}")


def stop_epoch(rule: str, losses: np.ndarray, budget: int) -> int:
    """The epoch (from 1) after which ``rule`` stops on this run's validation losses.

    ``cycle1`` is the default's rule (``EarlyStopping.review_epochs`` at the schedule's cycle
    ends); ``cycle2`` skips the first review; ``patienceF`` stops after ``F`` of the budget's
    epochs without an improvement.
    """
    from dlstructured.models.ensemble_layers import cycle_ends

    best = np.minimum.accumulate(losses)
    improved = np.r_[True, best[1:] < best[:-1]]
    last_improvement = np.maximum.accumulate(np.where(improved, np.arange(len(losses)), 0)) + 1
    if rule == "budget":
        return len(losses)
    if rule.startswith("cycle"):
        # At the end of each cycle after the first `skip`, stop unless it improved the best.
        skip = int(rule[5:] or 1)
        ends = cycle_ends(budget)
        for before, end in zip(ends[skip - 1:-1], ends[skip:], strict=True):
            if end <= len(losses) and last_improvement[end - 1] <= before:
                return end
        return len(losses)
    if rule.startswith("patience"):
        fraction = float(rule[8:])
        wait = max(1, round(fraction * budget))
        for epoch in range(len(losses)):
            if epoch + 1 - last_improvement[epoch] >= wait:
                return epoch + 1
        return len(losses)
    raise ValueError(rule)


def rules(args) -> None:
    runs = []
    for path in sorted(Path(args.out).glob("*.csv")):
        meta = json.loads(path.with_suffix(".json").read_text())
        history = np.genfromtxt(path, delimiter=",", names=True)
        runs.append((path.stem, meta["epochs"], np.asarray(history["val_loss"], float)))
    names = ["budget", "cycle1", "cycle2", "patience0.15", "patience0.25", "patience0.35"]
    print("rule,share_of_epochs,mean_regret_%,worst_regret_%,worst_run,changed_runs")
    for rule in names:
        shares, regrets = [], []
        for _, budget, losses in runs:
            stop = stop_epoch(rule, losses, budget)
            shares.append(stop / len(losses))
            full, kept = losses.min(), losses[:stop].min()
            regrets.append(100 * (kept - full) / abs(full))
        worst = int(np.argmax(regrets))
        print(f"{rule},{np.mean(shares):.3f},{np.mean(regrets):.3f},{regrets[worst]:.3f},"
              f"{runs[worst][0]},{sum(r > 0 for r in regrets)}/{len(runs)}")
    from dlstructured.models.ensemble_layers import cycle_ends

    print("\nrun,budget,best_epoch,cycle_ends," + ",".join(names))
    for name, budget, losses in runs:
        stops = [stop_epoch(rule, losses, budget) for rule in names]
        print(f"{name},{budget},{int(np.argmin(losses)) + 1},"
              f"{'/'.join(map(str, cycle_ends(budget)))},{','.join(map(str, stops))}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("command", choices=["fit", "rules", "compare"])
    parser.add_argument("out")
    parser.add_argument("--base", help="compare: the folder of the runs to compare against")
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                        help="fit: RunConfig fields of the variant, e.g. members=4")
    parser.add_argument("--data-dir", default=str(HERE.parents[1] / "shared" / "data"))
    parser.add_argument("--tables", nargs="+", default=TABLES)
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1])
    args = parser.parse_args(argv)
    {"fit": fit, "rules": rules, "compare": compare}[args.command](args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
