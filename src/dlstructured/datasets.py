"""Small real tables that need no download, and a reader for CSV and Parquet files.

The two bundled tables come from data that scikit-learn installs with itself, so the demo, the
examples and the documentation run without a network connection:

* :func:`load_diabetes`: 442 patients, 10 numeric measurements, and a regression target, the
  disease progression one year later (Efron et al., 2004).
* :func:`load_breast_cancer`: 569 tumours, 30 numeric measurements of cell nuclei, and a binary
  target with the labels ``"malignant"`` and ``"benign"`` (Wisconsin Diagnostic Breast Cancer).

:func:`read_table` reads a CSV or Parquet file into a pandas DataFrame and drops a leading
row-number column (as R's ``write.csv`` writes, for example the course's ``ion.csv``).
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

PARQUET_SUFFIXES = (".parquet", ".pq")
CSV_SUFFIXES = (".csv", ".txt", ".csv.gz", ".csv.bz2", ".csv.zip", ".csv.xz")

_UNNAMED = re.compile(r"^(Unnamed: 0(_level_0)?|index|)$")


def load_diabetes() -> pd.DataFrame:
    """Load scikit-learn's diabetes table as a DataFrame with a regression target.

    The ten features are the raw (unscaled) measurements: ``age``, ``sex``, ``bmi``, ``bp``
    (blood pressure) and six blood serum measurements ``s1`` ... ``s6``. The target column
    ``progression`` is a quantitative measure of disease progression one year after baseline
    (25 to 346).

    Returns:
        A new DataFrame of 442 rows and 11 columns; the last one is ``progression``.

    Raises:
        OSError: If scikit-learn's data files are missing from the installation.

    Example:

    >>> from dlstructured.datasets import load_diabetes
    >>> frame = load_diabetes()
    >>> frame.shape
    (442, 11)
    >>> frame.columns[-1]
    'progression'
    """
    from sklearn.datasets import load_diabetes as sklearn_load_diabetes

    bunch = sklearn_load_diabetes(as_frame=True, scaled=False)
    frame = bunch.frame.rename(columns={"target": "progression"})
    return frame.reset_index(drop=True)


def load_breast_cancer() -> pd.DataFrame:
    """Load scikit-learn's breast-cancer table as a DataFrame with a text binary target.

    The 30 features describe the cell nuclei in an image of a fine-needle aspirate (mean, error
    and worst value of radius, texture, perimeter ...). The target column ``diagnosis`` holds
    the strings ``"malignant"`` (212 rows) and ``"benign"`` (357 rows), so the table exercises
    the label mapping of :func:`dlstructured.prepare`.

    Returns:
        A new DataFrame of 569 rows and 31 columns; the last one is ``diagnosis``.

    Raises:
        OSError: If scikit-learn's data files are missing from the installation.

    Example:

    >>> from dlstructured.datasets import load_breast_cancer
    >>> frame = load_breast_cancer()
    >>> frame.shape
    (569, 31)
    >>> frame["diagnosis"].value_counts().to_dict()
    {'benign': 357, 'malignant': 212}
    """
    from sklearn.datasets import load_breast_cancer as sklearn_load_breast_cancer

    bunch = sklearn_load_breast_cancer(as_frame=True)
    frame = bunch.frame.drop(columns="target")
    names = np.asarray(bunch.target_names, dtype=object)
    frame["diagnosis"] = pd.Series(names[bunch.target.to_numpy()], dtype=object)
    return frame.reset_index(drop=True)


def find_index_column(frame: pd.DataFrame) -> str | None:
    """Return the name of a leading row-number column in ``frame``, or ``None``.

    A column counts as a row number when it is the first column, its header is empty (pandas
    names it ``"Unnamed: 0"``) or ``"index"``, and its values are the integers ``0 .. n-1`` or
    ``1 .. n`` in order. Such a column carries no information about the rows, but a model would
    happily learn from it, so :func:`read_table` drops it.

    Args:
        frame: The table to inspect; it is not modified.

    Returns:
        The column's name, or ``None`` when the first column is not a row number.

    Raises:
        TypeError: If ``frame`` is not a pandas DataFrame.

    Example:

    >>> import pandas as pd
    >>> from dlstructured.datasets import find_index_column
    >>> find_index_column(pd.DataFrame({"Unnamed: 0": [1, 2, 3], "x": [0.5, 0.1, 0.2]}))
    'Unnamed: 0'
    >>> find_index_column(pd.DataFrame({"x": [0.5, 0.1, 0.2]})) is None
    True
    """
    if not isinstance(frame, pd.DataFrame):
        raise TypeError(
            f"`frame` must be a pandas DataFrame. Received: frame of type {type(frame).__name__}"
        )
    if frame.shape[1] < 2 or frame.shape[0] == 0:
        return None
    name = frame.columns[0]
    if not isinstance(name, str) or not _UNNAMED.match(name.strip()):
        return None
    column = frame[name]
    if not pd.api.types.is_integer_dtype(column.dtype) or column.isna().any():
        return None
    values = column.to_numpy()
    start = int(values[0])
    if start not in (0, 1):
        return None
    expected = np.arange(start, start + len(values))
    return name if np.array_equal(values, expected) else None


def read_table(path: str | os.PathLike[str], *, drop_index: bool = True) -> pd.DataFrame:
    """Read a CSV or Parquet file into a DataFrame.

    Parquet is chosen by the ``.parquet`` or ``.pq`` suffix (it needs ``pyarrow``); anything
    else is read as CSV. With ``drop_index``, a leading row-number column (see
    :func:`find_index_column`) is removed; the returned frame's ``attrs["dropped_index_column"]``
    then names it, so a caller can tell the user.

    Args:
        path: Path of the file.
        drop_index: Remove a leading row-number column. Defaults to ``True``.

    Returns:
        The table as a new DataFrame.

    Raises:
        TypeError: If ``path`` is not a string or path, or ``drop_index`` is not a bool.
        FileNotFoundError: If there is no file at ``path``.
        IsADirectoryError: If ``path`` is a folder.
        ValueError: If the file cannot be parsed as a table or holds no columns.
        ImportError: If a Parquet file is given and ``pyarrow`` is not installed.

    Example:

    >>> import pathlib, tempfile
    >>> from dlstructured.datasets import read_table
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> _ = (folder / "t.csv").write_text('"","x","y"\\n"1",0.5,"a"\\n"2",0.7,"b"\\n')
    >>> frame = read_table(folder / "t.csv")
    >>> list(frame.columns), frame.attrs["dropped_index_column"]
    (['x', 'y'], 'Unnamed: 0')
    """
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(
            f"`path` must be a string or path. Received: path of type {type(path).__name__}"
        )
    if not isinstance(drop_index, bool):
        raise TypeError(f"`drop_index` must be True or False. Received: drop_index={drop_index!r}")
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(f"{str(path)!r} is a folder, not a data file.")
    if not path.exists():
        raise FileNotFoundError(f"No such file: {str(path)!r}.")
    if path.name.lower().endswith(PARQUET_SUFFIXES):
        try:
            frame = pd.read_parquet(path)
        except ImportError:
            raise
        except Exception as error:  # pyarrow raises its own exception types
            raise ValueError(
                f"Cannot read {str(path)!r} as a Parquet file: {_one_line(error)}"
            ) from error
    else:
        try:
            frame = pd.read_csv(path)
        except UnicodeDecodeError as error:
            raise ValueError(
                f"Cannot read {str(path)!r} as a CSV file: it is not UTF-8 text "
                f"({error.reason}). Save it as UTF-8 CSV, or as Parquet with a .parquet name."
            ) from error
        except (pd.errors.ParserError, pd.errors.EmptyDataError) as error:
            raise ValueError(
                f"Cannot read {str(path)!r} as a CSV file: {_one_line(error)}. Check that it is "
                "comma-separated text with a header row."
            ) from error
    if frame.shape[1] == 0:
        raise ValueError(f"{str(path)!r} holds no columns; give a table with a header row.")
    dropped = find_index_column(frame) if drop_index else None
    if dropped is not None:
        frame = frame.drop(columns=dropped)
    frame.attrs["dropped_index_column"] = dropped
    return frame


def _one_line(error: Any) -> str:
    return " ".join(str(error).split())
