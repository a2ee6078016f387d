"""Every example script runs, with a few epochs, on the bundled data and on a CSV path."""

from __future__ import annotations

import os
import runpy
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
SCRIPTS = sorted(EXAMPLES.glob("[0-9][0-9]_*.py"))
# The examples are backend-agnostic user code: they run once, in the JAX session of `make test`
# (the library's own tests cover both backends).
pytestmark = pytest.mark.skipif(
    os.environ.get("KERAS_BACKEND", "tensorflow") != "jax",
    reason="examples run in the JAX session only",
)
LESSONS = (
    "single_neuron",
    "deep_neural_networks",
    "stochastic_gradient_descent",
    "overfitting_and_underfitting",
    "dropout_and_batch_normalization",
    "binary_classification",
)


def run_example(script: Path, *args: str, monkeypatch: pytest.MonkeyPatch) -> dict:
    monkeypatch.syspath_prepend(str(EXAMPLES))
    monkeypatch.setattr(sys, "argv", [str(script), *args])
    monkeypatch.delenv("DLSTRUCTURED_EXAMPLE_EPOCHS", raising=False)
    monkeypatch.delenv("DLSTRUCTURED_EXAMPLE_FIGURES", raising=False)
    return runpy.run_path(str(script), run_name="__main__")


def test_one_example_per_lesson() -> None:
    assert [path.stem[3:] for path in SCRIPTS] == list(LESSONS)


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda path: path.stem)
def test_example_runs_with_few_epochs(script: Path, tmp_path: Path, monkeypatch) -> None:
    from dlstructured.training.loop import TrainingDivergedWarning

    args = ("--epochs", "2", "--figures", str(tmp_path))
    if script.stem == "05_dropout_and_batch_normalization":
        # The lesson shows plain SGD on raw numbers diverging without batch normalization.
        with pytest.warns(TrainingDivergedWarning):
            namespace = run_example(script, *args, monkeypatch=monkeypatch)
    else:
        namespace = run_example(script, *args, monkeypatch=monkeypatch)
    pictures = sorted(path.name for path in tmp_path.glob("*.png"))
    assert pictures and all(name.startswith(script.stem[:3]) for name in pictures)
    from dlstructured import TrainingResult

    results = [value for value in namespace.values() if isinstance(value, TrainingResult)]
    assert results
    for result in results:
        assert 1 <= result.epochs_run <= 2
        assert len(result.history) == result.epochs_run


def test_example_takes_a_csv_path(tmp_path: Path, monkeypatch) -> None:
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"V1": rng.normal(size=60), "V2": rng.normal(size=60)})
    frame["Class"] = np.where(frame["V1"] > 0, "good", "bad")
    frame.index = range(1, 61)
    frame.to_csv(tmp_path / "ion.csv", index_label="")  # a leading row-number column, as R writes
    script = EXAMPLES / "06_binary_classification.py"
    namespace = run_example(
        script, str(tmp_path / "ion.csv"), "--epochs", "2", monkeypatch=monkeypatch
    )
    assert namespace["run"].target == "Class"
    assert "Unnamed: 0" not in namespace["data"].feature_names
    assert set(namespace["model"].predict(namespace["rows"])) <= {"good", "bad"}


def test_examples_open_as_notebooks() -> None:
    jupytext = pytest.importorskip("jupytext")
    for script in SCRIPTS:
        notebook = jupytext.read(script)
        kinds = [cell.cell_type for cell in notebook.cells]
        assert kinds[0] == "markdown" and kinds.count("code") >= 3, script.name
