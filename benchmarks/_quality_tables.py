"""The tables of the quality benchmark (``benchmarks/quality.py``) and their fixed 70/30 splits.

Each loader returns a :class:`Table`: the raw frame (text columns as text, missing values as
``NaN``, the target as a column), the target's name, the task and, for a grouped split, one group
label per row. The synthetic tables are deterministic: the same rows on every run and machine.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

SPLIT_SEED = 0  # one fixed split per table; the benchmark's seeds vary the training only
TEST_FRACTION = 0.3
TASKS = ("regression", "binary", "multiclass")


@dataclass(frozen=True)
class Table:
    """One benchmark table: raw rows, the column to predict and how to split them."""

    frame: pd.DataFrame
    target: str
    task: str
    groups: np.ndarray | None = None  # one label per row: rows of a group stay in one part

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise ValueError(f"task must be one of {TASKS}. Received: task={self.task!r}")
        if self.target not in self.frame.columns:
            raise ValueError(f"target {self.target!r} is not a column of the frame")
        if self.groups is not None and len(self.groups) != len(self.frame):
            raise ValueError(
                f"groups must hold one label per row ({len(self.frame)}). "
                f"Received: {len(self.groups)} labels"
            )


class DataDirMissing(Exception):
    """A table needs a file of ``--data-dir`` that is not there; the benchmark skips it."""


def split(table: Table, seed: int = SPLIT_SEED) -> tuple[np.ndarray, np.ndarray]:
    """Fixed 70/30 split of a table's rows: sorted training and test row positions.

    Without groups, a seeded random 30% of the rows is the test part. With groups, the groups are
    shuffled with the seed and taken into the test part in that order until it holds 30% of the
    rows (the last group taken or not, whichever comes closer), so every group lies wholly in one
    part and the parts still hold about 70% and 30% of the rows, however uneven the groups.

    Args:
        table: The table to split.
        seed: Seed of the split. Defaults to ``SPLIT_SEED`` (0).

    Returns:
        ``(train_rows, test_rows)``, positions into ``table.frame``.
    """
    from sklearn.model_selection import train_test_split

    rows = np.arange(len(table.frame))
    if table.groups is None:
        train, test = train_test_split(rows, test_size=TEST_FRACTION, random_state=seed)
        return np.sort(train), np.sort(test)
    labels, codes, counts = np.unique(table.groups, return_inverse=True, return_counts=True)
    order = np.random.default_rng(seed).permutation(len(labels))
    wanted = TEST_FRACTION * len(rows)
    taken = np.cumsum(counts[order])
    last = int(np.searchsorted(taken, wanted))  # the group that reaches 30% of the rows
    below = taken[last - 1] if last > 0 else 0
    if last < len(order) and taken[last] - wanted > wanted - below:
        last -= 1  # leaving that group out comes closer to 30%
    in_test = np.zeros(len(labels), dtype=bool)
    in_test[order[: last + 1]] = True
    return rows[~in_test[codes]], rows[in_test[codes]]


# ------------------------------------------------------------------------------------------
# Real tables.
# ------------------------------------------------------------------------------------------


def _data_file(data_dir: str | None, name: str) -> Path:
    if data_dir is None or not (Path(data_dir) / name).is_file():
        raise DataDirMissing(f"needs {name} in --data-dir (given: {data_dir})")
    return Path(data_dir) / name


def red_wine(data_dir: str | None, quick: bool = False) -> Table:
    frame = pd.read_csv(_data_file(data_dir, "red-wine.csv"))
    return Table(frame, "quality", "regression")


def ionosphere(data_dir: str | None, quick: bool = False) -> Table:
    frame = pd.read_csv(_data_file(data_dir, "ion.csv"), index_col=0)  # column 0 numbers rows
    return Table(frame.reset_index(drop=True), "Class", "binary")


def _california_frame(data_dir: str | None) -> pd.DataFrame:
    return pd.read_csv(_data_file(data_dir, "california-housing.csv"))


def california(data_dir: str | None, quick: bool = False) -> Table:
    return Table(_california_frame(data_dir), "median_house_value", "regression")


def location_cells(latitude: np.ndarray, longitude: np.ndarray, cell_degrees: float = 0.5):
    """One label per row: the ``cell_degrees`` square of latitude and longitude it lies in."""
    rows = np.floor(np.asarray(latitude, dtype=float) / cell_degrees).astype(int)
    columns = np.floor(np.asarray(longitude, dtype=float) / cell_degrees).astype(int)
    return np.array([f"{r}:{c}" for r, c in zip(rows, columns, strict=True)])


def california_grouped(data_dir: str | None, quick: bool = False) -> Table:
    frame = _california_frame(data_dir)
    groups = location_cells(frame["latitude"], frame["longitude"])
    return Table(frame, "median_house_value", "regression", groups=groups)


def _sklearn_table(loader: Callable, task: str) -> Table:
    bunch = loader(as_frame=True)
    frame = bunch.frame.copy()
    return Table(frame, bunch.target.name, task)


def diabetes(data_dir: str | None, quick: bool = False) -> Table:
    from sklearn.datasets import load_diabetes

    return _sklearn_table(load_diabetes, "regression")


def breast_cancer(data_dir: str | None, quick: bool = False) -> Table:
    from sklearn.datasets import load_breast_cancer

    return _sklearn_table(load_breast_cancer, "binary")


def wine(data_dir: str | None, quick: bool = False) -> Table:
    from sklearn.datasets import load_wine

    return _sklearn_table(load_wine, "multiclass")


def digits(data_dir: str | None, quick: bool = False) -> Table:
    from sklearn.datasets import load_digits

    return _sklearn_table(load_digits, "multiclass")


def penguins(data_dir: str | None, quick: bool = False) -> Table:
    """Palmer penguins: text columns (island, sex) and missing values, 3 species."""
    from palmerpenguins import load_penguins

    frame = load_penguins()
    return Table(frame, "species", "multiclass")


# ------------------------------------------------------------------------------------------
# Synthetic tables (fewer rows with ``quick``).
# ------------------------------------------------------------------------------------------


def friedman1(data_dir: str | None, quick: bool = False) -> Table:
    from sklearn.datasets import make_friedman1

    features, target = make_friedman1(n_samples=300 if quick else 2000, noise=1.0, random_state=0)
    frame = pd.DataFrame(features, columns=[f"x{i}" for i in range(features.shape[1])])
    frame["y"] = target
    return Table(frame, "y", "regression")


def classification(data_dir: str | None, quick: bool = False) -> Table:
    from sklearn.datasets import make_classification

    features, target = make_classification(
        n_samples=300 if quick else 5000,
        n_features=20,
        n_informative=8,
        n_classes=3,
        random_state=0,
    )
    frame = pd.DataFrame(features, columns=[f"x{i}" for i in range(features.shape[1])])
    frame["label"] = target
    return Table(frame, "label", "multiclass")


def mixed_synthetic(
    rows: int, *, numeric: int = 48, categorical: int = 12, missing: float = 0.05, seed: int = 0
) -> Table:
    """A regression table of numeric and text columns, a share of every feature missing.

    The categorical columns have from 3 to 1,000 levels (spaced evenly on a log scale), written as
    text (``"c17"``); levels are drawn with skewed frequencies, as in real tables. The target is a
    smooth function of the first eight numeric columns (with an interaction) plus an effect per
    level of each categorical column, plus noise, so a model needs both kinds of column.

    Args:
        rows: Number of rows.
        numeric: Number of numeric columns, at least 8 (the target uses the first 8). Defaults
            to 48.
        categorical: Number of text columns. Defaults to 12.
        missing: Share of each feature's values set missing (after the target is computed).
            Defaults to 0.05.
        seed: Seed of the generator. Defaults to 0.

    Returns:
        A :class:`Table` with target ``"y"``.

    Raises:
        ValueError: If ``numeric`` is below 8.
    """
    if numeric < 8:
        raise ValueError(f"numeric must be at least 8. Received: numeric={numeric}")
    rng = np.random.default_rng(seed)
    numbers = rng.standard_normal((rows, numeric))
    target = (
        2.0 * np.sin(numbers[:, 0])
        + numbers[:, 1] * numbers[:, 2]
        + 0.5 * numbers[:, 3] ** 2
        + np.abs(numbers[:, 4])
        + 0.3 * numbers[:, 5:8].sum(axis=1)
    )
    frame = pd.DataFrame(numbers, columns=[f"n{i}" for i in range(numeric)])
    levels = np.unique(np.geomspace(3, 1000, categorical).round().astype(int))
    for index, count in enumerate(levels):
        weights = 1.0 / np.arange(1, count + 1) ** 0.7
        codes = rng.choice(count, size=rows, p=weights / weights.sum())
        target = target + rng.standard_normal(count)[codes] * 0.8
        frame[f"c{index}"] = np.array([f"c{code}" for code in range(count)], dtype=object)[codes]
    target = target + 0.5 * rng.standard_normal(rows)
    for column in frame.columns:
        frame.loc[rng.random(rows) < missing, column] = np.nan
    frame["y"] = target
    return Table(frame, "y", "regression")


def synthetic_100k(data_dir: str | None, quick: bool = False) -> Table:
    return mixed_synthetic(1000 if quick else 100_000)


LOADERS: dict[str, Callable[..., Table]] = {
    "red_wine": red_wine,
    "ionosphere": ionosphere,
    "california": california,
    "california_grouped": california_grouped,
    "diabetes": diabetes,
    "breast_cancer": breast_cancer,
    "wine": wine,
    "digits": digits,
    "penguins": penguins,
    "friedman1": friedman1,
    "classification": classification,
    "synthetic_100k": synthetic_100k,
}
