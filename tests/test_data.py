"""prepare(), PreparedData and the splits; property tests over random mixed-type frames."""

from __future__ import annotations

import sys
import warnings

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import dlstructured
from dlstructured.data.prepare import PreparedData, prepare, read_table, split_frame
from dlstructured.errors import DataError, DataWarning, MissingTargetWarning


def wine_like(rows=40, seed=0):
    """A small frame shaped like the course's red wine table (numbers, integer target)."""
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "acidity": rng.uniform(4.0, 16.0, rows).round(2),
            "sugar": rng.uniform(0.5, 15.0, rows).round(1),
            "alcohol": rng.uniform(8.0, 15.0, rows).round(1),
            "quality": rng.integers(3, 9, rows),
        }
    )


def test_random_split_reproduces_the_course_exactly():
    frame = wine_like(57)
    data = prepare(frame, "quality")
    # The course: sample(frac=0.7, random_state=0), min-max fitted on the training part.
    df_train = frame.sample(frac=0.7, random_state=0)
    df_valid = frame.drop(df_train.index)
    max_, min_ = df_train.max(axis=0), df_train.min(axis=0)
    df_train = (df_train - min_) / (max_ - min_)
    df_valid = (df_valid - min_) / (max_ - min_)
    np.testing.assert_allclose(data.x_train, df_train.drop(columns="quality"), rtol=1e-6)
    np.testing.assert_allclose(data.x_valid, df_valid.drop(columns="quality"), rtol=1e-6)
    np.testing.assert_allclose(data.y_train, df_train["quality"], rtol=1e-6)
    np.testing.assert_allclose(data.y_valid, df_valid["quality"], rtol=1e-6)
    assert list(data.train_index) == list(df_train.index)
    assert list(data.valid_index) == list(df_valid.index)
    assert data.target_unit_scale == max_["quality"] - min_["quality"]
    # statistics come from the training part only: validation values may leave [0, 1]
    assert data.x_train.min() == 0.0 and data.x_train.max() == 1.0


def test_prepared_data_layout():
    frame = wine_like().assign(color=["red", "white"] * 20)
    data = prepare(frame, "quality")
    assert isinstance(data, PreparedData)
    assert data.task == "regression" and data.num_classes is None and data.classes is None
    for x, y in ((data.x_train, data.y_train), (data.x_valid, data.y_valid)):
        assert x.dtype == np.float32 and x.flags.c_contiguous and x.shape[1] == data.num_features
        assert y.dtype == np.float32 and y.shape == (len(x),)
    assert len(data.x_train) == 28 and len(data.x_valid) == 12
    assert data.feature_names == ["acidity", "sugar", "alcohol", "color=red", "color=white"]
    assert data.embeddings == [] and data.target == "quality"
    assert "train=28" in repr(data)


def test_no_validation_part():
    data = prepare(wine_like(), "quality", valid_fraction=0)
    assert data.x_valid is None and data.y_valid is None and len(data.x_train) == 40


def test_binary_and_multiclass_targets():
    frame = wine_like().assign(label=["good", "bad", "bad", "good"] * 10)
    binary = prepare(frame, "label")
    assert binary.task == "binary" and binary.num_classes == 2 and binary.classes == ["bad", "good"]
    assert binary.y_train.dtype == np.float32 and set(binary.y_train) <= {0.0, 1.0}
    assert binary.target_unit_scale == 1.0
    multi = prepare(frame.drop(columns="label"), "quality", task="multiclass")
    assert multi.task == "multiclass" and multi.y_train.dtype == np.int32
    assert multi.num_classes == len(multi.classes) == frame["quality"].nunique()
    # the quality column appears in "quality" rows only: the label set comes from all rows
    assert multi.classes == sorted(frame["quality"].unique().tolist())


def test_embeddings_listed_for_wide_columns():
    rng = np.random.default_rng(1)
    frame = pd.DataFrame(
        {
            "store": rng.choice([f"s{k}" for k in range(40)], 300),
            "x": rng.normal(size=300),
            "y": rng.normal(size=300),
        }
    )
    data = prepare(frame, "y")
    (spec,) = data.embeddings
    assert data.feature_names[spec.column_index] == "store (code)"
    assert spec.input_dim == 42
    codes = data.x_train[:, spec.column_index]
    assert codes.min() >= 2 and codes.max() <= 41 and np.all(codes == np.round(codes))


def test_prepare_never_modifies_the_callers_frame():
    frame = wine_like().assign(
        color=pd.Series(["red", None, "white", "red"] * 10, dtype=object),
        when=pd.date_range("2020-01-01", periods=40, freq="D"),
        gap=[1.0, np.nan] * 20,
        label=["a", "b"] * 20,
    )
    copy = frame.copy(deep=True)
    prepare(frame, "label", split="stratified")
    pd.testing.assert_frame_equal(frame, copy)
    assert list(frame.dtypes) == list(copy.dtypes)


def test_stratified_split_keeps_class_shares():
    frame = pd.DataFrame({"x": np.arange(100.0), "y": ["rare"] * 10 + ["common"] * 90})
    data = prepare(frame, "y", split="stratified", seed=3)
    valid_labels = frame.loc[data.valid_index, "y"]
    assert (valid_labels == "rare").sum() == 3 and (valid_labels == "common").sum() == 27
    again = prepare(frame, "y", split="stratified", seed=3)
    assert list(again.train_index) == list(data.train_index)
    other = prepare(frame, "y", split="stratified", seed=4)
    assert list(other.valid_index) != list(data.valid_index)


def test_stratified_split_of_a_regression_target():
    frame = wine_like(100)
    train, valid = split_frame(frame, 0.3, split="stratified", target="quality", seed=0)
    assert len(valid) == 30 and len(train) == 70
    assert set(train.index).isdisjoint(valid.index)


def test_grouped_split_keeps_groups_together_and_drops_the_group_column():
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(
        {
            "artist": rng.choice([f"a{k}" for k in range(20)], 200),
            "tempo": rng.normal(size=200),
            "popularity": rng.normal(size=200),
        }
    )
    data = prepare(frame, "popularity", split="grouped", group_by="artist", seed=1)
    train_artists = set(frame.loc[data.train_index, "artist"])
    valid_artists = set(frame.loc[data.valid_index, "artist"])
    assert train_artists.isdisjoint(valid_artists)
    assert len(valid_artists) == 6
    assert data.feature_names == ["tempo"]
    assert data.preprocessor.dropped_columns == {"artist": "group"}


def test_split_frame_random_matches_pandas_sample():
    frame = wine_like(33)
    train, valid = split_frame(frame, 0.3, seed=7)
    pd.testing.assert_frame_equal(train, frame.sample(frac=0.7, random_state=7))
    pd.testing.assert_frame_equal(valid, frame.drop(train.index))


@pytest.mark.parametrize(
    ("arguments", "error", "message"),
    [
        ({"valid_fraction": 1.0}, ValueError, r"`valid_fraction` must be in \[0, 1\)"),
        ({"valid_fraction": "0.3"}, TypeError, "`valid_fraction` must be a number"),
        ({"split": "kfold"}, ValueError, "`split` must be one of 'random', 'stratified'"),
        ({"split": "grouped"}, ValueError, "split='grouped' needs `group_by`"),
        ({"group_by": "acidity"}, ValueError, "`group_by` applies to split='grouped' only"),
        ({"seed": -1}, ValueError, "`seed` must be an integer >= 0"),
    ],
)
def test_split_argument_errors(arguments, error, message):
    with pytest.raises(error, match=message):
        prepare(wine_like(), "quality", **arguments)


# -- bad data: one test per message -----------------------------------------------------------


def test_empty_frame():
    with pytest.raises(DataError, match=r"The frame is empty \(0 rows"):
        prepare(wine_like().iloc[:0], "quality")


def test_missing_target_column():
    with pytest.raises(DataError, match="target column 'price' is not in the frame.*'acidity'"):
        prepare(wine_like(), "price")


def test_target_with_one_value():
    with pytest.raises(DataError, match="'quality' holds one value only"):
        prepare(wine_like().assign(quality=5), "quality")


def test_target_all_missing():
    with pytest.raises(DataError, match="'quality' is entirely missing"):
        prepare(wine_like().assign(quality=np.nan), "quality")


def test_rows_with_missing_target_are_left_out_with_a_warning():
    frame = wine_like()
    frame.loc[[0, 5], "quality"] = np.nan
    with pytest.warns(MissingTargetWarning, match="Left out 2 of 40 rows"):
        data = prepare(frame, "quality")
    assert len(data.x_train) + len(data.x_valid) == 38
    assert 0 not in data.train_index and 5 not in data.valid_index


def test_regression_target_not_numeric():
    frame = wine_like().assign(quality=["low", "mid", "high", "top"] * 10)
    with pytest.raises(DataError, match="regression target must be numeric, but column 'quality'"):
        prepare(frame, "quality", task="regression")


def test_column_entirely_missing():
    with pytest.raises(DataError, match="entirely missing: 'blank'"):
        prepare(wine_like().assign(blank=None), "quality")


def test_infinite_values():
    frame = wine_like()
    frame.loc[3, "sugar"] = -np.inf
    with pytest.raises(DataError, match="Column 'sugar' holds infinite values"):
        prepare(frame, "quality")


def test_too_few_rows_for_the_split():
    frame = pd.DataFrame({"x": [1.0, 2.0], "y": [0, 1]})
    with pytest.raises(DataError, match="too few for a split.*valid_fraction=0"):
        prepare(frame, "y", valid_fraction=0.1)


def test_no_usable_feature():
    frame = pd.DataFrame({"same": [1, 1, 1, 1], "y": [0, 1, 0, 1]})
    with pytest.warns(DataWarning), pytest.raises(DataError, match="No usable feature columns"):
        prepare(frame, "y", valid_fraction=0)


def test_duplicate_column_names():
    frame = pd.DataFrame([[1.0, 2.0, 0], [3.0, 4.0, 1]], columns=["a", "a", "y"])
    with pytest.raises(DataError, match="duplicate column names: 'a'"):
        prepare(frame, "y", valid_fraction=0)


def test_wrong_types():
    with pytest.raises(TypeError, match="`frame` must be a pandas DataFrame"):
        prepare([[1, 2]], "y")
    with pytest.raises(TypeError, match="`target` must be a column name"):
        prepare(wine_like(), ["quality"])


# -- files ------------------------------------------------------------------------------------


def test_reads_csv_and_parquet_paths(tmp_path):
    frame = wine_like()
    frame.to_csv(tmp_path / "wine.csv", index=False)
    frame.to_parquet(tmp_path / "wine.parquet")
    from_frame = prepare(frame, "quality")
    for name in ("wine.csv", "wine.parquet"):
        data = prepare(tmp_path / name, "quality")
        np.testing.assert_array_equal(data.x_train, from_frame.x_train)
    assert read_table(str(tmp_path / "wine.csv")).shape == frame.shape


def test_file_errors(tmp_path):
    with pytest.raises(DataError, match="No such data file"):
        prepare(tmp_path / "absent.csv", "quality")
    with pytest.raises(ValueError, match=r"`path` must end in .csv, .tsv, .parquet"):
        prepare(tmp_path / "wine.xlsx", "quality")
    (tmp_path / "broken.parquet").write_bytes(b"not parquet")
    with pytest.raises(DataError, match="Could not read"):
        prepare(tmp_path / "broken.parquet", "quality")


def test_import_and_prepare_do_not_load_keras():
    import subprocess

    code = (
        "import sys, pandas as pd, dlstructured as d;"
        "d.prepare(pd.DataFrame({'x': [1.0, 2.0, 3.0, 4.0], 'y': [0, 1, 0, 1]}), 'y');"
        "print('keras' in sys.modules)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False"


def test_public_names():
    for name in (
        "prepare",
        "PreparedData",
        "EmbeddingSpec",
        "split_frame",
        "read_table",
        "TabularPreprocessor",
        "TabularModel",
        "load_model",
        "DataWarning",
    ):
        assert name in dlstructured.__all__


# -- property tests ---------------------------------------------------------------------------

DOCUMENTED = (ValueError, TypeError)  # DataError, ColumnTypeError and argument errors


@st.composite
def mixed_frames(draw):
    rows = draw(st.integers(1, 200))
    columns = {}
    floats = st.floats(allow_nan=True, allow_infinity=False, width=64)
    extreme = st.sampled_from([0.0, -0.0, 1e308, -1e308, 5e-324, np.nan, 1.0])
    for index in range(draw(st.integers(1, 6))):
        kind = draw(
            st.sampled_from(
                [
                    "float",
                    "extreme",
                    "int",
                    "text",
                    "bool",
                    "date",
                    "const",
                    "dup",
                    "object",
                    "nullable",
                ]
            )
        )
        name = f"c{index}_{kind}"
        if kind == "float":
            values = draw(st.lists(floats, min_size=rows, max_size=rows))
        elif kind == "extreme":
            values = draw(st.lists(extreme, min_size=rows, max_size=rows))
        elif kind == "int":
            values = draw(st.lists(st.integers(-(2**62), 2**62), min_size=rows, max_size=rows))
        elif kind == "text":
            pool = draw(st.lists(st.text(max_size=4), min_size=1, max_size=30))
            values = pd.Series(
                draw(st.lists(st.sampled_from(pool + [None]), min_size=rows, max_size=rows)),
                dtype="str",
            )
        elif kind == "object":
            values = pd.Series(
                draw(
                    st.lists(
                        st.one_of(st.none(), st.text(max_size=3), st.integers(-5, 5)),
                        min_size=rows,
                        max_size=rows,
                    )
                ),
                dtype=object,
            )
        elif kind == "bool":
            values = draw(st.lists(st.booleans(), min_size=rows, max_size=rows))
        elif kind == "nullable":
            values = pd.array(
                draw(
                    st.lists(st.one_of(st.none(), st.integers(-9, 9)), min_size=rows, max_size=rows)
                ),
                dtype="Int64",
            )
        elif kind == "date":
            stamps = draw(
                st.lists(
                    st.one_of(
                        st.none(),
                        st.datetimes(
                            min_value=pd.Timestamp("1900-01-01").to_pydatetime(),
                            max_value=pd.Timestamp("2200-01-01").to_pydatetime(),
                        ),
                    ),
                    min_size=rows,
                    max_size=rows,
                )
            )
            values = pd.to_datetime(pd.Series(stamps, dtype=object))
        elif kind == "const":
            values = [3.5] * rows
        else:
            values = columns[next(iter(columns))] if columns else [1.0] * rows
        columns[name] = values
    target_kind = draw(st.sampled_from(["number", "binary", "labels"]))
    if target_kind == "number":
        target = draw(
            st.lists(st.one_of(floats, st.integers(-100, 100)), min_size=rows, max_size=rows)
        )
    elif target_kind == "binary":
        target = draw(st.lists(st.sampled_from(["yes", "no", None]), min_size=rows, max_size=rows))
    else:
        target = draw(st.lists(st.sampled_from(["α", "β", "γ", "δ"]), min_size=rows, max_size=rows))
    columns["target"] = target
    return pd.DataFrame(columns)


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    frame=mixed_frames(),
    split=st.sampled_from(["random", "stratified"]),
    scaling=st.sampled_from(["minmax", "standard"]),
    valid_fraction=st.sampled_from([0, 0.3]),
)
def test_prepare_succeeds_with_finite_features_or_raises_a_documented_error(
    frame, split, scaling, valid_fraction
):
    copy = frame.copy(deep=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataWarning)
        try:
            data = prepare(
                frame, "target", split=split, scaling=scaling, valid_fraction=valid_fraction, seed=1
            )
        except DOCUMENTED as error:
            assert type(error).__module__.startswith(("dlstructured", "builtins")), error
            pd.testing.assert_frame_equal(frame, copy)
            return
        pd.testing.assert_frame_equal(frame, copy)
        for x in (data.x_train, data.x_valid):
            if x is not None:
                assert x.dtype == np.float32 and np.isfinite(x).all()
                assert x.shape[1] == data.num_features == len(data.feature_names)
        for y in (data.y_train, data.y_valid):
            assert y is None or np.isfinite(y).all()
        # the fitted preprocessing takes the raw frame back and agrees with the prepared rows
        again = data.preprocessor.transform(frame)
        rows = frame.index.get_indexer(data.train_index)
        np.testing.assert_array_equal(again[rows], data.x_train)
