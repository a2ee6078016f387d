"""Checks of the quality benchmark's harness (``benchmarks/quality.py``) on tiny tables.

The figures the benchmark reports depend on the machine; these tests check what they are made of:
the fixed splits, the metrics (against scikit-learn's), the naive and tree sides, the Markdown
writer, and one quick run of the whole command.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn import metrics as sk

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))

import quality  # noqa: E402
from _quality_tables import (  # noqa: E402
    Table,
    ionosphere,
    location_cells,
    mixed_synthetic,
    split,
)


def _regression_table(rows: int = 100, seed: int = 0) -> Table:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({"x": rng.normal(size=rows), "colour": rng.choice(["red", "blue"], rows)})
    frame["y"] = 3 * frame["x"] + (frame["colour"] == "red") + rng.normal(scale=0.1, size=rows)
    return Table(frame, "y", "regression")


def _parts(table: Table):
    train_rows, test_rows = split(table)
    return table.frame.iloc[train_rows], table.frame.iloc[test_rows]


# ------------------------------------------------------------------------------------------
# Splits and tables.
# ------------------------------------------------------------------------------------------


def test_split_is_a_fixed_70_30_partition_of_the_rows():
    table = _regression_table(rows=200)
    train, test = split(table)
    assert (len(train), len(test)) == (140, 60)
    assert (np.diff(train) > 0).all() and (np.diff(test) > 0).all()  # sorted, as documented
    assert np.array_equal(np.sort(np.concatenate([train, test])), np.arange(200))
    again_train, again_test = split(table)
    assert np.array_equal(train, again_train) and np.array_equal(test, again_test)
    assert not np.array_equal(test, np.arange(140, 200))  # shuffled, not the last rows


def test_grouped_split_keeps_every_group_in_one_part():
    rng = np.random.default_rng(1)
    # Uneven groups, as real cities are: most rows in a few crowded cells.
    latitude = np.concatenate([rng.uniform(34.0, 34.4, 1200), rng.uniform(32, 42, 800)])
    longitude = np.concatenate([rng.uniform(-118.4, -118.0, 1200), rng.uniform(-124, -114, 800)])
    groups = location_cells(latitude, longitude)
    frame = pd.DataFrame({"latitude": latitude, "longitude": longitude, "y": rng.normal(size=2000)})
    table = Table(frame, "y", "regression", groups=groups)
    train, test = split(table)
    assert not set(groups[train]) & set(groups[test])
    assert np.array_equal(np.sort(np.concatenate([train, test])), np.arange(2000))
    assert abs(len(test) - 600) <= 0.05 * 2000  # 30% of the rows, not of the groups
    again_train, again_test = split(table)
    assert np.array_equal(test, again_test)
    other_train, other_test = split(table, seed=1)
    assert not np.array_equal(test, other_test)  # the seed picks the groups


def test_location_cells_put_nearby_rows_together_and_far_ones_apart():
    cells = location_cells([37.1, 37.4, 37.6, 37.1], [-122.1, -122.4, -122.1, -121.9])
    assert cells[0] == cells[1]  # the same half-degree square
    assert cells[0] != cells[2]  # another latitude band
    assert cells[0] != cells[3]  # another longitude band


def test_table_rejects_an_unknown_task_and_misplaced_groups():
    frame = pd.DataFrame({"x": [1.0, 2.0], "y": [0.0, 1.0]})
    with pytest.raises(ValueError, match="task must be one of"):
        Table(frame, "y", "ranking")
    with pytest.raises(ValueError, match="one label per row"):
        Table(frame, "y", "regression", groups=np.array(["a"]))


def test_ionosphere_loader_drops_the_row_number_column(tmp_path):
    pd.DataFrame({"V1": [1, 0], "V3": [0.5, -0.2], "Class": ["good", "bad"]}, index=[1, 2]).to_csv(
        tmp_path / "ion.csv", index_label=""
    )
    table = ionosphere(str(tmp_path))
    assert list(table.frame.columns) == ["V1", "V3", "Class"]
    assert (table.target, table.task) == ("Class", "binary")


def test_a_table_whose_file_is_missing_is_skipped_with_a_line(tmp_path, capsys):
    options = argparse.Namespace(data_dir=str(tmp_path), quick=True)
    entry = quality.run_table("red_wine", options, tmp_path)
    assert "red-wine.csv" in entry["skipped"]
    assert "[red_wine] skipped" in capsys.readouterr().out


def test_mixed_synthetic_table_is_deterministic_with_missing_values_and_many_levels():
    table = mixed_synthetic(3000, numeric=8, categorical=4)
    assert table.frame.equals(mixed_synthetic(3000, numeric=8, categorical=4).frame)
    features = table.frame.drop(columns="y")
    assert features.isna().mean().between(0.03, 0.07).all()
    assert table.frame["y"].notna().all()
    text = features.select_dtypes(exclude="number")
    assert len(text.columns) == 4
    levels = sorted(text[c].nunique() for c in text.columns)
    assert levels[0] == 3 and levels[-1] > 500  # 3 to 1,000 levels; rare ones may not appear


# ------------------------------------------------------------------------------------------
# Metrics.
# ------------------------------------------------------------------------------------------


def test_regression_metrics_match_scikit_learn(rng):
    y_true, y_pred = rng.normal(size=50), rng.normal(size=50)
    found = quality.regression_metrics(y_true, y_pred)
    assert found["mae"] == pytest.approx(sk.mean_absolute_error(y_true, y_pred))
    assert found["rmse"] == pytest.approx(np.sqrt(sk.mean_squared_error(y_true, y_pred)))


def test_classification_metrics_match_scikit_learn_with_columns_in_any_order(rng):
    classes = ["c", "a", "b"]  # the columns' order, not sorted
    y_true = rng.choice(classes, size=60)
    probabilities = rng.dirichlet(np.ones(3), size=60)
    found = quality.classification_metrics(y_true, probabilities, classes)
    predicted = np.array(classes)[probabilities.argmax(axis=1)]
    assert found["accuracy"] == pytest.approx(sk.accuracy_score(y_true, predicted))
    order = np.argsort(classes)  # scikit-learn takes its columns in sorted label order
    expected = sk.log_loss(y_true, probabilities[:, order], labels=sorted(classes))
    assert found["log_loss"] == pytest.approx(expected)


def test_a_confident_mistake_costs_a_large_finite_log_loss():
    found = quality.classification_metrics([1], np.array([[1.0, 0.0]]), [0, 1])
    assert found["accuracy"] == 0.0
    assert found["log_loss"] == pytest.approx(-np.log(quality.CLIP), rel=1e-6)


def test_probabilities_that_do_not_sum_to_one_are_renormalized():
    found = quality.classification_metrics(["a"], np.array([[0.2, 0.6]]), ["a", "b"])
    assert found["log_loss"] == pytest.approx(np.log(4.0))  # 0.2 of 0.8 is a quarter


def test_a_label_outside_the_classes_is_an_error():
    with pytest.raises(ValueError, match=r"labels \['dog'\] are not among the classes"):
        quality.classification_metrics(["cat", "dog"], np.full((2, 2), 0.5), ["cat", "cow"])


# ------------------------------------------------------------------------------------------
# Sides.
# ------------------------------------------------------------------------------------------


def test_naive_side_guesses_the_training_median_or_the_class_frequencies():
    train = pd.DataFrame({"y": [1.0, 2.0, 10.0], "label": ["a", "a", "b"]})
    test = pd.DataFrame({"y": [2.0, 4.0], "label": ["a", "b"]})
    regression = quality.run_naive(Table(train, "y", "regression"), train, test, seed=0)
    assert regression["mae"] == pytest.approx(1.0)  # the median 2 is 0 and 2 away
    classifier = quality.run_naive(Table(train, "label", "binary"), train, test, seed=0)
    assert classifier["accuracy"] == pytest.approx(0.5)  # always "a"
    assert classifier["log_loss"] == pytest.approx(-(np.log(2 / 3) + np.log(1 / 3)) / 2)


def test_tree_features_use_the_training_levels_and_codes_for_too_many_levels():
    many = [f"v{i}" for i in range(300)]
    train = pd.DataFrame({"colour": ["red", "blue", None], "many": ["v0", "v1", "v299"],
                          "x": [1.0, 2.0, 3.0]})  # fmt: skip
    train = pd.concat([train, pd.DataFrame({"colour": "red", "many": many, "x": 0.0})])
    test = pd.DataFrame({"colour": ["green", "blue"], "many": ["v5", "zzz"], "x": [0.0, 1.0]})
    train_features, test_features = quality.tree_features(train, test)
    assert list(test_features["colour"].cat.categories) == ["blue", "red"]
    assert test_features["colour"].isna().tolist() == [True, False]  # "green" is unseen
    assert train_features["colour"].isna().sum() == 1  # the missing value stays missing
    assert test_features["many"].dtype == float  # 300 levels: ordinal codes
    assert test_features["many"].iloc[0] == sorted(many).index("v5")
    assert np.isnan(test_features["many"].iloc[1])
    assert test_features["x"].tolist() == [0.0, 1.0]


def test_hgb_side_reports_the_better_of_its_two_regression_losses():
    table = _regression_table(rows=120)
    train, test = _parts(table)
    result = quality.run_hgb(table, train, test, seed=0)
    by_loss = result["by_loss"]
    assert set(by_loss) == {"squared_error", "absolute_error"}
    assert result["loss"] == min(by_loss, key=lambda loss: by_loss[loss]["mae"])
    assert result["mae"] == by_loss[result["loss"]]["mae"]
    assert result["mae"] < 0.6 * quality.run_naive(table, train, test, seed=0)["mae"]


def test_hgb_side_classifies_text_labels_from_text_and_numbers():
    rng = np.random.default_rng(2)
    frame = pd.DataFrame({"x": rng.normal(size=150), "island": rng.choice(["A", "B"], 150)})
    frame["species"] = np.where(frame["x"] > 0, "big", np.where(frame["island"] == "A", "a", "b"))
    table = Table(frame, "species", "multiclass")
    train, test = _parts(table)
    result = quality.run_hgb(table, train, test, seed=0)
    assert result["accuracy"] > 0.9
    assert result["train_s"] > 0


def test_cli_train_command_spells_out_the_course_recipe_and_caps_epochs_last():
    table = _regression_table()
    default = quality.cli_train_command(table, Path("t.csv"), Path("out"), 3, "default")
    assert default == ["train", "t.csv", "--target", "y", "--task", "regression",
                       "--seed", "3", "--out", "out"]  # fmt: skip
    course = quality.cli_train_command(table, Path("t.csv"), Path("out"), 0, "course", epochs=2)
    assert course[course.index("--hidden") + 1] == "512,512,512"
    assert course[-2:] == ["--epochs", "2"]


def test_predictions_file_is_matched_to_the_classes_by_label(tmp_path):
    path = tmp_path / "pred.csv"
    pd.DataFrame({"prediction": [1, 0], "probability_1": [0.9, 0.2],
                  "probability_0": [0.1, 0.8]}).to_csv(path, index=False)  # fmt: skip
    table = Table(pd.DataFrame({"x": [0.0], "label": [0]}), "label", "binary")
    read = quality.read_predictions(path, table, classes=[0, 1])
    assert read["probabilities"].tolist() == [[0.1, 0.9], [0.8, 0.2]]
    with pytest.raises(ValueError, match=r"lacks the columns \['probability_2'\]"):
        quality.read_predictions(path, table, classes=[0, 1, 2])


# ------------------------------------------------------------------------------------------
# Summaries and the Markdown writer.
# ------------------------------------------------------------------------------------------


def test_summary_gives_mean_and_spread_over_the_good_runs_only():
    runs = [{"seed": 0, "mae": 1.0, "train_s": 2.0}, {"seed": 1, "mae": 3.0, "train_s": 4.0},
            {"seed": 2, "error": "boom"}]  # fmt: skip
    summary = quality.summarize(runs, ["mae"])
    assert (summary["runs_ok"], summary["runs_failed"]) == (2, 1)
    assert summary["mae"]["mean"] == pytest.approx(2.0)
    assert summary["mae"]["std"] == pytest.approx(np.std([1.0, 3.0], ddof=1))
    assert quality.summarize(runs[:1], ["mae"])["mae"]["std"] is None  # no spread from one run
    same = [{"seed": seed, "accuracy": 0.9433962264150944} for seed in range(3)]
    assert quality.summarize(same, ["accuracy"])["accuracy"]["std"] == 0.0  # exactly


def test_verdict_needs_a_strictly_better_main_metric_at_the_seed():
    def sides(ours, theirs):
        return {"default": {"runs": [{"seed": 0, "mae": ours, "accuracy": ours}]},
                "hgb": {"runs": [{"seed": 0, "mae": theirs, "accuracy": theirs}]}}  # fmt: skip

    assert quality.verdict("regression", sides(1.0, 2.0))["beats"] is True
    assert quality.verdict("regression", sides(2.0, 1.0))["beats"] is False
    assert quality.verdict("regression", sides(1.0, 1.0))["beats"] is False
    assert quality.verdict("binary", sides(0.9, 0.8))["beats"] is True
    assert quality.verdict("binary", sides(0.9, 0.9))["beats"] is False  # a tie does not beat
    assert quality.verdict("regression", sides(1.0, 2.0), seed=1) is None


def _side(task_metric: str, values: list[float], train_s: float = 2.0) -> dict:
    runs = [{"seed": s, task_metric: v, "train_s": train_s, "train_s_per_1000_rows": train_s / 2}
            for s, v in enumerate(values)]  # fmt: skip
    return {"runs": runs, "summary": quality.summarize(runs, [task_metric])}


def test_markdown_lists_each_side_with_its_figures_and_the_verdicts():
    sides = {"default": _side("mae", [0.5, 0.7]), "hgb": _side("mae", [0.6, 0.6], 0.1),
             "naive": _side("mae", [91234.5])}  # fmt: skip
    results = {
        "tables": {
            "wine": {"task": "regression", "sides": sides,
                     "beats_hgb_seed0": quality.verdict("regression", sides)},
            "ion": {"skipped": "needs ion.csv"},
            "broken": {"task": "binary", "sides": {"default": {"runs": [
                {"seed": 0, "error": "train exited with status 2"}],
                "summary": quality.summarize([{"error": "x"}], ["accuracy"])}},
                "beats_hgb_seed0": None},
        },
        "summary": {"tables_compared": 1, "beats_hgb_seed0": 1},
        "matmul_peak_gflops": {"start": 131.0, "end": 120.4, "best": 131.0},
        "options": {"backend": "jax"},
        "machine": {"git_commit": "abc123", "cpu": "Some CPU", "usable_cpus": 2,
                    "logical_cpus": 4, "memory_gib": 8.0, "gpus": [],
                    "versions": {"numpy": "2.0", "jax": None}},
        "started_utc": "2026-12-02T06:00:00+00:00",
        "command": ["/venv/bin/python", "benchmarks/quality.py", "--seeds", "0"],
        "load_average_before": [0.5, 0.25, 0.125], "load_average_after": [1.0, 1.0, 1.0],
    }  # fmt: skip
    text = quality.format_markdown(results)
    assert "| wine | default | mae | 0.6 ± 0.1414 | 0.5 | n/a | 2 | 1 |" in text
    assert "| wine | hgb | mae | 0.6 ± 0 | 0.6 | n/a | 0.1 | 0.05 |" in text
    assert "| wine | naive | mae | 91,234 ± n/a | 91,234 |" in text  # dollars, not 9.123e+04
    assert "| ion | — | skipped: needs ion.csv |" in text
    assert "| broken | default | failed: train exited with status 2 |" in text
    assert "| wine | mae | 0.5 | 0.6 | yes |" in text
    assert "on 1 of 1 tables" in text
    assert "- command: `python benchmarks/quality.py --seeds 0`" in text
    assert "peak (numpy): 131 GFLOP/s at the start, 120 at the end" in text
    assert "2 usable of 4 logical CPUs" in text and "versions: numpy 2.0; backend" in text
    assert "before: 0.50, 0.25, 0.12; after: 1.00" in text


# ------------------------------------------------------------------------------------------
# One quick run of the whole command.
# ------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_quick_run_writes_figures_for_every_side_and_table(tmp_path):
    out, markdown = tmp_path / "results.json", tmp_path / "results.md"
    command = [sys.executable, str(BENCHMARKS / "quality.py"), "--quick",
               "--tables", "friedman1", "classification", "--sides", "default", "hgb", "naive",
               "--seeds", "0", "--out", str(out), "--markdown", str(markdown)]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads(out.read_text())
    assert results["matmul_peak_gflops"]["best"] > 0
    assert results["machine"]["versions"]["numpy"]
    for name, metric in (("friedman1", "mae"), ("classification", "accuracy")):
        entry = results["tables"][name]
        assert (entry["n_train"], entry["n_test"]) == (210, 90)  # the quick tables' 300 rows
        for side in ("default", "hgb", "naive"):
            run = entry["sides"][side]["runs"][0]
            assert "error" not in run, run
            assert np.isfinite(run[metric]) and run["train_s"] >= 0
        default = entry["sides"]["default"]["runs"][0]
        assert default["epochs_run"] <= quality.QUICK_EPOCHS
        assert default["command"][:2] == ["dlstructured", "train"]
        assert entry["beats_hgb_seed0"]["metric"] == metric
    classifier = results["tables"]["classification"]["sides"]
    assert classifier["default"]["runs"][0]["log_loss"] > 0
    assert classifier["naive"]["runs"][0]["accuracy"] < classifier["hgb"]["runs"][0]["accuracy"]
    assert "| friedman1 | default | mae |" in markdown.read_text()
    assert "[classification] default seed 0:" in done.stdout
