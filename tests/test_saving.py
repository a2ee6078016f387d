"""Each model kind saves to one .keras file and loads without custom_objects."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from dlstructured import binary_classifier, dense_stack, linear_unit, multiclass_classifier, train

KINDS = {
    "linear": lambda: linear_unit(3, seed=0),
    "dense_bn_dropout": lambda: dense_stack(
        3, hidden_units=(8, 8), dropout_rate=0.2, batch_norm=True, input_batch_norm=True, seed=0
    ),
    "binary": lambda: binary_classifier(3, hidden_units=(4, 4), seed=0),
    "multiclass": lambda: multiclass_classifier(3, num_classes=3, hidden_units=(8,), seed=0),
}


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_save_load_round_trip_gives_identical_predictions(kind, tmp_path, rng):
    model = KINDS[kind]()
    x = rng.normal(size=(32, 3)).astype("float32")
    y = (x[:, 0] > 0).astype("float32") if kind != "multiclass" else (x[:, 0] > 0).astype(int) * 2
    train(model, x, y, epochs=2, batch_size=8, seed=0)
    before = model.predict(x, verbose=0)
    path = tmp_path / f"{kind}.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), before)
    assert [layer.name for layer in loaded.layers] == [layer.name for layer in model.layers]


_SAVE_ON_JAX = """
import json, sys, zipfile
import numpy as np, pandas as pd
from keras.src.saving import serialization_lib
from dlstructured import RunConfig, fit_table, load_model
from dlstructured.training.checkpoints import save_model_atomically

frame = pd.DataFrame({"x": np.linspace(0, 1, 40), "c": list("abcd") * 10})
frame["y"] = 3 * frame["x"]
run = fit_table(frame, "y", RunConfig(model="dense", hidden_units=(4,), epochs=1))
folder = sys.argv[1]
run.model.save(f"{folder}/tabular.keras")
save_model_atomically(run.model, f"{folder}/atomic.keras")
assert "tensorflow" not in sys.modules, "saving imported TensorFlow"
assert serialization_lib.tf._available is None  # Keras's own answer, not ours, is kept
def config(name):
    with zipfile.ZipFile(f"{folder}/{name}.keras") as archive:
        return json.loads(archive.read("config.json"))
import tensorflow  # now Keras's serializer sees TensorFlow and checks every value against it
run.model.save(f"{folder}/with_tf.keras")
assert config("tabular") == config("with_tf") == config("atomic")
np.testing.assert_array_equal(load_model(f"{folder}/tabular.keras").predict(frame.head(4)),
                              run.model.predict(frame.head(4)))
print("same files")
"""


def test_saving_on_jax_leaves_tensorflow_unimported_and_writes_the_same_file(tmp_path):
    import os
    import subprocess
    import sys
    from pathlib import Path

    source = str(Path(__file__).resolve().parents[1] / "src")
    env = {**os.environ, "KERAS_BACKEND": "jax",
           "PYTHONPATH": os.pathsep.join([source, os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, "-c", _SAVE_ON_JAX, str(tmp_path)], env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and "same files" in done.stdout, done.stderr[-3000:]
