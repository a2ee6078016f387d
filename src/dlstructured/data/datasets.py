"""Small real tables that need no download, and a reader for CSV and Parquet files.

The two bundled tables come from data that scikit-learn installs with itself, so the demo, the
examples and the documentation run without a network connection:

* ``load_diabetes``: 442 patients, 10 numeric measurements, and a regression target, the
  disease progression one year later (Efron et al., 2004).
* ``load_breast_cancer``: 569 tumours, 30 numeric measurements of cell nuclei, and a binary
  target with the labels ``"malignant"`` and ``"benign"`` (Wisconsin Diagnostic Breast Cancer).

``find_index_column`` spots a leading row-number column (as R's ``write.csv`` writes, for
example in the course's ``ion.csv``), which the command line and the examples drop after reading
a file with [`dlstructured.read_table`][dlstructured.data.prepare.read_table].
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd

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

    >>> from dlstructured.data.datasets import load_diabetes
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
    the label mapping of [`dlstructured.prepare`][dlstructured.data.prepare.prepare].

    Returns:
        A new DataFrame of 569 rows and 31 columns; the last one is ``diagnosis``.

    Raises:
        OSError: If scikit-learn's data files are missing from the installation.

    Example:

    >>> from dlstructured.data.datasets import load_breast_cancer
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
    happily learn from it, so the command line and the examples drop it.

    Args:
        frame: The table to inspect; it is not modified.

    Returns:
        The column's name, or ``None`` when the first column is not a row number.

    Raises:
        TypeError: If ``frame`` is not a pandas DataFrame.

    Example:

    >>> import pandas as pd
    >>> from dlstructured.data.datasets import find_index_column
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
