"""Training across the workers of a Ray cluster: ``fit_table_on_ray``.

Ray starts the workers (``ray.train.v2.jax.JaxTrainer``), one process each; each worker joins
JAX's distributed system (Ray's JAX backend does so itself on TPUs and GPUs, and, unless
``JAX_PLATFORMS=cpu`` is set, not on CPUs: then the worker does, with rank 0's address, which
it shares through Ray) and runs [`fit_table`][dlstructured.run.fit_table], which trains
data-parallel and has rank 0 write ``out``. The rules are those of ``dlstructured.distributed``.

The table comes to the workers as a Ray Dataset (a DataFrame or a ``ray.data.Dataset``; Ray
Data hands every worker all of its rows, in order) or as a file path that every worker can read.
Every worker fits the same preprocessing on the same training rows, then keeps its own shard of
them: the preprocessing's statistics are those of the whole table, as in a single process.

Needs the optional Ray: ``pip install 'dlstructured[ray]'``.
"""

from __future__ import annotations

import dataclasses
import json
import os
import socket
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from dlstructured.config import RunConfig
from dlstructured.errors import RunError

_DATASET = "table"


@dataclasses.dataclass(frozen=True)
class RayRun:
    """What a run on Ray leaves behind, read back from its output folder.

    Attributes:
        out: The output folder rank 0 wrote.
        model: The trained ``TabularModel`` (``out/model.keras``).
        summary: ``out/metrics.json``: the run's settings, rows, timing and metrics.
        num_workers: The workers that trained it.
    """

    out: Path
    model: Any
    summary: dict[str, Any]
    num_workers: int


def _import_ray() -> Any:
    try:
        import ray
        import ray.train.v2.jax  # noqa: F401
    except ImportError as error:
        raise ImportError(f"fit_table_on_ray needs Ray Train: pip install 'dlstructured[ray]' "
                          f"({error})") from error
    return ray


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("", 0))
        return int(probe.getsockname()[1])


def _join_jax(timeout: float) -> None:
    """Join JAX's distributed system as this Ray worker, unless Ray's backend already did."""
    import jax
    import ray
    from ray.train.collective import broadcast_from_rank_zero
    from ray.train.v2.api.train_fn_utils import get_context

    from dlstructured import distributed

    context = get_context()
    rank, size = context.get_world_rank(), context.get_world_size()
    address = None
    if rank == 0:
        address = f"{ray.util.get_node_ip_address()}:{_free_port()}"
    address = broadcast_from_rank_zero(address)
    if size > 1 and not jax.distributed.is_initialized():
        distributed.initialize(address, size, rank, timeout=timeout)


def _train_on_worker(options: dict[str, Any]) -> None:
    """Ray's training function: the worker's part of the run."""
    import pandas as pd
    from ray.train.v2.api.train_fn_utils import get_dataset_shard

    from dlstructured.run import fit_table

    _join_jax(options["timeout"])
    data = options["data"]
    if data is None:  # the table came as a Ray Dataset
        batches = get_dataset_shard(_DATASET).iter_batches(batch_format="pandas",
                                                           batch_size=None)
        data = pd.concat(list(batches), ignore_index=True)
    config = None if options["config"] is None else RunConfig.from_dict(options["config"])
    fit_table(data, options["target"], config, out=options["out"], resume=options["resume"],
              verbose=options["verbose"])


def fit_table_on_ray(
    data: Any,
    target: Any,
    config: RunConfig | None = None,
    *,
    num_workers: int,
    out: str | os.PathLike,
    resume: bool = False,
    cpus_per_worker: float = 1,
    env: Mapping[str, str] | None = None,
    timeout: float = 60,
    verbose: int = 0,
) -> RayRun:
    """Train as [`fit_table`][dlstructured.run.fit_table] does, across ``num_workers`` Ray
    workers joined into one data-parallel JAX run.

    Connects to the running Ray cluster (``ray.init()`` first, or Ray starts a local one).

    Args:
        data: A pandas DataFrame or a ``ray.data.Dataset`` (Ray hands every worker all its
            rows), or the path of a CSV or Parquet file that every worker can read (``None``
            with ``resume=True``: the run's own).
        target: The column to predict (``None`` with ``resume=True``: the run's).
        config: What the run is made of. Defaults to ``None``: ``RunConfig()``, or the run's
            when resuming.
        num_workers: Ray workers, one process each.
        out: The output folder, which rank 0 writes and this program reads back: a folder on
            storage that both see (on a one-machine cluster, any folder).
        resume: Continue the run in ``out`` from its last checkpoint; every worker reads it.
            Defaults to ``False``.
        cpus_per_worker: CPUs Ray reserves for each worker. Defaults to ``1``.
        env: Environment variables of the workers, besides ``KERAS_BACKEND=jax`` (for example
            ``XLA_FLAGS``). Defaults to ``None``.
        timeout: Seconds each worker waits for the others to join. Defaults to ``60``.
        verbose: As for ``fit_table``, on every worker's log. Defaults to ``0``.

    Returns:
        A [`RayRun`][dlstructured.ray_launch.RayRun]: the model and summary rank 0 wrote.

    Raises:
        ImportError: If Ray Train is not installed.
        TypeError: If an argument has the wrong type.
        ValueError: If ``num_workers`` or ``cpus_per_worker`` is not positive.
        RunError: If a worker fails; the message is the worker's error.

    Example:

    >>> from dlstructured import fit_table_on_ray
    >>> fit_table_on_ray("t.csv", "y", num_workers=0, out="runs/t")
    Traceback (most recent call last):
    ...
    ValueError: `num_workers` must be an int of at least 1. Received: num_workers=0
    """
    if isinstance(num_workers, bool) or not isinstance(num_workers, int) or num_workers < 1:
        raise ValueError(f"`num_workers` must be an int of at least 1. Received: "
                         f"num_workers={num_workers!r}")
    if isinstance(cpus_per_worker, bool) or not isinstance(cpus_per_worker, (int, float)) \
            or cpus_per_worker <= 0:
        raise ValueError(f"`cpus_per_worker` must be a positive number. Received: "
                         f"cpus_per_worker={cpus_per_worker!r}")
    if config is not None and not isinstance(config, RunConfig):
        raise TypeError(f"`config` must be a RunConfig or None. Received: config={config!r}")
    if not isinstance(out, (str, os.PathLike)):
        raise TypeError(f"`out` must be a folder path. Received: out={out!r}")
    ray = _import_ray()
    import pandas as pd
    from ray.train import DataConfig
    from ray.train.v2.api.config import RunConfig as RayRunConfig
    from ray.train.v2.api.config import ScalingConfig
    from ray.train.v2.jax import JaxTrainer

    out = Path(out).resolve()
    datasets = None
    if isinstance(data, pd.DataFrame):
        data = ray.data.from_pandas(data)
    if isinstance(data, ray.data.Dataset):
        datasets, data = {_DATASET: data}, None
    elif data is not None and not isinstance(data, (str, os.PathLike)):
        raise TypeError("`data` must be a pandas DataFrame, a ray.data.Dataset or a file path. "
                        f"Received: data of type {type(data).__name__}")
    else:
        data = None if data is None else str(Path(data).resolve())
    options = {"data": data, "target": target, "out": str(out), "resume": resume,
               "config": None if config is None else config.to_dict(), "timeout": timeout,
               "verbose": verbose}
    from ray.data import ExecutionOptions

    trainer = JaxTrainer(
        _train_on_worker,
        train_loop_config=options,
        scaling_config=ScalingConfig(num_workers=num_workers,
                                     resources_per_worker={"CPU": cpus_per_worker}),
        datasets=datasets,
        # Every worker gets the whole table, in order: the preprocessing is fitted on all the
        # training rows, and dlstructured.distributed chooses each worker's shard of them.
        dataset_config=DataConfig(datasets_to_split=[],
                                  execution_options=ExecutionOptions(preserve_order=True)),
        run_config=RayRunConfig(
            name=f"dlstructured-{out.name}",
            worker_runtime_env={"env_vars": {**(env or {}), "KERAS_BACKEND": "jax"}},
        ),
    )
    try:
        trainer.fit()
    except Exception as error:  # noqa: BLE001 - Ray wraps the worker's error in its own
        raise RunError(f"training on Ray failed: {error}") from error
    from dlstructured.run import METRICS_FILE, MODEL_FILE, load_run_model

    summary = json.loads((out / METRICS_FILE).read_text(encoding="utf-8"))
    return RayRun(out=out, model=load_run_model(out / MODEL_FILE), summary=summary,
                  num_workers=num_workers)
