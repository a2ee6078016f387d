"""Workload definitions and their data, shared by the harness and its worker processes.

Nothing here imports Keras: the parent process (``run.py``) reads the definitions to count
arithmetic and to label results, and each worker builds its own data from them with numpy and
pandas only, so both sides of a comparison see exactly the same rows.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

# Column names of the course's red-wine.csv (eleven measurements and the target).
RED_WINE_FEATURES = (
    "fixed acidity",
    "volatile acidity",
    "citric acid",
    "residual sugar",
    "chlorides",
    "free sulfur dioxide",
    "total sulfur dioxide",
    "density",
    "pH",
    "sulphates",
    "alcohol",
)
# Rough (low, high) range of each red-wine measurement, for synthetic rows of the same look.
_RED_WINE_RANGES = (
    (4.6, 15.9),
    (0.12, 1.58),
    (0.0, 1.0),
    (0.9, 15.5),
    (0.012, 0.611),
    (1.0, 72.0),
    (6.0, 289.0),
    (0.990, 1.004),
    (2.74, 4.01),
    (0.33, 2.0),
    (8.4, 14.9),
)


@dataclass(frozen=True)
class Workload:
    """One training (or inference/memory) benchmark and the course recipe it reproduces.

    Attributes:
        name: Key used on the command line and in the JSON.
        kind: ``"train"``, ``"inference"`` or ``"memory"``.
        task: ``"regression"`` or ``"binary"``.
        hidden_units: Widths of the hidden Dense layers.
        dropout_rate: Dropout after each hidden Dense (0 for none).
        batch_norm: Whether each hidden block has BatchNormalization.
        batch_norm_position: ``"before_dropout"`` or ``"after_dropout"`` (dlstructured's names).
        input_batch_norm: Whether the inputs are batch-normalized first.
        batch_size: Training batch size.
        epochs: Epochs of a full run.
        quick_epochs: Epochs of a ``--quick`` run.
        rows: Rows of synthetic data in a full run (real CSVs keep their own size).
        quick_rows: Rows of synthetic data in a ``--quick`` run.
        description: One line for the docs.
    """

    name: str
    kind: str
    task: str
    hidden_units: tuple[int, ...]
    dropout_rate: float = 0.0
    batch_norm: bool = False
    batch_norm_position: str = "before_dropout"
    input_batch_norm: bool = False
    batch_size: int = 256
    epochs: int = 100
    quick_epochs: int = 3
    rows: int = 0
    quick_rows: int = 0
    description: str = ""
    extra: dict = field(default_factory=dict)


WORKLOADS = {
    "redwine_512x3": Workload(
        name="redwine_512x3",
        kind="train",
        task="regression",
        hidden_units=(512, 512, 512),
        batch_size=256,
        epochs=100,
        quick_epochs=3,
        rows=1599,
        quick_rows=400,
        description="red wine, Dense(512) x3 ReLU, MAE, batch 256, no early stopping (lesson 3-4)",
    ),
    "redwine_1024x3_bn": Workload(
        name="redwine_1024x3_bn",
        kind="train",
        task="regression",
        hidden_units=(1024, 1024, 1024),
        dropout_rate=0.3,
        batch_norm=True,
        batch_norm_position="after_dropout",
        batch_size=256,
        epochs=100,
        quick_epochs=2,
        rows=1599,
        quick_rows=400,
        description=(
            "red wine, (Dense(1024)-Dropout(0.3)-BatchNorm) x3, MAE, batch 256 (lesson 5)"
        ),
    ),
    "ionosphere_4x4": Workload(
        name="ionosphere_4x4",
        kind="train",
        task="binary",
        hidden_units=(4, 4),
        batch_size=512,
        epochs=1000,
        quick_epochs=5,
        rows=351,
        quick_rows=351,
        description="ionosphere, Dense(4)-Dense(4)-Dense(1, sigmoid), batch 512, 1000 epochs",
    ),
    "hotel_89k": Workload(
        name="hotel_89k",
        kind="train",
        task="binary",
        hidden_units=(256, 256),
        dropout_rate=0.3,
        batch_norm=True,
        batch_norm_position="before_dropout",
        input_batch_norm=True,
        batch_size=512,
        # The course's recipe allows 200 epochs with patience-5 early stopping; a fixed count
        # keeps both sides' work equal, and 30 epochs weigh the one-off compiling as a real run
        # of this size would, where 5 measured little else.
        epochs=30,
        quick_epochs=3,
        rows=89_000,
        quick_rows=4_000,
        description=(
            "synthetic 89,000 x 63 hotel-shaped table, BatchNorm-(Dense(256)-BatchNorm-"
            "Dropout(0.3)) x2-Dense(1, sigmoid), batch 512 (lesson 6 exercise)"
        ),
    ),
    "inference": Workload(
        name="inference",
        kind="inference",
        task="regression",
        hidden_units=(512, 512, 512),
        batch_size=256,
        epochs=2,
        quick_epochs=1,
        rows=100_000,
        quick_rows=2_000,
        description=(
            "red-wine 512x3 model saved and loaded, predicting on raw DataFrame rows: one row "
            "(median latency) and 100,000 rows (throughput, preprocessing included)"
        ),
        extra={"single_row_calls": 100, "quick_single_row_calls": 20},
    ),
    "inference_ionosphere": Workload(
        name="inference_ionosphere",
        kind="inference",
        task="binary",
        hidden_units=(4, 4),
        batch_size=512,
        epochs=20,
        quick_epochs=2,
        rows=100_000,
        quick_rows=2_000,
        description=(
            "ionosphere 4-4-1 classifier saved and loaded, predicting on raw DataFrame rows: a "
            "model so small that preprocessing and the prediction path are all the cost"
        ),
        extra={"single_row_calls": 100, "quick_single_row_calls": 20},
    ),
    "memory_1m": Workload(
        name="memory_1m",
        kind="memory",
        task="regression",
        hidden_units=(64, 64),
        batch_size=512,
        epochs=1,
        quick_epochs=1,
        rows=1_000_000,
        quick_rows=20_000,
        description=(
            "1,000,000 x 50 numeric table, Dense(64) x2, one epoch: peak RSS growth of the "
            "training call"
        ),
        extra={"features": 50},
    ),
}

DEFAULT_WORKLOADS = (
    "redwine_512x3",
    "redwine_1024x3_bn",
    "ionosphere_4x4",
    "hotel_89k",
    "inference",
    "inference_ionosphere",
)


def dense_forward_flops(num_features: int, hidden_units: tuple[int, ...]) -> int:
    """Multiply-add FLOPs of one sample's forward pass through the Dense layers (2*in*out each).

    Bias additions, activations, batch normalization and dropout are left out; they are small
    next to the matrix products for every model here except the tiny ionosphere one.
    """
    widths = [num_features, *hidden_units, 1]
    return sum(2 * a * b for a, b in zip(widths[:-1], widths[1:], strict=True))


def epoch_flops(num_features: int, hidden_units: tuple[int, ...], n_train: int, n_valid: int):
    """FLOPs of one training epoch: forward+backward (3x forward) on train, forward on valid."""
    forward = dense_forward_flops(num_features, hidden_units)
    return 3 * forward * n_train + forward * n_valid


# --------------------------------------------------------------------------------------------
# Data. Every function returns a raw DataFrame (the target a column of it) and the target name.
# --------------------------------------------------------------------------------------------


def red_wine(data_dir: str | None, rows: int) -> tuple[pd.DataFrame, str, str]:
    """Red wine: the course CSV when ``data_dir`` has it, else ``rows`` synthetic rows."""
    if data_dir is not None and (Path(data_dir) / "red-wine.csv").is_file():
        return pd.read_csv(Path(data_dir) / "red-wine.csv"), "quality", "red-wine.csv"
    rng = np.random.default_rng(1599)
    columns = {}
    for name, (low, high) in zip(RED_WINE_FEATURES, _RED_WINE_RANGES, strict=True):
        columns[name] = rng.uniform(low, high, size=rows)
    frame = pd.DataFrame(columns)
    scaled = (frame - frame.min()) / (frame.max() - frame.min())
    weights = rng.normal(size=len(RED_WINE_FEATURES))
    signal = scaled.to_numpy() @ weights + 0.5 * np.sin(3.0 * scaled["alcohol"].to_numpy())
    signal = (signal - signal.mean()) / signal.std()
    quality = np.clip(np.round(5.6 + 0.8 * signal + rng.normal(0.0, 0.4, size=rows)), 3, 8)
    frame["quality"] = quality.astype(np.int64)
    return frame, "quality", "synthetic"


def ionosphere(data_dir: str | None, rows: int) -> tuple[pd.DataFrame, str, str]:
    """Ionosphere with ``Class`` mapped good->0, bad->1 and the constant column V2 dropped."""
    if data_dir is not None and (Path(data_dir) / "ion.csv").is_file():
        frame = pd.read_csv(Path(data_dir) / "ion.csv", index_col=0)
        frame["Class"] = frame["Class"].map({"good": 0, "bad": 1})
        return frame.drop(columns=["V2"]), "Class", "ion.csv"
    rng = np.random.default_rng(351)
    features = rng.uniform(-1.0, 1.0, size=(rows, 33))
    features[:, 0] = rng.integers(0, 2, size=rows)  # V1 is 0/1 in the real data
    logits = 2.5 * np.tanh(features[:, 1:6] @ rng.normal(size=5)) + rng.normal(0.0, 0.5, rows)
    frame = pd.DataFrame(features, columns=[f"V{i}" for i in range(1, 35) if i != 2])
    frame["Class"] = (logits > 0.6).astype(np.int64)
    return frame, "Class", "synthetic"


def hotel(rows: int) -> tuple[pd.DataFrame, str, str]:
    """A seeded synthetic table shaped like the course's prepared hotel data: 63 numeric columns."""
    rng = np.random.default_rng(89_000)
    features = rng.normal(size=(rows, 63))
    weights = rng.normal(scale=0.4, size=63)
    logits = features @ weights + 0.8 * features[:, 0] * features[:, 1] - 0.5
    labels = (logits + rng.logistic(size=rows) > 0).astype(np.int64)
    frame = pd.DataFrame(features, columns=[f"x{i:02d}" for i in range(63)])
    frame["is_canceled"] = labels
    return frame, "is_canceled", "synthetic"


def wide_numeric(rows: int, features: int) -> tuple[pd.DataFrame, str, str]:
    """A seeded numeric regression table (float64, as ``read_csv`` would give)."""
    rng = np.random.default_rng(1_000_000)
    values = rng.normal(size=(rows, features))
    target = values[:, :5].sum(axis=1) + rng.normal(0.0, 0.1, size=rows)
    frame = pd.DataFrame(values, columns=[f"f{i:02d}" for i in range(features)])
    frame["y"] = target
    return frame, "y", "synthetic"


def load(workload: Workload, data_dir: str | None, quick: bool):
    """Raw data of a workload: ``(frame, target, source)``."""
    rows = workload.quick_rows if quick else workload.rows
    if workload.name == "inference":
        # Inference trains on red wine; its 100,000 rows are drawn separately (inference_rows).
        return red_wine(data_dir, WORKLOADS["redwine_512x3"].quick_rows if quick else 1599)
    if workload.name.startswith("redwine"):
        return red_wine(data_dir, rows)
    if workload.name == "inference_ionosphere":
        return ionosphere(data_dir, WORKLOADS["ionosphere_4x4"].rows)
    if workload.name.startswith("ionosphere"):
        return ionosphere(data_dir, rows)
    if workload.name.startswith("hotel"):
        return hotel(rows)
    if workload.name.startswith("memory"):
        return wide_numeric(rows, workload.extra["features"])
    raise ValueError(f"Unknown workload. Received: workload={workload.name!r}")


def inference_rows(frame: pd.DataFrame, target: str, rows: int) -> pd.DataFrame:
    """``rows`` raw feature rows resampled (seeded) from ``frame``, target column removed."""
    rng = np.random.default_rng(100_000)
    picked = frame.drop(columns=[target]).iloc[rng.integers(0, len(frame), size=rows)]
    return picked.reset_index(drop=True)


def course_split(frame: pd.DataFrame):
    """The course's split: ``sample(frac=0.7, random_state=0)`` for training, the rest valid."""
    train = frame.sample(frac=0.7, random_state=0)
    valid = frame.drop(train.index)
    return train, valid


# The metrics each side reports, so that both do the same work: the course compiles binary
# classifiers with binary accuracy alone (dlstructured's default adds AUC, which costs a share of
# every step) and regression with the MAE loss (dlstructured's default MAE metric is the loss).
COURSE_METRICS = {"regression": None, "binary": ["binary_accuracy"]}
