"""Kill training processes at random moments and keep what each kill left behind.

Run by ``tests/test_kill.py`` (``make fuzz``), not collected by pytest. The harness imports Keras
once, then forks one child per training attempt (a fresh interpreter per attempt would spend
most of the time importing). No JAX or TensorFlow computation runs in the harness before a fork,
so every child starts clean.

Modes:

``kill``
    A reference run trains without interruption. Then children train into ``run/``, each
    resuming from the checkpoint the previous one left (or starting fresh if there is none), and
    each is SIGKILLed at a random moment: a random delay after its first completed epoch, or for
    one attempt in four a random delay after its start. After every attempt the folder is copied
    to ``snapshots/attempt-NN`` exactly as the kill left it. When a chain of kills and resumes
    reaches the end of the run, its folder is kept as ``chain-NN`` and a new chain starts. A last
    child resumes the current chain to the end.
``signals``
    A child is stopped by SIGINT (Python's own ``KeyboardInterrupt``), one by SIGTERM (which the
    child's own handler turns into ``KeyboardInterrupt``, as the command line does); each writes
    the result ``train`` returned. A last child resumes to the end.

It prints one JSON line with what happened; the test checks the folders.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import select
import shutil
import signal
import sys
import time
from pathlib import Path

import keras  # noqa: F401 - imported once here, before the forks
import numpy as np

import dlstructured
from dlstructured.training import loop as training  # noqa: F401 - the forked children find it loaded
from dlstructured.training.checkpoints import CheckpointWriter

# Write a checkpoint at every epoch (no spacing in time): the most writes for a kill to land in,
# and runs that last long enough for the kills and signals to reach them mid-training.
CheckpointWriter.WRITE_SHARE_FACTOR = CheckpointWriter.MIN_WRITE_INTERVAL = 0.0

EPOCHS = 200  # long enough that a signal a fraction of a second in finds training running
SETTINGS = dict(epochs=EPOCHS, batch_size=16, valid_fraction=0.25, learning_rate=0.003, seed=4,
                early_stopping=dlstructured.EarlyStopping(patience=25, min_delta=0.0))


def make_data():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(96, 4)).astype("float32")
    return x, np.sin(x[:, 0]) + x[:, 1] * x[:, 2]


def make_model():
    return dlstructured.dense_stack(4, hidden_units=(16,), dropout_rate=0.2, batch_norm=True,
                                    seed=1)


def _child(folder: Path, ready_fd: int, result_path: Path | None, handle_sigterm: bool) -> None:
    """Train into ``folder`` (resuming if it holds a checkpoint); never returns."""
    status = 1
    try:
        # Python's own Ctrl-C handler, even where the harness was started with SIGINT ignored
        # (as a non-interactive shell starts background jobs).
        signal.signal(signal.SIGINT, signal.default_int_handler)
        if handle_sigterm:
            def interrupt(signum, frame):
                raise KeyboardInterrupt(f"signal {signum}")

            signal.signal(signal.SIGTERM, interrupt)

        class Ready(keras.callbacks.Callback):
            sent = False

            def on_epoch_end(self, epoch, logs=None):
                if not self.sent:
                    os.write(ready_fd, b"r")
                    self.sent = True

        x, y = make_data()
        resume = (folder / "checkpoint.json").exists()
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            result = dlstructured.train(make_model(), x, y, checkpoint_dir=folder, resume=resume,
                                        callbacks=[Ready()], **SETTINGS)
        if result_path is not None:
            result_path.write_text(json.dumps({
                "epochs_run": result.epochs_run,
                "interrupted": result.interrupted,
                "interrupted_epoch": result.interrupted_epoch,
                "stopped_early": result.stopped_early,
                "best_epoch": result.best_epoch,
                "history": result.history.to_dict(orient="list"),
            }))
        status = 0
    except BaseException as error:  # noqa: BLE001 - report and exit, never return to the harness
        sys.stderr.write(f"child failed: {type(error).__name__}: {error}\n")
    finally:
        sys.stderr.flush()
        os._exit(status)


def _start(folder: Path, result_path: Path | None = None, handle_sigterm: bool = False):
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read_fd)
        _child(folder, write_fd, result_path, handle_sigterm)
    os.close(write_fd)
    return pid, read_fd


def _wait_ready(read_fd: int, timeout: float) -> bool:
    ready, _, _ = select.select([read_fd], [], [], timeout)
    return bool(ready) and os.read(read_fd, 1) == b"r"


def _finish(pid: int, read_fd: int) -> int:
    _, status = os.waitpid(pid, 0)
    os.close(read_fd)
    return status


def _run_to_end(folder: Path, result_path: Path) -> dict:
    pid, read_fd = _start(folder, result_path)
    status = _finish(pid, read_fd)
    if status != 0 or not result_path.exists():
        raise SystemExit(f"a run that should finish exited with status {status}")
    return json.loads(result_path.read_text())


def _pointer_epoch(folder: Path) -> int | None:
    try:
        return json.loads((folder / "checkpoint.json").read_text())["epoch"]
    except (OSError, ValueError, KeyError):
        return None


def _finished(folder: Path) -> bool:
    """Whether the run in ``folder`` has ended (all epochs, or stopped early)."""
    try:
        pointer = json.loads((folder / "checkpoint.json").read_text())
        state = json.loads((folder / pointer["state"] / "state.json").read_text())
    except (OSError, ValueError, KeyError):
        return False
    return state["stopped_early"] or state["epoch"] >= state["epochs"]


def kill_mode(out: Path, kills: int, rng: random.Random) -> dict:
    reference = _run_to_end(out / "reference", out / "reference.json")
    run, snapshots = out / "run", out / "snapshots"
    snapshots.mkdir(parents=True)
    events, chains, attempts = [], [], 0
    while sum(event["killed"] for event in events) < kills and attempts < 2 * kills:
        attempts += 1
        if _finished(run):  # a kill-and-resume chain reached the end: keep it, start another
            chains.append(str(run.rename(out / f"chain-{len(chains) + 1:02d}")))
        before = _pointer_epoch(run)
        from_start = rng.random() < 0.25
        delay = rng.uniform(0.0, 2.5) if from_start else rng.uniform(0.0, 0.6)
        started = time.monotonic()
        pid, read_fd = _start(run)
        if not from_start:
            _wait_ready(read_fd, timeout=120.0)
        time.sleep(max(0.0, delay - (time.monotonic() - started)) if from_start else delay)
        os.kill(pid, signal.SIGKILL)
        status = _finish(pid, read_fd)
        killed = os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL
        snapshot = snapshots / f"attempt-{attempts:02d}"
        if run.exists():
            shutil.copytree(run, snapshot)
        else:
            snapshot.mkdir()
        events.append({"attempt": attempts, "snapshot": snapshot.name, "killed": killed,
                       "from_start": from_start, "delay": round(delay, 3),
                       "epoch_before": before, "epoch_after": _pointer_epoch(run)})
    final = _run_to_end(run, out / "final.json")
    return {"mode": "kill", "events": events, "chains": chains, "reference": reference,
            "final": final}


def signals_mode(out: Path, rng: random.Random) -> dict:
    reference = _run_to_end(out / "reference", out / "reference.json")
    run = out / "run"
    stops = []
    for name, number in (("SIGINT", signal.SIGINT), ("SIGTERM", signal.SIGTERM)):
        result_path = out / f"{name}.json"
        pid, read_fd = _start(run, result_path, handle_sigterm=number == signal.SIGTERM)
        _wait_ready(read_fd, timeout=120.0)
        time.sleep(rng.uniform(0.05, 0.3))
        os.kill(pid, number)
        status = _finish(pid, read_fd)
        stops.append({"signal": name, "exit_status": status, "pointer_epoch": _pointer_epoch(run),
                      "result": json.loads(result_path.read_text())
                      if result_path.exists() else None,
                      "files": sorted(os.listdir(run))})
    final = _run_to_end(run, out / "final.json")
    return {"mode": "signals", "stops": stops, "reference": reference, "final": final}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("mode", choices=("kill", "signals"))
    parser.add_argument("out", type=Path)
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    arguments = parser.parse_args()
    arguments.out.mkdir(parents=True, exist_ok=True)
    rng = random.Random(arguments.seed)
    started = time.monotonic()
    if arguments.mode == "kill":
        report = kill_mode(arguments.out, arguments.kills, rng)
    else:
        report = signals_mode(arguments.out, rng)
    report["seconds"] = round(time.monotonic() - started, 1)
    print(json.dumps(report))


if __name__ == "__main__":
    main()
