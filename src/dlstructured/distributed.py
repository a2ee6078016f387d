"""Training across processes and machines: joining the processes, the devices, and which rows
each process trains on.

A multi-process run is the same program started once per process. Each process calls
[`initialize`][dlstructured.distributed.initialize] first, before anything else touches JAX;
after that, [`fit_table`][dlstructured.run.fit_table] trains data-parallel over every device of
every process (``keras.distribution.DataParallel``, from
[`data_parallel`][dlstructured.distributed.data_parallel]), and only process 0 writes the output
folder.

**Which rows a process trains on.** Every process reads the same table and fits the same
preprocessing on the same training part (so the preprocessing, the network and its first weights
agree without any exchange). Then each keeps its shard: of the first ``n - n % P`` rows of the
training part (``n`` rows, ``P`` processes), those at positions ``p`` with ``p % P ==
process_id`` (see [`shard_positions`][dlstructured.distributed.shard_positions]). Every shard has
the same number of rows, a multiple of the process's devices, so every process runs the same
number of steps and every batch splits evenly over the devices; the last ``n % (P * D)`` rows
(``D`` devices per process) are left out of training, and ``batch_size`` (the global batch) must
be a multiple of ``P * D``. The validation part is sharded the same way, and
its metrics are computed over all the shards together.

**Workers started differently.** Before training, each process gathers a hash of its options and
of the data's fingerprint from every other process
([`check_same`][dlstructured.distributed.check_same]); a mismatch is a ``RunError`` naming the
option and the processes that disagree, on every process.

**Timeouts.** ``initialize`` waits ``timeout`` seconds (60 by default) for the coordinator and
the other processes, then fails with a ``RunError`` naming the address. Once running, a process
that stops sending heartbeats for ``heartbeat_timeout`` seconds (20 by default) is declared dead
by JAX's coordination service, which ends every other process: JAX prints ``Terminating process
because the JAX distributed service detected fatal errors`` and the process exits with status
134 (SIGABRT). A worker blocked in a collective with a dead peer may fail sooner, with an
error raised in Python.

Only the JAX backend trains across processes.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import sys
import time
from collections.abc import Mapping
from typing import Any

from dlstructured.errors import RunError

#: Seconds ``initialize`` waits for the coordinator and the other processes.
DEFAULT_TIMEOUT = 60
#: Seconds without a heartbeat after which JAX declares a process dead and ends the others.
DEFAULT_HEARTBEAT_TIMEOUT = 20
#: Seconds a finishing process waits for the others to finish too.
SHUTDOWN_TIMEOUT = 60

_ENVIRONMENT = ("KERAS_DISTRIBUTION_JOB_ADDRESSES", "KERAS_DISTRIBUTION_NUM_PROCESSES",
                "KERAS_DISTRIBUTION_PROCESS_ID")


def _check_backend() -> None:
    import keras

    backend = keras.backend.backend()
    if backend != "jax":
        raise RunError(
            "training across processes needs the JAX backend, but Keras runs on "
            f"{backend!r}: set KERAS_BACKEND=jax before Keras is imported. "
            f"Received: backend={backend!r}",
            cli_message="training across processes (--num-processes, --process-id, "
            f"--coordinator) needs the JAX backend, but Keras runs on {backend!r}: pass "
            "--backend jax",
        )


def _from_environment(coordinator: Any, num_processes: Any, process_id: Any):
    """The arguments, each taken from the variable Keras reads when not given."""
    if coordinator is None and os.environ.get(_ENVIRONMENT[0]):
        coordinator = os.environ[_ENVIRONMENT[0]].split(",")[0]
    for index, (name, value) in enumerate((("num_processes", num_processes),
                                           ("process_id", process_id)), start=1):
        variable = _ENVIRONMENT[index]
        if value is None and os.environ.get(variable):
            try:
                value = int(os.environ[variable])
            except ValueError:
                raise ValueError(f"{variable} must be a whole number. Received: "
                                 f"{variable}={os.environ[variable]!r}") from None
        if name == "num_processes":
            num_processes = value
        else:
            process_id = value
    return coordinator, num_processes, process_id


def _check_arguments(coordinator: Any, num_processes: Any, process_id: Any, timeout: Any,
                     heartbeat_timeout: Any) -> None:
    if coordinator is not None:
        if not isinstance(coordinator, str):
            raise TypeError("`coordinator` must be a 'HOST:PORT' string. Received: "
                            f"coordinator={coordinator!r}")
        host, _, port = coordinator.rpartition(":")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError("`coordinator` must be 'HOST:PORT' with a port from 1 to 65535, "
                             f"e.g. '10.0.0.1:1234'. Received: coordinator={coordinator!r}")
    for name, value in (("num_processes", num_processes), ("process_id", process_id)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
            raise TypeError(f"`{name}` must be an int or None. Received: {name}={value!r}")
    if num_processes is not None and num_processes < 1:
        raise ValueError(f"`num_processes` must be at least 1. Received: "
                         f"num_processes={num_processes}")
    if process_id is not None and (process_id < 0 or (num_processes is not None
                                                        and process_id >= num_processes)):
        raise ValueError(f"`process_id` must be from 0 to num_processes - 1 "
                         f"({(num_processes or 1) - 1}). Received: process_id={process_id}")
    for name, value in (("timeout", timeout), ("heartbeat_timeout", heartbeat_timeout)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
            raise ValueError(f"`{name}` must be a positive number of seconds. Received: "
                             f"{name}={value!r}")


def _wait_for_coordinator(coordinator: str, timeout: float) -> None:
    """Return once a TCP connection to ``coordinator`` succeeds; ``RunError`` after
    ``timeout`` seconds of refusals.

    JAX's own connection attempt aborts the whole process when it times out; this check turns
    an address that cannot be reached into an error a program can catch.
    """
    host, _, port = coordinator.rpartition(":")
    host = host.strip("[]")
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        try:
            with socket.create_connection((host, int(port)), timeout=max(min(left, 2.0), 0.1)):
                return
        except OSError as error:
            if time.monotonic() + 0.25 >= deadline:
                message = (f"cannot reach the coordinator {coordinator} within {timeout:g} s "
                           f"({error}); start process 0 first, and check the host, the port "
                           "and the firewall")
                raise RunError(f"`coordinator` {message}. Received: coordinator="
                               f"{coordinator!r}",
                               cli_message=f"--coordinator {message}") from None
            time.sleep(0.25)


def initialize(
    coordinator: str | None = None,
    num_processes: int | None = None,
    process_id: int | None = None,
    *,
    timeout: float = DEFAULT_TIMEOUT,
    heartbeat_timeout: float = DEFAULT_HEARTBEAT_TIMEOUT,
) -> tuple[int, int]:
    """Join this process to a multi-process run, before anything else uses JAX.

    The arguments are those of ``keras.distribution.initialize``, and like it each one left
    ``None`` is read from the environment variable Keras reads
    (``KERAS_DISTRIBUTION_JOB_ADDRESSES``, whose first address is the coordinator,
    ``KERAS_DISTRIBUTION_NUM_PROCESSES``, ``KERAS_DISTRIBUTION_PROCESS_ID``); what is still
    missing JAX detects from the cluster (Slurm, Open MPI, Kubernetes, Cloud TPU). Unlike
    Keras's function it bounds the wait, and it sets no global random seed: a run seeds its own
    network (``RunConfig.seed``), so every process starts from the same weights. Calling it again
    with the same arguments does nothing.

    Args:
        coordinator: ``"HOST:PORT"`` of process 0, where it serves JAX's coordination service.
            Defaults to ``None``: from the environment or the cluster.
        num_processes: How many processes the run has. Defaults to ``None``: from the
            environment or the cluster.
        process_id: This process's number, from 0 to ``num_processes - 1``; process 0 writes
            the output. Defaults to ``None``: from the environment or the cluster.
        timeout: Seconds to wait for the coordinator and the other processes. Defaults to
            ``60``.
        heartbeat_timeout: Seconds without a heartbeat after which JAX declares a process dead
            and ends the others. Defaults to ``20``.

    Returns:
        ``(process_id, num_processes)`` of this process.

    Raises:
        TypeError: If an argument has the wrong type.
        ValueError: If an argument is out of range.
        RunError: If Keras does not run on JAX, the coordinator cannot be reached within
            ``timeout``, or JAX was initialized differently or already used.

    Example:

    >>> from dlstructured.distributed import initialize
    >>> try:  # a typo in the address is refused before anything waits
    ...     initialize("localhost", 2, 0)
    ... except ValueError as error:
    ...     print(str(error).split(". Received")[0])
    `coordinator` must be 'HOST:PORT' with a port from 1 to 65535, e.g. '10.0.0.1:1234'
    """
    coordinator, num_processes, process_id = _from_environment(coordinator, num_processes,
                                                               process_id)
    _check_arguments(coordinator, num_processes, process_id, timeout, heartbeat_timeout)
    _check_backend()
    import jax

    if jax.distributed.is_initialized():
        given = (num_processes, process_id)
        now = (jax.process_count(), jax.process_index())
        if all(a is None or a == b for a, b in zip(given, now, strict=True)):
            return now[1], now[0]
        raise RunError(f"JAX's distributed system already runs as process {now[1]} of "
                       f"{now[0]}. Received: num_processes={num_processes}, "
                       f"process_id={process_id}")
    if num_processes == 1:
        return 0, 1
    if coordinator is not None and process_id not in (None, 0):
        _wait_for_coordinator(coordinator, timeout)
    try:
        jax.distributed.initialize(
            coordinator_address=coordinator, num_processes=num_processes,
            process_id=process_id, initialization_timeout=max(int(round(timeout)), 1),
            heartbeat_timeout_seconds=max(int(round(heartbeat_timeout)), 1),
            shutdown_timeout_seconds=SHUTDOWN_TIMEOUT,
        )
    except (RuntimeError, ValueError) as error:
        raise RunError(f"cannot start the multi-process run: {error}") from error
    return jax.process_index(), jax.process_count()


def process_count() -> int:
    """How many processes the run has: 1 unless [`initialize`][dlstructured.distributed.initialize]
    joined several.

    Example:

    >>> from dlstructured.distributed import process_count
    >>> process_count()
    1
    """
    jax = sys.modules.get("jax")
    if jax is None or not jax.distributed.is_initialized():
        return 1
    return int(jax.process_count())


def process_index() -> int:
    """This process's number in the run: 0 in a single-process run.

    Example:

    >>> from dlstructured.distributed import process_index
    >>> process_index()
    0
    """
    jax = sys.modules.get("jax")
    if jax is None or not jax.distributed.is_initialized():
        return 0
    return int(jax.process_index())


def local_device_count() -> int:
    """Devices of this process a multi-process run trains on: 1 in a single-process run.

    Example:

    >>> from dlstructured.distributed import local_device_count
    >>> local_device_count()
    1
    """
    if process_count() == 1:
        return 1
    import jax

    return int(jax.local_device_count())


def is_primary() -> bool:
    """Whether this process writes the run's files: process 0, or the only process (the one
    rule, ``dlstructured.training.parallel.is_primary``, that checkpoints follow too).

    Example:

    >>> from dlstructured.distributed import is_primary
    >>> is_primary()
    True
    """
    from dlstructured.training.parallel import is_primary as primary

    return primary()


def data_parallel() -> Any:
    """``keras.distribution.DataParallel`` over every device of every process.

    Each process feeds its own rows (``auto_shard_dataset=False``: the shards are chosen by
    [`shard_positions`][dlstructured.distributed.shard_positions]); the weights are replicated.

    Raises:
        RunError: If Keras does not run on JAX.

    Example:

    >>> import keras
    >>> from dlstructured.distributed import data_parallel
    >>> if keras.backend.backend() == "jax":
    ...     devices = data_parallel().device_mesh.devices.size
    ... else:
    ...     devices = len(keras.distribution.list_devices())
    >>> devices >= 1
    True
    """
    _check_backend()
    import keras

    return keras.distribution.DataParallel(devices=keras.distribution.list_devices(),
                                           auto_shard_dataset=False)


def shard_positions(num_rows: int, *, num_processes: int | None = None,
                    process_id: int | None = None, local_devices: int | None = None) -> Any:
    """The positions of the rows a process trains on, of ``num_rows`` rows.

    With ``P`` processes of ``D`` devices each, of the first ``num_rows - num_rows % (P * D)``
    rows, those whose position ``p`` has ``p % P == process_id``: every process gets as many
    rows, a multiple of its devices (so every batch, the last one too, splits evenly over
    them), and the rows of all processes together are every row but the last
    ``num_rows % (P * D)``.

    Args:
        num_rows: Rows of the table part to share out.
        num_processes: Processes sharing it. Defaults to ``None``: the run's.
        process_id: This process's number. Defaults to ``None``: the run's.
        local_devices: Devices of each process. Defaults to ``None``: this process's in a
            multi-process run, else 1.

    Returns:
        A numpy array of positions, increasing.

    Raises:
        ValueError: If a count is negative, ``process_id`` is out of range, or there are fewer
            rows than processes.

    Example:

    >>> from dlstructured.distributed import shard_positions
    >>> shard_positions(7, num_processes=2, process_id=1).tolist()
    [1, 3, 5]
    """
    import numpy as np

    num_processes = process_count() if num_processes is None else num_processes
    process_id = process_index() if process_id is None else process_id
    local_devices = local_device_count() if local_devices is None else local_devices
    if num_rows < 0 or num_processes < 1:
        raise ValueError(f"`num_rows` must be at least 0 and `num_processes` at least 1. "
                         f"Received: num_rows={num_rows}, num_processes={num_processes}")
    if not 0 <= process_id < num_processes:
        raise ValueError(f"`process_id` must be from 0 to {num_processes - 1}. Received: "
                         f"process_id={process_id}")
    devices = num_processes * local_devices
    if 0 < num_rows < devices:
        raise ValueError(f"{num_rows} rows cannot be shared out among {devices} devices of "
                         f"{num_processes} processes: give at least one row per device. "
                         f"Received: num_rows={num_rows}")
    usable = num_rows - num_rows % devices
    return np.arange(process_id, usable, num_processes, dtype="int64")


def _digest(value: Any) -> int:
    text = json.dumps(value, sort_keys=True, default=repr)
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:4], "little")


def check_same(values: Mapping[str, Any], *, flags: Mapping[str, str] | None = None) -> None:
    """Refuse processes started with different ``values`` (an option name -> its value here).

    Every process must call it at the same point, with the same names: each gathers a hash of
    each value from every process. In a single-process run it checks nothing.

    Args:
        values: What must agree, by name (config fields, the data's fingerprint, ...).
        flags: For the command line's message, the flag of each name that has one. Defaults
            to ``None``: the names with dashes, after ``--``.

    Raises:
        RunError: Naming the first value that differs and the processes that hold another
            value than process 0.

    Example:

    >>> from dlstructured.distributed import check_same
    >>> check_same({"epochs": 3, "data": "abc"})  # one process: nothing to compare
    """
    if process_count() == 1:
        return
    import numpy as np
    from jax.experimental import multihost_utils

    names = list(values)
    local = np.asarray([_digest(values[name]) for name in names], dtype="uint32")
    gathered = np.asarray(multihost_utils.process_allgather(local))  # (processes, names)
    for column, name in enumerate(names):
        others = [int(p) for p in np.nonzero(gathered[:, column] != gathered[0, column])[0]]
        if not others:
            continue
        flag = (flags or {}).get(name, "--" + name.replace("_", "-"))
        here = f"; here (process {process_index()}) it is {values[name]!r}"
        which = ", ".join(map(str, others))
        message = (f"process{'es' if len(others) > 1 else ''} {which} started with another "
                   f"{{}} than process 0{here}: start every process with the same options and "
                   "data")
        raise RunError(message.format(f"`{name}`"), cli_message=message.format(flag))
