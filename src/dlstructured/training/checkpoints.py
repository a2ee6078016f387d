"""Checkpoints that survive interruption, and resuming from them.

``train(..., checkpoint_dir=folder)`` writes, after every completed epoch:

- ``best.keras``: the best model so far by the monitored quantity (the ``TabularModel`` when one
  is trained, so it predicts on raw rows; else the network), loadable with
  ``load_checkpoint``;
- ``state-<epoch>-<token>/``: the latest training state: every variable of the network (weights,
  batch-normalization statistics, dropout seed-generator states) in ``variables.npz``, the
  optimizer's variables in ``optimizer.npz``, the best weights in ``best_weights.npz`` and, in
  ``state.json``, the epoch, the history rows, the early-stopping state and the shuffle seed;
- ``checkpoint.json``: a small pointer naming the current state folder.

Every write is atomic (through ``dlstructured._io``): files are written aside in the same
folder, flushed to disk, then renamed over the old ones with ``os.replace``; a state folder is
complete before the pointer names it, and older state folders are deleted only afterwards. A
process killed at any moment leaves the previous checkpoint intact and loadable. Only ``.keras``,
``.npz`` (``allow_pickle=False``) and JSON files are written: loading a checkpoint never
unpickles anything.

Under data-parallel training (``training.parallel``) only process 0 writes; every process
resumes from the same folder, which must then be shared by all of them.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import time
import warnings
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import keras
import numpy as np

from dlstructured import _io
from dlstructured._backend import saving_without_tensorflow
from dlstructured.errors import CheckpointError
from dlstructured.training import parallel
from dlstructured.training.state import TrainingState, restore_weights, snapshot_weights

FORMAT_VERSION = 1
POINTER_FILE = "checkpoint.json"
BEST_MODEL_FILE = "best.keras"
STATE_FILE = "state.json"


# --------------------------------------------------------------------------------------------
# Writing (every file through the one atomic routine of ``_io``)


def _write_json(path: Path, payload: Any) -> None:
    # NaN stays allowed: the history rows of a diverged epoch hold it.
    _io.write_text(path, json.dumps(payload, indent=1) + "\n")


def _write_npz(path: Path, arrays: list[np.ndarray]) -> None:
    with _io.atomic_path(path) as temporary:
        with open(temporary, "wb") as handle:
            np.savez(handle, *arrays)


def save_model_atomically(model: Any, path: str | os.PathLike) -> None:
    """Save a Keras model to a ``.keras`` file so that a crash never leaves a broken file.

    The model is saved to a temporary file in the same folder, flushed to disk and renamed over
    ``path``; until the rename, any previous file at ``path`` stays as it was. Under a Keras
    distribution it saves outside it (``parallel.outside_distribution``), so process 0 can save
    alone.

    Args:
        model: A ``keras.Model`` (or ``TabularModel``).
        path: Destination ending in ``.keras``.

    Raises:
        ValueError: If ``path`` does not end in ``.keras``.
    """
    path = Path(path)
    if path.suffix != ".keras":
        raise ValueError(f"`path` must end in .keras. Received: path={str(path)!r}")
    with (_io.atomic_path(path) as temporary, warnings.catch_warnings(),
          parallel.outside_distribution(), saving_without_tensorflow()):
        # Saving from inside `fit` on JAX makes Keras call NumPy's __array__ on its variables
        # the NumPy 1 way; NumPy 2's deprecation notice for it is Keras's to fix, not ours.
        warnings.filterwarnings("ignore", message=r"__array__ implementation doesn't accept",
                                category=DeprecationWarning)
        model.save(temporary)


# --------------------------------------------------------------------------------------------
# The state of a run


@dataclass
class CheckpointState:
    """The latest training state read back from a checkpoint folder.

    Attributes:
        epoch: Number of epochs completed (training resumes at epoch ``epoch + 1``).
        seed: The shuffle seed of the run.
        rows: The history so far: one dict of logged values per epoch.
        monitor: The monitored quantity.
        best: Its best value so far, or ``None``.
        best_epoch: Epoch (from 1) of the best value, or ``None``.
        wait: Epochs since the last improvement (early stopping's counter).
        stopped_early: Whether early stopping had ended the run.
        epochs: The ``epochs`` the run was started with.
        variables: Values of every network variable, in ``network.variables`` order.
        variable_paths: Their Keras paths (checked against the network on resume).
        optimizer_variables: Values of the optimizer's variables, in order.
        optimizer_paths: Their Keras paths.
        best_weights: Values of ``network.weights`` at the best epoch, or ``None`` when there
            is none or it is the last epoch (``best_is_current``).
        best_is_current: Whether the best epoch is the last one completed.
        folder: The state folder it was read from.
    """

    epoch: int
    seed: int
    rows: list[dict[str, float]]
    monitor: str
    best: float | None
    best_epoch: int | None
    wait: int
    stopped_early: bool
    epochs: int
    variables: list[np.ndarray]
    variable_paths: list[str]
    optimizer_variables: list[np.ndarray]
    optimizer_paths: list[str]
    best_weights: list[np.ndarray] | None
    best_is_current: bool
    folder: Path

    def variables_of(self, subset: list, network: Any) -> list[np.ndarray]:
        """The saved values of ``subset``, a list of ``network``'s variables (such as weights)."""
        by_id = {id(v): value for v, value in zip(network.variables, self.variables, strict=True)}
        return [by_id[id(v)] for v in subset]

    def training_state(self, network: Any) -> TrainingState:
        """The training loop's state this checkpoint holds, for ``network`` (whose weights
        are the best ones when the best epoch is the last one completed)."""
        if self.best_is_current:
            best_weights = [np.array(v) for v in self.variables_of(network.weights, network)]
        elif self.best_weights is not None:
            best_weights = [np.array(value) for value in self.best_weights]
        else:
            best_weights = None
        return TrainingState(
            epoch=self.epoch, seed=self.seed, rows=[dict(row) for row in self.rows],
            best=self.best, best_epoch=self.best_epoch, wait=self.wait,
            stopped_early=self.stopped_early, best_weights=best_weights,
        )

    @property
    def finished(self) -> bool:
        """Whether the run had ended (all epochs run, or stopped early)."""
        return self.stopped_early or self.epoch >= self.epochs


class CheckpointWriter(keras.callbacks.Callback):
    """Write the best model and the latest training state to a folder as training goes.

    ``train(..., checkpoint_dir=folder)`` adds one; it reads the ``TrainingState`` of the
    training monitor that runs before it. It works on every engine, since engines send
    ``on_epoch_end`` with the model's variables up to date.

    Writing costs time (saving ``best.keras`` takes a tenth of a second or more), so the writer
    keeps it to about a tenth of the training time: after a write that took ``w`` seconds, the
    next one waits until ``9 * w`` seconds (and at least 2 seconds) of training have passed,
    then writes the latest epoch (and the best model, if it changed). The first epoch and the
    end of training are always written, so a kill loses at most a few seconds of training, and
    a resumed run repeats them.

    Args:
        directory: The checkpoint folder (created if missing).
        tracker: The object that tracks the run: attributes ``state`` (a ``TrainingState``),
            ``monitor`` (the monitored quantity) and ``diverged_epoch``.
        save_model: The model saved as ``best.keras`` (a ``TabularModel`` or the network).
        optimizer: The optimizer whose variables are saved.
        seed: The shuffle seed of the run.
        epochs: The run's ``epochs``.
    """

    #: After a write of ``w`` seconds, the next waits ``WRITE_SHARE_FACTOR * w`` seconds.
    WRITE_SHARE_FACTOR = 9.0
    #: ... and at least this many seconds.
    MIN_WRITE_INTERVAL = 2.0

    def __init__(self, directory: Any, tracker: Any, *, save_model: Any, optimizer: Any,
                 seed: int, epochs: int):
        super().__init__()
        self.directory = Path(directory)
        self.tracker = tracker
        self.save_model = save_model
        self.optimizer = optimizer
        self.seed = seed
        self.epochs = epochs
        # Under data-parallel training every process runs the writer; process 0 alone writes
        # (the others would race it for the same files), and every process resumes from them.
        self.primary = parallel.is_primary()
        if self.primary:
            self.directory.mkdir(parents=True, exist_ok=True)
        self._pending: int | None = None
        self._best_changed = False
        self._next_write = 0.0

    def on_epoch_end(self, epoch, logs=None):
        if self.tracker.diverged_epoch is not None:
            return  # keep the last finite state; a resumed run repeats the epoch
        self._pending = epoch + 1
        if self.tracker.state.best_epoch == self._pending:
            self._best_changed = True
        if time.monotonic() >= self._next_write:
            self.flush()

    def on_train_end(self, logs=None):
        if self.tracker.diverged_epoch is None:
            self.flush()

    def flush(self) -> None:
        """Write the latest epoch not yet written (and the best model, if it changed); on
        the primary process only."""
        if self._pending is None or not self.primary:
            return
        started = time.monotonic()
        done = self._pending
        if self._best_changed:
            self._save_best(done)
        self._write_state(done)
        self._pending, self._best_changed = None, False
        finished = time.monotonic()
        self._next_write = finished + max(self.MIN_WRITE_INTERVAL,
                                          self.WRITE_SHARE_FACTOR * (finished - started))

    def _save_best(self, done: int) -> None:
        state, network = self.tracker.state, self.model
        if state.best_epoch == done or state.best_weights is None:
            save_model_atomically(self.save_model, self.directory / BEST_MODEL_FILE)
            return
        # The best epoch is behind the current weights: save it, then put them back.
        current = snapshot_weights(network.weights)
        restore_weights(network.weights, state.best_weights)
        try:
            save_model_atomically(self.save_model, self.directory / BEST_MODEL_FILE)
        finally:
            restore_weights(network.weights, current)

    def _write_state(self, done: int) -> None:
        state, network = self.tracker.state, self.model
        name = f"state-{done:06d}-{secrets.token_hex(4)}"
        folder = self.directory / name
        temporary = self.directory / f"{_io.TEMPORARY_PREFIX}{name}"
        try:
            temporary.mkdir()
            _write_npz(temporary / "variables.npz", snapshot_weights(network.variables))
            optimizer_variables = list(self.optimizer.variables) if self.optimizer.built else []
            _write_npz(temporary / "optimizer.npz", snapshot_weights(optimizer_variables))
            best_is_current = state.best_epoch == done
            if state.best_weights is not None and not best_is_current:
                _write_npz(temporary / "best_weights.npz", state.best_weights)
            _write_json(temporary / STATE_FILE, {
                "format_version": FORMAT_VERSION,
                **replace(state, epoch=done, seed=self.seed).to_dict(),
                "epochs": self.epochs,
                "monitor": self.tracker.monitor,
                "best_is_current": best_is_current,
                "variable_paths": [v.path for v in network.variables],
                "optimizer_paths": [v.path for v in optimizer_variables],
                "backend": keras.backend.backend(),
            })
            _io.fsync_folder(temporary)
            os.rename(temporary, folder)
            _io.fsync_folder(self.directory)
            _write_json(self.directory / POINTER_FILE,
                        {"format_version": FORMAT_VERSION, "state": name, "epoch": done})
        except BaseException:
            shutil.rmtree(temporary, ignore_errors=True)
            raise
        _remove_stale(self.directory, keep=name)


def _remove_stale(directory: Path, keep: str) -> None:
    """Delete state folders other than ``keep`` and leftovers of interrupted writes."""
    for entry in directory.iterdir():
        stale_state = entry.name.startswith("state-") and entry.name != keep
        if stale_state or entry.name.startswith(_io.TEMPORARY_PREFIX):
            if entry.is_dir():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                entry.unlink(missing_ok=True)


# --------------------------------------------------------------------------------------------
# Reading


def _check_directory(directory: Any) -> Path:
    if not isinstance(directory, (str, os.PathLike)):
        raise TypeError(
            f"`checkpoint_dir` must be a folder path (str or os.PathLike). "
            f"Received: checkpoint_dir={directory!r}"
        )
    return Path(directory)


def _read_npz(path: Path) -> list[np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as archive:
            return [archive[f"arr_{index}"] for index in range(len(archive.files))]
    except (OSError, ValueError, KeyError, EOFError) as error:
        raise CheckpointError(
            f"The checkpoint file {str(path)!r} is unreadable: {error}"
        ) from error


def read_checkpoint(directory: str | os.PathLike) -> CheckpointState:
    """Read the latest training state from a checkpoint folder.

    Args:
        directory: A folder written by ``train(..., checkpoint_dir=directory)``.

    Returns:
        The ``CheckpointState`` the pointer file names.

    Raises:
        TypeError: If ``directory`` is not a path.
        CheckpointError: If the folder is missing, holds no completed checkpoint, or a file in
            it is unreadable (the message names it).
    """
    directory = _check_directory(directory)
    if not directory.is_dir():
        raise CheckpointError(f"No checkpoint folder at {str(directory)!r}.")
    pointer_path = directory / POINTER_FILE
    if not pointer_path.is_file():
        raise CheckpointError(
            f"{str(directory)!r} holds no completed checkpoint (no {POINTER_FILE}): training "
            "wrote none there yet."
        )
    try:
        pointer = json.loads(pointer_path.read_text(encoding="utf-8"))
        folder = directory / str(pointer["state"])
        state = json.loads((folder / STATE_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise CheckpointError(
            f"The checkpoint in {str(directory)!r} is unreadable: {type(error).__name__}: {error}"
        ) from error
    if state.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(
            f"The checkpoint in {str(directory)!r} has format version "
            f"{state.get('format_version')!r}; this dlstructured reads version {FORMAT_VERSION}."
        )
    best_is_current = bool(state["best_is_current"])
    best_weights = None
    if state["best_epoch"] is not None and not best_is_current:
        best_weights = _read_npz(folder / "best_weights.npz")
    return CheckpointState(
        epoch=int(state["epoch"]),
        seed=int(state["seed"]),
        rows=[dict(row) for row in state["rows"]],
        monitor=str(state["monitor"]),
        best=state["best"],
        best_epoch=state["best_epoch"],
        wait=int(state["wait"]),
        stopped_early=bool(state["stopped_early"]),
        epochs=int(state["epochs"]),
        variables=_read_npz(folder / "variables.npz"),
        variable_paths=list(state["variable_paths"]),
        optimizer_variables=_read_npz(folder / "optimizer.npz"),
        optimizer_paths=list(state["optimizer_paths"]),
        best_weights=best_weights,
        best_is_current=best_is_current,
        folder=folder,
    )


def _normalized(path: str) -> str:
    """A variable path without Keras's automatic ``_1``, ``_2`` suffixes on its parts."""
    return re.sub(r"_\d+(?=/|$)", "", path)


def _check_matches(directory: Path, paths: list[str], values: list, variables: list) -> None:
    """Raise unless ``variables`` are, by path and shape, those a checkpoint saved."""
    same_paths = [_normalized(p) for p in paths] == [_normalized(v.path) for v in variables]
    same_shapes = same_paths and all(
        tuple(v.shape) == value.shape for v, value in zip(variables, values, strict=True)
    )
    if not same_shapes:
        mismatch = next(
            (f"{p!r} {value.shape} there, {v.path!r} {tuple(v.shape)} here"
             for p, value, v in zip(paths, values, variables, strict=False)
             if _normalized(p) != _normalized(v.path) or tuple(v.shape) != value.shape),
            f"{len(paths)} variables there, {len(variables)} here",
        )
        raise CheckpointError(
            f"The checkpoint in {str(directory)!r} was written for a different model or "
            f"optimizer ({mismatch}). Resume with the same model and `optimizer` as the "
            "interrupted run."
        )


class _Renamed:
    """An optimizer variable seen without its optimizer's name (``adam/`` or ``adam_1/``)."""

    def __init__(self, variable: Any):
        self.path = variable.path.split("/", 1)[-1]
        self.shape = variable.shape


def restore_checkpoint(
    state: CheckpointState, network: Any, optimizer: Any, *, monitor: str
) -> TrainingState:
    """Put a checkpoint's variables back into a network and its optimizer.

    Args:
        state: From ``read_checkpoint``.
        network: The network being trained (built like the one that wrote the checkpoint).
        optimizer: The run's optimizer (built here if needed).
        monitor: The quantity this run monitors (it must be the checkpoint's).

    Returns:
        The ``TrainingState`` to continue from: its ``epoch`` is the ``initial_epoch``.

    Raises:
        CheckpointError: If the network, optimizer or monitored quantity does not match the
            checkpoint.
    """
    directory = state.folder.parent
    if state.monitor != monitor:
        raise CheckpointError(
            f"The checkpoint in {str(directory)!r} monitored {state.monitor!r}, this run "
            f"monitors {monitor!r}: resume with the same validation data and early "
            "stopping as the interrupted run."
        )
    _check_matches(directory, state.variable_paths, state.variables, network.variables)
    if state.optimizer_paths:
        if not optimizer.built:
            optimizer.build(network.trainable_variables)
        _check_matches(
            directory,
            [p.split("/", 1)[-1] for p in state.optimizer_paths],
            state.optimizer_variables,
            [_Renamed(v) for v in optimizer.variables],
        )
        restore_weights(optimizer.variables, state.optimizer_variables)
    restore_weights(network.variables, state.variables)
    return state.training_state(network)


def load_checkpoint(directory: str | os.PathLike) -> Any:
    """Load the best model saved in a checkpoint folder.

    Loading is safe (Keras safe mode stays on; no code from the file runs).

    Args:
        directory: A folder written by ``train(..., checkpoint_dir=directory)``.

    Returns:
        The best model so far: the ``TabularModel`` if one was trained, else the Keras network.

    Raises:
        TypeError: If ``directory`` is not a path.
        CheckpointError: If the folder is missing or holds no completed checkpoint.
        ModelFileError: If the saved model file is unreadable (the message names it).

    Example:

    >>> import numpy as np
    >>> from dlstructured import linear_unit, load_checkpoint, train
    >>> x = np.linspace(-1, 1, 32, dtype="float32").reshape(-1, 1)
    >>> _ = train(linear_unit(1, seed=0), x, 2 * x[:, 0], epochs=2, seed=0,
    ...           checkpoint_dir=str(getfixture("tmp_path") / "run"))
    >>> best = load_checkpoint(getfixture("tmp_path") / "run")
    >>> best.predict(x[:2], verbose=0).shape
    (2, 1)
    """
    directory = _check_directory(directory)
    if not directory.is_dir():
        raise CheckpointError(f"No checkpoint folder at {str(directory)!r}.")
    path = directory / BEST_MODEL_FILE
    if not path.is_file():
        raise CheckpointError(
            f"{str(directory)!r} holds no best model yet ({BEST_MODEL_FILE} is missing): no "
            "epoch had completed when training stopped."
        )
    from dlstructured.tabular import load_model

    return load_model(path)


__all__ = [
    "CheckpointState",
    "CheckpointWriter",
    "load_checkpoint",
    "read_checkpoint",
    "restore_checkpoint",
    "save_model_atomically",
]
