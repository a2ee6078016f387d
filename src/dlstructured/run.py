"""One home for a training run: ``fit_table``, ``Run`` and the folder a run writes.

``fit_table(data, target, config)`` does what ``dlstructured train`` does, from a notebook: read a
CSV or Parquet file (or take a DataFrame), prepare it, build the network the task's builder makes
and train it, all as the ``RunConfig`` says. With ``out`` it writes the output
folder the command line writes:

- ``run.json``: what the run was started with (data, target, backend, config, a fingerprint of
  the data), written first, so an interrupted run can be resumed;
- ``checkpoints/``: the best model and the latest training state, after every epoch;
- ``model.keras``, ``metrics.json`` (``Run.summary``), ``history.csv`` and
  ``learning_curves.png`` once training ends.

Every file is written through ``dlstructured._io``, so none is ever half-written. Resuming
(``resume=True``, or ``resume_run`` with the folder alone) refuses data, a target or a config
that conflict with the run, and a data file whose content changed since the run started.

The library never chooses the Keras backend: the run uses the active one and records it.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import math
import os
import shutil
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from dlstructured import _io
from dlstructured.config import RunConfig
from dlstructured.errors import (
    DataError,
    DataWarning,
    ModelFileError,
    RunError,
    message_for_command_line,
)
from dlstructured.recipes import Recipe, resolve

RUN_FILE = "run.json"
CHECKPOINT_DIR = "checkpoints"
REFIT_DIR = "refit"  # inside CHECKPOINT_DIR: the checkpoints of the refit on every row
MODEL_FILE = "model.keras"
METRICS_FILE = "metrics.json"
HISTORY_FILE = "history.csv"
PLOT_FILE = "learning_curves.png"
#: The files [`Run.write`][dlstructured.run.Run.write] writes, in order.
OUTPUT_FILES = (MODEL_FILE, METRICS_FILE, HISTORY_FILE, PLOT_FILE, RUN_FILE)
#: Version of ``run.json``; version 1 (0.1.0 and its successors up to 0.2) had no number and
#: recorded the command line's ``options``.
RUN_FORMAT_VERSION = 2

_CONFIG_FIELDS = tuple(item.name for item in dataclasses.fields(RunConfig))

#: A single CSV or Parquet file at least this large (1 GiB) is streamed rather than read into
#: one DataFrame; a folder or a glob of Parquet files always is (see ``dlstructured.data.stream``).
STREAM_MIN_BYTES = 1 << 30
#: Ensemble members of the default model on a streamed table (unless ``members`` is given).
STREAM_MEMBERS = 4


# --------------------------------------------------------------------------------------------
# run.json


@dataclasses.dataclass(frozen=True)
class RunRecord:
    """What ``run.json`` holds: how a run was started.

    Attributes:
        data: Absolute path of the data file, or ``None`` for a DataFrame.
        target: The target column.
        backend: The Keras backend the run trained on.
        config: The run's [`RunConfig`][dlstructured.config.RunConfig].
        fingerprint: What identifies the data (``sha256``, ``bytes``, ``rows``, ``columns``), or
            ``None`` for a run that recorded none (0.1.0).
    """

    data: str | None
    target: Any
    backend: str | None
    config: RunConfig
    fingerprint: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        """The record as ``run.json`` writes it."""
        return {
            "format_version": RUN_FORMAT_VERSION,
            "data": self.data,
            "target": self.target,
            "backend": self.backend,
            "config": self.config.to_dict(),
            "fingerprint": self.fingerprint,
        }


def read_run_record(out: str | os.PathLike) -> RunRecord:
    """Read the ``run.json`` of a run folder, of this version or one 0.1.0 wrote.

    Raises:
        RunError: If the folder holds no ``run.json``, or it cannot be read.
    """
    path = Path(out) / RUN_FILE
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
        version = record.get("format_version", 1)
        if version > RUN_FORMAT_VERSION:
            raise ValueError(f"format version {version}; this dlstructured reads up to "
                             f"{RUN_FORMAT_VERSION}: upgrade dlstructured")
        options = record["config"] if version >= 2 else record["options"]
        config = RunConfig.from_dict(options)
        return RunRecord(data=record["data"], target=record["target"],
                         backend=record.get("backend"), config=config,
                         fingerprint=record.get("fingerprint"))
    except FileNotFoundError:
        raise RunError(
            f"{str(Path(out))!r} has no {RUN_FILE}: give the `out` folder of a run that "
            "`fit_table` or `dlstructured train` started",
            cli_message=f"--resume {str(Path(out))!r} has no {RUN_FILE}: give the --out folder "
            "of a run that `dlstructured train` started",
        ) from None
    except (OSError, ValueError, TypeError, KeyError, AttributeError) as error:
        raise RunError(
            f"cannot read {str(path)!r}: {error}; start the run again without resuming",
            cli_message=f"cannot read {str(path)!r}: {error}; start the run again without "
            "--resume",
        ) from error


def _write_run_record(out: Path, record: RunRecord) -> None:
    out.mkdir(parents=True, exist_ok=True)
    _io.write_json(out / RUN_FILE, record.to_dict())


# --------------------------------------------------------------------------------------------
# Reading and checking the data


def _read_table(path: Path, sep: str | None, encoding: str | None) -> pd.DataFrame:
    """``read_table`` with ``sep``/``encoding``, which only a CSV file can take."""
    from dlstructured.data.prepare import read_table

    given = [name for name, value in (("sep", sep), ("encoding", encoding)) if value]
    if given and path.suffix.lower() in (".parquet", ".pq"):
        flags = " and ".join(f"--{name}" for name in given)
        raise DataError(f"`sep` and `encoding` apply to CSV files; {str(path)!r} is Parquet",
                        cli_message=f"{flags} apply to CSV files; {str(path)!r} is Parquet: "
                        "leave them out")
    return read_table(path, sep=sep, encoding=encoding)


def read_data(data: Any, *, sep: str | None = None, encoding: str | None = None) -> pd.DataFrame:
    """The table of ``data``: a DataFrame as it is, or a CSV or Parquet file read with ``sep``
    and ``encoding`` (``None``: detected, UTF-8), without a leading row-number column (dropped
    with a [`DataWarning`][dlstructured.errors.DataWarning]).

    Raises:
        TypeError: If ``data`` is neither a DataFrame nor a path.
        FileNotFoundError: If there is no such file.
        DataError: If the file is a folder, holds no rows or cannot be decoded.
    """
    from dlstructured.data.datasets import find_index_column

    if isinstance(data, pd.DataFrame):
        return data
    if not isinstance(data, (str, os.PathLike)):
        raise TypeError("`data` must be a pandas DataFrame or the path of a CSV or Parquet file. "
                        f"Received: data={type(data).__name__}")
    path = Path(data)
    if path.is_dir():
        raise DataError(f"{str(data)!r} is a folder; give a CSV or Parquet file")
    frame = _read_table(path, sep, encoding)
    if frame.shape[1] == 0 or frame.shape[0] == 0:
        raise DataError(f"{str(data)!r} holds no data rows; give a table with a header and rows")
    dropped = find_index_column(frame)
    if dropped is not None:
        frame = frame.drop(columns=dropped)
        warnings.warn(DataWarning(
            f"dropped the first column {dropped!r} of {str(data)!r}: it only numbers the rows"
        ), stacklevel=2)
    return frame


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def require_column(frame: pd.DataFrame, source: str, argument: str, column: Any) -> None:
    """Refuse a ``column`` (given as ``argument``) that ``frame`` (read from ``source``) lacks.

    Raises:
        DataError: Naming the column, the argument (the flag on the command line) and the
            columns there are.
    """
    if column is None or column in frame.columns:
        return
    names = [str(c) for c in frame.columns]
    shown = ", ".join(names[:20]) + (f" ... ({len(names)} columns)" if len(names) > 20 else "")
    where = f"column {column!r} ({{}}) is not in {source}; pass one of its columns: {shown}"
    raise DataError(where.format(f"`{argument}`"), cli_message=where.format(_flag(argument)))


def _check_selected_columns(frame: pd.DataFrame, target: Any, config: RunConfig, source: str):
    """Refuse ``kinds`` or ``drop`` naming the target or a column the table lacks."""
    for argument, names in (("kinds", list(config.kinds)), ("drop", config.drop)):
        for name in names:
            if name == target:
                raise DataError(
                    f"`{argument}` names the target column {target!r}; leave it out of it",
                    cli_message=f"{_flag(argument)} names the target column {target!r}; leave "
                    f"it out of {_flag(argument)}",
                )
            require_column(frame, source, argument, name)


def positive_label_of(frame: pd.DataFrame, target: Any, label: Any) -> Any:
    """The target's label that ``label`` names: itself, or the label it spells as text.

    Text is compared as written first (``"yes"`` names ``"yes"``), then as the number or boolean
    it spells (``"1"`` and ``"1.0"`` name ``1``; ``"true"`` names ``True``), so a label given on
    the command line finds a numeric or boolean target's label.

    Raises:
        DataError: If no label of the target matches.
    """
    if label is None:
        return None
    labels = [value.item() if hasattr(value, "item") else value
              for value in frame[target].dropna().unique()]
    for matches in (lambda each: each == label and type(each) is type(label),
                    lambda each: isinstance(label, str) and str(each) == label,
                    lambda each: isinstance(label, str) and _spells(label, each)):
        for each in labels:
            if matches(each):
                return each
    shown = ", ".join(str(each) for each in labels[:10])
    message = f"{{}} {label!r} is not a label of the target {target!r}; its labels: {shown}"
    raise DataError(message.format("`positive_label`"),
                    cli_message=message.format("--positive-label"))


def _spells(text: str, label: Any) -> bool:
    if isinstance(label, bool):
        return text.strip().lower() == str(label).lower()
    if isinstance(label, (int, float)):
        try:
            return float(text) == float(label)
        except ValueError:
            return False
    return False


def _prepare(frame: pd.DataFrame, target: Any, config: RunConfig, source: str,
             **overrides: Any) -> Any:
    from dlstructured.data.prepare import prepare
    from dlstructured.recipes import prepare_options

    require_column(frame, source, "target", target)
    require_column(frame, source, "group_by", config.group_by)
    _check_selected_columns(frame, target, config, source)
    return prepare(
        frame,
        target,
        task=config.task,
        **{**prepare_options(config), **overrides},
        split=config.split,
        group_by=config.group_by,
        seed=config.seed,
        kinds=dict(config.kinds) or None,
        drop=list(config.drop) or None,
        positive_label=positive_label_of(frame, target, config.positive_label),
    )


def fingerprint(data: Any, frame: pd.DataFrame) -> dict[str, Any]:
    """What identifies the data: a SHA-256 (of the file, or of a DataFrame's values), its size
    in bytes (``None`` for a DataFrame), rows and columns."""
    digest = hashlib.sha256()
    if isinstance(data, pd.DataFrame):
        digest.update(pd.util.hash_pandas_object(data, index=True).to_numpy().tobytes())
        digest.update(json.dumps([str(c) for c in data.columns]).encode())
        size = None
    else:
        with open(data, "rb") as stream:
            for chunk in iter(lambda: stream.read(1 << 20), b""):
                digest.update(chunk)
        size = os.path.getsize(data)
    return {"sha256": digest.hexdigest(), "bytes": size, "rows": int(frame.shape[0]),
            "columns": [str(column) for column in frame.columns]}


# --------------------------------------------------------------------------------------------
# Checks before a run starts or resumes


def same_file(first: str | os.PathLike, second: str | os.PathLike) -> bool:
    """Whether two paths name one file: the same resolved path, or a link to it."""
    if Path(first).resolve() == Path(second).resolve():
        return True
    try:
        return os.path.samefile(first, second)
    except OSError:  # one of them does not exist
        return False


def _check_out(out: Path, data: Any) -> None:
    """Refuse an output folder that is a file, or whose files would replace the data file."""
    if out.exists() and not out.is_dir():
        raise RunError(f"`out` {str(out)!r} is a file; give a folder path",
                       cli_message=f"--out {str(out)!r} is a file; give a folder path")
    if isinstance(data, pd.DataFrame):
        return
    for name in (*OUTPUT_FILES, CHECKPOINT_DIR):
        if same_file(out / name, data):
            message = (f"{{}} {str(out)!r} would overwrite the data file {str(data)!r} with the "
                       f"run's {name}; give another output folder")
            raise RunError(message.format("`out`"), cli_message=message.format("--out"))
    checkpoints = (out / CHECKPOINT_DIR).resolve()
    if checkpoints in Path(data).resolve().parents:
        raise RunError(f"the data file {str(data)!r} lies in {str(checkpoints)!r}, which the run "
                       "rewrites; move it, or give another output folder")


def _check_memory(config: RunConfig) -> None:
    """Refuse hidden layers whose activations for one batch cannot fit in this machine's memory.

    The builders bound the weights (``dlstructured.models.builders.MAX_PARAMETERS``); a wide
    layer has few weights, but a batch's activations and their gradients grow with the width times
    ``batch_size``, 4 bytes each.
    """
    try:
        memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):  # no sysconf (Windows): leave it to Keras
        return
    members = config.members or 1
    needed = 2 * 4 * config.batch_size * sum(config.resolved_hidden_units) * members
    if needed > memory:
        units = ",".join(map(str, config.resolved_hidden_units))
        message = (f"{{}} {units} with {{}} {config.batch_size} needs about "
                   f"{needed / 2**30:.3g} GiB for one batch's activations, more than this "
                   f"machine's {memory / 2**30:.3g} GiB; give narrower {{}} layers or a smaller "
                   "{}")
        raise RunError(
            message.format("`hidden_units`", "`batch_size`", "`hidden_units`", "`batch_size`"),
            cli_message=message.format("--hidden-units", "--batch-size", "--hidden-units",
                                       "--batch-size"),
        )


def _shown(value: Any) -> str:
    """A config value as the command line writes it."""
    if isinstance(value, Mapping):
        return ",".join(f"{key}={item}" for key, item in value.items())
    if isinstance(value, (list, tuple)):
        return ",".join(str(item) for item in value) or "none"
    return str(value)


def _with(name: str, value: Any) -> str:
    """How a flag reads in a sentence: ``with --task binary``, ``without --drop``."""
    if value is None or value is False or (isinstance(value, (tuple, Mapping)) and not value
                                            and name in ("drop", "kinds")):
        return f"without {_flag(name)}"
    return f"with {_flag(name)}" if value is True else f"with {_flag(name)} {_shown(value)}"


def _check_resume_config(record: RunRecord, config: RunConfig, where: str) -> RunConfig:
    """Refuse a config that differs from the run's (a larger ``epochs`` extends the run)."""
    for name in _CONFIG_FIELDS:
        ran, asked = getattr(record.config, name), getattr(config, name)
        if name == "hidden_units":
            ran, asked = record.config.resolved_hidden_units, config.resolved_hidden_units
        if ran == asked or (name == "epochs" and asked is not None
                            and (ran is None or asked >= ran)):
            continue
        raise RunError(
            f"config.{name}={asked!r} differs from {where}, started with {name}={ran!r}; pass "
            "config=None to resume the run as it was started, or start a new run",
            cli_message=f"--resume {_with(name, asked)}: {where} was started "
            f"{_with(name, ran)}; leave {_flag(name)} out to resume the run as it was started, "
            "or start a new run without --resume",
        )
    return record.config.replace(epochs=config.epochs)


def _check_fingerprint(record: RunRecord, now: dict[str, Any], source: str, out: Path) -> None:
    before = record.fingerprint
    if not isinstance(before, dict) or "sha256" not in before:
        warnings.warn(DataWarning(
            f"{str(out / RUN_FILE)!r} holds no fingerprint of the data (a run started by "
            f"dlstructured 0.1.0), so resuming cannot check that {source} is unchanged"
        ), stacklevel=4)
        return
    if before["sha256"] == now["sha256"]:
        return
    changes = []
    if before.get("rows") != now["rows"]:
        changes.append(f"rows {before.get('rows')} -> {now['rows']}")
    old, new = before.get("columns") or [], now["columns"]
    if [c for c in old if c not in new]:
        changes.append(f"columns removed: {', '.join(c for c in old if c not in new)}")
    if [c for c in new if c not in old]:
        changes.append(f"columns added: {', '.join(c for c in new if c not in old)}")
    subject = source if source == "the DataFrame" else f"the data {source}"
    message = (f"{{}}{subject} changed since the run started "
               f"({'; '.join(changes or ['content changed'])}), and the checkpoint was trained "
               "on the old data; put the original data back, or start a new run{}")
    raise DataError(message.format("", ""),
                    cli_message=message.format("--resume: ", " without --resume"))


def _resumed_inputs(
    record: RunRecord, data: Any, target: Any, config: RunConfig | None, out: Path
) -> tuple[Any, Any, RunConfig]:
    """The data, target and config a resumed run trains with, refusing what conflicts."""
    where = f"the run in {str(out)!r}"
    if data is None:
        if record.data is None:
            raise RunError(f"{where} was trained on a DataFrame; pass it again as `data`")
        data = record.data
    elif isinstance(data, pd.DataFrame) != (record.data is None) or (
        record.data is not None and not same_file(data, record.data)
    ):
        raise RunError(
            f"{where} was trained on {record.data or 'a DataFrame'!r}, but data={data!r:.80} was "
            "given; pass data=None to resume it on its own data, or start a new run",
            cli_message=f"--resume continues {where} on its own data {record.data!r}, but DATA "
            f"{str(data)!r} was given; leave DATA out, or start a new run without --resume",
        )
    if target is not None and target != record.target:
        raise RunError(
            f"target={target!r} differs from {where}'s target {record.target!r}; pass "
            "target=None, or start a new run",
            cli_message=f"--resume: --target {target!r} differs from {where}'s --target "
            f"{record.target!r}; leave --target out, or start a new run without --resume",
        )
    config = record.config if config is None else _check_resume_config(record, config, where)
    return data, record.target, config


# --------------------------------------------------------------------------------------------
# The run


def _plain(value: Any) -> Any:
    """JSON-safe copy: numpy scalars to Python numbers, NaN and infinities to ``None``."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return str(value)


@dataclasses.dataclass
class Run:
    """A finished training run: plain data, plus the trained model.

    Attributes:
        model: The trained ``TabularModel`` (predicts on raw rows).
        result: The ``TrainingResult`` (history, best and final metrics).
        config: The [`RunConfig`][dlstructured.config.RunConfig] the run trained with.
        data: Absolute path of the data file, or ``None`` for a DataFrame.
        target: The target column.
        task: ``"regression"``, ``"binary"`` or ``"multiclass"``.
        rows: Rows of the training and validation parts: ``{"train": n, "valid": m}``.
        num_features: Columns of the network's input.
        backend: The Keras backend it trained on.
        fingerprint: What identifies the data (see ``run.json``).
        recipe: The concrete settings the model trained with: ``recipe.config`` is ``config``
            with the model's own values in place of its ``None`` fields.
        refit_result: For a model refitted on every row after the epochs were chosen on the
            validation split, the refit's ``TrainingResult`` (``result`` stays the fit that
            chose the epochs, with its validation curves); else ``None``.
    """

    model: Any
    result: Any
    config: RunConfig
    data: str | None
    target: Any
    task: str
    rows: dict[str, int]
    num_features: int
    backend: str
    fingerprint: dict[str, Any] | None = None
    recipe: Recipe | None = None
    refit_result: Any = None

    def summary(self) -> dict[str, Any]:
        """What ``metrics.json`` holds: the run's settings, size, timing and metrics, as JSON."""
        from dlstructured import __version__

        result = self.result
        return _plain({
            "dlstructured_version": __version__,
            "data": self.data,
            "target": self.target,
            "task": self.task,
            "rows": self.rows,
            "num_features": self.num_features,
            "backend": self.backend,
            "engine": result.engine,
            "config": self.config.to_dict(),
            "settings": None if self.recipe is None else self.recipe.config.to_dict(),
            "refit": None if self.refit_result is None else {
                "rows": self.rows["train"] + self.rows["valid"],
                "epochs_run": self.refit_result.epochs_run,
                "fit_time_s": self.refit_result.fit_time,
                "final": dict(self.refit_result.final_metrics),
            },
            "epochs_run": result.epochs_run,
            "best_epoch": result.best_epoch,
            "stopped_early": result.stopped_early,
            "diverged": result.diverged,
            "diverged_epoch": result.diverged_epoch,
            "interrupted": result.interrupted,
            "wall_time_s": result.wall_time,
            "fit_time_s": result.fit_time,
            "best": dict(result.best_metrics),
            "final": dict(result.final_metrics),
        })

    def metrics_table(self) -> str:
        """The best and the final metrics as a text table, one row per metric."""
        result = self.result
        best, final = dict(result.best_metrics), dict(result.final_metrics)
        names = list(dict.fromkeys([*final, *best]))
        width = max([len("metric"), *(len(name) for name in names)])
        heads = f"best (epoch {result.best_epoch})", f"final (epoch {result.epochs_run})"
        lines = [f"{'metric':<{width}}  {heads[0]:>16}  {heads[1]:>16}"]
        for name in names:
            shown = format_number(best.get(name)), format_number(final.get(name))
            lines.append(f"{name:<{width}}  {shown[0]:>16}  {shown[1]:>16}")
        return "\n".join(lines)

    def record(self) -> RunRecord:
        """What ``run.json`` records of this run."""
        return RunRecord(data=self.data, target=self.target, backend=self.backend,
                         config=self.config, fingerprint=self.fingerprint)

    def write(self, out: str | os.PathLike) -> list[Path]:
        """Write ``model.keras``, ``metrics.json``, ``history.csv``, ``learning_curves.png``
        and ``run.json`` into the folder ``out`` (created if missing), each atomically.

        Returns:
            The paths written, in that order.
        """
        from dlstructured.training.checkpoints import save_model_atomically

        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        save_model_atomically(self.model, out / MODEL_FILE)
        _io.write_json(out / METRICS_FILE, self.summary())
        with _io.atomic_path(out / HISTORY_FILE) as temporary:
            self.result.history.reset_index().to_csv(temporary, index=False)
        figure = self.result.plot()  # drawn without pyplot: nothing to close
        with _io.atomic_path(out / PLOT_FILE) as temporary:
            figure.savefig(temporary, format="png", dpi=100)
        _write_run_record(out, self.record())
        return [out / name for name in OUTPUT_FILES]


def _build(data: Any, config: RunConfig) -> Any:
    """The run's network, from a config whose model-dependent fields are filled in."""
    from dlstructured.models.ensemble import ensemble_mlp
    from dlstructured.tasks import TASKS

    _check_memory(config)
    options = dict(hidden_units=config.resolved_hidden_units, activation=config.activation,
                   dropout_rate=config.dropout_rate, seed=config.seed,
                   name=f"{config.model}_model")
    if config.model == "auto":
        builder = ensemble_mlp
        options.update(members=config.members)
    else:
        builder = TASKS[data.task].make_builder()
        options.update(batch_norm=config.batch_norm, input_batch_norm=config.input_batch_norm)
    try:
        return builder(data, **options)
    except ValueError as error:
        raise RunError(f"cannot build the model: {error}",
                       cli_message="cannot build the model: "
                       + str(error).replace("`hidden_units`", "--hidden-units")) from error


def _check_metrics(config: RunConfig, task: str) -> None:
    from dlstructured.tasks import as_metric_objects

    try:
        as_metric_objects(None if config.metrics is None else list(config.metrics), task)
    except ValueError as error:
        raise RunError(f"`metrics` do not fit the run: {error}",
                       cli_message=f"bad --metrics: {error}") from error


# --------------------------------------------------------------------------------------------
# Several processes (see dlstructured.distributed)


def _check_processes_agree(config: RunConfig, **more: Any) -> None:
    """Refuse processes of one run started with different options or data."""
    from dlstructured import distributed

    values = {name: getattr(config, name) for name in _CONFIG_FIELDS}
    values.update({name: str(value) if isinstance(value, Path) else value
                   for name, value in more.items()})
    distributed.check_same(values, flags={"data": "DATA (its content)", "out": "--out"})


def _distribution_scope() -> Any:
    """Data-parallel over every device of every process in a multi-process run, unless the
    caller chose a distribution; else nothing."""
    import contextlib

    from dlstructured import distributed

    if distributed.process_count() == 1:
        return contextlib.nullcontext()
    import keras

    if keras.distribution.distribution() is not None:
        return contextlib.nullcontext()
    return distributed.data_parallel().scope()


def _shard(prepared: Any) -> Any:
    """This process's rows of the training and validation parts (all of them in one process):
    the rule of ``dlstructured.distributed.shard_positions``."""
    from dlstructured import distributed

    if distributed.process_count() == 1 or not hasattr(prepared, "x_train"):
        return prepared  # one process, or a streamed table (its sources come sharded)
    train = distributed.shard_positions(len(prepared.x_train))
    parts = {"x_train": prepared.x_train[train], "y_train": prepared.y_train[train],
             "train_index": prepared.train_index[train]}
    if prepared.x_valid is not None and len(prepared.x_valid):
        valid = distributed.shard_positions(len(prepared.x_valid))
        parts.update(x_valid=prepared.x_valid[valid], y_valid=prepared.y_valid[valid],
                     valid_index=prepared.valid_index[valid])
    return dataclasses.replace(prepared, **parts)


def _check_batch_size(config: RunConfig) -> None:
    from dlstructured import distributed

    processes = distributed.process_count()
    devices = processes * distributed.local_device_count()
    if config.batch_size % devices:
        message = (f"{{}} {config.batch_size} is the global batch of {processes} processes "
                   f"and must be a multiple of their {devices} devices; give a multiple")
        raise RunError(message.format("`batch_size`") + f". Received: batch_size="
                       f"{config.batch_size}", cli_message=message.format("--batch-size"))


def _remove_unless_useful(out: Path) -> None:
    """Remove an output folder a failed run created, if it holds only the run's bookkeeping
    (``run.json``, a checkpoint folder without a completed checkpoint)."""
    if not out.is_dir() or not {e.name for e in out.iterdir()} <= {RUN_FILE, CHECKPOINT_DIR}:
        return
    if not (out / CHECKPOINT_DIR / "checkpoint.json").exists():
        shutil.rmtree(out, ignore_errors=True)


def fit_table(
    data: Any,
    target: Any,
    config: RunConfig | None = None,
    *,
    out: str | os.PathLike | None = None,
    resume: bool = False,
    callbacks: Sequence[Any] = (),
    verbose: int = 0,
) -> Run:
    """Prepare a table, build the task's network and train it, as ``dlstructured train`` does.

    Args:
        data: A pandas DataFrame, or the path of a CSV or Parquet file (read with the config's
            ``sep`` and ``encoding``; a leading row-number column is dropped with a
            ``DataWarning``), or of a folder or glob of Parquet files. A folder, a glob and a
            file of at least ``STREAM_MIN_BYTES`` are streamed in batches, never read whole
            (see ``dlstructured.data.stream``; a CSV is first converted to Parquet in
            ``out``): the default model then trains once, with ``STREAM_MEMBERS`` members
            unless ``members`` is given. With ``resume=True``, ``None`` means the run's
            own data.
        target: The column to predict; with ``resume=True``, ``None`` means the run's.
        config: What the run is made of. Defaults to ``None``: ``RunConfig()``, or, resuming,
            the run's own config (a config given then must equal it, except a larger
            ``epochs``, which trains on to that many epochs).
        out: Folder to write the run into (``run.json`` first, ``checkpoints/`` every epoch,
            then ``model.keras``, ``metrics.json``, ``history.csv``, ``learning_curves.png``).
            Defaults to ``None``: nothing is written.
        resume: Continue the run in ``out`` from its last checkpoint. Defaults to ``False``.
        callbacks: Keras callbacks to run during training. Defaults to none.
        verbose: ``0`` silent, ``1`` the progress bar of
            ``dlstructured.training.progress`` with a line saying what is trained, ``2`` one
            line per epoch. Defaults to ``0``.

    Returns:
        The ``Run``. A run that diverged or was interrupted (Ctrl-C) also returns one,
        with the best weights before it; ``train``'s warnings say so.

    Raises:
        TypeError: If an argument has the wrong type.
        DataError: If the data cannot be read or prepared as the config says, or, resuming,
            the data file changed since the run started.
        RunError: If ``out`` cannot hold the run, or, resuming, it holds no run, or the data,
            target or config conflict with it.

    Example:

    >>> import numpy as np, pandas as pd
    >>> from dlstructured import RunConfig, fit_table
    >>> x = np.linspace(0, 1, 40)
    >>> table = pd.DataFrame({"x": x, "y": 3 * x + 2})
    >>> run = fit_table(table, "y", RunConfig(hidden_units=(8,), epochs=2, patience=0))
    >>> run.task, run.result.epochs_run, run.rows
    ('regression', 2, {'train': 32, 'valid': 8})
    """


    if config is not None and not isinstance(config, RunConfig):
        raise TypeError(f"`config` must be a RunConfig or None. Received: config={config!r}")
    if not isinstance(resume, bool):
        raise TypeError(f"`resume` must be True or False. Received: resume={resume!r}")
    out = None if out is None else Path(out)
    record = None
    if resume:
        if out is None:
            raise RunError("resume=True needs `out`, the folder of the run to continue")
        record = read_run_record(out)
        data, target, config = _resumed_inputs(record, data, target, config, out)
    elif data is None or target is None:
        raise TypeError("`data` and `target` are needed unless resume=True. "
                        f"Received: data={data!r:.80}, target={target!r}")
    config = config or RunConfig()
    if out is not None:
        _check_out(out, data)
    if streams(data):
        return _fit_streamed(data, target, config, out=out, record=record, resume=resume,
                             callbacks=callbacks, verbose=verbose)
    frame = read_data(data, sep=config.sep, encoding=config.encoding)
    source = "the DataFrame" if isinstance(data, pd.DataFrame) else repr(str(data))
    now = fingerprint(data, frame)
    _check_processes_agree(config, target=target, data=now["sha256"], out=out, resume=resume)
    if record is not None:
        _check_fingerprint(record, now, source, out)
        now = record.fingerprint or now
    prepared = _prepare(frame, target, config, source)
    _check_metrics(config, prepared.task)
    with _distribution_scope():
        return _fit_prepared(prepared, frame, data, target, config, source, now, out, resume,
                             callbacks, verbose)


def _fit_prepared(prepared: Any, frame: pd.DataFrame, data: Any, target: Any, config: RunConfig,
                  source: str, now: dict[str, Any], out: Path | None, resume: bool,
                  callbacks: Sequence[Any], verbose: int) -> Run:
    """``fit_table`` once the data is prepared: build, train, refit, write (process 0 only)."""
    run = _new_run(prepared, config, target=target, fingerprint=now,
                   data=None if isinstance(data, pd.DataFrame) else str(Path(data).resolve()))
    everything = functools.partial(_prepare, frame, target, config, source, valid_fraction=0.0)
    return _run_and_write(run, prepared, everything, out=out, resume=resume, callbacks=callbacks,
                          verbose=verbose)


def _run_and_write(run: Run, prepared: Any, refit_data: Any, *, out: Path | None,
                   resume: bool, callbacks: Sequence[Any], verbose: int) -> Run:
    """Train ``run`` on ``prepared`` (then refit on ``refit_data()`` if the recipe says so),
    with ``out``'s run.json first and its files at the end (process 0 only)."""
    from dlstructured import distributed

    _check_batch_size(run.recipe.config)
    primary = distributed.is_primary()
    checkpoints = None if out is None else out / CHECKPOINT_DIR
    from_checkpoint = False
    if out is not None:
        from dlstructured.training.checkpoints import POINTER_FILE, read_checkpoint

        from_checkpoint = resume and (checkpoints / POINTER_FILE).exists()
        if resume and not from_checkpoint:
            warnings.warn(f"{str(out)!r} holds no checkpoint yet: training starts from the "
                          "beginning", UserWarning, stacklevel=2)
        if from_checkpoint:
            read_checkpoint(checkpoints)  # refuse a broken checkpoint before training
    created = out is not None and not out.exists() and primary
    try:
        if out is not None and primary:
            _write_run_record(out, run.record())
        run.result = _train(run, _shard(prepared), callbacks, verbose, checkpoints,
                            from_checkpoint)
        if _should_refit(run):
            _refit(run, _shard(refit_data()), callbacks, verbose, checkpoints,
                   from_checkpoint)
    except BaseException:
        if created:
            _remove_unless_useful(out)
        raise
    if out is not None and primary:
        run.write(out)
    return run


def streams(data: Any) -> bool:
    """Whether ``fit_table`` streams ``data`` rather than reading it into one DataFrame: a
    folder or a glob of Parquet files, or a CSV or Parquet file of at least
    ``STREAM_MIN_BYTES``.

    Example:

    >>> import pandas as pd
    >>> streams("logs/*.parquet"), streams(pd.DataFrame({"x": [1]}))
    (True, False)
    """
    from dlstructured.data.stream import is_streamable

    if not isinstance(data, (str, os.PathLike)):
        return False
    if is_streamable(data):
        return True
    path = Path(data)
    return path.is_file() and path.stat().st_size >= STREAM_MIN_BYTES


def open_stream(data: str | os.PathLike, cache_dir: str | os.PathLike, *,
                sep: str | None = None, encoding: str | None = None, verbose: int = 0) -> Any:
    """The ``StreamTable`` of ``data``: Parquet as it is, a CSV file converted to Parquet in
    ``cache_dir`` once (reused while the CSV is unchanged)."""
    from dlstructured.data.stream import StreamTable, csv_to_parquet, is_streamable

    path = Path(data)
    if not is_streamable(data) and path.suffix.lower() not in (".parquet", ".pq"):
        data = csv_to_parquet(path, cache_dir, sep=sep, encoding=encoding, verbose=verbose)
    return StreamTable(data)


def _fit_streamed(data: Any, target: Any, config: RunConfig, *, out: Path | None,
                  record: RunRecord | None, resume: bool, callbacks: Sequence[Any],
                  verbose: int) -> Run:
    """``fit_table`` on a table streamed from its files (see ``streams``)."""
    import tempfile

    from dlstructured.data.preprocessing import TabularPreprocessor
    from dlstructured.data.stream import CACHE_FOLDER, prepare_stream
    from dlstructured.recipes import prepare_options

    source = repr(str(data))
    if config.group_by is not None:
        message = (f"{{}} cannot be kept whole on a streamed table ({source}); the validation "
                   "rows are chosen by a hash of the row number. Leave it out, or give a table "
                   "that fits in memory")
        raise RunError(message.format("`group_by`"), cli_message=message.format("--group-by"))
    from dlstructured import distributed

    processes = distributed.process_count()
    with tempfile.TemporaryDirectory(prefix="dlstructured-") as scratch:
        # Only process 0 writes into `out`: the others convert a CSV in their scratch folder.
        keep = out is not None and distributed.is_primary()
        cache = (out if keep else Path(scratch)) / CACHE_FOLDER
        table = open_stream(data, cache, sep=config.sep, encoding=config.encoding,
                            verbose=verbose)
        columns = pd.DataFrame(columns=table.columns)
        require_column(columns, source, "target", target)
        _check_selected_columns(columns, target, config, source)
        now = table.fingerprint()
        # The fingerprint's hash covers file names and times, which differ between machines
        # (and between the processes' own conversions of a CSV): compare rows and types.
        _check_processes_agree(config, target=target, out=out, resume=resume,
                               data=json.dumps([table.num_rows, table.types]))
        if record is not None:
            # A CSV another process converted in its scratch folder has new files; process 0
            # checks the data against the run, the others agreed with process 0 above.
            if keep or table.path == os.fspath(data):
                _check_fingerprint(record, now, source, out)
            now = record.fingerprint or now
        options = prepare_options(config)
        label = config.positive_label
        if label is not None:
            label = positive_label_of(table.head(), target, label)
        preprocessor = TabularPreprocessor(
            target, task=config.task, kinds=dict(config.kinds) or None,
            scaling=options.get("scaling", "minmax"),
            target_scaling=options.get("target_scaling", "minmax"),
            clip_target=options.get("clip_target", False), positive_label=label,
        )
        shard = (distributed.process_index(), processes) if processes > 1 else None
        prepared = prepare_stream(table, preprocessor, valid_fraction=options["valid_fraction"],
                                  seed=config.seed,
                                  exclude={name: "dropped" for name in config.drop},
                                  shard=shard, verbose=verbose)
        _check_metrics(config, prepared.task)
        with _distribution_scope():
            run = _new_run(prepared, config, target=target, fingerprint=now,
                           data=str(Path(data).resolve()))
            if run.recipe.config.epochs > 1:
                # Later epochs read the transformed pieces back from the scratch folder.
                for name, part in (("train", prepared.train), ("valid", prepared.valid)):
                    if part is not None:
                        part.cache_in(Path(scratch) / "features" / name)
            return _run_and_write(run, prepared, None, out=out, resume=resume,
                                  callbacks=callbacks, verbose=verbose)


def fit_frame(
    frame: pd.DataFrame,
    target: Any,
    config: RunConfig | None = None,
    *,
    sample_weight: Any = None,
    class_weight: Any = None,
    callbacks: Sequence[Any] = (),
    verbose: int = 0,
) -> Run:
    """Prepare a DataFrame, build the task's network and train it, with weights per row.

    The same run as [`fit_table`][dlstructured.run.fit_table] without an output folder, for
    callers that hold the frame already and weigh its rows (the scikit-learn estimators of
    ``dlstructured.sklearn``). The preprocessing is fitted on the training part of the split
    only; ``sample_weight`` and ``class_weight`` weigh the training loss (validation, and so
    early stopping, is unweighted).

    Args:
        frame: The table, target column included.
        target: The column to predict.
        config: What the run is made of. Defaults to ``None``: ``RunConfig()``.
        sample_weight: One non-negative weight per row of ``frame``, in its order. Defaults to
            ``None`` (every row weighs 1).
        class_weight: For classifiers, ``{class code: weight}`` or ``"balanced"``. Defaults to
            ``None``.
        callbacks: Keras callbacks to run during training. Defaults to none.
        verbose: As for [`fit_table`][dlstructured.run.fit_table]. Defaults to ``0``.

    Returns:
        The [`Run`][dlstructured.run.Run].

    Raises:
        TypeError: If ``frame`` is not a DataFrame or ``config`` not a RunConfig.
        ValueError: If ``sample_weight`` does not hold one weight per row.
        DataError: If the frame cannot be prepared as the config says.

    Example:

    >>> import numpy as np, pandas as pd
    >>> from dlstructured import RunConfig
    >>> from dlstructured.run import fit_frame
    >>> table = pd.DataFrame({"x": np.linspace(0, 1, 40), "y": [0, 1] * 20})
    >>> run = fit_frame(table, "y", RunConfig(hidden_units=(4,), epochs=2),
    ...                 sample_weight=np.ones(40), class_weight="balanced")
    >>> run.task, run.result.epochs_run
    ('binary', 2)
    """
    if not isinstance(frame, pd.DataFrame):
        raise TypeError(f"`frame` must be a pandas DataFrame. Received: frame of type "
                        f"{type(frame).__name__}")
    if config is not None and not isinstance(config, RunConfig):
        raise TypeError(f"`config` must be a RunConfig or None. Received: config={config!r}")
    config = config or RunConfig()
    weights = None
    if sample_weight is not None:
        weights = np.asarray(sample_weight, dtype="float64").reshape(-1)
        if len(weights) != len(frame):
            raise ValueError(f"`sample_weight` must hold one weight per row of `frame` "
                             f"({len(frame)}). Received: {len(weights)} values")
    frame = frame.reset_index(drop=True)  # positions are the index: weights follow the rows
    prepared = _prepare(frame, target, config, "the DataFrame")
    _check_metrics(config, prepared.task)
    run = _new_run(prepared, config, data=None, target=target, fingerprint=None)

    def rows_of(part: Any) -> Any:
        return None if weights is None else weights[np.asarray(part.train_index, "int64")]

    run.result = _train(run, prepared, callbacks, verbose, None, False,
                        sample_weight=rows_of(prepared), class_weight=class_weight)
    if _should_refit(run):
        everything = _prepare(frame, target, config, "the DataFrame", valid_fraction=0.0)
        _refit(run, everything, callbacks, verbose, None, False,
               sample_weight=rows_of(everything), class_weight=class_weight)
    return run


def _new_run(prepared: Any, config: RunConfig, **about: Any) -> Run:
    """The run for prepared data: its recipe resolved (its notices warned), its network built."""
    import keras

    streamed = not hasattr(prepared, "x_train")
    if streamed:
        rows = prepared.rows
    else:
        rows = {"train": len(prepared.x_train),
                "valid": 0 if prepared.x_valid is None else len(prepared.x_valid)}
    recipe = resolve(config, task=prepared.task, train_rows=rows["train"],
                     valid_rows=rows["valid"])
    if streamed:
        recipe = _streamed_recipe(recipe, config)
    for notice in recipe.notices:
        warnings.warn(DataWarning(notice), stacklevel=3)
    return Run(model=_build(prepared, recipe.config), result=None, config=config,
               task=prepared.task, rows=rows, num_features=int(prepared.num_features),
               backend=keras.backend.backend(), recipe=recipe, **about)


def _streamed_recipe(recipe: Recipe, config: RunConfig) -> Recipe:
    """The recipe on a streamed table: one fit (no refit on every row) and, for the default
    model, ``STREAM_MEMBERS`` ensemble members unless ``members`` is given; a notice says so."""
    if config.model != "auto":
        return recipe
    members = recipe.config.members if config.members is not None else min(
        recipe.config.members, STREAM_MEMBERS)
    notice = (f"the table is streamed, so the default model trains once on the training part "
              f"(no refit on every row) with {members} ensemble members"
              + ("" if config.members is not None else
                 f" instead of {recipe.config.members} (`members`, or --members, sets another "
                 "number)"))
    return dataclasses.replace(recipe, config=recipe.config.replace(members=members),
                               refit=False, notices=(*recipe.notices, notice))


def _progress(run: Run, epochs: int, verbose: int, heading: str) -> list[Any]:
    from dlstructured.training.progress import EpochProgress

    if not verbose:
        return []
    scale = float(getattr(run.model, "target_unit_scale", 1.0) or 1.0)
    return [EpochProgress(epochs, every_epoch=verbose == 2,
                          loss_scale=scale if run.task == "regression" else 1.0,
                          heading=heading)]


def _early_stopping(recipe: Recipe, valid_rows: int) -> Any:
    from dlstructured.training.loop import EarlyStopping

    patience = recipe.config.patience if valid_rows else 0
    if not patience:
        return False
    return EarlyStopping(patience=patience, min_delta=recipe.min_delta,
                         review_epochs=recipe.review_epochs)


def _train(run: Run, prepared: Any, callbacks: Sequence[Any], verbose: int,
           checkpoints: Path | None, resume: bool, **weights: Any) -> Any:
    from dlstructured.training.loop import train

    config = run.recipe.config
    valid = f", validating on {run.rows['valid']}" if run.rows["valid"] else ""
    heading = (f"training a{'n' if config.model == 'auto' else ''} {config.model} {run.task} "
               f"model on {run.rows['train']} rows{valid} ({run.num_features} features, "
               f"backend {run.backend})")
    if hasattr(prepared, "x_train"):
        data = {"x": prepared}
    else:  # streamed: the parts are batch sources
        data = {"x": prepared.train, "validation_data": prepared.valid, "task": run.task}
        heading = heading.replace(" rows", " streamed rows", 1)
    return train(
        run.model,
        **data,
        epochs=config.epochs,
        batch_size=config.batch_size,
        learning_rate=config.learning_rate,
        early_stopping=_early_stopping(run.recipe, run.rows["valid"]),
        metrics=None if config.metrics is None else list(config.metrics),
        callbacks=[*callbacks, *_progress(run, config.epochs, verbose, heading)],
        verbose=0,
        seed=config.seed,
        checkpoint_dir=checkpoints,
        resume=resume,
        **weights,
        **run.recipe.train,
    )


def _should_refit(run: Run) -> bool:
    result = run.result
    return (run.recipe.refit and bool(result.best_epoch) and not result.interrupted
            and not result.diverged)


def _refit(run: Run, prepared: Any, callbacks: Sequence[Any], verbose: int,
           checkpoints: Path | None, resume: bool, **weights: Any) -> None:
    """Train a fresh network on every row for the epochs the validation chose; it becomes
    ``run.model``, and its result ``run.refit_result``.

    The learning-rate schedule is the one of the whole budget, so the refit is at the same
    point of it when it stops as the chosen epoch was.
    """
    from dlstructured.models.ensemble_layers import LogCosineRestarts
    from dlstructured.training.loop import train

    config = run.recipe.config
    from dlstructured import distributed

    epochs = int(run.result.best_epoch)
    rows = len(prepared.x_train) * distributed.process_count()  # prepared holds one shard
    schedule = LogCosineRestarts(
        config.learning_rate, total_steps=config.epochs * -(-rows // min(config.batch_size, rows))
    )
    options = {**run.recipe.train, "learning_rate_schedule": schedule}
    model = _build(prepared, config)
    heading = f"refitting on all {rows} rows for the {epochs} epochs chosen"
    directory = None if checkpoints is None else checkpoints / REFIT_DIR
    run.refit_result = train(
        model,
        prepared,
        epochs=epochs,
        batch_size=config.batch_size,
        early_stopping=False,
        metrics=None if config.metrics is None else list(config.metrics),
        callbacks=[*callbacks, *_progress(run, epochs, verbose, heading)],
        verbose=0,
        seed=config.seed,
        checkpoint_dir=directory,
        resume=resume and directory is not None and (directory / "checkpoint.json").exists(),
        **weights,
        **options,
    )
    if not (run.refit_result.interrupted or run.refit_result.diverged):
        run.model = model


def resume_run(
    out: str | os.PathLike,
    *,
    epochs: int | None = None,
    callbacks: Sequence[Any] = (),
    verbose: int = 0,
) -> Run:
    """Continue the run in the folder ``out`` from its last checkpoint, with its own data and
    config, as ``dlstructured train --resume DIR`` does.

    Reads ``run.json`` of this version or of 0.1.0. The same as ``fit_table(None, None,
    config, out=out, resume=True)`` with the run's config.

    Args:
        out: The run's folder.
        epochs: Train on to this many epochs in all (at least the run's). Defaults to
            ``None``: the run's.
        callbacks: Keras callbacks to run during training. Defaults to none.
        verbose: As for [`fit_table`][dlstructured.run.fit_table]. Defaults to ``0``.

    Returns:
        The [`Run`][dlstructured.run.Run], its files rewritten in ``out``.

    Raises:
        RunError: If ``out`` holds no run, or ``epochs`` is below the run's.
        DataError: If the run's data file changed since the run started.
    """
    config = read_run_record(out).config
    if epochs is not None:
        config = config.replace(epochs=epochs)
    return fit_table(None, None, config, out=out, resume=True, callbacks=callbacks,
                     verbose=verbose)


# --------------------------------------------------------------------------------------------
# Using a trained model on a table


def load_run_model(path: str | os.PathLike) -> Any:
    """Load a model that a run or ``TabularModel.save`` wrote, refusing anything else.

    A plain Keras model is refused: it knows nothing of the table's columns and would read a
    table's numbers by position. A run's folder or its checkpoint folder is refused with the
    path of the model file to give instead.

    Raises:
        ModelFileError: If ``path`` is missing, a folder, not a model file, or a plain Keras
            model.
    """
    from dlstructured._safe_loading import read_keras_config
    from dlstructured.tabular import load_model

    where = Path(path)
    if where.is_dir():
        hint = next((p for p in (where / MODEL_FILE, where.parent / MODEL_FILE) if p.is_file()),
                    None)
        if (where / "checkpoint.json").exists() or where.name == CHECKPOINT_DIR:
            what = "a checkpoint folder of a training run"
        else:
            what = "the output folder of a training run" if hint == where / MODEL_FILE \
                else "a folder"
        advice = f"give {str(hint)!r}" if hint else "give the model.keras that a run wrote"
        raise ModelFileError(f"{str(path)!r} is {what}, not a model file; {advice}")
    if not where.exists():
        raise ModelFileError(f"no model file at {str(path)!r}; give the model.keras that "
                             "`fit_table` or `dlstructured train` wrote")
    try:
        config = read_keras_config(path)
    except (ValueError, OSError) as error:
        raise ModelFileError(f"cannot load the model {str(path)!r}: {error}") from error
    if not str(config.get("registered_name") or "").startswith("dlstructured>"):
        kind = config.get("class_name") or "model"
        raise ModelFileError(
            f"{str(path)!r} is a plain Keras model ({kind}), which knows nothing of the table's "
            "columns; give a model written by `dlstructured train` or `TabularModel.save`"
        )
    return load_model(path)


def prediction_frame(model: Any, frame: pd.DataFrame, *, proba: bool = False) -> pd.DataFrame:
    """A ``prediction`` column (original units or labels) per row, and with ``proba`` one
    ``probability_<label>`` column per class of a classifier.

    Raises:
        RunError: If ``proba`` is asked of a regression model.
    """
    if proba and model.task not in ("binary", "multiclass"):
        message = "{} needs a classifier, but the model is a " + f"{model.task} model"
        raise RunError(message.format("`proba`"), cli_message=message.format("--proba") +
                       "; drop --proba")
    values = np.asarray(model.predict(frame))
    if values.ndim > 1:
        values = values.reshape(len(values), -1)[:, 0]
    predictions = pd.DataFrame({"prediction": values})
    if proba:
        probabilities = pd.DataFrame(model.predict_proba(frame)).reset_index(drop=True)
        probabilities.columns = [f"probability_{label}" for label in probabilities.columns]
        predictions = pd.concat([predictions, probabilities], axis=1)
    return predictions


def predict_streamed(model: Any, data: str | os.PathLike, path: str | os.PathLike | None, *,
                     proba: bool = False, sep: str | None = None, encoding: str | None = None,
                     batch_rows: int = 65_536) -> int:
    """Write ``prediction_frame``'s columns for every row of a large table, a batch at a time.

    ``data`` is a Parquet file, folder or glob (read a row group at a time) or a CSV file (read
    ``batch_rows`` rows at a time); the CSV at ``path`` (standard output for ``None``) gets the
    same columns as ``prediction_frame`` gives, rows in the input's order, written atomically.

    Returns:
        The number of rows predicted.

    Raises:
        RunError: If ``path`` is a folder or one of the input files.
        DataError: If a batch cannot be read or predicted, naming the file.
    """
    import sys

    from dlstructured.data.stream import StreamTable, is_streamable

    if is_streamable(data) or Path(data).suffix.lower() in (".parquet", ".pq"):
        table = StreamTable(data)
        files = table.files
        frames = (frame for _, frame in table.frames())
    else:
        from dlstructured.data.stream import detect_separator

        files = [os.fspath(data)]
        frames = pd.read_csv(data, sep=sep or detect_separator(Path(data), encoding),
                             encoding=encoding, chunksize=batch_rows)
    for name in files:
        refuse_inputs(path, data=name)
    if path is not None and Path(path).is_dir():
        raise RunError(f"{str(path)!r} is a folder; give a file name such as predictions.csv")
    rows = 0

    def write(stream: Any) -> None:
        nonlocal rows
        for frame in frames:
            predictions = prediction_frame(model, frame, proba=proba)
            predictions.to_csv(stream, index=False, header=rows == 0)
            rows += len(predictions)

    if path is None:
        write(sys.stdout)
        return rows
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with _io.atomic_path(path) as temporary, open(temporary, "w", newline="") as stream:
        write(stream)
    return rows


def default_out(data: str | os.PathLike) -> Path:
    """The output folder of a run on the file ``data``: ``runs/<its name without suffixes>``
    (for a glob, the name of its folder)."""
    from dlstructured.data.stream import is_streamable

    name = Path(data).name
    if is_streamable(data) and not Path(data).is_dir():
        name = Path(data).parent.resolve().name
    for suffix in (".gz", ".bz2", ".zip", ".xz"):
        name = name.removesuffix(suffix)
    return Path("runs") / (Path(name).stem or "run")


def format_number(value: Any) -> str:
    """A metric as a table shows it: four decimals, ``-`` for none."""
    if value is None:
        return "-"
    try:
        return f"{float(value):.4f}"
    except (TypeError, ValueError):
        return str(value)


def evaluate_on(model: Any, frame: pd.DataFrame, target: Any) -> dict[str, float]:
    """The model's metrics on ``frame``, whose labels are in the column ``target``, which may
    be named differently from the column the model was trained on.

    Raises:
        DataError: If the frame cannot be evaluated once the labels are renamed; the message
            names ``target``.
    """
    trained_on = getattr(model, "target", None)
    if not isinstance(trained_on, str) or trained_on == target:
        return model.evaluate(frame)
    # The model reads the labels under the name it was trained with.
    frame = frame.drop(columns=trained_on, errors="ignore").rename(columns={target: trained_on})
    try:
        return model.evaluate(frame)
    except (ValueError, TypeError, KeyError) as error:
        def renamed(text: str) -> str:
            return text.replace(repr(trained_on), repr(target))

        why = f"{target!r} is read as the model's target {trained_on!r}"
        raise DataError(f"{renamed(str(error))} (`target` {why})",
                        cli_message=f"{renamed(message_for_command_line(error))} (--target {why})"
                        ) from error


def refuse_inputs(path: str | os.PathLike | None, *,
                  advice: str = "give another file name such as predictions.csv",
                  **inputs: str | os.PathLike) -> None:
    """Refuse an output ``path`` that is one of the ``inputs`` (``model=..., data=...``), through
    links too, with ``advice`` on what to give instead.

    Raises:
        RunError: If ``path`` names one of the inputs.
    """
    for what, given in inputs.items():
        if path is not None and same_file(path, given):
            message = (f"{{}} {str(path)!r} is the {what} file {str(given)!r}, which writing "
                       f"would replace; {advice}")
            raise RunError(message.format("`path`"), cli_message=message.format("--out"))


def write_csv(frame: pd.DataFrame, path: str | os.PathLike | None) -> None:
    """Write ``frame`` (without its index) to the CSV file ``path`` atomically, or to standard
    output when ``path`` is ``None``.

    Raises:
        RunError: If ``path`` is a folder.
    """
    if path is None:
        import sys

        frame.to_csv(sys.stdout, index=False)
        return
    path = Path(path)
    if path.is_dir():
        raise RunError(f"{str(path)!r} is a folder; give a file name such as predictions.csv")
    path.parent.mkdir(parents=True, exist_ok=True)
    with _io.atomic_path(path) as temporary:
        frame.to_csv(temporary, index=False)
