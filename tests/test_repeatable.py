"""Repeatable runs: the same seeded training in two separate processes gives the same numbers."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import keras
import numpy as np

RUN = """
import json
import numpy as np
import dlstructured

def run():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(96, 4)).astype("float32")
    y = np.sin(x[:, 0]) + x[:, 1] * x[:, 2]
    model = dlstructured.dense_stack(4, hidden_units=(16, 8), dropout_rate=0.3, batch_norm=True,
                                     input_batch_norm=True, seed=11)
    result = dlstructured.train(model, x, y, epochs=5, batch_size=16, valid_fraction=0.25, seed=3,
                                early_stopping=False)
    import keras
    return {
        "backend": keras.backend.backend(),
        "engine": result.engine,
        "history": result.history.to_dict(orient="list"),
        "predictions": model.predict(x, verbose=0)[:, 0].tolist(),
    }

if __name__ == "__main__":
    print(json.dumps(run()))
"""


def test_same_seed_gives_identical_history_and_predictions_in_two_processes():
    """One run in a fresh process, one here, after whatever this test process did before."""
    env = {**os.environ, "KERAS_BACKEND": keras.backend.backend()}
    process = subprocess.Popen([sys.executable, "-c", RUN], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, env=env)
    namespace: dict = {"__name__": "repeatable_run"}
    exec(compile(RUN, "<repeatable run>", "exec"), namespace)  # noqa: S102 - our own code
    here = json.loads(json.dumps(namespace["run"]()))
    stdout, stderr = process.communicate(timeout=300)
    assert process.returncode == 0, stderr[-3000:]
    there = json.loads(stdout.strip().splitlines()[-1])
    assert there["backend"] == here["backend"] == keras.backend.backend()
    assert len(here["history"]["loss"]) == 5
    # Bit for bit: JSON floats round-trip exactly.
    assert here["history"] == there["history"]
    assert here["predictions"] == there["predictions"]
    assert np.isfinite(here["predictions"]).all()
