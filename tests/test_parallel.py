"""Data-parallel training on JAX: two virtual devices, and two processes on the loopback.

Every run trains the same network on the same global batches (``parallel_worker.SideBySide``
puts the two shards' batches side by side, as the two processes feed them), so a one-device run
is the reference.

Tolerance: ``rtol=1e-5, atol=1e-6``. The arithmetic is the same but the order of the float32
sums is not: each device sums the loss, the gradients and the batch statistics over its half of
the batch and the halves are added across devices, where one device sums the batch at once.
That changes the last bits of each step's results (here weights differ by up to 6e-8), and 14
steps of Adam carry them forward without growing them much, as long as the gradient is smooth:
the worker trains with mean squared error, because mean absolute error's gradient jumps where a
row's error crosses zero and Adam's division by the gradient's running size turns such a
rounding-made jump into a visible step (a few 1e-6 here). Every process runs the same
replicated update on the same all-reduced values, so the processes' weights agree exactly.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest

if keras.backend.backend() != "jax":
    pytest.skip("data-parallel training is the JAX engine's", allow_module_level=True)

sys.path.insert(0, str(Path(__file__).parent))
import parallel_worker  # noqa: E402

WORKER = Path(__file__).parent / "parallel_worker.py"
SOURCE = Path(__file__).parents[1] / "src"
RTOL, ATOL = 1e-5, 1e-6
TIMEOUT = 240


def _start(mode, out, *extra):
    env = {
        **os.environ,
        "KERAS_BACKEND": "jax",
        "XLA_FLAGS": "--xla_force_host_platform_device_count=2",
        "PYTHONPATH": os.pathsep.join([str(SOURCE), os.environ.get("PYTHONPATH", "")]),
    }
    return subprocess.Popen(
        [sys.executable, str(WORKER), mode, str(out), *map(str, extra)],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )


def _finish(processes):
    outputs = []
    try:
        for process in processes:
            outputs.append(process.communicate(timeout=TIMEOUT)[0])
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait()
    for process, output in zip(processes, outputs, strict=True):
        assert process.returncode == 0, output[-3000:]


def _load(path):
    with np.load(path) as saved:
        return {key: saved[key] for key in saved.files}


def _weights(result):
    names = [key for key in result if key.startswith("weight_")]
    return [result[key] for key in sorted(names, key=lambda key: (len(key), key))]


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The one-device run, in this process (one CPU device, no distribution)."""
    out = tmp_path_factory.mktemp("reference") / "reference.npz"
    parallel_worker.main("reference", str(out))
    return _load(out)


def _assert_matches(result, reference):
    assert list(result["columns"]) == list(reference["columns"])
    np.testing.assert_allclose(result["history"], reference["history"], rtol=RTOL, atol=ATOL)
    for mine, theirs in zip(_weights(result), _weights(reference), strict=True):
        np.testing.assert_allclose(mine, theirs, rtol=RTOL, atol=ATOL)


def test_two_devices_in_one_process_match_one_device(reference, tmp_path):
    out = tmp_path / "local.npz"
    _finish([_start("local", out)])
    result = _load(out)
    assert int(result["devices"]) == 2 and bool(result["primary"])
    _assert_matches(result, reference)
    assert (tmp_path / "local.npz.checkpoints" / "best.keras").is_file()
    # Keras's engine under the same DataParallel scope shards its batches itself.
    np.testing.assert_allclose(
        result["keras_history"], result["keras_reference"], rtol=RTOL, atol=ATOL
    )
    message = str(result["odd_batch_error"])
    assert "a multiple of 2" in message and "Received: batch_size=15" in message


def _free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.mark.slow
def test_two_processes_end_with_identical_weights_matching_one_process(reference, tmp_path):
    port = _free_port()
    outs = [tmp_path / f"rank{rank}.npz" for rank in (0, 1)]
    _finish([_start("processes", out, rank, 2, port) for rank, out in enumerate(outs)])
    first, second = (_load(out) for out in outs)
    assert int(first["devices"]) == 4
    assert bool(first["primary"]) and not bool(second["primary"])
    for mine, theirs in zip(_weights(first), _weights(second), strict=True):
        np.testing.assert_array_equal(mine, theirs)
    np.testing.assert_array_equal(first["history"], second["history"])
    _assert_matches(first, reference)
    # Only process 0 writes checkpoints (each was given a folder of its own here).
    assert (tmp_path / "rank0.npz.checkpoints" / "checkpoint.json").is_file()
    assert not (tmp_path / "rank1.npz.checkpoints").exists()


def test_other_distributions_are_refused():
    from dlstructured.training.parallel import data_parallel

    mesh = keras.distribution.DeviceMesh((1,), ["model"])
    layouts = keras.distribution.LayoutMap(mesh)
    with keras.distribution.ModelParallel(layout_map=layouts).scope():
        with pytest.raises(ValueError, match="Received: distribution=ModelParallel"):
            data_parallel()
    assert data_parallel() is None
