"""The default model (``model="auto"``): its recipe, the refit on every row, files and resume."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

import dlstructured
from dlstructured import RunConfig, fit_table
from dlstructured.cli import main
from dlstructured.errors import DataWarning
from dlstructured.recipes import COURSE, prepare_options, resolve
from dlstructured.run import CHECKPOINT_DIR, REFIT_DIR

# Small enough for the suite: 2 members of 8 units, a few epochs.
SMALL = RunConfig(hidden_units=(8,), members=2, epochs=3)


def table(rows: int = 60, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    x1 = rng.uniform(0, 10, rows)
    colour = rng.choice(["red", "green", "blue"], rows)
    return pd.DataFrame({"x1": x1, "colour": colour,
                         "y": 2.0 * x1 + (colour == "red") + rng.normal(0, 0.1, rows)})


def test_the_default_config_is_the_strong_default_and_dense_is_the_course_recipe():
    recipe = resolve(RunConfig(), task="binary", train_rows=20_000, valid_rows=5_000)
    config = recipe.config
    assert (config.model, config.members, config.hidden_units) == ("auto", 8, (256, 256, 256))
    assert (config.activation, config.batch_size, config.learning_rate) == ("selu", 512, 0.04)
    assert config.epochs == round(1200 / 40) and config.patience == config.epochs  # 40 steps
    assert recipe.train == {"learning_rate_schedule": "log_cosine", "adam_beta_2": 0.95,
                            "label_smoothing": 0.1}
    assert recipe.refit and recipe.min_delta == 0.0
    # A warm-restart cycle that improves nothing ends the fit: reviewed at the cycles' ends,
    # on budgets of at least 48 epochs (this one has 30).
    assert recipe.review_epochs == ()
    small = resolve(RunConfig(), task="binary", train_rows=1_000, valid_rows=250)
    assert small.config.epochs == 128 and small.review_epochs == (9, 26, 60)
    assert resolve(RunConfig(patience=5), task="binary", train_rows=1_000,
                   valid_rows=250).review_epochs == ()  # a patience given is the rule
    assert prepare_options(RunConfig()) == {"valid_fraction": 0.2, "scaling": "robust",
                                            "target_scaling": "standard", "clip_target": True}
    # The course's recipe, exactly as 0.1.0 ran it: prepare's defaults (min-max features and
    # target), Adam 0.001 with the task's loss, 200 epochs, patience 20 on a 30% split.
    course = resolve(RunConfig(model="dense"), task="regression", train_rows=700, valid_rows=300)
    assert {name: getattr(course.config, name) for name in COURSE} == COURSE
    assert course.train == {} and not course.refit and course.min_delta == 0.001
    assert course.review_epochs == ()
    assert prepare_options(RunConfig(model="dense")) == {"valid_fraction": 0.3}


def test_epochs_follow_the_step_budget_within_bounds():
    epochs = {rows: resolve(RunConfig(), task="regression", train_rows=rows,
                            valid_rows=rows // 4).config.epochs for rows in (100, 5_000, 10**6)}
    assert epochs == {100: 128, 5_000: 60, 10**6: 16}
    given = resolve(RunConfig(epochs=3, batch_size=7, learning_rate=0.01), task="regression",
                    train_rows=100, valid_rows=25).config
    assert (given.epochs, given.batch_size, given.learning_rate) == (3, 7, 0.01)


def test_fit_table_trains_the_ensemble_then_refits_it_on_every_row():
    run = fit_table(table(), "y", SMALL)
    assert run.rows == {"train": 48, "valid": 12}
    assert run.model.network.output_shape == (None, 2, 1)  # one prediction per member
    # The history is the fit that chose the epochs: three rows, with validation columns.
    assert list(run.result.history.index) == [1, 2, 3] and "val_loss" in run.result.history
    refit = run.refit_result
    assert refit is not None and refit.epochs_run == run.result.best_epoch
    assert "val_loss" not in refit.history  # every row trained
    assert run.model is refit.model
    predictions = run.model.predict(table(rows=5, seed=1).drop(columns="y"))
    assert predictions.shape == (5,) and np.isfinite(predictions).all()
    summary = run.summary()
    assert summary["refit"]["rows"] == 60 and summary["settings"]["members"] == 2
    assert summary["config"] == SMALL.to_dict()
    json.dumps(summary, allow_nan=False)


def test_no_validation_rows_means_no_refit():
    run = fit_table(table(), "y", SMALL.replace(valid_fraction=0.0))
    assert run.rows == {"train": 60, "valid": 0} and run.refit_result is None


def test_the_refit_model_is_the_one_saved_and_it_loads(tmp_path):
    out = tmp_path / "run"
    run = fit_table(table(), "y", SMALL, out=out)
    rows = table(rows=7, seed=2).drop(columns="y")
    loaded = dlstructured.load_model(out / "model.keras")
    np.testing.assert_allclose(loaded.predict(rows), run.model.predict(rows), rtol=1e-6)
    assert (out / CHECKPOINT_DIR / REFIT_DIR / "checkpoint.json").exists()
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["refit"]["epochs_run"] == run.result.best_epoch


def test_resuming_a_finished_default_run_trains_nothing_more(tmp_path):
    out = tmp_path / "run"
    first = fit_table(table(), "y", SMALL, out=out)
    again = fit_table(table(), None, out=out, resume=True)
    assert again.result.epochs_run == 3
    assert again.refit_result.epochs_run == first.refit_result.epochs_run
    rows = table(rows=7, seed=2).drop(columns="y")
    np.testing.assert_allclose(again.model.predict(rows), first.model.predict(rows), rtol=1e-5)


def test_a_handful_of_rows_still_trains_with_a_notice():
    with pytest.warns(DataWarning, match="only 8 rows"):
        run = fit_table(table(rows=10), "y", SMALL)
    assert np.isfinite(run.result.history.to_numpy()).all()
    assert np.isfinite(run.model.predict(table(rows=3, seed=4).drop(columns="y"))).all()


def test_classification_trains_with_label_smoothing_and_predicts_labels():
    frame = table(rows=80)
    frame["y"] = np.where(frame["y"] > frame["y"].median(), "high", "low")
    run = fit_table(frame, "y", SMALL)
    assert run.task == "binary" and run.recipe.train["label_smoothing"] == 0.1
    assert set(run.model.predict(frame.drop(columns="y"))) <= {"high", "low"}


def test_the_command_line_trains_the_default_and_refuses_members_for_dense(tmp_path, capsys):
    path = tmp_path / "t.csv"
    table().to_csv(path, index=False)
    status = main(["train", str(path), "--target", "y", "--out", str(tmp_path / "run"),
                   "--quiet", "--hidden-units", "8", "--members", "2", "--epochs", "2"])
    assert status == 0, capsys.readouterr().err
    record = json.loads((tmp_path / "run" / "run.json").read_text())
    assert record["config"]["model"] == "auto" and record["config"]["members"] == 2
    status = main(["train", str(path), "--target", "y", "--model", "dense", "--members", "2"])
    assert status == 2
    assert "`members` applies to model='auto' only" in capsys.readouterr().err.replace(
        "--members", "`members`")


def test_batch_norm_is_refused_for_the_default_with_the_fix():
    with pytest.raises(ValueError, match="choose model='dense'"):
        RunConfig(batch_norm=True)
