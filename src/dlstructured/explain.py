"""Which raw columns a trained model relies on: permutation importance on held-out rows.

``feature_importance(model, frame)`` shuffles one raw column of ``frame`` at a time (a categorical
or date column moves as one, however many features the preprocessing makes of it), predicts
through the model's own preprocessing and reports how much the task's metric gets worse: MAE
for regression, accuracy for classifiers. The shuffles follow scikit-learn's
``permutation_importance`` draw for draw, so with the same ``random_state`` and ``n_repeats`` both
shuffle the same rows. All repeats of one column go through the network in one predict call.

``write_importance`` writes the table and its bar chart to a folder, as ``dlstructured explain``
does.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from dlstructured import _io
from dlstructured._checks import check_choice, check_int
from dlstructured.errors import DataError

IMPORTANCE_FILE = "importance.csv"
CHART_FILE = "importance.png"

# What each metric of `TabularModel.evaluate` means: True where higher is better.
_HIGHER_IS_BETTER = {"mae": False, "mse": False, "rmse": False, "log_loss": False,
                     "accuracy": True, "auc": True}
_METRICS = {"regression": ("mae", "mse", "rmse"), "binary": ("accuracy", "auc", "log_loss"),
            "multiclass": ("accuracy", "log_loss")}
# The task table's first metric, in `evaluate`'s name for it.
_EVALUATE_NAME = {"binary_accuracy": "accuracy"}
# Feature-matrix cells per predict call (float32: 256 MiB); more repeats are split into calls.
_MAX_CELLS = 1 << 26


def _task_metric(task: str) -> str:
    from dlstructured.tasks import get_task

    first = get_task(task).metric_names[0]
    return _EVALUATE_NAME.get(first, first)


def _random_state(random_state: Any) -> np.random.RandomState:
    """scikit-learn's ``check_random_state``, except that ``None`` draws a fresh, unseeded
    generator instead of using numpy's global one (whose state the library leaves alone)."""
    if isinstance(random_state, np.random.RandomState):
        return random_state
    if random_state is None:
        return np.random.RandomState()
    return np.random.RandomState(check_int("random_state", random_state, minimum=0))


def _labelled_rows(model: Any, frame: pd.DataFrame, y: Any) -> tuple[pd.DataFrame, pd.Series]:
    """The model's input columns of ``frame`` and the labels, rows without a label left out."""
    from dlstructured.data.preprocessing import _rows_with_target

    if not isinstance(frame, pd.DataFrame):
        raise TypeError(f"`frame` must be a pandas DataFrame of raw rows. Received: frame of "
                        f"type {type(frame).__name__}")
    if y is None or isinstance(y, str):
        column = model.target if y is None else y
        if column not in frame.columns:
            advice = "pass the labels as `y`" if y is None else "name a column of `frame`"
            raise DataError(
                f"`y` names the target column {column!r}, which `frame` does not have; "
                f"{advice}. Columns: {', '.join(map(repr, list(frame.columns)[:30]))}. "
                f"Received: y={y!r}",
                cli_message=f"--target {column!r} is not a column of the data; columns: "
                f"{', '.join(map(repr, list(frame.columns)[:30]))}")
        labels = frame[column]
    else:
        values = np.asarray(y)
        if values.ndim != 1 or len(values) != len(frame):
            raise ValueError(f"`y` must hold one label per row of `frame` ({len(frame)} rows). "
                             f"Received: y of shape {values.shape}")
        labels = pd.Series(values, index=frame.index)
    missing = [name for name in model.preprocessor.input_columns if name not in frame.columns]
    if missing:
        raise DataError(f"`frame` lacks {len(missing)} column(s) the model reads: "
                        f"{', '.join(map(repr, missing))}. Add them (missing values may be NaN).")
    features = frame[model.preprocessor.input_columns].reset_index(drop=True)
    labels = labels.reset_index(drop=True).rename(model.target)
    keep = _rows_with_target(labels.to_frame(), model.target)
    if keep is not None:
        features, labels = features.iloc[keep], labels.iloc[keep]
    if len(labels) == 0:
        raise DataError("`frame` has no rows with a label to measure importance on. "
                        f"Received: {len(frame)} rows")
    return features.reset_index(drop=True), labels.reset_index(drop=True)


def feature_importance(
    model: Any,
    frame: pd.DataFrame,
    y: Any = None,
    *,
    n_repeats: int = 5,
    random_state: Any = None,
    metric: str | None = None,
) -> pd.DataFrame:
    """Permutation importance of each raw column the model reads, on held-out rows.

    Each column is shuffled ``n_repeats`` times; its importance is how much the metric gets
    worse, on average, compared with the unshuffled rows (positive: the model relies on it;
    near zero or negative: it does not). Shuffles are drawn as scikit-learn's
    ``permutation_importance`` draws them, so with the same ``random_state`` both permute the
    same rows. Use rows the model was not trained on.

    Args:
        model: A trained ``TabularModel``.
        frame: Raw held-out rows with every column the model reads.
        y: The labels: an array or Series with one per row, the name of the column of
            ``frame`` holding them, or ``None`` for the model's target column. Rows without a
            label are left out with a warning. Defaults to ``None``.
        n_repeats: Shuffles per column. Defaults to ``5``.
        random_state: Seed (an int) or a ``numpy.random.RandomState`` of the shuffles, as in
            scikit-learn; ``None`` draws fresh ones each call. Defaults to ``None``.
        metric: A metric of ``TabularModel.evaluate`` for the task (``"mae"``, ``"mse"``,
            ``"rmse"``; ``"accuracy"``, ``"log_loss"``, and ``"auc"`` for binary), or ``None``
            for the task's own: MAE for regression, accuracy for classifiers. Defaults to
            ``None``.

    Returns:
        A DataFrame indexed by column name (``column``), most important first, with
        ``importance_mean`` and ``importance_std`` (over the repeats, as scikit-learn's) in the
        metric's units. ``attrs`` holds ``metric`` and ``baseline``, the unshuffled score.

    Raises:
        TypeError: If ``frame`` is not a DataFrame, or an argument has the wrong type.
        ValueError: If ``n_repeats < 1``, ``metric`` is not one of the task's, or ``y`` does
            not have one label per row.
        DataError: If ``frame`` lacks a column the model reads (all are named), ``y`` names
            a column ``frame`` does not have, or no row has a label.

    Example:

    >>> import numpy as np, pandas as pd
    >>> from dlstructured import dense_stack, prepare, train
    >>> rng = np.random.default_rng(0)
    >>> frame = pd.DataFrame({"signal": rng.normal(size=250), "noise": rng.normal(size=250)})
    >>> frame["y"] = 3 * frame["signal"]
    >>> data = prepare(frame.head(200), "y", valid_fraction=0.25, seed=0)
    >>> model = dense_stack(data, hidden_units=(8,), seed=0)
    >>> _ = train(model, data, epochs=30, batch_size=16, learning_rate=0.01, verbose=0)
    >>> held_out = frame.tail(50)
    >>> importance = model.feature_importance(held_out, n_repeats=3, random_state=0)
    >>> list(importance.index), importance.attrs["metric"]
    (['signal', 'noise'], 'mae')
    """
    from dlstructured.tabular import DEFAULT_BATCH_SIZE, _metrics

    n_repeats = check_int("n_repeats", n_repeats, minimum=1)
    choices = _METRICS[model.task]
    metric = _task_metric(model.task) if metric is None else check_choice("metric", metric,
                                                                          choices)
    features, labels = _labelled_rows(model, frame, y)
    rng = _random_state(random_state)
    # As scikit-learn: one seed from random_state, and a generator of that seed per column.
    seed = rng.randint(np.iinfo(np.int32).max + 1)
    truth = model.preprocessor.transform_target(labels)
    rows = len(features)

    def scores(table: pd.DataFrame) -> list[float]:
        outputs = model._forward(model.preprocessor.transform(table), DEFAULT_BATCH_SIZE)
        return [_metrics(model.task, truth, outputs[start:start + rows], model)[metric]
                for start in range(0, len(table), rows)]

    baseline = scores(features)[0]
    per_call = max(1, min(n_repeats, _MAX_CELLS // max(1, rows * model.preprocessor.num_features)))
    tiled = features.iloc[np.tile(np.arange(rows), per_call)].reset_index(drop=True)
    permuted: dict[Any, list[float]] = {}
    with warnings.catch_warnings():
        # A shuffled column holds the same values as the unshuffled one, whose notices about
        # them (placeholders, extremes ...) the baseline has already given.
        warnings.simplefilter("ignore")
        for column in features.columns:
            column_rng = np.random.RandomState(seed)
            order = np.arange(rows)
            values = features[column]
            shuffles = []
            for _ in range(n_repeats):
                # scikit-learn shuffles the order in place and indexes the column it shuffled
                # last time; doing the same keeps every repeat's rows equal to its.
                column_rng.shuffle(order)
                values = values.iloc[order].reset_index(drop=True)
                shuffles.append(values)
            permuted[column] = []
            for start in range(0, n_repeats, per_call):
                chunk = shuffles[start:start + per_call]
                table = tiled if len(chunk) == per_call else tiled.iloc[:rows * len(chunk)].copy()
                original = table[column]
                table[column] = pd.concat(chunk, ignore_index=True)
                permuted[column].extend(scores(table))
                table[column] = original
    sign = 1.0 if _HIGHER_IS_BETTER[metric] else -1.0
    drops = {column: sign * (baseline - np.asarray(values)) for column, values in permuted.items()}
    result = pd.DataFrame({
        "importance_mean": [float(np.mean(values)) for values in drops.values()],
        "importance_std": [float(np.std(values)) for values in drops.values()],
    }, index=pd.Index(list(drops), name="column"))
    result = result.sort_values("importance_mean", ascending=False, kind="stable")
    result.attrs.update(metric=metric, baseline=float(baseline))
    return result


def plot_importance(importance: pd.DataFrame, *, title: str | None = None) -> Any:
    """Draw permutation importances as horizontal bars, most important on top.

    Args:
        importance: What ``feature_importance`` returns.
        title: Title of the figure. Defaults to ``None``.

    Returns:
        A ``matplotlib.figure.Figure``, drawn without pyplot; save it with
        ``fig.savefig("importance.png")``.

    Raises:
        ValueError: If ``importance`` lacks ``importance_mean`` or ``importance_std``.

    Example:

    >>> import pandas as pd
    >>> from dlstructured.explain import plot_importance
    >>> table = pd.DataFrame({"importance_mean": [0.9, 0.1], "importance_std": [0.05, 0.02]},
    ...                      index=pd.Index(["signal", "noise"], name="column"))
    >>> fig = plot_importance(table)
    >>> table.attrs["metric"] = "mae"
    >>> plot_importance(table).axes[0].get_xlabel()
    'increase of mae when the column is shuffled'
    """
    from matplotlib.figure import Figure

    needed = {"importance_mean", "importance_std"}
    if not isinstance(importance, pd.DataFrame) or not needed <= set(importance.columns):
        raise ValueError("`importance` must be the DataFrame `feature_importance` returns, with "
                         f"columns {sorted(needed)}. Received: {type(importance).__name__}")
    metric = importance.attrs.get("metric")
    change = "drop in" if _HIGHER_IS_BETTER.get(metric, False) else "increase of"
    label = f"{change} {metric} when the column is shuffled" if metric else "importance"
    ordered = importance.iloc[::-1]
    fig = Figure(figsize=(6.0, 1.0 + 0.35 * max(1, len(ordered))), layout="constrained")
    axis = fig.add_subplot(1, 1, 1)
    axis.barh([str(name) for name in ordered.index], ordered["importance_mean"].to_numpy(),
              xerr=ordered["importance_std"].to_numpy(), color="#4c72b0", ecolor="#333333")
    axis.axvline(0.0, color="#888888", linewidth=0.8)
    axis.set_xlabel(label)
    if title:
        axis.set_title(title)
    return fig


def write_importance(importance: pd.DataFrame, out: str | os.PathLike, *,
                     title: str | None = None) -> list[Path]:
    """Write ``importance.csv`` and its bar chart ``importance.png`` into the folder ``out``.

    Each file is written atomically; the folder is created if missing.

    Args:
        importance: What ``feature_importance`` returns.
        out: The folder.
        title: Title of the chart. Defaults to ``None``.

    Returns:
        The two paths written.

    Raises:
        ValueError: If ``importance`` is not a table of importances.
        RunError: If ``out`` is a file.
    """
    from dlstructured.errors import RunError

    out = Path(out)
    if out.exists() and not out.is_dir():
        raise RunError(f"`out` {str(out)!r} is a file; give a folder to write "
                       f"{IMPORTANCE_FILE} and {CHART_FILE} into",
                       cli_message=f"--out {str(out)!r} is a file; give a folder")
    figure = plot_importance(importance, title=title)
    out.mkdir(parents=True, exist_ok=True)
    with _io.atomic_path(out / IMPORTANCE_FILE) as temporary:
        importance.reset_index().to_csv(temporary, index=False)
    with _io.atomic_path(out / CHART_FILE) as temporary:
        figure.savefig(temporary, format="png", dpi=100)
    return [out / IMPORTANCE_FILE, out / CHART_FILE]
