"""The hyperparameter search: space checks, pruning, resuming from SQLite, the `tune` command."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

optuna = pytest.importorskip("optuna")

import dlstructured  # noqa: E402
from dlstructured import RunConfig  # noqa: E402
from dlstructured.cli import main  # noqa: E402

SMALL = RunConfig(model="dense", epochs=2, patience=0)  # the fastest model to search
SPACE = {"learning_rate": ("log", 1e-3, 1e-2), "width": [4, 8]}
SRC = str(Path(__file__).resolve().parents[1] / "src")


def _table(rows: int = 60) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(rows, 2))
    return pd.DataFrame({"a": x[:, 0], "b": x[:, 1], "y": 3 * x[:, 0] - x[:, 1] + 2})


def _study(url: str):
    return optuna.load_study(study_name="dlstructured-search", storage=url)


def test_search_returns_configs_trials_curves_and_pictures(tmp_path):
    found = dlstructured.search(_table(), "y", SPACE, trials=3, config=SMALL, out=tmp_path)
    assert isinstance(found, dlstructured.SearchResult)
    assert list(found.trials.columns) == ["number", "state", "value", "epochs_run",
                                          "learning_rate", "width"]
    assert list(found.trials["state"]) == ["COMPLETE"] * 3
    assert found.best_value == found.trials["value"].min()
    best = found.trials.loc[found.best_trial]
    assert found.best_config.hidden_units == (best["width"],) * 3  # depth of the start config
    assert found.best_config.learning_rate == pytest.approx(best["learning_rate"])
    assert sorted(found.curves) == [0, 1, 2]
    assert list(found.curves[0].index) == [1, 2]
    assert {"loss", "val_loss"} <= set(found.curves[0].columns)
    assert [p.name for p in found.pictures] == [
        "search_history.png", "option_learning_rate.png", "option_width.png"]
    for picture in found.pictures:
        assert picture.read_bytes()[:4] == b"\x89PNG"
    model = dlstructured.load_model(found.model_path)
    assert model.predict(_table(5)).shape[0] == 5
    assert len(pd.read_csv(tmp_path / "trials.csv")) == 3


def test_width_and_depth_make_hidden_units():
    found = dlstructured.search(_table(), "y", {"width": [6], "depth": [2]}, trials=1,
                                config=SMALL)
    assert found.best_config.hidden_units == (6, 6)


@pytest.mark.parametrize(
    ("space", "error", "words"),
    [
        ({"widht": (8, 64)}, ValueError, ["unknown option 'widht'", "width, depth"]),
        ({"seed": [0, 1]}, ValueError, ["unknown option 'seed'"]),
        ({"dropout_rate": (0.5, 0.1)}, ValueError, ["impossible range", "space['dropout_rate']"]),
        ({"learning_rate": ("log", 0.0, 0.1)}, ValueError, ["impossible log range"]),
        ({"dropout_rate": (0.0, 1.5)}, ValueError, ["space['dropout_rate']", "1.5"]),
        ({"batch_size": []}, ValueError, ["lists no values"]),
        ({"batch_size": 64}, TypeError, ["space['batch_size']", "Received"]),
        ({"width": ("linear", 1, 2)}, TypeError, ["log range"]),
        ({"width": (8, 64), "hidden_units": [(8,)]}, ValueError, ["`hidden_units` together"]),
        ({}, TypeError, ["non-empty dict"]),
    ],
)
def test_bad_spaces_are_refused_before_training(space, error, words):
    with pytest.raises(error) as caught:
        dlstructured.search(_table(), "y", space, trials=1, config=SMALL)
    for word in words:
        assert word in str(caught.value)


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="Received: trials=0"):
        dlstructured.search(_table(), "y", SPACE, trials=0, config=SMALL)
    with pytest.raises(ValueError, match="valid_fraction"):
        dlstructured.search(_table(), "y", SPACE, config=SMALL.replace(valid_fraction=0.0))


def test_a_storage_that_cannot_be_opened_says_so(tmp_path):
    url = f"sqlite:///{tmp_path}/no/such/folder/study.db"
    with pytest.raises(ValueError, match="`storage` cannot be opened") as caught:
        dlstructured.search(_table(), "y", SPACE, trials=1, config=SMALL, storage=url)
    assert f"Received: storage={url!r}" in str(caught.value)
    with pytest.raises(TypeError, match="database URL"):
        dlstructured.search(_table(), "y", SPACE, trials=1, config=SMALL, storage="study.db")


def test_the_pruner_stops_trials_early(tmp_path):
    url = f"sqlite:///{tmp_path}/study.db"
    everything = optuna.pruners.ThresholdPruner(upper=1e-12)  # every loss is over it
    with pytest.raises(ValueError, match="no trial of the search completed"):
        dlstructured.search(_table(), "y", SPACE, trials=2, storage=url, pruner=everything,
                            config=RunConfig(model="dense", epochs=6, patience=0))
    trials = _study(url).trials
    assert [t.state.name for t in trials] == ["PRUNED", "PRUNED"]
    assert [t.user_attrs["epochs_run"] for t in trials] == [1, 1]  # of 6


def test_a_stored_study_continues_where_it_stopped(tmp_path):
    url = f"sqlite:///{tmp_path}/study.db"
    first = dlstructured.search(_table(), "y", SPACE, trials=2, config=SMALL, storage=url)
    again = dlstructured.search(_table(), "y", SPACE, trials=3, config=SMALL, storage=url)
    assert len(again.trials) == 3
    pd.testing.assert_frame_equal(again.trials.iloc[:2], first.trials)


_CHILD = """
import sys
from pathlib import Path
import numpy as np, optuna, pandas as pd
import dlstructured
rng = np.random.default_rng(0)
x = rng.normal(size=(300, 2))
table = pd.DataFrame({"a": x[:, 0], "b": x[:, 1], "y": 3 * x[:, 0] - x[:, 1]})
space = {"learning_rate": ("log", 1e-3, 1e-2)}
def config(epochs):
    return dlstructured.RunConfig(model="dense", epochs=epochs, patience=0, batch_size=16)
class Training(optuna.pruners.BasePruner):  # asked after each epoch: says training is under way
    def prune(self, study, trial):
        Path(sys.argv[2]).write_text(str(trial.number))
        return False
dlstructured.search(table, "y", space, trials=1, storage=sys.argv[1], config=config(3))
dlstructured.search(table, "y", space, trials=3, storage=sys.argv[1], pruner=Training(),
                    config=config(3000))
"""


def _stop(child: subprocess.Popen, how: signal.Signals) -> None:
    """Send ``how`` and wait for the child to end. Python loses a ``KeyboardInterrupt`` that
    lands in a finalizer (it prints "Exception ignored in ..." and goes on), so a SIGINT the
    child is still running after is sent again, as a user presses Ctrl-C again."""
    for _ in range(3):
        child.send_signal(how)
        try:
            child.communicate(timeout=30)
            return
        except subprocess.TimeoutExpired:
            continue
    child.kill()
    _, errors = child.communicate()
    pytest.fail(f"the search did not end on {how.name}:\n{errors.decode()[-3000:]}")


@pytest.mark.slow
@pytest.mark.parametrize("how", [signal.SIGINT, signal.SIGTERM])
def test_a_killed_search_resumes_and_reruns_the_interrupted_trial(tmp_path, how):
    url = f"sqlite:///{tmp_path}/study.db"
    marker = tmp_path / "training"
    env = {**os.environ, "PYTHONPATH": SRC}
    child = subprocess.Popen([sys.executable, "-c", textwrap.dedent(_CHILD), url, str(marker)],
                             env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 300
    while not marker.exists():  # the first trial finished and the second trains its 3000 epochs
        assert child.poll() is None, child.stderr.read().decode()
        assert time.monotonic() < deadline
        time.sleep(0.05)
    _stop(child, how)  # Optuna records a KeyboardInterrupt anywhere in the trial as FAIL
    study = _study(url)  # a killed search leaves a study that loads
    states = [t.state.name for t in study.trials]
    assert states[0] == "COMPLETE"
    assert states[1] == ("FAIL" if how == signal.SIGINT else "RUNNING")
    interrupted = study.trials[1].params

    found = dlstructured.search(_table(300), "y", {"learning_rate": ("log", 1e-3, 1e-2)},
                                trials=3, storage=url,
                                config=RunConfig(model="dense", epochs=3, patience=0,
                                                 batch_size=16))
    study = _study(url)
    assert [t.state.name for t in study.trials] == ["COMPLETE", "FAIL", "COMPLETE", "COMPLETE"]
    assert study.trials[2].params == interrupted
    assert study.trials[2].user_attrs["retry_of"] == 1
    assert list(found.trials["state"]) == ["COMPLETE", "FAIL", "COMPLETE", "COMPLETE"]


def test_tune_command_prints_progress_and_writes_the_best_model(tmp_path, capsys):
    data = tmp_path / "table.csv"
    _table().to_csv(data, index=False)
    out = tmp_path / "tuned"
    status = main(["tune", str(data), "--target", "y", "--trials", "2", "--epochs", "2",
                   "--out", str(out), "--storage", f"sqlite:///{tmp_path}/study.db"])
    captured = capsys.readouterr()
    assert status == 0, captured.err
    assert "trial 1 of 2: val_loss" in captured.err
    assert "trial 2 of 2: val_loss" in captured.err and "best " in captured.err
    assert (out / "model.keras").is_file() and (out / "search_history.png").is_file()
    assert "model.keras" in captured.out


def test_tune_without_optuna_says_what_to_install(tmp_path, capsys, monkeypatch):
    data = tmp_path / "table.csv"
    _table().to_csv(data, index=False)
    monkeypatch.setitem(sys.modules, "optuna", None)  # import optuna now fails
    status = main(["tune", str(data), "--target", "y", "--out", str(tmp_path / "out")])
    lines = capsys.readouterr().err.strip().splitlines()
    assert status == 2
    assert len(lines) == 1 and "pip install 'dlstructured[search]'" in lines[0]


def test_tune_with_a_bad_storage_exits_2(tmp_path, capsys):
    data = tmp_path / "table.csv"
    _table().to_csv(data, index=False)
    status = main(["tune", str(data), "--target", "y", "--out", str(tmp_path / "out"),
                   "--storage", f"sqlite:///{tmp_path}/missing/dir/s.db"])
    assert status == 2
    assert "`storage` cannot be opened" in capsys.readouterr().err
