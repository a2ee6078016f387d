"""Training across processes: dlstructured.distributed, `dlstructured train --num-processes`.

The fast tests check arguments, the row-shard rule and the errors that need no second process.
The slow ones start real processes of `dlstructured train` on 127.0.0.1 (a free port each), two
virtual CPU devices per process, and check what they write, agree on and do when one dies.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import keras
import numpy as np
import pandas as pd
import pytest

import dlstructured
from dlstructured import RunError, distributed
from dlstructured.cli import main

SOURCE = str(Path(dlstructured.__file__).resolve().parents[1])
ON_JAX = keras.backend.backend() == "jax"
#: How long a slow test lets a pair of workers run before it calls them hung.
WORKER_LIMIT = 240


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _table(path: Path, rows: int = 203) -> Path:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(rows, 3))
    pd.DataFrame({"a": x[:, 0], "b": x[:, 1], "c": x[:, 2],
                  "y": x @ [1.0, 2.0, -1.0] + 0.5}).to_csv(path, index=False)
    return path


def _environment() -> dict[str, str]:
    return {**os.environ, "KERAS_BACKEND": "jax", "PYTHONUNBUFFERED": "1",
            "XLA_FLAGS": "--xla_force_host_platform_device_count=2",
            "PYTHONPATH": os.pathsep.join([SOURCE, os.environ.get("PYTHONPATH", "")])}


def _start(command: list[str], log: Path) -> subprocess.Popen:
    with log.open("w") as stream:  # the child keeps its own copy of the file
        return subprocess.Popen(command, stdout=stream, stderr=subprocess.STDOUT,
                                env=_environment())


def _train_processes(tmp_path: Path, name: str, flags_of, processes: int = 2):
    """Start one `dlstructured train` per process; ``flags_of(rank)`` gives its flags."""
    port = _free_port()
    workers = []
    for rank in range(processes):
        command = [sys.executable, "-m", "dlstructured", "train", *flags_of(rank),
                   "--num-processes", str(processes), "--process-id", str(rank),
                   "--coordinator", f"127.0.0.1:{port}"]
        workers.append(_start(command, tmp_path / f"{name}-{rank}.log"))
    return workers


def _finish(workers, limit: float = WORKER_LIMIT) -> list[int]:
    codes = []
    for worker in workers:
        try:
            codes.append(worker.wait(timeout=limit))
        except subprocess.TimeoutExpired:
            for each in workers:
                each.kill()
            raise
    return codes


def _log(tmp_path: Path, name: str, rank: int) -> str:
    return (tmp_path / f"{name}-{rank}.log").read_text()


# --------------------------------------------------------------------------------------------
# Fast: arguments and errors of one process


@pytest.mark.parametrize(("arguments", "error", "match"), [
    ({"coordinator": "localhost"}, ValueError, r"`coordinator` must be 'HOST:PORT'.*"
     r"Received: coordinator='localhost'"),
    ({"coordinator": 1234}, TypeError, r"Received: coordinator=1234"),
    ({"num_processes": 0}, ValueError, r"`num_processes` must be at least 1\. Received: "
     r"num_processes=0"),
    ({"num_processes": 2, "process_id": 2}, ValueError, r"`process_id` must be from 0 to "
     r"num_processes - 1 \(1\)\. Received: process_id=2"),
    ({"process_id": "1"}, TypeError, r"Received: process_id='1'"),
    ({"timeout": 0}, ValueError, r"`timeout` must be a positive number of seconds\. "
     r"Received: timeout=0"),
])
def test_initialize_refuses_bad_arguments(arguments, error, match):
    with pytest.raises(error, match=match):
        distributed.initialize(**arguments)


def test_initialize_reads_the_variables_keras_reads(monkeypatch):
    monkeypatch.setenv("KERAS_DISTRIBUTION_NUM_PROCESSES", "two")
    with pytest.raises(ValueError, match=r"KERAS_DISTRIBUTION_NUM_PROCESSES must be a whole "
                       r"number\. Received: KERAS_DISTRIBUTION_NUM_PROCESSES='two'"):
        distributed.initialize()


@pytest.mark.skipif(not ON_JAX, reason="training across processes is JAX only")
def test_unreachable_coordinator_fails_within_the_timeout():
    port = _free_port()  # nobody listens there any more
    started = time.monotonic()
    with pytest.raises(RunError, match=rf"cannot reach the coordinator 127\.0\.0\.1:{port} "
                       r"within 1\.5 s .*start process 0 first"):
        distributed.initialize(f"127.0.0.1:{port}", 2, 1, timeout=1.5)
    assert 1.2 < time.monotonic() - started < 5
    assert not distributed.process_count() > 1


@pytest.mark.skipif(ON_JAX, reason="checks the refusal on another backend")
def test_initialize_refuses_other_backends():
    with pytest.raises(RunError, match=r"needs the JAX backend, but Keras runs on "
                       r"'tensorflow'.*Received: backend='tensorflow'"):
        distributed.initialize("127.0.0.1:1234", 2, 0)


@pytest.mark.skipif(ON_JAX, reason="Keras is imported on JAX in this process")
def test_command_line_refuses_tensorflow(tmp_path, capsys):
    data = _table(tmp_path / "t.csv")
    code = main(["train", str(data), "--target", "y", "--out", str(tmp_path / "out"),
                 "--backend", "tensorflow", "--num-processes", "2", "--process-id", "0"])
    assert code == 2
    assert ("training across processes (--num-processes, --process-id, --coordinator) needs "
            "the JAX backend, but Keras runs on 'tensorflow': pass --backend jax"
            ) in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


@pytest.mark.skipif(not ON_JAX, reason="on another backend the flags are refused first")
@pytest.mark.parametrize(("flags", "match"), [
    (["--num-processes", "0"], "`num_processes` must be at least 1. Received: num_processes=0"),
    (["--num-processes", "2", "--process-id", "-1"], "`process_id` must be from 0 to "
     "num_processes - 1 (1). Received: process_id=-1"),
    (["--coordinator", "nohost"], "`coordinator` must be 'HOST:PORT'"),
])
def test_command_line_refuses_bad_counts(tmp_path, capsys, flags, match):
    data = _table(tmp_path / "t.csv")
    assert main(["train", str(data), "--target", "y", *flags]) == 2
    assert match in capsys.readouterr().err


def test_command_line_names_an_unreachable_coordinator(tmp_path):
    if not ON_JAX:
        pytest.skip("training across processes is JAX only")
    data = _table(tmp_path / "t.csv")
    port = _free_port()
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "dlstructured", "train", str(data), "--target", "y", "--out",
         str(tmp_path / "out"), "--num-processes", "2", "--process-id", "1", "--coordinator",
         f"127.0.0.1:{port}", "--coordinator-timeout", "1"],
        capture_output=True, text=True, env=_environment(), timeout=120)
    assert done.returncode == 2, done.stderr
    assert (f"--coordinator cannot reach the coordinator 127.0.0.1:{port} within 1 s"
            in done.stderr)
    assert time.monotonic() - started < 60  # the start-up of Python and Keras, and 1 s
    assert not (tmp_path / "out").exists()


def test_shard_positions_share_out_equal_disjoint_parts():
    for rows in (0, 8, 9, 203):
        parts = [distributed.shard_positions(rows, num_processes=2, process_id=rank,
                                             local_devices=2) for rank in range(2)]
        assert len(parts[0]) == len(parts[1])
        assert len(parts[0]) % 2 == 0  # splits over the process's 2 devices
        together = np.sort(np.concatenate(parts))
        assert together.tolist() == list(range(rows - rows % 4))
    assert distributed.shard_positions(5).tolist() == [0, 1, 2, 3, 4]  # one process: every row


def test_shard_positions_refuse_fewer_rows_than_devices():
    with pytest.raises(ValueError, match=r"3 rows cannot be shared out among 4 devices of 2 "
                       r"processes.*Received: num_rows=3"):
        distributed.shard_positions(3, num_processes=2, process_id=0, local_devices=2)
    with pytest.raises(ValueError, match=r"`process_id` must be from 0 to 1\. Received: "
                       r"process_id=2"):
        distributed.shard_positions(8, num_processes=2, process_id=2, local_devices=1)


def test_one_process_needs_no_exchange():
    assert (distributed.process_count(), distributed.process_index()) == (1, 0)
    assert distributed.is_primary() and distributed.local_device_count() == 1
    distributed.check_same({"epochs": 3})


@pytest.mark.skipif(not ON_JAX, reason="a keras.distribution is JAX only")
def test_data_parallel_spans_every_device():
    parallel = distributed.data_parallel()
    assert parallel.device_mesh.devices.size == len(keras.distribution.list_devices())
    assert parallel.auto_shard_dataset is False


# --------------------------------------------------------------------------------------------
# Slow: real processes on the loopback address

WEIGHTS_WORKER = textwrap.dedent("""
    import sys
    import numpy as np
    from dlstructured import RunConfig, distributed, fit_table
    data, out, weights, processes, rank, port = sys.argv[1:7]
    if int(processes) > 1:
        distributed.initialize(f"127.0.0.1:{port}", int(processes), int(rank), timeout=60)
    config = RunConfig(model="dense", hidden_units=(8,), epochs=40, batch_size=32, patience=0,
                       learning_rate=0.01)
    run = fit_table(data, "y", config, out=None if out == "-" else out)
    np.savez(weights, *[np.asarray(w) for w in run.model.network.get_weights()])
    losses = run.result.history["val_loss"].to_numpy()
    print("VALID", losses[0], np.median(losses[-10:]), run.rows)
""")


def _weights(path: Path) -> list[np.ndarray]:
    with np.load(path) as arrays:
        return [arrays[f"arr_{i}"] for i in range(len(arrays.files))]


def _parquet_folder(csv: Path, folder: Path) -> Path:
    """``csv``'s rows as three Parquet files of row groups of 30 rows: a table that streams."""
    frame = pd.read_csv(csv)
    folder.mkdir()
    for number, part in enumerate(np.array_split(np.arange(len(frame)), 3)):
        frame.iloc[part].to_parquet(folder / f"part-{number}.parquet", row_group_size=30)
    return folder


@pytest.mark.slow
@pytest.mark.parametrize("streamed", [False, True], ids=["in-memory", "streamed"])
def test_two_processes_train_one_model_and_only_rank_0_writes(tmp_path, streamed):
    data = _table(tmp_path / "t.csv")
    if streamed:  # each process streams its range of the rows (dlstructured.data.stream)
        data = _parquet_folder(data, tmp_path / "parts")
    script = tmp_path / "worker.py"
    script.write_text(WEIGHTS_WORKER)
    out = tmp_path / "out"
    port = _free_port()
    workers = [_start([sys.executable, str(script), str(data), str(out),
                       str(tmp_path / f"w{rank}.npz"), "2", str(rank), str(port)],
                      tmp_path / f"pair-{rank}.log") for rank in range(2)]
    assert _finish(workers) == [0, 0], _log(tmp_path, "pair", 0) + _log(tmp_path, "pair", 1)
    alone = _start([sys.executable, str(script), str(data), "-", str(tmp_path / "one.npz"),
                    "1", "0", "0"], tmp_path / "one-0.log")
    assert _finish([alone]) == [0], _log(tmp_path, "one", 0)

    rank0, rank1 = _weights(tmp_path / "w0.npz"), _weights(tmp_path / "w1.npz")
    for mine, theirs in zip(rank0, rank1, strict=True):
        np.testing.assert_array_equal(mine, theirs)  # every rank holds the same weights
    # Against one process on the same rows: the same preprocessing, first weights, global batch
    # and steps, but other batches (a global batch joins the two shards' batches, and 2 of the
    # 142 training rows are left out), so the paths differ and only where they end can agree.
    # Adam at 0.01 on 203 rows wanders by a factor 2 to 3 from epoch to epoch near the end, so:
    # both medians of the last 10 validation losses are under 15% of the first epoch's, and
    # within a factor 3 of each other. (With the same rows on both processes, which makes the
    # same batches as one process, the losses agreed to the last digit.)
    first, ends = zip(*[[float(v) for v in _log(tmp_path, name, 0).split("VALID ")[1].split()[:2]]
                        for name in ("pair", "one")], strict=True)
    assert all(end < 0.15 * start for start, end in zip(first, ends, strict=True)), (first, ends)
    assert max(ends) < 3 * min(ends), ends
    rows = _log(tmp_path, "pair", 1).split("VALID ")[1].split(maxsplit=2)[2].strip()
    assert rows == _log(tmp_path, "one", 0).split("VALID ")[1].split(maxsplit=2)[2].strip()
    if not streamed:
        assert rows == "{'train': 142, 'valid': 61}"  # the whole table's rows, not a shard's

    assert sorted(p.name for p in out.iterdir()) == sorted(
        ["checkpoints", "history.csv", "learning_curves.png", "metrics.json", "model.keras",
         "run.json"])
    model = dlstructured.load_model(out / "model.keras")
    predictions = model.predict(pd.read_csv(tmp_path / "t.csv").drop(columns="y").head(5))
    assert np.isfinite(np.asarray(predictions, dtype="float64")).all()


@pytest.mark.slow
@pytest.mark.parametrize(("model", "streamed"), [("auto", False), ("dense", False),
                                                  ("auto", True)])
def test_command_line_two_processes(tmp_path, model, streamed):
    data = _table(tmp_path / "t.csv")
    if streamed:
        data = _parquet_folder(data, tmp_path / "parts")
    out = tmp_path / "out"
    extra = ["--members", "2"] if model == "auto" else ["--hidden-units", "8"]
    workers = _train_processes(tmp_path, model, lambda rank: [
        str(data), "--target", "y", "--model", model, *extra, "--epochs", "2",
        "--batch-size", "32", "--out", str(out)])
    codes = _finish(workers)
    logs = [_log(tmp_path, model, rank) for rank in range(2)]
    assert codes == [0, 0], logs
    assert f"wrote model.keras, metrics.json, history.csv, learning_curves.png, run.json to " \
           f"{out}" in logs[0]
    assert "process 1 done; process 0 wrote model.keras" in logs[1]
    record = json.loads((out / "run.json").read_text())
    assert record["config"]["model"] == model
    assert not list(tmp_path.glob("**/.tmp-*"))  # nothing half-written
    if streamed:
        assert "streamed rows" in logs[0]
    model_file = dlstructured.load_model(out / "model.keras")
    assert len(model_file.predict(pd.read_csv(tmp_path / "t.csv").head(3))) == 3


@pytest.mark.slow
def test_workers_started_differently_are_refused(tmp_path):
    data = _table(tmp_path / "t.csv")
    workers = _train_processes(tmp_path, "differ", lambda rank: [
        str(data), "--target", "y", "--model", "dense", "--hidden-units", "8",
        "--epochs", str(2 + rank), "--out", str(tmp_path / "out")])
    assert _finish(workers) == [2, 2]
    for rank, epochs in ((0, 2), (1, 3)):
        assert (f"process 1 started with another --epochs than process 0; here (process "
                f"{rank}) it is {epochs}") in _log(tmp_path, "differ", rank)
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_killing_a_worker_stops_the_other_and_resume_continues(tmp_path):
    from dlstructured.training.checkpoints import read_checkpoint

    EPOCHS = 150  # noqa: N806 - long enough (about 0.1 s each) that the kill lands mid-run
    data = _table(tmp_path / "t.csv")
    out = tmp_path / "out"
    flags = [str(data), "--target", "y", "--model", "dense", "--hidden-units", "8",
             "--epochs", str(EPOCHS), "--patience", "0", "--batch-size", "32", "--out",
             str(out)]
    workers = _train_processes(tmp_path, "kill", lambda rank: flags)
    pointer = out / "checkpoints" / "checkpoint.json"
    deadline = time.monotonic() + WORKER_LIMIT
    while not pointer.exists() and time.monotonic() < deadline and workers[0].poll() is None:
        time.sleep(0.2)
    assert pointer.exists(), _log(tmp_path, "kill", 0)
    time.sleep(1.0)
    workers[1].send_signal(signal.SIGKILL)
    killed = time.monotonic()
    code = _finish(workers[:1], limit=distributed.DEFAULT_HEARTBEAT_TIMEOUT + 60)[0]
    took = time.monotonic() - killed
    workers[1].wait()
    assert code != 0, _log(tmp_path, "kill", 0)
    assert took < distributed.DEFAULT_HEARTBEAT_TIMEOUT + 40, took
    state = read_checkpoint(out / "checkpoints")  # what was written is whole
    assert 0 < state.epoch < EPOCHS

    resumed = _train_processes(tmp_path, "resume", lambda rank: ["--resume", str(out)])
    codes = _finish(resumed)
    logs = [_log(tmp_path, "resume", rank) for rank in range(2)]
    assert codes == [0, 0], logs
    summary = json.loads((out / "metrics.json").read_text())
    assert summary["epochs_run"] == EPOCHS
    history = pd.read_csv(out / "history.csv")
    assert history["epoch"].tolist() == list(range(1, EPOCHS + 1))  # one row per epoch
    assert dlstructured.load_model(out / "model.keras") is not None


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # Ray's own, at import and start-up
@pytest.mark.filterwarnings("ignore::FutureWarning")
# Ray starts its helper processes with fork (they exec at once); JAX warns about any fork.
@pytest.mark.filterwarnings(r"ignore:os\.fork\(\) was called:RuntimeWarning")
def test_fit_table_on_ray_trains_across_two_workers(tmp_path):
    ray = pytest.importorskip("ray")
    from dlstructured import RunConfig, fit_table_on_ray

    frame = pd.read_csv(_table(tmp_path / "t.csv"))
    folder = _parquet_folder(tmp_path / "t.csv", tmp_path / "parts")
    config = RunConfig(model="dense", hidden_units=(8,), epochs=2, batch_size=32)
    env = {"XLA_FLAGS": "--xla_force_host_platform_device_count=2",
           "PYTHONPATH": _environment()["PYTHONPATH"]}
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        result = fit_table_on_ray(frame, "y", config, num_workers=2, out=tmp_path / "out",
                                  env=env)
        # a path every worker can read: a Parquet folder streams, each worker its own rows
        streamed = fit_table_on_ray(str(folder), "y", config, num_workers=2,
                                    out=tmp_path / "streamed", env=env)
    finally:
        ray.shutdown()
    assert sum(streamed.summary["rows"].values()) == 203
    assert streamed.summary["epochs_run"] == 2
    assert len(streamed.model.predict(frame.head(4))) == 4
    assert result.num_workers == 2
    assert result.summary["rows"] == {"train": 142, "valid": 61}  # the whole table's rows
    assert result.summary["epochs_run"] == 2
    assert len(result.model.predict(frame.head(4))) == 4
    assert sorted(p.name for p in result.out.iterdir()) == sorted(
        ["checkpoints", "history.csv", "learning_curves.png", "metrics.json", "model.keras",
         "run.json"])


def test_fit_table_on_ray_checks_its_arguments():
    from dlstructured import fit_table_on_ray

    with pytest.raises(ValueError, match=r"Received: num_workers=0"):
        fit_table_on_ray("t.csv", "y", num_workers=0, out="out")
    with pytest.raises(ValueError, match=r"Received: cpus_per_worker=-1"):
        fit_table_on_ray("t.csv", "y", num_workers=2, cpus_per_worker=-1, out="out")
    with pytest.raises(TypeError, match=r"Received: config=\{'epochs': 2\}"):
        fit_table_on_ray("t.csv", "y", {"epochs": 2}, num_workers=2, out="out")
