"""Research: compare variants of the default recipe on training rows only.

Usage::

    KERAS_BACKEND=jax python benchmarks/recipe_variants.py VARIANT TABLE [TABLE ...]

``VARIANT`` is ``base`` (the default recipe), ``periodic`` (with ``PeriodicEmbedding``) or
``periodic_dropout`` (with it and dropout 0.15). Each table of the quality benchmark is split
70/30 as there; the default model trains on the 70% with seed 0, and the figure to compare
variants by is its best validation score on the internal 20% split of the 70%. The test score on
the 30% is printed too, but choosing a variant by it would tune on the test rows.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from _quality_tables import LOADERS, split  # noqa: E402

VARIANTS = {
    "base": {},
    "periodic": {"periodic_embedding": True},
    "periodic_dropout": {"periodic_embedding": True, "dropout_rate": 0.15},
}


def main(argv: list[str]) -> int:
    import dlstructured.models.ensemble as ensemble
    from dlstructured import RunConfig, fit_table

    variant, tables = argv[0], argv[1:]
    builder = ensemble.ensemble_mlp
    # fit_table's _build imports ensemble_mlp from this module when it runs.
    ensemble.ensemble_mlp = lambda *args, **options: builder(*args,
                                                             **{**options, **VARIANTS[variant]})
    data_dir = str(HERE.parents[1] / "shared" / "data")
    for name in tables:
        table = LOADERS[name](data_dir)
        train_rows, test_rows = split(table)
        fit, test = table.frame.iloc[train_rows], table.frame.iloc[test_rows]
        started = time.perf_counter()
        run = fit_table(fit, table.target, RunConfig(task=table.task, seed=0))
        history, best = run.result.history, run.result.best_epoch
        key = {"regression": "val_mae", "binary": "val_binary_accuracy",
               "multiclass": "val_accuracy"}[table.task]
        predicted = run.model.predict(test.drop(columns=[table.target]))
        truth = test[table.target].to_numpy()
        score = (np.mean(np.abs(truth - predicted)) if table.task == "regression"
                 else np.mean(predicted == truth))
        print(f"{variant},{name},val_loss={history['val_loss'].min():.4f},"
              f"{key}@best={history[key][best]:.4f},test={score:.4f},"
              f"{time.perf_counter() - started:.0f}s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
