"""The ``dlstructured`` command line: train, predict, evaluate and demo.

``dlstructured train DATA --target COL`` reads a CSV or Parquet file, prepares it with
:func:`dlstructured.prepare`, builds a dense network with the builders, trains it with
:func:`dlstructured.train` and writes the model (one ``.keras`` file with its preprocessing),
``metrics.json``, ``history.csv`` and ``learning_curves.png`` into an output folder.

The command line chooses the Keras backend before Keras is imported (``--backend``, JAX by
default, the fastest here); with JAX it never imports TensorFlow. Errors in the input print one
line that says what is wrong and how to fix it, and exit with status 2 (``--debug`` shows the
traceback); the library's notices about the data print one line each on standard error
(``--quiet`` hides them), with their advice as flags. SIGTERM is turned into
``KeyboardInterrupt`` while the command runs, so Ctrl-C and ``kill`` both end training cleanly
at the end of the current epoch (a second signal stops at once): what was trained so far is
written, and the exit status is 130. A diverged run writes what it has, prints advice and exits
with status 1.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.abc
import json
import math
import os
import re
import shutil
import signal
import sys
import tempfile
import threading
import time
import traceback
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from dlstructured.errors import DataWarning, message_for_command_line

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130
EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE, as shell tools report it

BACKENDS = ("jax", "tensorflow")
DEFAULT_BACKEND = "jax"
TASK_CHOICES = ("regression", "binary", "multiclass")
MODEL_CHOICES = ("dense", "linear")

# Defaults of `dlstructured train`. The measurements behind them are in docs/cli.md.
DEFAULT_HIDDEN = (512, 512, 512)
DEFAULT_ACTIVATION = "relu"
DEFAULT_DROPOUT = 0.0
DEFAULT_EPOCHS = 200
DEFAULT_BATCH_SIZE = 256
DEFAULT_LEARNING_RATE = 0.001
DEFAULT_PATIENCE = 20
DEFAULT_VALID_FRACTION = 0.3
DEFAULT_SEED = 0

MODEL_FILE = "model.keras"
RUN_FILE = "run.json"  # what the run was started with, for --resume
CHECKPOINT_DIR = "checkpoints"  # best model and latest training state, written every epoch
METRICS_FILE = "metrics.json"
HISTORY_FILE = "history.csv"
PLOT_FILE = "learning_curves.png"

PROG = "dlstructured"


class UsageError(Exception):
    """A problem with the user's input: reported as one line, exit status 2."""


# --------------------------------------------------------------------------------------------
# Argument parsing
# --------------------------------------------------------------------------------------------


class _Parser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose errors are one line and leave exiting to :func:`main`."""

    def error(self, message: str) -> Any:  # type: ignore[override]
        raise UsageError(f"{message} (see `{self.prog} --help`)")


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def _non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text!r}")
    return value


def _float_in(low: float, high: float, *, low_open: bool, high_open: bool):
    left = "(" if low_open else "["
    right = ")" if high_open else "]"
    expected = f"a number in {left}{low:g}, {high:g}{right}"

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}") from None
        too_low = value <= low if low_open else value < low
        too_high = value >= high if high_open else value > high
        if not math.isfinite(value) or too_low or too_high:
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}")
        return value

    return parse


_rate = _float_in(0.0, 1.0, low_open=False, high_open=True)
_valid_fraction = _float_in(0.0, 1.0, low_open=False, high_open=True)
_learning_rate = _float_in(0.0, 10.0, low_open=True, high_open=False)


def _hidden_units(text: str) -> tuple[int, ...]:
    parts = [part.strip() for part in text.split(",")]
    try:
        units = tuple(int(part) for part in parts)
    except ValueError:
        units = ()
    if not units or any(u < 1 for u in units):
        raise argparse.ArgumentTypeError(
            f"expected comma-separated positive layer widths such as 512,512,512, got {text!r}"
        )
    return units


def _metric_names(text: str) -> list[str]:
    if text.strip().lower() == "none":
        return []
    names = [part.strip() for part in text.split(",")]
    if not all(names):
        raise argparse.ArgumentTypeError(
            f"expected comma-separated Keras metric names such as binary_accuracy,auc (or "
            f"none), got {text!r}"
        )
    return names


KIND_CHOICES = ("numeric", "categorical", "datetime", "ignore")  # as dlstructured.prepare's kinds


def _kinds(text: str) -> dict[str, str]:
    kinds = {}
    for part in text.split(","):
        column, equals, kind = part.partition("=")
        column, kind = column.strip(), kind.strip().lower()
        if not equals or not column or kind not in KIND_CHOICES:
            raise argparse.ArgumentTypeError(
                f"expected COL=KIND[,COL=KIND...] with KIND one of {', '.join(KIND_CHOICES)}, "
                f"got {text!r}"
            )
        kinds[column] = kind
    return kinds


def _column_names(text: str) -> list[str]:
    names = [part.strip() for part in text.split(",")]
    if not all(names):
        raise argparse.ArgumentTypeError(f"expected COL[,COL...], got {text!r}")
    return names


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser of the ``dlstructured`` command.

    Returns:
        An ``argparse.ArgumentParser`` with the subcommands ``train``, ``predict``, ``evaluate``
        and ``demo``. Its ``error`` method raises :class:`UsageError` instead of exiting.

    Example:

    >>> from dlstructured.cli import build_parser
    >>> args = build_parser().parse_args(["train", "wine.csv", "--target", "quality"])
    >>> args.hidden, args.patience, args.backend
    ((512, 512, 512), 20, None)
    """
    common = _Parser(add_help=False)
    common.add_argument(
        "--backend",
        choices=BACKENDS,
        default=None,
        help=f"Keras backend for this run (default: {DEFAULT_BACKEND}; with jax, TensorFlow is "
        "never imported)",
    )
    common.add_argument("--quiet", action="store_true", help="print only errors and results")
    common.add_argument("--debug", action="store_true", help="show tracebacks on errors")

    reading = _Parser(add_help=False)
    table = reading.add_argument_group("reading the table")
    table.add_argument(
        "--sep", metavar="SEP", default=None, help="CSV field separator (default: guessed)"
    )
    table.add_argument(
        "--encoding", metavar="ENC", default=None, help="CSV text encoding (default: utf-8)"
    )

    parser = _Parser(
        prog=PROG,
        description="Train Keras networks on tabular data (CSV or Parquet) and use them.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    commands.required = True

    train = commands.add_parser(
        "train",
        parents=[common, reading],
        help="train a model on a CSV or Parquet file",
        description="Prepare DATA, train a network to predict --target, and write the model, "
        "metrics.json, history.csv and learning_curves.png to --out.",
    )
    train.add_argument("data", metavar="DATA", nargs="?", help="CSV or Parquet (.parquet) file")
    train.add_argument("--target", metavar="COL", help="column to predict (required with DATA)")
    train.add_argument(
        "--resume",
        metavar="DIR",
        default=None,
        help="continue the interrupted run in output folder DIR from its last checkpoint, with "
        "the data and options it was started with (options given again must equal the run's; "
        "a larger --epochs trains on to that many epochs)",
    )
    columns = train.add_argument_group("columns")
    columns.add_argument(
        "--kinds",
        type=_kinds,
        default=None,
        metavar="COL=KIND",
        help="override inferred column kinds, comma-separated COL=KIND with KIND one of "
        "numeric, categorical, datetime, ignore (e.g. zip=categorical,id=ignore)",
    )
    columns.add_argument(
        "--drop",
        type=_column_names,
        default=None,
        metavar="COL",
        help="comma-separated columns to leave out before preparing the data",
    )
    columns.add_argument(
        "--positive-label",
        metavar="LABEL",
        default=None,
        help="binary target: the label that becomes 1 (matched as text, so 1, 1.0 and true "
        "also name the numeric or boolean label)",
    )
    _add_training_options(train)
    train.add_argument(
        "--out",
        metavar="DIR",
        default=None,
        help="output folder (default: runs/<DATA file name without suffix>)",
    )
    train.set_defaults(func=_cmd_train)

    predict = commands.add_parser(
        "predict",
        parents=[common, reading],
        help="predict with a trained model",
        description="Write a `prediction` column (original units or labels) for each row of DATA.",
    )
    predict.add_argument("model", metavar="MODEL", help="a .keras file written by `train`")
    predict.add_argument("data", metavar="DATA", help="CSV or Parquet file with the features")
    predict.add_argument(
        "--out", metavar="FILE", default=None, help="CSV file to write (default: standard output)"
    )
    predict.add_argument(
        "--proba", action="store_true", help="also write class probabilities (classifiers)"
    )
    predict.set_defaults(func=_cmd_predict)

    evaluate = commands.add_parser(
        "evaluate",
        parents=[common, reading],
        help="print a trained model's metrics on labelled data",
        description="Print the model's metrics on DATA, which holds the features and --target.",
    )
    evaluate.add_argument("model", metavar="MODEL", help="a .keras file written by `train`")
    evaluate.add_argument("data", metavar="DATA", help="CSV or Parquet file with the labels")
    evaluate.add_argument("--target", required=True, metavar="COL", help="column with the labels")
    evaluate.set_defaults(func=_cmd_evaluate)

    demo = commands.add_parser(
        "demo",
        parents=[common],
        help="train on data scikit-learn ships (no network needed)",
        description="Train a ReLU stack on the diabetes table and a sigmoid classifier on the "
        "breast-cancer table, print their metrics and write their learning curves.",
    )
    demo.add_argument(
        "--out", metavar="DIR", default="runs/demo", help="output folder (default: runs/demo)"
    )
    demo.add_argument(
        "--epochs",
        type=_positive_int,
        default=DEFAULT_EPOCHS,
        help=f"most epochs per model (default: {DEFAULT_EPOCHS})",
    )
    demo.add_argument("--seed", type=_non_negative_int, default=DEFAULT_SEED, help="seed")
    demo.set_defaults(func=_cmd_demo)
    return parser


def _add_training_options(parser: argparse.ArgumentParser) -> None:
    model = parser.add_argument_group("model")
    model.add_argument(
        "--task", choices=TASK_CHOICES, default=None, help="task (default: inferred from target)"
    )
    model.add_argument(
        "--model",
        choices=MODEL_CHOICES,
        default="dense",
        help="dense: a stack of hidden layers; linear: no hidden layer (default: dense)",
    )
    model.add_argument(
        "--hidden",
        type=_hidden_units,
        default=DEFAULT_HIDDEN,
        metavar="UNITS",
        help="hidden layer widths (default: 512,512,512)",
    )
    model.add_argument(
        "--activation",
        default=DEFAULT_ACTIVATION,
        help="Keras activation of the hidden layers: relu, elu, selu, gelu, swish ... "
        "(default: relu)",
    )
    model.add_argument(
        "--dropout",
        type=_rate,
        default=DEFAULT_DROPOUT,
        metavar="RATE",
        help=f"dropout rate after each hidden layer, in [0, 1) (default: {DEFAULT_DROPOUT:g})",
    )
    model.add_argument(
        "--batch-norm", action="store_true", help="batch-normalize each hidden layer"
    )
    model.add_argument(
        "--input-batch-norm", action="store_true", help="batch-normalize the inputs first"
    )
    fit = parser.add_argument_group("training")
    fit.add_argument(
        "--epochs",
        type=_positive_int,
        default=DEFAULT_EPOCHS,
        help=f"most epochs (default: {DEFAULT_EPOCHS})",
    )
    fit.add_argument(
        "--batch-size",
        type=_positive_int,
        default=DEFAULT_BATCH_SIZE,
        help=f"rows per gradient step (default: {DEFAULT_BATCH_SIZE})",
    )
    fit.add_argument(
        "--learning-rate",
        type=_learning_rate,
        default=DEFAULT_LEARNING_RATE,
        metavar="RATE",
        help=f"Adam's learning rate (default: {DEFAULT_LEARNING_RATE:g})",
    )
    fit.add_argument(
        "--metrics",
        type=_metric_names,
        default=None,
        metavar="NAMES",
        help="metrics to report besides the loss, comma-separated Keras names such as "
        "binary_accuracy,auc or mae, or none (default: the task's: mae; binary_accuracy,auc; "
        "accuracy); AUC costs a share of every step",
    )
    fit.add_argument(
        "--patience",
        type=_non_negative_int,
        default=DEFAULT_PATIENCE,
        help="epochs without improvement of the validation loss before stopping; 0 turns "
        f"early stopping off (default: {DEFAULT_PATIENCE})",
    )
    split = parser.add_argument_group("validation split")
    split.add_argument(
        "--valid-fraction",
        type=_valid_fraction,
        default=DEFAULT_VALID_FRACTION,
        metavar="F",
        help="fraction of rows held out for validation, in [0, 1); 0 trains on all rows "
        f"(default: {DEFAULT_VALID_FRACTION:g})",
    )
    split.add_argument(
        "--stratify", action="store_true", help="keep the class proportions in both parts"
    )
    split.add_argument(
        "--group-by",
        metavar="COL",
        default=None,
        help="keep all rows with the same value of COL in the same part",
    )
    split.add_argument(
        "--seed",
        type=_non_negative_int,
        default=DEFAULT_SEED,
        help=f"seed of the split, the weights and the shuffling (default: {DEFAULT_SEED})",
    )


def _version() -> str:
    from dlstructured import __version__

    return __version__


# --------------------------------------------------------------------------------------------
# Process set-up: backend, signals, warnings
# --------------------------------------------------------------------------------------------


class _KeepTensorFlowOut(importlib.abc.MetaPathFinder):
    """Refuse to import TensorFlow, so a JAX run never loads it.

    Keras 3 imports TensorFlow whenever it is installed and a model is saved (it checks for
    TensorFlow types while serializing), even on the JAX backend, which costs seconds and memory.
    With TensorFlow refused, Keras treats it as absent and saves the same file.
    """

    def find_spec(self, name: str, path: Any = None, target: Any = None) -> None:
        if name == "tensorflow" or name.startswith("tensorflow."):
            raise ModuleNotFoundError(
                f"dlstructured's command line runs Keras on JAX and does not load TensorFlow "
                f"(import of {name!r} refused); use --backend tensorflow to run on it",
                name=name,
            )
        return None


class _RefuseModules(importlib.abc.MetaPathFinder):
    """Refuse to import the given top-level packages (and their submodules)."""

    def __init__(self, names: Sequence[str]) -> None:
        self.names = tuple(names)

    def find_spec(self, name: str, path: Any = None, target: Any = None) -> None:
        if name.split(".", 1)[0] in self.names:
            raise ModuleNotFoundError(f"{name!r} is not imported while Keras loads", name=name)
        return None


# Keras imports these on start-up when they are installed, for its scikit-learn wrappers and an
# image-gallery plot, neither of which the command line uses: about 2 s of a command's start.
_KERAS_EXTRAS = ("sklearn", "matplotlib")


def _import_keras_without_extras() -> None:
    """Import Keras with scikit-learn and matplotlib looking absent to it.

    Keras guards both imports, so it loads as it does without them. The command imports them
    itself afterwards where it needs them (demo data, plots), as usual: only the import of Keras
    is affected.
    """
    if "keras" in sys.modules:
        return
    finder = _RefuseModules([name for name in _KERAS_EXTRAS if name not in sys.modules])
    sys.meta_path.insert(0, finder)
    try:
        import keras  # noqa: F401
    finally:
        sys.meta_path.remove(finder)


@contextlib.contextmanager
def _keras_backend(requested: str | None, *, hide_extras: bool = False) -> Iterator[str]:
    """Select the Keras backend for this command, before Keras is imported.

    The environment variable is restored afterwards, so calling :func:`main` inside another
    program leaves that program's environment as it was. On JAX, TensorFlow imports are refused
    while the command runs (see :class:`_KeepTensorFlowOut`). With ``hide_extras`` (only when the
    command is the whole process: Keras keeps what it saw at import for the rest of the process),
    Keras is imported without its optional extras (see :func:`_import_keras_without_extras`).
    """
    if "keras" in sys.modules:  # main() called inside a program that already imported Keras
        import keras

        current = keras.backend.backend()
        if requested is not None and requested != current:
            raise UsageError(
                f"Keras is already imported with the {current} backend in this process, so "
                f"--backend {requested} cannot take effect; run the `dlstructured` command in "
                "a new process"
            )
        yield current
        return
    name = requested or DEFAULT_BACKEND
    saved = {key: os.environ.get(key) for key in ("KERAS_BACKEND", "TF_CPP_MIN_LOG_LEVEL")}
    os.environ["KERAS_BACKEND"] = name
    if name == "tensorflow" and saved["TF_CPP_MIN_LOG_LEVEL"] is None:
        os.environ["TF_CPP_MIN_LOG_LEVEL"] = "2"  # keep TensorFlow's C++ start-up chatter quiet
    blocker = None
    if name == "jax" and "tensorflow" not in sys.modules:
        blocker = _KeepTensorFlowOut()
        sys.meta_path.insert(0, blocker)
    try:
        if hide_extras:
            _import_keras_without_extras()
        yield name
    finally:
        if blocker is not None:
            sys.meta_path.remove(blocker)
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


class _Signals:
    """Signals received while the command runs (see :func:`_sigterm_raises_interrupt`).

    ``notice`` is set while a first signal should only be noted (see :func:`_interrupts_deferred`):
    while training runs, :func:`_interrupt_callback` raises ``KeyboardInterrupt`` at the end of
    the epoch, where Keras's loop and the checkpoint are consistent; while the output files are
    written, the command finishes them.
    """

    def __init__(self) -> None:
        self.received: list[int] = []
        self.notice: bytes | None = None


_signals = _Signals()


@contextlib.contextmanager
def _sigterm_raises_interrupt() -> Iterator[None]:
    """Turn SIGTERM into ``KeyboardInterrupt`` while the command runs (main thread only).

    Outside the deferred stretches of :func:`_interrupts_deferred` the exception is raised at
    once. Python delivers it wherever the main thread is, and where that is a ``__del__`` method
    or a garbage-collector callback it is printed as "Exception ignored" and lost; every signal
    is therefore also noted, and :func:`_interrupt_callback` raises it again at the end of the
    next epoch. Inside a deferred stretch the first signal is only noted, so the interrupt does
    not unwind through the backend's own code; a second one raises at once. Ctrl-C (SIGINT) is
    handled the same way unless the process was started with SIGINT ignored.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    _signals.received.clear()
    _signals.notice = None

    def handler(signum: int, frame: Any) -> None:
        _signals.received.append(signum)
        if _signals.notice is not None and len(_signals.received) == 1:
            if _signals.notice:
                # os.write, not sys.stderr: the handler may run inside a write to sys.stderr.
                with contextlib.suppress(OSError):
                    os.write(2, _signals.notice)
            return
        raise KeyboardInterrupt(f"signal {signum}")

    previous_term = signal.signal(signal.SIGTERM, handler)
    previous_int = signal.getsignal(signal.SIGINT)
    if previous_int is signal.default_int_handler:
        signal.signal(signal.SIGINT, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous_term)
        if previous_int is signal.default_int_handler:
            signal.signal(signal.SIGINT, previous_int)


@contextlib.contextmanager
def _interrupts_deferred(what_happens: str, *, quiet: bool) -> Iterator[None]:
    """Let a first signal only be noted (and say ``what_happens`` then); a second raises."""
    notice = f"\ndlstructured: {what_happens} (Ctrl-C or SIGTERM again stops at once)\n"
    _signals.notice = b"" if quiet else notice.encode()
    try:
        yield
    finally:
        _signals.notice = None


def _interrupt_callback() -> Any:
    """A Keras callback that raises ``KeyboardInterrupt`` at the end of an epoch if a signal
    arrived during training (or its first ``KeyboardInterrupt`` was lost)."""
    import keras

    class InterruptCheck(keras.callbacks.Callback):
        def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
            if _signals.received:
                raise KeyboardInterrupt(f"signal {_signals.received[0]}")

    return InterruptCheck()


class _Console:
    """Where the command's messages go: results to stdout, everything else to stderr."""

    def __init__(self, *, quiet: bool, debug: bool) -> None:
        self.quiet = quiet
        self.debug = debug

    def notice(self, message: str) -> None:
        if not self.quiet:
            print(f"{PROG}: {message}", file=sys.stderr, flush=True)

    def error(self, message: str) -> None:
        print(f"{PROG}: error: {_one_line(message)}", file=sys.stderr, flush=True)

    def result(self, text: str) -> None:
        if not self.quiet:
            print(text, flush=True)


@contextlib.contextmanager
def _warnings_as_notices(console: _Console) -> Iterator[None]:
    """Show the library's warnings as one-line notices; hide third-party noise unless --debug."""
    with warnings.catch_warnings():
        warnings.simplefilter("default")
        if not console.debug:
            for category in (DeprecationWarning, PendingDeprecationWarning, FutureWarning):
                warnings.simplefilter("ignore", category)

        def show(message: Any, category: Any, filename: str, lineno: int, *rest: Any) -> None:
            # The library points a data notice at its caller's line, outside the package, so
            # the category says whose it is; the file name catches the library's other warnings.
            ours = issubclass(category, DataWarning)
            own = ours or f"{os.sep}dlstructured{os.sep}" in str(filename)
            if own or console.debug:
                console.notice(f"warning: {_one_line(message_for_command_line(message))}")

        warnings.showwarning = show
        yield


# numpy 2 shows its scalars as np.float64(5.217); a command line shows the number.
_NUMPY_SCALAR = re.compile(r"\bnp\.(?:float|int|uint|bool|str)_?\d*\(([^()]*)\)")


def _one_line(message: Any) -> str:
    text = message_for_command_line(message) if isinstance(message, BaseException) else message
    return _NUMPY_SCALAR.sub(r"\1", " ".join(str(text).split()))


@contextlib.contextmanager
def _user_input(what: str | None) -> Iterator[None]:
    """Report bad input met while doing ``what`` as a :class:`UsageError`.

    ``what`` prefixes the message; ``None`` reports the library's own message as it is.
    """
    try:
        yield
    except UsageError:
        raise
    except FileNotFoundError as error:
        raise UsageError(f"{_one_line(error)} Check the path.") from error
    except (IsADirectoryError, PermissionError) as error:
        raise UsageError(f"cannot open the file: {_one_line(error)}") from error
    except ImportError as error:
        raise UsageError(
            f"{_one_line(error)} Install the missing package (for Parquet: "
            "`pip install 'dlstructured[parquet]'`)."
        ) from error
    except (ValueError, TypeError, KeyError) as error:
        prefix = f"{what}: " if what else ""
        raise UsageError(f"{prefix}{_one_line(error)}") from error


# --------------------------------------------------------------------------------------------
# main
# --------------------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``dlstructured`` command line and return its exit status.

    Args:
        argv: The arguments after the program name. Defaults to ``None`` (``sys.argv[1:]``).

    Returns:
        The exit status: ``0`` success, ``1`` training diverged (or an internal error),
        ``2`` bad input (one line on standard error says what is wrong and how to fix it),
        ``130`` interrupted by Ctrl-C or SIGTERM after writing what was trained so far.

    Raises:
        SystemExit: Only for ``--help`` and ``--version``, as ``argparse`` does.

    Example:

    >>> from dlstructured.cli import main
    >>> main(["train", "no-such-file.csv", "--target", "y"])
    2
    """
    parser = build_parser()
    argv_given = argv
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        args = parser.parse_args(argv)
    except UsageError as error:
        _Console(quiet=False, debug=False).error(str(error))
        return EXIT_USAGE
    # `main()` with no arguments is the `dlstructured` program itself; with a list it may be a
    # call inside someone else's program, whose modules it must leave as they would be.
    args.whole_process = argv_given is None
    args.argv = argv
    console = _Console(quiet=args.quiet, debug=args.debug)
    try:
        with _sigterm_raises_interrupt(), _warnings_as_notices(console):
            return int(args.func(args, console))
    except UsageError as error:
        if console.debug:
            traceback.print_exc()
        console.error(str(error))
        return EXIT_USAGE
    except KeyboardInterrupt:
        console.error("interrupted before any result was written")
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # the reader of our output went away, as `... | head` does
        with contextlib.suppress(OSError):
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())  # so the final flush at exit cannot fail
        return EXIT_BROKEN_PIPE
    except Exception as error:  # noqa: BLE001 - the last line of defence of a command line
        if console.debug:
            traceback.print_exc()
        if _out_of_memory(error):
            console.error(
                f"ran out of memory ({type(error).__name__}): the model or a batch does not fit; "
                "give smaller --hidden widths or a smaller --batch-size"
            )
            return EXIT_FAILED
        console.error(
            f"unexpected {type(error).__name__}: {error} (run again with --debug for the "
            "traceback, and please report it)"
        )
        return EXIT_FAILED


def _out_of_memory(error: BaseException) -> bool:
    """Whether ``error`` says that memory ran out (host, or the backend's device memory)."""
    if isinstance(error, MemoryError):
        return True
    text = str(error)
    return "RESOURCE_EXHAUSTED" in text or "Out of memory" in text or "OOM when" in text


# --------------------------------------------------------------------------------------------
# Reading data
# --------------------------------------------------------------------------------------------


def _read_data(
    path: str, console: _Console, *, sep: str | None = None, encoding: str | None = None
) -> Any:
    """Read a CSV or Parquet file, dropping a leading row-number column with a notice.

    ``sep`` and ``encoding`` (``--sep``, ``--encoding``) reach ``read_table`` only when given.
    """
    import dlstructured
    from dlstructured.datasets import find_index_column

    if Path(path).is_dir():
        raise UsageError(f"{path!r} is a folder; give a CSV or Parquet file")
    reading = {key: value for key, value in (("sep", sep), ("encoding", encoding)) if value}
    with _user_input(None):
        if reading and not _read_table_takes(reading):
            frame = _read_csv_with(path, reading)
        else:
            frame = dlstructured.read_table(path, **reading)
    if frame.shape[1] == 0 or frame.shape[0] == 0:
        raise UsageError(f"{path!r} holds no data rows; give a table with a header and rows")
    dropped = find_index_column(frame)
    if dropped is not None:
        frame = frame.drop(columns=dropped)
        console.notice(
            f"dropped the first column {dropped!r} of {path!r}: it only numbers the rows"
        )
    return frame


def _read_table_takes(options: dict[str, str]) -> bool:
    import inspect

    import dlstructured

    parameters = inspect.signature(dlstructured.read_table).parameters
    return all(name in parameters for name in options)


def _read_csv_with(path: str, options: dict[str, str]) -> Any:
    """Read a CSV with pandas for a ``read_table`` that takes no ``sep``/``encoding`` yet."""
    import pandas as pd

    flags = " and ".join(f"--{name}" for name in options)
    if Path(path).suffix.lower() in (".parquet", ".pq"):
        raise UsageError(f"{flags} apply to CSV files; {path!r} is Parquet: leave them out")
    if not Path(path).is_file():
        raise UsageError(f"no file at {path!r}; check the path")
    try:
        # pandas's C parser takes a one-character separator; a longer one is a regex.
        engine = "python" if len(options.get("sep", "")) > 1 else "c"
        return pd.read_csv(path, **options, engine=engine)
    except (UnicodeDecodeError, LookupError) as error:
        raise UsageError(f"cannot read {path!r} with {flags}: {error}") from error


def _require_columns(frame: Any, path: str, **options: str | None) -> None:
    for option, column in options.items():
        if column is not None and column not in frame.columns:
            names = [str(c) for c in frame.columns]
            shown = ", ".join(names[:20]) + (
                f" ... ({len(names)} columns)" if len(names) > 20 else ""
            )
            flag = _flag(option)
            raise UsageError(
                f"column {column!r} ({flag}) is not in {path!r}; pass one of its columns: {shown}"
            )


# --------------------------------------------------------------------------------------------
# train
# --------------------------------------------------------------------------------------------


def _cmd_train(args: argparse.Namespace, console: _Console) -> int:
    given = _given_options(args.argv)
    resume = args.resume is not None
    if resume:
        out = Path(args.resume)
        run = _read_run_file(out)
        data_path, target = run["data"], run["target"]
        options = _check_resume_arguments(args, given, run, out)
        backend_name = args.backend or run.get("backend")
        if not (out / CHECKPOINT_DIR / "checkpoint.json").exists():
            console.notice(f"{out} holds no checkpoint yet: training starts from the beginning")
            resume = False
    else:
        if args.data is None or args.target is None:
            raise UsageError(
                "train needs DATA and --target COL (or --resume DIR to continue a run)"
            )
        data_path, target = args.data, args.target
        out = Path(args.out) if args.out else Path("runs") / _stem(args.data)
        options = _training_options(args)
        _check_model_options(options, given)
        _check_activations_fit(options)
        backend_name = args.backend
    _check_output_dir(out)
    _check_run_keeps_the_data(out, data_path)
    frame = _read_data(
        data_path, console, sep=options.get("sep"), encoding=options.get("encoding")
    )
    _require_columns(frame, data_path, target=target, group_by=options["group_by"])
    fingerprint = _fingerprint(data_path, frame)
    if args.resume:
        _check_fingerprint(run, fingerprint, data_path, out, console)
    created = not out.exists()
    try:
        with _keras_backend(backend_name, hide_extras=args.whole_process) as backend:
            if not args.resume or options != run["options"]:
                _write_run_file(
                    out,
                    data=data_path,
                    target=target,
                    options=options,
                    backend=backend,
                    fingerprint=run.get("fingerprint") if args.resume else fingerprint,
                )
            return _train_and_write(
                frame,
                target=target,
                options=options,
                out=out,
                console=console,
                source=str(data_path),
                backend=backend,
                resume=resume,
            )
    except BaseException:
        if created:
            _remove_unless_useful(out)
        raise


def _given_options(argv: Sequence[str]) -> set[str]:
    """The option names (``dest``) given on the command line, as opposed to left at defaults.

    ``argv`` is parsed again by a fresh parser whose defaults are all ``SUPPRESS``, so only what
    was written appears. argparse offers no public way to list a parser's actions; its
    ``_actions`` attribute has been stable since Python 3.2.
    """
    parser = build_parser()
    parsers = [parser]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            parsers.extend(action.choices.values())
    for each in parsers:
        for action in each._actions:
            if action.dest not in ("command", "help", "version"):
                action.default = argparse.SUPPRESS
    given = vars(parser.parse_args(list(argv)))
    return set(given) - {"command", "func"}


def _flag(option: str) -> str:
    return "--" + option.replace("_", "-")


def _with(option: str, value: Any) -> str:
    """How an option's value reads in a sentence: ``with --task binary``, ``without --drop``."""
    if value is None or value is False:
        return f"without {_flag(option)}"
    if value is True:
        return f"with {_flag(option)}"
    return f"with {_flag(option)} {_shown(value)}"


def _shown(value: Any) -> str:
    """An option's value as it is written on the command line."""
    if isinstance(value, dict):
        return ",".join(f"{key}={item}" for key, item in value.items())
    if isinstance(value, (list, tuple)):
        return ",".join(str(item) for item in value) or "none"
    return str(value)


# Options of `train` that only act on hidden layers, so `--model linear` cannot use them.
_HIDDEN_LAYER_OPTIONS = ("hidden", "activation", "dropout", "batch_norm")


def _check_model_options(options: dict[str, Any], given: set[str]) -> None:
    if options["model"] != "linear":
        return
    unused = [
        _flag(name)
        for name in _HIDDEN_LAYER_OPTIONS
        if name in given and not (name == "dropout" and options["dropout"] == 0)
        and not (name == "batch_norm" and not options["batch_norm"])
    ]
    if unused:
        them = "them" if len(unused) > 1 else "it"
        raise UsageError(
            f"--model linear has no hidden layer, so {' and '.join(unused)} would do nothing; "
            f"leave {them} out, or use --model dense"
        )


def _check_activations_fit(options: dict[str, Any]) -> None:
    """Refuse hidden layers whose activations for one batch cannot fit in this machine's memory.

    The builders bound the weights (see ``dlstructured.builders.MAX_PARAMETERS``); one wide
    layer has few weights but a batch's activations and their gradients grow with the width
    times ``--batch-size``, 4 bytes each.
    """
    if options["model"] == "linear":
        return
    try:
        memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):  # no sysconf (Windows): leave it to Keras
        return
    needed = 2 * 4 * options["batch_size"] * sum(options["hidden"])
    if needed > memory:
        raise UsageError(
            f"--hidden {_shown(options['hidden'])} with --batch-size {options['batch_size']} "
            f"needs about {needed / 2**30:.3g} GiB for one batch's activations, more than this "
            f"machine's {memory / 2**30:.3g} GiB; give narrower --hidden layers or a smaller "
            "--batch-size"
        )


def _check_resume_arguments(
    args: argparse.Namespace, given: set[str], run: dict, out: Path
) -> dict[str, Any]:
    """Refuse what ``train --resume`` was given that differs from the run; return its options.

    Options equal to the run's are accepted; a larger ``--epochs`` extends the run to that many
    epochs. ``--backend``, ``--quiet`` and ``--debug`` are the command's, not the run's.
    """
    where = f"the run in {str(out)!r}"
    if args.data is not None and not _same_file(args.data, run["data"]):
        raise UsageError(
            f"--resume continues {where} on its own data {run['data']!r}, but DATA "
            f"{args.data!r} was given; leave DATA out, or start a new run without --resume"
        )
    if args.target is not None and args.target != run["target"]:
        raise UsageError(
            f"--resume: --target {args.target!r} differs from {where}'s --target "
            f"{run['target']!r}; leave --target out, or start a new run without --resume"
        )
    if args.out is not None and not _same_file(args.out, out):
        raise UsageError(
            f"--resume writes into {str(out)!r}, but --out {args.out!r} was given; leave --out out"
        )
    options = dict(run["options"])
    wanted = _training_options(args)
    for name in sorted(given & set(wanted)):
        ran, asked = options.get(name), wanted[name]
        if name == "epochs" and ran is not None and asked >= ran:
            options[name] = asked
        elif asked != ran:
            raise UsageError(
                f"--resume: {_with(name, asked)} was given, but {where} was started "
                f"{_with(name, ran)}; leave {_flag(name)} out to resume the run as it was "
                "started, or start a new run without --resume"
            )
    return options


def _same_file(first: str | os.PathLike[str], second: str | os.PathLike[str]) -> bool:
    """Whether two paths name one file: the same resolved path, or a link to it."""
    if Path(first).resolve() == Path(second).resolve():
        return True
    try:
        return os.path.samefile(first, second)
    except OSError:  # one of them does not exist
        return False


# What `train` writes into its output folder (CHECKPOINT_DIR is a folder of its own).
_RUN_FILES = (RUN_FILE, MODEL_FILE, METRICS_FILE, HISTORY_FILE, PLOT_FILE)


def _check_run_keeps_the_data(out: Path, data: str) -> None:
    """Refuse an output folder where the run's files would replace the data file."""
    for name in _RUN_FILES:
        if _same_file(out / name, data):
            raise UsageError(
                f"--out {str(out)!r} would overwrite the data file {data!r} with the run's "
                f"{name}; give another output folder"
            )
    checkpoints = (out / CHECKPOINT_DIR).resolve()
    if checkpoints in Path(data).resolve().parents:
        raise UsageError(
            f"the data file {data!r} lies in {str(checkpoints)!r}, which the run rewrites; "
            "move it, or give another output folder"
        )


def _remove_unless_useful(out: Path) -> None:
    """Remove an output folder this run created, if it holds nothing a user can use.

    Only the run's own bookkeeping counts as nothing: ``run.json`` and a checkpoint folder
    without a completed checkpoint. Anything else (a model, a checkpoint, a stranger's file)
    keeps the folder.
    """
    if not out.is_dir():
        return
    names = {entry.name for entry in out.iterdir()}
    if not names <= {RUN_FILE, CHECKPOINT_DIR}:
        return
    if (out / CHECKPOINT_DIR / "checkpoint.json").exists():
        return
    shutil.rmtree(out, ignore_errors=True)


def _fingerprint(path: str, frame: Any) -> dict[str, Any]:
    """What identifies a data file: its SHA-256, size in bytes, rows and columns."""
    import hashlib

    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for chunk in iter(lambda: stream.read(1 << 20), b""):
            digest.update(chunk)
    return {
        "sha256": digest.hexdigest(),
        "bytes": os.path.getsize(path),
        "rows": int(frame.shape[0]),
        "columns": [str(column) for column in frame.columns],
    }


def _check_fingerprint(
    run: dict, now: dict[str, Any], data: str, out: Path, console: _Console
) -> None:
    before = run.get("fingerprint")
    if not isinstance(before, dict) or "sha256" not in before:
        console.notice(
            f"{out / RUN_FILE} holds no fingerprint of the data (a run started by dlstructured "
            f"0.1.0), so --resume cannot check that {data!r} is unchanged"
        )
        return
    if before["sha256"] == now["sha256"]:
        return
    changes = []
    if before.get("rows") != now["rows"]:
        changes.append(f"rows {before.get('rows')} -> {now['rows']}")
    old_columns, new_columns = before.get("columns") or [], now["columns"]
    removed = [c for c in old_columns if c not in new_columns]
    added = [c for c in new_columns if c not in old_columns]
    if removed:
        changes.append(f"columns removed: {', '.join(removed)}")
    if added:
        changes.append(f"columns added: {', '.join(added)}")
    if not changes:
        changes.append("content changed")
    raise UsageError(
        f"--resume: the data file {data!r} changed since the run started ({'; '.join(changes)}), "
        "and the checkpoint was trained on the old data; put the original file back, or start "
        "a new run without --resume"
    )


def _write_run_file(
    out: Path,
    *,
    data: str,
    target: str,
    options: dict,
    backend: str,
    fingerprint: dict[str, Any] | None,
) -> None:
    """Record what a run was started with, so ``--resume`` can rebuild and check the same run."""
    out.mkdir(parents=True, exist_ok=True)
    record = {
        "data": str(Path(data).resolve()),
        "target": target,
        "options": options,
        "backend": backend,
    }
    if fingerprint is not None:
        record["fingerprint"] = fingerprint
    handle, temporary = tempfile.mkstemp(prefix=f".{RUN_FILE}.", suffix=".partial", dir=out)
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as stream:
            json.dump(record, stream, indent=2)
            stream.write("\n")
        os.replace(temporary, out / RUN_FILE)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def _read_run_file(out: Path) -> dict:
    path = out / RUN_FILE
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
        if not all(key in record for key in ("data", "target", "options")):
            raise ValueError("keys missing")
    except FileNotFoundError:
        raise UsageError(
            f"--resume {str(out)!r} has no {RUN_FILE}: give the --out folder of a run that "
            "`dlstructured train` started"
        ) from None
    except (OSError, ValueError) as error:
        raise UsageError(
            f"cannot read {path}: {error}; start the run again without --resume"
        ) from error
    return record


def _stem(path: str) -> str:
    name = Path(path).name
    for suffix in (".gz", ".bz2", ".zip", ".xz"):
        name = name.removesuffix(suffix)
    return Path(name).stem or "run"


def _check_output_dir(out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {str(out)!r} is a file; give a folder path")


def _training_options(args: argparse.Namespace) -> dict[str, Any]:
    return {
        "task": args.task,
        "model": args.model,
        "hidden": list(args.hidden),
        "activation": args.activation,
        "dropout": args.dropout,
        "batch_norm": args.batch_norm,
        "input_batch_norm": args.input_batch_norm,
        "epochs": args.epochs,
        "batch_size": args.batch_size,
        "learning_rate": args.learning_rate,
        "patience": args.patience,
        "metrics": args.metrics,
        "valid_fraction": args.valid_fraction,
        "stratify": args.stratify,
        "group_by": args.group_by,
        "seed": args.seed,
        "kinds": args.kinds,
        "drop": args.drop,
        "positive_label": args.positive_label,
        "sep": args.sep,
        "encoding": args.encoding,
    }


def _select_columns(frame: Any, target: str, options: dict[str, Any], source: str) -> Any:
    """Check ``--kinds`` and ``--drop`` against the table and leave the dropped columns out."""
    kinds = options.get("kinds") or {}
    drop = options.get("drop") or []
    for flag, names in (("kinds", list(kinds)), ("drop", drop)):
        for name in names:
            if name == target:
                raise UsageError(
                    f"--{flag} names the target column {target!r}; leave it out of --{flag}"
                )
            _require_columns(frame, source, **{flag: name})
    return frame.drop(columns=drop) if drop else frame


def _positive_label(frame: Any, target: str, text: str | None) -> Any:
    """The target's label that ``--positive-label`` names, matched as text.

    The label is compared as written first (``yes`` names ``"yes"``), then as the number or
    boolean it spells (``1`` and ``1.0`` name ``1``; ``true`` names ``True``).
    """
    if text is None:
        return None
    labels = list(frame[target].dropna().unique())
    for label in labels:
        if str(label) == text:
            return label.item() if hasattr(label, "item") else label
    for label in labels:
        if _spells(text, label):
            return label.item() if hasattr(label, "item") else label
    shown = ", ".join(str(label) for label in labels[:10])
    raise UsageError(
        f"--positive-label {text!r} is not a label of the target {target!r}; its labels: {shown}"
    )


def _spells(text: str, label: Any) -> bool:
    import numpy as np

    if isinstance(label, (bool, np.bool_)):
        return text.strip().lower() == str(bool(label)).lower()
    if isinstance(label, (int, float, np.integer, np.floating)):
        try:
            return float(text) == float(label)
        except ValueError:
            return False
    return False


def _prepare(frame: Any, target: str, options: dict[str, Any], source: str) -> Any:
    import dlstructured

    frame = _select_columns(frame, target, options, source)
    positive_label = _positive_label(frame, target, options.get("positive_label"))
    split = "random"
    if options["group_by"] is not None:
        if options["stratify"]:
            raise UsageError("--stratify and --group-by cannot be combined; choose one")
        split = "grouped"
    elif options["stratify"]:
        split = "stratified"
    with _user_input("cannot prepare the data"):
        return dlstructured.prepare(
            frame,
            target,
            task=options["task"],
            valid_fraction=options["valid_fraction"],
            split=split,
            group_by=options["group_by"],
            seed=options["seed"],
            kinds=options.get("kinds"),
            positive_label=positive_label,
        )


def _build(data: Any, options: dict[str, Any]) -> Any:
    import dlstructured

    builders = {
        "regression": dlstructured.dense_stack,
        "binary": dlstructured.binary_classifier,
        "multiclass": dlstructured.multiclass_classifier,
    }
    linear = options["model"] == "linear"
    with _user_input("cannot build the model"), _hidden_units_as_flag():
        return builders[data.task](
            data,
            hidden_units=() if linear else tuple(options["hidden"]),
            activation=options["activation"],
            dropout_rate=options["dropout"],
            batch_norm=options["batch_norm"],
            input_batch_norm=options["input_batch_norm"],
            seed=options["seed"],
            name="linear_model" if linear else "dense_model",
        )


@contextlib.contextmanager
def _hidden_units_as_flag() -> Iterator[None]:
    """Name the builders' ``hidden_units`` argument as the ``--hidden`` option it came from."""
    try:
        yield
    except ValueError as error:
        raise ValueError(str(error).replace("`hidden_units`", "--hidden")) from error


def _train_and_write(
    frame: Any,
    *,
    target: str,
    options: dict[str, Any],
    out: Path,
    console: _Console,
    source: str,
    backend: str,
    resume: bool = False,
) -> int:
    import dlstructured
    from dlstructured.tasks import as_metric_objects

    data = _prepare(frame, target, options, source)
    metrics = options.get("metrics")  # absent from runs started before --metrics existed
    with _user_input("bad --metrics"):
        as_metric_objects(metrics, data.task)
    model = _build(data, options)
    if resume:
        from dlstructured.checkpoints import read_checkpoint

        with _user_input("cannot resume the run"):
            read_checkpoint(out / CHECKPOINT_DIR)
    has_validation = getattr(data, "x_valid", None) is not None
    patience = options["patience"]
    if patience and not has_validation:
        console.notice("no validation rows (--valid-fraction 0): early stopping is off")
        patience = 0
    # The callback sees the loss on the scaled target; show it in the target's units.
    loss_scale = float(getattr(data, "target_unit_scale", 1.0) or 1.0)
    if data.task != "regression":
        loss_scale = 1.0
    callbacks = [_interrupt_callback()]
    if not console.quiet:
        callbacks.append(_progress_callback(options["epochs"], loss_scale))
    console.notice(
        f"training a {options['model']} {data.task} model on {_count(data.x_train)} rows"
        + (f", validating on {_count(data.x_valid)}" if has_validation else "")
        + f" ({data.num_features} features, backend {backend})"
    )
    with warnings.catch_warnings():
        # The command line reports divergence and interruption itself, with its own advice.
        from dlstructured.training import TrainingDivergedWarning, TrainingInterruptedWarning

        warnings.simplefilter("ignore", TrainingDivergedWarning)
        warnings.simplefilter("ignore", TrainingInterruptedWarning)
        with _interrupts_deferred("stopping at the end of this epoch", quiet=console.quiet):
            result = dlstructured.train(
                model,
                data,
                epochs=options["epochs"],
                batch_size=options["batch_size"],
                learning_rate=options["learning_rate"],
                early_stopping=patience if patience else False,
                metrics=metrics,
                callbacks=callbacks,
                verbose=0,
                seed=options["seed"],
                checkpoint_dir=out / CHECKPOINT_DIR,
                resume=resume,
            )
    summary = _summary(result, data, options, source=source, backend=backend)
    with _interrupts_deferred("finishing the output files first", quiet=console.quiet):
        written = write_outputs(out, model=model, result=result, summary=summary)
    console.result(_metrics_table(result))
    console.result(f"wrote {', '.join(p.name for p in written)} to {out}")
    if getattr(result, "diverged", False):
        console.error(
            f"training diverged at epoch {result.diverged_epoch} (the loss became NaN or "
            "infinite); the files hold the best weights before it. Lower --learning-rate, or "
            "add --input-batch-norm / --batch-norm"
        )
        return EXIT_FAILED
    if getattr(result, "interrupted", False):
        console.error(f"interrupted after {result.epochs_run} epochs; wrote the model so far")
        return EXIT_INTERRUPTED
    return EXIT_OK


def _count(array: Any) -> int:
    return 0 if array is None else int(len(array))


def _progress_callback(total_epochs: int, loss_scale: float = 1.0) -> Any:
    """A Keras callback that draws one progress bar over the epochs on standard error.

    On a terminal the bar redraws in place; elsewhere (a log file, a pipe) it prints the first
    epoch and then one line per tenth of the epochs. ``loss_scale`` converts the losses to the
    target's units (the network trains on a scaled regression target).
    """
    import keras

    class EpochProgress(keras.callbacks.Callback):
        def __init__(self) -> None:
            super().__init__()
            self.stream = sys.stderr
            self.live = bool(getattr(self.stream, "isatty", lambda: False)())
            self.every = max(1, total_epochs // 10)
            self.started = time.perf_counter()
            self.last_line = ""

        def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
            logs = logs or {}
            done = epoch + 1
            width = 24
            filled = min(width, round(width * done / total_epochs))
            parts = [f"epoch {done:>{len(str(total_epochs))}}/{total_epochs}"]
            parts.append("[" + "#" * filled + "." * (width - filled) + "]")
            for key in ("loss", "val_loss"):
                if key in logs:
                    parts.append(f"{key} {float(logs[key]) * loss_scale:.4f}")
            parts.append(f"{time.perf_counter() - self.started:.0f}s")
            line = "  ".join(parts)
            if self.live:
                self.stream.write("\r" + line.ljust(len(self.last_line)))
                self.stream.flush()
            elif done == 1 or done % self.every == 0 or done == total_epochs:
                self.stream.write(line + "\n")
                self.stream.flush()
            self.last_line = line

        def on_train_end(self, logs: dict[str, Any] | None = None) -> None:
            if self.live and self.last_line:
                self.stream.write("\n")
                self.stream.flush()

    return EpochProgress()


def _plain(value: Any) -> Any:
    """JSON-safe copy: numpy scalars to Python numbers, NaN and infinities to ``None``."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if hasattr(value, "item") and callable(value.item):
        try:
            value = value.item()
        except (ValueError, TypeError):
            return str(value)
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return str(value)


def _summary(result: Any, data: Any, options: dict[str, Any], *, source: str, backend: str) -> dict:
    from dlstructured import __version__

    return _plain(
        {
            "dlstructured_version": __version__,
            "data": source,
            "target": getattr(data, "target", None),
            "task": data.task,
            "rows": {"train": _count(data.x_train), "valid": _count(data.x_valid)},
            "num_features": data.num_features,
            "backend": backend,
            "engine": getattr(result, "engine", None),
            "options": options,
            "epochs_run": result.epochs_run,
            "best_epoch": result.best_epoch,
            "stopped_early": getattr(result, "stopped_early", None),
            "diverged": getattr(result, "diverged", False),
            "diverged_epoch": getattr(result, "diverged_epoch", None),
            "interrupted": getattr(result, "interrupted", False),
            "wall_time_s": getattr(result, "wall_time", None),
            "fit_time_s": getattr(result, "fit_time", None),
            "best": dict(result.best_metrics or {}),
            "final": dict(result.final_metrics or {}),
        }
    )


def write_outputs(
    out: str | os.PathLike[str], *, model: Any, result: Any, summary: dict
) -> list[Path]:
    """Write a training run's files into ``out`` so that none is ever half-written.

    Every file is first written into a temporary folder beside ``out`` and then moved into
    ``out`` with an atomic rename, so an interruption or a failure leaves each file either
    absent, as it was before, or complete.

    Args:
        out: The output folder; created if missing. Files of the same names are replaced.
        model: The trained Keras model, saved as ``model.keras``.
        result: The :class:`dlstructured.TrainingResult`; its history goes to ``history.csv``
            and its ``plot()`` to ``learning_curves.png``.
        summary: JSON-serializable metrics and settings, written to ``metrics.json``.

    Returns:
        The paths written, in the order ``model.keras``, ``metrics.json``, ``history.csv``,
        ``learning_curves.png``.

    Raises:
        OSError: If a file cannot be written; ``out`` is then left as it was.

    Example:

    >>> from dlstructured.cli import write_outputs  # doctest: +SKIP
    >>> write_outputs("runs/wine", model=model, result=result, summary={})  # doctest: +SKIP
    """
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".partial", dir=out.parent))
    try:
        model.save(staging / MODEL_FILE)
        (staging / METRICS_FILE).write_text(
            json.dumps(summary, indent=2, allow_nan=False) + "\n", encoding="utf-8"
        )
        _history_frame(result.history).to_csv(staging / HISTORY_FILE, index=False)
        figure = result.plot()
        try:
            figure.savefig(staging / PLOT_FILE, format="png", dpi=100)
        finally:
            _close_figure(figure)
        out.mkdir(parents=True, exist_ok=True)
        written = []
        for name in (MODEL_FILE, METRICS_FILE, HISTORY_FILE, PLOT_FILE):
            os.replace(staging / name, out / name)
            written.append(out / name)
        return written
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _history_frame(history: Any) -> Any:
    frame = history.copy()
    if frame.index.name == "epoch":
        return frame.reset_index()
    frame.insert(0, "epoch", range(1, len(frame) + 1))
    return frame


def _close_figure(figure: Any) -> None:
    pyplot = sys.modules.get("matplotlib.pyplot")
    if pyplot is not None:
        pyplot.close(figure)


def _metrics_table(result: Any) -> str:
    best = dict(result.best_metrics or {})
    final = dict(result.final_metrics or {})
    names = list(dict.fromkeys([*final, *best]))
    best_head = f"best (epoch {result.best_epoch})"
    final_head = f"final (epoch {result.epochs_run})"
    width = max([len("metric"), *(len(n) for n in names)])
    lines = [f"{'metric':<{width}}  {best_head:>16}  {final_head:>16}"]
    for name in names:
        lines.append(f"{name:<{width}}  {_fmt(best.get(name)):>16}  {_fmt(final.get(name)):>16}")
    return "\n".join(lines)


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    try:
        return f"{float(value):.4f}"
    except (TypeError, ValueError):
        return str(value)


# --------------------------------------------------------------------------------------------
# predict and evaluate
# --------------------------------------------------------------------------------------------


def _load(path: str) -> Any:
    """Load a model that ``dlstructured train`` or ``TabularModel.save`` wrote, or refuse.

    A plain Keras model is refused: it knows nothing of the table's columns and would read the
    CSV's numbers by position.
    """
    import dlstructured
    from dlstructured._safe_loading import read_keras_config

    _describe_non_model(path)
    with _user_input(f"cannot load the model {path!r}"):
        config = read_keras_config(path)
    if not str(config.get("registered_name") or "").startswith("dlstructured>"):
        kind = config.get("class_name") or "model"
        raise UsageError(
            f"{path!r} is a plain Keras model ({kind}), which knows nothing of the table's "
            "columns; give a model written by `dlstructured train` or `TabularModel.save`"
        )
    with _user_input(f"cannot load the model {path!r}"):
        return dlstructured.load_model(path)


def _describe_non_model(path: str) -> None:
    """Refuse, saying what it is, a MODEL argument that is a folder or missing."""
    where = Path(path)
    if where.is_dir():
        if (where / "checkpoint.json").exists() or where.name == CHECKPOINT_DIR:
            what = "a checkpoint folder of a training run"
        elif (where / MODEL_FILE).is_file():
            what = "the output folder of a training run"
        else:
            what = "a folder"
        hint = where / MODEL_FILE if (where / MODEL_FILE).is_file() else None
        if hint is None and (where.parent / MODEL_FILE).is_file():
            hint = where.parent / MODEL_FILE
        advice = f"give {str(hint)!r}" if hint else "give the model.keras that `train` wrote"
        raise UsageError(f"{path!r} is {what}, not a model file; {advice}")
    if not where.exists():
        raise UsageError(
            f"no model file at {path!r}; give the model.keras that `dlstructured train` wrote"
        )


def _check_out_is_not_an_input(out: str | None, **inputs: str) -> None:
    """Refuse an ``--out`` file that is one of the command's inputs (through links too)."""
    if out is None:
        return
    for what, path in inputs.items():
        if _same_file(out, path):
            raise UsageError(
                f"--out {out!r} is the {what} file {path!r}, which writing would replace; give "
                "another file name such as predictions.csv"
            )


def _cmd_predict(args: argparse.Namespace, console: _Console) -> int:
    import pandas as pd

    _check_out_is_not_an_input(args.out, model=args.model, data=args.data)
    frame = _read_data(args.data, console, sep=args.sep, encoding=args.encoding)
    with _keras_backend(args.backend, hide_extras=args.whole_process):
        model = _load(args.model)
        task = getattr(model, "task", None)
        if args.proba and task not in ("binary", "multiclass"):
            raise UsageError(
                f"--proba needs a classifier, but {args.model!r} is a {task} model; drop --proba"
            )
        with _user_input(f"cannot predict on {args.data!r}"):
            predictions = pd.DataFrame({"prediction": _as_1d(model.predict(frame))})
            if args.proba:
                probabilities = _probability_frame(model.predict_proba(frame))
                predictions = pd.concat([predictions, probabilities], axis=1)
    if args.out is None:
        predictions.to_csv(sys.stdout, index=False)
    else:
        _write_csv_atomically(predictions, Path(args.out))
        console.notice(f"wrote {len(predictions)} predictions to {args.out}")
    return EXIT_OK


def _as_1d(values: Any) -> Any:
    import numpy as np

    array = np.asarray(values)
    return array.reshape(len(array), -1)[:, 0] if array.ndim > 1 else array


def _probability_frame(probabilities: Any) -> Any:
    """One ``probability_<label>`` column per class, from ``TabularModel.predict_proba``."""
    import pandas as pd

    frame = pd.DataFrame(probabilities).reset_index(drop=True)
    frame.columns = [f"probability_{label}" for label in frame.columns]
    return frame


def _write_csv_atomically(frame: Any, path: Path) -> None:
    if path.is_dir():
        raise UsageError(f"--out {str(path)!r} is a folder; give a file name such as preds.csv")
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(
        prefix=f".{path.name}.", suffix=".partial", dir=path.parent
    )
    try:
        with os.fdopen(handle, "w", encoding="utf-8", newline="") as stream:
            frame.to_csv(stream, index=False)
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise


def _cmd_evaluate(args: argparse.Namespace, console: _Console) -> int:
    frame = _read_data(args.data, console, sep=args.sep, encoding=args.encoding)
    _require_columns(frame, args.data, target=args.target)
    with _keras_backend(args.backend, hide_extras=args.whole_process):
        model = _load(args.model)
        trained_on = _model_target(model)
        renamed = trained_on is not None and trained_on != args.target
        if renamed:
            if trained_on in frame.columns:
                frame = frame.drop(columns=trained_on)
            frame = frame.rename(columns={args.target: trained_on})
        try:
            with _user_input(f"cannot evaluate on {args.data!r}"):
                metrics = model.evaluate(frame)
        except UsageError as error:
            if not renamed:
                raise
            # The model reads --target under the name it was trained with; the message must
            # name the column the user gave.
            message = str(error).replace(repr(trained_on), repr(args.target))
            raise UsageError(
                f"{message} (--target {args.target!r} is read as the model's target "
                f"{trained_on!r})"
            ) from error
    metrics = _plain(dict(metrics))
    width = max(len(name) for name in metrics) if metrics else 6
    print("\n".join(f"{name:<{width}}  {_fmt(value)}" for name, value in metrics.items()))
    return EXIT_OK


def _model_target(model: Any) -> str | None:
    for owner in (model, getattr(model, "preprocessor", None)):
        for name in ("target", "target_name", "target_column"):
            value = getattr(owner, name, None)
            if isinstance(value, str):
                return value
    return None


# --------------------------------------------------------------------------------------------
# demo
# --------------------------------------------------------------------------------------------


def _cmd_demo(args: argparse.Namespace, console: _Console) -> int:
    from dlstructured.datasets import load_breast_cancer, load_diabetes

    out = Path(args.out)
    _check_output_dir(out)
    base = {
        "task": None,
        "model": "dense",
        "hidden": list(DEFAULT_HIDDEN),
        "activation": DEFAULT_ACTIVATION,
        "dropout": DEFAULT_DROPOUT,
        "batch_norm": False,
        "input_batch_norm": False,
        "epochs": args.epochs,
        "batch_size": DEFAULT_BATCH_SIZE,
        "learning_rate": DEFAULT_LEARNING_RATE,
        "patience": DEFAULT_PATIENCE,
        "valid_fraction": DEFAULT_VALID_FRACTION,
        "stratify": False,
        "group_by": None,
        "seed": args.seed,
    }
    jobs = [
        ("diabetes", load_diabetes, "progression", "a ReLU stack (regression)"),
        ("breast_cancer", load_breast_cancer, "diagnosis", "a sigmoid classifier (binary)"),
    ]
    status = EXIT_OK
    with _keras_backend(args.backend, hide_extras=args.whole_process) as backend:
        for name, load, target, what in jobs:
            console.result(f"\n== {name}: {what}, target {target!r}")
            outcome = _train_and_write(
                load(),
                target=target,
                options=dict(base),
                out=out / name,
                console=console,
                source=f"dlstructured.datasets.load_{name}()",
                backend=backend,
            )
            if outcome != EXIT_OK:
                return outcome
    console.result(
        f"\nlearning curves: {out / 'diabetes' / PLOT_FILE}, {out / 'breast_cancer' / PLOT_FILE}"
    )
    return status


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
