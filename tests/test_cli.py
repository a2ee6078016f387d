"""The command line on small real files (CSV and Parquet) made per test.

Most commands run in this process through ``main([...])``; a few run as real subprocesses, for
what only a process shows: signals, the imports of a JAX run, Keras loaded without its extras,
and one end-to-end train, predict and evaluate.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
BACKEND = os.environ.get("KERAS_BACKEND", "jax")
if BACKEND not in ("jax", "tensorflow"):
    BACKEND = "jax"
# Tests whose subprocess does not depend on the session's backend (the command line defaults to
# JAX) run once, in the JAX session of `make test`.
backend_independent = pytest.mark.skipif(
    BACKEND != "jax", reason="does not depend on the backend; runs in the JAX session"
)
# The default model, small: two members, a few epochs.
TINY = ["--epochs", "3", "--hidden-units", "8,8", "--members", "2", "--batch-size", "16",
        "--patience", "0"]


def _env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(SRC), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env.pop("KERAS_BACKEND", None)
    env["PYTHONFAULTHANDLER"] = "1"  # a crash of the command prints its Python stack
    env.update(extra)
    return env


def run_cli(*args: str, cwd: Path, timeout: float = 240, **env: str):
    return subprocess.run(
        [sys.executable, "-m", "dlstructured", *args],
        cwd=cwd,
        env=_env(**env),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def regression_frame(rows: int = 80, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    x1 = rng.uniform(0, 10, rows)
    x2 = rng.normal(size=rows)
    colour = rng.choice(["red", "green", "blue"], rows)
    y = 2.0 * x1 - x2 + np.where(colour == "red", 3.0, 0.0) + rng.normal(scale=0.1, size=rows)
    return pd.DataFrame({"x1": x1, "x2": x2, "colour": colour, "y": y})


def binary_frame(rows: int = 80, seed: int = 1) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    a = rng.normal(size=rows)
    b = rng.normal(size=rows)
    label = np.where(a + b > 0, "good", "bad")
    return pd.DataFrame({"a": a, "b": b, "Class": label})


@pytest.fixture
def wine_csv(tmp_path: Path) -> Path:
    """A regression CSV whose first column numbers the rows under an empty header, as R writes."""
    path = tmp_path / "table.csv"
    frame = regression_frame()
    frame.index = range(1, len(frame) + 1)
    frame.to_csv(path, index=True, index_label="")
    return path


def _run_python(script: str, cwd: Path, **env: str) -> subprocess.CompletedProcess:
    """Run ``python -c script`` with the source tree on the path and ``env`` added."""
    return subprocess.run(
        [sys.executable, "-c", script],
        cwd=cwd,
        env=_env(**env),
        capture_output=True,
        text=True,
        timeout=240,
    )


def main_in_process(capsys, *args: Any) -> subprocess.CompletedProcess:
    """``dlstructured ARGS`` run by ``main`` in this process, reported as a subprocess is."""
    from dlstructured.cli import main

    capsys.readouterr()
    status = main([str(arg) for arg in args])
    captured = capsys.readouterr()
    return subprocess.CompletedProcess(args, status, captured.out, captured.err)


def one_error_line(completed: subprocess.CompletedProcess) -> str:
    lines = [line for line in completed.stderr.splitlines() if line.strip()]
    assert completed.returncode == 2, completed.stderr
    assert len(lines) == 1, completed.stderr
    assert lines[0].startswith("dlstructured: error: "), lines[0]
    assert "Traceback" not in completed.stderr
    return lines[0]


def test_train_predict_evaluate_on_csv(tmp_path: Path, wine_csv: Path) -> None:
    out = tmp_path / "run"
    trained = run_cli(
        "train",
        str(wine_csv),
        "--target",
        "y",
        "--out",
        str(out),
        "--backend",
        BACKEND,
        *TINY,
        cwd=tmp_path,
    )
    assert trained.returncode == 0, trained.stderr
    assert "dropped the first column 'Unnamed: 0'" in trained.stderr
    assert "epoch 1/3" in trained.stderr  # the progress bar, one line per step when not a tty
    assert "val_loss" in trained.stdout and "best (epoch" in trained.stdout

    assert sorted(p.name for p in out.iterdir()) == [
        "checkpoints",
        "history.csv",
        "learning_curves.png",
        "metrics.json",
        "model.keras",
        "run.json",
    ]
    assert (out / "checkpoints" / "best.keras").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".partial")]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["task"] == "regression"
    assert metrics["backend"] == BACKEND
    assert metrics["epochs_run"] == 3
    assert metrics["rows"] == {"train": 64, "valid": 16}  # the default model holds out 20%
    assert metrics["config"]["hidden_units"] == [8, 8]
    assert np.isfinite(metrics["final"]["val_loss"])
    history = pd.read_csv(out / "history.csv")
    assert list(history["epoch"]) == [1, 2, 3]
    assert {"loss", "val_loss"} <= set(history.columns)
    assert (out / "learning_curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    features = regression_frame(seed=5).drop(columns="y")
    features.to_csv(tmp_path / "new.csv", index=False)
    predicted = run_cli(
        "predict",
        str(out / "model.keras"),
        "new.csv",
        "--out",
        "pred.csv",
        "--backend",
        BACKEND,
        cwd=tmp_path,
    )
    assert predicted.returncode == 0, predicted.stderr
    predictions = pd.read_csv(tmp_path / "pred.csv")
    assert list(predictions.columns) == ["prediction"]
    assert len(predictions) == len(features) and predictions["prediction"].notna().all()

    evaluated = run_cli(
        "evaluate",
        str(out / "model.keras"),
        str(wine_csv),
        "--target",
        "y",
        "--backend",
        BACKEND,
        cwd=tmp_path,
    )
    assert evaluated.returncode == 0, evaluated.stderr
    reported = dict(line.split() for line in evaluated.stdout.strip().splitlines())
    assert "mae" in reported and float(reported["mae"]) >= 0


def test_binary_parquet_predict_with_probabilities(tmp_path: Path, capsys, monkeypatch) -> None:
    pytest.importorskip("pyarrow")
    monkeypatch.chdir(tmp_path)
    binary_frame().to_parquet(tmp_path / "ion.parquet")
    trained = main_in_process(
        capsys,
        "train",
        "ion.parquet",
        "--target",
        "Class",
        "--stratify",
        "--quiet",
        "--backend",
        BACKEND,
        *TINY,
    )
    assert trained.returncode == 0, trained.stderr
    assert trained.stdout == ""  # --quiet: no table, no progress, no notices of ours
    assert "dlstructured:" not in trained.stderr and "epoch" not in trained.stderr
    model = tmp_path / "runs" / "ion" / "model.keras"  # the default output folder
    assert json.loads(model.with_name("metrics.json").read_text())["task"] == "binary"

    predicted = main_in_process(capsys, "predict", model, "ion.parquet", "--proba",
                                "--backend", BACKEND)
    assert predicted.returncode == 0, predicted.stderr
    lines = predicted.stdout.strip().splitlines()
    assert lines[0].split(",")[0] == "prediction" and len(lines) == 81
    rows = [line.split(",") for line in lines[1:]]
    assert {row[0] for row in rows} <= {"good", "bad"}
    assert all(0.0 <= float(row[-1]) <= 1.0 for row in rows)


@backend_independent
def test_jax_backend_never_imports_tensorflow(tmp_path: Path) -> None:
    regression_frame().to_csv(tmp_path / "t.csv", index=False)
    script = (
        "import sys\n"
        "from dlstructured.cli import main\n"
        "code = main(['train', 't.csv', '--target', 'y', '--out', 'run', '--quiet',"
        " '--epochs', '1', '--hidden', '4'])\n"
        "code = code or main(['predict', 'run/model.keras', 't.csv', '--out', 'p.csv'])\n"
        "print('tensorflow imported:', 'tensorflow' in sys.modules)\n"
        "import keras\n"
        "from keras.src.wrappers import fixes\n"
        "print('backend:', keras.backend.backend())\n"
        "print('keras saw scikit-learn:', fixes.sklearn is not None)\n"
        "sys.exit(code)\n"
    )
    # KERAS_BACKEND=tensorflow in the environment: the command line still defaults to JAX.
    completed = _run_python(script, tmp_path, KERAS_BACKEND="tensorflow")
    assert completed.returncode == 0, completed.stderr
    assert "tensorflow imported: False" in completed.stdout
    assert "backend: jax" in completed.stdout
    # Called inside a program, the command imports Keras as that program would: with its
    # scikit-learn extras (only the `dlstructured` program itself leaves them out).
    assert "keras saw scikit-learn: True" in completed.stdout


@backend_independent
def test_keras_loads_without_its_optional_extras_and_they_still_import_later(tmp_path):
    # Keras imports scikit-learn and matplotlib when they are installed; the command line hides
    # them while Keras loads (seconds of start-up), and imports them later as usual: the
    # learning-curve plot is drawn and scikit-learn's data load.
    regression_frame().to_csv(tmp_path / "t.csv", index=False)
    script = (
        "import sys\n"
        "from dlstructured import cli\n"
        "cli._import_keras_without_extras()\n"
        "print('extras with keras:', sorted(m for m in ('sklearn', 'matplotlib') if m in "
        "sys.modules), 'keras' in sys.modules)\n"
        "code = cli.main(['train', 't.csv', '--target', 'y', '--out', 'run', '--quiet',"
        " '--epochs', '1', '--hidden', '4'])\n"
        "from dlstructured.data.datasets import load_diabetes\n"
        "print('diabetes rows:', len(load_diabetes()))\n"
        "sys.exit(code)\n"
    )
    completed = _run_python(script, tmp_path, KERAS_BACKEND="jax")
    assert completed.returncode == 0, completed.stderr
    assert "extras with keras: [] True" in completed.stdout
    assert "diabetes rows: 442" in completed.stdout
    assert (tmp_path / "run" / "learning_curves.png").stat().st_size > 1000


def test_chosen_metrics_are_what_the_run_reports(tmp_path: Path, capsys, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    binary_frame().to_csv(tmp_path / "ion.csv", index=False)
    common = ("--target", "Class", "--quiet", "--backend", BACKEND, *TINY)
    trained = main_in_process(
        capsys, "train", "ion.csv", "--metrics", "binary_accuracy", "--out", "one", *common
    )
    assert trained.returncode == 0, trained.stderr
    summary = json.loads((tmp_path / "one" / "metrics.json").read_text())
    assert sorted(summary["final"]) == [
        "binary_accuracy", "loss", "val_binary_accuracy", "val_loss"
    ]
    assert json.loads((tmp_path / "one" / "run.json").read_text())["config"]["metrics"] == [
        "binary_accuracy"
    ]
    bare = main_in_process(capsys, "train", "ion.csv", "--metrics", "none", "--out", "two",
                           *common)
    assert bare.returncode == 0, bare.stderr
    summary = json.loads((tmp_path / "two" / "metrics.json").read_text())
    assert sorted(summary["final"]) == ["loss", "val_loss"]


@backend_independent
@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["train", "missing.csv", "--target", "y"], "No such data file"),
        (["train", "t.csv", "--target", "price"], "column 'price' (--target) is not in"),
        (["train", "t.csv", "--target", "y", "--group-by", "shop"], "(--group-by)"),
        (["train", "garbage.csv", "--target", "y"], "Could not read"),
        (["train", "folder", "--target", "y"], "holds no Parquet file"),
        (["train", "t.csv", "--target", "y", "--epochs", "-1"], "argument --epochs"),
        (["train", "t.csv", "--target", "y", "--dropout", "1.5"], "argument --dropout-rate"),
        (["train", "t.csv", "--target", "y", "--dropout-rate", "1"], "`dropout_rate` must be"),
        (["train", "t.csv", "--target", "y", "--hidden", "64,x"], "argument --hidden-units"),
        (["train", "t.csv", "--target", "y", "--hidden-units", "0"], "argument --hidden-units"),
        (["train", "t.csv", "--target", "y", "--model", "huge"], "argument --model"),
        (["train", "t.csv", "--target", "y", "--valid-fraction", "1"], "--valid-fraction"),
        (["train", "t.csv"], "--target"),
        (["train", "t.csv", "--target", "y", "--metrics", "mae,"], "argument --metrics"),
        (["train", "t.csv", "--target", "y", "--metrics", "accuracy"], "bad --metrics"),
        (["train", "t.csv", "--target", "y", "--metrics", "wiggle"], "'wiggle'"),
        (["predict", "missing.keras", "t.csv"], "no model file"),
        (["predict", "fake.keras", "t.csv"], "cannot load the model"),
    ],
)
def test_bad_input_prints_one_line_and_exits_2(tmp_path, capsys, monkeypatch, args, expected):
    monkeypatch.chdir(tmp_path)
    regression_frame(rows=10).to_csv(tmp_path / "t.csv", index=False)
    (tmp_path / "garbage.csv").write_bytes(b"\xff\xfe\x00\x81\x82" * 50)
    (tmp_path / "folder").mkdir()
    (tmp_path / "fake.keras").write_text("not a zip file")
    line = one_error_line(main_in_process(capsys, *args))
    assert expected in line


@backend_independent
def test_debug_shows_the_traceback(tmp_path: Path, capsys) -> None:
    completed = main_in_process(capsys, "train", tmp_path / "missing.csv", "--target", "y",
                                "--debug")
    assert completed.returncode == 2
    assert "Traceback" in completed.stderr
    assert completed.stderr.rstrip().splitlines()[-1].startswith("dlstructured: error: ")


def test_bad_activation_is_a_usage_error(tmp_path: Path, capsys, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    regression_frame(rows=20).to_csv(tmp_path / "t.csv", index=False)
    line = one_error_line(
        main_in_process(capsys, "train", "t.csv", "--target", "y", "--activation", "wiggle", *TINY)
    )
    assert "activation" in line and "wiggle" in line
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").rglob("*.keras"))


def test_sigterm_writes_what_was_trained_and_exits_130(tmp_path: Path) -> None:
    regression_frame().to_csv(tmp_path / "t.csv", index=False)
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "dlstructured",
            "train",
            "t.csv",
            "--target",
            "y",
            "--out",
            "run",
            "--epochs",
            "100000",
            "--hidden-units",
            "8",
            "--patience",
            "0",
            "--backend",
            BACKEND,
        ],
        cwd=tmp_path,
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    seen: list[str] = []
    try:
        for line in process.stderr:  # the progress bar prints epoch 1 first: training has begun
            seen.append(line)
            if re.match(r"epoch +1/100000", line):
                break
        assert re.match(r"epoch +1/100000", seen[-1] if seen else ""), "".join(seen)
        time.sleep(0.5)
        process.send_signal(signal.SIGTERM)
        stdout, stderr = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 130, "".join(seen) + stderr
    assert "interrupted after" in stderr
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["interrupted"] is True and 1 <= metrics["epochs_run"] < 100000
    assert (tmp_path / "run" / "model.keras").stat().st_size > 0
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".partial")]


@pytest.mark.slow
def test_demo_trains_both_models(tmp_path: Path, capsys) -> None:
    completed = main_in_process(capsys, "demo", "--out", tmp_path / "demo", "--epochs", "2",
                                "--backend", BACKEND)
    assert completed.returncode == 0, completed.stderr
    for name, task in (("diabetes", "regression"), ("breast_cancer", "binary")):
        folder = tmp_path / "demo" / name
        assert json.loads((folder / "metrics.json").read_text())["task"] == task
        assert (folder / "learning_curves.png").stat().st_size > 0
    assert "val_binary_accuracy" in completed.stdout


@backend_independent
def test_docstring_examples_of_the_command_line_modules(capsys) -> None:
    import doctest

    import dlstructured.cli
    import dlstructured.data.datasets
    import dlstructured.run

    for module in (dlstructured.cli, dlstructured.data.datasets, dlstructured.run):
        failed, attempted = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
        assert attempted > 0 and failed == 0, module.__name__


def test_interrupted_run_resumes_to_the_full_epoch_count(tmp_path: Path) -> None:
    regression_frame().to_csv(tmp_path / "t.csv", index=False)
    epochs = 3000
    process = subprocess.Popen(
        [sys.executable, "-m", "dlstructured", "train", "t.csv", "--target", "y", "--out", "run",
         "--epochs", str(epochs), "--hidden-units", "8", "--patience", "0", "--backend", BACKEND],
        cwd=tmp_path, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    seen: list[str] = []
    try:
        for line in process.stderr:
            seen.append(line)
            if re.match(rf"epoch +1/{epochs}", line):
                break
        time.sleep(0.3)
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 130, "".join(seen) + stderr
    run = tmp_path / "run"
    assert (run / "metrics.json").exists(), "".join(seen) + stderr
    first = json.loads((run / "metrics.json").read_text())
    assert first["interrupted"] is True and first["epochs_run"] < epochs
    assert (run / "run.json").exists() and (run / "checkpoints" / "checkpoint.json").exists()

    resumed = run_cli("train", "--resume", "run", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["interrupted"] is False and metrics["epochs_run"] == epochs
    assert len(pd.read_csv(run / "history.csv")) == epochs


def _sigterm_self() -> None:
    """Send SIGTERM to this process and give Python the bytecodes in which it runs the handler."""
    os.kill(os.getpid(), signal.SIGTERM)
    for _ in range(10_000):
        pass


def test_an_interrupt_python_loses_is_raised_again_at_the_end_of_the_epoch(monkeypatch):
    # Python raises a signal's KeyboardInterrupt wherever the main thread is; inside a __del__
    # method it is printed as "Exception ignored" and lost, and training would run on.
    from dlstructured import cli, linear_unit, train
    from dlstructured.training.loop import TrainingInterruptedWarning

    lost: list[type] = []
    monkeypatch.setattr(sys, "unraisablehook", lambda info: lost.append(info.exc_type))

    class Collected:
        def __del__(self):
            _sigterm_self()  # Python runs the handler here, inside __del__

    x = np.linspace(-1, 1, 32, dtype="float32").reshape(-1, 1)
    before = signal.getsignal(signal.SIGTERM)
    with cli._sigterm_raises_interrupt():
        Collected()
        assert lost == [KeyboardInterrupt]
        with pytest.warns(TrainingInterruptedWarning):
            result = train(
                linear_unit(1, seed=0), x, 2 * x[:, 0], epochs=50, seed=0,
                callbacks=[cli._interrupt_callback()],
            )
    assert result.interrupted and result.epochs_run == 1
    assert signal.getsignal(signal.SIGTERM) is before


@pytest.mark.parametrize(("signals", "epochs_run"), [(1, 3), (2, 2)])
def test_during_training_one_signal_stops_at_the_epoch_end_and_a_second_at_once(
    signals, epochs_run, capfd
):
    # A KeyboardInterrupt raised wherever the backend's code is could leave it inconsistent;
    # the first signal only asks training to stop when the epoch is over.
    import keras

    from dlstructured import cli, linear_unit, train
    from dlstructured.training.loop import TrainingInterruptedWarning

    class SignalsInEpoch3(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            if epoch == 2:
                for _ in range(signals):
                    _sigterm_self()

    x = np.linspace(-1, 1, 32, dtype="float32").reshape(-1, 1)
    deferred = cli._interrupts_deferred("stopping at the end of this epoch", quiet=False)
    with cli._sigterm_raises_interrupt(), deferred:
        with pytest.warns(TrainingInterruptedWarning):
            result = train(
                linear_unit(1, seed=0), x, 2 * x[:, 0], epochs=50, seed=0,
                callbacks=[SignalsInEpoch3(), cli._interrupt_callback()],
            )
    assert result.interrupted and result.epochs_run == epochs_run
    assert result.interrupted_epoch == 3
    assert "stopping at the end of this epoch" in capfd.readouterr().err


def test_a_first_signal_is_only_noted_inside_a_deferred_stretch_and_raises_outside(capfd):
    from dlstructured import cli

    with cli._sigterm_raises_interrupt():
        with cli._interrupts_deferred("finishing the output files first", quiet=True):
            _sigterm_self()  # noted, nothing raised, nothing said (quiet)
            with pytest.raises(KeyboardInterrupt):
                _sigterm_self()
        assert capfd.readouterr().err == ""
        with pytest.raises(KeyboardInterrupt):
            _sigterm_self()
        assert len(cli._signals.received) == 3


def test_resume_needs_a_folder_started_by_train(tmp_path: Path, capsys) -> None:
    (tmp_path / "empty").mkdir()
    line = one_error_line(main_in_process(capsys, "train", "--resume", tmp_path / "empty"))
    assert "--resume" in line and "has no run.json" in line and "--out folder" in line
    assert "--target" in one_error_line(main_in_process(capsys, "train"))


@backend_independent
def test_old_flags_are_aliases_of_the_python_names() -> None:
    from dlstructured.cli import build_parser

    parse = build_parser().parse_args
    old = parse(["train", "t.csv", "--target", "y", "--hidden", "4,4", "--dropout", "0.25"])
    new = parse(["train", "t.csv", "--target", "y", "--hidden-units", "4,4",
                 "--dropout-rate", "0.25"])
    assert (old.hidden_units, old.dropout_rate) == (new.hidden_units, new.dropout_rate)
    assert (new.hidden_units, new.dropout_rate) == ((4, 4), 0.25)
    assert not hasattr(new, "hidden") and not hasattr(new, "dropout")


@backend_independent
def test_every_run_config_field_is_a_train_flag_with_its_default() -> None:
    import dataclasses

    from dlstructured import RunConfig
    from dlstructured.cli import build_parser

    args = vars(build_parser().parse_args(["train", "t.csv", "--target", "y"]))
    fields = {item.name for item in dataclasses.fields(RunConfig)}
    assert fields <= set(args)
    assert RunConfig(**{name: args[name] for name in fields}) == RunConfig()


def test_command_line_code_stays_a_thin_shell() -> None:
    modules = [path for path in SRC.rglob("*.py") if "cli" in str(path.relative_to(SRC))]
    assert sum(len(path.read_text().splitlines()) for path in modules) <= 800
