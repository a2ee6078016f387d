"""The declared seams of training: the engine contract, batch sources, the training state that
checkpoints keep, and the early-stopping mode read from the task table."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from dlstructured import linear_unit, train
from dlstructured.tasks import MONITOR_MODES, TASKS, monitor_mode
from dlstructured.training.checkpoints import CheckpointWriter, read_checkpoint
from dlstructured.training.contract import ArraySource, BatchSource, Engine, FitSpec, epoch_order
from dlstructured.training.loop import _select_engine
from dlstructured.training.state import TrainingState, restore_weights, snapshot_weights

ROWS, BATCH = 12, 4
ENGINES = ["keras"] + (["jax"] if keras.backend.backend() == "jax" else [])


def _data():
    x = np.linspace(-1, 1, ROWS, dtype="float32").reshape(-1, 1)
    return x, (3 * x[:, 0] + 2).astype("float32")


class _RecordingSource:
    """A batch source of its own (no ArraySource): it records each epoch's rows as drawn."""

    def __init__(self, x, y):
        self.x, self.y = x, y
        self.drawn: dict[int, list[int]] = {}

    @property
    def num_rows(self) -> int:
        return len(self.x)

    def batches(self, epoch, *, batch_size, seed):
        order = epoch_order(self.num_rows, seed, epoch)
        order = np.arange(self.num_rows) if order is None else order
        self.drawn[epoch] = order.tolist()
        for start in range(0, self.num_rows, batch_size):
            rows = order[start:start + batch_size]
            yield self.x[rows], self.y[rows], None


class _RecordingArraySource(ArraySource):
    """An ArraySource that records the epochs whose order an engine asks for."""

    def __init__(self, *args):
        super().__init__(*args)
        self.epochs: list[int] = []

    def order(self, epoch, seed):
        self.epochs.append(epoch)
        return super().order(epoch, seed)


def _fit(engine_name, source, *, epochs=3, initial_epoch=0, seed=5):
    network = linear_unit(1, seed=0)
    optimizer = keras.optimizers.SGD(0.1)
    spec = FitSpec(
        loss=keras.losses.MeanAbsoluteError(), metrics=(keras.metrics.MeanAbsoluteError("mae"),),
        optimizer=optimizer, epochs=epochs, batch_size=BATCH,
        callbacks=keras.callbacks.CallbackList([], model=network), initial_epoch=initial_epoch,
        seed=seed,
    )
    engine = _engine(engine_name)
    assert isinstance(engine, Engine)
    engine.fit(network, source, spec)
    return network, spec


def _engine(name):
    return _select_engine(name)


@pytest.mark.parametrize("engine", ENGINES)
def test_engines_accept_an_array_source_and_a_custom_source_alike(engine):
    x, y = _data()
    custom = _RecordingSource(x, y)
    assert isinstance(custom, BatchSource)
    _fit(engine, custom)
    assert sorted(custom.drawn) == [0, 1, 2]
    assert all(sorted(rows) == list(range(ROWS)) for rows in custom.drawn.values())
    # In order (seed None; on TensorFlow an ArraySource shuffles in tf.data), the same training.
    from_custom, _ = _fit(engine, _RecordingSource(x, y), seed=None)
    from_arrays, spec = _fit(engine, ArraySource(x, y), seed=None)
    np.testing.assert_allclose(from_custom.get_weights()[0], from_arrays.get_weights()[0],
                               rtol=1e-5)
    # Trained, and left in the state every engine leaves: compiled with the spec's optimizer.
    assert not np.allclose(from_arrays.get_weights()[0], linear_unit(1, seed=0).get_weights()[0])
    assert from_arrays.compiled and from_custom.compiled
    assert from_arrays.optimizer is spec.optimizer
    assert int(spec.optimizer.iterations.numpy()) == 3 * -(-ROWS // BATCH)
    assert from_arrays.evaluate(x, y, verbose=0)[0] == pytest.approx(
        float(np.mean(np.abs(from_arrays.predict(x, verbose=0)[:, 0] - y))), rel=1e-4
    )


@pytest.mark.parametrize("engine", ENGINES)
def test_an_engine_draws_each_epoch_by_its_number_from_the_first_one(engine):
    if engine == "keras" and keras.backend.backend() == "tensorflow":
        pytest.skip("on TensorFlow an ArraySource becomes a tf.data pipeline (tested elsewhere)")
    x, y = _data()
    source = _RecordingArraySource(x, y)
    _fit(engine, source, epochs=4, initial_epoch=1)
    # Keras calls the data's on_epoch_end once before the first epoch: not counted as an epoch.
    assert sorted(set(source.epochs)) == [1, 2, 3]


@pytest.mark.skipif(keras.backend.backend() != "jax", reason="two engines only on JAX")
def test_both_engines_draw_the_same_rows_per_epoch_for_the_same_seed():
    x, y = _data()
    drawn = {}
    for engine in ("keras", "jax"):
        source = _RecordingSource(x, y)
        _fit(engine, source, seed=7)
        drawn[engine] = source.drawn
    assert drawn["keras"] == drawn["jax"]
    # The same batches give the same training (SGD, no dropout); another seed does not.
    results = {
        (engine, seed): train(linear_unit(1, seed=0), x, y, epochs=2, batch_size=BATCH,
                              optimizer=keras.optimizers.SGD(0.1), loss="mse", seed=seed,
                              engine=engine, early_stopping=False).model.get_weights()[0]
        for engine in ("keras", "jax") for seed in (1, 2)
    }
    np.testing.assert_allclose(results["keras", 1], results["jax", 1], rtol=1e-5)
    np.testing.assert_allclose(results["keras", 2], results["jax", 2], rtol=1e-5)
    assert not np.allclose(results["jax", 1], results["jax", 2], rtol=1e-5)


def test_array_source_refuses_arrays_of_different_lengths():
    with pytest.raises(ValueError, match=r"Received: 3, 2 and None rows"):
        ArraySource(np.zeros((3, 1)), np.zeros(2))


@pytest.mark.parametrize("engine", ENGINES)
def test_train_leaves_the_network_compiled_on_every_engine(engine):
    x, y = _data()
    result = train(linear_unit(1, seed=0), x, y, epochs=1, seed=0, engine=engine)
    assert result.engine == engine
    assert result.model.compiled
    assert isinstance(result.model.optimizer, keras.optimizers.Adam)


# --------------------------------------------------------------------------------------------
# The training state


def test_training_state_round_trips_through_plain_data():
    state = TrainingState(epoch=2, seed=3, rows=[{"loss": 2.0}, {"loss": 1.5}], best=1.5,
                          best_epoch=2, wait=0, stopped_early=True)
    payload = state.to_dict()
    assert payload == {"epoch": 2, "seed": 3, "rows": [{"loss": 2.0}, {"loss": 1.5}],
                       "best": 1.5, "best_epoch": 2, "wait": 0, "stopped_early": True}
    assert TrainingState.from_dict(payload) == state
    assert TrainingState.from_dict({**payload, "wait": 4}) != state


def test_weight_snapshot_restores_every_value():
    network = linear_unit(1, seed=0)
    saved = snapshot_weights(network.weights)
    network.set_weights([np.full_like(w, 9.0) for w in network.get_weights()])
    restore_weights(network.weights, saved)
    for value, weight in zip(saved, network.get_weights(), strict=True):
        np.testing.assert_array_equal(value, weight)


def test_training_state_round_trips_through_a_checkpoint(tmp_path, monkeypatch):
    monkeypatch.setattr(CheckpointWriter, "WRITE_SHARE_FACTOR", 0.0)
    monkeypatch.setattr(CheckpointWriter, "MIN_WRITE_INTERVAL", 0.0)
    x, y = _data()
    x_valid, y_valid = x[::3], y[::3] + 0.5
    result = train(linear_unit(1, seed=0), x, y, validation_data=(x_valid, y_valid), epochs=4,
                   batch_size=BATCH, early_stopping=False, seed=11,
                   checkpoint_dir=tmp_path / "run")
    saved = read_checkpoint(tmp_path / "run")
    state = saved.training_state(result.model)
    assert state.epoch == 4 and state.seed == 11
    assert state.best_epoch == result.best_epoch
    assert state.best == pytest.approx(result.best_metrics["val_loss"])
    assert [row["loss"] for row in state.rows] == pytest.approx(result.history["loss"].tolist())
    assert len(state.best_weights) == len(result.model.weights)
    # Written back through to_dict, the same plain data comes out.
    assert TrainingState.from_dict(state.to_dict()) == state


# --------------------------------------------------------------------------------------------
# The early-stopping mode from the task table


def test_monitor_modes_come_from_the_task_table():
    assert monitor_mode("loss") == "min"
    assert monitor_mode("val_mae") == "min"
    assert monitor_mode("val_rmse") == "min"
    assert monitor_mode("val_accuracy") == "max"
    assert monitor_mode("binary_accuracy") == "max"
    assert monitor_mode("val_auc") == "max"
    # Every default metric of every task has its mode in the table.
    for policy in TASKS.values():
        assert policy.monitor_mode == MONITOR_MODES[policy.monitor[4:]]
        assert all(name in MONITOR_MODES for name in policy.metric_names)


def test_a_quantity_outside_the_table_takes_its_metrics_direction():
    # The old guess read "accuracy" in a name as "max": a loss-like name no longer fools it.
    gap = keras.metrics.MeanSquaredError("accuracy_gap")
    assert monitor_mode("val_accuracy_gap", [gap]) == "min"
    assert monitor_mode("val_hits", [keras.metrics.Precision(name="hits")]) == "max"
    assert monitor_mode("val_unknown") == "min"


def test_early_stopping_on_auc_keeps_the_highest_epoch():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 2)).astype("float32")
    y = (x[:, 0] > 0).astype("float32")
    from dlstructured import EarlyStopping, binary_classifier

    result = train(binary_classifier(2, hidden_units=(4,), seed=0), x, y,
                   validation_data=(x[:16], y[:16]), epochs=3, seed=0,
                   early_stopping=EarlyStopping(monitor="val_auc", patience=5))
    assert result.best_epoch == int(result.history["val_auc"].to_numpy().argmax()) + 1
