"""The command line on messy tables (issue 15): no input overwritten, no notice hidden, no run
resumed on other data or options, no model file it did not write, no metric that means nothing.

The commands run in-process through ``dlstructured.cli.main`` on tiny real files; the trained
models are real Keras models saved by ``dlstructured train``.
"""

from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path

import keras
import numpy as np
import pandas as pd
import pytest

import dlstructured
from dlstructured.cli import _one_line, main
from dlstructured.errors import is_out_of_memory
from dlstructured.models.builders import MAX_PARAMETERS
from dlstructured.run import positive_label_of
from dlstructured.tasks import as_metric_objects

# The course's model trains fastest; these tests are about the data, not the model.
TINY = ["--model", "dense", "--epochs", "2", "--hidden-units", "4", "--batch-size", "16",
        "--patience", "0"]


def regression_frame(rows: int = 40, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    x1 = rng.uniform(0, 10, rows)
    x2 = rng.normal(size=rows)
    return pd.DataFrame({"x1": x1, "x2": x2, "y": 2.0 * x1 - x2})


def binary_frame(rows: int = 40, seed: int = 1) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    a = rng.normal(size=rows)
    b = rng.normal(size=rows)
    return pd.DataFrame({"a": a, "b": b, "Class": np.where(a + b > 0, "good", "bad")})


def run(capsys, *args: str) -> tuple[int, str, str]:
    """``dlstructured ARGS`` in this process: (exit status, stdout, stderr)."""
    capsys.readouterr()
    status = main([str(arg) for arg in args])
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def error_line(capsys, *args: str) -> str:
    """The one error line of a command that must exit with status 2."""
    status, _, err = run(capsys, *args)
    lines = [line for line in err.splitlines() if line.strip()]
    assert status == 2, err
    assert len(lines) == 1, err
    assert lines[0].startswith("dlstructured: error: "), lines[0]
    return lines[0]


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """A folder holding a trained binary run (``run/model.keras``) and its data ``ion.csv``."""
    folder = tmp_path_factory.mktemp("trained")
    binary_frame().to_csv(folder / "ion.csv", index=False)
    status = main(["train", str(folder / "ion.csv"), "--target", "Class", "--quiet",
                   "--out", str(folder / "run"), *TINY])
    assert status == 0
    return folder


# ---------------------------------------------------------------------------------------------
# 2. Output paths never replace an input


@pytest.mark.parametrize("which", ["model", "data", "symlink to data", "hard link to model"])
def test_predict_refuses_an_out_that_is_one_of_its_inputs(capsys, trained, tmp_path, which):
    model, data = trained / "run" / "model.keras", trained / "ion.csv"
    out = {"model": model, "data": data}.get(which)
    if which == "symlink to data":
        out = tmp_path / "preds.csv"
        out.symlink_to(data)
    elif which == "hard link to model":
        out = tmp_path / "preds.csv"
        os.link(model, out)
    before = (model.read_bytes(), data.read_bytes())
    line = error_line(capsys, "predict", model, data, "--out", out)
    assert "--out" in line and "would replace" in line
    assert (model.read_bytes(), data.read_bytes()) == before


def test_train_refuses_an_out_folder_whose_files_would_replace_the_data(capsys, tmp_path):
    folder = tmp_path / "run"
    folder.mkdir()
    data = folder / "history.csv"  # the name of a file train writes
    regression_frame().to_csv(data, index=False)
    before = data.read_bytes()
    line = error_line(capsys, "train", data, "--target", "y", "--out", folder, *TINY)
    assert "would overwrite the data file" in line and "history.csv" in line
    assert data.read_bytes() == before
    assert sorted(p.name for p in folder.iterdir()) == ["history.csv"]


# ---------------------------------------------------------------------------------------------
# 3. Data notices on the command line, and the flags their advice names


def messy_frame(rows: int = 40) -> pd.DataFrame:
    frame = regression_frame(rows)
    frame["const"] = 7.0
    frame["user"] = [f"user-{i:03d}" for i in range(rows)]
    frame.loc[3, "y"] = np.nan
    return frame


def test_train_prints_each_data_notice_by_default_and_quiet_hides_them(capsys, tmp_path):
    messy_frame().to_csv(tmp_path / "messy.csv", index=False)
    status, _, err = run(capsys, "train", tmp_path / "messy.csv", "--target", "y",
                         "--out", tmp_path / "a", *TINY)
    assert status == 0, err
    notices = [line for line in err.splitlines() if line.startswith("dlstructured: warning: ")]
    assert any("'const'" in line for line in notices), err
    assert any("'user'" in line for line in notices), err
    assert any("missing" in line.lower() for line in notices), err
    assert "(2 features" in err
    status, _, err = run(capsys, "train", tmp_path / "messy.csv", "--target", "y",
                         "--out", tmp_path / "b", "--quiet", *TINY)
    assert status == 0
    assert "warning" not in err


def test_predict_notices_the_columns_it_ignores(capsys, trained, tmp_path):
    frame = binary_frame(rows=5).drop(columns="Class").assign(extra=1.0)
    frame.to_csv(tmp_path / "new.csv", index=False)
    status, out, err = run(capsys, "predict", trained / "run" / "model.keras", tmp_path / "new.csv")
    assert status == 0, err
    assert "dlstructured: warning:" in err and "'extra'" in err
    assert len(out.splitlines()) == 6


def test_drop_and_kinds_leave_columns_out_without_a_notice(capsys, tmp_path):
    messy_frame().to_csv(tmp_path / "messy.csv", index=False)
    status, _, err = run(capsys, "train", tmp_path / "messy.csv", "--target", "y",
                         "--drop", "const", "--kinds", "user=ignore,x2=ignore",
                         "--out", tmp_path / "run", *TINY)
    assert status == 0, err
    assert "'const'" not in err and "'user'" not in err
    options = json.loads((tmp_path / "run" / "run.json").read_text())["config"]
    assert options["drop"] == ["const"]
    assert options["kinds"] == {"user": "ignore", "x2": "ignore"}
    assert "(1 features" in err  # x1 alone


@pytest.mark.parametrize(
    ("flag", "value", "expected"),
    [
        ("--drop", "nope", "column 'nope' (--drop) is not in"),
        ("--drop", "y", "--drop names the target column 'y'"),
        ("--kinds", "nope=numeric", "column 'nope' (--kinds) is not in"),
        ("--kinds", "x1=wobbly", "argument --kinds"),
        ("--kinds", "x1", "argument --kinds"),
    ],
)
def test_bad_drop_and_kinds_name_the_flag(capsys, tmp_path, flag, value, expected):
    regression_frame().to_csv(tmp_path / "t.csv", index=False)
    line = error_line(capsys, "train", tmp_path / "t.csv", "--target", "y", flag, value,
                      "--out", tmp_path / "run", *TINY)
    assert expected in line
    assert not (tmp_path / "run").exists()


def test_positive_label_is_matched_as_text_against_any_label_type():
    numbers = pd.DataFrame({"t": [0, 1, 1, 0]})
    assert positive_label_of(numbers, "t", "0") == 0
    assert positive_label_of(numbers, "t", "1.0") == 1
    flags = pd.DataFrame({"t": [True, False, True]})
    assert positive_label_of(flags, "t", "true") is True
    assert positive_label_of(flags, "t", "False") is False
    words = pd.DataFrame({"t": ["yes", "no"]})
    assert positive_label_of(words, "t", "yes") == "yes"
    assert positive_label_of(words, "t", None) is None


def test_positive_label_decides_which_class_is_one(capsys, tmp_path):
    frame = binary_frame()
    frame["Class"] = (frame["Class"] == "good").astype(int)
    frame.to_csv(tmp_path / "ion.csv", index=False)
    status, _, err = run(capsys, "train", tmp_path / "ion.csv", "--target", "Class",
                         "--positive-label", "0", "--out", tmp_path / "run", *TINY)
    assert status == 0, err
    model = dlstructured.load_model(tmp_path / "run" / "model.keras")
    assert model.classes[-1] == 0  # the positive class comes last
    line = error_line(capsys, "train", tmp_path / "ion.csv", "--target", "Class",
                      "--positive-label", "maybe", "--out", tmp_path / "other", *TINY)
    assert "--positive-label 'maybe' is not a label of the target 'Class'" in line


def test_sep_and_encoding_read_a_semicolon_latin1_csv(capsys, tmp_path):
    frame = regression_frame()
    frame["town"] = np.where(frame["x1"] > 5, "Zürich", "Genève")
    frame.to_csv(tmp_path / "euro.csv", sep=";", encoding="latin-1", index=False)
    status, _, err = run(capsys, "train", tmp_path / "euro.csv", "--target", "y", "--sep", ";",
                         "--encoding", "latin-1", "--out", tmp_path / "run", *TINY)
    assert status == 0, err
    assert "(4 features" in err  # x1, x2 and two one-hot columns of town
    status, out, err = run(capsys, "predict", tmp_path / "run" / "model.keras",
                           tmp_path / "euro.csv", "--sep", ";", "--encoding", "latin-1")
    assert status == 0, err
    assert len(out.splitlines()) == len(frame) + 1


# ---------------------------------------------------------------------------------------------
# 6. predict and evaluate load only models the library wrote


def test_predict_refuses_a_plain_keras_model(capsys, trained, tmp_path):
    inputs = keras.Input(shape=(2,))
    keras.Model(inputs, keras.layers.Dense(1)(inputs)).save(tmp_path / "plain.keras")
    line = error_line(capsys, "predict", tmp_path / "plain.keras", trained / "ion.csv")
    assert "is a plain Keras model" in line
    assert "`dlstructured train` or `TabularModel.save`" in line
    line = error_line(capsys, "evaluate", tmp_path / "plain.keras", trained / "ion.csv",
                      "--target", "Class")
    assert "is a plain Keras model" in line


def test_predict_says_what_a_folder_given_as_model_is(capsys, trained):
    line = error_line(capsys, "predict", trained / "run" / "checkpoints", trained / "ion.csv")
    assert "is a checkpoint folder of a training run" in line
    assert str(trained / "run" / "model.keras") in line
    line = error_line(capsys, "predict", trained / "run", trained / "ion.csv")
    assert "is the output folder of a training run" in line


# ---------------------------------------------------------------------------------------------
# 7 and 8. --resume refuses what conflicts with the run, and data that changed


@pytest.fixture
def finished_run(capsys, tmp_path) -> tuple[Path, Path]:
    """A regression run of 2 epochs: (its data, its output folder)."""
    data = tmp_path / "t.csv"
    regression_frame().to_csv(data, index=False)
    status, _, err = run(capsys, "train", data, "--target", "y", "--out", tmp_path / "run",
                         "--quiet", *TINY)
    assert status == 0, err
    return data, tmp_path / "run"


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        (["--task", "binary"], "--resume with --task binary: the run in .* without --task;"),
        (["--hidden", "8,8"],
         "--resume with --hidden-units 8,8: .* started with --hidden-units 4;"),
        (["--epochs", "1"], "--resume with --epochs 1: .* with --epochs 2;"),
        (["--batch-norm"], "--resume with --batch-norm: .* without --batch-norm;"),
        (["--drop", "x2"], "--resume with --drop x2: .* without --drop;"),
        (["--target", "x1"], "--target 'x1' differs"),
        (["other.csv"], "but DATA"),
        (["--out", "elsewhere"], "--resume writes into"),
    ],
)
def test_resume_refuses_options_that_conflict_with_the_run(capsys, finished_run, given, expected):
    data, out = finished_run
    line = error_line(capsys, "train", *given, "--resume", out)
    assert re.search(expected, line), line


def test_resume_accepts_equal_options_and_a_larger_epochs_extends_the_run(capsys, finished_run):
    data, out = finished_run
    status, _, err = run(capsys, "train", data, "--target", "y", "--hidden", "4", "--epochs",
                         "2", "--resume", out, "--quiet")
    assert status == 0, err
    status, _, err = run(capsys, "train", "--hidden-units", "4", "--resume", out, "--quiet")
    assert status == 0, err
    assert json.loads((out / "metrics.json").read_text())["epochs_run"] == 2
    status, _, err = run(capsys, "train", "--epochs", "3", "--resume", out, "--quiet")
    assert status == 0, err
    assert json.loads((out / "metrics.json").read_text())["epochs_run"] == 3
    assert json.loads((out / "run.json").read_text())["config"]["epochs"] == 3


def test_resume_refuses_data_that_changed_since_the_run_started(capsys, finished_run):
    data, out = finished_run
    regression_frame(rows=30).to_csv(data, index=False)
    line = error_line(capsys, "train", "--resume", out)
    assert f"the data {str(data.resolve())!r} changed" in line and "rows 40 -> 30" in line
    frame = regression_frame()
    frame["y"] *= 100
    frame.to_csv(data, index=False)
    line = error_line(capsys, "train", "--resume", out)
    assert "(content changed)" in line


def test_resume_of_a_run_without_fingerprint_goes_on_with_a_notice(capsys, finished_run):
    data, out = finished_run
    record = json.loads((out / "run.json").read_text())
    options = record.pop("config")
    for name in ("config_version", "kinds", "drop", "positive_label", "sep", "encoding"):
        del options[name]  # as 0.1.0 wrote it: its command-line names, no fingerprint
    options["hidden"], options["dropout"] = options.pop("hidden_units"), options.pop("dropout_rate")
    del record["format_version"], record["fingerprint"]
    (out / "run.json").write_text(json.dumps({**record, "options": options}))
    status, _, err = run(capsys, "train", "--resume", out)
    assert status == 0, err
    assert "holds no fingerprint of the data" in err


# ---------------------------------------------------------------------------------------------
# 9. evaluate names the column the user gave


def test_evaluate_names_the_target_column_given(capsys, trained, tmp_path):
    frame = binary_frame(rows=6).drop(columns="Class")
    frame["color"] = ["red", "good", "bad", "good", "bad", "red"]
    frame.to_csv(tmp_path / "other.csv", index=False)
    line = error_line(capsys, "evaluate", trained / "run" / "model.keras",
                      tmp_path / "other.csv", "--target", "color")
    assert "'color'" in line and "red" in line
    assert "column 'Class'" not in line


# ---------------------------------------------------------------------------------------------
# 11. Metrics, model options, sizes, failed runs, numbers


def test_metrics_that_do_not_fit_the_task_are_refused():
    with pytest.raises(ValueError, match="'auc', a metric for a classification task.*regression"):
        as_metric_objects(["auc"], "regression")
    with pytest.raises(ValueError, match="'mae', a metric for a binary or regression task"):
        as_metric_objects(["mae"], "multiclass")
    with pytest.raises(ValueError, match="'sparse_categorical_accuracy'.*binary"):
        as_metric_objects(["sparse_categorical_accuracy"], "binary")
    with pytest.raises(ValueError, match="'binary_accuracy'.*multiclass"):
        as_metric_objects(["binary_accuracy"], "multiclass")
    with pytest.raises(ValueError, match="'my_auc', a metric for a classification task"):
        as_metric_objects([keras.metrics.AUC(name="my_auc")], "regression")
    assert [m.name for m in as_metric_objects(["mse", "auc"], "binary")] == ["mse", "auc"]
    assert [m.name for m in as_metric_objects(["mae", "r2_score"], "regression")] == [
        "mae", "r2_score"
    ]


def test_auc_on_a_regression_run_is_an_error_and_leaves_no_folder(capsys, tmp_path):
    regression_frame().to_csv(tmp_path / "t.csv", index=False)
    line = error_line(capsys, "train", tmp_path / "t.csv", "--target", "y", "--metrics", "auc",
                      "--out", tmp_path / "new" / "run", *TINY)
    assert "bad --metrics" in line and "'auc'" in line and "regression" in line
    assert not (tmp_path / "new" / "run").exists()


def test_a_failed_run_keeps_a_folder_that_existed_before(capsys, tmp_path):
    regression_frame().to_csv(tmp_path / "t.csv", index=False)
    (tmp_path / "mine").mkdir()
    error_line(capsys, "train", tmp_path / "t.csv", "--target", "y", "--metrics", "auc",
               "--out", tmp_path / "mine", *TINY)
    assert (tmp_path / "mine").is_dir()


@pytest.mark.parametrize(
    "given", [["--hidden-units", "8,8"], ["--dropout-rate", "0.5"], ["--batch-norm"],
              ["--activation", "elu"]]
)
def test_linear_model_refuses_hidden_layer_options(capsys, tmp_path, given):
    regression_frame().to_csv(tmp_path / "t.csv", index=False)
    line = error_line(capsys, "train", tmp_path / "t.csv", "--target", "y", "--model", "linear",
                      *given, "--out", tmp_path / "run")
    assert f"--model linear has no hidden layer, so {given[0]} would do nothing" in line


def test_builders_refuse_a_network_too_large_to_allocate():
    started = time.perf_counter()
    with pytest.raises(ValueError, match=r"`hidden_units` asks for a network of about 1e\+16"):
        dlstructured.dense_stack(4, hidden_units=(10**8, 10**8))
    with pytest.raises(ValueError, match="hidden_units=.100000000,"):
        dlstructured.binary_classifier(10**4, hidden_units=(10**8,))
    assert time.perf_counter() - started < 5
    # At the bound itself the network builds (no weight is allocated until then):
    # 1 input -> units -> 1 output has 3 * units + 1 weights.
    units = (MAX_PARAMETERS - 1) // 3
    with pytest.raises(ValueError, match="hidden_units"):
        dlstructured.dense_stack(1, hidden_units=(units + 1,))


def test_train_with_a_huge_hidden_layer_names_the_flag(capsys, tmp_path):
    regression_frame().to_csv(tmp_path / "t.csv", index=False)
    started = time.perf_counter()
    line = error_line(capsys, "train", tmp_path / "t.csv", "--target", "y",
                      "--hidden", "100000000,100000000", "--batch-size", "1",
                      "--out", tmp_path / "run")
    assert "cannot build the model: --hidden-units asks for a network" in line
    assert time.perf_counter() - started < 30
    assert not (tmp_path / "run").exists()


def test_train_refuses_a_wide_layer_whose_batch_cannot_fit_in_memory(capsys, tmp_path):
    regression_frame().to_csv(tmp_path / "t.csv", index=False)
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    width = memory // (2 * 4 * 256) + 1  # weights 3 * width: far under the builders' bound
    line = error_line(capsys, "train", tmp_path / "t.csv", "--target", "y", "--hidden",
                      str(width), "--batch-size", "256", "--out", tmp_path / "run")
    assert f"--hidden-units {width} with --batch-size 256 needs about" in line
    assert not (tmp_path / "run").exists()


def test_out_of_memory_errors_are_recognised():
    assert is_out_of_memory(MemoryError())
    assert is_out_of_memory(RuntimeError("RESOURCE_EXHAUSTED: Out of memory allocating 114 GB"))
    assert not is_out_of_memory(RuntimeError("shapes do not match"))


def test_numbers_in_messages_print_plainly(capsys, tmp_path):
    assert _one_line("value np.float64(5.217) and np.int64(3)") == "value 5.217 and 3"
    frame = regression_frame()
    frame["y"] = 5.217
    frame.to_csv(tmp_path / "t.csv", index=False)
    line = error_line(capsys, "train", tmp_path / "t.csv", "--target", "y", "--out",
                      tmp_path / "run", *TINY)
    assert "5.217" in line and "np.float64" not in line
