"""Messy real tables (issue 15): placeholders, changed kinds, extreme values, dates as text,
separators, encodings, tiny training parts, continuous multiclass targets, odd column names."""

from __future__ import annotations

import io
import re
import sys
import warnings

import numpy as np
import pandas as pd
import pytest

import dlstructured as dls
from conftest import expect_warning
from dlstructured.data.preprocessing import TabularPreprocessor, infer_kind
from dlstructured.errors import (
    ColumnNamesWarning,
    DataError,
    DataWarning,
    ExtremeValuesWarning,
    IdentifierColumnWarning,
    PlaceholderValuesWarning,
    SmallTrainingPartWarning,
    message_for_command_line,
)


def numbers_with_placeholders(rows: int = 200, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=rows)
    age = [f"{value:.3f}" for value in rng.normal(40, 10, rows)]
    for i in range(0, rows, 17):
        age[i] = ["?", "n/a", "-", "NA", "", "null", "missing"][i % 7]
    return pd.DataFrame({"x": x, "age": age, "y": x + 1.0})


# -- 4: numbers with placeholders --------------------------------------------------------------


def test_placeholders_in_a_numeric_column_are_missing_values_not_an_identifier():
    frame = numbers_with_placeholders()
    with expect_warning(PlaceholderValuesWarning, r"'age' \(.*'\?'.*'n/a'") as caught:
        data = dls.prepare(frame, "y", valid_fraction=0.0)
    assert "age" in data.preprocessor.input_columns
    assert "age (missing)" in data.feature_names
    assert "--kinds age=categorical" in caught[0].message.cli_message
    pre = data.preprocessor
    column = data.feature_names.index("age (missing)")
    features = pre.transform(pd.DataFrame({"x": [0.0, 0.0], "age": ["n/a", "41.5"]}))
    assert features[:, column].tolist() == [1.0, 0.0]
    # The same texts mean missing at prediction: imputed with the training median.
    fill = np.median(pd.to_numeric(frame["age"], errors="coerce").dropna())
    value = data.feature_names.index("age")
    expected = pre.transform(pd.DataFrame({"x": [0.0], "age": [fill]}))[0, value]
    assert features[0, value] == pytest.approx(expected)


def test_a_text_column_of_words_or_of_digits_only_stays_categorical():
    assert infer_kind(pd.Series(["red", "blue", "?", "1"] * 10)) == "categorical"
    assert infer_kind(pd.Series(["02139", "10001", "94105"] * 10)) == "categorical"
    many_words = [str(i) for i in range(90)] + ["abc", "def", "ghi"] * 4
    assert infer_kind(pd.Series(many_words)) == "categorical"  # 3 unlisted words: not numbers
    two_odd = [str(i) for i in range(95)] + ["x", "y"]
    assert infer_kind(pd.Series(two_odd)) == "numeric"  # 2 rare unlisted tokens are placeholders


def test_placeholders_read_from_a_csv_give_a_numeric_column(tmp_path):
    path = tmp_path / "t.csv"
    numbers_with_placeholders().to_csv(path, index=False)
    with expect_warning(PlaceholderValuesWarning, "'age'"):
        data = dls.prepare(dls.read_table(path), "y")
    assert "age" in data.feature_names


# -- 5: a changed kind at prediction -----------------------------------------------------------


@pytest.fixture(scope="module")
def fitted():
    rng = np.random.default_rng(0)
    rows = 60
    frame = pd.DataFrame(
        {
            "x": rng.normal(size=rows),
            "flag": rng.random(rows) > 0.5,
            "color": rng.choice(["a", "b", "c"], rows),
            "code": pd.Series(rng.choice([1, 2, 3], rows)).astype("category"),
            "when": pd.Timestamp("2024-01-01") + pd.to_timedelta(rng.integers(0, 90, rows), "D"),
            "y": rng.normal(size=rows),
        }
    )
    return frame, TabularPreprocessor("y").fit(frame)


@pytest.mark.parametrize(
    "column, values, pattern",
    [
        ("flag", lambda f: f["flag"].astype(int), r"'flag' changed kind: it held bool.*numbers"),
        ("flag", lambda f: np.where(f["flag"], "yes", "no"), r"'flag' changed kind.*'no', 'yes'"),
        ("x", lambda f: ["abc"] * len(f), r"'x' must hold numbers.*'abc': its kind changed"),
        ("when", lambda f: np.arange(len(f)), r"'when' must hold dates"),
        ("color", lambda f: np.arange(len(f)) % 3, r"'color' changed kind: it held text"),
    ],
)
def test_a_changed_kind_at_prediction_is_an_error_naming_the_column(
    fitted, column, values, pattern
):
    frame, pre = fitted
    changed = frame.drop(columns="y").assign(**{column: values(frame)})
    with pytest.raises(DataError, match=pattern) as caught:
        pre.transform(changed)
    assert "np." not in str(caught.value)


def test_legitimate_variants_of_the_training_frame_predict_the_same(fitted):
    frame, pre = fitted
    expected = pre.transform(frame)
    variants = {
        "csv round trip": pd.read_csv(io.StringIO(frame.to_csv(index=False))),
        "int as float": frame.assign(code=frame["code"].astype(float)),
        "category as its strings": frame.assign(code=frame["code"].astype(str)),
        "pandas string dtype": frame.assign(color=frame["color"].astype("string")),
        "float32": frame.assign(x=frame["x"].astype("float32").astype("float64")),
        "bool as text True/False": frame.assign(flag=frame["flag"].astype(str)),
    }
    for name, variant in variants.items():
        got = pre.transform(variant)
        if name == "float32":
            np.testing.assert_allclose(got, expected, atol=1e-6, err_msg=name)
        else:
            np.testing.assert_array_equal(got, expected, err_msg=name)


# -- 10: one extreme value ---------------------------------------------------------------------


def test_one_extreme_value_that_flattens_a_column_gets_a_notice():
    rng = np.random.default_rng(0)
    x = rng.normal(size=200)
    frame = pd.DataFrame({"x": x, "z": rng.normal(size=200), "y": x})
    frame.loc[7, "x"] = 1e300
    with expect_warning(ExtremeValuesWarning, r"column 'x'.*1e\+300") as caught:
        dls.prepare(frame, "y")
    assert "'z'" not in str(caught[0].message)


def test_heavy_tailed_but_ordinary_columns_get_no_notice():
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"income": rng.lognormal(10, 1, 5000), "y": rng.normal(size=5000)})
    with warnings.catch_warnings():
        warnings.simplefilter("error", DataWarning)
        data = dls.prepare(frame, "y")
    # kept as an ordinary numeric feature, scaled into [0, 1] on the training rows
    assert data.feature_names == ["income"]
    assert data.x_train.min() == 0.0 and data.x_train.max() == 1.0


# -- 11: dates as text, separators, encodings --------------------------------------------------


def test_date_texts_become_a_datetime_column(tmp_path):
    rng = np.random.default_rng(0)
    days = pd.Timestamp("2024-01-31") + pd.to_timedelta(rng.integers(0, 400, 80), "D")
    frame = pd.DataFrame(
        {
            "day": days.strftime("%Y-%m-%d"),
            "stamp": (days + pd.Timedelta(hours=12)).strftime("%Y-%m-%d %H:%M"),
            "note": days.strftime("%Y-%m-%d").where(np.arange(80) % 9 != 0, "soon"),
            "y": rng.normal(size=80),
        }
    )
    path = tmp_path / "dates.csv"
    frame.to_csv(path, index=False)
    read = dls.read_table(path)
    assert infer_kind(read["day"]) == infer_kind(read["stamp"]) == "datetime"
    assert infer_kind(read["note"]) == "categorical"  # "soon" is not a date
    data = dls.prepare(read, "y")
    assert {"day.month", "day.day_of_week", "stamp.year", "note (code)"} <= set(data.feature_names)
    assert infer_kind(pd.Series(["31/01/2024", "01/02/2024"])) == "categorical"  # ambiguous


@pytest.mark.parametrize("sep", [",", ";", "\t", "|"])
def test_read_table_finds_the_separator(tmp_path, sep):
    frame = pd.DataFrame({"a": [1.5, 2.5, 3.0], "b": ["x, y", "z", "w"], "c": [1, 2, 3]})
    path = tmp_path / "t.csv"
    frame.to_csv(path, sep=sep, index=False)
    pd.testing.assert_frame_equal(dls.read_table(path), frame)


def test_read_table_takes_the_separator_given(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("a;b,c\n1;2,3\n")
    assert dls.read_table(path, sep=";").columns.tolist() == ["a", "b,c"]
    assert dls.read_table(path, sep=",").columns.tolist() == ["a;b", "c"]
    with pytest.raises(ValueError, match="`sep` must be one character"):
        dls.read_table(path, sep=";;")


def test_a_file_that_is_not_utf8_names_the_encoding_to_pass(tmp_path):
    path = tmp_path / "latin.csv"
    path.write_bytes("name,v\ncafé,1\nthé,2\n".encode("latin-1"))
    with pytest.raises(DataError, match=r"not UTF-8 text.*encoding='cp1252'") as caught:
        dls.read_table(path)
    assert str(path) in str(caught.value)
    assert "--encoding cp1252" in message_for_command_line(caught.value)
    assert dls.read_table(path, encoding="latin-1")["name"].tolist() == ["café", "thé"]
    with pytest.raises(ValueError, match="encoding='klingon'"):
        dls.read_table(path, encoding="klingon")


def test_duplicate_and_empty_column_names_get_a_notice(tmp_path):
    path = tmp_path / "names.csv"
    path.write_text("a,a,,b\n1,2,3,4\n5,6,7,8\n")
    with expect_warning(ColumnNamesWarning, r"'a' appears 2 times.*'a.1'.*'Unnamed: 2'"):
        frame = dls.read_table(path)
    assert frame.columns.tolist() == ["a", "a.1", "Unnamed: 2", "b"]


def test_parquet_without_pyarrow_names_the_extra(tmp_path, monkeypatch):
    path = tmp_path / "t.parquet"
    pd.DataFrame({"a": [1, 2]}).to_parquet(path)
    for name in ("pyarrow", "fastparquet"):
        monkeypatch.setitem(sys.modules, name, None)  # an import of it now fails
    with pytest.raises(ImportError, match=re.escape("pip install 'dlstructured[parquet]'")):
        dls.read_table(path)


# -- 11: the split, the task, messages, saving -------------------------------------------------


def test_a_tiny_training_part_is_flagged_naming_valid_fraction():
    frame = pd.DataFrame({"x": np.arange(200.0), "y": np.arange(200.0) % 7})
    with expect_warning(SmallTrainingPartWarning, r"valid_fraction=0.99 leaves 2 training rows"):
        dls.prepare(frame, "y", valid_fraction=0.99)
    with pytest.raises(DataError, match=r"valid_fraction=0.996 leaves 1 training rows") as caught:
        dls.prepare(frame, "y", valid_fraction=0.996)
    assert "--valid-fraction" in message_for_command_line(caught.value)


def test_multiclass_on_a_continuous_target_is_refused():
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"x": rng.normal(size=198), "y": rng.normal(size=198)})
    with pytest.raises(DataError, match=r"'y' has 198 distinct.*task='regression'") as caught:
        dls.prepare(frame, "y", task="multiclass")
    message = str(caught.value)
    assert "np.float64" not in message and not re.search(r"\d\.\d{7}", message)
    assert "--task regression" in message_for_command_line(caught.value)
    ids = pd.DataFrame({"x": rng.normal(size=100), "y": [f"c{i}" for i in range(100)]})
    with pytest.raises(DataError, match="100 distinct values in 100 rows"):
        dls.prepare(ids, "y", task="multiclass")


def test_messages_show_numbers_as_python_numbers():
    frame = pd.DataFrame({"x": [1.0, 2.0, 3.0], "y": np.full(3, 5.217)})
    with pytest.raises(DataError, match=r"one value only \(5.217\)"):
        dls.prepare(frame, "y")
    pre = TabularPreprocessor("y", task="binary").fit(
        pd.DataFrame({"x": [1.0, 2.0, 3.0, 4.0], "y": [0, 1, 0, 1]})
    )
    with pytest.raises(DataError, match=r"does not know: 7\b") as caught:
        pre.transform_target(pd.Series(np.array([7, 0]), name="y"))
    assert "np." not in str(caught.value)


def test_saving_into_a_missing_folder_names_the_folder(tmp_path):
    frame = pd.DataFrame({"x": np.arange(20.0), "y": np.arange(20.0)})
    model = dls.linear_unit(dls.prepare(frame, "y"), seed=0)
    target = tmp_path / "missing" / "dir" / "m.keras"
    folder = re.escape(repr(str(target.parent)))
    with pytest.raises(FileNotFoundError, match=f"the folder {folder} does not exist") as caught:
        model.save(target)
    assert not re.search(r"\.m-\w+\.keras", str(caught.value))  # not the temporary file's name


# -- 3: nothing dropped in silence; advice for the command line --------------------------------


def test_drop_leaves_columns_out_and_names_them():
    frame = numbers_with_placeholders().assign(id=range(200), leak=lambda f: f["y"])
    with expect_warning(PlaceholderValuesWarning):
        data = dls.prepare(frame, "y", drop=["id", "leak"])
    assert data.preprocessor.dropped_columns == {"id": "dropped", "leak": "dropped"}
    assert data.preprocessor.input_columns == ["x", "age"]
    with pytest.raises(DataError, match=r"`drop` names columns that are not in the frame: 'nope'"):
        dls.prepare(frame, "y", drop=["nope"])


def test_identifier_notice_carries_command_line_advice():
    frame = pd.DataFrame({"x": np.arange(50.0), "id": [f"u{i}" for i in range(50)],
                          "y": np.arange(50.0) % 3})
    with expect_warning(IdentifierColumnWarning, r"kinds=\{'id': 'categorical'\}") as caught:
        dls.prepare(frame, "y")
    assert "--kinds id=categorical" in caught[0].message.cli_message


@pytest.mark.parametrize(
    "options, flag",
    [
        ({"kinds": {"nope": "numeric"}}, "--kinds names columns that are not in the file"),
        ({"positive_label": "maybe"}, "--positive-label must be one of"),
        ({"task": "binary"}, "--task multiclass"),
        ({"drop": ["nope"]}, "--drop names columns"),
    ],
)
def test_errors_with_python_advice_carry_command_line_advice(options, flag):
    frame = pd.DataFrame({"x": np.arange(30.0), "y": ["a", "b", "c"] * 10})
    if "positive_label" in options:
        frame["y"] = ["a", "b"] * 15
    with pytest.raises(DataError) as caught:
        dls.prepare(frame, "y", **options)
    assert flag in message_for_command_line(caught.value)
    assert flag not in str(caught.value)


def test_a_nameless_first_column_of_row_numbers_gets_no_names_notice(tmp_path):
    path = tmp_path / "indexed.csv"
    pd.DataFrame({"a": [0.5, 0.1, 0.7], "b": ["x", "y", "z"]}).to_csv(path)  # index, no name
    with warnings.catch_warnings():
        warnings.simplefilter("error", DataWarning)
        frame = dls.read_table(path)
    assert frame.columns.tolist() == ["Unnamed: 0", "a", "b"]
