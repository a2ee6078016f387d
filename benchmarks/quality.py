"""How good dlstructured's default model is, beside gradient-boosted trees, on many tables.

Usage::

    python benchmarks/quality.py [--data-dir DIR] [--tables NAME ...] [--seeds 0 1 2]
                                 [--sides default course hgb naive] [--out results.json]
                                 [--markdown results.md] [--backend jax] [--timeout S] [--quick]

Every side sees the same rows: each table is split 70/30 once, with a fixed split seed; every
choice a side makes (epochs, early stopping, ensembling, the loss of the trees aside) is made on
the 70%. A ``--seeds`` value is the training seed of a side (``--seed`` of the command line,
``random_state`` of the trees), never the split's; seed 0 is the default seed. The sides:

- ``default``: what a user runs. The 70% is written to a CSV file (text as text, missing values
  empty), ``dlstructured train TRAIN.csv --target COL --task TASK --seed S`` runs in a process of
  its own (its wall time is the train time), then ``dlstructured predict MODEL TEST.csv --proba``
  on the raw 30% without the target, and its predictions are scored;
- ``course``: the same commands with the course's recipe spelled out (``--model dense --hidden
  512,512,512 ...``), which stays the course's recipe when the default changes;
- ``hgb``: scikit-learn's ``HistGradientBoosting`` with its defaults, text columns as pandas
  ``category`` (``categorical_features="from_dtype"``; a column with more levels than the trees'
  255 bins goes in as ordinal codes); for regression, both ``squared_error`` and
  ``absolute_error`` are fitted and the better on the 30% is reported, a strong baseline on
  purpose;
- ``naive``: the training target's median (regression) or class frequencies (classification).

Metrics: MAE (and RMSE) in the target's units for regression; accuracy and log loss for
classification. The first of each is the one a side wins on.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from _quality_tables import LOADERS, DataDirMissing, Table, split  # noqa: E402
from run import _environment, machine_info, matmul_peak_gflops  # noqa: E402

SIDES = ("default", "course", "hgb", "naive")
CLI_SIDES = ("default", "course")
# The course's recipe as command-line options (min-max scaling and the MAE loss have no flag).
COURSE_OPTIONS = [
    "--model", "dense", "--hidden", "512,512,512", "--activation", "relu",
    "--dropout", "0", "--epochs", "200", "--batch-size", "256", "--learning-rate", "0.001",
    "--patience", "20", "--valid-fraction", "0.3",
]  # fmt: skip
QUICK_EPOCHS = 2
CLIP = 1e-15  # probabilities are clipped to [CLIP, 1 - CLIP] for the log loss
HGB_MAX_CATEGORIES = 255  # the trees' limit on the levels of one categorical feature


def _default_data_dir() -> str | None:
    """``../shared/data`` from the current folder or from the checkout, if one exists."""
    for folder in (Path.cwd().parent / "shared" / "data", HERE.parents[1] / "shared" / "data"):
        if folder.is_dir():
            return str(folder)
    return None


# ------------------------------------------------------------------------------------------
# Metrics.
# ------------------------------------------------------------------------------------------


def regression_metrics(y_true, y_pred) -> dict[str, float]:
    """MAE and RMSE of predictions, in the target's units."""
    errors = np.asarray(y_pred, dtype=float) - np.asarray(y_true, dtype=float)
    return {"mae": float(np.mean(np.abs(errors))), "rmse": float(np.sqrt(np.mean(errors**2)))}


def classification_metrics(y_true, probabilities, classes) -> dict[str, float]:
    """Accuracy and log loss of class probabilities.

    Args:
        y_true: The true labels.
        probabilities: ``(rows, len(classes))`` probabilities, column ``j`` for ``classes[j]``.
        classes: The labels, in the order of the columns.

    Returns:
        ``{"accuracy": ..., "log_loss": ...}``; the predicted class is the most probable one, and
        the probabilities are clipped to ``[1e-15, 1 - 1e-15]`` and renormalized first, so a
        confident mistake costs a large, finite loss.

    Raises:
        ValueError: If a true label is not among ``classes``.
    """
    classes = list(classes)
    position = {label: index for index, label in enumerate(classes)}
    unknown = sorted({str(label) for label in y_true if label not in position})
    if unknown:
        raise ValueError(f"labels {unknown} are not among the classes {classes}")
    codes = np.array([position[label] for label in y_true])
    clipped = np.clip(np.asarray(probabilities, dtype=float), CLIP, 1 - CLIP)
    clipped /= clipped.sum(axis=1, keepdims=True)
    rows = np.arange(len(codes))
    return {
        "accuracy": float(np.mean(np.argmax(clipped, axis=1) == codes)),
        "log_loss": float(-np.mean(np.log(clipped[rows, codes]))),
    }


PRIMARY = {
    "regression": ("mae", "lower"),
    "binary": ("accuracy", "higher"),
    "multiclass": ("accuracy", "higher"),
}


def _score(table: Table, y_true, *, predictions=None, probabilities=None, classes=None) -> dict:
    if table.task == "regression":
        return regression_metrics(y_true, predictions)
    return classification_metrics(y_true, probabilities, classes)


# ------------------------------------------------------------------------------------------
# Sides.
# ------------------------------------------------------------------------------------------


def run_naive(table: Table, train: pd.DataFrame, test: pd.DataFrame, seed: int) -> dict:
    """The training target's median, or its class frequencies, for every test row."""
    start = time.perf_counter()
    y_train, y_test = train[table.target], test[table.target]
    if table.task == "regression":
        guess = np.full(len(test), float(y_train.median()))
        metrics = _score(table, y_test, predictions=guess)
    else:
        frequencies = y_train.value_counts(normalize=True)
        probabilities = np.tile(frequencies.to_numpy(), (len(test), 1))
        metrics = _score(table, y_test, probabilities=probabilities, classes=frequencies.index)
    return {**metrics, "train_s": time.perf_counter() - start}


def tree_features(train: pd.DataFrame, test: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Features for the trees: text columns as ``category`` with the training part's levels.

    A level seen only in the test part becomes missing. A column with more levels than the
    trees accept (255) becomes ordinal codes in the order of its sorted levels instead.
    """
    train, test = train.copy(), test.copy()
    for column in train.columns:
        if pd.api.types.is_numeric_dtype(train[column]):
            continue
        levels = sorted(train[column].dropna().astype(str).unique())
        for part in (train, test):
            text = part[column].where(part[column].isna(), part[column].astype(str))
            coded = pd.Categorical(text.where(text.isin(levels)), categories=levels)
            if len(levels) > HGB_MAX_CATEGORIES:
                part[column] = np.where(coded.codes < 0, np.nan, coded.codes.astype(float))
            else:
                part[column] = coded
    return train, test


def run_hgb(table: Table, train: pd.DataFrame, test: pd.DataFrame, seed: int) -> dict:
    """scikit-learn's HistGradientBoosting with its defaults; the better loss for regression."""
    from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor

    x_train, x_test = tree_features(
        train.drop(columns=table.target), test.drop(columns=table.target)
    )
    y_train, y_test = train[table.target], test[table.target]
    if table.task != "regression":
        model = HistGradientBoostingClassifier(categorical_features="from_dtype", random_state=seed)
        start = time.perf_counter()
        model.fit(x_train, y_train)
        train_s = time.perf_counter() - start
        metrics = _score(
            table, y_test, probabilities=model.predict_proba(x_test), classes=model.classes_
        )
        return {**metrics, "train_s": train_s}
    fits = {}
    for loss in ("squared_error", "absolute_error"):
        model = HistGradientBoostingRegressor(
            loss=loss, categorical_features="from_dtype", random_state=seed
        )
        start = time.perf_counter()
        model.fit(x_train, y_train)
        train_s = time.perf_counter() - start
        fits[loss] = {
            **_score(table, y_test, predictions=model.predict(x_test)),
            "train_s": train_s,
        }
    chosen = min(fits, key=lambda loss: fits[loss]["mae"])
    return {**fits[chosen], "loss": chosen, "by_loss": fits}


def _cli(arguments: list[str], backend: str, timeout: float) -> dict:
    """Run ``python -m dlstructured ARGUMENTS``: wall time, exit status and output's tail."""
    command = [sys.executable, "-m", "dlstructured", *arguments, "--backend", backend, "--quiet"]
    start = time.perf_counter()
    try:
        done = subprocess.run(
            command, env=_environment(backend), capture_output=True, text=True, timeout=timeout
        )
    except subprocess.TimeoutExpired:
        return {"seconds": time.perf_counter() - start, "error": f"timed out after {timeout} s"}
    outcome = {"seconds": time.perf_counter() - start}
    if done.returncode != 0:
        tail = (done.stdout + done.stderr)[-1500:]
        outcome["error"] = f"{arguments[0]} exited with status {done.returncode}: {tail}"
    return outcome


def cli_train_command(
    table: Table, train_csv: Path, out: Path, seed: int, side: str, epochs: int | None = None
) -> list[str]:
    """The ``dlstructured train`` arguments of a command-line side."""
    arguments = ["train", str(train_csv), "--target", table.target, "--task", table.task]
    if side == "course":
        arguments += COURSE_OPTIONS
    arguments += ["--seed", str(seed), "--out", str(out)]
    if epochs is not None:
        arguments += ["--epochs", str(epochs)]  # the last --epochs wins
    return arguments


def read_predictions(path: Path, table: Table, classes) -> dict:
    """A ``dlstructured predict --proba`` file as the arguments of :func:`_score`.

    The ``probability_<label>`` columns are matched to ``classes`` by the label's text.

    Raises:
        ValueError: If the file has no probability column for one of the classes.
    """
    frame = pd.read_csv(path)
    if table.task == "regression":
        return {"predictions": frame["prediction"].to_numpy(dtype=float)}
    columns = [f"probability_{label}" for label in classes]
    missing = [column for column in columns if column not in frame.columns]
    if missing:
        raise ValueError(
            f"{path} lacks the columns {missing} of the training classes; "
            f"Received: columns={list(frame.columns)}"
        )
    return {"probabilities": frame[columns].to_numpy(dtype=float), "classes": classes}


def run_cli_side(
    table: Table,
    train: pd.DataFrame,
    test: pd.DataFrame,
    seed: int,
    *,
    side: str,
    folder: Path,
    options: argparse.Namespace,
) -> dict:
    """Train with the command line on the 70% as a file, predict on the raw 30%, score."""
    train_csv, test_csv = folder / "train.csv", folder / "test.csv"
    if not train_csv.is_file():
        train.to_csv(train_csv, index=False)
        test.drop(columns=table.target).to_csv(test_csv, index=False)
    out, predictions = folder / f"{side}-seed{seed}", folder / f"{side}-seed{seed}.csv"
    epochs = QUICK_EPOCHS if options.quick else None
    arguments = cli_train_command(table, train_csv, out, seed, side, epochs)
    result: dict = {"command": ["dlstructured", *arguments]}
    trained = _cli(arguments, options.backend, options.timeout)
    result["train_s"] = trained["seconds"]
    if "error" in trained:
        return {**result, "error": trained["error"]}
    metrics_file = out / "metrics.json"
    if metrics_file.is_file():
        written = json.loads(metrics_file.read_text())
        result["epochs_run"] = written.get("epochs_run")
        result["best_epoch"] = written.get("best_epoch")
    predict = ["predict", str(out / "model.keras"), str(test_csv), "--out", str(predictions)]
    if table.task != "regression":
        predict.append("--proba")
    predicted = _cli(predict, options.backend, options.timeout)
    result["predict_s"] = predicted["seconds"]
    if "error" in predicted:
        return {**result, "error": predicted["error"]}
    classes = sorted(train[table.target].unique()) if table.task != "regression" else None
    scored = read_predictions(predictions, table, classes)
    return {**result, **_score(table, test[table.target].to_numpy(), **scored)}


def run_side(side: str, table: Table, train, test, seed: int, folder: Path, options) -> dict:
    """One side at one seed; a failure is returned as ``{"error": ...}``, not raised."""
    try:
        if side in CLI_SIDES:
            result = run_cli_side(
                table, train, test, seed, side=side, folder=folder, options=options
            )
        else:
            result = {"hgb": run_hgb, "naive": run_naive}[side](table, train, test, seed)
    except Exception as error:  # one failed run must not stop the benchmark
        result = {"error": f"{type(error).__name__}: {error}"}
    result["seed"] = seed
    if "train_s" in result:
        result["train_s_per_1000_rows"] = result["train_s"] / (len(train) / 1000.0)
    return result


# ------------------------------------------------------------------------------------------
# Summaries.
# ------------------------------------------------------------------------------------------


def summarize(runs: list[dict], metric_names) -> dict:
    """Mean and spread (sample standard deviation, ``None`` from one run) over the good runs."""
    good = [run for run in runs if "error" not in run]
    summary: dict = {"runs_ok": len(good), "runs_failed": len(runs) - len(good)}
    for name in [*metric_names, "train_s", "train_s_per_1000_rows"]:
        values = np.array([run[name] for run in good if run.get(name) is not None], dtype=float)
        if len(values):
            if len(values) < 2:
                spread = None
            elif np.all(values == values[0]):
                spread = 0.0  # exactly, not 1e-16 from rounding
            else:
                spread = float(np.std(values, ddof=1))
            summary[name] = {
                "mean": float(np.mean(values)),
                "std": spread,
                "min": float(values.min()),
                "max": float(values.max()),
            }
    return summary


def _seed_run(side_result: dict, seed: int) -> dict | None:
    for run in side_result.get("runs", []):
        if run["seed"] == seed and "error" not in run:
            return run
    return None


def verdict(task: str, sides: dict, seed: int = 0) -> dict | None:
    """Does the default side beat the trees at ``seed`` on the task's main metric?

    Returns ``None`` unless both sides have a good run at that seed; otherwise the metric, both
    values and ``beats`` (strictly better; a tie does not beat).
    """
    default = _seed_run(sides.get("default", {}), seed)
    trees = _seed_run(sides.get("hgb", {}), seed)
    if default is None or trees is None:
        return None
    metric, better = PRIMARY[task]
    ours, theirs = default[metric], trees[metric]
    beats = ours < theirs if better == "lower" else ours > theirs
    return {"metric": metric, "seed": seed, "default": ours, "hgb": theirs, "beats": bool(beats)}


def _fmt(value, spec: str = ".4g") -> str:
    """``n/a`` for no value; whole numbers with thousands separators from 1,000 up."""
    if value is None:
        return "n/a"
    return format(value, ",.0f") if abs(value) >= 1000 else format(value, spec)


def format_markdown(results: dict) -> str:
    """Results as Markdown: a table x side table of figures, then the verdicts per table."""
    lines = [
        "| table | side | metric | mean ± std | seed 0 | log loss (mean) | train s (mean) "
        "| s / 1000 rows |",
        "|---|---|---|---|---|---|---|---|",
    ]
    verdicts = []
    for name, entry in results["tables"].items():
        if "skipped" in entry:
            lines.append(f"| {name} | — | skipped: {entry['skipped']} | | | | | |")
            continue
        metric = PRIMARY[entry["task"]][0]
        for side, side_result in entry["sides"].items():
            summary = side_result["summary"]
            if metric not in summary:
                errors = "; ".join(r["error"][:80] for r in side_result["runs"] if "error" in r)
                lines.append(f"| {name} | {side} | failed: {errors} | | | | | |")
                continue
            figure = summary[metric]
            seed0 = _seed_run(side_result, 0)
            log_loss = summary.get("log_loss", {}).get("mean")
            train_s = summary.get("train_s", {}).get("mean")
            per_1000 = summary.get("train_s_per_1000_rows", {}).get("mean")
            lines.append(
                f"| {name} | {side} | {metric} | {_fmt(figure['mean'])} ± {_fmt(figure['std'])} "
                f"| {_fmt(seed0[metric] if seed0 else None)} | {_fmt(log_loss)} "
                f"| {_fmt(train_s, '.3g')} | {_fmt(per_1000, '.3g')} |"
            )
        if entry.get("beats_hgb_seed0") is not None:
            verdicts.append((name, entry["beats_hgb_seed0"]))
    if verdicts:
        lines += [
            "",
            "| table | metric | default, seed 0 | HGB, seed 0 | default beats HGB |",
            "|---|---|---|---|---|",
        ]
        for name, found in verdicts:
            lines.append(
                f"| {name} | {found['metric']} | {_fmt(found['default'])} "
                f"| {_fmt(found['hgb'])} | {'yes' if found['beats'] else 'no'} |"
            )
        summary = results["summary"]
        lines += [
            "",
            f"The default beats HistGradientBoosting at seed 0 on "
            f"{summary['beats_hgb_seed0']} of {summary['tables_compared']} tables.",
        ]
    return format_conditions(results) + "\n\n" + "\n".join(lines) + "\n"


def format_conditions(results: dict) -> str:
    """The run's conditions as a Markdown list: when, what, on which machine, under what load."""
    machine, peak = results["machine"], results["matmul_peak_gflops"]
    versions = ", ".join(f"{name} {version}" for name, version in machine["versions"].items()
                         if version)  # fmt: skip
    command = " ".join(["python", *results["command"][1:]])

    def load(key: str) -> str:
        return ", ".join(f"{value:.2f}" for value in results[key])

    return "\n".join([
        f"- run: {results['started_utc']} (UTC), commit {machine['git_commit']}",
        f"- command: `{command}`",
        f"- machine: {machine['cpu']}, {machine['usable_cpus']} usable of "
        f"{machine['logical_cpus']} logical CPUs, {machine['memory_gib']} GiB memory; GPUs: "
        f"{', '.join(machine['gpus']) or 'none found'}",
        f"- versions: {versions}; backend of the command-line sides: "
        f"{results['options']['backend']}",
        f"- float32 2048x2048 matrix-product peak (numpy): {peak['start']:.0f} GFLOP/s at the "
        f"start, {peak['end']:.0f} at the end",
        f"- load average (1, 5, 15 min) before: {load('load_average_before')}; after: "
        f"{load('load_average_after')}",
    ])  # fmt: skip


# ------------------------------------------------------------------------------------------
# Running it all.
# ------------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Compare dlstructured's default model with HistGradientBoosting, the "
        "course's recipe and a naive guess on fixed 70/30 splits of many tables.",
    )
    parser.add_argument(
        "--data-dir",
        default=_default_data_dir(),
        help="folder with red-wine.csv, ion.csv and california-housing.csv (default: "
        "../shared/data if it exists); tables that need a missing file are skipped",
    )
    parser.add_argument("--tables", nargs="+", choices=list(LOADERS), default=list(LOADERS))
    parser.add_argument(
        "--seeds",
        nargs="+",
        type=int,
        default=[0, 1, 2],
        help="training seeds of each side (the split is fixed); 0 is the default seed",
    )
    parser.add_argument("--sides", nargs="+", choices=SIDES, default=list(SIDES))
    parser.add_argument("--out", default="results.json", help="JSON file of all figures")
    parser.add_argument("--markdown", default="results.md", help="Markdown table of the figures")
    parser.add_argument("--backend", choices=("jax", "tensorflow"), default="jax")
    parser.add_argument(
        "--timeout",
        type=float,
        default=1800.0,
        help="seconds each dlstructured command may run before it is stopped (default: 1800)",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help=f"check the harness: at most {QUICK_EPOCHS} epochs, small synthetic tables",
    )
    return parser.parse_args(argv)


def run_table(name: str, options: argparse.Namespace, work: Path) -> dict:
    try:
        table = LOADERS[name](options.data_dir, quick=options.quick)
    except DataDirMissing as missing:
        print(f"[{name}] skipped: {missing}", flush=True)
        return {"skipped": str(missing)}
    train_rows, test_rows = split(table)
    train = table.frame.iloc[train_rows].reset_index(drop=True)
    test = table.frame.iloc[test_rows].reset_index(drop=True)
    entry = {
        "task": table.task,
        "target": table.target,
        "rows": len(table.frame),
        "columns": table.frame.shape[1] - 1,
        "n_train": len(train),
        "n_test": len(test),
        "split": "grouped" if table.groups is not None else "random",
        "sides": {},
    }
    folder = work / name
    folder.mkdir()
    metric_names = ["mae", "rmse"] if table.task == "regression" else ["accuracy", "log_loss"]
    for side in options.sides:
        runs = []
        for seed in options.seeds:
            result = run_side(side, table, train, test, seed, folder, options)
            runs.append(result)
            shown = ", ".join(f"{m} {result[m]:.4g}" for m in metric_names if m in result)
            status = f"FAILED: {result['error'][:200]}" if "error" in result else shown
            print(
                f"[{name}] {side} seed {seed}: {status} ({result.get('train_s', 0):.1f} s)",
                flush=True,
            )
        entry["sides"][side] = {"runs": runs, "summary": summarize(runs, metric_names)}
    entry["beats_hgb_seed0"] = verdict(table.task, entry["sides"], seed=0)
    return entry


def main(argv: list[str] | None = None) -> int:
    options = parse_args(argv)
    started = datetime.datetime.now(datetime.timezone.utc)
    load_before = os.getloadavg()
    peak_start = matmul_peak_gflops()
    results: dict = {
        "started_utc": started.isoformat(timespec="seconds"),
        "load_average_before": load_before,
        "machine": machine_info(),
        "options": {key: value for key, value in vars(options).items()},
        "command": [sys.executable, *sys.argv],
        "tables": {},
    }
    print(f"float32 matrix-product peak: {peak_start:.0f} GFLOP/s", flush=True)
    work = Path(tempfile.mkdtemp(prefix="dlstructured-quality-"))
    try:
        for name in options.tables:
            results["tables"][name] = run_table(name, options, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    peak_end = matmul_peak_gflops()
    results["load_average_after"] = os.getloadavg()
    results["matmul_peak_gflops"] = {
        "start": peak_start,
        "end": peak_end,
        "best": max(peak_start, peak_end),
    }
    found = [e["beats_hgb_seed0"] for e in results["tables"].values() if e.get("beats_hgb_seed0")]
    results["summary"] = {
        "tables_compared": len(found),
        "beats_hgb_seed0": sum(v["beats"] for v in found),
    }
    Path(options.out).write_text(json.dumps(results, indent=2, default=str) + "\n")
    markdown = format_markdown(results)
    Path(options.markdown).write_text(markdown)
    print(markdown, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
