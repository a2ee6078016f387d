"""Hyperparameter search over the options of a run, with Optuna.

Each trial is one ``fit_table`` on the same split (the config's ``seed`` fixes it), with a
``RunConfig`` whose searched fields Optuna's sampler chose. After every epoch the trial reports
its validation loss to Optuna's pruner; a trial the pruner gives up on stops at once and is
recorded as pruned. Every trial's learning curves are kept in the study, so a study stored in
SQLite holds all of them and can be continued after a kill or Ctrl-C.

A search space is a plain dict from an option to what it may be:

- ``(low, high)``: any number between them, whole numbers if both bounds are;
- ``("log", low, high)``: the same, drawn on a log scale;
- ``[a, b, c]``: one of these values.

The options are ``width`` and ``depth`` (``hidden_units`` becomes ``(width,) * depth``) and any
field of ``RunConfig`` except those that define the data or the split (``task``, ``seed``,
``valid_fraction``, ``stratify``, ``group_by``, ``kinds``, ``drop``, ``positive_label``, ``sep``,
``encoding``) and ``metrics``.

Optuna is an optional dependency: ``pip install 'dlstructured[search]'``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import math
import os
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from dlstructured.config import RunConfig

INSTALL_HINT = "the search needs Optuna: pip install 'dlstructured[search]'"
METRIC = "val_loss"
MODEL_FILE = "model.keras"
HISTORY_PICTURE = "search_history.png"
TRIALS_FILE = "trials.csv"
DEFAULT_STUDY_NAME = "dlstructured-search"

DEFAULT_SPACE: dict[str, Any] = {
    "width": ("log", 32, 512),
    "depth": (1, 4),
    "dropout_rate": (0.0, 0.5),
    "learning_rate": ("log", 1e-4, 1e-2),
    "batch_size": [64, 128, 256],
}

# Fields that define the data, the split or what is measured: the same for every trial.
_FIXED_FIELDS = ("task", "seed", "valid_fraction", "stratify", "group_by", "kinds", "drop",
                 "positive_label", "sep", "encoding", "metrics")
_SHAPE_OPTIONS = ("width", "depth")


def _known_options() -> tuple[str, ...]:
    fields = [f.name for f in dataclasses.fields(RunConfig) if f.name not in _FIXED_FIELDS]
    return (*_SHAPE_OPTIONS, *fields)


def _import_optuna() -> Any:
    try:
        import optuna
    except ImportError as error:
        raise ImportError(INSTALL_HINT) from error
    return optuna


# --------------------------------------------------------------------------------------------
# The search space


@dataclasses.dataclass(frozen=True)
class _Option:
    """One searched option: a range (``low``, ``high``, ``log``) or a list of ``choices``."""

    name: str
    low: float | None = None
    high: float | None = None
    log: bool = False
    integer: bool = False
    choices: tuple[Any, ...] = ()

    def suggest(self, trial: Any) -> Any:
        if self.choices:
            labels = [_label(choice) for choice in self.choices]
            picked = trial.suggest_categorical(self.name, labels)
            return self.choices[labels.index(picked)]
        if self.integer:
            return trial.suggest_int(self.name, int(self.low), int(self.high), log=self.log)
        return trial.suggest_float(self.name, self.low, self.high, log=self.log)


def _label(choice: Any) -> Any:
    """What Optuna records for a choice: the value itself if it is a plain scalar."""
    if choice is None or isinstance(choice, (bool, int, float, str)):
        return choice
    return str(list(choice) if isinstance(choice, tuple) else choice)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _parse_option(name: str, spec: Any) -> _Option:
    where = f"space[{name!r}]"
    if isinstance(spec, list):
        if not spec:
            raise ValueError(f"`{where}` lists no values; give at least one. Received: {where}=[]")
        return _Option(name, choices=tuple(spec))
    if not isinstance(spec, tuple) or len(spec) not in (2, 3) or (
        len(spec) == 3 and spec[0] != "log"
    ):
        raise TypeError(
            f"`{where}` must be a range (low, high), a log range ('log', low, high) or a list "
            f"of values [a, b, ...]. Received: {where}={spec!r}"
        )
    log = len(spec) == 3
    low, high = spec[-2:]
    if not (_is_number(low) and _is_number(high)):
        raise TypeError(f"`{where}` bounds must be finite numbers. Received: {where}={spec!r}")
    if low >= high:
        raise ValueError(f"`{where}` is an impossible range: low must be below high. "
                         f"Received: {where}={spec!r}")
    if log and low <= 0:
        raise ValueError(f"`{where}` is an impossible log range: low must be above 0. "
                         f"Received: {where}={spec!r}")
    integer = isinstance(low, int) and isinstance(high, int)
    return _Option(name, low=low, high=high, log=log, integer=integer)


def _values_of(option: _Option) -> tuple[Any, ...]:
    return option.choices or (option.low, option.high)


def _check_space(space: Any, config: RunConfig) -> tuple[_Option, ...]:
    """Check a search space: known options, possible ranges, values ``RunConfig`` accepts."""
    if space is None:
        space = DEFAULT_SPACE
    if not isinstance(space, Mapping) or not space:
        raise TypeError("`space` must be a non-empty dict from option names to ranges or lists, "
                        f"or None for the default space. Received: space={space!r}")
    known = _known_options()
    options = []
    for name, spec in space.items():
        if name not in known:
            raise ValueError(f"`space` names an unknown option {name!r}. Known options: "
                             f"{', '.join(known)}. Received: space={dict(space)!r}")
        options.append(_parse_option(name, spec))
    names = {option.name for option in options}
    if "hidden_units" in names and names & set(_SHAPE_OPTIONS):
        raise ValueError("`space` cannot search `hidden_units` together with `width` or `depth`, "
                         f"which make it; choose one. Received: space={dict(space)!r}")
    for option in options:  # every bound and choice must make a valid config on its own
        for value in _values_of(option):
            try:
                _apply(config, {option.name: value})
            except (TypeError, ValueError) as error:
                raise ValueError(f"`space[{option.name!r}]` is impossible: the value {value!r} "
                                 f"does not make a valid run. {error}") from None
    return tuple(options)


def _apply(config: RunConfig, values: Mapping[str, Any]) -> RunConfig:
    """The config with the chosen values; ``width`` and ``depth`` make ``hidden_units``."""
    changes = {k: v for k, v in values.items() if k not in _SHAPE_OPTIONS}
    if "width" in values or "depth" in values:
        width = values.get("width", (config.resolved_hidden_units or (512,))[0])
        depth = values.get("depth", len(config.resolved_hidden_units) or 1)
        changes["hidden_units"] = (int(width),) * int(depth)
    return config.replace(**changes)


# --------------------------------------------------------------------------------------------
# Storage and resuming


def _open_storage(optuna: Any, storage: Any) -> Any:
    if storage is None:
        return optuna.storages.InMemoryStorage()
    if not isinstance(storage, str) or "://" not in storage:
        raise TypeError("`storage` must be a database URL such as 'sqlite:///search.db', or None "
                        f"to keep the study in memory. Received: storage={storage!r}")
    try:
        return optuna.storages.RDBStorage(storage)
    except Exception as error:  # SQLAlchemy's errors differ by dialect and driver
        raise ValueError(f"`storage` cannot be opened as a study database: {error}. "
                         f"Received: storage={storage!r}") from None


def _fail_stale_trials(optuna: Any, study: Any, storage: Any) -> None:
    """Mark trials left running by a process that died (a kill) as failed."""
    for trial in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        storage.set_trial_state_values(trial._trial_id, optuna.trial.TrialState.FAIL)


def _enqueue_retries(optuna: Any, study: Any) -> None:
    """Run every failed trial (interrupted or killed) again, with the same values, once."""
    trials = study.get_trials(deepcopy=False)
    retried = {t.user_attrs.get("retry_of") for t in trials}
    for trial in trials:
        if trial.state == optuna.trial.TrialState.FAIL and trial.number not in retried:
            study.enqueue_trial(trial.params, user_attrs={"retry_of": trial.number},
                                skip_if_exists=False)


# --------------------------------------------------------------------------------------------
# One trial


def _pruning_callback(trial: Any, optuna: Any) -> Any:
    import keras

    class _ReportToPruner(keras.callbacks.Callback):
        """Report the validation loss of each epoch to Optuna; stop when the pruner says so."""

        pruned_at: int | None = None

        def on_epoch_end(self, epoch, logs=None):
            value = (logs or {}).get(METRIC)
            if value is None or not math.isfinite(float(value)):
                return
            trial.report(float(value), epoch + 1)
            if trial.should_prune():
                self.pruned_at = epoch + 1
                self.model.stop_training = True

    return _ReportToPruner()


def _history_attr(history: pd.DataFrame) -> dict[str, list[float | None]]:
    return {str(column): [None if not math.isfinite(v) else float(v) for v in history[column]]
            for column in history.columns}


def _objective(frame, target, config, options, optuna, out, keep_best):
    from dlstructured.run import fit_table

    def objective(trial: Any) -> float:
        values = {option.name: option.suggest(trial) for option in options}
        trial_config = _apply(config, values)
        trial.set_user_attr("config", trial_config.to_dict())
        pruner = _pruning_callback(trial, optuna)
        try:
            run = fit_table(frame, target, trial_config, callbacks=[pruner])
            return _score(run, trial, pruner, optuna, out, keep_best)
        finally:
            run = None  # nothing of the trial's model outlives it
            _release_compiled_programs()

    return objective


def _release_compiled_programs() -> None:
    """Free what the trial's training left behind between trials.

    On JAX, the compiled programs of a trial stay in JAX's caches after its model is gone (about
    10 MiB per new layer width); ``jax.clear_caches`` drops them. It changes no result, only
    makes a later call to a function compiled before recompile once. Keras's own global state
    (``keras.backend.clear_session``) is left alone.
    """
    gc.collect()
    if "jax" in sys.modules:
        import keras

        if keras.backend.backend() == "jax":
            sys.modules["jax"].clear_caches()


def _score(run: Any, trial: Any, pruner: Any, optuna: Any, out: Path | None,
           keep_best: bool) -> float:
    """Record a finished trial's curves and return its best validation loss, or prune it."""
    result = run.result
    if result.interrupted:  # Ctrl-C inside training: fail this trial and stop the search
        raise KeyboardInterrupt
    trial.set_user_attr("history", _history_attr(result.history))
    trial.set_user_attr("epochs_run", int(result.epochs_run))
    value = result.best_metrics.get(METRIC, math.nan)
    if pruner.pruned_at is not None or not math.isfinite(value):
        raise optuna.TrialPruned(f"pruned at epoch {pruner.pruned_at or result.epochs_run}")
    if keep_best and out is not None and _is_new_best(optuna, trial.study, value):
        from dlstructured.training.checkpoints import save_model_atomically

        out.mkdir(parents=True, exist_ok=True)
        save_model_atomically(run.model, out / MODEL_FILE)
    return float(value)


def _is_new_best(optuna: Any, study: Any, value: float) -> bool:
    done = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    return all(value < t.value for t in done)


# --------------------------------------------------------------------------------------------
# Results


@dataclasses.dataclass
class SearchResult:
    """What a search returns: plain data about its trials.

    Attributes:
        best_config: The ``RunConfig`` of the best completed trial.
        best_value: Its best validation loss.
        best_trial: Its number (from 0).
        trials: One row per trial: ``number``, ``state`` (``"COMPLETE"``, ``"PRUNED"`` or
            ``"FAIL"``), ``value`` (the best validation loss of a completed trial, NaN for the
            others), ``epochs_run``, then one column per searched option.
        curves: Each trial's learning curves (one row per epoch, as
            ``TrainingResult.history``), by trial number.
        pictures: The PNG files written into ``out``: the search history, then one per option.
        model_path: ``out/model.keras``, the best trial's model, or ``None`` without ``out``.
        study_name: The Optuna study's name (to continue it with the same ``storage``).
    """

    best_config: RunConfig
    best_value: float
    best_trial: int
    trials: pd.DataFrame
    curves: dict[int, pd.DataFrame]
    pictures: list[Path]
    model_path: Path | None
    study_name: str


def _trials_frame(study: Any, options: Sequence[_Option]) -> pd.DataFrame:
    rows = []
    for trial in study.get_trials(deepcopy=False):
        complete = trial.state == _states().COMPLETE
        row = {"number": trial.number, "state": trial.state.name,
               "value": trial.value if complete else math.nan,
               "epochs_run": trial.user_attrs.get("epochs_run")}
        row.update({o.name: trial.params.get(o.name) for o in options})
        rows.append(row)
    return pd.DataFrame(rows, columns=["number", "state", "value", "epochs_run",
                                       *(o.name for o in options)])


def _states() -> Any:
    import optuna

    return optuna.trial.TrialState


def _curves(study: Any) -> dict[int, pd.DataFrame]:
    curves = {}
    for trial in study.get_trials(deepcopy=False):
        history = trial.user_attrs.get("history")
        if history:
            frame = pd.DataFrame(history, dtype=float)
            frame.index = pd.RangeIndex(1, len(frame) + 1, name="epoch")
            curves[trial.number] = frame
    return curves


def _save(figure: Any, path: Path) -> Path:
    from dlstructured import _io

    with _io.atomic_path(path) as temporary:
        figure.savefig(temporary, format="png", dpi=100)
    return path


def _draw_pictures(trials: pd.DataFrame, options: Sequence[_Option], out: Path) -> list[Path]:
    """The search history and each option against the metric, drawn without pyplot."""
    from matplotlib.figure import Figure

    done = trials[trials["state"] == "COMPLETE"]
    figure = Figure(figsize=(6, 4), layout="constrained")
    axis = figure.add_subplot()
    axis.plot(done["number"], done["value"], "o", label="completed trial")
    axis.step(done["number"], done["value"].cummin(), where="post", label="best so far")
    axis.set_xlabel("trial")
    axis.set_ylabel(METRIC)
    axis.grid(alpha=0.3)
    axis.legend()
    pictures = [_save(figure, out / HISTORY_PICTURE)]
    for option in options:
        figure = Figure(figsize=(5, 3.6), layout="constrained")
        axis = figure.add_subplot()
        x = done[option.name]
        if option.choices:
            x = x.astype(str)
        axis.plot(x, done["value"], "o")
        if option.log:
            axis.set_xscale("log")
        axis.set_xlabel(option.name)
        axis.set_ylabel(METRIC)
        axis.grid(alpha=0.3)
        pictures.append(_save(figure, out / f"option_{option.name}.png"))
    return pictures


@contextlib.contextmanager
def _optuna_quiet(optuna: Any, quiet: bool):
    """Optuna's own per-trial log lines off for the call, when the caller prints progress."""
    before = optuna.logging.get_verbosity()
    if quiet:
        optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        yield
    finally:
        optuna.logging.set_verbosity(before)


def _progress(total: int, stream: Any) -> Callable[[Any, Any], None]:
    def report(study: Any, trial: Any) -> None:
        finished = _finished(study)
        if trial.state == _states().COMPLETE:
            what = f"{METRIC} {trial.value:.4g}"
        elif trial.state == _states().PRUNED:
            what = f"pruned after epoch {trial.user_attrs.get('epochs_run', '?')}"
        else:
            what = trial.state.name.lower()
        try:
            best = f"best {study.best_value:.4g} (trial {study.best_trial.number})"
        except ValueError:
            best = "no best yet"
        print(f"trial {finished} of {total}: {what}; {best}", file=stream, flush=True)

    return report


def _finished(study: Any) -> int:
    import optuna

    states = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
    return len(study.get_trials(deepcopy=False, states=states))


# --------------------------------------------------------------------------------------------
# The search


def search(
    data: Any,
    target: Any,
    space: Mapping[str, Any] | None = None,
    *,
    trials: int = 30,
    timeout: float | None = None,
    storage: str | None = None,
    study_name: str | None = None,
    config: RunConfig | None = None,
    out: str | os.PathLike | None = None,
    seed: int = 0,
    pruner: Any = None,
    callbacks: Sequence[Callable[[Any, Any], None]] = (),
    verbose: int = 0,
) -> SearchResult:
    """Search the options of a run with Optuna, pruning bad trials from their validation loss.

    Every trial trains one ``fit_table`` on the same split with the options Optuna's TPE sampler
    picks from ``space``, and reports its validation loss after each epoch to ``pruner``, which
    may stop it early. The search ends when the study holds ``trials`` completed or pruned
    trials, or after ``timeout`` seconds. With ``storage``, the study lives in a database and
    the same call continues it: completed trials stay, and a trial that a kill or Ctrl-C
    interrupted is recorded as failed and run again. One process searches a stored study at a
    time (trials still marked running when a search starts are taken as left by a dead one).

    Args:
        data: A pandas DataFrame, or the path of a CSV or Parquet file.
        target: The column to predict.
        space: What to search: option name to ``(low, high)``, ``("log", low, high)`` or a list
            of values (see the module's description). Defaults to ``None``: width, depth,
            dropout rate, learning rate and batch size.
        trials: Completed or pruned trials the study should hold. Defaults to ``30``.
        timeout: Seconds after which no new trial starts, or ``None``. Defaults to ``None``.
        storage: A database URL for the study, such as ``"sqlite:///search.db"``, or ``None``
            to keep it in memory. Defaults to ``None``.
        study_name: Name of the study in ``storage``. Defaults to ``None``:
            ``"dlstructured-search"``.
        config: The run every trial starts from; it fixes the split (``seed``,
            ``valid_fraction``), the epochs and the patience. Defaults to ``None``:
            ``RunConfig(epochs=50, patience=10)``.
        out: Folder for ``trials.csv``, the pictures and ``model.keras`` (the best trial's
            model, kept when it finishes). Defaults to ``None``: nothing is written.
        seed: Seed of the sampler. Defaults to ``0``.
        pruner: An Optuna pruner. Defaults to ``None``: a median pruner that waits for 5
            trials and 5 epochs.
        callbacks: Functions called as ``callback(study, trial)`` after each trial.
            Defaults to none.
        verbose: ``1`` prints a line per trial to stderr (trial n of N, its loss, the best so
            far) and silences Optuna's own lines for the call. Defaults to ``0``.

    Returns:
        A ``SearchResult``.

    Raises:
        ImportError: If Optuna is not installed.
        TypeError: If an argument has the wrong type.
        ValueError: If ``space`` names an unknown option or an impossible range, ``storage``
            cannot be opened, or no trial completed.
        KeyboardInterrupt: On Ctrl-C, after the interrupted trial is recorded as failed.

    Example:

    >>> import numpy as np, pandas as pd
    >>> import dlstructured
    >>> x = np.linspace(0, 1, 60)
    >>> table = pd.DataFrame({"x": x, "y": 3 * x + 2})
    >>> found = dlstructured.search(
    ...     table, "y", {"learning_rate": ("log", 1e-3, 1e-2), "width": [8, 16]},
    ...     trials=2, config=dlstructured.RunConfig(epochs=2, patience=0))
    >>> len(found.trials), sorted(found.curves), found.best_config.epochs
    (2, [0, 1], 2)
    """
    optuna = _import_optuna()
    if config is None:
        config = RunConfig(epochs=50, patience=10)
    if not isinstance(config, RunConfig):
        raise TypeError(f"`config` must be a RunConfig or None. Received: config={config!r}")
    if config.valid_fraction == 0:
        raise ValueError("`config` must hold out validation rows (valid_fraction > 0): the "
                         "search compares trials on them. Received: valid_fraction=0.0")
    options = _check_space(space, config)
    if isinstance(trials, bool) or not isinstance(trials, int) or trials < 1:
        raise ValueError(f"`trials` must be a whole number >= 1. Received: trials={trials!r}")
    if timeout is not None and (not _is_number(timeout) or timeout <= 0):
        raise ValueError(f"`timeout` must be a number of seconds > 0, or None. "
                         f"Received: timeout={timeout!r}")
    if study_name is not None and (not isinstance(study_name, str) or not study_name):
        raise TypeError(f"`study_name` must be a non-empty string or None. "
                        f"Received: study_name={study_name!r}")
    out = None if out is None else Path(out)
    from dlstructured.run import read_data

    frame = read_data(data, sep=config.sep, encoding=config.encoding)
    opened = _open_storage(optuna, storage)
    with _optuna_quiet(optuna, bool(verbose)):
        study = _run_study(optuna, opened, study_name, seed, pruner, frame, target, config,
                           options, out, trials, timeout, [*callbacks, *(
                               [_progress(trials, sys.stderr)] if verbose else [])])
    return _result(optuna, study, config, options, out)


def _run_study(optuna, opened, study_name, seed, pruner, frame, target, config, options, out,
               trials, timeout, every) -> Any:
    study = optuna.create_study(
        storage=opened,
        study_name=study_name or DEFAULT_STUDY_NAME,
        load_if_exists=True,
        direction="minimize",
        sampler=optuna.samplers.TPESampler(seed=seed),
        pruner=pruner or optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=5),
    )
    _fail_stale_trials(optuna, study, opened)
    _enqueue_retries(optuna, study)
    objective = _objective(frame, target, config, options, optuna, out, keep_best=True)
    deadline = None if timeout is None else time.monotonic() + timeout
    while _finished(study) < trials and (deadline is None or time.monotonic() < deadline):
        study.optimize(objective, n_trials=1, callbacks=every, gc_after_trial=False)
    return study


def _result(optuna, study, config, options, out) -> SearchResult:
    try:
        best = study.best_trial
    except ValueError:
        raise ValueError("no trial of the search completed (every one was pruned or failed); "
                         "give more `trials`, a later-starting `pruner` or more epochs") from None
    trials = _trials_frame(study, options)
    pictures: list[Path] = []
    if out is not None:
        from dlstructured import _io

        out.mkdir(parents=True, exist_ok=True)
        with _io.atomic_path(out / TRIALS_FILE) as temporary:
            trials.to_csv(temporary, index=False)
        pictures = _draw_pictures(trials, options, out)
    return SearchResult(
        best_config=RunConfig.from_dict(best.user_attrs["config"]),
        best_value=float(best.value),
        best_trial=best.number,
        trials=trials,
        curves=_curves(study),
        pictures=pictures,
        model_path=None if out is None or not (out / MODEL_FILE).exists() else out / MODEL_FILE,
        study_name=study.study_name,
    )
