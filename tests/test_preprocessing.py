"""TabularPreprocessor: column kinds, scaling, imputation, encodings, labels, saving as data."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pandas as pd
import pytest

from conftest import expect_warning
from dlstructured.data.preprocessing import (
    CLIP,
    FORMAT_VERSION,
    TabularPreprocessor,
    embedding_width,
    infer_kind,
    infer_task,
)
from dlstructured.errors import (
    ColumnTypeError,
    ConstantColumnWarning,
    DataError,
    DataWarning,
    ExtraColumnsWarning,
    ExtremeValuesWarning,
    IdentifierColumnWarning,
    IncompatibleModelError,
)


def fit(frame, target="y", **options):
    return TabularPreprocessor(target, **options).fit(frame)


# -- kinds and tasks ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("series", "kind"),
    [
        (pd.Series([1.5, 2.5]), "numeric"),
        (pd.Series([1, 2]), "numeric"),
        (pd.Series([1, None], dtype="Int64"), "numeric"),
        (pd.Series([1.0, None], dtype="Float64"), "numeric"),
        (pd.Series(pd.to_timedelta([1, 2], unit="s")), "numeric"),
        (pd.Series([1, 2.5, None], dtype=object), "numeric"),
        (pd.Series(["a", "b"]), "categorical"),
        (pd.Series(["a", "b"], dtype=object), "categorical"),
        (pd.Series(["a", "b"], dtype="category"), "categorical"),
        (pd.Series([True, False]), "categorical"),
        (pd.Series([True, None], dtype="boolean"), "categorical"),
        (pd.Series(pd.to_datetime(["2020-01-01", "2021-03-04"])), "datetime"),
        (pd.Series(pd.to_datetime(["2020-01-01"]).tz_localize("UTC")), "datetime"),
    ],
)
def test_infer_kind(series, kind):
    assert infer_kind(series) == kind


def test_infer_kind_refuses_complex_naming_the_column():
    with pytest.raises(ColumnTypeError, match="'z'.*complex"):
        infer_kind(pd.Series([1j, 2j], name="z"))


@pytest.mark.parametrize(
    ("values", "task"),
    [
        ([3, 5, 6, 8], "regression"),
        ([0.5, 1.5, 2.0], "regression"),
        (["good", "bad", "good"], "binary"),
        ([0, 1, 1], "binary"),
        ([True, False], "binary"),
        (["Yes", "No", None], "binary"),
        ([1.0, 2.0, 2.0], "binary"),
        (["a", "b", "c"], "multiclass"),
    ],
)
def test_infer_task(values, task):
    assert infer_task(pd.Series(values, name="y")) == task


def test_infer_task_one_value():
    with pytest.raises(DataError, match="'y' holds one value only"):
        infer_task(pd.Series([4, 4, None], name="y"))


def test_infer_task_all_missing():
    with pytest.raises(DataError, match="'y' is entirely missing"):
        infer_task(pd.Series([None, None], name="y", dtype=float))


# -- numeric columns ------------------------------------------------------------------------------


def test_minmax_scaling_is_exact():
    frame = pd.DataFrame({"a": [2.0, 4.0, 10.0], "b": [1, 2, 3], "y": [1.0, 2.0, 3.0]})
    pre = fit(frame)
    features = pre.transform(frame)
    assert features.dtype == np.float32 and features.flags.c_contiguous
    np.testing.assert_array_equal(features[:, 0], np.float32([0.0, 0.25, 1.0]))
    np.testing.assert_array_equal(features[:, 1], np.float32([0.0, 0.5, 1.0]))
    # values outside the training range extrapolate linearly
    outside = pre.transform(pd.DataFrame({"a": [18.0], "b": [0]}))
    np.testing.assert_array_equal(outside, np.float32([[2.0, -0.5]]))


def test_standard_scaling():
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"a": rng.normal(5.0, 3.0, 200), "y": rng.normal(size=200)})
    features = fit(frame, scaling="standard").transform(frame)
    assert abs(features[:, 0].mean()) < 1e-5
    assert abs(features[:, 0].std() - 1.0) < 1e-5


def test_extreme_values_stay_finite():
    frame = pd.DataFrame({"a": [-1.7e308, 0.0, 1.7e308, 5e-324], "y": [1.0, 2.0, 3.0, 4.0]})
    for scaling in ("minmax", "standard"):
        features = fit(frame, scaling=scaling).transform(frame)
        assert np.isfinite(features).all()
    features = fit(frame).transform(frame)
    np.testing.assert_allclose(features[:, 0], [0.0, 0.5, 1.0, 0.5], atol=1e-6)
    narrow = fit(pd.DataFrame({"a": [0.0, 5e-324], "y": [1.0, 2.0]}))
    wild = narrow.transform(frame)
    assert np.isfinite(wild).all() and np.abs(wild).max() <= CLIP


def test_median_of_huge_values_does_not_overflow():
    frame = pd.DataFrame({"a": [1e308, 1e308, np.nan, 0.0], "y": [0.0, 1.0, 2.0, 3.0]})
    pre = fit(frame)
    features = pre.transform(frame)
    assert np.isfinite(features).all()
    assert features[2, 0] == features[0, 0] == 1.0  # the median 1e308 fills the gap


def test_median_imputation_with_indicator():
    frame = pd.DataFrame(
        {"a": [1.0, None, 3.0, 10.0], "b": [1.0, 2.0, 3.0, 4.0], "y": [0, 1, 0, 1]}
    )
    pre = fit(frame)
    assert pre.feature_names == ["a", "b", "a (missing)"]
    features = pre.transform(frame)
    # median of 1, 3, 10 is 3 -> (3 - 1) / 9
    np.testing.assert_allclose(features[:, 0], [0.0, 2 / 9, 2 / 9, 1.0], rtol=1e-6)
    np.testing.assert_array_equal(features[:, 2], [0.0, 1.0, 0.0, 0.0])
    # a column without missing values at fit gets the median silently, no indicator
    row = pre.transform(pd.DataFrame({"a": [np.nan], "b": [np.nan]}))
    np.testing.assert_allclose(row, [[2 / 9, 0.5, 1.0]], rtol=1e-6)


def test_strict_missing_lists_every_column():
    frame = pd.DataFrame(
        {"a": [1.0, None, 2.0], "b": [None, 1.0, 2.0], "c": [1, 2, 3], "y": [0, 1, 1]}
    )
    with pytest.raises(DataError, match=r"missing values: 'a', 'b'.*missing='impute'"):
        fit(frame, missing="error")
    pre = fit(frame.fillna(0.0), missing="error")
    with pytest.raises(DataError, match="missing values: 'c'"):
        pre.transform(pd.DataFrame({"a": [1.0], "b": [1.0], "c": [None]}))


def test_infinite_values_name_the_column():
    frame = pd.DataFrame({"ok": [1.0, 2.0, 3.0], "bad": [1.0, np.inf, 2.0], "y": [1, 2, 3]})
    with pytest.raises(DataError, match="'bad' holds infinite values"):
        fit(frame)
    pre = fit(frame.drop(columns="bad"))
    with pytest.raises(DataError, match="infinite values: 'ok'"):
        pre.transform(pd.DataFrame({"ok": [-np.inf]}))


def test_constant_columns_dropped_with_a_warning():
    frame = pd.DataFrame(
        {"a": [1.0, 2.0, 3.0], "same": [7, 7, 7], "word": ["x", "x", "x"], "y": [0.0, 1.0, 2.0]}
    )
    with pytest.warns(ConstantColumnWarning, match="'same', 'word'"):
        pre = fit(frame)
    assert pre.feature_names == ["a"]
    assert pre.dropped_columns == {"same": "constant", "word": "constant"}
    # dropped columns are not needed at prediction time, and not warned about when present
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert pre.transform(frame).shape == (3, 1)
        assert pre.transform(frame[["a"]]).shape == (3, 1)


def test_constant_column_with_missing_values_keeps_its_indicator():
    frame = pd.DataFrame({"a": [5.0, None, 5.0], "b": [1.0, 2.0, 3.0], "y": [0, 1, 0]})
    pre = fit(frame)
    assert pre.feature_names == ["b", "a (missing)"]
    np.testing.assert_array_equal(pre.transform(frame)[:, 1], [0.0, 1.0, 0.0])


def test_entirely_missing_column():
    frame = pd.DataFrame({"a": [1.0, 2.0], "empty": [None, None], "y": [0, 1]})
    with pytest.raises(DataError, match="entirely missing: 'empty'"):
        fit(frame)


# -- categorical columns --------------------------------------------------------------------------


def test_one_hot_with_missing_and_unknown():
    frame = pd.DataFrame({"c": ["red", "blue", None, "red"], "y": [0, 1, 0, 1]})
    pre = fit(frame)
    assert pre.feature_names == ["c=blue", "c=red", "c=<missing>"]
    features = pre.transform(frame)
    np.testing.assert_array_equal(features, [[0, 1, 0], [1, 0, 0], [0, 0, 1], [0, 1, 0]])
    unseen = pre.transform(pd.DataFrame({"c": ["green", "blue"]}))
    np.testing.assert_array_equal(unseen, [[0, 0, 0], [1, 0, 0]])


def test_object_and_string_dtypes_encode_alike():
    values = ["ä", "b", None, "ä", "日本"]
    as_str = pd.DataFrame({"c": pd.Series(values, dtype="str"), "y": [0, 1, 0, 1, 1]})
    as_object = pd.DataFrame({"c": pd.Series(values, dtype=object), "y": [0, 1, 0, 1, 1]})
    pre = fit(as_str)
    np.testing.assert_array_equal(pre.transform(as_object), pre.transform(as_str))
    np.testing.assert_array_equal(fit(as_object).transform(as_object), pre.transform(as_str))


def test_booleans_are_categories():
    frame = pd.DataFrame({"flag": [True, False, True], "y": [1.0, 2.0, 3.0]})
    pre = fit(frame)
    assert pre.feature_names == ["flag=False", "flag=True"]
    nullable = pd.DataFrame({"flag": pd.array([True, None], dtype="boolean")})
    np.testing.assert_array_equal(pre.transform(nullable), [[0, 1], [0, 0]])


def test_embedding_codes_for_wide_columns():
    cities = [f"city{k:02d}" for k in range(30)]
    frame = pd.DataFrame({"city": cities * 2 + [None], "y": np.arange(61.0)})
    pre = fit(frame, max_one_hot=20)
    assert pre.feature_names == ["city (code)"]
    (spec,) = pre.embeddings
    assert (spec.column_index, spec.input_dim, spec.column) == (0, 32, "city")
    assert spec.output_dim == embedding_width(32) == round(1.6 * 32**0.56)
    codes = pre.transform(pd.DataFrame({"city": ["city00", "city29", None, "elsewhere"]}))
    np.testing.assert_array_equal(codes[:, 0], [2.0, 31.0, 1.0, 0.0])


def test_one_hot_threshold_boundary():
    frame = pd.DataFrame({"c": [f"v{k}" for k in range(5)] * 2, "y": np.arange(10.0)})
    assert fit(frame, max_one_hot=5).embeddings == []
    assert len(fit(frame, max_one_hot=4).embeddings) == 1


def test_identifier_columns_dropped_and_kept_on_request():
    frame = pd.DataFrame(
        {"name": [f"person {k}" for k in range(40)], "x": np.arange(40.0), "y": [0, 1] * 20}
    )
    with pytest.warns(IdentifierColumnWarning, match="'name'"):
        pre = fit(frame)
    assert pre.feature_names == ["x"] and pre.dropped_columns == {"name": "identifier"}
    kept = fit(frame, kinds={"name": "categorical"})
    assert kept.embeddings[0].column == "name"


def test_numeric_codes_as_categories_survive_a_float_column():
    frame = pd.DataFrame({"zip": [10115, 20095, 10115, 80331], "y": [1.0, 2.0, 3.0, 4.0]})
    pre = fit(frame, kinds={"zip": "categorical"})
    as_floats = pd.DataFrame({"zip": [80331.0, None, 10115.0]})
    np.testing.assert_array_equal(pre.transform(as_floats), [[0, 0, 1], [0, 0, 0], [1, 0, 0]])


def test_datetime_parts():
    when = pd.to_datetime(["2020-01-06", "2021-03-10", "2022-12-25", None])
    frame = pd.DataFrame({"when": when, "y": [1.0, 2.0, 3.0, 4.0]})
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # constant parts (hour ...) go silently
        pre = fit(frame)
    assert pre.feature_names == [
        "when.year", "when.month", "when.day", "when.day_of_week", "when (missing)"
    ]  # fmt: skip
    features = pre.transform(frame)
    np.testing.assert_allclose(features[:3, 0], [0.0, 0.5, 1.0])
    np.testing.assert_allclose(features[:3, 3], [0.0, 2 / 6, 1.0])  # Monday, Wednesday, Sunday
    np.testing.assert_array_equal(features[:, 4], [0.0, 0.0, 0.0, 1.0])
    as_text = pre.transform(pd.DataFrame({"when": ["2021-03-10"]}))
    np.testing.assert_array_equal(as_text, features[1:2])


def test_kind_change_names_the_column():
    frame = pd.DataFrame({"n": [1.0, 2.0, 3.0], "c": ["a", "b", "a"], "y": [1.0, 2.0, 3.0]})
    pre = fit(frame)
    with pytest.raises(DataError, match="Column 'n' must hold numbers.*'abc'"):
        pre.transform(pd.DataFrame({"n": ["abc"], "c": ["a"]}))
    with pytest.raises(DataError, match="Column 'c' changed kind: it held text.*holds numbers"):
        pre.transform(pd.DataFrame({"n": [1.0], "c": [5]}))
    # text that holds numbers is fine for a numeric column; an all-missing column is fine too
    ok = pre.transform(pd.DataFrame({"n": ["2.0"], "c": [None]}))
    np.testing.assert_array_equal(ok, [[0.5, 0.0, 0.0]])


def test_missing_columns_listed_and_extra_columns_warned():
    frame = pd.DataFrame({"a": [1.0, 2.0], "b": [3.0, 4.0], "c": ["x", "y"], "y": [0, 1]})
    pre = fit(frame)
    with pytest.raises(DataError, match=r"missing 2 column\(s\).*'a', 'c'"):
        pre.transform(frame[["b"]])
    shuffled = frame[["c", "y", "b", "a"]].assign(extra=1)
    with pytest.warns(ExtraColumnsWarning, match="'extra'"):
        features = pre.transform(shuffled)
    np.testing.assert_array_equal(features, pre.transform(frame))


def test_transform_needs_a_dataframe_and_a_fit():
    with pytest.raises(ValueError, match="not fitted"):
        TabularPreprocessor("y").transform(pd.DataFrame({"a": [1]}))
    pre = fit(pd.DataFrame({"a": [1.0, 2.0], "y": [0, 1]}))
    with pytest.raises(TypeError, match="must be a pandas DataFrame"):
        pre.transform({"a": [1.0]})


@pytest.mark.parametrize(
    ("options", "error", "message"),
    [
        ({"scaling": "quantile"}, ValueError, r"`scaling` must be one of 'minmax', 'standard'"),
        ({"missing": "drop"}, ValueError, "`missing` must be one of"),
        ({"target_scaling": "log"}, ValueError, "`target_scaling` must be one of"),
        ({"kinds": ["a"]}, TypeError, "`kinds` must be a dict"),
        ({"kinds": {"a": "text"}}, ValueError, r"`kinds\['a'\]` must be one of"),
        ({"kinds": {"y": "numeric"}}, ValueError, "names the target column"),
        ({"max_one_hot": 2.5}, TypeError, "`max_one_hot` must be an integer"),
        ({"task": "ranking"}, ValueError, "`task` must be one of"),
    ],
)
def test_argument_errors(options, error, message):
    with pytest.raises(error, match=message):
        TabularPreprocessor("y", **options)


def test_kinds_must_name_existing_columns():
    with pytest.raises(ValueError, match="`kinds` names columns that are not in the frame: 'zip'"):
        fit(pd.DataFrame({"a": [1.0, 2.0], "y": [0, 1]}), kinds={"zip": "categorical"})


# -- target ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("labels", "classes"),
    [
        (["good", "bad", "good", "bad"], ["bad", "good"]),
        (["Yes", "No", "No", "Yes"], ["No", "Yes"]),
        ([True, False, False, True], [False, True]),
        ([1, 0, 0, 1], [0, 1]),
    ],
)
def test_binary_labels_round_trip(labels, classes):
    frame = pd.DataFrame({"a": [1.0, 2.0, 3.0, 4.0], "y": labels})
    pre = fit(frame)
    assert pre.task == "binary" and pre.classes == classes
    codes = pre.transform_target(frame["y"])
    assert codes.dtype == np.float32
    np.testing.assert_array_equal(codes, [classes.index(v) for v in labels])
    assert pre.inverse_transform_target(codes).tolist() == labels


def test_positive_label_reproduces_the_course_mapping():
    frame = pd.DataFrame({"a": [1.0, 2.0, 3.0], "Class": ["good", "bad", "good"]})
    pre = fit(frame, "Class", positive_label="bad")
    assert pre.classes == ["good", "bad"]
    np.testing.assert_array_equal(pre.transform_target(frame["Class"]), [0.0, 1.0, 0.0])
    with pytest.raises(ValueError, match=r"`positive_label` must be one of the target's labels"):
        fit(frame, "Class", positive_label="ugly")


def test_multiclass_labels_round_trip():
    labels = ["cat", "dog", "bird", "dog", "cat"]
    frame = pd.DataFrame({"a": np.arange(5.0), "y": labels})
    pre = fit(frame)
    assert pre.task == "multiclass" and pre.classes == ["bird", "cat", "dog"]
    codes = pre.transform_target(frame["y"])
    assert codes.dtype == np.int32 and codes.tolist() == [1, 2, 0, 2, 1]
    assert pre.inverse_transform_target(codes).tolist() == labels
    with pytest.raises(DataError, match="labels the model does not know: 'fish'"):
        pre.transform_target(pd.Series(["fish", "cat"]))


@pytest.mark.parametrize("target_scaling", ["minmax", "standard", None])
def test_regression_target_scaling_round_trip(target_scaling):
    y = np.array([3.0, 8.0, 5.0, 6.0, 4.0])
    frame = pd.DataFrame({"a": np.arange(5.0), "y": y})
    pre = fit(frame, target_scaling=target_scaling)
    scaled = pre.transform_target(frame["y"])
    np.testing.assert_allclose(pre.inverse_transform_target(scaled), y, rtol=1e-6)
    if target_scaling == "minmax":
        np.testing.assert_allclose(scaled, (y - 3.0) / 5.0, rtol=1e-6)
        assert pre.target_unit_scale == 5.0
    elif target_scaling is None:
        np.testing.assert_array_equal(scaled, y) and pre.target_unit_scale == 1.0
    else:
        assert pre.target_unit_scale == pytest.approx(y.std())


def test_regression_target_must_be_numeric():
    frame = pd.DataFrame({"a": [1.0, 2.0, 3.0], "y": ["low", "mid", "high"]})
    with pytest.raises(DataError, match="regression target must be numeric.*'y'"):
        fit(frame, task="regression")


def test_binary_task_needs_two_values():
    frame = pd.DataFrame({"a": [1.0, 2.0, 3.0], "y": [1, 2, 3]})
    with pytest.raises(DataError, match="exactly two distinct target values.*'y' has 3"):
        fit(frame, task="binary")


# -- configuration --------------------------------------------------------------------------------


def mixed_frame():
    return pd.DataFrame(
        {
            "n": [1.0, None, 3.0, 4.0, 5.0, 6.0],
            "i": [1, 2, 3, 4, 5, 6],
            "c": ["a", "b", None, "a", "b", "a"],
            "wide": list("abcdef"),
            "when": pd.to_datetime(
                ["2020-01-01", "2020-02-01", None, "2021-01-01", "2021-06-01", "2022-01-01"]
            ),
            "y": ["p", "q", "r", "p", "q", "r"],
        }
    )


def test_config_is_json_and_rebuilds_the_same_transform():
    frame = mixed_frame()
    pre = fit(frame, max_one_hot=3)
    config = pre.get_config()
    assert config["format_version"] == FORMAT_VERSION
    rebuilt = TabularPreprocessor.from_config(json.loads(json.dumps(config, allow_nan=False)))
    np.testing.assert_array_equal(rebuilt.transform(frame), pre.transform(frame))
    assert rebuilt.feature_names == pre.feature_names
    assert rebuilt.embeddings == pre.embeddings
    assert rebuilt.classes == pre.classes == ["p", "q", "r"]


def test_config_from_another_format_version():
    config = fit(mixed_frame()).get_config()
    config["format_version"] = FORMAT_VERSION + 1
    with pytest.raises(IncompatibleModelError, match=f"version {FORMAT_VERSION + 1}.*version 1"):
        TabularPreprocessor.from_config(config)


def test_all_notices_share_a_base_class():
    for warning in (ConstantColumnWarning, IdentifierColumnWarning, ExtraColumnsWarning):
        assert issubclass(warning, DataWarning) and issubclass(warning, UserWarning)


def test_few_rows_transform_exactly_as_many_rows_do():
    # Up to 4,096 rows, plain int and float columns are handled together; more rows go column
    # by column. Both give the same bytes, next to columns the block leaves alone (nullable,
    # boolean, text, dates), with missing values and values past the clip limit.
    rng = np.random.default_rng(3)
    rows = 5000
    floats = rng.normal(scale=10.0, size=rows)
    floats[::7] = np.nan
    floats[5] = 1e12
    frame = pd.DataFrame(
        {
            "f": floats,
            "i": rng.integers(-50, 50, size=rows),
            "u": rng.integers(0, 9, size=rows).astype(np.uint8),
            "g": rng.normal(size=rows).astype(np.float32),
            "n": pd.array(rng.integers(0, 5, size=rows), dtype="Int64"),
            "b": rng.random(rows) > 0.5,
            "c": rng.choice(["x", "y", "z"], size=rows),
            # Categorical columns of other dtypes: up to 16 rows are converted from the frame at
            # once (``_FewRows``), more column by column.
            "k": pd.Categorical(rng.choice(["p", "q", "r"], size=rows)),
            "s": pd.array(rng.choice(["a", "b", None], size=rows), dtype="string"),
            "o": pd.Series(rng.choice(np.array([1, "two", 3.5, None], dtype=object), size=rows),
                           dtype=object),
            "e": rng.choice([f"level {k}" for k in range(300)], size=rows),  # an embedding
            "d": pd.Timestamp("2024-01-01") + pd.to_timedelta(rng.integers(0, 900, rows), "D"),
            "y": rng.normal(size=rows),
        }
    )
    with expect_warning(ExtremeValuesWarning, "column 'f'"):  # the 1e12 dominates its scale
        pre = fit(frame)
    everything = pre.transform(frame)
    assert {spec.column for spec in pre.embeddings} == {"e"}
    for start, stop in [(0, 1), (4, 20), (3, 40), (100, 4196)]:
        np.testing.assert_array_equal(pre.transform(frame.iloc[start:stop]), everything[start:stop])
    numeric = frame[["f", "i", "u", "g", "y"]]
    with expect_warning(ExtremeValuesWarning, "column 'f'"):
        numeric_only = fit(numeric)
    everything = numeric_only.transform(numeric)
    np.testing.assert_array_equal(numeric_only.transform(numeric.iloc[:9]), everything[:9])


def test_few_rows_still_name_infinite_and_missing_columns():
    frame = pd.DataFrame({"a": [1.0, 2.0, 3.0], "b": [4, 5, 6], "y": [0, 1, 1]})
    pre = fit(frame, missing="error")
    with pytest.raises(DataError, match="infinite values: 'a'"):
        pre.transform(pd.DataFrame({"a": [np.inf], "b": [1]}))
    with pytest.raises(DataError, match="missing values: 'a'"):
        pre.transform(pd.DataFrame({"a": [np.nan], "b": [1]}))


@pytest.mark.parametrize(
    "values, dtype",
    [
        (["b", None, "a", "b", np.nan, "a"], "object"),
        (["b", None, "a", "b"], "string"),
        ([3, 1, 3, 2], "int64"),
        ([1.0, np.nan, 1.5, 1.0, -0.0, 0.0], "float64"),
        ([1, 1.0, "1", True, None, b"x", 2.5, False, 0], "object"),
        ([True, False, True], "bool"),
        (["x", "y", None, "x"], "category"),
    ],
)
@pytest.mark.parametrize("rows", [1, 40])  # the few-rows path and pandas's
def test_a_rows_category_does_not_depend_on_the_other_rows(values, dtype, rows):
    from dlstructured.data import preprocessing

    def row_strings(series):
        codes, strings = preprocessing._factorize(series)
        assert len(set(strings)) == len(strings)
        return [strings[c] if c >= 0 else None for c in codes]

    series = pd.Series(values * rows, dtype=dtype)
    alone = [row_strings(series.iloc[[row]])[0] for row in range(len(values))]
    assert row_strings(series) == alone * rows
    if True in values and 1 in values and dtype == "object":
        # pandas alone would code True like the 1 before it ("1").
        assert alone[next(i for i, value in enumerate(values) if value is True)] == "True"
    if dtype != "object":
        codes, uniques = pd.factorize(series, use_na_sentinel=True)
        assert alone * rows == [preprocessing._norm(uniques[c]) if c >= 0 else None
                                for c in codes]
