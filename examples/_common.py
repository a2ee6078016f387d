"""Set-up shared by the example scripts: which table to use, how long to train, where to save.

Every example runs on a table that scikit-learn installs (no download), or on a CSV or Parquet
file given on the command line, for example the course's own tables::

    python examples/03_stochastic_gradient_descent.py red-wine.csv --target quality
    python examples/06_binary_classification.py ion.csv --target Class

``--epochs N`` (or the environment variable ``DLSTRUCTURED_EXAMPLE_EPOCHS``) caps the number of
epochs, so tests run every example in seconds. ``--figures DIR`` (or
``DLSTRUCTURED_EXAMPLE_FIGURES``) saves the learning-curve pictures there as PNG files.
"""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dlstructured
from dlstructured.data.datasets import find_index_column, load_breast_cancer, load_diabetes

BUNDLED = {
    "diabetes": (load_diabetes, "progression"),
    "breast_cancer": (load_breast_cancer, "diagnosis"),
}


@dataclass
class Setup:
    """What an example works on: the table, its target column, the epoch cap and figure folder."""

    frame: Any
    target: str
    source: str
    max_epochs: int | None
    figures: Path | None

    def epochs(self, wanted: int) -> int:
        """The lesson's number of epochs, capped by ``--epochs`` when given."""
        return wanted if self.max_epochs is None else min(wanted, self.max_epochs)

    def save(self, figure: Any, name: str) -> None:
        """Save ``figure`` as ``<figures>/<name>.png`` when a figure folder was given."""
        if self.figures is not None:
            self.figures.mkdir(parents=True, exist_ok=True)
            figure.savefig(self.figures / f"{name}.png", dpi=90)
            print(f"saved {self.figures / f'{name}.png'}")


def setup(bundled: str, description: str) -> Setup:
    """Read the command line (ignored inside a notebook) and load the table."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("data", nargs="?", help=f"CSV or Parquet file (default: {bundled})")
    parser.add_argument("--target", help="column to predict (default: the last column)")
    parser.add_argument("--epochs", type=int, default=_env_int("DLSTRUCTURED_EXAMPLE_EPOCHS"))
    parser.add_argument("--figures", default=os.environ.get("DLSTRUCTURED_EXAMPLE_FIGURES"))
    in_notebook = "ipykernel" in sys.modules
    args = parser.parse_args([] if in_notebook else None)
    if args.data:
        frame = dlstructured.read_table(args.data)
        index = find_index_column(frame)  # a first column that only numbers the rows
        if index is not None:
            frame = frame.drop(columns=index)
        target = args.target or str(frame.columns[-1])
        source = args.data
    else:
        load, target = BUNDLED[bundled]
        frame = load()
        target = args.target or target
        source = f"dlstructured.data.datasets.load_{bundled}()"
    figures = Path(args.figures) if args.figures else None
    print(f"data: {source}, {frame.shape[0]} rows, target {target!r}")
    return Setup(frame, target, source, args.epochs, figures)


def _env_int(name: str) -> int | None:
    value = os.environ.get(name)
    return int(value) if value else None
