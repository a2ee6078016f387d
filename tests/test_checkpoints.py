"""Checkpoints: what the folder holds, atomic writes, resuming, Ctrl-C and divergence."""

from __future__ import annotations

import json
import os
import shutil
import signal
import warnings

import keras
import numpy as np
import pandas as pd
import pytest

import dlstructured
from conftest import expect_warning
from dlstructured import (
    CheckpointError,
    EarlyStopping,
    ModelFileError,
    dense_stack,
    linear_unit,
    load_checkpoint,
    train,
)
from dlstructured.training.checkpoints import POINTER_FILE, read_checkpoint
from dlstructured.training.loop import TrainingDivergedWarning, TrainingInterruptedWarning


@pytest.fixture(autouse=True, scope="module")
def write_every_epoch():
    """These tests look at each epoch's checkpoint: turn off the writer's time-based spacing."""
    from dlstructured.training.checkpoints import CheckpointWriter

    saved = CheckpointWriter.WRITE_SHARE_FACTOR, CheckpointWriter.MIN_WRITE_INTERVAL
    CheckpointWriter.WRITE_SHARE_FACTOR = CheckpointWriter.MIN_WRITE_INTERVAL = 0.0
    yield
    CheckpointWriter.WRITE_SHARE_FACTOR, CheckpointWriter.MIN_WRITE_INTERVAL = saved


@pytest.fixture
def data(rng):
    x = rng.normal(size=(64, 3)).astype("float32")
    noise = 0.1 * rng.normal(size=64).astype("float32")
    y = x @ np.array([1.0, -2.0, 0.5], dtype="float32") + noise
    return x, y


def small_network():
    """Dropout and batch norm: the state has moving statistics and a seed-generator state."""
    return dense_stack(3, hidden_units=(8,), dropout_rate=0.2, batch_norm=True, seed=0)


SETTINGS = dict(epochs=10, batch_size=16, valid_fraction=0.25, learning_rate=0.01,
                early_stopping=EarlyStopping(patience=4, min_delta=0.0))


class InterruptAt(keras.callbacks.Callback):
    """Raise KeyboardInterrupt at the end of one epoch (1-based), as Ctrl-C would."""

    def __init__(self, epoch: int, real_signal: bool = False):
        super().__init__()
        self.epoch, self.real_signal = epoch, real_signal

    def on_epoch_end(self, epoch, logs=None):
        if epoch + 1 == self.epoch:
            if self.real_signal:
                signal.raise_signal(signal.SIGINT)  # Python's default handler raises
            else:
                raise KeyboardInterrupt


def interrupted_run(data, folder, at, **changes):
    x, y = data
    with expect_warning(TrainingInterruptedWarning):
        return train(small_network(), x, y, seed=5, checkpoint_dir=folder,
                     callbacks=[InterruptAt(at)], **{**SETTINGS, **changes})


@pytest.fixture(scope="module")
def whole_run(tmp_path_factory):
    """One uninterrupted run with checkpoints, shared by the tests that only read it."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 3)).astype("float32")
    noise = 0.1 * rng.normal(size=64).astype("float32")
    y = x @ np.array([1.0, -2.0, 0.5], dtype="float32") + noise
    folder = tmp_path_factory.mktemp("whole")
    model = small_network()
    result = train(model, x, y, seed=5, checkpoint_dir=folder, **SETTINGS)
    return result, folder, model.predict(x, verbose=0)


def test_folder_holds_best_model_pointer_and_one_state(whole_run):
    result, folder, _ = whole_run
    names = sorted(os.listdir(folder))
    assert names[:2] == ["best.keras", POINTER_FILE] and len(names) == 3
    assert names[2].startswith(f"state-{result.epochs_run:06d}-")
    expected = ["optimizer.npz", "state.json", "variables.npz"]
    if result.best_epoch != result.epochs_run:
        expected = ["best_weights.npz", *expected]
    assert sorted(os.listdir(folder / names[2])) == expected
    state = read_checkpoint(folder)
    assert state.epoch == result.epochs_run and state.seed == 5
    assert state.best_epoch == result.best_epoch
    assert state.stopped_early == result.stopped_early
    assert len(state.rows) == result.epochs_run
    assert state.rows[-1]["val_loss"] == pytest.approx(result.history["val_loss"].iloc[-1])
    assert any(path.endswith("seed_generator_state") for path in state.variable_paths)
    assert any(path.endswith("moving_mean") for path in state.variable_paths)
    assert state.optimizer_paths[0].endswith("iteration")


def test_best_model_is_the_best_epoch_and_predicts(whole_run, data):
    result, folder, predictions = whole_run
    x, _ = data
    best = load_checkpoint(folder)
    assert isinstance(best, keras.Model) and result.best_epoch is not None
    # Early stopping restored the best epoch's weights: the saved model is the same.
    np.testing.assert_allclose(best.predict(x, verbose=0), predictions, rtol=1e-6, atol=1e-6)


def test_resumed_run_matches_an_uninterrupted_one(whole_run, data, tmp_path):
    whole, _, predictions = whole_run
    x, y = data
    part = interrupted_run(data, tmp_path, at=3)
    assert part.interrupted and part.epochs_run == 3
    assert read_checkpoint(tmp_path).epoch == 3

    resumed = train(small_network(), x, y, checkpoint_dir=tmp_path, resume=True, **SETTINGS)
    assert resumed.epochs_run == whole.epochs_run
    assert resumed.history.shape == whole.history.shape
    pd.testing.assert_frame_equal(resumed.history, whole.history, rtol=1e-5)
    assert resumed.best_epoch == whole.best_epoch
    assert resumed.stopped_early == whole.stopped_early
    np.testing.assert_allclose(resumed.model.predict(x, verbose=0), predictions,
                               rtol=1e-5, atol=1e-6)


def test_resuming_a_finished_run_trains_nothing_and_returns_it(whole_run, data, tmp_path):
    whole, folder, predictions = whole_run
    x, y = data
    shutil.copytree(folder, tmp_path / "copy")
    begun: list[int] = []
    counter = keras.callbacks.LambdaCallback(on_epoch_begin=lambda epoch, logs: begun.append(epoch))
    again = train(small_network(), x, y, checkpoint_dir=tmp_path / "copy", resume=True,
                  callbacks=[counter], **SETTINGS)
    pd.testing.assert_frame_equal(again.history, whole.history)
    assert again.best_epoch == whole.best_epoch and begun == []
    np.testing.assert_allclose(again.model.predict(x, verbose=0), predictions,
                               rtol=1e-6, atol=1e-6)


def test_real_sigint_returns_the_result_and_leaves_the_folder_complete(data, tmp_path):
    x, y = data
    # Python's own Ctrl-C handler, as in an interactive session: a process started in the
    # background by a non-interactive shell inherits SIGINT ignored (it failed that way once).
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with expect_warning(TrainingInterruptedWarning, match="interrupted at epoch 4"):
            result = train(small_network(), x, y, seed=5, checkpoint_dir=tmp_path,
                           callbacks=[InterruptAt(4, real_signal=True)], **SETTINGS)
    finally:
        signal.signal(signal.SIGINT, previous)
    assert result.interrupted and result.interrupted_epoch == 4 and result.epochs_run == 4
    assert read_checkpoint(tmp_path).epoch == 4
    assert not [name for name in os.listdir(tmp_path) if name.startswith(".tmp-")]
    assert load_checkpoint(tmp_path).predict(x[:5], verbose=0).shape == (5, 1)


def test_a_write_that_fails_midway_leaves_the_previous_checkpoint(data, tmp_path, monkeypatch):
    """A crash while writing epoch 2's state (here: the disk fills up) keeps epoch 1's intact."""
    x, y = data
    calls = {"count": 0}
    real_savez = np.savez

    def failing_savez(*args, **kwargs):
        calls["count"] += 1  # epoch 1 writes variables.npz and optimizer.npz
        if calls["count"] == 3:
            raise OSError(28, "No space left on device")
        return real_savez(*args, **kwargs)

    monkeypatch.setattr(np, "savez", failing_savez)
    with pytest.raises(OSError, match="No space left"):
        train(small_network(), x, y, seed=5, checkpoint_dir=tmp_path, **SETTINGS)
    monkeypatch.undo()
    assert calls["count"] == 3
    assert json.loads((tmp_path / POINTER_FILE).read_text())["epoch"] == 1
    assert read_checkpoint(tmp_path).epoch == 1
    assert not [name for name in os.listdir(tmp_path) if name.startswith(".tmp-")]
    assert load_checkpoint(tmp_path).predict(x[:3], verbose=0).shape == (3, 1)


def test_divergence_keeps_the_best_weights_before_it_and_names_epoch_and_fix(rng, tmp_path):
    x = rng.uniform(0, 100, size=(64, 3)).astype("float32")
    y = x.sum(axis=1)
    settings = dict(optimizer="sgd", learning_rate=1e-6, loss="mse", batch_size=16,
                    early_stopping=False, seed=0)
    two_epochs = train(dense_stack(3, hidden_units=(8,), seed=0), x, y, epochs=2, **settings)
    blow_up = keras.callbacks.LearningRateScheduler(lambda epoch, lr: 1e6 if epoch == 2 else lr)
    model = dense_stack(3, hidden_units=(8,), seed=0)
    with expect_warning(TrainingDivergedWarning) as caught:
        result = train(model, x, y, epochs=10, callbacks=[blow_up], checkpoint_dir=tmp_path,
                       **settings)
    message = str(caught[0].message)
    assert "diverged at epoch 3" in message
    assert "scale the inputs" in message and "lower the learning rate" in message
    assert result.diverged and result.diverged_epoch == 3 and result.epochs_run == 3
    assert result.best_epoch == 2
    # The weights kept are exactly those after epoch 2.
    np.testing.assert_allclose(model.predict(x, verbose=0), two_epochs.model.predict(x, verbose=0),
                               rtol=1e-6)
    # The checkpoint never saw the diverged epoch.
    state = read_checkpoint(tmp_path)
    assert state.epoch == 2
    assert all(np.isfinite(value).all() for value in state.variables)
    np.testing.assert_allclose(load_checkpoint(tmp_path).predict(x, verbose=0),
                               two_epochs.model.predict(x, verbose=0), rtol=1e-6)


def test_checkpoints_of_a_plain_linear_unit_without_validation(tmp_path):
    x = np.linspace(-1, 1, 32, dtype="float32").reshape(-1, 1)
    result = train(linear_unit(1, seed=0), x, 2 * x[:, 0], epochs=3, seed=0,
                   checkpoint_dir=str(tmp_path))
    state = read_checkpoint(tmp_path)
    assert state.monitor == "loss" == result.monitor
    assert json.loads((tmp_path / POINTER_FILE).read_text())["epoch"] == 3


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"resume": True}, ValueError, "checkpoint_dir"),
        ({"resume": "yes", "checkpoint_dir": "x"}, TypeError, "resume"),
        ({"checkpoint_dir": 3}, TypeError, "checkpoint_dir"),
    ],
)
def test_bad_checkpoint_arguments_name_themselves(data, kwargs, error, match):
    x, y = data
    with pytest.raises(error, match=match):
        train(linear_unit(3), x, y, epochs=1, **kwargs)


def test_resume_refuses_an_empty_folder_another_model_and_another_seed(data, tmp_path):
    x, y = data
    with pytest.raises(CheckpointError, match="no completed checkpoint"):
        train(small_network(), x, y, checkpoint_dir=tmp_path, resume=True, **SETTINGS)
    with pytest.raises(CheckpointError, match="No checkpoint folder"):
        train(small_network(), x, y, checkpoint_dir=tmp_path / "missing", resume=True)
    interrupted_run(data, tmp_path, at=2)
    other = dense_stack(3, hidden_units=(4,), seed=0)
    with pytest.raises(CheckpointError, match="different model"):
        train(other, x, y, checkpoint_dir=tmp_path, resume=True, **SETTINGS)
    with pytest.raises(ValueError, match=r"seed.*Received: seed=6"):
        train(small_network(), x, y, seed=6, checkpoint_dir=tmp_path, resume=True, **SETTINGS)
    with pytest.raises(CheckpointError, match="optimizer"):
        train(small_network(), x, y, checkpoint_dir=tmp_path, resume=True, optimizer="sgd",
              **{k: v for k, v in SETTINGS.items()})


def test_load_checkpoint_errors_name_the_folder(tmp_path):
    with pytest.raises(CheckpointError, match="no best model"):
        load_checkpoint(tmp_path)
    with pytest.raises(TypeError, match="checkpoint_dir"):
        load_checkpoint(3)
    (tmp_path / "best.keras").write_bytes(b"not a zip")
    with pytest.raises(ModelFileError, match="best.keras"):
        load_checkpoint(tmp_path)
    (tmp_path / POINTER_FILE).write_text("{broken")
    with pytest.raises(CheckpointError, match="unreadable"):
        read_checkpoint(tmp_path)


def test_tabular_model_checkpoint_predicts_raw_rows(tmp_path, rng):
    frame = pd.DataFrame({
        "size": rng.uniform(1, 10, 80),
        "colour": rng.choice(["red", "green", "blue"], 80),
        "price": rng.uniform(0, 5, 80),
    })
    data = dlstructured.prepare(frame, target="price", seed=0)
    model = dlstructured.dense_stack(data, hidden_units=(4,), seed=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        train(model, data, epochs=2, seed=0, checkpoint_dir=tmp_path)
    best = load_checkpoint(tmp_path)
    assert type(best).__name__ == "TabularModel"
    np.testing.assert_allclose(best.predict(frame.drop(columns="price")),
                               model.predict(frame.drop(columns="price")), rtol=1e-5)


@pytest.mark.parametrize("spacing", ["WRITE_SHARE_FACTOR", "MIN_WRITE_INTERVAL"])
def test_writes_are_spaced_in_time_but_the_last_epoch_is_always_written(data, tmp_path,
                                                                        monkeypatch, spacing):
    from dlstructured.training.checkpoints import CheckpointWriter

    monkeypatch.setattr(CheckpointWriter, spacing, 1e6)  # one write, then wait
    written = []

    class Look(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            written.append(read_checkpoint(tmp_path).epoch)

    x, y = data
    result = train(small_network(), x, y, seed=5, checkpoint_dir=tmp_path, callbacks=[Look()],
                   **{**SETTINGS, "early_stopping": False, "epochs": 5})
    assert written == [1, 1, 1, 1, 1]  # the first epoch, then nothing while the spacing runs
    state = read_checkpoint(tmp_path)
    assert state.epoch == result.epochs_run == 5  # the end of training is always written
    assert len(state.rows) == 5
    assert dlstructured.load_checkpoint(tmp_path).predict(x, verbose=0).shape == (len(x), 1)


def test_resume_from_a_folder_without_a_checkpoint_names_the_argument(data, tmp_path):
    x, y = data
    with pytest.raises(dlstructured.CheckpointError, match=r"resume=True.*checkpoint_dir"):
        train(small_network(), x, y, checkpoint_dir=tmp_path, resume=True, **SETTINGS)
