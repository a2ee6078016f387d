"""Checks of the benchmark harness in ``benchmarks/`` (its arithmetic and one quick run).

Nothing here times anything or compares speeds: the harness's figures depend on the machine and
its load. The slow test runs the harness end to end on tiny data and checks what it writes.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))

import run  # noqa: E402
from _worker import PeakRSS, _record_metrics  # noqa: E402
from _workloads import WORKLOADS, course_split, dense_forward_flops, epoch_flops  # noqa: E402


def test_dense_flops_count_two_per_multiply_add():
    # 11 -> 512 -> 512 -> 512 -> 1, as in the course's red wine model.
    expected = 2 * (11 * 512 + 512 * 512 + 512 * 512 + 512 * 1)
    assert dense_forward_flops(11, (512, 512, 512)) == expected
    assert epoch_flops(11, (512, 512, 512), 10, 4) == 3 * expected * 10 + expected * 4


def test_derive_splits_epoch_time_into_arithmetic_and_overhead():
    result = {"fit_s": 2.0, "epochs_run": 100, "n_train": 1000, "n_valid": 500, "num_features": 11}
    run.derive("redwine_512x3", result, peak_gflops=100.0)
    flops = epoch_flops(11, (512, 512, 512), 1000, 500)
    assert result["epoch_ms"] == pytest.approx(20.0)
    assert result["samples_per_s"] == pytest.approx(1000 * 100 / 2.0)
    assert result["gflops"] == pytest.approx(flops / 0.02 / 1e9)
    assert result["fraction_of_peak"] == pytest.approx(result["gflops"] / 100.0)
    assert result["overhead_ms_per_epoch"] == pytest.approx(20.0 - flops / 100e9 * 1000.0)
    assert result["fit_s_at_peak"] == pytest.approx(100 * flops / 100e9)
    assert "steady_epoch_ms" not in result  # no epoch times recorded


def test_derive_tells_the_first_epoch_from_the_steady_ones():
    # A 1.5 s first epoch (compiling), then epochs of 20, 10, 10 and 30 ms: median 15 ms.
    ends = np.cumsum([1.5, 0.02, 0.01, 0.01, 0.03]).tolist()
    result = {"fit_s": ends[-1], "epochs_run": 5, "n_train": 1000, "n_valid": 500}
    result.update(num_features=11, epoch_end_s=ends)
    run.derive("redwine_512x3", result, peak_gflops=100.0)
    flops = epoch_flops(11, (512, 512, 512), 1000, 500)
    assert result["first_epoch_s"] == pytest.approx(1.5)
    assert result["steady_epoch_ms"] == pytest.approx(15.0)
    assert result["steady_gflops"] == pytest.approx(flops / 0.015 / 1e9)
    assert result["steady_fraction_of_peak"] == pytest.approx(result["steady_gflops"] / 100.0)
    assert result["steady_overhead_ms_per_epoch"] == pytest.approx(15.0 - flops / 100e9 * 1e3)
    assert result["gflops"] < result["steady_gflops"]  # the fit average carries the compiling


def test_ratios_skip_failed_sides_and_targets_report_verdicts():
    results = {
        "ionosphere_4x4": {
            "keras-tensorflow": {"fit_s": 10.0, "process_s": 20.0},
            "dlstructured-jax": {
                "fit_s": 2.0,
                "fit_s_at_peak": 0.5,
                "process_s": 8.0,
                "overhead_ms_per_epoch": 1.5,
                "steady_overhead_ms_per_epoch": 0.5,
            },
            "dlstructured-tensorflow": {"fit_s": 1.0, "process_s": 9.0, "error": "boom"},
            "dlstructured-cli": {"fit_s": 3.0, "process_s": 7.0},
        }
    }
    run.add_ratios(results)
    jax_side = results["ionosphere_4x4"]["dlstructured-jax"]
    assert jax_side["fit_ratio"] == pytest.approx(0.2)
    assert jax_side["fit_ratio_at_peak"] == pytest.approx(0.05)  # 0.5 s against plain Keras's 10
    assert jax_side["process_ratio"] == pytest.approx(0.4)
    assert "fit_ratio" not in results["ionosphere_4x4"]["dlstructured-tensorflow"]
    targets = run.check_targets(results)
    verdicts = {(t["target"], t["side"]): t["met"] for t in targets}
    floors = {(t["target"], t["side"]): t["at_peak"] for t in targets}
    assert floors[("JAX fit time <= 0.25x plain Keras (TF)", "dlstructured-jax")] == 0.05
    assert verdicts[("JAX fit time <= 0.25x plain Keras (TF)", "dlstructured-jax")] is True
    assert jax_side["process_ratio"] == pytest.approx(0.4)
    cli = "`dlstructured train` whole process <= 0.33x plain-Keras script (TF)"
    assert verdicts[(cli, "dlstructured-cli")] is False  # 7 s / 20 s = 0.35
    assert verdicts[("TF fit time <= 0.5x plain Keras (TF)", "dlstructured-tensorflow")] is None
    overhead = "ionosphere overhead per epoch on JAX <= 1 ms (steady epochs)"
    assert verdicts[(overhead, "dlstructured-jax")] is True


def test_regression_metrics_are_reported_in_target_units_once():
    scaled = {"loss": [0.3, 0.2], "val_loss": [0.25, 0.1], "val_mae": [0.25, 0.1]}
    plain = {}
    _record_metrics(scaled, "regression", 5.0, plain, in_units=False)
    assert plain["val_metric_final"] == pytest.approx(0.5)
    assert plain["val_mae_scaled_final"] == pytest.approx(0.1)
    in_units = {key: [5.0 * v for v in values] for key, values in scaled.items()}
    library = {}
    _record_metrics(in_units, "regression", 5.0, library, in_units=True)
    assert library["val_metric_final"] == pytest.approx(0.5)
    assert library["val_mae_scaled_final"] == pytest.approx(0.1)
    assert library["val_metric_best"] == pytest.approx(0.5)


def test_peak_rss_counts_memory_allocated_inside_the_block():
    before = np.ones(40 * 2**20 // 8)  # allocated before the block: must not count
    del before
    with PeakRSS() as peak:
        block = np.ones(64 * 2**20 // 8)  # 64 MiB, touched
        block[::512] = 2.0
        del block
    assert 56.0 < peak.growth_mib < 120.0


def test_course_split_is_pandas_sample_with_seed_zero():
    import pandas as pd

    frame = pd.DataFrame({"a": np.arange(100.0), "y": np.arange(100) % 2})
    train, valid = course_split(frame)
    assert list(train.index) == list(frame.sample(frac=0.7, random_state=0).index)
    assert sorted([*train.index, *valid.index]) == list(range(100))


@pytest.mark.slow
def test_quick_run_writes_every_reported_figure(tmp_path):
    out = tmp_path / "results.json"
    markdown = tmp_path / "table.md"
    command = [
        sys.executable,
        str(BENCHMARKS / "run.py"),
        "--quick",
        "--workloads",
        "ionosphere_4x4",
        "--sides",
        "keras-tensorflow",
        "dlstructured-jax",
        "--out",
        str(out),
        "--markdown",
        str(markdown),
        "--timeout",
        "300",
    ]
    completed = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert completed.returncode == 0, completed.stdout + completed.stderr
    report = json.loads(out.read_text())
    assert {"machine", "matmul_peak_gflops", "results", "targets", "command"} <= set(report)
    assert report["matmul_peak_gflops"]["used"] > 0
    sides = report["results"]["ionosphere_4x4"]
    for side in ("keras-tensorflow", "dlstructured-jax"):
        result = sides[side]
        assert "error" not in result, result.get("error")
        assert result["epochs_run"] == WORKLOADS["ionosphere_4x4"].quick_epochs
        for key in (
            "fit_s",
            "process_s",
            "fit_ratio",
            "process_ratio",
            "val_metric_final",
            "val_metric_best",
            "samples_per_s",
            "overhead_ms_per_epoch",
            "gflops",
            "fraction_of_peak",
            "first_epoch_s",
            "steady_epoch_ms",
            "steady_overhead_ms_per_epoch",
            "peak_rss_mib",
        ):
            assert isinstance(result[key], float), (side, key)
        assert 0.0 <= result["val_metric_final"] <= 1.0
        assert result["n_train"] + result["n_valid"] == 351
    assert sides["keras-tensorflow"]["backend"] == "tensorflow"
    assert sides["dlstructured-jax"]["backend"] == "jax"
    assert "ionosphere_4x4" in markdown.read_text()
