"""The command line's flags for training across processes: ``--num-processes``,
``--process-id`` and ``--coordinator`` of ``dlstructured train``.

Each process of the run is one ``dlstructured train`` with the same DATA, options and ``--out``,
and its own ``--process-id``. A flag left out is read from the variable Keras reads
(``KERAS_DISTRIBUTION_NUM_PROCESSES``, ``KERAS_DISTRIBUTION_PROCESS_ID``,
``KERAS_DISTRIBUTION_JOB_ADDRESSES``), and what is still missing JAX detects from the cluster
(under Slurm, ``--num-processes $SLURM_NTASKS`` alone is enough). Without any of them the run is
one process, as before. See ``dlstructured.distributed`` for the rules.
"""

from __future__ import annotations

import argparse
import os
from typing import Any

#: Seconds to wait for the other processes (``dlstructured.distributed.DEFAULT_TIMEOUT``).
DEFAULT_TIMEOUT = 60
FLAGS = ("num_processes", "process_id", "coordinator", "coordinator_timeout")
_ENVIRONMENT = ("KERAS_DISTRIBUTION_NUM_PROCESSES", "KERAS_DISTRIBUTION_PROCESS_ID",
                "KERAS_DISTRIBUTION_JOB_ADDRESSES")


def _count(name: str, minimum: int):
    def convert(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = None
        if value is None or value < minimum:
            raise argparse.ArgumentTypeError(
                f"--{name} takes a whole number from {minimum}; received {text!r}")
        return value

    return convert


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not value > 0:
        raise argparse.ArgumentTypeError(
            f"--coordinator-timeout takes a positive number of seconds; received {text!r}")
    return value


def add_flags(parser: argparse.ArgumentParser) -> None:
    """Add the group "training across processes" to the ``train`` parser."""
    group = parser.add_argument_group(
        "training across processes (JAX only; every process gets the same DATA, options and "
        "--out, and only process 0 writes it)")
    group.add_argument("--num-processes", metavar="N", type=_count("num-processes", 1),
                       default=None, help="processes in the run (default: "
                       "$KERAS_DISTRIBUTION_NUM_PROCESSES, or one)")
    group.add_argument("--process-id", metavar="I", type=_count("process-id", 0), default=None,
                       help="this process's number, 0 to N-1; 0 writes --out (default: "
                       "$KERAS_DISTRIBUTION_PROCESS_ID, or found by JAX on Slurm and Open MPI)")
    group.add_argument("--coordinator", metavar="HOST:PORT", default=None,
                       help="address of process 0 that every process can reach (default: "
                       "the first of $KERAS_DISTRIBUTION_JOB_ADDRESSES, or found by JAX)")
    group.add_argument("--coordinator-timeout", metavar="SECONDS", type=_seconds,
                       default=None, help="how long to wait for the coordinator and the other "
                       f"processes before giving up (default: {DEFAULT_TIMEOUT})")


def wanted(args: argparse.Namespace) -> bool:
    """Whether the command runs as one process of several (a flag or a variable given)."""
    return (any(getattr(args, name, None) is not None for name in FLAGS)
            or any(os.environ.get(name) for name in _ENVIRONMENT))


def check_backend(args: argparse.Namespace, backend: str | None, usage_error: Any) -> None:
    """Refuse ``--backend tensorflow`` with the flags, before any backend is imported."""
    if backend == "tensorflow" and wanted(args):
        given = [f"--{name.replace('_', '-')}" for name in FLAGS
                 if getattr(args, name, None) is not None] or ["$KERAS_DISTRIBUTION_*"]
        raise usage_error(f"{' and '.join(given)} train across processes on the JAX backend "
                          "only; pass --backend jax")


def join(args: argparse.Namespace) -> int:
    """Join the run's other processes (once the backend is chosen); return this process's id.

    Raises:
        RunError: If the backend is not JAX or the coordinator cannot be reached in time.
    """
    if not wanted(args):
        return 0
    from dlstructured import distributed

    timeout = args.coordinator_timeout or distributed.DEFAULT_TIMEOUT
    process_id, _ = distributed.initialize(args.coordinator, args.num_processes,
                                           args.process_id, timeout=timeout)
    return process_id


def written(out: Any, files: str) -> str:
    """The last line of ``train``: what this process wrote, or who did."""
    from dlstructured import distributed

    if distributed.is_primary():
        return f"wrote {files} to {out}"
    return (f"process {distributed.process_index()} of {distributed.process_count()} done; "
            f"process 0 wrote {files} to {out}")
