"""Research: which default model beats gradient-boosted trees on tables it has never seen?

Usage::

    KERAS_BACKEND=jax python benchmarks/default_model_research.py [--tables NAME ...]
        [--candidates NAME ...] [--seeds 0 1 2] [--max-rows N] [--out results.csv]

Each table is split once per seed into 70% for fitting and 30% for testing. The 30% is used for
nothing but the final score: every choice (early stopping, the best epoch) is made on an internal
validation split of the 70% (``prepare(valid_fraction=...)``). Candidates:

- ``trees``: scikit-learn's ``HistGradientBoostingRegressor``/``Classifier`` with its defaults,
  text columns as pandas ``category`` and ``categorical_features="from_dtype"``;
- ``course``: ``prepare`` and a course builder with their defaults (min-max scaling, ReLU
  512x3, Adam 1e-3, MAE or cross-entropy, patience 20 on a 30% internal split);
- ``ensemble``: :func:`dlstructured.ensemble_mlp` (8 members, SELU 256x3) on robust scaling with
  smooth clipping, standardised target clipped to the training range, Adam (beta_2 0.95) with
  the log-cosine schedule, MSE for regression, label smoothing 0.1 for classification, a fixed
  epoch budget keeping the best epoch by the task metric on a 20% internal split;
- ``ensemble_mae``: the same trained on MAE (the metric scored) instead of MSE;
- ``ensemble_k1``: the same with one member (the plain RealMLP-style MLP), to see what the
  ensemble adds;
- ``ensemble_dropout``, ``ensemble_low_lr``, ``ensemble_mish``: the same with dropout 0.15
  after each hidden layer, a third of the learning rate, or Mish instead of SELU;
- ``ensemble_val_loss``: the same, keeping the epoch of the best validation loss instead of the
  best task metric;
- ``ensemble_mae_fast``: MAE loss with three times the learning rate (0.06, near RealMLP's 0.07).

Findings at 8a4f137 (2-core machine shared with other jobs, JAX; mean over the seeds shown):

=============  ======  ========  ==========  ==============  ================  ==========
table (seeds)  trees   course    ensemble    ensemble_mae    ensemble_val_los  ensemble_k1
=============  ======  ========  ==========  ==============  ================  ==========
red wine 012   0.4530  0.4846    0.4932      0.4733          -                 0.4930
diabetes 12    47.03   45.28     43.67       44.71           -                 44.52
california 0   31564   34738     (mae_fast:) 30582 (212 s)   -                 -
ionosphere 12  0.9381  0.9381    0.8857      -               0.9571            0.9381
breast c. 12   0.9503  0.9649    0.9561      -               0.9708            0.9620
wine 12        0.9717  0.9623    0.9623      -               0.9623            0.9528
=============  ======  ========  ==========  ==============  ================  ==========

Keeping the epoch of the best validation accuracy picks early epochs on small validation sets
(ties keep the first); the validation loss picks well. Trees still win red wine.

Scores: MAE for regression (lower is better), accuracy for classification (higher is better).
Times are the wall time of preparation plus training (JAX, compilation included) and the median
time of ``TabularModel.predict`` on one raw row.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

DATA_DIR = Path("/work/shared/data")
TABLES = ("red_wine", "ionosphere", "california", "diabetes", "breast_cancer", "wine")
CANDIDATES = ("trees", "course", "ensemble", "ensemble_mae", "ensemble_k1", "ensemble_dropout",
              "ensemble_low_lr", "ensemble_mish", "ensemble_val_loss", "ensemble_mae_fast")


def load_table(name: str, data_dir: Path) -> tuple[pd.DataFrame, str, str]:
    """``(frame, target, task)`` for one table of the study."""
    if name == "red_wine":
        return pd.read_csv(data_dir / "red-wine.csv"), "quality", "regression"
    if name == "ionosphere":
        return pd.read_csv(data_dir / "ion.csv", index_col=0), "Class", "binary"
    if name == "california":
        return pd.read_csv(data_dir / "california-housing.csv"), "median_house_value", "regression"
    from sklearn import datasets

    loader, task = {
        "diabetes": (datasets.load_diabetes, "regression"),
        "breast_cancer": (datasets.load_breast_cancer, "binary"),
        "wine": (datasets.load_wine, "multiclass"),
    }[name]
    bunch = loader(as_frame=True)
    frame = bunch.frame.rename(columns={bunch.target.name: "target"})
    return frame, "target", task


def split(frame: pd.DataFrame, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    order = np.random.default_rng(seed).permutation(len(frame))
    cut = int(round(0.7 * len(frame)))
    return frame.iloc[order[:cut]], frame.iloc[order[cut:]]


def score(task: str, truth: pd.Series, predicted: np.ndarray) -> float:
    if task == "regression":
        return float(np.mean(np.abs(truth.to_numpy(dtype=float) - predicted)))
    return float(np.mean(truth.to_numpy() == predicted))


def run_trees(fit: pd.DataFrame, test: pd.DataFrame, target: str, task: str, seed: int):
    from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor

    def features(frame):
        x = frame.drop(columns=[target]).copy()
        for column in x.columns:
            if not pd.api.types.is_numeric_dtype(x[column]):
                x[column] = x[column].astype("category")
        return x

    model_class = HistGradientBoostingRegressor if task == "regression" else (
        HistGradientBoostingClassifier
    )
    started = time.perf_counter()
    x_fit = features(fit)
    x_test = features(test)
    for column in x_fit.columns:
        if isinstance(x_fit[column].dtype, pd.CategoricalDtype):
            x_test[column] = pd.Categorical(x_test[column], categories=x_fit[column].cat.categories)
    model = model_class(categorical_features="from_dtype", random_state=seed)
    model.fit(x_fit, fit[target])
    seconds = time.perf_counter() - started
    return score(task, test[target], model.predict(x_test)), seconds, float("nan"), None


def _one_row_ms(model, frame: pd.DataFrame) -> float:
    row = frame.head(1)
    model.predict(row)
    times = []
    for _ in range(20):
        started = time.perf_counter()
        model.predict(row)
        times.append(time.perf_counter() - started)
    return 1000 * float(np.median(times))


def run_course(fit, test, target, task, seed):
    import dlstructured as dl

    started = time.perf_counter()
    data = dl.prepare(fit, target, task=task, seed=seed)
    builder = {
        "regression": dl.dense_stack,
        "binary": dl.binary_classifier,
        "multiclass": dl.multiclass_classifier,
    }[task]
    model = builder(data, seed=seed)
    result = dl.train(model, data, seed=seed)
    seconds = time.perf_counter() - started
    predicted = model.predict(test)
    return score(task, test[target], predicted), seconds, _one_row_ms(model, test), result


def ensemble_recipe(task: str, *, members: int = 8, regression_loss: str = "mse",
                    epochs: int = 128, dropout_rate: float = 0.0, lr_scale: float = 1.0,
                    activation: str = "selu", select_by_loss: bool = False):
    """The candidate default: ``(prepare options, builder options, train options)``."""
    import dlstructured as dl

    prepare_options = dict(
        scaling="robust", target_scaling="standard", clip_target=True, valid_fraction=0.2
    )
    builder_options = dict(hidden_units=(256, 256, 256), members=members, activation=activation,
                           dropout_rate=dropout_rate)
    monitor = {"regression": "val_mae", "binary": "val_binary_accuracy",
               "multiclass": "val_accuracy"}[task]
    if select_by_loss:
        monitor = "val_loss"
    train_options = dict(
        epochs=epochs,
        batch_size=256,
        learning_rate=(0.02 if task == "regression" else 0.04) * lr_scale,
        learning_rate_schedule="log_cosine",
        adam_beta_2=0.95,
        early_stopping=dl.EarlyStopping(patience=epochs, min_delta=0.0, monitor=monitor),
    )
    if task == "regression":
        train_options["loss"] = regression_loss
    else:
        train_options["label_smoothing"] = 0.1
        train_options["metrics"] = ["accuracy"] if task == "multiclass" else ["binary_accuracy"]
    return prepare_options, builder_options, train_options


def run_ensemble(fit, test, target, task, seed, **recipe):
    import dlstructured as dl

    prepare_options, builder_options, train_options = ensemble_recipe(task, **recipe)
    started = time.perf_counter()
    data = dl.prepare(fit, target, task=task, seed=seed, **prepare_options)
    model = dl.ensemble_mlp(data, seed=seed, **builder_options)
    result = dl.train(model, data, seed=seed, **train_options)
    seconds = time.perf_counter() - started
    predicted = model.predict(test)
    return score(task, test[target], predicted), seconds, _one_row_ms(model, test), result


RUNNERS = {
    "trees": run_trees,
    "course": run_course,
    "ensemble": run_ensemble,
    "ensemble_mae": lambda *a: run_ensemble(*a, regression_loss="mae"),
    "ensemble_k1": lambda *a: run_ensemble(*a, members=1),
    "ensemble_dropout": lambda *a: run_ensemble(*a, dropout_rate=0.15),
    "ensemble_low_lr": lambda *a: run_ensemble(*a, lr_scale=1 / 3),
    "ensemble_mish": lambda *a: run_ensemble(*a, activation="mish"),
    "ensemble_val_loss": lambda *a: run_ensemble(*a, select_by_loss=True),
    "ensemble_mae_fast": lambda *a: run_ensemble(*a, regression_loss="mae", lr_scale=3.0),
}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tables", nargs="+", default=list(TABLES), choices=TABLES)
    parser.add_argument("--candidates", nargs="+", default=list(CANDIDATES), choices=CANDIDATES)
    parser.add_argument("--seeds", nargs="+", type=int, default=[0])
    parser.add_argument("--max-rows", type=int, default=None,
                        help="subsample larger tables to this many rows (quick iterations)")
    parser.add_argument("--data-dir", type=Path, default=DATA_DIR)
    parser.add_argument("--out", type=Path, default=None, help="append rows to this CSV")
    args = parser.parse_args(argv)

    rows = []
    for table in args.tables:
        frame, target, task = load_table(table, args.data_dir)
        if args.max_rows and len(frame) > args.max_rows:
            frame = frame.sample(args.max_rows, random_state=0)
        for seed in args.seeds:
            fit, test = split(frame, seed)
            for candidate in args.candidates:
                if candidate == "ensemble_mae" and task != "regression":
                    continue  # the same as "ensemble" for classification
                value, seconds, one_row_ms, result = RUNNERS[candidate](fit, test, target, task,
                                                                        seed)
                row = dict(table=table, rows=len(frame), task=task, seed=seed,
                           candidate=candidate, metric="mae" if task == "regression" else "acc",
                           score=value, train_s=seconds, one_row_ms=one_row_ms,
                           epochs=getattr(result, "epochs_run", None),
                           best_epoch=getattr(result, "best_epoch", None))
                rows.append(row)
                print(", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                                for k, v in row.items()), flush=True)
                if args.out is not None:
                    pd.DataFrame([row]).to_csv(args.out, mode="a", index=False,
                                               header=not args.out.exists())
    table = pd.DataFrame(rows).groupby(["table", "metric", "candidate"], sort=False)[
        ["score", "train_s", "one_row_ms"]
    ].mean().round(4)
    print(table.to_string())
    return 0


if __name__ == "__main__":
    sys.exit(main())
