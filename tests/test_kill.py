"""Training processes killed at random moments lose nothing: slow tests, run by ``make fuzz``.

``tests/kill_harness.py`` forks the training processes and kills them; these tests check every
folder a kill left behind, and that the runs resumed after kills and signals end exactly where an
uninterrupted run ends.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pandas as pd
import pytest

from dlstructured import CheckpointError, load_checkpoint
from dlstructured.training.checkpoints import read_checkpoint

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(sys.platform == "win32", reason="the harness forks"),
]
HARNESS = Path(__file__).with_name("kill_harness.py")
KILLS = 20


def _harness(mode: str, out: Path, *extra: str) -> dict:
    """Run the harness in its own process group, so a timeout also ends its forked children."""
    env = {**os.environ, "KERAS_BACKEND": keras.backend.backend()}
    process = subprocess.Popen([sys.executable, str(HARNESS), mode, str(out), *extra],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               env=env, start_new_session=True)
    try:
        stdout, stderr = process.communicate(timeout=1200)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.communicate()
        raise
    assert process.returncode == 0, stderr[-4000:]
    return json.loads(stdout.strip().splitlines()[-1])


def _same_run(final: dict, reference: dict) -> None:
    assert final["epochs_run"] == reference["epochs_run"]
    assert final["stopped_early"] == reference["stopped_early"]
    assert final["best_epoch"] == reference["best_epoch"]
    pd.testing.assert_frame_equal(pd.DataFrame(final["history"]),
                                  pd.DataFrame(reference["history"]), rtol=1e-5)


def _data():
    sys.path.insert(0, str(HARNESS.parent))
    try:
        import kill_harness
    finally:
        sys.path.remove(str(HARNESS.parent))
    return kill_harness.make_data()


def test_twenty_random_kills_each_leave_a_loadable_checkpoint(tmp_path):
    report = _harness("kill", tmp_path, "--kills", str(KILLS), "--seed", "0")
    events = report["events"]
    kills = [event for event in events if event["killed"]]
    assert len(kills) == KILLS
    x, _ = _data()
    loaded = 0
    for event in kills:
        snapshot = tmp_path / "snapshots" / event["snapshot"]
        if event["epoch_after"] is None:  # killed before any epoch completed: nothing to lose
            with pytest.raises(CheckpointError):
                load_checkpoint(snapshot)
            continue
        state = read_checkpoint(snapshot)
        assert state.epoch == event["epoch_after"] >= (event["epoch_before"] or 0)
        assert len(state.rows) == state.epoch
        assert all(np.isfinite(value).all() for value in state.variables)
        predictions = load_checkpoint(snapshot).predict(x, verbose=0)
        assert predictions.shape == (len(x), 1) and np.isfinite(predictions).all()
        loaded += 1
    assert loaded >= KILLS // 2
    # Every chain of kills and resumes ended exactly where the uninterrupted run ends.
    reference = pd.DataFrame(report["reference"]["history"])
    for chain in report["chains"]:
        rows = pd.DataFrame(read_checkpoint(chain).rows)[list(reference.columns)]
        pd.testing.assert_frame_equal(rows, reference, rtol=1e-5)
    _same_run(report["final"], report["reference"])
    print(json.dumps({"kills": len(kills), "checkpoints_loaded": loaded,
                      "chains_completed": len(report["chains"]) + 1,
                      "seconds": report["seconds"]}))


def test_sigint_and_sigterm_return_the_result_and_resume_to_the_same_end(tmp_path):
    report = _harness("signals", tmp_path, "--seed", "1")
    for stop in report["stops"]:
        assert stop["exit_status"] == 0, stop  # train() returned; the process ended normally
        result = stop["result"]
        assert result["interrupted"] and result["epochs_run"] >= 1
        assert result["epochs_run"] == len(result["history"]["loss"])
        assert stop["pointer_epoch"] >= 1
        assert [name for name in stop["files"] if not name.startswith("state-")] == [
            "best.keras", "checkpoint.json"
        ]
    _same_run(report["final"], report["reference"])
