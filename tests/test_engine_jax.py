"""The JAX engine against plain Keras ``fit``: same numbers, same callback protocol.

Runs on the JAX backend only (the engine needs it); skipped on the others.
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

keras = pytest.importorskip("keras")
if keras.backend.backend() != "jax":
    pytest.skip("the JAX engine needs KERAS_BACKEND=jax", allow_module_level=True)

from dlstructured import binary_classifier, dense_stack  # noqa: E402
from dlstructured.training import _engine_jax  # noqa: E402
from dlstructured.training.contract import ArraySource, FitSpec  # noqa: E402

ROWS, FEATURES, BATCH = 70, 5, 16  # 4 full batches and a partial one of 6 rows
RTOL, ATOL = 1e-4, 1e-5


def _data(seed=0, rows=ROWS, features=FEATURES):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(rows, features)).astype(np.float32)
    y = (x @ rng.normal(size=features) + 0.3 * x[:, 0] ** 2).astype(np.float32)
    return x, y


def _regression_network():
    """Batch norm on the inputs and in a hidden block, and an L2 penalty on one kernel."""
    glorot = keras.initializers.GlorotUniform
    inputs = keras.Input(shape=(FEATURES,), name="features")
    x = keras.layers.BatchNormalization(name="input_batch_norm")(inputs)
    x = keras.layers.Dense(
        8,
        activation="relu",
        kernel_regularizer=keras.regularizers.L2(0.05),
        kernel_initializer=glorot(seed=4),
        name="block_1_dense",
    )(x)
    x = keras.layers.BatchNormalization(name="block_1_batch_norm")(x)
    x = keras.layers.Dense(
        8, activation="relu", kernel_initializer=glorot(seed=5), name="block_2_dense"
    )(x)
    outputs = keras.layers.Dense(1, kernel_initializer=glorot(seed=6), name="output")(x)
    return keras.Model(inputs, outputs)


def _regression_setup():
    x, y = _data(0)
    x_valid, y_valid = _data(1, rows=30)
    return {
        "build": _regression_network,
        "x": x,
        "y": y,
        "valid": (x_valid, y_valid),
        "loss": keras.losses.MeanAbsoluteError,
        "metrics": lambda: [keras.metrics.MeanAbsoluteError(name="mae")],
    }


def _binary_setup():
    x, y = _data(2)
    x_valid, y_valid = _data(3, rows=30)
    return {
        "build": lambda: binary_classifier(FEATURES, hidden_units=(8,), seed=2),
        "x": x,
        "y": (y > np.median(y)).astype(np.float32),
        "valid": (x_valid, (y_valid > np.median(y)).astype(np.float32)),
        "loss": keras.losses.BinaryCrossentropy,
        "metrics": lambda: [
            keras.metrics.BinaryAccuracy(name="binary_accuracy"),
            keras.metrics.AUC(name="auc"),
        ],
    }


def _multiclass_setup():
    from dlstructured import multiclass_classifier

    x, y = _data(4)
    x_valid, y_valid = _data(5, rows=30)
    edges = np.quantile(y, [1 / 3, 2 / 3])
    return {
        "build": lambda: multiclass_classifier(FEATURES, num_classes=3, hidden_units=(8,), seed=3),
        "x": x,
        "y": np.digitize(y, edges).astype(np.int32),
        "valid": (x_valid, np.digitize(y_valid, edges).astype(np.int32)),
        "loss": keras.losses.SparseCategoricalCrossentropy,
        "metrics": lambda: [keras.metrics.SparseCategoricalAccuracy(name="accuracy")],
    }


SETUPS = {"binary": _binary_setup, "multiclass": _multiclass_setup}


class _Recorder(keras.callbacks.Callback):
    """Records the logs and the model's weights at every epoch end."""

    def __init__(self):
        super().__init__()
        self.logs, self.weights, self.trainable, self.learning_rates = [], [], [], []

    def on_epoch_end(self, epoch, logs=None):
        self.logs.append(dict(logs))
        self.weights.append([np.array(w) for w in self.model.get_weights()])
        self.trainable.append([v.numpy() for v in self.model.trainable_variables])
        self.learning_rates.append(
            float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))
        )


def _engine_fit(
    network,
    x,
    y,
    *,
    loss,
    metrics,
    valid=None,
    sample_weight=None,
    valid_weight=None,
    epochs=3,
    initial_epoch=0,
    seed=None,
    optimizer=None,
    callbacks=(),
    batch_size=BATCH,
    learning_rate=0.01,
):
    recorder = _Recorder()
    callback_list = keras.callbacks.CallbackList([recorder, *callbacks], model=network)
    _engine_jax.ENGINE.fit(
        network,
        ArraySource(x, y, sample_weight),
        FitSpec(
            validation=None if valid is None else (*valid, valid_weight),
            loss=loss(),
            metrics=tuple(metrics()),
            optimizer=optimizer or keras.optimizers.Adam(learning_rate),
            epochs=epochs,
            initial_epoch=initial_epoch,
            batch_size=batch_size,
            seed=seed,
            callbacks=callback_list,
        ),
    )
    return recorder


def _keras_fit(
    network,
    x,
    y,
    *,
    loss,
    metrics,
    valid=None,
    sample_weight=None,
    valid_weight=None,
    epochs=3,
    learning_rate=0.01,
):
    network.compile(optimizer=keras.optimizers.Adam(learning_rate), loss=loss(), metrics=metrics())
    validation_data = None
    if valid is not None:
        validation_data = valid if valid_weight is None else (*valid, valid_weight)
    history = network.fit(
        x,
        y,
        sample_weight=sample_weight,
        validation_data=validation_data,
        batch_size=BATCH,
        epochs=epochs,
        shuffle=False,
        verbose=0,
    )
    return history.history


def _assert_same_history(engine_logs, keras_history):
    assert set(engine_logs[0]) == set(keras_history)
    for key, values in keras_history.items():
        np.testing.assert_allclose(
            [logs[key] for logs in engine_logs], values, rtol=RTOL, atol=ATOL, err_msg=key
        )


def _assert_same_weights(first, second, rtol=RTOL):
    assert len(first) == len(second)
    for a, b in zip(first, second, strict=True):
        np.testing.assert_allclose(a, b, rtol=rtol, atol=ATOL)


@pytest.fixture(scope="module")
def regression_run():
    """One unshuffled regression run with validation, shared by the tests that only read it."""
    setup = _regression_setup()
    network = setup["build"]()
    initial = {v.path: v.numpy() for v in network.non_trainable_variables}
    optimizer = keras.optimizers.Adam(0.01)
    recorder = _engine_fit(
        network,
        setup["x"],
        setup["y"],
        loss=setup["loss"],
        metrics=setup["metrics"],
        valid=setup["valid"],
        optimizer=optimizer,
    )
    return SimpleNamespace(
        setup=setup, network=network, optimizer=optimizer, recorder=recorder, initial=initial
    )


def test_regression_with_batch_norm_and_penalty_matches_keras_fit(regression_run):
    setup, network, recorder = regression_run.setup, regression_run.network, regression_run.recorder
    reference = setup["build"]()
    history = _keras_fit(
        reference,
        setup["x"],
        setup["y"],
        loss=setup["loss"],
        metrics=setup["metrics"],
        valid=setup["valid"],
    )
    _assert_same_history(recorder.logs, history)
    # get_weights() holds the batch-norm moving statistics too.
    _assert_same_weights(network.get_weights(), reference.get_weights())
    assert list(recorder.logs[-1]) == ["loss", "mae", "val_loss", "val_mae"]
    # The L2 penalty is in the loss (training and validation) but not in the MAE metric.
    assert recorder.logs[-1]["loss"] > recorder.logs[-1]["mae"] + 1e-3
    assert recorder.logs[-1]["val_loss"] > recorder.logs[-1]["val_mae"] + 1e-3
    moving = [v for v in network.non_trainable_variables if "moving" in v.path]
    assert len(moving) == 4
    for variable in moving:
        assert not np.allclose(variable.numpy(), regression_run.initial[variable.path])
    assert all(type(value) is float for value in recorder.logs[-1].values())
    # Callbacks saw each epoch's weights; the last ones are the model's.
    assert not np.allclose(recorder.weights[0][0], recorder.weights[1][0])
    _assert_same_weights(recorder.weights[-1], network.get_weights(), rtol=0)


@pytest.mark.parametrize("task", ["binary", "multiclass"])
def test_classifiers_match_keras_fit_without_shuffling(task):
    setup = SETUPS[task]()
    args = {k: setup[k] for k in ("loss", "metrics", "valid")}
    engine_net, keras_net = setup["build"](), setup["build"]()
    recorder = _engine_fit(engine_net, setup["x"], setup["y"], **args)
    history = _keras_fit(keras_net, setup["x"], setup["y"], **args)
    _assert_same_history(recorder.logs, history)
    _assert_same_weights(engine_net.get_weights(), keras_net.get_weights())


def test_partial_last_batch_is_trained_on(regression_run):
    # 70 rows in batches of 16: four full steps and one on the last 6 rows, every epoch (the
    # match with Keras above shows they are the same steps).
    assert int(regression_run.optimizer.iterations.numpy()) == 3 * 5


def test_sample_weights_match_keras_and_matter(regression_run):
    setup, plain = regression_run.setup, regression_run.recorder
    rng = np.random.default_rng(7)
    weights = rng.uniform(0.1, 3.0, size=ROWS).astype(np.float32)
    valid_weights = rng.uniform(0.1, 3.0, size=30).astype(np.float32)
    args = {k: setup[k] for k in ("loss", "metrics", "valid")}
    weighted = setup["build"]()
    recorder = _engine_fit(
        weighted, setup["x"], setup["y"], sample_weight=weights, valid_weight=valid_weights, **args
    )
    reference = setup["build"]()
    history = _keras_fit(
        reference, setup["x"], setup["y"], sample_weight=weights, valid_weight=valid_weights, **args
    )
    _assert_same_history(recorder.logs, history)
    _assert_same_weights(weighted.get_weights(), reference.get_weights())
    # Without weights the run differs: in the weights it learns and in its validation loss.
    kernel = regression_run.network.get_layer("block_2_dense").kernel.numpy()
    assert not np.allclose(weighted.get_layer("block_2_dense").kernel.numpy(), kernel)
    assert abs(plain.logs[-1]["val_loss"] - recorder.logs[-1]["val_loss"]) > 1e-3


def _set_dropout_seed(network, seed):
    states = [v for v in network.non_trainable_variables if v.path.endswith("seed_generator_state")]
    for index, variable in enumerate(states):
        variable.assign(np.array([seed, index], dtype=variable.dtype).reshape(variable.shape))
    return len(states)


def _dropout_network(dropout_seed):
    network = dense_stack(FEATURES, hidden_units=(16, 16), dropout_rate=0.5, seed=1)
    assert _set_dropout_seed(network, dropout_seed) == 2
    return network


def _dropout_fit(network, *, epochs=2, shuffle_seed=0, **kwargs):
    setup = _regression_setup()
    return _engine_fit(
        network,
        setup["x"],
        setup["y"],
        loss=setup["loss"],
        metrics=setup["metrics"],
        valid=setup["valid"],
        epochs=epochs,
        seed=shuffle_seed,
        **kwargs,
    )


def test_shuffling_dropout_and_resuming_follow_their_seeds_like_keras():
    # Dropout seed state 10, shuffle seed 0, 2 epochs.
    first = _dropout_network(10)
    first_logs = _dropout_fit(first)
    setup = _regression_setup()
    # Keras fed each epoch's rows in `epoch_order`, with the same dropout seed state, draws the
    # same masks and gives the same weights.
    reference = _dropout_network(10)
    reference.compile(optimizer=keras.optimizers.Adam(0.01), loss=setup["loss"]())
    for epoch in range(2):
        order = _engine_jax.epoch_order(ROWS, 0, epoch)
        reference.fit(
            setup["x"][order],
            setup["y"][order],
            batch_size=BATCH,
            epochs=1,
            shuffle=False,
            verbose=0,
        )
    _assert_same_weights(first.get_weights(), reference.get_weights())

    # The same seeds give the same run, even when it is resumed halfway: resuming needs the
    # same (built) optimizer and the network's variables, which hold the dropout seed state.
    again = _dropout_network(10)
    optimizer = keras.optimizers.Adam(0.01)
    head = _dropout_fit(again, epochs=1, optimizer=optimizer)
    tail = _dropout_fit(again, epochs=2, initial_epoch=1, optimizer=optimizer)
    assert len(tail.logs) == 1
    _assert_same_weights(first.get_weights(), again.get_weights(), rtol=0)
    assert first_logs.logs == head.logs + tail.logs
    other_dropout = _dropout_network(11)
    _dropout_fit(other_dropout)
    assert not np.allclose(first.get_weights()[0], other_dropout.get_weights()[0])
    # The row order is a pure function of (seed, epoch).
    np.testing.assert_array_equal(
        _engine_jax.epoch_order(ROWS, 0, 1), _engine_jax.epoch_order(ROWS, 0, 1)
    )
    assert not np.array_equal(
        _engine_jax.epoch_order(ROWS, 0, 1), _engine_jax.epoch_order(ROWS, 1, 1)
    )
    assert not np.array_equal(
        _engine_jax.epoch_order(ROWS, 0, 0), _engine_jax.epoch_order(ROWS, 0, 1)
    )
    assert _engine_jax.epoch_order(ROWS, None, 0) is None

    # The seed-generator state moved on during training.
    state = [v for v in first.non_trainable_variables if "seed_generator" in v.path][0]
    assert not np.array_equal(state.numpy(), [10, 0])
    # Validation runs in inference mode: no dropout, so it matches a plain prediction.
    x_valid, y_valid = setup["valid"]
    predicted = first.predict(x_valid, verbose=0)
    expected = float(keras.losses.MeanAbsoluteError()(y_valid[:, None], predicted))
    np.testing.assert_allclose(first_logs.logs[-1]["val_loss"], expected, rtol=RTOL)


def test_early_stopping_and_checkpoints_see_each_epoch(tmp_path):
    setup = _regression_setup()
    args = {k: setup[k] for k in ("loss", "metrics", "valid")}
    network = setup["build"]()
    # No epoch after the first can improve by 1000: the run stops after epoch 3 of 10.
    stopper = keras.callbacks.EarlyStopping(
        monitor="val_loss", min_delta=1000.0, patience=2, restore_best_weights=True
    )
    checkpoint = keras.callbacks.ModelCheckpoint(
        str(tmp_path / "epoch_{epoch}.weights.h5"), save_weights_only=True
    )
    recorder = _engine_fit(
        network, setup["x"], setup["y"], epochs=10, callbacks=[stopper, checkpoint], **args
    )
    assert len(recorder.logs) == 3
    assert stopper.stopped_epoch == 2
    assert not np.allclose(recorder.weights[0][0], recorder.weights[2][0])
    _assert_same_weights(recorder.weights[0], network.get_weights(), rtol=0)
    # The checkpoint of the second epoch holds that epoch's weights.
    saved = setup["build"]()
    saved.load_weights(tmp_path / "epoch_2.weights.h5")
    _assert_same_weights(recorder.weights[1], saved.get_weights(), rtol=0)


def test_learning_rate_scheduler_takes_effect_between_epochs():
    setup = _regression_setup()
    args = {k: setup[k] for k in ("loss", "metrics")}
    network = setup["build"]()
    # Two variables holding one array (a buffer can be donated only once): the engine copes.
    first_bias, second_bias = (network.get_layer(f"block_{i}_dense").bias for i in (1, 2))
    second_bias.assign(first_bias.value)
    assert second_bias.value is first_bias.value
    scheduler = keras.callbacks.LearningRateScheduler(lambda epoch, lr: 0.01 if epoch == 0 else 0.0)
    recorder = _engine_fit(network, setup["x"], setup["y"], epochs=3, callbacks=[scheduler], **args)
    np.testing.assert_allclose(recorder.learning_rates, [0.01, 0.0, 0.0], rtol=1e-6)
    # Learning rate 0 from the second epoch on: the trainable weights stop moving (the
    # batch-norm moving statistics do not).
    assert not np.allclose(recorder.trainable[0][0], setup["build"]().get_weights()[0])
    _assert_same_weights(recorder.trainable[0], recorder.trainable[2], rtol=0)
    assert not np.allclose(recorder.weights[0][2], recorder.weights[2][2])
    assert list(recorder.logs[0]) == ["loss", "mae"]
    # The engine leaves the network compiled with the run's optimizer, as Keras's engine does.
    assert network.compiled and network.optimizer.built


def test_weakly_typed_start_compiles_the_epoch_once(caplog):
    import jax
    import jax.numpy as jnp

    setup = _regression_setup()
    args = {k: setup[k] for k in ("loss", "metrics", "valid")}
    network = setup["build"]()
    bias = network.get_layer("block_1_dense").bias
    # What an initializer built from Python scalars leaves behind (`where(c, -1.0, 1.0)`).
    bias.assign(jnp.where(jnp.zeros(bias.shape) < 1, 0.5, 0.0))
    assert bias.value.weak_type
    with jax.log_compiles(), caplog.at_level("WARNING"):
        _engine_fit(network, setup["x"], setup["y"], epochs=3, **args)
    compiles = [r for r in caplog.records if "Compiling jit(_epoch)" in r.getMessage()]
    assert len(compiles) == 1


def test_metric_without_variables_is_refused_before_training():
    setup = _regression_setup()
    network = setup["build"]()
    begun = []
    callback = keras.callbacks.LambdaCallback(on_train_begin=lambda logs: begun.append(True))
    with pytest.raises(ValueError, match=r"'f1_score' \(F1Score\) with no variables"):
        _engine_fit(
            network,
            setup["x"],
            setup["y"],
            loss=setup["loss"],
            metrics=lambda: [keras.metrics.F1Score()],
            callbacks=[callback],
        )
    assert begun == []
    assert not network.compiled  # refused before it changed anything


class _ScaledDense(keras.layers.Dense):
    """A Dense subclass: a layer the engine cannot know to work row by row."""

    def call(self, inputs, training=None):
        return super().call(inputs) * 0.5


def _subclass_network():
    inputs = keras.Input(shape=(FEATURES,), name="features")
    x = keras.layers.BatchNormalization()(inputs)
    x = _ScaledDense(8, activation="relu", kernel_initializer=keras.initializers.Ones())(x)
    return keras.Model(inputs, keras.layers.Dense(1, kernel_initializer="ones")(x))


def _spy_on_batches(monkeypatch):
    """Record, per epoch program, whether the partial batch ran as a step of its own."""
    own_steps = []
    batches = _engine_jax._EpochProgram._batches

    def spy(self, order):
        scanned, own_step = batches(self, order)
        own_steps.append(own_step is not None)
        return scanned, own_step

    monkeypatch.setattr(_engine_jax._EpochProgram, "_batches", spy)
    return own_steps


def test_padding_mode_knows_which_layers_work_row_by_row():
    assert _engine_jax._padding_mode(dense_stack(FEATURES, hidden_units=(4,))) == "plain"
    assert _engine_jax._padding_mode(_regression_network()) == "mask"
    assert _engine_jax._padding_mode(_subclass_network()) is None


@pytest.mark.parametrize(
    ("build", "pads"), [(_regression_network, True), (_subclass_network, False)]
)
def test_padded_partial_batch_matches_keras_fit(monkeypatch, build, pads):
    # Pad even 10 padding rows on 70 (the default share is smaller): batch norm with a Keras
    # mask, an L2 penalty, sample weights; a layer the engine does not know is never padded.
    monkeypatch.setattr(_engine_jax, "_MAX_PADDING_SHARE", 1.0)
    own_steps = _spy_on_batches(monkeypatch)
    setup = _regression_setup()
    weights = np.random.default_rng(8).uniform(0.1, 3.0, size=ROWS).astype(np.float32)
    args = {k: setup[k] for k in ("loss", "metrics", "valid")}
    engine_net, keras_net = build(), build()
    recorder = _engine_fit(engine_net, setup["x"], setup["y"], sample_weight=weights, **args)
    history = _keras_fit(keras_net, setup["x"], setup["y"], sample_weight=weights, **args)
    assert own_steps == [not pads]
    _assert_same_history(recorder.logs, history)
    _assert_same_weights(engine_net.get_weights(), keras_net.get_weights())


def test_small_padding_share_pads_and_large_one_does_not(monkeypatch):
    own_steps = _spy_on_batches(monkeypatch)
    setup = _regression_setup()
    args = {k: setup[k] for k in ("loss", "metrics")}
    network = dense_stack(FEATURES, hidden_units=(4,))
    _engine_fit(network, setup["x"], setup["y"], epochs=1, **args)  # 10 padding rows on 70
    x, y = _data(9, rows=16 * 50 + 15)  # 1 padding row on 815
    _engine_fit(network, x, y, epochs=1, **args)
    assert own_steps == [True, False]


def test_validation_in_padded_chunks_matches_keras_fit():
    # 2,049 validation rows: two chunks of 1,025 rows, the second padded by one masked-out row.
    setup = _binary_setup()
    x_valid, y_valid = _data(10, rows=2049)
    labels = (y_valid > np.median(setup["y"])).astype(np.float32)
    weights = np.random.default_rng(11).uniform(0.1, 3.0, size=2049).astype(np.float32)
    args = {k: setup[k] for k in ("loss", "metrics")}
    args.update(valid=(x_valid, labels), valid_weight=weights, epochs=2)
    engine_net, keras_net = setup["build"](), setup["build"]()
    recorder = _engine_fit(engine_net, setup["x"], setup["y"], **args)
    history = _keras_fit(keras_net, setup["x"], setup["y"], **args)
    _assert_same_history(recorder.logs, history)
    program = _engine_jax._EpochProgram(
        engine_net,
        loss=keras.losses.BinaryCrossentropy(),
        metrics=[],
        optimizer=keras.optimizers.Adam(),
        num_rows=ROWS,
        batch_size=BATCH,
        num_valid_rows=2049,
    )
    assert (program.valid_chunk, program.padded_valid_rows) == (1025, 2050)
