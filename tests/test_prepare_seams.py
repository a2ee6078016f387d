"""prepare's seams: options forwarded to TabularPreprocessor, public methods only, and the saved
preprocessing configuration unchanged byte for byte."""

import hashlib
import json

import numpy as np
import pandas as pd
import pytest

from dlstructured import TabularPreprocessor, prepare


def _frame(rows=200):
    rng = np.random.default_rng(1)
    return pd.DataFrame({
        "a": rng.normal(size=rows),
        "b": np.where(rng.random(rows) < 0.1, np.nan, rng.normal(size=rows)),
        "c": rng.choice(list("abc"), rows),
        "w": rng.choice([f"k{i}" for i in range(40)], rows),
        "d": pd.Timestamp("2021-01-01") + pd.to_timedelta(rng.integers(0, 10**7, rows), unit="s"),
        "t": rng.random(rows) < 0.5,
        "y": rng.normal(size=rows),
        "yc": rng.choice(["p", "q", "r"], rows),
    })


# sha256 of json.dumps(preprocessor.get_config()), written down from 0.1.0's code before the
# preprocessing was reorganised: (length, digest).
CONFIGS_0_1_0 = {
    "reg_minmax": (
        dict(target="y", drop=["yc"]),
        2206, "c556318a9fab9f6e68fef78ba3ae4a4dac31cae7cecd5f4a07ec55ab7ba55b82",
    ),
    "reg_std": (
        dict(target="y", drop=["yc"], scaling="standard", target_scaling="standard",
             clip_target=True),
        2451, "11ee716d207dea2392f8df3bb282592e8899fb6745f67355ef43a5ab257860a5",
    ),
    "robust": (
        dict(target="y", drop=["yc"], scaling="robust"),
        2383, "0f57d652d7f6b35d63de764b5f8ddd1cd2c09f3523853fc75df6adfeb5dc8f91",
    ),
    "multi": (
        dict(target="yc", drop=["y"], max_one_hot=5),
        2185, "f1d42e38609f82dd5e3925c5bab287acb316e788b2d17389311198836b521807",
    ),
}


@pytest.mark.parametrize("name", sorted(CONFIGS_0_1_0))
def test_saved_config_is_byte_identical_to_0_1_0(name):
    options, length, digest = CONFIGS_0_1_0[name]
    frame = _frame()
    data = prepare(frame, **options)
    text = json.dumps(data.preprocessor.get_config())
    assert (len(text), hashlib.sha256(text.encode()).hexdigest()) == (length, digest)
    again = TabularPreprocessor.from_config(json.loads(text))
    assert json.dumps(again.get_config()) == text
    np.testing.assert_array_equal(again.transform(frame.drop(columns=[options["target"]])),
                                  data.preprocessor.transform(frame.drop(
                                      columns=[options["target"]])))


def test_prepare_forwards_its_options_to_the_preprocessor():
    frame = _frame()
    data = prepare(frame, "y", scaling="standard", max_one_hot=5, drop=["yc"])
    direct = TabularPreprocessor("y", scaling="standard", max_one_hot=5)
    labelled = np.arange(len(frame))
    direct.fit_transform_parts(frame, [], fit_rows=_positions(frame, data.train_index),
                               label_rows=labelled, exclude={"yc": "dropped"})
    assert direct.get_config() == data.preprocessor.get_config()
    assert data.preprocessor.scaling == "standard" and data.preprocessor.max_one_hot == 5


def _positions(frame, index):
    return frame.index.get_indexer(index)


def test_prepare_names_an_unknown_option():
    with pytest.raises(TypeError, match=r"unknown options 'scale'.*scaling.*Received: scale=1"):
        prepare(_frame(), "y", scale=1)


def test_prepare_checks_an_option_as_the_preprocessor_does():
    with pytest.raises(ValueError, match="scaling"):
        prepare(_frame(), "y", scaling="zscore")


def test_fit_transform_parts_matches_fit_then_transform():
    frame = _frame().drop(columns=["yc"])
    rows = np.arange(50, 200)
    parts = TabularPreprocessor("y").fit_transform_parts(frame, [rows, np.arange(50)],
                                                         fit_rows=rows)
    alone = TabularPreprocessor("y").fit(frame.iloc[rows])
    np.testing.assert_array_equal(parts[0], alone.transform(frame.iloc[rows]))
    np.testing.assert_array_equal(parts[1], alone.transform(frame.iloc[:50]))


def test_fit_transform_parts_checks_exclude():
    with pytest.raises(TypeError, match="exclude"):
        TabularPreprocessor("y").fit_transform_parts(_frame(), [], exclude=["yc"])
