"""The scikit-learn estimators: their contract, pipelines, searches and bad input."""

from __future__ import annotations

import dataclasses
import inspect
import os
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone
from sklearn.compose import ColumnTransformer
from sklearn.exceptions import NotFittedError
from sklearn.model_selection import GridSearchCV, RandomizedSearchCV, cross_val_score
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from dlstructured import RunConfig
from dlstructured.sklearn import TabularClassifier, TabularRegressor, run_config_of

SMALL = {"hidden_units": (8,), "members": 2, "epochs": 2, "random_state": 0}
ESTIMATORS = (TabularRegressor, TabularClassifier)
OWN = {"TabularRegressor": {"random_state", "verbose"},
       "TabularClassifier": {"random_state", "verbose", "class_weight"}}


def _numbers(rows: int = 60, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    x = np.random.default_rng(seed).normal(size=(rows, 3))
    return x, x @ np.array([1.0, -2.0, 0.5]) + 3.0


def _raw_table(rows: int = 60) -> tuple[pd.DataFrame, np.ndarray]:
    """Numbers with a gap, text, a pandas category and dates, and a text label."""
    rng = np.random.default_rng(1)
    size = rng.normal(size=rows)
    frame = pd.DataFrame({
        "size": size,
        "colour": rng.choice(["red", "green", "blue"], size=rows),
        "shape": pd.Categorical(rng.choice(["round", "square"], size=rows)),
        "bought": pd.date_range("2024-01-01", periods=rows, freq="D"),
    })
    frame.loc[[2, 7], "size"] = np.nan
    return frame, np.where(size > 0, "big", "small")


# -- parameters ------------------------------------------------------------------------------


@pytest.mark.parametrize("estimator_class", ESTIMATORS)
def test_every_run_config_field_is_a_parameter(estimator_class):
    fields = {item.name for item in dataclasses.fields(RunConfig)} - {"task", "seed"}
    params = set(inspect.signature(estimator_class.__init__).parameters) - {"self"}
    assert params - OWN[estimator_class.__name__] == fields


@pytest.mark.parametrize("estimator_class", ESTIMATORS)
def test_defaults_are_run_config_defaults(estimator_class):
    task = "regression" if estimator_class is TabularRegressor else "binary"
    config = run_config_of(estimator_class().get_params(), task)
    assert config == RunConfig(task=task, seed=0)


def test_parameters_reach_the_run_config():
    params = TabularClassifier(epochs=7, dropout_rate=0.25, random_state=5).get_params()
    config = run_config_of(params, "multiclass")
    assert (config.epochs, config.dropout_rate, config.seed, config.task) == (
        7, 0.25, 5, "multiclass")


def test_a_bad_parameter_is_named_at_fit():
    x, y = _numbers()
    with pytest.raises(ValueError, match=r"`dropout_rate`.*Received: dropout_rate=1\.5"):
        TabularRegressor(dropout_rate=1.5).fit(x, y)
    with pytest.raises(ValueError, match=r"`random_state`.*Received: random_state=-1"):
        TabularRegressor(random_state=-1).fit(x, y)


def test_clone_keeps_epochs_where_keras_wrapper_fell_back_to_its_default():
    x, y = _numbers()
    cloned = clone(TabularRegressor(hidden_units=(8,), epochs=3, patience=0))
    assert cloned.get_params()["epochs"] == 3
    assert cloned.fit(x, y).n_epochs_ == 3
    assert len(cloned.history_) == 3
    assert "val_loss" in cloned.history_.columns  # early stopping's internal split


@pytest.mark.parametrize("estimator_class", ESTIMATORS)
def test_clone_keeps_every_parameter(estimator_class):
    changed = {"model": "dense", "hidden_units": (4, 4), "activation": "tanh",
               "dropout_rate": 0.1, "batch_norm": True, "input_batch_norm": True, "epochs": 3,
               "batch_size": 16, "learning_rate": 0.01, "patience": 2, "metrics": ("mse",),
               "valid_fraction": 0.2, "stratify": True, "kinds": {"x0": "numeric"},
               "drop": ("x2",), "positive_label": "b", "sep": ";", "encoding": "latin-1",
               "random_state": 7, "verbose": 0}
    if estimator_class is TabularClassifier:
        changed["class_weight"] = "balanced"
    params = clone(estimator_class(**changed)).get_params()
    assert {name: params[name] for name in changed} == changed


def test_grid_search_trains_each_candidate_for_its_epochs():
    x, y = _numbers()
    search = GridSearchCV(TabularRegressor(hidden_units=(8,), patience=0),
                          {"epochs": [1, 3]}, cv=2, refit=True)
    search.fit(x, y)
    refit = search.best_estimator_
    assert refit.n_epochs_ == search.best_params_["epochs"]


# -- fitting and predicting ------------------------------------------------------------------


def test_regressor_on_an_array_names_columns_x0():
    x, y = _numbers()
    model = TabularRegressor(**SMALL).fit(x, y)
    assert model.n_features_in_ == 3
    assert not hasattr(model, "feature_names_in_")
    assert model.model_.preprocessor.input_columns == ["x0", "x1", "x2"]
    predictions = model.predict(x)
    assert predictions.shape == (60,) and predictions.dtype == np.float64
    assert isinstance(model.score(x, y), float)


def test_regressor_learns_a_line():
    x = np.linspace(-1, 1, 200).reshape(-1, 1)
    y = 3 * x[:, 0] + 2
    model = TabularRegressor(model="linear", epochs=30, batch_size=16, learning_rate=0.05,
                             patience=0, random_state=0).fit(x, y)
    assert model.score(x, y) > 0.95


def test_classifier_on_a_raw_frame_answers_in_its_labels():
    frame, labels = _raw_table()
    model = TabularClassifier(**SMALL).fit(frame, labels)
    assert list(model.classes_) == ["big", "small"]
    assert list(model.feature_names_in_) == ["size", "colour", "shape", "bought"]
    assert set(model.predict(frame)) <= {"big", "small"}
    probabilities = model.predict_proba(frame)
    assert probabilities.shape == (60, 2)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-6)
    # predict agrees with the probabilities, in the order of classes_; a tie at 0.5 (a network
    # that has barely trained) goes to the positive class
    expected = model.classes_[(probabilities[:, 1] >= 0.5).astype(int)]
    assert list(model.predict(frame)) == list(expected)


def test_rows_pair_by_position_whatever_the_index():
    frame, labels = _raw_table()
    shuffled = frame.sample(frac=1.0, random_state=0)
    targets = pd.Series(labels, index=frame.index).loc[shuffled.index]
    model = TabularClassifier(**SMALL).fit(shuffled.set_index(shuffled.index * 10), targets)
    again = TabularClassifier(**SMALL).fit(shuffled.reset_index(drop=True),
                                           targets.to_numpy())
    np.testing.assert_allclose(model.predict_proba(frame), again.predict_proba(frame))


def test_group_by_names_a_column_kept_out_of_the_features():
    frame, labels = _raw_table()
    frame["shop"] = np.arange(len(frame)) % 6
    model = TabularClassifier(**SMALL, group_by="shop").fit(frame, labels)
    assert "shop" not in model.model_.preprocessor.feature_names
    assert model.predict(frame).shape == (60,)


def test_multiclass_classes_are_sorted_original_labels():
    x, _ = _numbers(90)
    labels = np.array([30, 10, 20])[np.digitize(x[:, 0], [-0.4, 0.4])]
    model = TabularClassifier(**SMALL).fit(x, labels)
    assert list(model.classes_) == [10, 20, 30]
    assert model.predict_proba(x).shape == (90, 3)
    assert set(model.predict(x)) <= {10, 20, 30}
    assert model.model_.task == "multiclass"


def test_positive_label_keeps_the_columns_in_the_order_of_classes():
    frame, labels = _raw_table()
    flipped = TabularClassifier(**SMALL, positive_label="big").fit(frame, labels)
    assert list(flipped.classes_) == ["big", "small"]
    # the network's positive class is "big", code 0: its probabilities come second there
    assert flipped.model_.classes == [1, 0]
    probabilities = flipped.predict_proba(frame)
    expected = flipped.model_.predict_proba(frame.reset_index(drop=True))[0].to_numpy()
    np.testing.assert_allclose(probabilities[:, 0], expected)
    assert list(flipped.predict(frame)) == list(flipped.classes_[probabilities.argmax(axis=1)])


def test_balanced_class_weight_raises_the_rare_class():
    x, _ = _numbers(120, seed=3)
    labels = np.where(x[:, 0] > 1.0, "rare", "common")
    settings = {"hidden_units": (8,), "epochs": 20, "learning_rate": 0.01, "patience": 0,
                "random_state": 0}
    plain = TabularClassifier(**settings).fit(x, labels)
    balanced = TabularClassifier(**settings, class_weight="balanced").fit(x, labels)
    rare = list(plain.classes_).index("rare")
    assert balanced.predict_proba(x)[:, rare].mean() > plain.predict_proba(x)[:, rare].mean()


def test_class_weight_by_label_and_sample_weight_train():
    x, _ = _numbers(80)
    labels = np.where(x[:, 0] > 0, "yes", "no")
    model = TabularClassifier(**SMALL, class_weight={"yes": 2.0, "no": 1.0})
    model.fit(x, labels, sample_weight=np.linspace(0.5, 1.5, 80))
    assert model.n_epochs_ == 2


def test_sample_weight_changes_what_is_learned():
    x, y = _numbers(80)
    settings = {"hidden_units": (8,), "epochs": 5, "random_state": 0}
    plain = TabularRegressor(**settings).fit(x, y).predict(x)
    weights = np.where(x[:, 0] > 0, 5.0, 0.1)
    weighted = TabularRegressor(**settings).fit(x, y, sample_weight=weights).predict(x)
    assert not np.allclose(plain, weighted)


# -- pickling --------------------------------------------------------------------------------


def test_a_pickled_estimator_predicts_the_same_in_a_new_process(tmp_path):
    frame, labels = _raw_table()
    model = TabularClassifier(**SMALL).fit(frame, labels)
    (tmp_path / "model.pkl").write_bytes(pickle.dumps(model))
    frame.to_pickle(tmp_path / "frame.pkl")
    np.save(tmp_path / "expected.npy", model.predict_proba(frame))
    assert isinstance(model.__getstate__()["model_"], bytes)  # the model travels as .keras
    script = (
        "import pickle, sys, numpy as np, pandas as pd\n"
        "folder = sys.argv[1]\n"
        "model = pickle.load(open(folder + '/model.pkl', 'rb'))\n"
        "frame = pd.read_pickle(folder + '/frame.pkl')\n"
        "np.testing.assert_allclose(model.predict_proba(frame),\n"
        "                           np.load(folder + '/expected.npy'), rtol=1e-6, atol=1e-7)\n"
        "print(type(model.model_).__name__, model.classes_.tolist())\n"
    )
    source = str(Path(__file__).resolve().parents[1] / "src")
    environment = {**os.environ, "PYTHONPATH": source}
    done = subprocess.run([sys.executable, "-c", script, str(tmp_path)], capture_output=True,
                          text=True, env=environment, timeout=240)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == "TabularModel ['big', 'small']"


def test_an_unfitted_estimator_pickles_without_a_model():
    restored = pickle.loads(pickle.dumps(TabularRegressor(epochs=4)))
    assert restored.get_params()["epochs"] == 4 and not hasattr(restored, "model_")


# -- pipelines and searches ------------------------------------------------------------------


def test_in_a_pipeline_after_a_column_transformer():
    frame, labels = _raw_table()
    columns = ColumnTransformer([
        ("numbers", make_pipeline(StandardScaler()), ["size"]),
        ("colour", OneHotEncoder(sparse_output=False), ["colour"]),
    ], remainder="drop")
    pipeline = Pipeline([("columns", columns), ("model", TabularClassifier(**SMALL))])
    pipeline.fit(frame.fillna({"size": 0.0}), labels)
    assert pipeline.predict_proba(frame.fillna({"size": 0.0})).shape == (60, 2)
    assert pipeline.named_steps["model"].n_features_in_ == 4


def test_cross_val_score_on_a_raw_frame():
    frame, labels = _raw_table()
    scores = cross_val_score(TabularClassifier(**SMALL), frame, labels, cv=3)
    assert scores.shape == (3,) and ((scores >= 0) & (scores <= 1)).all()


def test_randomized_search_samples_the_parameters():
    x, y = _numbers()
    search = RandomizedSearchCV(TabularRegressor(epochs=2, random_state=0),
                                {"hidden_units": [(4,), (8,)], "learning_rate": [0.01, 0.001]},
                                n_iter=2, cv=2, random_state=0, n_jobs=1)
    search.fit(x, y)
    assert len(search.cv_results_["params"]) == 2
    assert search.best_estimator_.hidden_units in ((4,), (8,))


# -- bad input -------------------------------------------------------------------------------


@pytest.mark.parametrize("estimator_class", ESTIMATORS)
def test_predict_before_fit_is_not_fitted_error(estimator_class):
    x, _ = _numbers()
    with pytest.raises(NotFittedError):
        estimator_class().predict(x)


def test_x_and_y_of_different_lengths_are_refused():
    x, y = _numbers()
    with pytest.raises(ValueError, match="inconsistent numbers of samples"):
        TabularRegressor(**SMALL).fit(x, y[:-5])
    frame, labels = _raw_table()
    with pytest.raises(ValueError, match="inconsistent numbers of samples"):
        TabularClassifier(**SMALL).fit(frame, labels[:10])


def test_one_class_is_refused_naming_y():
    x, _ = _numbers()
    with pytest.raises(ValueError, match=r"`y` holds one class.*Received: y with the single "
                                         r"class \['a'\]"):
        TabularClassifier(**SMALL).fit(x, ["a"] * len(x))


def test_continuous_labels_are_refused():
    x, y = _numbers()
    with pytest.raises(ValueError, match="Unknown label type"):
        TabularClassifier(**SMALL).fit(x, y)


def test_wrong_columns_at_predict_are_refused():
    frame, labels = _raw_table()
    model = TabularClassifier(**SMALL).fit(frame, labels)
    with pytest.raises(ValueError, match="feature names"):
        model.predict(frame.rename(columns={"colour": "color"}))
    with pytest.raises(ValueError, match="feature names"):
        model.predict(frame.drop(columns="colour"))
    x, y = _numbers()
    regressor = TabularRegressor(**SMALL).fit(x, y)
    with pytest.raises(ValueError, match="X has 2 features, but TabularRegressor is expecting 3"):
        regressor.predict(x[:, :2])


def test_bad_sample_weight_and_class_weight_are_named():
    x, y = _numbers()
    with pytest.raises(ValueError, match="sample_weight"):
        TabularRegressor(**SMALL).fit(x, y, sample_weight=np.ones(5))
    labels = np.where(y > 3, "a", "b")
    with pytest.raises(ValueError, match=r"`class_weight` names labels.*'c'"):
        TabularClassifier(**SMALL, class_weight={"c": 1.0}).fit(x, labels)
    with pytest.raises(ValueError, match=r"`positive_label`.*Received: positive_label='c'"):
        TabularClassifier(**SMALL, positive_label="c").fit(x, labels)
