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
