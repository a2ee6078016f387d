"""A loaded model predicts from 8 threads at once exactly as it does sequentially."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pandas as pd

import dlstructured
from dlstructured._threadsafe import predict_on_batch

THREADS = 8
CALLS_PER_THREAD = 25
ROWS_PER_CALL = 50  # 8 * 25 * 50 = 10,000 predictions in all


def _predict_concurrently(predict, chunks):
    """Run ``predict`` over every chunk from 8 threads at once; results in chunk order."""
    with ThreadPoolExecutor(max_workers=THREADS) as pool:
        return list(pool.map(predict, chunks))


def test_loaded_network_predicts_the_same_from_8_threads(tmp_path, rng):
    network = dlstructured.dense_stack(6, hidden_units=(16, 8), dropout_rate=0.3, batch_norm=True,
                                       seed=0)
    x = rng.normal(size=(64, 6)).astype("float32")
    dlstructured.train(network, x, x.sum(axis=1), epochs=2, batch_size=16, seed=0)
    network.save(tmp_path / "model.keras")
    model = dlstructured.load_model(tmp_path / "model.keras")

    rows = rng.normal(size=(THREADS * CALLS_PER_THREAD * ROWS_PER_CALL, 6)).astype("float32")
    chunks = np.split(rows, THREADS * CALLS_PER_THREAD)

    def predict(chunk):
        return predict_on_batch(model, chunk)

    sequential = [predict(chunk) for chunk in chunks]
    concurrent = _predict_concurrently(predict, chunks)
    assert sum(len(c) for c in concurrent) == 10_000
    for alone, together in zip(sequential, concurrent, strict=True):
        np.testing.assert_array_equal(together, alone)


def test_loaded_tabular_model_predicts_the_same_from_8_threads(tmp_path, rng):
    frame = pd.DataFrame({
        "size": rng.uniform(1, 10, 120),
        "colour": rng.choice(["red", "green", "blue"], 120),
        "label": rng.choice(["yes", "no"], 120),
    })
    data = dlstructured.prepare(frame, target="label", seed=0)
    model = dlstructured.binary_classifier(data, hidden_units=(8,), seed=0)
    dlstructured.train(model, data, epochs=2, seed=0)
    model.save(tmp_path / "model.keras")
    loaded = dlstructured.load_model(tmp_path / "model.keras")
    rows = frame.drop(columns="label").sample(
        THREADS * CALLS_PER_THREAD * ROWS_PER_CALL, replace=True, random_state=0
    ).reset_index(drop=True)
    chunks = [rows.iloc[i:i + ROWS_PER_CALL] for i in range(0, len(rows), ROWS_PER_CALL)]

    def predict(chunk):
        return np.asarray(loaded.predict_proba(chunk))

    sequential = [predict(chunk) for chunk in chunks]
    concurrent = _predict_concurrently(predict, chunks)
    assert sum(len(c) for c in concurrent) == 10_000
    for alone, together in zip(sequential, concurrent, strict=True):
        np.testing.assert_array_equal(together, alone)


def test_predict_on_batch_matches_keras_and_sees_new_weights(rng):
    # The lean JAX path reads the variables at each call: training in between changes the
    # predictions, exactly as Keras's own predict_on_batch sees them (batch norm and dropout in
    # inference mode).
    network = dlstructured.dense_stack(6, hidden_units=(16, 8), dropout_rate=0.3, batch_norm=True,
                                       seed=0)
    x = rng.normal(size=(64, 6)).astype("float32")
    before = predict_on_batch(network, x)
    np.testing.assert_allclose(before, network.predict_on_batch(x), rtol=1e-5, atol=1e-6)
    dlstructured.train(network, x, x.sum(axis=1), epochs=2, batch_size=16, seed=0)
    after = predict_on_batch(network, x)
    assert not np.allclose(after, before)
    np.testing.assert_allclose(after, network.predict_on_batch(x), rtol=1e-5, atol=1e-6)
