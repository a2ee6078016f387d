"""The ensemble MLP (TabM-mini with RealMLP's parts) and the options it needs in prepare/train."""

from __future__ import annotations

import math
import random

import keras
import numpy as np
import pandas as pd
import pytest

import dlstructured as dl
from dlstructured.data.preprocessing import TabularPreprocessor
from dlstructured.models.ensemble_layers import (
    FeatureScale,
    LogCosineRestarts,
    MemberAdapter,
    MemberHeads,
    MemberMeanLoss,
    MemberMeanMetric,
    NTKDense,
    PeriodicEmbedding,
)
from dlstructured.training.loop import _make_optimizer

ENGINES = ["keras"] + (["jax"] if keras.backend.backend() == "jax" else [])


def _sine_data(rng, rows=512):
    x = rng.uniform(-2, 2, (rows, 1)).astype("float32")
    return x, (np.sin(x[:, 0]) + x[:, 0] ** 2).astype("float32")


def _frame(rng, rows=120):
    return pd.DataFrame(
        {
            "a": rng.normal(size=rows),
            "flag": rng.choice([3.0, 7.0], rows),
            "color": rng.choice(["red", "blue", "green"], rows),
            "y": rng.normal(size=rows) * 10 + 50,
        }
    )


# ---------------------------------------------------------------------------------- builder


def test_builder_layer_names_parameter_count_and_uncompiled():
    f, h1, h2, k = 8, 16, 12, 4
    model = dl.ensemble_mlp(f, hidden_units=(h1, h2), members=k, seed=0)
    assert [layer.name for layer in model.layers] == [
        "features", "feature_scale", "member_adapter", "block_1_dense", "block_2_dense", "output",
    ]
    expected = f + k * f + (f * h1 + h1) + (h1 * h2 + h2) + k * (h2 * 1 + 1)
    assert model.count_params() == expected
    # The periodic embedding: per feature 16 frequencies and phases, a 16x3 mixing map and 3
    # biases; each feature then reaches the rest as 1 + 3 numbers.
    periodic = dl.ensemble_mlp(f, hidden_units=(h1, h2), members=k, periodic_embedding=True,
                               seed=0)
    assert [layer.name for layer in periodic.layers][1] == "periodic_embedding"
    e = 4 * f
    assert periodic.count_params() == (f * (16 + 16 + 16 * 3 + 3) + e + k * e + (e * h1 + h1)
                                       + (h1 * h2 + h2) + k * (h2 + 1))
    assert model.output_shape == (None, k, 1)
    assert not model.compiled


def test_builder_dropout_and_multiclass_heads():
    model = dl.ensemble_mlp(
        5, task="multiclass", num_classes=3, hidden_units=(8,), members=2, dropout_rate=0.1
    )
    assert [layer.name for layer in model.layers][-2:] == ["block_1_dropout", "output"]
    assert model.output_shape == (None, 2, 3)
    with pytest.raises(ValueError, match="num_classes"):
        dl.ensemble_mlp(5, task="multiclass")
    with pytest.raises(ValueError, match="members"):
        dl.ensemble_mlp(5, members=0)


def test_builder_with_prepared_data_returns_a_tabular_model(rng):
    data = dl.prepare(_frame(rng), "y", seed=0)
    model = dl.ensemble_mlp(data, hidden_units=(8,), members=3, seed=0)
    assert isinstance(model, dl.TabularModel)
    assert model.network.input_shape == (None, data.num_features)
    assert model.predict(_frame(rng).head(4)).shape == (4,)


# ------------------------------------------------------------------------------- layer math


def test_layers_match_numpy(rng):
    x = rng.normal(size=(5, 3)).astype("float32")
    scale = FeatureScale(rate_factor=6.0)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(scale(x)), x, rtol=1e-6)
    scale.stored_scale.assign(np.array([1.0, 2.0, -0.5], "float32") / 6.0)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(scale(x)), x * [1.0, 2.0, -0.5])

    adapter = MemberAdapter(4, seed=1)
    out = keras.ops.convert_to_numpy(adapter(x))
    r = keras.ops.convert_to_numpy(adapter.adapter)
    assert set(np.unique(r)) <= {-1.0, 1.0}
    np.testing.assert_allclose(out, x[:, None, :] * r[None], rtol=1e-6)

    dense = NTKDense(6, activation="selu", seed=2)
    y = keras.ops.convert_to_numpy(dense(out))
    w, b = (keras.ops.convert_to_numpy(v) for v in (dense.kernel, dense.bias))
    stored = keras.ops.convert_to_numpy(dense.stored_bias)
    np.testing.assert_allclose(b, 0.1 * stored, rtol=1e-6)  # learns at a tenth of W's pace
    z = out @ w / math.sqrt(3) + b
    selu = 1.0507009873554805 * np.where(z > 0, z, 1.6732632423543772 * (np.exp(z) - 1))
    np.testing.assert_allclose(y, selu, rtol=1e-5, atol=1e-6)
    assert abs(np.std(w) - 1.0) < 0.4  # standard normal weights, scaled in the forward pass

    heads = MemberHeads(2, activation="softmax")
    first = keras.ops.convert_to_numpy(heads(y))
    np.testing.assert_allclose(first, 0.5)  # zero-initialised: every member starts equal
    kernel = rng.normal(size=(4, 6, 2)).astype("float32")
    bias = rng.normal(size=(4, 2)).astype("float32")
    heads.kernel.assign(kernel)
    heads.bias.assign(bias)
    logits = np.einsum("bmd,mdu->bmu", y, kernel) / math.sqrt(6) + bias
    expected = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(heads(y)), expected, rtol=1e-5)


def test_host_initializers_draw_their_distributions_and_repeat_their_seeds():
    from dlstructured.models.initializers import HostInitializer

    normal = HostInitializer("normal", seed=3, stddev=2.0)((200, 100))
    assert normal.dtype == np.float32 and abs(normal.mean()) < 0.05
    assert normal.std() == pytest.approx(2.0, rel=0.02)
    uniform = HostInitializer("uniform", seed=3, low=-1.0, high=3.0)((20_000,))
    assert uniform.min() >= -1.0 and uniform.max() < 3.0
    assert uniform.mean() == pytest.approx(1.0, abs=0.05)
    signs = HostInitializer("signs", seed=3)((20_000,))
    assert set(np.unique(signs)) == {-1.0, 1.0} and abs(signs.mean()) < 0.05
    np.testing.assert_array_equal(HostInitializer("normal", seed=3, stddev=2.0)((200, 100)), normal)
    assert not np.array_equal(HostInitializer("normal", seed=4, stddev=2.0)((200, 100)), normal)
    # Unseeded draws follow Python's `random`, which keras.utils.set_random_seed seeds.
    draws = []
    for _ in range(2):
        keras.utils.set_random_seed(11)
        draws.append(HostInitializer("uniform", low=0.0, high=1.0)((5,)))
    np.testing.assert_array_equal(*draws)
    state = random.getstate()
    HostInitializer("constant", value=0.0)
    assert random.getstate() == state  # a constant leaves Python's `random` alone
    with pytest.raises(ValueError, match=r"Received: distribution='gamma'"):
        HostInitializer("gamma")
    with pytest.raises(ValueError, match=r"Received: \['stddev'\]"):
        HostInitializer("uniform", stddev=1.0)


@pytest.mark.skipif(keras.backend.backend() != "jax", reason="counts JAX compilations")
def test_building_the_ensemble_compiles_no_random_draws(caplog):
    import jax

    data = dl.prepare(_frame(np.random.default_rng(0)), target="y", max_one_hot=2)
    assert data.embeddings
    with jax.log_compiles(), caplog.at_level("WARNING"):
        dl.ensemble_mlp(data, hidden_units=(8, 8), members=2, periodic_embedding=True, seed=0)
    programs = [r.getMessage() for r in caplog.records if r.getMessage().startswith("Compiling")]
    assert not [p for p in programs if "_uniform" in p or "_normal" in p or "broadcast" in p]


def test_member_mean_loss_and_metric_match_numpy():
    y_true = np.array([1.0, 0.0, 1.0], "float32")
    y_pred = np.array([[[0.9], [0.6]], [[0.2], [0.4]], [[0.3], [0.7]]], "float32")
    mae = float(MemberMeanLoss("mae")(y_true, y_pred))
    assert mae == pytest.approx(np.abs(y_pred[..., 0] - y_true[:, None]).mean(), rel=1e-6)
    smooth = 0.1
    target = y_true * (1 - smooth) + 0.5 * smooth
    p = y_pred[..., 0]
    bce = -(target[:, None] * np.log(p) + (1 - target[:, None]) * np.log(1 - p)).mean()
    loss = MemberMeanLoss("binary_crossentropy", label_smoothing=smooth)
    assert float(loss(y_true, y_pred)) == pytest.approx(bce, rel=1e-5)

    codes = np.array([2, 0], "int32")
    probs = np.array([[[0.1, 0.2, 0.7], [0.3, 0.3, 0.4]], [[0.5, 0.25, 0.25], [0.6, 0.2, 0.2]]])
    onehot = np.eye(3)[codes] * (1 - smooth) + smooth / 3
    cce = -(onehot[:, None, :] * np.log(probs)).sum(-1).mean()
    loss = MemberMeanLoss("sparse_categorical_crossentropy", label_smoothing=smooth)
    assert float(loss(codes, probs.astype("float32"))) == pytest.approx(cce, rel=1e-5)

    metric = MemberMeanMetric(keras.metrics.MeanAbsoluteError(name="mae"))
    metric.update_state(y_true, y_pred)
    assert metric.name == "mae"
    assert float(metric.result()) == pytest.approx(
        np.abs(y_pred[..., 0].mean(1) - y_true).mean(), rel=1e-6
    )
    with pytest.raises(ValueError, match="label_smoothing"):
        MemberMeanLoss("mae", label_smoothing=0.1)


def test_schedule_values_at_chosen_steps():
    schedule = LogCosineRestarts(0.2, total_steps=150, cycles=4)
    # Restarts where log2(1 + 15 p) is whole: p = 1/15, 3/15, 7/15 and the end.
    for step in (0, 10, 30, 70, 150, 400):
        assert float(schedule(step)) == pytest.approx(0.0, abs=1e-6)
    # Peaks half-way through each cycle on the log axis: log2(1 + 15 p) = 0.5, 1.5 ...
    for phase in (0.5, 1.5, 2.5, 3.5):
        step = (2**phase - 1) / 15 * 150
        assert float(schedule(step)) == pytest.approx(0.2, rel=1e-4)
    restored = LogCosineRestarts.from_config(schedule.get_config())
    assert float(restored(37)) == pytest.approx(float(schedule(37)))


# ----------------------------------------------------------------------- saving and training


def test_periodic_embedding_matches_numpy(rng):
    x = rng.normal(size=(5, 3)).astype("float32")
    layer = PeriodicEmbedding(frequencies=4, units=2, rate_factor=0.1, seed=0)
    out = keras.ops.convert_to_numpy(layer(x))
    assert out.shape == (5, 3 * (1 + 2))
    w, b, m, c = (0.1 * keras.ops.convert_to_numpy(v) for v in
                  (layer.frequency, layer.phase, layer.mixing, layer.mixing_bias))
    assert abs(np.std(w) - 0.1) < 0.08  # sigma, though stored ten times larger
    waves = np.cos(2 * math.pi * (x[..., None] * w + b))
    mixed = np.einsum("bfk,fku->bfu", waves, m) + c
    expected = np.concatenate([x[..., None], mixed], axis=-1).reshape(5, -1)
    np.testing.assert_allclose(out, expected, rtol=1e-4, atol=1e-5)
    assert PeriodicEmbedding.from_config(layer.get_config()).get_config() == layer.get_config()


@pytest.mark.parametrize("periodic", [False, True])
def test_save_load_round_trip_in_safe_mode_gives_identical_predictions(rng, tmp_path, periodic):
    data = dl.prepare(_frame(rng), "y", scaling="robust", target_scaling="standard",
                      clip_target=True, seed=0)
    model = dl.ensemble_mlp(data, hidden_units=(8, 8), members=3, dropout_rate=0.1,
                            periodic_embedding=periodic, seed=0)
    dl.train(model, data, epochs=5, seed=0, learning_rate_schedule="log_cosine",
             early_stopping=False)
    path = tmp_path / "ensemble.keras"
    model.save(path)
    loaded = dl.load_model(path)  # checks the file, then loads with Keras safe mode on
    rows = _frame(np.random.default_rng(1), rows=30)
    np.testing.assert_array_equal(loaded.predict(rows), model.predict(rows))
    members = model.network.predict(model.preprocessor.transform(rows), verbose=0)[..., 0]
    assert members.std(axis=1).min() > 0  # trained members differ; predict gives their mean
    mean = model.preprocessor.inverse_transform_target(members.mean(axis=1))
    np.testing.assert_allclose(model.predict(rows), mean, rtol=1e-5)
    assert loaded.preprocessor.get_config() == model.preprocessor.get_config()
    assert loaded.preprocessor.clip_target and loaded.preprocessor.scaling == "robust"


@pytest.mark.parametrize("engine", ENGINES)
def test_training_learns_sine_plus_square_better_than_a_linear_unit(engine, rng):
    x, y = _sine_data(rng)
    options = dict(epochs=40, valid_fraction=0.25, seed=0, engine=engine, early_stopping=False)
    linear = dl.train(dl.linear_unit(1, seed=0), x, y, learning_rate=0.05, **options)
    model = dl.ensemble_mlp(1, hidden_units=(32, 32), members=4, seed=0)
    result = dl.train(model, x, y, learning_rate=0.02, learning_rate_schedule="log_cosine",
                      adam_beta_2=0.95, **options)
    assert result.engine == engine
    assert list(result.history.columns) == ["loss", "mae", "val_loss", "val_mae"]
    assert result.final_metrics["val_mae"] < 0.25 < linear.final_metrics["val_mae"]
    mean = model.predict(x[:8], verbose=0).mean(axis=1)[:, 0]
    assert np.abs(mean - y[:8]).mean() < 0.4


@pytest.mark.parametrize("engine", ENGINES)
def test_members_train_on_their_own_losses(engine, rng):
    """The loss is the members' mean loss, above the MAE of their mean prediction."""
    x, y = _sine_data(rng, rows=256)
    model = dl.ensemble_mlp(1, hidden_units=(16,), members=4, seed=0)
    result = dl.train(model, x, y, epochs=3, learning_rate=0.02, seed=0, engine=engine)
    members = model.predict(x, verbose=0)[..., 0]
    assert result.final_metrics["mae"] <= result.final_metrics["loss"] + 1e-6
    assert np.abs(members - y[:, None]).mean() > np.abs(members.mean(1) - y).mean()
    spread = members.std(axis=1).mean()
    assert spread > 1e-4  # the members differ


# ------------------------------------------------------------------------- train's options


def test_adam_beta_2_reaches_the_optimizer_and_default_is_kerass():
    assert _make_optimizer(None, 0.01, 0.95).beta_2 == 0.95
    default = _make_optimizer(None, 0.01).get_config()
    reference = keras.optimizers.Adam(learning_rate=0.01).get_config()
    assert {**default, "name": ""} == {**reference, "name": ""}
    with pytest.raises(ValueError, match="adam_beta_2"):
        _make_optimizer(None, 0.01, 1.5)


def _binary_data(rng, rows=200):
    x = rng.normal(size=(rows, 2)).astype("float32")
    return x, (x[:, 0] + x[:, 1] > 0).astype("float32")


def test_label_smoothing_keeps_probabilities_away_from_0_and_1(rng):
    x, y = _binary_data(rng)
    options = dict(epochs=60, learning_rate=0.05, seed=0, early_stopping=False)
    sharp = dl.binary_classifier(2, hidden_units=(16,), seed=0)
    dl.train(sharp, x, y, **options)
    smooth = dl.binary_classifier(2, hidden_units=(16,), seed=0)
    dl.train(smooth, x, y, label_smoothing=0.2, **options)
    def confidence(model):
        p = model.predict(x, verbose=0)[:, 0]
        return np.median(np.maximum(p, 1 - p))

    # Smoothed targets are 0.1 / 0.9: separable rows end near them, not at 0 / 1.
    assert 0.8 < confidence(smooth) < 0.93
    assert confidence(sharp) > 0.99
    with pytest.raises(ValueError, match="label_smoothing"):
        dl.train(dl.linear_unit(2), x, y, epochs=1, label_smoothing=0.1)


def test_best_epoch_follows_the_monitored_metric_not_the_loss(rng):
    """Trained on MSE, the epoch kept is the best by validation MAE when asked for."""
    x = rng.normal(size=(300, 3)).astype("float32")
    y = (x @ np.array([1.0, -2.0, 0.5])).astype("float32")
    y[rng.random(300) < 0.08] += 30  # outliers: MSE pulls towards them, MAE does not
    options = dict(loss="mse", epochs=40, learning_rate=0.05, valid_fraction=0.3, seed=0)
    by_loss = dl.train(dl.dense_stack(3, hidden_units=(32,), seed=0), x, y,
                       early_stopping=dl.EarlyStopping(patience=40, min_delta=0), **options)
    by_mae = dl.train(dl.dense_stack(3, hidden_units=(32,), seed=0), x, y,
                      early_stopping=dl.EarlyStopping(patience=40, min_delta=0,
                                                      monitor="val_mae"), **options)
    history = by_mae.history
    assert by_mae.best_epoch == int(history["val_mae"].idxmin())
    assert by_loss.best_epoch == int(by_loss.history["val_loss"].idxmin())
    assert by_mae.best_epoch != by_loss.best_epoch
    assert by_mae.best_metrics["val_mae"] < by_loss.best_metrics["val_mae"]


def test_unknown_schedule_and_ensemble_loss_are_refused(rng):
    x, y = _sine_data(rng, rows=32)
    with pytest.raises(ValueError, match="learning_rate_schedule"):
        dl.train(dl.linear_unit(1), x, y, epochs=1, learning_rate_schedule="cosine")
    with pytest.raises(ValueError, match="ensemble model trains with one of the losses"):
        dl.train(dl.ensemble_mlp(1, hidden_units=(4,)), x, y, epochs=1, loss="huber")


# --------------------------------------------------------------------- prepare's new options


def test_robust_scaling_smooth_clip_and_plus_minus_one_binary(rng):
    frame = _frame(rng, rows=101)
    pre = TabularPreprocessor("y", scaling="robust").fit(frame)
    features = pre.transform(frame)
    names = pre.feature_names
    a = frame["a"].to_numpy()
    q1, median, q3 = np.quantile(a, (0.25, 0.5, 0.75))
    scaled = (a - median) / (q3 - q1)
    expected = scaled / np.sqrt(1 + (scaled / 3) ** 2)
    np.testing.assert_allclose(features[:, names.index("a")], expected, rtol=1e-5, atol=1e-6)
    assert np.abs(features[:, names.index("a")]).max() < 3
    flag = features[:, names.index("flag")]
    np.testing.assert_array_equal(flag, np.where(frame["flag"] == 7.0, 1.0, -1.0))
    wild = frame.head(1).assign(a=1e9)
    assert pre.transform(wild)[0, names.index("a")] == pytest.approx(3.0, rel=1e-6)
    loaded = TabularPreprocessor.from_config(pre.get_config())
    np.testing.assert_array_equal(loaded.transform(frame), features)


def test_target_standardised_and_predictions_clipped_to_training_range(rng):
    frame = _frame(rng)
    pre = TabularPreprocessor("y", target_scaling="standard", clip_target=True).fit(frame)
    y = frame["y"].to_numpy()
    scaled = pre.transform_target(frame["y"])
    assert scaled.mean() == pytest.approx(0.0, abs=1e-5)
    assert scaled.std() == pytest.approx(1.0, rel=1e-4)
    back = pre.inverse_transform_target(np.array([-100.0, 0.0, 100.0]))
    assert back.tolist() == pytest.approx([y.min(), y.mean(), y.max()])
    loaded = TabularPreprocessor.from_config(pre.get_config())
    assert loaded.inverse_transform_target(np.array([100.0]))[0] == pytest.approx(y.max())


def test_defaults_are_unchanged_and_old_configs_still_load(rng):
    frame = _frame(rng)
    pre = TabularPreprocessor("y").fit(frame)
    config = pre.get_config()
    assert "clip_target" not in config  # configs written by default options are as before
    assert all("smooth_clip" not in entry for entry in config["state"]["numeric"])
    a = frame["a"].to_numpy()
    names = pre.feature_names
    np.testing.assert_allclose(
        pre.transform(frame)[:, names.index("a")], (a - a.min()) / (a.max() - a.min()),
        rtol=1e-5, atol=1e-7,
    )
    far = pre.inverse_transform_target(np.array([5.0]))[0]
    assert far > frame["y"].max()  # not clipped by default
    old = dict(config)
    loaded = TabularPreprocessor.from_config(old)
    assert loaded.clip_target is False
    np.testing.assert_array_equal(loaded.transform(frame), pre.transform(frame))
