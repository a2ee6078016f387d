"""Permutation importance of raw columns: agreement with scikit-learn, batching, bad input, CLI."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from dlstructured import RunConfig, fit_table
from dlstructured.errors import DataError

BACKEND = os.environ.get("KERAS_BACKEND", "jax")
if BACKEND not in ("jax", "tensorflow"):
    BACKEND = "jax"
OPTIONS = dict(hidden_units=(16,), members=2, epochs=40, batch_size=16, learning_rate=0.01,
               patience=0, valid_fraction=0.2)
CONFIG = RunConfig(**OPTIONS, seed=0)


def regression_frame(rows: int, seed: int) -> pd.DataFrame:
    """Columns of falling importance: strong, medium, a category, weak, and pure noise."""
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({
        "strong": rng.normal(size=rows),
        "medium": rng.normal(size=rows),
        "colour": rng.choice(["red", "green", "blue"], rows),
        "weak": rng.normal(size=rows),
        "noise": rng.normal(size=rows),
    })
    frame["y"] = (4.0 * frame["strong"] + 2.0 * frame["medium"]
                  + np.where(frame["colour"] == "red", 1.5, 0.0) + 0.3 * frame["weak"])
    return frame


def binary_frame(rows: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({"a": rng.normal(size=rows), "noise": rng.normal(size=rows),
                          "shape": rng.choice(["round", "square"], rows)})
    score = 2.0 * frame["a"] + np.where(frame["shape"] == "round", 1.0, -1.0)
    frame["label"] = np.where(score > 0, "yes", "no")
    return frame


@pytest.fixture(scope="module")
def regression():
    return fit_table(regression_frame(300, seed=0), "y", CONFIG).model


@pytest.fixture(scope="module")
def held_out() -> pd.DataFrame:
    return regression_frame(120, seed=1)


def test_agrees_with_scikit_learns_permutation_importance(held_out) -> None:
    from scipy.stats import spearmanr
    from sklearn.inspection import permutation_importance

    from dlstructured.sklearn import TabularRegressor

    train = regression_frame(300, seed=0)
    estimator = TabularRegressor(**OPTIONS, random_state=0).fit(train.drop(columns="y"),
                                                                train["y"])
    features = held_out.drop(columns="y")
    # The wrapper names the target "target"; the labels are given apart.
    ours = estimator.model_.feature_importance(features, held_out["y"], n_repeats=5,
                                               random_state=7)
    theirs = permutation_importance(estimator, features, held_out["y"],
                                    scoring="neg_mean_absolute_error", n_repeats=5,
                                    random_state=7)
    sklearn_mean = pd.Series(theirs.importances_mean, index=features.columns)
    sklearn_order = list(sklearn_mean.sort_values(ascending=False, kind="stable").index)
    assert list(ours.index[:3]) == sklearn_order[:3] == ["strong", "medium", "colour"]
    rho = spearmanr(ours["importance_mean"], sklearn_mean[ours.index]).statistic
    assert rho >= 0.9
    # The same rows are shuffled, so the numbers agree up to float32 rounding of the target.
    np.testing.assert_allclose(ours["importance_mean"], sklearn_mean[ours.index],
                               rtol=1e-4, atol=1e-5)
    sklearn_std = pd.Series(theirs.importances_std, index=features.columns)
    np.testing.assert_allclose(ours["importance_std"], sklearn_std[ours.index], rtol=1e-3,
                               atol=1e-5)


def test_result_is_sorted_raw_columns_in_the_tasks_metric(regression, held_out) -> None:
    result = regression.feature_importance(held_out, n_repeats=2, random_state=0)
    assert list(result.columns) == ["importance_mean", "importance_std"]
    assert result.index.name == "column"
    assert sorted(result.index) == sorted(regression.preprocessor.input_columns)
    assert result["importance_mean"].is_monotonic_decreasing
    assert result.attrs["metric"] == "mae"
    assert result.attrs["baseline"] == pytest.approx(regression.evaluate(held_out)["mae"])
    assert result.loc["strong", "importance_mean"] > 1.0
    assert abs(result.loc["noise", "importance_mean"]) < 0.2


def test_same_seed_same_result_and_labels_may_be_given_apart(regression, held_out) -> None:
    first = regression.feature_importance(held_out, n_repeats=3, random_state=3)
    features = held_out.drop(columns="y")
    again = regression.feature_importance(features, held_out["y"].to_numpy(), n_repeats=3,
                                          random_state=3)
    renamed = regression.feature_importance(held_out.rename(columns={"y": "truth"}), "truth",
                                            n_repeats=3, random_state=3)
    pd.testing.assert_frame_equal(first, again)
    pd.testing.assert_frame_equal(first, renamed)
    other = regression.feature_importance(held_out, n_repeats=3, random_state=4)
    assert not np.allclose(first["importance_mean"], other.loc[first.index, "importance_mean"])


def test_all_repeats_of_a_column_go_through_one_transform(regression, held_out) -> None:
    preprocessor = regression.preprocessor
    calls = []
    original = type(preprocessor).transform

    def counting(frame):
        calls.append(len(frame))
        return original(preprocessor, frame)

    preprocessor.transform = counting
    try:
        regression.feature_importance(held_out, n_repeats=4, random_state=0)
    finally:
        del preprocessor.transform
    rows = len(held_out)
    assert calls == [rows] + [4 * rows] * len(preprocessor.input_columns)


def test_classifier_in_accuracy_permutes_a_category_as_one_column() -> None:
    model = fit_table(binary_frame(240, seed=0), "label", CONFIG).model
    held = binary_frame(100, seed=1)
    result = model.feature_importance(held, n_repeats=3, random_state=0)
    assert result.attrs["metric"] == "accuracy"
    assert result.attrs["baseline"] == pytest.approx(model.evaluate(held)["accuracy"])
    assert list(result.index[:2]) == ["a", "shape"]
    assert "noise" in result.index and len(result) == 3
    log_loss = model.feature_importance(held, n_repeats=3, random_state=0, metric="log_loss")
    assert log_loss.attrs["metric"] == "log_loss" and log_loss.index[0] == "a"


@pytest.mark.parametrize(
    "change, error, message",
    [
        (dict(y="nope"), DataError, r"'nope'.*Received: y='nope'"),
        (dict(n_repeats=0), ValueError, r"n_repeats.*Received: n_repeats=0"),
        (dict(metric="auc"), ValueError, r"`metric` must be one of 'mae'.*Received: metric='auc'"),
        (dict(y=[1.0, 2.0]), ValueError, r"one label per row .*120 rows"),
        (dict(random_state=-1), ValueError, r"random_state"),
    ],
)
def test_bad_input_names_the_argument(regression, held_out, change, error, message) -> None:
    with pytest.raises(error, match=message):
        regression.feature_importance(held_out, **change)


def test_a_frame_without_a_needed_column_names_it(regression, held_out) -> None:
    with pytest.raises(DataError, match=r"lacks 1 column\(s\) the model reads: 'medium'"):
        regression.feature_importance(held_out.drop(columns="medium"))
    with pytest.raises(DataError, match=r"target column 'y'.*pass the labels as `y`"):
        regression.feature_importance(held_out.drop(columns="y"))
    with pytest.raises(TypeError, match="`frame` must be a pandas DataFrame"):
        regression.feature_importance(held_out.to_numpy())


# -- the command line --------------------------------------------------------------------------


def run_cli(capsys, *args):
    from dlstructured.cli import main

    capsys.readouterr()
    status = main([str(arg) for arg in args])
    return status, capsys.readouterr()


@pytest.fixture(scope="module")
def trained_file(tmp_path_factory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("explain_cli")
    model = folder / "model.keras"
    fit_table(regression_frame(200, seed=0), "y", CONFIG.replace(epochs=10)).model.save(model)
    data = folder / "held_out.csv"
    regression_frame(60, seed=1).rename(columns={"y": "target"}).to_csv(data, index=False)
    return model, data


def test_explain_command_writes_the_table_and_the_chart(capsys, tmp_path, trained_file) -> None:
    model, data = trained_file
    out = tmp_path / "why"
    status, printed = run_cli(capsys, "explain", model, data, "--target", "target", "--out", out,
                              "--repeats", "2", "--seed", "3", "--backend", BACKEND)
    assert status == 0, printed.err
    table = pd.read_csv(out / "importance.csv")
    assert list(table.columns) == ["column", "importance_mean", "importance_std"]
    assert sorted(table["column"]) == ["colour", "medium", "noise", "strong", "weak"]
    assert (out / "importance.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "wrote importance.csv, importance.png" in printed.out
    frame = regression_frame(60, seed=1)
    from dlstructured import load_model

    expected = load_model(model).feature_importance(frame, n_repeats=2, random_state=3)
    np.testing.assert_allclose(table["importance_mean"], expected["importance_mean"], rtol=1e-6)


@pytest.mark.parametrize(
    "args, expected",
    [
        (["--target", "nope"], "'nope'"),
        (["--target", "target", "--repeats", "0"], "--repeats: expected a whole number >= 1"),
    ],
)
def test_explain_command_bad_input_is_one_line(capsys, tmp_path, trained_file, args,
                                               expected) -> None:
    model, data = trained_file
    status, printed = run_cli(capsys, "explain", model, data, *args, "--out", tmp_path / "o",
                              "--backend", BACKEND)
    lines = [line for line in printed.err.splitlines() if line.strip()]
    assert status == 2 and len(lines) == 1 and expected in lines[0], printed.err


def test_explain_command_never_overwrites_its_input(capsys, tmp_path, trained_file) -> None:
    model, data = trained_file
    copy = tmp_path / "importance.csv"
    copy.write_bytes(data.read_bytes())
    status, printed = run_cli(capsys, "explain", model, copy, "--target", "target",
                              "--out", tmp_path, "--backend", BACKEND)
    assert status == 2 and "give another --out folder" in printed.err, printed.err
    assert copy.read_bytes() == data.read_bytes()
    assert not (tmp_path / "importance.png").exists()
