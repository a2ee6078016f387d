"""The ``dlstructured`` command line: train, predict, evaluate, explain and demo.

A thin shell over the library: ``train`` turns its flags into a ``dlstructured.RunConfig`` (each
flag is the field of the same name; 0.1.0's ``--hidden`` and ``--dropout`` stay as aliases) and
calls ``dlstructured.fit_table``. What only a process has lives here: the Keras backend, chosen
before Keras is imported (``--backend``, JAX by default, which never imports TensorFlow),
signals, the console and exit codes.

Bad input prints one line saying what is wrong and how to fix it, exit status 2 (``--debug``
shows the traceback); data notices print one line each on standard error (``--quiet`` hides
them). Ctrl-C and SIGTERM end training at the end of the current epoch (a second signal stops at
once), write what was trained so far and exit with 130. A diverged run writes what it has,
prints advice and exits with 1.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import importlib.abc
import os
import re
import signal
import sys
import threading
import traceback
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from dlstructured import __version__, _cli_distributed, distributed
from dlstructured.config import MODEL_CHOICES, TASK_CHOICES, RunConfig, field_from_text
from dlstructured.errors import (
    DataWarning,
    DLStructuredError,
    is_out_of_memory,
    message_for_command_line,
)

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130
EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE, as shell tools report it

BACKENDS = ("jax", "tensorflow")
DEFAULT_BACKEND = "jax"
PROG = "dlstructured"
DEFAULTS = RunConfig()  # the defaults of `dlstructured train` (measured in docs/cli.md)
_CONFIG_FIELDS = {item.name for item in dataclasses.fields(RunConfig)}


class UsageError(Exception):
    """A problem with the user's input: reported as one line, exit status 2."""


# --------------------------------------------------------------------------------------------
# Argument parsing: each flag is checked by the RunConfig field it fills
# --------------------------------------------------------------------------------------------


class _Parser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose errors are one line and leave exiting to ``main``."""

    def error(self, message: str) -> Any:  # type: ignore[override]
        raise UsageError(f"{message} (see `{self.prog} --help`)")


def _field(name: str) -> Any:
    """An argparse type that reads a flag's text as the RunConfig field ``name``, checked."""

    def convert(text: str) -> Any:
        try:
            return field_from_text(name, text)
        except (ValueError, TypeError) as error:
            raise argparse.ArgumentTypeError(f"{_one_line(error)} (got {text!r})") from None

    convert.__name__ = name  # argparse names the type in its own messages
    return convert


# title: (flag, aliases, metavar, help) per RunConfig field; the defaults are RunConfig's and
# a field whose default is False is a switch.
_RUN_FLAGS: dict[str, list[tuple[str, tuple[str, ...], str | None, str]]] = {
    "columns": [
        ("kinds", (), "COL=KIND", "override inferred column kinds, comma-separated COL=KIND "
         "with KIND one of numeric, categorical, datetime, ignore (e.g. "
         "zip=categorical,id=ignore)"),
        ("drop", (), "COL", "comma-separated columns to leave out"),
        ("positive_label", (), "LABEL", "binary target: the label that becomes 1 (matched as "
         "text, so 1, 1.0 and true also name the numeric or boolean label)"),
    ],
    "model": [
        ("task", (), "{" + ",".join(TASK_CHOICES) + "}", "task (default: inferred from the "
         "target)"),
        ("model", (), "{" + ",".join(MODEL_CHOICES) + "}", "auto: the strong default, an "
         "ensemble of MLPs with its own recipe; dense: the course's recipe (ReLU layers, Adam "
         "0.001, min-max scaling); linear: no hidden layer (default: auto)"),
        ("hidden_units", ("--hidden",), "UNITS", "hidden layer widths (default: 256,256,256 "
         "for auto, 512,512,512 for dense)"),
        ("activation", (), None, "Keras activation of the hidden layers: relu, elu, selu, gelu, "
         "swish ... (default: selu for auto, relu for dense)"),
        ("members", (), "K", "ensemble members of --model auto (default: 8)"),
        ("dropout_rate", ("--dropout",), "RATE", "dropout rate after each hidden layer, in "
         "[0, 1) (default: 0)"),
        ("batch_norm", (), None, "batch-normalize each hidden layer (dense)"),
        ("input_batch_norm", (), None, "batch-normalize the inputs first (dense)"),
    ],
    "training": [
        ("epochs", (), None, "most epochs (default: 200 for dense; for auto about 1,200 steps, "
         "16 to 128 epochs)"),
        ("batch_size", (), None, "rows per gradient step (default: 256; for auto 256 to 1024 "
         "by table size)"),
        ("learning_rate", (), "RATE", "Adam's (peak) learning rate, in (0, 10] (default: 0.001 "
         "for dense; 0.06 or 0.04 for auto, whose layers scale it down)"),
        ("metrics", (), "NAMES", "metrics besides the loss, comma-separated Keras names such as "
         "binary_accuracy,auc or mae, or none (default: the task's: mae; binary_accuracy,auc; "
         "accuracy); AUC costs a share of every step"),
        ("patience", (), None, "epochs without improvement of the validation loss before "
         "stopping; 0 turns early stopping off (default: 20 for dense; auto runs its budget "
         "and keeps the best epoch)"),
    ],
    "validation split": [
        ("valid_fraction", (), "F", "fraction of rows held out for validation, in [0, 1); 0 "
         "trains on all rows (default: 0.3 for dense; 0.2 for auto, which then refits on "
         "every row)"),
        ("stratify", (), None, "keep the class proportions in both parts"),
        ("group_by", (), "COL", "keep all rows with the same value of COL in one part"),
        ("seed", (), None, "seed of the split, the weights and the shuffling (default: 0)"),
    ],
}


def _add_run_flags(parser: argparse.ArgumentParser) -> None:
    for title, flags in _RUN_FLAGS.items():
        group = parser.add_argument_group(title)
        for name, aliases, metavar, text in flags:
            names = (_flag(name), *aliases)
            if getattr(DEFAULTS, name) is False:
                group.add_argument(*names, dest=name, action="store_true", help=text)
            else:
                group.add_argument(*names, dest=name, type=_field(name),
                                   default=getattr(DEFAULTS, name), metavar=metavar, help=text)


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser of the ``dlstructured`` command.

    Returns:
        An ``argparse.ArgumentParser`` with the subcommands ``train``, ``predict``, ``evaluate``,
        ``explain`` and ``demo``. Its ``error`` method raises ``UsageError`` instead of exiting.

    Example:

    >>> from dlstructured.cli import build_parser
    >>> args = build_parser().parse_args(["train", "wine.csv", "--target", "quality",
    ...                                   "--hidden", "64,64"])
    >>> args.hidden_units, args.model, args.backend
    ((64, 64), 'auto', None)
    """
    common = _Parser(add_help=False)
    common.add_argument("--backend", choices=BACKENDS, default=None,
                        help=f"Keras backend for this run (default: {DEFAULT_BACKEND}; with jax, "
                        "TensorFlow is never imported)")
    common.add_argument("--quiet", action="store_true", help="print only errors and results")
    common.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    reading = _Parser(add_help=False)
    table = reading.add_argument_group("reading the table")
    table.add_argument("--sep", metavar="SEP", type=_field("sep"), default=None,
                       help="CSV field separator (default: guessed)")
    table.add_argument("--encoding", metavar="ENC", type=_field("encoding"), default=None,
                       help="CSV text encoding (default: utf-8)")

    parser = _Parser(prog=PROG, description="Train Keras networks on tabular data (CSV or "
                     "Parquet) and use them.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    commands.required = True

    train = commands.add_parser(
        "train", parents=[common, reading], help="train a model on a CSV or Parquet file",
        description="Prepare DATA, train a network to predict --target, and write the model, "
        "metrics.json, history.csv and learning_curves.png to --out.")
    train.add_argument("data", metavar="DATA", nargs="?",
                       help="CSV or Parquet (.parquet) file, or a folder or glob of Parquet "
                       "files (streamed, as is a file of 1 GiB or more)")
    train.add_argument("--target", metavar="COL", help="column to predict (required with DATA)")
    train.add_argument(
        "--resume", metavar="DIR", default=None,
        help="continue the interrupted run in output folder DIR from its last checkpoint, with "
        "the data and options it was started with (options given again must equal the run's; "
        "a larger --epochs trains on to that many epochs)")
    _add_run_flags(train)
    train.add_argument("--out", metavar="DIR", default=None,
                       help="output folder (default: runs/<DATA file name without suffix>)")
    _cli_distributed.add_flags(train)
    train.set_defaults(func=_cmd_train)

    predict = commands.add_parser(
        "predict", parents=[common, reading], help="predict with a trained model",
        description="Write a `prediction` column (original units or labels) for each row of DATA.")
    predict.add_argument("model", metavar="MODEL", help="a .keras file written by `train`")
    predict.add_argument("data", metavar="DATA", help="CSV or Parquet file with the features, "
                         "or a folder or glob of Parquet files (predicted batch by batch)")
    predict.add_argument("--out", metavar="FILE", default=None,
                         help="CSV file to write (default: standard output)")
    predict.add_argument("--proba", action="store_true",
                         help="also write class probabilities (classifiers)")
    predict.set_defaults(func=_cmd_predict)

    evaluate = commands.add_parser(
        "evaluate", parents=[common, reading], help="print a trained model's metrics on "
        "labelled data", description="Print the model's metrics on DATA, which holds the "
        "features and --target.")
    evaluate.add_argument("model", metavar="MODEL", help="a .keras file written by `train`")
    evaluate.add_argument("data", metavar="DATA", help="CSV or Parquet file with the labels")
    evaluate.add_argument("--target", required=True, metavar="COL", help="column with the labels")
    evaluate.set_defaults(func=_cmd_evaluate)

    explain = commands.add_parser(
        "explain", parents=[common, reading], help="rank the columns a trained model relies on",
        description="Shuffle each column of DATA (held-out rows with --target) in turn and write "
        "how much the model's metric worsens to importance.csv and importance.png in --out.")
    explain.add_argument("model", metavar="MODEL", help="a .keras file written by `train`")
    explain.add_argument("data", metavar="DATA", help="CSV or Parquet file of held-out rows")
    explain.add_argument("--target", required=True, metavar="COL", help="column with the labels")
    explain.add_argument("--out", required=True, metavar="DIR", help="folder to write into")
    explain.add_argument("--repeats", type=_repeats, default=5, metavar="N",
                         help="shuffles per column (default: 5)")
    explain.add_argument("--seed", type=_field("seed"), default=0, help="seed (default: 0)")
    explain.set_defaults(func=_cmd_explain)

    demo = commands.add_parser(
        "demo", parents=[common], help="train on data scikit-learn ships (no network needed)",
        description="Train the default model on the diabetes table (regression) and the "
        "breast-cancer table (binary), print their metrics and write their learning curves.")
    demo.add_argument("--out", metavar="DIR", default="runs/demo",
                      help="output folder (default: runs/demo)")
    demo.add_argument("--epochs", type=_field("epochs"), default=DEFAULTS.epochs,
                      help="most epochs per model (default: the model's own)")
    demo.add_argument("--seed", type=_field("seed"), default=DEFAULTS.seed, help="seed")
    demo.set_defaults(func=_cmd_demo)

    tune = commands.add_parser(
        "tune", parents=[common, reading], help="search a run's options with Optuna",
        description="Search width, depth, dropout, learning rate and batch size for DATA; write "
        "trials.csv, the pictures and the best model.keras to --out.")
    tune.add_argument("data", metavar="DATA", help="CSV or Parquet file")
    tune.add_argument("--target", required=True, metavar="COL", help="column to predict")
    tune.add_argument("--trials", type=int, default=30, help="default: 30")
    tune.add_argument("--out", metavar="DIR", required=True, help="output folder")
    tune.add_argument("--timeout", metavar="S", type=float, default=None,
                      help="start no trial after S seconds")
    tune.add_argument("--storage", metavar="URL", default=None,
                      help="study database to continue, e.g. sqlite:///search.db")
    tune.add_argument("--epochs", type=_field("epochs"), default=50, help="default: 50")
    tune.set_defaults(func=_cmd_tune)
    return parser


def _repeats(text: str) -> int:
    if not text.strip().isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1 (got {text!r})")
    return int(text)


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _given_options(argv: Sequence[str]) -> set[str]:
    """The option names (``dest``) given on the command line, as opposed to left at defaults.

    ``argv`` is parsed again by a parser whose defaults are all ``SUPPRESS``, so only what was
    written appears (argparse's ``_actions``, not public, has been stable since Python 3.2).
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
    return set(vars(parser.parse_args(list(argv)))) - {"command", "func"}


# --------------------------------------------------------------------------------------------
# Process set-up: backend, signals, warnings
# --------------------------------------------------------------------------------------------


class _RefuseModules(importlib.abc.MetaPathFinder):
    """Refuse to import the given top-level packages (and their submodules), saying ``why``."""

    def __init__(self, names: Sequence[str], why: str) -> None:
        self.names, self.why = tuple(names), why

    def find_spec(self, name: str, path: Any = None, target: Any = None) -> None:
        if name.split(".", 1)[0] in self.names:
            raise ModuleNotFoundError(self.why.format(name=name), name=name)
        return None


# Keras 3 imports TensorFlow whenever it is installed and a model is saved (it checks for
# TensorFlow types while serializing), even on JAX, which costs seconds and memory. With
# TensorFlow refused, Keras treats it as absent and saves the same file.
_KEEP_TENSORFLOW_OUT = ("dlstructured's command line runs Keras on JAX and does not load "
                        "TensorFlow (import of {name!r} refused); use --backend tensorflow to "
                        "run on it")
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
    finder = _RefuseModules([name for name in _KERAS_EXTRAS if name not in sys.modules],
                            "{name!r} is not imported while Keras loads")
    sys.meta_path.insert(0, finder)
    try:
        import keras  # noqa: F401
    finally:
        sys.meta_path.remove(finder)


@contextlib.contextmanager
def _keras_backend(requested: str | None, *, hide_extras: bool = False) -> Iterator[str]:
    """Select the Keras backend for this command, before Keras is imported.

    The environment variable is restored afterwards, so calling ``main`` inside another
    program leaves that program's environment as it was. On JAX, TensorFlow imports are refused
    while the command runs (see ``_KEEP_TENSORFLOW_OUT``). With ``hide_extras`` (only when the
    command is the whole process: Keras keeps what it saw at import for the rest of the process),
    Keras is imported without its optional extras (see ``_import_keras_without_extras``).
    """
    if "keras" in sys.modules:  # main() called inside a program that already imported Keras
        import keras

        current = keras.backend.backend()
        if requested is not None and requested != current:
            raise UsageError(f"Keras is already imported with the {current} backend in this "
                             f"process, so --backend {requested} cannot take effect; run the "
                             "`dlstructured` command in a new process")
        yield current
        return
    name = requested or DEFAULT_BACKEND
    saved = {key: os.environ.get(key) for key in ("KERAS_BACKEND", "TF_CPP_MIN_LOG_LEVEL")}
    os.environ["KERAS_BACKEND"] = name
    if name == "tensorflow" and saved["TF_CPP_MIN_LOG_LEVEL"] is None:
        os.environ["TF_CPP_MIN_LOG_LEVEL"] = "2"  # keep TensorFlow's C++ start-up chatter quiet
    blocker = None
    if name == "jax" and "tensorflow" not in sys.modules:
        blocker = _RefuseModules(["tensorflow"], _KEEP_TENSORFLOW_OUT)
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
    """Signals received while the command runs (see ``_sigterm_raises_interrupt``).

    ``notice`` is set while a first signal should only be noted (see ``_interrupts_deferred``):
    while training runs, ``_interrupt_callback`` raises ``KeyboardInterrupt`` at the end of
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

    Outside the deferred stretches of ``_interrupts_deferred`` the exception is raised at
    once. Python delivers it wherever the main thread is, and where that is a ``__del__`` method
    or a garbage-collector callback it is printed as "Exception ignored" and lost; every signal
    is therefore also noted, and ``_interrupt_callback`` raises it again at the end of the
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


def _defer_interrupts(what_happens: str | None, *, quiet: bool) -> None:
    """From now on, let a first signal only be noted and say ``what_happens`` (``None``: raise)."""
    notice = f"\ndlstructured: {what_happens} (Ctrl-C or SIGTERM again stops at once)\n"
    _signals.notice = None if what_happens is None else b"" if quiet else notice.encode()


@contextlib.contextmanager
def _interrupts_deferred(what_happens: str, *, quiet: bool) -> Iterator[None]:
    """Let a first signal only be noted (and say ``what_happens`` then); a second raises."""
    _defer_interrupts(what_happens, quiet=quiet)
    try:
        yield
    finally:
        _defer_interrupts(None, quiet=quiet)


def _interrupt_callback(after_training: str | None = None, *, quiet: bool = False) -> Any:
    """A Keras callback that raises ``KeyboardInterrupt`` at the end of an epoch if a signal
    arrived during training (or its first ``KeyboardInterrupt`` was lost); when training ends,
    a first signal is only noted, saying ``after_training``, if given."""
    import keras

    class InterruptCheck(keras.callbacks.Callback):
        def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
            if _signals.received:
                raise KeyboardInterrupt(f"signal {_signals.received[0]}")

        def on_train_end(self, logs: Any = None) -> None:
            if after_training is not None:
                _defer_interrupts(after_training, quiet=quiet)

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


def _usage_message(error: BaseException) -> str | None:
    """What the command prints for an error in the user's input, or ``None`` for another."""
    if isinstance(error, UsageError):
        return str(error)
    if isinstance(error, FileNotFoundError):
        return f"{_one_line(error)} Check the path."
    if isinstance(error, (IsADirectoryError, PermissionError)):
        return f"cannot open the file: {_one_line(error)}"
    if isinstance(error, ImportError):
        return (f"{_one_line(error)} Install the missing package (for Parquet: "
                "`pip install 'dlstructured[parquet]'`).")
    if isinstance(error, (DLStructuredError, ValueError, TypeError, KeyError)):
        return _one_line(error)
    return None


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
    argv_given = argv
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        args = build_parser().parse_args(argv)
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
        message = _usage_message(error)
        if message is not None:
            console.error(message)
            return EXIT_USAGE
        if is_out_of_memory(error):
            console.error(f"ran out of memory ({type(error).__name__}): the model or a batch does "
                          "not fit; give smaller --hidden-units widths or a smaller --batch-size")
            return EXIT_FAILED
        console.error(f"unexpected {type(error).__name__}: {error} (run again with --debug for "
                      "the traceback, and please report it)")
        return EXIT_FAILED


# --------------------------------------------------------------------------------------------
# The commands
# --------------------------------------------------------------------------------------------


# Options of `train` that only act on hidden layers, so `--model linear` cannot use them.
_HIDDEN_LAYER_OPTIONS = ("hidden_units", "activation", "dropout_rate", "batch_norm")


def _train_config(args: argparse.Namespace, given: set[str]) -> tuple[Any, ...]:
    """(data, target, output folder, RunConfig, backend) of ``train``; resuming, the run's
    config with the flags given applied (the library refuses those that conflict with the run),
    on the run's backend unless ``--backend`` is given."""
    from dlstructured.run import default_out, read_run_record, same_file

    changes = {name: getattr(args, name) for name in given & _CONFIG_FIELDS}
    if args.resume is not None:
        out = Path(args.resume)
        if args.out is not None and not same_file(args.out, out):
            raise UsageError(f"--resume writes into {str(out)!r}, but --out {args.out!r} was "
                             "given; leave --out out")
        record = read_run_record(out)
        return (args.data, args.target, out, record.config.replace(**changes),
                args.backend or record.backend)
    if args.data is None or args.target is None:
        raise UsageError("train needs DATA and --target COL (or --resume DIR to continue a run)")
    unused = [_flag(name) for name in _HIDDEN_LAYER_OPTIONS if name in given
              and getattr(args, name) not in (0, False)]
    if args.model == "linear" and unused:
        raise UsageError(
            f"--model linear has no hidden layer, so {' and '.join(unused)} would do nothing; "
            f"leave {'them' if len(unused) > 1 else 'it'} out, or use --model dense")
    out = Path(args.out) if args.out else default_out(args.data)
    return args.data, args.target, out, RunConfig(**changes), args.backend


def _cmd_train(args: argparse.Namespace, console: _Console) -> int:
    data, target, out, config, backend = _train_config(args, _given_options(args.argv))
    with _keras_backend(backend, hide_extras=args.whole_process):
        _cli_distributed.join(args)
        return _fit(data, target, config, out=out, resume=args.resume is not None,
                    console=console)


def _fit(data: Any, target: Any, config: RunConfig, *, out: Path, resume: bool,
         console: _Console) -> int:
    """Train with ``dlstructured.fit_table``, print the metrics, return the exit status."""
    from dlstructured.run import OUTPUT_FILES, fit_table
    from dlstructured.training.loop import TrainingDivergedWarning, TrainingInterruptedWarning

    if config.patience and config.valid_fraction == 0:
        console.notice("no validation rows (--valid-fraction 0): early stopping is off")
    check = _interrupt_callback("finishing the output files first", quiet=console.quiet)
    with warnings.catch_warnings():
        # The command line reports divergence and interruption itself, with its own advice.
        warnings.simplefilter("ignore", TrainingDivergedWarning)
        warnings.simplefilter("ignore", TrainingInterruptedWarning)
        with _interrupts_deferred("stopping at the end of this epoch", quiet=console.quiet):
            run = fit_table(data, target, config, out=out, resume=resume, callbacks=[check],
                            verbose=0 if console.quiet else 1)
    result = run.result
    console.result(run.metrics_table())
    wrote, rank = f"wrote {', '.join(OUTPUT_FILES)} to {out}", distributed.process_index()
    console.result(f"process {rank} done; process 0 {wrote}" if rank else wrote)
    if result.diverged:
        console.error(f"training diverged at epoch {result.diverged_epoch} (the loss became NaN "
                      "or infinite); the files hold the best weights before it. Lower "
                      "--learning-rate, or add --input-batch-norm / --batch-norm")
        return EXIT_FAILED
    if result.interrupted:
        console.error(f"interrupted after {result.epochs_run} epochs; wrote the model so far")
        return EXIT_INTERRUPTED
    return EXIT_OK


def _cmd_predict(args: argparse.Namespace, console: _Console) -> int:
    from dlstructured import run as runs

    runs.refuse_inputs(args.out, model=args.model, data=args.data)
    streamed = runs.streams(args.data)  # too large for memory: batch by batch
    frame = None if streamed else runs.read_data(args.data, sep=args.sep, encoding=args.encoding)
    with _keras_backend(args.backend, hide_extras=args.whole_process):
        model = runs.load_run_model(args.model)
        if streamed:
            rows = runs.predict_streamed(model, args.data, args.out, proba=args.proba,
                                         sep=args.sep, encoding=args.encoding)
        else:
            predictions = runs.prediction_frame(model, frame, proba=args.proba)
            rows = len(predictions)
    if not streamed:
        runs.write_csv(predictions, args.out)
    if args.out is not None:
        console.notice(f"wrote {rows} predictions to {args.out}")
    return EXIT_OK


def _cmd_evaluate(args: argparse.Namespace, console: _Console) -> int:
    from dlstructured import run as runs

    frame = runs.read_data(args.data, sep=args.sep, encoding=args.encoding)
    runs.require_column(frame, repr(args.data), "target", args.target)
    with _keras_backend(args.backend, hide_extras=args.whole_process):
        metrics = runs.evaluate_on(runs.load_run_model(args.model), frame, args.target)
    width = max((len(name) for name in metrics), default=6)
    print("\n".join(f"{name:<{width}}  {runs.format_number(value)}"
                    for name, value in metrics.items()))
    return EXIT_OK


def _cmd_explain(args: argparse.Namespace, console: _Console) -> int:
    from dlstructured.explain import CHART_FILE, IMPORTANCE_FILE, write_importance
    from dlstructured.run import load_run_model, read_data, refuse_inputs, require_column

    out = Path(args.out)
    for name in (IMPORTANCE_FILE, CHART_FILE):
        refuse_inputs(out / name, advice="give another --out folder", model=args.model,
                      data=args.data)
    frame = read_data(args.data, sep=args.sep, encoding=args.encoding)
    require_column(frame, repr(args.data), "target", args.target)
    with _keras_backend(args.backend, hide_extras=args.whole_process):
        importance = load_run_model(args.model).feature_importance(
            frame, args.target, n_repeats=args.repeats, random_state=args.seed)
    title = f"{Path(args.model).name} on {Path(args.data).name}"
    written = write_importance(importance, out, title=title)
    console.result(importance.to_string(float_format="{:.4f}".format))
    console.result(f"unshuffled {importance.attrs['metric']}: "
                   f"{importance.attrs['baseline']:.4f} on {len(frame)} rows")
    console.result(f"wrote {', '.join(path.name for path in written)} to {out}")
    return EXIT_OK


def _cmd_demo(args: argparse.Namespace, console: _Console) -> int:
    from dlstructured.data.datasets import load_breast_cancer, load_diabetes

    out = Path(args.out)
    config = RunConfig(epochs=args.epochs, seed=args.seed)
    jobs = [("diabetes", load_diabetes, "progression", "regression"),
            ("breast_cancer", load_breast_cancer, "diagnosis", "binary classification")]
    with _keras_backend(args.backend, hide_extras=args.whole_process):
        for name, load, target, what in jobs:
            console.result(f"\n== {name}: {what}, target {target!r}")
            status = _fit(load(), target, config, out=out / name, resume=False, console=console)
            if status != EXIT_OK:
                return status
    curves = [str(out / name / "learning_curves.png") for name, *_ in jobs]
    console.result(f"\nlearning curves: {', '.join(curves)}")
    return EXIT_OK


def _cmd_tune(args: argparse.Namespace, console: _Console) -> int:
    from dlstructured.tuning import INSTALL_HINT

    try:
        import optuna  # noqa: F401
    except ImportError:
        raise UsageError(INSTALL_HINT) from None
    with _keras_backend(args.backend, hide_extras=args.whole_process):
        from dlstructured.tuning import search

        config = RunConfig(epochs=args.epochs, patience=10, sep=args.sep, encoding=args.encoding)
        found = search(args.data, args.target, trials=args.trials, timeout=args.timeout,
                       storage=args.storage, config=config, out=args.out,
                       verbose=0 if args.quiet else 1)
    console.result(f"best {found.best_value:.4g} (trial {found.best_trial}); model: "
                   f"{found.model_path}; pictures: {', '.join(map(str, found.pictures))}")
    return EXIT_OK


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
