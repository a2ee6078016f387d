"""Model files and run folders written by dlstructured 0.1.0 still load and mean the same.

The fixtures in ``tests/fixtures/v0_1_0`` were written once by 0.1.0 (see its ``make.py``); each
model must load with the current code, on the backend of the session, and predict what 0.1.0
predicted on the same rows.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pandas as pd
import pytest

import dlstructured as dls

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "v0_1_0"
EXPECTED = json.loads((FIXTURES / "expected.json").read_text())
TABULAR = sorted(name for name in EXPECTED if name != "network")


def _rows() -> pd.DataFrame:
    return pd.read_csv(FIXTURES / "rows.csv", parse_dates=["day"])


@pytest.mark.parametrize("name", TABULAR)
def test_a_0_1_0_model_file_predicts_what_it_predicted(name):
    model = dls.load_model(FIXTURES / f"{name}.keras")
    rows = _rows()
    expected = EXPECTED[name]
    predictions = np.asarray(model.predict(rows))
    if predictions.dtype.kind in "fc":
        np.testing.assert_allclose(predictions, expected["predict"], rtol=1e-5, atol=1e-6)
    else:
        assert predictions.tolist() == expected["predict"]
    if "predict_proba" in expected:
        np.testing.assert_allclose(
            model.predict_proba(rows).to_numpy(), expected["predict_proba"], rtol=1e-5, atol=1e-6
        )


def test_a_0_1_0_plain_network_loads_with_keras_after_import():
    network = keras.saving.load_model(FIXTURES / "network.keras")
    x = np.load(FIXTURES / "network_inputs.npy")
    np.testing.assert_allclose(
        network.predict(x, verbose=0), EXPECTED["network"]["predict"], rtol=1e-5, atol=1e-6
    )


def test_every_0_1_0_model_file_loads_in_a_fresh_process(backend):
    # A fresh process has imported nothing but dlstructured: no layer is registered by accident.
    script = f"""
import json, numpy as np, pandas as pd, dlstructured as dls
fixtures = {str(FIXTURES)!r}
rows = pd.read_csv(fixtures + "/rows.csv", parse_dates=["day"])
out = {{}}
for name in {TABULAR!r}:
    out[name] = np.asarray(dls.load_model(fixtures + "/" + name + ".keras").predict(rows)).tolist()
print(json.dumps(out))
"""
    completed = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=300,
        env={**__import__("os").environ, "KERAS_BACKEND": backend},
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    got = json.loads(completed.stdout.strip().splitlines()[-1])
    for name in TABULAR:
        expected = EXPECTED[name]["predict"]
        if isinstance(expected[0], str):
            assert got[name] == expected
        else:
            np.testing.assert_allclose(got[name], expected, rtol=1e-5, atol=1e-6)
