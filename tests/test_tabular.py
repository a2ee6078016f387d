"""TabularModel and load_model: raw rows in, labels or units out; one-file save and load.

Run under both backends: KERAS_BACKEND=jax and KERAS_BACKEND=tensorflow.
"""

from __future__ import annotations

import json
import os
import warnings
import zipfile

import keras
import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sklearn.metrics import log_loss, roc_auc_score

from dlstructured import (
    TabularModel,
    binary_classifier,
    dense_stack,
    load_model,
    multiclass_classifier,
    prepare,
)
from dlstructured.data.preprocessing import FORMAT_VERSION
from dlstructured.errors import (
    DataError,
    DataWarning,
    ExtraColumnsWarning,
    IncompatibleModelError,
    ModelFileError,
)


def fit_network(model, data, epochs=3, loss="mae"):
    """Train the network inside a TabularModel with plain Keras (the trainer lands later)."""
    model.network.compile(optimizer=keras.optimizers.Adam(0.01), loss=loss)
    model.network.fit(data.x_train, data.y_train, epochs=epochs, batch_size=32, verbose=0)
    return model


def regression_frame(rows=60, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.uniform(0.0, 10.0, rows)
    color = rng.choice(["red", "white"], rows)
    return pd.DataFrame(
        {"x": x, "color": color, "price": 100.0 + 20.0 * x + np.where(color == "red", 50.0, 0.0)}
    )


def classification_frame(rows=80, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=rows)
    city = rng.choice([f"city {k}" for k in range(30)], rows)
    when = pd.Timestamp("2024-01-01") + pd.to_timedelta(rng.integers(0, 400, rows), unit="D")
    return pd.DataFrame(
        {
            "x": np.where(rng.random(rows) < 0.1, np.nan, x),
            "city": city,
            "when": when,
            "label": np.where(x > 0, "good", "bad"),
            "kind": rng.choice(["a", "b", "c"], rows),
        }
    )


@pytest.fixture(scope="module")
def regression():
    frame = regression_frame()
    data = prepare(frame, "price")
    model = fit_network(dense_stack(data, hidden_units=(16,), seed=0), data, epochs=30)
    return frame, data, model


@pytest.fixture(scope="module")
def binary():
    frame = classification_frame().drop(columns="kind")
    data = prepare(frame, "label", max_one_hot=10)
    # untrained: these tests check the plumbing, not the learning (fitting compiles, slowly)
    return frame, data, binary_classifier(data, hidden_units=(8,), seed=0)


@pytest.fixture(scope="module")
def multiclass():
    frame = classification_frame(seed=1).drop(columns="label")
    data = prepare(frame, "kind", max_one_hot=10)
    return frame, data, multiclass_classifier(data, hidden_units=(8,), seed=0)


def test_regression_predicts_in_original_units(regression):
    frame, data, model = regression
    assert isinstance(model, TabularModel) and isinstance(model, keras.Model)
    assert model.task == "regression" and model.classes is None
    predictions = model.predict(frame)
    assert predictions.dtype == np.float64 and predictions.shape == (len(frame),)
    # trained on targets scaled to [0, 1]; predictions come back in the price's own range
    assert 80.0 < predictions.mean() < 350.0
    # the same numbers as running the network on the prepared rows and unscaling by hand
    network_out = model.network.predict_on_batch(data.x_valid)[:, 0].astype(np.float64)
    scale = data.target_unit_scale
    expected = network_out * scale + frame["price"].loc[data.train_index].min()
    np.testing.assert_allclose(model.predict(frame.loc[data.valid_index]), expected, rtol=1e-5)


def test_one_row_predicts_what_the_same_row_gets_in_a_batch(regression):
    # On JAX one row runs unpadded and 2-16 rows in a padded batch: two compiled shapes.
    frame, _, model = regression
    batched = model.predict(frame.iloc[:5])
    alone = [model.predict(frame.iloc[[i]])[0] for i in range(5)]
    np.testing.assert_allclose(alone, batched, rtol=1e-5)
    assert model.predict(frame.iloc[0].to_dict()).shape == (1,)


def test_regression_evaluate_reports_original_units(regression):
    frame, data, model = regression
    valid = frame.loc[data.valid_index]
    metrics = model.evaluate(valid)
    assert set(metrics) == {"mae", "mse", "rmse"}
    error = model.predict(valid) - valid["price"].to_numpy()
    assert metrics["mae"] == pytest.approx(np.abs(error).mean(), rel=1e-5)
    assert metrics["rmse"] == pytest.approx(np.sqrt((error**2).mean()), rel=1e-5)
    # the MAE the network sees on the scaled target, times target_unit_scale, is the same number
    scaled = model.network.predict_on_batch(data.x_valid)[:, 0]
    assert np.abs(scaled - data.y_valid).mean() * data.target_unit_scale == pytest.approx(
        metrics["mae"], rel=1e-4
    )


def test_binary_labels_probabilities_and_threshold(binary):
    frame, data, model = binary
    labels = model.predict(frame)
    assert set(labels) <= {"bad", "good"} and len(labels) == len(frame)
    proba = model.predict_proba(frame)
    assert list(proba.columns) == ["bad", "good"] and proba.index.equals(frame.index)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-6)
    np.testing.assert_array_equal(labels, np.where(proba["good"] >= 0.5, "good", "bad"))
    model.threshold = 0.0
    assert set(model.predict(frame)) == {"good"}
    model.threshold = 1.0
    assert (model.predict(frame) == np.where(proba["good"] >= 1.0, "good", "bad")).all()
    model.threshold = 0.5
    with pytest.raises(ValueError, match=r"`threshold` must be in \[0, 1\]"):
        model.threshold = 1.5
    metrics = model.evaluate(frame)
    assert set(metrics) == {"accuracy", "auc", "log_loss"}
    assert metrics["accuracy"] == pytest.approx(np.mean(labels == frame["label"].to_numpy()))
    # checked against scikit-learn's own formulas, from the probabilities predicted above
    truth = (frame["label"] == "good").to_numpy()
    assert metrics["auc"] == pytest.approx(roc_auc_score(truth, proba["good"]), abs=1e-9)
    assert metrics["log_loss"] == pytest.approx(log_loss(truth, proba["good"]), rel=1e-5)


def test_multiclass_labels_and_probabilities(multiclass):
    frame, data, model = multiclass
    assert data.embeddings  # the wide "city" column is embedded
    labels = model.predict(frame)
    proba = model.predict_proba(frame)
    assert list(proba.columns) == ["a", "b", "c"]
    np.testing.assert_array_equal(labels, proba.columns.to_numpy()[proba.to_numpy().argmax(1)])
    metrics = model.evaluate(frame)
    assert set(metrics) == {"accuracy", "log_loss"}
    assert metrics["accuracy"] == pytest.approx(np.mean(labels == frame["kind"].to_numpy()))
    # float32 rows sum to 1 only within rounding, which scikit-learn warns about
    probabilities = proba.to_numpy(np.float64, copy=True)
    probabilities /= probabilities.sum(axis=1, keepdims=True)
    assert metrics["log_loss"] == pytest.approx(
        log_loss(frame["kind"], probabilities, labels=list(proba.columns)), rel=1e-5
    )


def test_raw_rows_in_any_order_with_extra_columns(binary):
    frame, _, model = binary
    expected = model.predict_proba(frame)
    shuffled = frame[["when", "city", "label", "x"]].assign(note="ignored")
    with pytest.warns(ExtraColumnsWarning, match="'note'"):
        got = model.predict_proba(shuffled)
    pd.testing.assert_frame_equal(got, expected)
    one_row = frame.iloc[3].to_dict()
    assert model.predict(one_row)[0] == model.predict(frame.iloc[[3]])[0]
    assert model.predict([one_row, one_row]).shape == (2,)


def test_prediction_input_errors(binary, regression):
    frame, _, model = binary
    with pytest.raises(DataError, match=r"missing 2 column\(s\).*'x', 'when'"):
        model.predict(frame.drop(columns=["x", "when"]))
    with pytest.raises(DataError, match="Column 'x' must hold numbers"):
        model.predict(frame.assign(x="high"))
    with pytest.raises(DataError, match="infinite values: 'x'"):
        model.predict(frame.assign(x=np.inf))
    with pytest.raises(TypeError, match="must be a pandas DataFrame of raw rows"):
        model.predict(np.zeros((2, 3)))
    with pytest.raises(DataError, match="needs the target column 'label'"):
        model.evaluate(frame.drop(columns="label"))
    with pytest.raises(TypeError, match="`predict_proba` applies to classifiers"):
        regression[2].predict_proba(regression[0])


def test_unseen_categories_and_missing_values_predict(binary):
    frame, _, model = binary
    odd = frame.iloc[:3].assign(city=["Atlantis", None, "city 1"], x=[np.nan, 0.5, np.nan])
    odd.loc[odd.index[0], "when"] = pd.NaT
    assert model.predict_proba(odd).notna().all().all()


def test_empty_input_gives_empty_output(regression):
    frame, _, model = regression
    assert model.predict(frame.iloc[:0]).shape == (0,)


def test_compile_is_refused(regression):
    with pytest.raises(TypeError, match="Do not compile a TabularModel"):
        regression[2].compile(optimizer="adam", loss="mae")


# -- saving and loading -------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["regression", "binary", "multiclass"])
def test_save_and_load_give_identical_predictions(kind, request, tmp_path):
    frame, _, model = request.getfixturevalue(kind)
    if kind == "binary":
        model.threshold = 0.3
    path = tmp_path / f"{kind}.keras"
    model.save(path)
    assert sorted(os.listdir(tmp_path)) == [f"{kind}.keras"]  # no temporary file left over
    for loaded in (load_model(path), keras.saving.load_model(path)):  # safe mode is the default
        assert isinstance(loaded, TabularModel)
        assert loaded.task == model.task and loaded.threshold == model.threshold
        np.testing.assert_array_equal(loaded.predict(frame), model.predict(frame))
        if kind != "regression":
            pd.testing.assert_frame_equal(loaded.predict_proba(frame), model.predict_proba(frame))
    model.threshold = 0.5


@pytest.mark.slow  # a fresh interpreter importing Keras: 10-20 s
def test_plain_keras_loading_after_importing_keras_then_dlstructured(regression, tmp_path):
    import subprocess
    import sys

    frame, _, model = regression
    model.save(tmp_path / "model.keras")
    frame.to_csv(tmp_path / "rows.csv", index=False)
    code = (
        "import keras, dlstructured, pandas as pd, numpy as np, sys;"
        f"m = keras.saving.load_model({str(tmp_path / 'model.keras')!r});"
        f"np.save(sys.argv[1], m.predict(pd.read_csv({str(tmp_path / 'rows.csv')!r})))"
    )
    out = tmp_path / "predictions.npy"
    result = subprocess.run([sys.executable, "-c", code, str(out)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    expected = model.predict(pd.read_csv(tmp_path / "rows.csv"))
    np.testing.assert_allclose(np.load(out), expected, rtol=1e-6)


def test_save_is_atomic(regression, tmp_path, monkeypatch):
    _, _, model = regression
    path = tmp_path / "model.keras"
    model.save(path)
    before = path.read_bytes()

    def crash(self, filepath, *args, **kwargs):
        with open(filepath, "wb") as handle:
            handle.write(b"half a file")
        raise OSError("disk full")

    monkeypatch.setattr(keras.Model, "save", crash)
    with pytest.raises(OSError, match="disk full"):
        model.save(path)
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["model.keras"]


def test_save_needs_a_keras_path(regression, tmp_path):
    with pytest.raises(ValueError, match="`filepath` must end in .keras"):
        regression[2].save(tmp_path / "model.h5")
    regression[2].save(tmp_path / "model.keras")
    with pytest.raises(FileExistsError):
        regression[2].save(tmp_path / "model.keras", overwrite=False)


def test_load_model_file_errors(regression, tmp_path):
    with pytest.raises(ModelFileError, match="No model file at .*absent.keras"):
        load_model(tmp_path / "absent.keras")
    (tmp_path / "empty.keras").write_bytes(b"")
    with pytest.raises(ModelFileError, match="empty.keras.*is empty"):
        load_model(tmp_path / "empty.keras")
    (tmp_path / "text.keras").write_text("hello")
    with pytest.raises(ModelFileError, match="text.keras.*not a readable .keras"):
        load_model(tmp_path / "text.keras")
    regression[2].save(tmp_path / "good.keras")
    data = (tmp_path / "good.keras").read_bytes()
    (tmp_path / "cut.keras").write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelFileError, match="cut.keras"):
        load_model(tmp_path / "cut.keras")
    with pytest.raises(TypeError, match="`path` must be a file path"):
        load_model(3)


def rewrite_config(source, target, change):
    with zipfile.ZipFile(source) as archive:
        parts = {name: archive.read(name) for name in archive.namelist()}
    config = json.loads(parts["config.json"])
    change(config)
    parts["config.json"] = json.dumps(config).encode()
    with zipfile.ZipFile(target, "w") as archive:
        for name, content in parts.items():
            archive.writestr(name, content)


def test_incompatible_format_version_names_both(regression, tmp_path):
    regression[2].save(tmp_path / "good.keras")

    def bump(config):
        config["config"]["preprocessor"]["format_version"] = 99

    rewrite_config(tmp_path / "good.keras", tmp_path / "future.keras", bump)
    with pytest.raises(
        IncompatibleModelError, match=f"version 99.*format version {FORMAT_VERSION}"
    ):
        load_model(tmp_path / "future.keras")
    with pytest.raises(Exception, match="version 99"):  # Keras wraps it, but keeps the message
        keras.saving.load_model(tmp_path / "future.keras")


def test_foreign_model_class_is_refused(regression, tmp_path):
    regression[2].save(tmp_path / "good.keras")

    def foreign(config):
        config["module"] = "somebody.models"
        config["registered_name"] = "somebody>Model"

    rewrite_config(tmp_path / "good.keras", tmp_path / "foreign.keras", foreign)
    with pytest.raises(ModelFileError, match="neither a dlstructured model nor a plain Keras"):
        load_model(tmp_path / "foreign.keras")


def test_plain_keras_model_loads_as_is(tmp_path):
    network = dense_stack(3, hidden_units=(4,), seed=0)
    network.save(tmp_path / "plain.keras")
    loaded = load_model(tmp_path / "plain.keras")
    assert type(loaded) is type(network)
    x = np.ones((2, 3), np.float32)
    np.testing.assert_array_equal(loaded.predict_on_batch(x), network.predict_on_batch(x))


def test_wrapper_checks_its_parts(regression):
    _, data, model = regression
    with pytest.raises(TypeError, match="`network` must be a Keras model"):
        TabularModel("net", data.preprocessor)
    with pytest.raises(ValueError, match="takes 5 input features but the preprocessing produces"):
        TabularModel(dense_stack(5, hidden_units=(2,)), data.preprocessor)


# -- property test: a few tiny trained models ---------------------------------------------------


@st.composite
def small_frames(draw):
    rows = draw(st.integers(4, 60))
    numbers = st.one_of(st.floats(-1e6, 1e6), st.just(float("nan")))
    frame = pd.DataFrame(
        {
            "n": draw(st.lists(numbers, min_size=rows, max_size=rows)),
            "c": pd.Series(
                draw(
                    st.lists(
                        st.sampled_from(["ä", "b", "ç", None, "日"]), min_size=rows, max_size=rows
                    )
                ),
                dtype="str",
            ),
            "flag": draw(st.lists(st.booleans(), min_size=rows, max_size=rows)),
        }
    )
    target = draw(st.sampled_from(["number", "labels"]))
    if target == "number":
        frame["y"] = draw(st.lists(st.floats(-1e9, 1e9), min_size=rows, max_size=rows))
    else:
        frame["y"] = draw(st.lists(st.sampled_from(["x", "y", "z"]), min_size=rows, max_size=rows))
    return frame


BUILDERS = {
    "regression": dense_stack,
    "binary": binary_classifier,
    "multiclass": multiclass_classifier,
}
LOSSES = {
    "regression": "mae",
    "binary": "binary_crossentropy",
    "multiclass": "sparse_categorical_crossentropy",
}


@settings(max_examples=3, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(frame=small_frames())
def test_tiny_models_predict_finite_values_for_every_row(frame):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataWarning)
        try:
            data = prepare(frame, "y", valid_fraction=0)
        except (ValueError, TypeError):
            return
    model = BUILDERS[data.task](data, hidden_units=(4,), seed=0)
    fit_network(model, data, epochs=1, loss=LOSSES[data.task])
    predictions = model.predict(frame)
    assert len(predictions) == len(frame)
    if data.task == "regression":
        assert np.isfinite(predictions).all()
    else:
        assert set(predictions) <= set(data.classes)
        assert np.isfinite(model.predict_proba(frame).to_numpy()).all()
