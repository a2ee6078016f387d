"""The per-kind preprocessing steps: statistics fitted from batches and merged equal the
statistics of the whole column (dlstructured.data.steps)."""

import numpy as np
import pandas as pd
import pytest

from dlstructured.data import steps
from dlstructured.data.steps import (
    CategoricalStep,
    DateTimeStep,
    NumericStats,
    NumericStep,
    TargetStep,
)


def _batches(values, cuts=(7, 8, 50, 133)):
    edges = [0, *cuts, len(values)]
    return [values[start:stop] for start, stop in zip(edges, edges[1:], strict=False)]


def _numbers(rows=300, seed=0):
    rng = np.random.default_rng(seed)
    values = rng.normal(5.0, 3.0, size=rows)
    values[rng.random(rows) < 0.1] = np.nan
    return values


def _assert_same_moments(merged, whole):
    assert (merged.count, merged.missing) == (whole.count, whole.missing)
    assert (merged.minimum, merged.maximum) == (whole.minimum, whole.maximum)
    assert merged.mean == pytest.approx(whole.mean, rel=1e-12)
    assert merged.variance == pytest.approx(whole.variance, rel=1e-12)


@pytest.mark.parametrize("scaling", ["minmax", "standard", "robust"])
def test_numeric_step_from_batches_equals_the_whole_fit(scaling):
    values = _numbers()
    whole = NumericStep(scaling).fit(values)
    batched = NumericStep(scaling)
    for batch in _batches(values):
        batched.partial_fit(batch)
    halves = [NumericStep(scaling).fit(values[:120]), NumericStep(scaling).fit(values[120:])]
    merged = halves[0].merge(halves[1])
    for step in (batched, merged):
        _assert_same_moments(step.stats, whole.stats)
        assert step.stats.exact
        assert step.fill() == whole.fill()  # all values kept: the median is exact
        assert step.scale() == pytest.approx(whole.scale(), rel=1e-12)
        assert step.smooth_clip == whole.smooth_clip
    assert whole.stats.variance == pytest.approx(np.nanvar(values), rel=1e-12)
    assert whole.fill() == np.nanmedian(values)


def test_numeric_stats_past_the_kept_limit_are_approximate(monkeypatch):
    monkeypatch.setattr(steps, "MAX_KEPT_VALUES", 64)
    values = _numbers(1000, seed=1)
    merged = NumericStats()
    for batch in _batches(values, cuts=(100, 400, 401, 900)):
        merged = merged.merge(NumericStats.of(batch))
    whole = NumericStats.of(values)
    _assert_same_moments(merged, whole)  # the moments stay exact
    assert not merged.exact and merged.kept.size == 64
    step = NumericStep("standard", merged)
    assert step.scale() == pytest.approx(NumericStep("standard", whole).scale(), rel=1e-9)
    present = np.sort(values[~np.isnan(values)])
    rank = np.searchsorted(present, step.fill())
    assert abs(rank - present.size / 2) <= 4 * present.size / 64  # documented rank bound


def test_two_valued_columns_are_seen_across_batches():
    step = NumericStep("robust").partial_fit(np.array([0.0, 0.0])).partial_fit(np.array([1.0]))
    assert step.stats.few == (0.0, 1.0) and not step.smooth_clip
    assert step.scale() == NumericStep("robust").fit(np.array([0.0, 0.0, 1.0])).scale()
    step.partial_fit(np.array([2.0, 3.0, 4.0, 5.0]))
    assert step.stats.few is None and step.smooth_clip


def test_categorical_step_from_batches_equals_the_whole_fit():
    rng = np.random.default_rng(2)
    series = pd.Series(rng.choice(["a", "b", "c", None, "d"], size=200, p=[.4, .3, .2, .05, .05]))
    whole = CategoricalStep(3).fit(series)
    batched = CategoricalStep(3)
    for batch in _batches(series):
        batched.partial_fit(batch)
    merged = CategoricalStep(3).fit(series[:90]).merge(CategoricalStep(3).fit(series[90:]))
    for step in (batched, merged):
        assert step.stats == whole.stats
        assert step.encoding == whole.encoding == "embedding"
    counts = series.value_counts().to_dict()
    assert whole.stats.counts == counts
    assert whole.stats.missing == int(series.isna().sum())


def test_datetime_step_from_batches_equals_the_whole_fit():
    rng = np.random.default_rng(3)
    values = pd.Series(pd.Timestamp("2020-01-01")
                       + pd.to_timedelta(rng.integers(0, 10**8, 150), unit="s"))
    values[[3, 70]] = pd.NaT
    whole = DateTimeStep().fit(values)
    batched = DateTimeStep()
    for batch in _batches(values):
        batched.partial_fit(batch)
    assert list(batched.parts) == list(whole.parts)
    for part, step in whole.parts.items():
        _assert_same_moments(batched.parts[part].stats, step.stats)
        assert batched.parts[part].fill() == step.fill()
    assert whole.parts["year"].stats.missing == 2


@pytest.mark.parametrize("task", ["regression", "multiclass"])
def test_target_step_from_batches_equals_the_whole_fit(task):
    rng = np.random.default_rng(4)
    if task == "regression":
        values = rng.normal(size=120)
    else:
        values = rng.choice(["x", "y", "z"], size=120).astype(object)
    whole = TargetStep(task).fit(values)
    batched = TargetStep(task)
    for batch in _batches(values):
        batched.partial_fit(batch)
    merged = TargetStep(task).fit(values[:60]).merge(TargetStep(task).fit(values[60:]))
    for step in (batched, merged):
        _assert_same_moments(step.numeric, whole.numeric)
        assert step.labels == whole.labels
    if task == "multiclass":
        assert whole.classes == ["x", "y", "z"]
        assert sum(whole.labels.values()) == 120


def test_steps_refuse_to_merge_other_kinds():
    with pytest.raises(ValueError, match="scaling"):
        NumericStep("minmax").merge(NumericStep("standard"))
    with pytest.raises(TypeError, match="NumericStep"):
        NumericStep().merge(CategoricalStep(3))
    with pytest.raises(ValueError, match="scaling"):
        NumericStep("zscore")
