"""Benchmark dlstructured against the course's own plain-Keras code, side by side in one run.

Usage::

    python benchmarks/run.py [--data-dir DIR] [--out results.json] [--markdown table.md]
                             [--workloads NAME ...] [--sides NAME ...] [--memory] [--quick]

Each (workload, side) runs in a fresh Python process (Keras fixes its backend per process), which
writes its own figures as JSON; this parent process never imports Keras. The sides are:

- ``keras-tensorflow``: the course's recipe in plain Keras on Keras's default backend, the
  baseline every ratio is taken against;
- ``dlstructured-jax``: the same work through ``prepare``, a builder and ``train`` on JAX (the
  backend the command line picks by default);
- ``dlstructured-tensorflow``: the same on TensorFlow (what a TensorFlow user of the Python API
  gets);
- ``keras-jax`` (not run by default): the plain-Keras recipe on JAX, for reference.

How the derived figures are computed (``--help`` repeats the short form):

- fit time: wall time of the ``model.fit(...)`` / ``dlstructured.train(...)`` call, compilation
  included; process time: wall time of the whole worker process, from its launch to its exit
  (interpreter start, imports, data loading, building, training, evaluation);
- GFLOP/s: Dense layers only, ``2*in*out`` FLOPs per sample forward, 3x that for a training step
  (forward + backward), plus one forward pass over the validation rows each epoch, divided by the
  fit time. The peak is the best of several float32 ``2048x2048`` numpy matrix products, measured
  in this process at the start and at the end of the run (the higher one is used);
- overhead per epoch: time per epoch minus the time the epoch's FLOPs take at that peak, i.e. all
  the time not explained by arithmetic at the machine's matrix-product speed (an upper bound on
  the true overhead, exact for a model that does almost no arithmetic like ionosphere 4-4-1);
- first epoch and steady epochs: a callback on each side notes when each epoch ends. The first
  epoch includes compiling (TensorFlow's tracing, XLA's compilation); "steady" is the median of
  the later epochs' times, and the steady GFLOP/s, share of peak and overhead use it. The JSON
  keeps the fit-average figures too (``gflops``, ``fraction_of_peak``,
  ``overhead_ms_per_epoch``);
- at peak (targets table): the best figure the Dense arithmetic allows at the measured peak, with
  nothing else (no compiling, no elementwise work, no overhead): for a fit-time ratio, every
  epoch's FLOPs at the peak divided by the baseline's fit time; for bulk prediction, the
  forward FLOPs per row at the peak. A target below it cannot be met on this machine;
- peak memory: ``ru_maxrss`` of the worker process; the memory workload reports instead the peak
  RSS growth of the training call measured from just before it (``/proc/self/clear_refs``).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import threading
import time
from importlib import metadata
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))

from _workloads import (  # noqa: E402
    COURSE_METRICS,
    DEFAULT_WORKLOADS,
    WORKLOADS,
    dense_forward_flops,
    epoch_flops,
)
from _workloads import load as load_data  # noqa: E402

SIDES = {
    "keras-tensorflow": ("keras", "tensorflow"),
    "dlstructured-jax": ("dlstructured", "jax"),
    "dlstructured-tensorflow": ("dlstructured", "tensorflow"),
    "keras-jax": ("keras", "jax"),
}
DEFAULT_SIDES = (
    "keras-tensorflow",
    "dlstructured-jax",
    "dlstructured-tensorflow",
    "dlstructured-cli",
)
BASELINE = "keras-tensorflow"
CLI_SIDE = "dlstructured-cli"  # the `dlstructured train` command, a process of its own


# ------------------------------------------------------------------------------------------
# Machine and peak.
# ------------------------------------------------------------------------------------------


def matmul_peak_gflops(size: int = 2048, repeats: int = 7) -> float:
    """Best float32 matrix-product speed numpy reaches here, in GFLOP/s (``2*n**3`` per product)."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal((size, size), dtype=np.float32)
    b = rng.standard_normal((size, size), dtype=np.float32)
    a @ b  # warm up the BLAS threads
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - start)
    return 2.0 * size**3 / best / 1e9


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _memory_gib() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 2**20, 1)
    except OSError:
        pass
    return None


def _versions() -> dict:
    versions = {"python": platform.python_version()}
    for name in ("dlstructured", "keras", "tensorflow", "jax", "jaxlib", "numpy", "pandas"):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def _git_commit() -> str | None:
    try:
        done = subprocess.run(
            ["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        )
        dirty = subprocess.run(
            ["git", "-C", str(REPO), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        )
        return done.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return None


def _gpus() -> list[str]:
    """GPU names from ``nvidia-smi -L`` (empty where there is none or no driver)."""
    try:
        done = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.SubprocessError):
        return []
    return [line.strip() for line in done.stdout.splitlines() if line.startswith("GPU")]


def machine_info() -> dict:
    cores = os.cpu_count()
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else cores
    return {
        "cpu": _cpu_model(),
        "logical_cpus": cores,
        "usable_cpus": usable,
        "memory_gib": _memory_gib(),
        "platform": platform.platform(),
        "versions": _versions(),
        "git_commit": _git_commit(),
        "gpus": _gpus(),
    }


# ------------------------------------------------------------------------------------------
# Running one side of one workload.
# ------------------------------------------------------------------------------------------


def _launch(command: list[str], env: dict, log_path: Path, timeout: float) -> dict:
    """Run a process to its end: wall time from launch to exit, exit status and its peak RSS."""
    start = time.perf_counter()
    with open(log_path, "w") as log:
        process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
        timer = threading.Timer(timeout, process.kill)
        timer.start()
        try:
            _, status, usage = os.wait4(process.pid, 0)
        finally:
            timer.cancel()
    process.returncode = os.waitstatus_to_exitcode(status)
    return {
        "process_s": time.perf_counter() - start,
        "returncode": process.returncode,
        "timed_out": process.returncode == -signal.SIGKILL,
        "process_peak_rss_mib": usage.ru_maxrss / 1024.0,
    }


def _environment(backend: str | None) -> dict:
    env = dict(os.environ)
    env.pop("KERAS_BACKEND", None)
    if backend is not None:
        env["KERAS_BACKEND"] = backend
    # The checkout's own sources win over any installed dlstructured.
    env["PYTHONPATH"] = os.pathsep.join([str(REPO / "src"), *filter(None, [env.get("PYTHONPATH")])])
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # keep TensorFlow's start-up chatter out of logs
    return env


def run_worker(side: str, workload: str, args, folder: Path) -> dict:
    """Run one side of one workload in a new process; its JSON plus process figures."""
    if side == CLI_SIDE:
        return run_cli(workload, args, folder)
    library_side, backend = SIDES[side]
    result_path = folder / f"{workload}-{side}.json"
    log_path = folder / f"{workload}-{side}.log"
    command = [sys.executable, str(HERE / "_worker.py"), "--side", library_side]
    command += ["--workload", workload, "--result", str(result_path)]
    if args.data_dir:
        command += ["--data-dir", args.data_dir]
    if args.quick:
        command.append("--quick")
    launched = _launch(command, _environment(backend), log_path, args.timeout)
    if result_path.is_file():
        result = json.loads(result_path.read_text())
    else:
        result = {"side": library_side, "workload": workload}
    result.update(launched)
    _note_failure(result, log_path, args.timeout)
    return result


def _note_failure(result: dict, log_path: Path, timeout: float) -> None:
    if result["timed_out"]:
        result["error"] = f"timed out after {timeout} s"
    elif result["returncode"] != 0 and "error" not in result:
        tail = log_path.read_text()[-1500:]
        result["error"] = f"process exited with status {result['returncode']}: {tail}"


def run_cli(workload: str, args, folder: Path) -> dict:
    """The ``dlstructured train`` command on the workload's data written as a CSV file.

    The CSV is written by this process first (not timed); the command's default backend (JAX) is
    used. Its figures come from the ``metrics.json`` the command writes.
    """
    spec = WORKLOADS[workload]
    result: dict = {"side": "dlstructured-cli", "workload": workload}
    if spec.kind != "train":
        result["skipped"] = "the command line has no equivalent of this workload"
        return result
    frame, target, source = load_data(spec, args.data_dir, args.quick)
    csv_path = folder / f"{workload}.csv"
    frame.to_csv(csv_path, index=False)
    out = folder / f"{workload}-cli"
    epochs = spec.quick_epochs if args.quick else spec.epochs
    command = [sys.executable, "-m", "dlstructured", "train", str(csv_path), "--target", target]
    command += ["--task", spec.task, "--hidden", ",".join(str(u) for u in spec.hidden_units)]
    command += ["--epochs", str(epochs), "--batch-size", str(spec.batch_size), "--patience", "0"]
    command += ["--seed", "0", "--backend", "jax", "--quiet", "--out", str(out)]
    if spec.dropout_rate:
        command += ["--dropout", str(spec.dropout_rate)]
    if spec.batch_norm:
        command.append("--batch-norm")
        if spec.batch_norm_position != "before_dropout":
            result["note"] = "the command line puts batch norm before dropout; the course after"
    if spec.input_batch_norm:
        command.append("--input-batch-norm")
    if COURSE_METRICS[spec.task] is not None:
        command += ["--metrics", ",".join(COURSE_METRICS[spec.task])]
    log_path = folder / f"{workload}-cli.log"
    result.update(_launch(command, _environment(None), log_path, args.timeout))
    result["data_source"] = source
    result["backend"] = "jax"
    metrics_path = out / "metrics.json"
    if metrics_path.is_file():
        summary = json.loads(metrics_path.read_text())
        result["cli_summary"] = summary
        result["engine"] = summary.get("engine")
        result["epochs_run"] = summary.get("epochs_run")
        result["fit_s"] = summary.get("fit_time_s")
        rows = summary.get("rows") or {}
        result["n_train"], result["n_valid"] = rows.get("train"), rows.get("valid")
        result["num_features"] = summary.get("num_features")
        final, best = summary.get("final") or {}, summary.get("best") or {}
        key = "val_mae" if spec.task == "regression" else "val_binary_accuracy"
        if key in final:
            # The command reports losses and MAE in the target's own units.
            result["val_metric_name"] = "val_mae_target_units" if key == "val_mae" else key
            result["val_metric_final"] = final[key]
            result["val_metric_best"] = best.get(key)
    result["peak_rss_mib"] = result["process_peak_rss_mib"]
    _note_failure(result, log_path, args.timeout)
    if "error" not in result and result.get("fit_s") is None:
        result["error"] = (
            f"no fit time in {metrics_path.name}: {sorted(result.get('cli_summary', {}))}"
        )
    return result


def derive(workload: str, result: dict, peak_gflops: float) -> None:
    """Add samples/s, GFLOP/s, fraction of peak and overhead per epoch to a training result."""
    spec = WORKLOADS[workload]
    if spec.kind == "inference" and result.get("bulk_rows_per_s") and result.get("num_features"):
        # Rows/s the Dense arithmetic alone would allow at the matmul peak: the ceiling of any
        # prediction path for this model on this machine.
        forward = dense_forward_flops(result["num_features"], spec.hidden_units)
        result["bulk_rows_per_s_at_peak"] = peak_gflops * 1e9 / forward
        result["bulk_fraction_of_peak"] = (
            result["bulk_rows_per_s"] / result["bulk_rows_per_s_at_peak"]
        )
    if spec.kind != "train" or "fit_s" not in result or not result.get("epochs_run"):
        return
    epochs, fit_s = result["epochs_run"], result["fit_s"]
    flops = epoch_flops(
        result["num_features"], spec.hidden_units, result["n_train"], result["n_valid"]
    )
    per_epoch_s = fit_s / epochs
    result["epoch_ms"] = per_epoch_s * 1000.0
    result["samples_per_s"] = result["n_train"] * epochs / fit_s
    result["flops_per_epoch"] = flops
    result["gflops"] = flops / per_epoch_s / 1e9
    result["fraction_of_peak"] = result["gflops"] / peak_gflops
    result["overhead_ms_per_epoch"] = (per_epoch_s - flops / (peak_gflops * 1e9)) * 1000.0
    # The Dense arithmetic of every epoch at the matmul peak, and nothing else (no compiling,
    # no elementwise work): no implementation on this machine fits faster.
    result["fit_s_at_peak"] = epochs * flops / (peak_gflops * 1e9)
    ends = result.get("epoch_end_s") or []
    if len(ends) >= 3:
        # The first epoch includes compiling (tf.function tracing, XLA); the steady epochs
        # after it show what each further epoch costs.
        steady_s = float(np.median(np.diff(ends)))
        result["first_epoch_s"] = ends[0]
        result["steady_epoch_ms"] = steady_s * 1000.0
        result["steady_gflops"] = flops / steady_s / 1e9
        result["steady_fraction_of_peak"] = result["steady_gflops"] / peak_gflops
        result["steady_overhead_ms_per_epoch"] = (
            steady_s - flops / (peak_gflops * 1e9)
        ) * 1000.0


def add_ratios(results: dict) -> None:
    """Fit-time and process-time ratios of every side against the plain-Keras baseline, and
    ``fit_ratio_at_peak``: the lowest fit ratio the arithmetic allows (see :func:`derive`)."""
    ratios = (
        ("fit_s", "fit_s", "fit_ratio"),
        ("process_s", "process_s", "process_ratio"),
        ("fit_s_at_peak", "fit_s", "fit_ratio_at_peak"),
    )
    for sides in results.values():
        base = sides.get(BASELINE, {})
        if "error" in base:
            continue
        for result in sides.values():
            if "error" in result:
                continue
            for key, base_key, ratio in ratios:
                if key in result and base.get(base_key):
                    result[ratio] = result[key] / base[base_key]


def check_targets(results: dict) -> list[dict]:
    """The issue's targets, each with the measured figure and whether it is met."""
    targets = []

    def add(name, workload, side, key, limit, at_most=True, floor_key=None):
        result = results.get(workload, {}).get(side, {})
        value = result.get(key)
        met = None if value is None else (value <= limit if at_most else value >= limit)
        targets.append(
            {
                "target": name,
                "workload": workload,
                "side": side,
                "figure": key,
                "limit": limit,
                "at_most": at_most,
                "measured": value,
                "met": met,
                # The best figure the arithmetic allows at the measured matmul peak.
                "at_peak": result.get(floor_key) if floor_key else None,
            }
        )

    for workload in results:
        if WORKLOADS[workload].kind == "train":
            add(
                "JAX fit time <= 0.25x plain Keras (TF)",
                workload,
                "dlstructured-jax",
                "fit_ratio",
                0.25,
                floor_key="fit_ratio_at_peak",
            )
            add(
                "`dlstructured train` whole process <= 0.33x plain-Keras script (TF)",
                workload,
                CLI_SIDE,
                "process_ratio",
                0.33,
            )
            add(
                "TF fit time <= 0.5x plain Keras (TF)",
                workload,
                "dlstructured-tensorflow",
                "fit_ratio",
                0.5,
                floor_key="fit_ratio_at_peak",
            )
    # Per epoch: the steady epochs (median after the first); compiling, a one-off cost, is in
    # the fit times above and in the first-epoch column.
    add(
        "ionosphere overhead per epoch on JAX <= 1 ms (steady epochs)",
        "ionosphere_4x4",
        "dlstructured-jax",
        "steady_overhead_ms_per_epoch",
        1.0,
    )
    add(
        "red wine 512x3 on JAX >= 60% of matmul peak (steady epochs)",
        "redwine_512x3",
        "dlstructured-jax",
        "steady_fraction_of_peak",
        0.6,
        at_most=False,
    )
    for side in ("dlstructured-jax", "dlstructured-tensorflow"):
        for workload in ("inference", "inference_ionosphere"):
            add("one-row prediction median <= 2 ms", workload, side, "single_row_median_ms", 2.0)
            add(
                "100,000 rows >= 500,000 rows/s",
                workload,
                side,
                "bulk_rows_per_s",
                500_000,
                at_most=False,
                floor_key="bulk_rows_per_s_at_peak",
            )
        if "memory_1m" in results:
            budget = results["memory_1m"].get(side, {}).get("budget_mib")
            if budget is not None:
                add(
                    "train: peak RSS growth < 2x float32 data + 1 GiB",
                    "memory_1m",
                    side,
                    "growth_fit_mib",
                    budget,
                )
                add(
                    "prepare+build+train: peak RSS growth < 2x float32 data + 1 GiB",
                    "memory_1m",
                    side,
                    "growth_whole_mib",
                    budget,
                )
    return [t for t in targets if t["side"] in results.get(t["workload"], {})]


# ------------------------------------------------------------------------------------------
# Output.
# ------------------------------------------------------------------------------------------


def _fmt(value, spec: str = ".3g") -> str:
    if value is None:
        return "-"
    if isinstance(value, str):
        return value
    return format(value, spec)


def table_rows(results: dict) -> dict[str, tuple[list[str], list[list[str]]]]:
    """Rows of the three tables (training, inference, memory), as strings."""
    train_header = [
        "workload",
        "side",
        "fit s",
        "process s",
        "fit x",
        "process x",
        "epochs",
        "val metric",
        "samples/s",
        "ms/epoch",
        "1st epoch s",
        "steady ms/ep",
        "steady overhead ms/ep",
        "steady GFLOP/s",
        "steady % peak",
        "RSS MiB",
    ]
    infer_header = [
        "workload",
        "side",
        "load s",
        "1 row ms (median)",
        "rows/s (bulk)",
        "rows/s at peak",
        "bulk rows",
        "process s",
        "RSS MiB",
    ]
    memory_header = [
        "workload",
        "side",
        "rows x cols",
        "float32 data MiB",
        "budget MiB",
        "growth: train MiB",
        "growth: whole MiB",
        "fit s",
        "RSS MiB",
    ]
    tables = {
        "train": (train_header, []),
        "inference": (infer_header, []),
        "memory": (memory_header, []),
    }
    for workload, sides in results.items():
        kind = WORKLOADS[workload].kind
        for side, r in sides.items():
            if "error" in r:
                row = [workload, side, "error"]
                tables[kind][1].append(row + [""] * (len(tables[kind][0]) - len(row)))
                continue
            if kind == "train":
                metric = r.get("val_metric_final")
                best = _fmt(r.get("val_metric_best"), ".3f")
                name = "MAE" if r.get("val_metric_name", "").startswith("val_mae") else "acc"
                tables[kind][1].append(
                    [
                        workload,
                        side,
                        _fmt(r.get("fit_s"), ".2f"),
                        _fmt(r.get("process_s"), ".1f"),
                        _fmt(r.get("fit_ratio"), ".2f"),
                        _fmt(r.get("process_ratio"), ".2f"),
                        _fmt(r.get("epochs_run"), "d"),
                        f"{name} {_fmt(metric, '.3f')} (best {best})",
                        _fmt(r.get("samples_per_s"), ",.0f"),
                        _fmt(r.get("epoch_ms"), ".1f"),
                        _fmt(r.get("first_epoch_s"), ".2f"),
                        _fmt(r.get("steady_epoch_ms"), ".1f"),
                        _fmt(r.get("steady_overhead_ms_per_epoch"), ".2f"),
                        _fmt(r.get("steady_gflops"), ".1f"),
                        _fmt(
                            None
                            if r.get("steady_fraction_of_peak") is None
                            else 100 * r["steady_fraction_of_peak"],
                            ".0f",
                        ),
                        _fmt(r.get("peak_rss_mib"), ".0f"),
                    ]
                )
            elif kind == "inference":
                tables[kind][1].append(
                    [
                        workload,
                        side,
                        _fmt(r.get("load_s"), ".2f"),
                        _fmt(r.get("single_row_median_ms"), ".2f"),
                        _fmt(r.get("bulk_rows_per_s"), ",.0f"),
                        _fmt(r.get("bulk_rows_per_s_at_peak"), ",.0f"),
                        _fmt(r.get("bulk_rows"), ",d"),
                        _fmt(r.get("process_s"), ".1f"),
                        _fmt(r.get("peak_rss_mib"), ".0f"),
                    ]
                )
            else:
                tables[kind][1].append(
                    [
                        workload,
                        side,
                        f"{r.get('rows', 0):,} x {r.get('features', 0)}",
                        _fmt(r.get("data_float32_mib"), ".0f"),
                        _fmt(r.get("budget_mib"), ".0f"),
                        _fmt(r.get("growth_fit_mib"), ".0f"),
                        _fmt(r.get("growth_whole_mib"), ".0f"),
                        _fmt(r.get("fit_s"), ".1f"),
                        _fmt(r.get("peak_rss_mib"), ".0f"),
                    ]
                )
    return {kind: table for kind, table in tables.items() if table[1]}


def format_text(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(str(cell)) for cell in column) for column in zip(header, *rows, strict=True)]

    def line(cells: list[str]) -> str:
        return "  ".join(cell.ljust(width) for cell, width in zip(cells, widths, strict=True))

    return "\n".join(
        [line(header), line(["-" * width for width in widths])] + [line(row) for row in rows]
    )


def format_markdown(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def format_conditions(report: dict) -> str:
    """The run's conditions as a Markdown list: when, what, on which machine, under what load."""
    machine = report["machine"]
    versions = ", ".join(f"{k} {v}" for k, v in machine["versions"].items() if v)
    sources = sorted(
        {r.get("data_source") for sides in report["results"].values() for r in sides.values()}
        - {None}
    )
    peak = report["matmul_peak_gflops"]
    return "\n".join(
        [
            f"- run: {report['started_utc']} (UTC), commit {machine['git_commit']}",
            f"- command: `{report['command']}`",
            f"- machine: {machine['cpu']}, {machine['usable_cpus']} usable of "
            f"{machine['logical_cpus']} logical CPUs, {machine['memory_gib']} GiB memory, "
            f"{machine['platform']}; GPUs: {machine['gpus'] or 'none found'}",
            f"- versions: {versions}",
            f"- data: {', '.join(sources) or '-'}; quick: {report['quick']}",
            f"- numpy float32 2048x2048 matmul peak: {peak['start']:.1f} GFLOP/s at the start, "
            f"{peak['end']:.1f} at the end",
            "- load average (1, 5, 15 min) before: "
            + ", ".join(f"{x:.2f}" for x in report["load_average_before"])
            + "; after: "
            + ", ".join(f"{x:.2f}" for x in report["load_average_after"]),
        ]
    )


def format_errors(results: dict) -> str:
    """One line per failed (workload, side), with the first line of its error."""
    lines = []
    for workload, sides in results.items():
        for side, result in sides.items():
            if "error" in result:
                lines.append(f"- {workload} / {side}: {result['error'].splitlines()[0][:200]}")
    return ("errors:\n" + "\n".join(lines)) if lines else ""


def format_targets(targets: list[dict], markdown: bool = False) -> str:
    rows = []
    for t in targets:
        verdict = {True: "met", False: "NOT met", None: "not measured"}[t["met"]]
        bound = ("<= " if t["at_most"] else ">= ") + _fmt(t["limit"], ",.4g")
        measured, at_peak = _fmt(t["measured"], ",.4g"), _fmt(t.get("at_peak"), ",.4g")
        rows.append([t["target"], t["workload"], t["side"], measured, bound, at_peak, verdict])
    header = ["target", "workload", "side", "measured", "limit", "at peak", "verdict"]
    return (format_markdown if markdown else format_text)(header, rows)


# ------------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None):
    parser = argparse.ArgumentParser(
        description="Benchmark dlstructured against the course's plain-Keras recipe.",
        epilog="Fit time: the fit/train call; process: the whole worker process. GFLOP/s count "
        "Dense layers only (2*in*out per sample forward, 3x for training, +1x validation). "
        "Overhead per epoch = epoch time - epoch FLOPs at the numpy matmul peak. Steady: the "
        "median epoch after the first (which includes compiling).",
    )
    parser.add_argument(
        "--data-dir",
        default=None,
        help="folder with the course's red-wine.csv and ion.csv; synthetic "
        "data of the same shapes otherwise",
    )
    parser.add_argument("--out", default="runs/benchmark-results.json", help="JSON file to write")
    parser.add_argument("--markdown", default=None, help="also write the tables as Markdown")
    parser.add_argument(
        "--workloads", nargs="+", choices=sorted(WORKLOADS), default=list(DEFAULT_WORKLOADS)
    )
    parser.add_argument(
        "--sides", nargs="+", choices=[*SIDES, CLI_SIDE], default=list(DEFAULT_SIDES)
    )
    parser.add_argument(
        "--memory",
        action="store_true",
        help="add the 1,000,000 x 50 training-memory workload (memory_1m)",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="few epochs and small data: checks the harness, not the speed",
    )
    parser.add_argument(
        "--timeout", type=float, default=1800.0, help="seconds allowed to each worker process"
    )
    args = parser.parse_args(argv)
    if args.memory and "memory_1m" not in args.workloads:
        args.workloads.append("memory_1m")
    if args.data_dir is not None and not Path(args.data_dir).is_dir():
        parser.error(f"--data-dir must be an existing folder. Received: {args.data_dir!r}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = datetime.datetime.now(datetime.timezone.utc)
    load_before = os.getloadavg()
    peak_start = matmul_peak_gflops()
    print(
        f"numpy float32 matmul peak: {peak_start:.1f} GFLOP/s; load average {load_before}",
        flush=True,
    )
    results: dict = {}
    with tempfile.TemporaryDirectory(prefix="dlstructured-bench-") as folder:
        for workload in args.workloads:
            results[workload] = {}
            for side in args.sides:
                print(f"running {workload} / {side} ...", end=" ", flush=True)
                result = run_worker(side, workload, args, Path(folder))
                if "skipped" in result:
                    print("skipped:", result["skipped"], flush=True)
                    continue
                results[workload][side] = result
                print("error" if "error" in result else f"{result['process_s']:.1f} s", flush=True)
    peak_end = matmul_peak_gflops()
    peak = max(peak_start, peak_end)
    for workload, sides in results.items():
        for result in sides.values():
            derive(workload, result, peak)
    add_ratios(results)
    targets = check_targets(results)
    report = {
        "started_utc": started.isoformat(timespec="seconds"),
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "quick": args.quick,
        "data_dir": args.data_dir,
        "machine": machine_info(),
        "load_average_before": load_before,
        "load_average_after": os.getloadavg(),
        "matmul_peak_gflops": {"start": peak_start, "end": peak_end, "used": peak},
        "baseline": BASELINE,
        "results": results,
        "targets": targets,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=1, default=str))
    tables = table_rows(results)
    print()
    for header, rows in tables.values():
        print(format_text(header, rows) + "\n")
    print(format_targets(targets))
    errors = format_errors(results)
    if errors:
        print("\n" + errors)
    print(
        f"\nload average before {load_before}, after {report['load_average_after']}; "
        f"matmul peak {peak:.1f} GFLOP/s; JSON written to {args.out}"
    )
    if args.markdown:
        parts = [format_conditions(report)]
        parts += [format_markdown(h, r) for h, r in tables.values()]
        parts.append(format_targets(targets, markdown=True))
        if format_errors(results):
            parts.append(format_errors(results))
        Path(args.markdown).parent.mkdir(parents=True, exist_ok=True)
        Path(args.markdown).write_text("\n\n".join(parts) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
