"""Every model the library can build, with every preprocessing branch, loads in a new process.

The models are trained and saved here; a fresh Python process (``sys.executable``) that imports
only ``dlstructured`` loads them all and prints its predictions, which must equal this process's.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import dlstructured as dls
from dlstructured.errors import ModelFileError

SRC = str(Path(__file__).resolve().parents[1] / "src")


def mixed_frame(rows: int = 120, seed: int = 0) -> pd.DataFrame:
    """Numbers with gaps (missing indicator), 3 colours (one-hot), 30 shops (embedding), dates."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=rows)
    x_with_gaps = x.copy()
    x_with_gaps[::7] = np.nan
    frame = pd.DataFrame(
        {
            "x": x_with_gaps,
            "color": rng.choice(["red", "green", "blue"], size=rows),
            "shop": [f"s{i % 30}" for i in range(rows)],
            "when": pd.Timestamp("2024-01-01") + pd.to_timedelta(rng.integers(0, 900, rows), "D"),
        }
    )
    frame["price"] = x + rng.normal(scale=0.1, size=rows)
    frame["sold"] = np.where(x > 0, "yes", "no")
    frame["size"] = np.select([x < -0.5, x < 0.5], ["S", "M"], "L")
    return frame


def _trained(builder, frame, target, **options):
    data = dls.prepare(frame.drop(columns=[c for c in TARGETS if c != target]), target)
    model = builder(data, seed=0, **options)
    dls.train(model, data, epochs=2, batch_size=32, seed=0)
    return model


TARGETS = ("price", "sold", "size")

#: name -> (builder, target, builder options): each builder and each dense-stack variant.
KINDS = {
    "linear_unit": (dls.linear_unit, "price", {}),
    "dense_stack": (dls.dense_stack, "price", {"hidden_units": (8, 8)}),
    "dense_stack_dropout_bn": (
        dls.dense_stack,
        "price",
        {"hidden_units": (8, 8), "dropout_rate": 0.2, "batch_norm": True, "input_batch_norm": True},
    ),
    "dense_stack_bn_after_dropout": (
        dls.dense_stack,
        "price",
        {"hidden_units": (8,), "dropout_rate": 0.3, "batch_norm": True,
         "batch_norm_position": "after_dropout"},
    ),
    "binary_classifier": (dls.binary_classifier, "sold", {"hidden_units": (8,)}),
    "multiclass_classifier": (dls.multiclass_classifier, "size", {"hidden_units": (8,)}),
}

LOADER = textwrap.dedent(
    """
    import json, sys
    import numpy as np, pandas as pd
    import dlstructured
    {keras_first}
    frame = pd.read_pickle(sys.argv[1])
    out = {{}}
    for name, path in json.loads(sys.argv[2]).items():
        model = {load}(path)
        if hasattr(model, "preprocessor"):
            values = model.predict(frame)
            if model.task != "regression":
                values = model.predict_proba(frame).to_numpy()
        else:
            values = model.predict(np.asarray(frame, dtype="float32"), verbose=0)
        out[name] = np.asarray(values).tolist()
    print("RESULT" + json.dumps(out))
    """
)


def load_in_new_process(frame_path, files, load="dlstructured.load_model", keras_first=""):
    """Predictions of each file, loaded by a fresh interpreter that imports only dlstructured."""
    env = {**os.environ, "PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", "")}
    script = LOADER.format(load=load, keras_first=keras_first)
    completed = subprocess.run(
        [sys.executable, "-c", script, str(frame_path), json.dumps(files)],
        capture_output=True, text=True, env=env, timeout=300,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    line = next(s for s in completed.stdout.splitlines() if s.startswith("RESULT"))
    return json.loads(line[len("RESULT"):])


def _expected(model, frame):
    if model.task == "regression":
        return np.asarray(model.predict(frame))
    return model.predict_proba(frame).to_numpy()


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """Every kind trained and saved, plus checkpoint folders (a TabularModel and a network)."""
    folder = tmp_path_factory.mktemp("every_kind")
    frame = mixed_frame()
    rows = frame.drop(columns=list(TARGETS)).iloc[:25]
    frame_path = folder / "rows.pkl"
    rows.to_pickle(frame_path)
    files, expected = {}, {}
    for name, (builder, target, options) in KINDS.items():
        model = _trained(builder, frame, target, **options)
        files[name] = str(folder / f"{name}.keras")
        model.save(files[name])
        expected[name] = _expected(model, rows)
    # A checkpoint of a TabularModel: its best.keras holds the preprocessing too.
    data = dls.prepare(frame.drop(columns=["sold", "size"]), "price")
    model = dls.dense_stack(data, hidden_units=(8,), seed=0)
    run = folder / "run"
    dls.train(model, data, epochs=2, seed=0, checkpoint_dir=run)
    best = dls.load_checkpoint(run)
    expected["checkpoint"] = _expected(best, rows)
    return {"folder": folder, "frame": frame_path, "files": files, "expected": expected,
            "run": str(run)}


def test_every_kind_loads_in_a_new_process_with_identical_predictions(saved):
    got = load_in_new_process(saved["frame"], saved["files"])
    assert set(got) == set(KINDS)
    for name in KINDS:
        np.testing.assert_allclose(np.asarray(got[name]), saved["expected"][name], rtol=1e-6,
                                   err_msg=name)


def test_keras_load_model_after_importing_dlstructured(saved):
    files = {name: saved["files"][name] for name in ("dense_stack", "multiclass_classifier")}
    got = load_in_new_process(
        saved["frame"], files, load="keras.saving.load_model", keras_first="import keras"
    )
    for name in files:
        np.testing.assert_allclose(np.asarray(got[name]), saved["expected"][name], rtol=1e-6)


def test_checkpoint_best_model_loads_in_a_new_process(saved):
    got = load_in_new_process(
        saved["frame"], {"checkpoint": saved["run"]}, load="dlstructured.load_checkpoint"
    )
    np.testing.assert_allclose(np.asarray(got["checkpoint"]), saved["expected"]["checkpoint"],
                               rtol=1e-6)


def test_issue_reproduction_embedded_shop_column_predicts_after_loading(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.normal(size=200)
    frame = pd.DataFrame({"x": x, "shop": [f"s{i % 30}" for i in range(200)],
                          "y": x + rng.normal(scale=0.1, size=200)})
    data = dls.prepare(frame, "y")
    assert len(data.embeddings) == 1
    model = dls.dense_stack(data, hidden_units=(8,), seed=0)
    dls.train(model, data, epochs=3, seed=0)
    model.save(tmp_path / "m.keras")
    frame.drop(columns="y").to_pickle(tmp_path / "rows.pkl")
    got = load_in_new_process(tmp_path / "rows.pkl", {"m": str(tmp_path / "m.keras")})
    np.testing.assert_allclose(got["m"], model.predict(frame.drop(columns="y")), rtol=1e-6)


def test_a_class_the_file_names_but_no_one_defines_gives_a_short_message(saved, tmp_path):
    import zipfile

    source = saved["files"]["dense_stack"]
    target = tmp_path / "renamed.keras"
    with zipfile.ZipFile(source) as old, zipfile.ZipFile(target, "w") as new:
        for item in old.infolist():
            data = old.read(item)
            if item.filename == "config.json":
                data = data.replace(b"CategoryEmbedding", b"CategoryEmbeddingV9")
            new.writestr(item, data)
    with pytest.raises(ModelFileError) as caught:
        dls.load_model(target)
    message = str(caught.value)
    assert len(message) < 400, message
    assert str(target) in message and "'dlstructured>CategoryEmbeddingV9'" in message
