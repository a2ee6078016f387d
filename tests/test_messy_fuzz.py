"""Property tests over messy mixed frames (issue 15).

(a) Every input column is used or named: in ``input_columns``, or in a data warning, or left out
by the caller's own choice (``drop=``, ``kinds=...: 'ignore'``), which ``dropped_columns`` lists.
(b) A model trained on such a frame loads in a new process and predicts the same.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
from hypothesis import event, given
from hypothesis import strategies as st

import dlstructured as dls
from conftest import budget
from dlstructured.errors import DataWarning
from test_load_every_kind import load_in_new_process

PLACEHOLDER_TEXTS = ["?", "n/a", "-", "NA", "null", "missing", ""]


def _column(kind: str, rows: int, rng: np.random.Generator) -> pd.Series:
    """One column of a messy table, as a CSV reader would hand it over."""
    if kind == "number":
        values = rng.normal(size=rows)
        values[rng.random(rows) < 0.1] = np.nan
        return pd.Series(values)
    if kind == "number_with_placeholders":
        texts = np.array([f"{v:.2f}" for v in rng.normal(50, 10, rows)], dtype=object)
        texts[rng.random(rows) < 0.15] = rng.choice(PLACEHOLDER_TEXTS)
        return pd.Series(texts)
    if kind == "date_text":
        days = pd.Timestamp("2023-06-01") + pd.to_timedelta(rng.integers(0, 700, rows), "D")
        return pd.Series(days.strftime("%Y-%m-%d"))
    if kind == "bool_text":
        words = rng.choice([["True", "False"], ["yes", "no"]])
        return pd.Series(rng.choice(words, rows))
    if kind == "many_categories":
        return pd.Series([f"s{k}" for k in rng.integers(0, 30, rows)])
    if kind == "few_categories":
        return pd.Series(rng.choice(["red", "green", "blue"], rows))
    if kind == "identifier":
        return pd.Series([f"id{k}" for k in rng.permutation(rows)])
    if kind == "constant":
        return pd.Series(["same"] * rows)
    raise AssertionError(kind)


COLUMN_KINDS = ["number", "number_with_placeholders", "date_text", "bool_text",
                "many_categories", "few_categories", "identifier", "constant"]


def messy_frame(kinds, rows: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({f"{kind}_{k}": _column(kind, rows, rng) for k, kind in enumerate(kinds)})
    frame["y"] = rng.normal(size=rows)
    return frame


def _named_in(column, messages) -> bool:
    return any(repr(column) in message for message in messages)


@pytest.mark.fuzz
@budget(0.5)
@given(
    kinds=st.lists(st.sampled_from(COLUMN_KINDS), min_size=1, max_size=6),
    rows=st.integers(min_value=25, max_value=80),
    seed=st.integers(min_value=0, max_value=2**16),
    drop_first=st.booleans(),
)
def test_every_column_is_used_or_named(kinds, rows, seed, drop_first):
    frame = messy_frame(kinds, rows, seed)
    drop = [frame.columns[0]] if drop_first and len(kinds) > 1 else []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            data = dls.prepare(frame, "y", drop=drop)
        except dls.DataError as error:
            # Only "nothing usable is left" may stop it, and it names every column it dropped.
            assert "No usable feature columns" in str(error), error
            for column in frame.columns.drop("y"):
                assert repr(column) in str(error), (column, error)
            event("refused: no usable column")
            return
    messages = [str(w.message) for w in caught if isinstance(w.message, DataWarning)]
    assert not [w for w in caught if not isinstance(w.message, DataWarning)], [
        str(w.message) for w in caught
    ]
    pre = data.preprocessor
    for column in frame.columns.drop("y"):
        used = column in pre.input_columns
        chosen = pre.dropped_columns.get(column) in ("dropped", "ignored")
        assert used or chosen or _named_in(column, messages), (column, messages)
        kind = column.rsplit("_", 1)[0]
        if kind in ("number_with_placeholders", "date_text") and not chosen:
            assert used, (column, pre.dropped_columns)  # read as numbers / dates, never dropped
        event(f"{kind}: {'used' if used else 'left out'}")


def test_models_trained_on_messy_frames_load_in_a_new_process(tmp_path):
    kinds = COLUMN_KINDS[:6]
    rows = messy_frame(kinds, rows=60, seed=99).drop(columns="y").iloc[:12]
    rows.to_pickle(tmp_path / "rows.pkl")
    files, expected = {}, {}
    for seed in range(3):
        frame = messy_frame(kinds, rows=60, seed=seed)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DataWarning)  # placeholder and identifier notices
            data = dls.prepare(frame, "y")
        assert {"number_with_placeholders_1", "date_text_2"} <= set(data.preprocessor.input_columns)
        model = dls.dense_stack(data, hidden_units=(8,), seed=seed)
        dls.train(model, data, epochs=1, seed=seed)
        name = f"messy{seed}"
        files[name] = str(tmp_path / f"{name}.keras")
        model.save(files[name])
        expected[name] = model.predict(rows)
    got = load_in_new_process(tmp_path / "rows.pkl", files)  # one new process loads them all
    for name in files:
        np.testing.assert_allclose(got[name], expected[name], rtol=1e-6, err_msg=name)
