"""Training from a batch source that is not in memory: results, bounded chunks, bad input.

A ``StreamedRows`` source hands out copies of the rows batch by batch from a generator, as a
streamed table would; the JAX engine must then feed it in chunks and give the same history as
the in-memory fast path on the same rows in the same order.
"""

from __future__ import annotations

import keras
import numpy as np
import pytest

from conftest import expect_warning
from dlstructured import EarlyStopping, binary_classifier, dense_stack, train
from dlstructured.training.contract import ArraySource

ROWS, FEATURES, BATCH = 150, 4, 16  # 9 whole batches and a partial one of 6 rows
RTOL, ATOL = 1e-4, 1e-5
JAX = keras.backend.backend() == "jax"


class StreamedRows:
    """A ``BatchSource`` over arrays that gives each batch as a fresh copy, from a generator,
    and records the batch sizes it was asked for."""

    def __init__(self, x, y, sample_weight=None, *, on_batch=None):
        self._rows = ArraySource(x, y, sample_weight)
        self.on_batch = on_batch
        self.requests: list[int] = []

    @property
    def num_rows(self) -> int:
        return self._rows.num_rows

    def batches(self, epoch, *, batch_size, seed):
        self.requests.append(batch_size)
        for x, y, weights in self._rows.batches(epoch, batch_size=batch_size, seed=seed):
            if self.on_batch is not None:
                self.on_batch()
            yield x.copy(), y.copy(), None if weights is None else weights.copy()


def _data(seed, rows=ROWS):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(rows, FEATURES)).astype(np.float32)
    y = (x @ rng.normal(size=FEATURES) + 0.3 * x[:, 0] ** 2).astype(np.float32)
    return x, y


def _regression_network():
    # Batch normalization: its batch statistics must see exactly the rows of each step.
    return dense_stack(FEATURES, hidden_units=(8,), batch_norm=True, seed=1)


def _train(network, x, **options):
    defaults = dict(epochs=2, batch_size=BATCH, seed=3, early_stopping=False)
    return train(network, x, **{**defaults, **options})


def _assert_same_run(streamed, in_memory):
    assert list(streamed.history.columns) == list(in_memory.history.columns)
    np.testing.assert_allclose(
        streamed.history.to_numpy(), in_memory.history.to_numpy(), rtol=RTOL, atol=ATOL
    )
    for mine, theirs in zip(
        streamed.model.get_weights(), in_memory.model.get_weights(), strict=True
    ):
        np.testing.assert_allclose(mine, theirs, rtol=RTOL, atol=ATOL)


# On TensorFlow Keras's engine shuffles in-memory arrays with tf.data, in another order.
@pytest.mark.skipif(not JAX, reason="in-memory arrays keep the source's order on JAX only")
def test_streamed_regression_matches_in_memory_arrays():
    x, y = _data(0)
    x_valid, y_valid = _data(1, rows=40)
    streamed = _train(
        _regression_network(), StreamedRows(x, y), validation_data=StreamedRows(x_valid, y_valid)
    )
    in_memory = _train(_regression_network(), x, y=y, validation_data=(x_valid, y_valid))
    assert streamed.engine == in_memory.engine
    assert list(streamed.history.columns) == ["loss", "mae", "val_loss", "val_mae"]
    _assert_same_run(streamed, in_memory)


@pytest.mark.skipif(not JAX, reason="in-memory arrays keep the source's order on JAX only")
def test_streamed_binary_with_weights_matches_in_memory_arrays():
    # Weights per row come in the source's batches; AUC accumulates over chunks.
    x, y = _data(2)
    labels = (y > np.median(y)).astype(np.float32)
    weights = np.random.default_rng(4).uniform(0.5, 2.0, ROWS).astype(np.float32)
    x_valid, y_valid = _data(5, rows=40)
    valid_labels = (y_valid > np.median(y)).astype(np.float32)

    def network():
        return binary_classifier(FEATURES, hidden_units=(8,), seed=2)

    streamed = _train(network(), StreamedRows(x, labels, weights),
                      validation_data=StreamedRows(x_valid, valid_labels))
    in_memory = _train(network(), x, y=labels, sample_weight=weights,
                       validation_data=(x_valid, valid_labels))
    assert "val_auc" in streamed.history.columns
    _assert_same_run(streamed, in_memory)


@pytest.mark.skipif(not JAX, reason="chunks are the JAX engine's")
def test_chunks_bound_the_rows_on_the_device(monkeypatch):
    import jax

    from dlstructured.training import _engine_jax

    chunk_rows = 2 * BATCH
    largest: list[int] = []

    # Arrays earlier tests left alive (not yet collected) are not this run's.
    earlier = {id(a) for a in jax.live_arrays()}

    def record_live_chunks():
        # Stacked training chunks are the engine's only 3-D arrays.
        largest.append(sum(a.shape[0] * a.shape[1] for a in jax.live_arrays()
                           if a.ndim == 3 and id(a) not in earlier))

    x, y = _data(0)
    monkeypatch.setattr(_engine_jax, "CHUNK_ROWS", chunk_rows)
    source = StreamedRows(x, y, on_batch=record_live_chunks)
    chunked = _train(_regression_network(), source)
    # At most the chunk in flight and the one before it, never the epoch.
    assert max(largest) <= 2 * chunk_rows < ROWS
    assert source.requests == [BATCH, BATCH]
    monkeypatch.setattr(_engine_jax, "CHUNK_ROWS", 10 * ROWS)
    whole = _train(_regression_network(), StreamedRows(x, y))
    _assert_same_run(chunked, whole)


def test_streamed_run_resumes_like_an_uninterrupted_one(tmp_path):
    x, y = _data(0)
    x_valid, y_valid = _data(1, rows=40)
    args = dict(validation_data=StreamedRows(x_valid, y_valid), checkpoint_dir=tmp_path)
    _train(_regression_network(), StreamedRows(x, y), epochs=2, **args)
    resumed = _train(_regression_network(), StreamedRows(x, y), epochs=4, resume=True, **args)
    whole = _train(_regression_network(), StreamedRows(x, y), epochs=4,
                   validation_data=StreamedRows(x_valid, y_valid))
    assert resumed.epochs_run == 4
    _assert_same_run(resumed, whole)


def test_streamed_early_stopping_restores_the_best_epoch():
    x, y = _data(0)
    result = _train(
        _regression_network(), StreamedRows(x, y), epochs=30, learning_rate=0.5,
        validation_data=StreamedRows(*_data(1, rows=40)),
        early_stopping=EarlyStopping(patience=1, min_delta=10.0),
    )
    assert result.stopped_early and result.epochs_run == 2
    assert result.best_epoch == 1


@pytest.mark.skipif(not JAX, reason="the keras engine is checked against the JAX engine")
def test_keras_engine_takes_a_validation_source():
    x, y = _data(0)
    x_valid, y_valid = _data(1, rows=40)
    network = dense_stack(FEATURES, hidden_units=(8,), seed=1)
    streamed = _train(network, StreamedRows(x, y), engine="keras",
                      validation_data=StreamedRows(x_valid, y_valid))
    in_memory = _train(dense_stack(FEATURES, hidden_units=(8,), seed=1), x, y=y,
                       engine="keras", validation_data=(x_valid, y_valid))
    _assert_same_run(streamed, in_memory)


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("y", np.zeros(ROWS, np.float32)),
        ("sample_weight", np.ones(ROWS, np.float32)),
        ("class_weight", "balanced"),
        ("valid_fraction", 0.2),
    ],
)
def test_source_refuses_arguments_its_batches_carry(option, value):
    x, y = _data(0)
    with pytest.raises(ValueError, match=f"`{option}` must be None when `x` is a BatchSource"):
        _train(_regression_network(), StreamedRows(x, y), **{option: value})


def test_source_refuses_array_validation_data():
    x, y = _data(0)
    with pytest.raises(TypeError, match="`validation_data` must be a BatchSource"):
        _train(_regression_network(), StreamedRows(x, y), validation_data=_data(1, rows=10))


def test_source_without_rows_is_refused():
    x, y = _data(0, rows=0)
    with pytest.raises(ValueError, match=r"Received: x.num_rows=0"):
        _train(_regression_network(), StreamedRows(x, y))


@pytest.mark.skipif(not JAX, reason="the JAX engine checks each batch")
def test_batch_with_the_wrong_feature_count_is_named():
    x, y = _data(0)
    with pytest.raises(ValueError, match=r"x of shape \(rows, 4\).*Received: x shape \(16, 3\)"):
        _train(_regression_network(), StreamedRows(x[:, :3], y))


@pytest.mark.skipif(not JAX, reason="the JAX engine counts the rows")
def test_source_that_gives_fewer_rows_than_it_has_is_named():
    class Short(StreamedRows):
        @property
        def num_rows(self):
            return ROWS + 10

    x, y = _data(0, rows=9 * BATCH)
    with pytest.raises(ValueError, match=r"fewer rows in epoch 0 than its num_rows=160"):
        _train(_regression_network(), Short(x, y))


def test_streamed_run_stops_on_an_infinite_loss():
    from dlstructured.training.loop import TrainingDivergedWarning

    x, y = _data(0)
    y[-1] = np.inf  # the last batch's loss is infinite
    with expect_warning(TrainingDivergedWarning, "diverged at epoch 1"):
        result = _train(_regression_network(), StreamedRows(x, y), epochs=3)
    assert result.diverged and result.epochs_run == 1


def test_streamed_run_returns_what_it_has_on_ctrl_c():
    from dlstructured.training.loop import TrainingInterruptedWarning

    class CtrlC(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if epoch == 1:
                raise KeyboardInterrupt

    x, y = _data(0)
    with expect_warning(TrainingInterruptedWarning, "interrupted at epoch 2"):
        result = _train(_regression_network(), StreamedRows(x, y), epochs=5, callbacks=[CtrlC()])
    assert result.interrupted and result.epochs_run == 2
