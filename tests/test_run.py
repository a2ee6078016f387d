"""fit_table, Run and resume_run: a whole training run from Python, as the command line does it.

Tiny real tables (made here), real Keras models, real folders in tmp_path.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import keras
import numpy as np
import pandas as pd
import pytest

import dlstructured
from conftest import expect_warning
from dlstructured import DataError, DataWarning, RunConfig, RunError, fit_table, resume_run
from dlstructured.cli import main
from dlstructured.errors import message_for_command_line
from dlstructured.run import OUTPUT_FILES, read_run_record

FIXTURE_RUN = Path(__file__).parent / "fixtures" / "v0_1_0" / "run"
# The course's model: its runs extend exactly (no schedule), which the resume tests rely on.
TINY = RunConfig(model="dense", hidden_units=(8,), epochs=2, batch_size=16, patience=0)
FILES = sorted([*OUTPUT_FILES, "checkpoints"])


def table(rows: int = 40, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    x1 = rng.uniform(0, 10, rows)
    x2 = rng.normal(size=rows)
    return pd.DataFrame({"x1": x1, "x2": x2, "y": 2.0 * x1 - x2})


@pytest.fixture
def csv(tmp_path: Path) -> Path:
    path = tmp_path / "t.csv"
    table().to_csv(path, index=False)
    return path


def test_fit_table_on_a_dataframe_returns_plain_data_and_the_trained_model():
    run = fit_table(table(), "y", TINY)
    assert isinstance(run, dlstructured.Run)
    assert isinstance(run.model, dlstructured.TabularModel)
    assert (run.task, run.rows, run.num_features) == ("regression", {"train": 28, "valid": 12}, 2)
    assert run.config == TINY and run.data is None and run.target == "y"
    assert run.backend == keras.backend.backend()
    assert list(run.result.history.index) == [1, 2]
    assert run.model.predict(table(rows=5, seed=3).drop(columns="y")).shape == (5,)
    summary = run.summary()
    assert summary["config"] == TINY.to_dict() and summary["epochs_run"] == 2
    assert summary["final"]["val_loss"] == pytest.approx(run.result.final_metrics["val_loss"])
    json.dumps(summary, allow_nan=False)  # plain JSON values


def test_fit_table_on_a_csv_path_with_out_writes_the_run_folder(tmp_path, csv):
    out = tmp_path / "run"
    run = fit_table(csv, "y", TINY, out=out)
    assert sorted(p.name for p in out.iterdir()) == FILES
    assert json.loads((out / "metrics.json").read_text()) == run.summary()
    history = pd.read_csv(out / "history.csv")
    assert list(history["epoch"]) == [1, 2]
    np.testing.assert_array_equal(history["val_loss"], run.result.history["val_loss"])
    assert (out / "learning_curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    record = json.loads((out / "run.json").read_text())
    assert sorted(record) == ["backend", "config", "data", "fingerprint", "format_version",
                              "target"]
    assert record["format_version"] == 2 and record["backend"] == keras.backend.backend()
    assert record["data"] == str(csv.resolve()) and record["target"] == "y"
    assert RunConfig.from_dict(record["config"]) == TINY
    assert record["fingerprint"]["rows"] == 40 and record["fingerprint"]["bytes"] > 0
    loaded = dlstructured.load_model(out / "model.keras")
    frame = table(rows=6, seed=4)
    np.testing.assert_allclose(loaded.predict(frame), run.model.predict(frame), rtol=1e-6)
    assert not [p for p in out.rglob(".tmp-*")]


def test_run_write_puts_a_notebook_run_into_a_folder(tmp_path):
    run = fit_table(table(), "y", TINY)
    written = run.write(tmp_path / "later")
    assert [p.name for p in written] == list(OUTPUT_FILES)
    assert sorted(p.name for p in (tmp_path / "later").iterdir()) == sorted(OUTPUT_FILES)
    record = read_run_record(tmp_path / "later")
    assert record.data is None and record.config == TINY and record.target == "y"


def test_fit_table_writes_what_the_command_line_writes_for_the_same_config(tmp_path, csv,
                                                                            capsys):
    config = RunConfig(hidden_units=(8, 4), epochs=3, batch_size=16, patience=0, seed=7)
    status = main(["train", str(csv), "--target", "y", "--out", str(tmp_path / "cli"),
                   "--quiet", "--hidden-units", "8,4", "--epochs", "3", "--batch-size", "16",
                   "--patience", "0", "--seed", "7"])
    assert status == 0, capsys.readouterr().err
    fit_table(csv, "y", config, out=tmp_path / "py")
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "cli" / "history.csv"),
                                  pd.read_csv(tmp_path / "py" / "history.csv"), check_exact=True)
    assert read_run_record(tmp_path / "cli") == read_run_record(tmp_path / "py")
    cli, py = (json.loads((tmp_path / name / "metrics.json").read_text()) for name in ("cli", "py"))
    for timing in ("wall_time_s", "fit_time_s"):
        del cli[timing], py[timing]
    del cli["refit"]["fit_time_s"], py["refit"]["fit_time_s"]  # the default model refits
    assert cli == py


def test_resume_of_a_v2_folder_trains_on_to_the_new_epoch_count(tmp_path, csv):
    out = tmp_path / "run"
    first = fit_table(csv, "y", TINY, out=out)
    again = resume_run(out, epochs=4)
    assert again.result.epochs_run == 4 and len(pd.read_csv(out / "history.csv")) == 4
    pd.testing.assert_frame_equal(again.result.history.iloc[:2], first.result.history,
                                  check_exact=True)
    assert read_run_record(out).config == TINY.replace(epochs=4)
    whole = fit_table(csv, "y", TINY.replace(epochs=4))  # the same run without a break
    pd.testing.assert_frame_equal(again.result.history, whole.result.history, rtol=1e-5)


def test_resume_of_a_dataframe_run_takes_the_frame_again_and_checks_it(tmp_path):
    out = tmp_path / "run"
    fit_table(table(), "y", TINY, out=out)
    resumed = fit_table(table(), None, TINY.replace(epochs=3), out=out, resume=True)
    assert resumed.result.epochs_run == 3
    with pytest.raises(RunError, match="was trained on a DataFrame; pass it again"):
        resume_run(out)
    changed = table()
    changed.loc[0, "x1"] += 1
    with pytest.raises(DataError, match=r"the DataFrame changed .*content changed"):
        fit_table(changed, "y", out=out, resume=True)


def copy_of_the_0_1_0_run(tmp_path: Path) -> Path:
    """The interrupted 0.1.0 run folder, its run.json pointing at a copy of its data."""
    out = tmp_path / "old"
    shutil.copytree(FIXTURE_RUN, out)
    data = shutil.copy(FIXTURE_RUN.parent / "run_data.csv", tmp_path / "run_data.csv")
    record = json.loads((out / "run.json").read_text())
    (out / "run.json").write_text(json.dumps({**record, "data": str(data)}))
    return out


def test_the_command_line_resumes_a_0_1_0_run_folder(tmp_path, capsys):
    out = copy_of_the_0_1_0_run(tmp_path)
    done_before = json.loads((out / "checkpoints" / "checkpoint.json").read_text())["epoch"]
    assert done_before < 10
    # The run was trained on JAX, and `--resume DIR` alone resumes it on JAX; a session on
    # TensorFlow, where Keras is imported already, resumes it there (--backend wins).
    on_tensorflow = keras.backend.backend() != "jax"
    status = main(["train", "--resume", str(out), *(["--backend", "tensorflow"] * on_tensorflow)])
    err = capsys.readouterr().err
    assert status == 0, err
    assert "holds no fingerprint of the data" in err
    assert f"epoch {done_before + 1:>2}/10" in err and "epoch  1/10" not in err
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["epochs_run"] == 10 and metrics["interrupted"] is False
    assert len(pd.read_csv(out / "history.csv")) == 10
    assert {"model.keras", "learning_curves.png", "run.json"} <= {p.name for p in out.iterdir()}
    record = json.loads((out / "run.json").read_text())
    assert record["format_version"] == 2 and record["config"]["hidden_units"] == [8]


def test_resume_run_reads_a_0_1_0_folder_and_warns_it_cannot_check_the_data(tmp_path):
    out = copy_of_the_0_1_0_run(tmp_path)
    with expect_warning(DataWarning, "holds no fingerprint"):
        run = resume_run(out)
    assert run.config == RunConfig(model="dense", hidden_units=(8,), epochs=10, patience=0,
                                   activation="relu", batch_size=256, learning_rate=0.001,
                                   valid_fraction=0.3)
    assert run.result.epochs_run == 10


@pytest.fixture
def finished(tmp_path, csv) -> Path:
    out = tmp_path / "run"
    fit_table(csv, "y", TINY, out=out)
    return out


@pytest.mark.parametrize(
    ("change", "python", "command_line"),
    [
        ({"config": TINY.replace(hidden_units=(4,))},
         r"config.hidden_units=\(4,\) differs from the run in .*hidden_units=\(8,\)",
         "--resume with --hidden-units 4: the run in"),
        ({"config": TINY.replace(epochs=1)}, "config.epochs=1 differs", "with --epochs 2;"),
        ({"config": TINY.replace(drop=("x2",))}, r"config.drop=\('x2',\) differs",
         "--resume with --drop x2: .* without --drop;"),
        ({"target": "x1"}, "target='x1' differs", "--target 'x1' differs"),
        ({"data": table()}, "pass data=None to resume it on its own data", "but DATA"),
    ],
)
def test_resume_refuses_what_conflicts_with_the_run(finished, change, python, command_line):
    arguments = {"data": None, "target": None, "config": None, **change}
    with pytest.raises(RunError, match=python) as caught:
        fit_table(arguments.pop("data"), arguments.pop("target"), **arguments, out=finished,
                  resume=True)
    assert re.search(command_line, message_for_command_line(caught.value))


def test_resume_refuses_a_data_file_whose_fingerprint_changed(finished, csv):
    table(rows=30).to_csv(csv, index=False)
    with pytest.raises(DataError, match="changed since the run started .rows 40 -> 30") as caught:
        resume_run(finished)
    assert message_for_command_line(caught.value).startswith("--resume: the data")
    assert message_for_command_line(caught.value).endswith("without --resume")


def test_resume_needs_a_run_folder_and_a_fresh_run_needs_data(tmp_path):
    with pytest.raises(RunError, match="has no run.json") as caught:
        resume_run(tmp_path)
    assert "--resume" in message_for_command_line(caught.value)
    with pytest.raises(RunError, match="needs `out`"):
        fit_table(table(), "y", resume=True)
    with pytest.raises(TypeError, match="`data` and `target` are needed"):
        fit_table(None, "y")
    with pytest.raises(TypeError, match="`config` must be a RunConfig"):
        fit_table(table(), "y", {"epochs": 2})


def test_a_failed_run_leaves_no_folder_it_created(tmp_path):
    with pytest.raises(DataError, match=r"column 'nope' \(`drop`\) is not in the DataFrame"):
        fit_table(table(), "y", TINY.replace(drop=("nope",)), out=tmp_path / "new")
    assert not (tmp_path / "new").exists()


def test_verbose_shows_the_one_progress_display(capsys):
    fit_table(table(), "y", TINY.replace(epochs=3), verbose=2)
    err = capsys.readouterr().err.splitlines()
    assert err[0] == ("training a dense regression model on 28 rows, validating on 12 "
                      "(2 features, backend " + keras.backend.backend() + ")")
    assert [line.split("  ")[0] for line in err[1:]] == ["epoch 1/3", "epoch 2/3", "epoch 3/3"]
    assert "[########################]" in err[-1]
