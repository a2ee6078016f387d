"""The per-kind steps of the preprocessing, with typed statistics that merge.

``TabularPreprocessor`` coordinates these steps: for each column it asks the
step of the column's kind for statistics of the training rows, then writes what the step decided
into its saved state (the saved format does not depend on this module).

Each step fits its statistics from one array (``fit``), or from batches (``partial_fit``, one
batch after another) and from separately fitted steps (``merge``), so that statistics of data
too large for one frame can be gathered a batch at a time:

- ``NumericStep`` keeps count, missing count, minimum, maximum, mean and the sum of squared
  deviations: all of them merge exactly (the mean and variance by Chan, Golub and LeVeque's
  pairwise update, equal to the whole-array values up to float rounding). The median and the
  quartiles (the imputed value, robust scaling) are exact while the step holds every value it
  saw: up to ``MAX_KEPT_VALUES`` values. Beyond that a merge keeps
  ``MAX_KEPT_VALUES`` evenly spaced order statistics of the merged values, so each such
  merge can move the median's rank by at most ``count / MAX_KEPT_VALUES`` positions:
  approximate, and said so by ``stats.exact``.
- ``CategoricalStep`` counts each category and the missing values: exact.
- ``DateTimeStep`` is one ``NumericStep`` per date part (year, month ...).
- ``TargetStep`` holds a regression target's ``NumericStats``, or the count of each
  class label.

Only numpy is used.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from dlstructured.data import preprocessing as _pre

__all__ = [
    "MAX_KEPT_VALUES",
    "CategoricalStats",
    "CategoricalStep",
    "DateTimeStep",
    "NumericStats",
    "NumericStep",
    "TargetStep",
]

MAX_KEPT_VALUES = 1 << 18
"""Most values a merged ``NumericStats`` keeps for its median and quartiles."""

_FEW = 3  # distinct values tracked exactly: robust scaling treats two-valued columns apart


@dataclass(frozen=True)
class NumericStats:
    """Statistics of a numeric column's values (NaN is missing).

    Attributes:
        count: Number of present (non-missing) values.
        missing: Number of missing values.
        minimum: Smallest present value (``inf`` when there is none).
        maximum: Largest present value (``-inf`` when there is none).
        mean: Mean of the present values (``0.0`` when there is none).
        squares: Sum of squared deviations from the mean (``count * variance``).
        kept: Present values kept for the median and quartiles.
        exact: Whether ``kept`` holds every present value (the median is then exact).
        few: The distinct present values, sorted, when there are at most 3; else ``None``.
            Only gathered when asked (robust scaling needs it).
    """

    count: int = 0
    missing: int = 0
    minimum: float = math.inf
    maximum: float = -math.inf
    mean: float = 0.0
    squares: float = 0.0
    kept: np.ndarray = field(default_factory=lambda: np.zeros(0))
    exact: bool = True
    few: tuple[float, ...] | None = ()

    @classmethod
    def of(cls, values: np.ndarray, *, distinct: bool = False) -> NumericStats:
        """The statistics of one array of float values.

        Args:
            values: float64 values, NaN for missing.
            distinct: Gather ``few`` (the distinct values when at most 3). Defaults to
                ``False`` (``few`` is then ``None``).

        Returns:
            The statistics; ``kept`` is the present values themselves (not a copy).
        """
        values = np.asarray(values, dtype=np.float64)
        absent = np.isnan(values)
        present = values[~absent] if absent.any() else values
        few = None
        if distinct:
            uniques = np.unique(present)
            few = tuple(float(v) for v in uniques) if uniques.size <= _FEW else None
        if present.size == 0:
            return cls(missing=int(absent.sum()), few=few if distinct else None)
        with np.errstate(over="ignore", invalid="ignore"):
            mean = float(np.mean(present))
            squares = float(np.sum(np.square(present - mean)))
        return cls(
            count=int(present.size),
            missing=int(absent.sum()),
            minimum=float(present.min()),
            maximum=float(present.max()),
            mean=mean,
            squares=squares,
            kept=present,
            few=few,
        )

    @property
    def variance(self) -> float:
        """Population variance of the present values (``0.0`` when there is none)."""
        return self.squares / self.count if self.count else 0.0

    def merge(self, other: NumericStats) -> NumericStats:
        """The statistics of both sets of values together.

        Args:
            other: Statistics of other values.

        Returns:
            New statistics; count, missing, minimum, maximum, mean and ``squares`` are exact
            (up to float rounding), the kept values are exact up to ``MAX_KEPT_VALUES``.

        Raises:
            TypeError: If ``other`` is not a ``NumericStats``.
        """
        if not isinstance(other, NumericStats):
            raise TypeError(
                f"`other` must be a NumericStats. Received: other of type {type(other).__name__}"
            )
        count = self.count + other.count
        if count == 0:
            few = None if self.few is None or other.few is None else ()
            return NumericStats(missing=self.missing + other.missing, few=few)
        delta = other.mean - self.mean
        with np.errstate(over="ignore", invalid="ignore"):
            mean = self.mean + delta * (other.count / count)
            squares = self.squares + other.squares + delta * delta * (
                self.count * other.count / count
            )
        kept = np.concatenate([self.kept, other.kept])
        exact = self.exact and other.exact
        if kept.size > MAX_KEPT_VALUES:
            kept = np.sort(kept)[np.linspace(0, kept.size - 1, MAX_KEPT_VALUES).astype(np.int64)]
            exact = False
        return NumericStats(
            count=count,
            missing=self.missing + other.missing,
            minimum=min(self.minimum, other.minimum),
            maximum=max(self.maximum, other.maximum),
            mean=float(mean),
            squares=float(squares),
            kept=kept,
            exact=exact,
            few=_merge_few(self.few, other.few),
        )


def _merge_few(first: tuple | None, second: tuple | None) -> tuple | None:
    if first is None or second is None:
        return None
    union = sorted(set(first) | set(second))
    return tuple(union) if len(union) <= _FEW else None


@dataclass
class NumericStep:
    """Scaling and imputation of one numeric column (or one date part).

    Args:
        scaling: ``"minmax"``, ``"standard"`` or ``"robust"``, as for
            ``TabularPreprocessor``. Defaults to ``"minmax"``.

    Example:

    >>> import numpy as np
    >>> whole = NumericStep().fit(np.array([1.0, 5.0, np.nan, 3.0]))
    >>> parts = NumericStep().partial_fit(np.array([1.0, 5.0])).partial_fit(
    ...     np.array([np.nan, 3.0]))
    >>> parts.scale() == whole.scale(), parts.fill(), parts.stats.missing
    (True, 3.0, 1)
    """

    scaling: str = "minmax"
    stats: NumericStats = field(default_factory=NumericStats)

    def __post_init__(self) -> None:
        _pre.check_choice("scaling", self.scaling, _pre.SCALINGS)

    def fit(self, values: np.ndarray) -> NumericStep:
        """Fit on one array of values (NaN for missing), replacing earlier statistics."""
        self.stats = NumericStats.of(values, distinct=self.scaling == "robust")
        return self

    def partial_fit(self, batch: np.ndarray) -> NumericStep:
        """Add a batch of values to the statistics."""
        self.stats = self.stats.merge(NumericStats.of(batch, distinct=self.scaling == "robust"))
        return self

    def merge(self, other: NumericStep) -> NumericStep:
        """A new step with the statistics of both steps (which must scale the same way).

        Raises:
            TypeError: If ``other`` is not a ``NumericStep``.
            ValueError: If ``other`` scales another way.
        """
        if not isinstance(other, NumericStep):
            raise TypeError(
                f"`other` must be a NumericStep. Received: other of type {type(other).__name__}"
            )
        if other.scaling != self.scaling:
            raise ValueError(
                f"Only steps with the same scaling merge: this one has scaling={self.scaling!r}. "
                f"Received: other with scaling={other.scaling!r}"
            )
        return NumericStep(self.scaling, self.stats.merge(other.stats))

    def scale(self) -> tuple[float, float]:
        """``(center, half)`` of the scaling: ``(x / 2 - center / 2) / half`` is the scaled value.

        Exact statistics give exactly what fitting the whole column gives; merged ones give the
        same minmax scaling, a standard scaling equal up to float rounding, and a robust one
        from the approximate quartiles (see the module documentation).
        """
        stats = self.stats
        if stats.exact:
            return _pre._scale_params(stats.kept, self.scaling)
        if self.scaling == "minmax":
            return _pre._scale_params(np.array([stats.minimum, stats.maximum]), "minmax")
        if self.scaling == "standard":
            half = math.sqrt(stats.variance) * 0.5
            if not (half > 0.0 and math.isfinite(half)):
                half = 1.0
            return stats.mean, half
        if stats.few is not None and len(stats.few) == 2:
            return _pre._robust_params(np.array(stats.few))
        return _pre._robust_params(stats.kept)

    def fill(self) -> float:
        """The value missing numbers are imputed with: the median of the present values."""
        return _pre._median(self.stats.kept)

    @property
    def smooth_clip(self) -> bool:
        """Whether robust scaling clips smoothly (columns of more than two values)."""
        if self.scaling != "robust":
            return False
        few = self.stats.few
        return few is None or len(few) > 2


@dataclass
class DateTimeStep:
    """One ``NumericStep`` per date part (``DATETIME_PARTS``: year, month ... second).

    Args:
        scaling: The scaling of each part. Defaults to ``"minmax"``.
    """

    scaling: str = "minmax"
    parts: dict[str, NumericStep] = field(default_factory=dict)

    def fit(self, values: Any) -> DateTimeStep:
        """Fit on date-time values (a pandas datetime Series; NaT for missing)."""
        self.parts = {
            part: NumericStep(self.scaling).fit(_pre._datetime_part(values, part))
            for part in _pre.DATETIME_PARTS
        }
        return self

    def partial_fit(self, batch: Any) -> DateTimeStep:
        """Add a batch of date-time values to the statistics."""
        return self._replace(self.merge(DateTimeStep(self.scaling).fit(batch)))

    def merge(self, other: DateTimeStep) -> DateTimeStep:
        """A new step with the statistics of both steps."""
        if not self.parts:
            return DateTimeStep(other.scaling, dict(other.parts))
        if not other.parts:
            return DateTimeStep(self.scaling, dict(self.parts))
        return DateTimeStep(
            self.scaling, {part: self.parts[part].merge(other.parts[part]) for part in self.parts}
        )

    def _replace(self, merged: DateTimeStep) -> DateTimeStep:
        self.parts = merged.parts
        return self


@dataclass(frozen=True)
class CategoricalStats:
    """How often each category occurs.

    Attributes:
        counts: Rows per category string.
        missing: Rows with a missing value.
    """

    counts: dict[str, int] = field(default_factory=dict)
    missing: int = 0

    @property
    def present(self) -> int:
        """Rows with a value."""
        return sum(self.counts.values())

    @property
    def categories(self) -> list[str]:
        """The categories seen, sorted."""
        return sorted(self.counts)

    def merge(self, other: CategoricalStats) -> CategoricalStats:
        """The counts of both together (exact)."""
        counts = dict(self.counts)
        for category, count in other.counts.items():
            counts[category] = counts.get(category, 0) + count
        return CategoricalStats(counts, self.missing + other.missing)


@dataclass
class CategoricalStep:
    """Categories of one categorical column.

    Args:
        max_one_hot: Most categories for a one-hot encoding; wider columns get an embedding
            (the preprocessor's default is 20).
    """

    max_one_hot: int
    stats: CategoricalStats = field(default_factory=CategoricalStats)

    def fit_codes(self, codes: np.ndarray, strings: list[str | None]) -> CategoricalStep:
        """Fit on factorized values: a code per row (-1 for missing) and each code's string
        (``None`` for a value that reads as missing)."""
        self.stats = _count_codes(codes, strings)
        return self

    def fit(self, values: Any) -> CategoricalStep:
        """Fit on raw values (a pandas Series)."""
        return self.fit_codes(*_pre._factorize(values))

    def partial_fit(self, batch: Any) -> CategoricalStep:
        """Add a batch of raw values (a pandas Series) to the counts."""
        self.stats = self.stats.merge(_count_codes(*_pre._factorize(batch)))
        return self

    def merge(self, other: CategoricalStep) -> CategoricalStep:
        """A new step with the counts of both steps."""
        return CategoricalStep(self.max_one_hot, self.stats.merge(other.stats))

    @property
    def encoding(self) -> str:
        """``"one_hot"`` up to ``max_one_hot`` categories, else ``"embedding"``."""
        return "one_hot" if len(self.stats.counts) <= self.max_one_hot else "embedding"


def _count_codes(codes: np.ndarray, strings: list[str | None]) -> CategoricalStats:
    tally = np.bincount(codes[codes >= 0], minlength=len(strings)) if len(strings) else []
    counts: dict[str, int] = {}
    missing = int(np.count_nonzero(codes < 0))
    for text, count in zip(strings, np.asarray(tally).tolist(), strict=True):
        if count == 0:
            continue
        if text is None:
            missing += count
        else:
            counts[text] = counts.get(text, 0) + count
    return CategoricalStats(counts, missing)


@dataclass
class TargetStep:
    """The target's statistics: a regression target's values, or each class label's count.

    Args:
        task: ``"regression"``, ``"binary"`` or ``"multiclass"``.
    """

    task: str
    numeric: NumericStats = field(default_factory=NumericStats)
    labels: dict[Any, int] = field(default_factory=dict)

    def fit(self, values: Any) -> TargetStep:
        """Fit on target values: float values for regression, labels for classification."""
        self.numeric, self.labels = NumericStats(), {}
        return self.partial_fit(values)

    def partial_fit(self, batch: Any) -> TargetStep:
        """Add a batch of target values."""
        return self._take(self._of(batch))

    def merge(self, other: TargetStep) -> TargetStep:
        """A new step with the statistics of both steps."""
        merged = TargetStep(self.task, self.numeric, dict(self.labels))
        return merged._take(other)

    def _of(self, batch: Any) -> TargetStep:
        if self.task == "regression":
            return TargetStep(self.task, numeric=NumericStats.of(np.asarray(batch, np.float64)))
        labels: dict[Any, int] = {}
        for label in np.asarray(batch, dtype=object).tolist():
            if not _pre._is_missing_scalar(label):
                label = _pre._native(label)
                labels[label] = labels.get(label, 0) + 1
        return TargetStep(self.task, labels=labels)

    def _take(self, other: TargetStep) -> TargetStep:
        self.numeric = self.numeric.merge(other.numeric)
        for label, count in other.labels.items():
            self.labels[label] = self.labels.get(label, 0) + count
        return self

    @property
    def classes(self) -> list[Any]:
        """The class labels seen, in the preprocessor's sorted order."""
        return sorted(self.labels, key=_pre._label_sort_key)
