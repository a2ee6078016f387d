"""Flags of ``dlstructured train`` for one process of several (``dlstructured.distributed``)."""

from __future__ import annotations

import argparse
import os

FLAGS = {
    "num_processes": ("N", int, "processes (default: $KERAS_DISTRIBUTION_NUM_PROCESSES)"),
    "process_id": ("I", int, "this process, 0 to N-1 (default: $KERAS_DISTRIBUTION_PROCESS_ID)"),
    "coordinator": ("HOST:PORT", str, "process 0's address (default: the first of "
                    "$KERAS_DISTRIBUTION_JOB_ADDRESSES); JAX finds what is left on Slurm, MPI"),
    "coordinator_timeout": ("SECONDS", float, "wait for the other processes (default: 60)"),
}


def add_flags(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("training across processes (JAX; process 0 writes --out)")
    for name, (metavar, kind, text) in FLAGS.items():
        group.add_argument(f"--{name.replace('_', '-')}", metavar=metavar, type=kind, help=text)


def join(args: argparse.Namespace) -> None:  # if a flag, or a variable Keras reads, asks
    if any(getattr(args, name) is not None for name in FLAGS) or any(
            name.startswith("KERAS_DISTRIBUTION_") for name in os.environ):
        from dlstructured import distributed

        distributed.initialize(args.coordinator, args.num_processes, args.process_id,
                               timeout=args.coordinator_timeout or distributed.DEFAULT_TIMEOUT)
