"""Turn a raw table into one float32 feature matrix, and back from predictions to labels.

``TabularPreprocessor`` holds everything a trained model needs to take raw rows: the kind
of each column, the scaling and imputation statistics (fitted on the training part only), the
categories of each categorical column, and the mapping of target labels. Its whole fitted state is
plain JSON-able data (``TabularPreprocessor.get_config``), so it is saved inside a ``.keras``
file and rebuilt without running any code from the file.

This module uses numpy and pandas only; it never imports Keras.

The feature matrix has, in this order:

1. one column per numeric column and per date-time part (``"when.year"``), scaled;
2. one missing-value indicator per numeric column that had missing values in the training part
   (``"age (missing)"``);
3. one-hot columns for each categorical column with at most ``max_one_hot`` categories
   (``"color=red"``, and ``"color=<missing>"`` when the training part had missing values);
   a category never seen in training sets none of them (the all-zeros "unknown" pattern);
4. one column of integer codes per categorical column with more categories (``"city (code)"``),
   read by ``dlstructured.models.layers.CategoryEmbedding``: code 0 is the "unknown" slot, 1 is
   "missing" and ``2 ..`` are the training categories in sorted order.
"""

from __future__ import annotations

import functools
import math
import numbers
import re
import sys
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from dlstructured._checks import check_choice, check_int, check_kinds
from dlstructured.data import steps as _steps
from dlstructured.errors import (
    ColumnTypeError,
    ConstantColumnWarning,
    DataError,
    DataWarning,
    ExtraColumnsWarning,
    ExtremeValuesWarning,
    IdentifierColumnWarning,
    IncompatibleModelError,
    MissingTargetWarning,
    PlaceholderValuesWarning,
)
from dlstructured.tasks import TASK_NAMES

FORMAT_VERSION = 1
"""Version of the preprocessing configuration; a saved model records it."""

KINDS = ("numeric", "categorical", "datetime", "ignore")
SCALINGS = ("minmax", "standard", "robust")
TARGET_SCALINGS = ("minmax", "standard", "none")
MISSING_POLICIES = ("impute", "error")

DEFAULT_MAX_ONE_HOT = 20
"""Categorical columns with at most this many categories are one-hot encoded; more get codes for
an embedding. 20 keeps every categorical column of the course (hotel months: 12) one-hot."""

IDENTIFIER_MIN_ROWS = 20
IDENTIFIER_RATIO = 0.95
"""A text column is identifier-like when it has at least ``IDENTIFIER_MIN_ROWS`` non-missing
values in the training part, more distinct values than ``max_one_hot``, and a distinct value in
at least 95% of those rows."""

CLIP = 1e6
"""Scaled values are clipped to [-CLIP, CLIP] so that wild inputs at prediction time stay finite
in float32."""

PLACEHOLDERS = frozenset(
    ["", "?", "??", "-", "--", ".", "*", "na", "n/a", "n.a.", "#n/a", "nan", "null", "none",
     "nil", "missing", "unknown", "not available", "empty"]
)
"""Texts that mean "no value" in a column of numbers, compared stripped and case-folded."""

PLACEHOLDER_MAX_OTHER = 2
PLACEHOLDER_OTHER_SHARE = 0.05
"""A text column is read as numbers with placeholders when it has at least one placeholder
(from ``PLACEHOLDERS``, or up to ``PLACEHOLDER_MAX_OTHER`` other distinct non-numeric texts
together in at most 5% of its non-missing rows), at least two distinct numbers, and every other
value is a number. A text column of numbers only (no placeholder) stays categorical: digits
given as text are codes (zip codes, years as labels)."""

EXTREME_RATIO = 100.0
"""A numeric column's scaling is flagged as dominated by extreme values when its range (min to
max, training part) is more than 100 times the range of its middle 90% of rows (5th to 95th
percentile): min-max scaling then squeezes 90% of the rows into less than 1% of [0, 1]."""

_DATE_TEXT = re.compile(
    r"\s*\d{4}[-/]\d{1,2}[-/]\d{1,2}"
    r"([ T]\d{1,2}:\d{2}(:\d{2}(\.\d+)?)?)?\s*(Z|[+-]\d{2}:?\d{2})?\s*"
)
"""A text column is a date-time column when every non-missing value is a year-first date
(``2024-01-31``, ``2024/01/31``), optionally with a time (``2024-01-31 12:00``,
``2024-01-31T12:00:05``) and a UTC offset, and pandas parses them all. Day-first or month-first
texts (``31/01/2024``) are ambiguous and stay text: pass ``kinds={'col': 'datetime'}``."""

DATETIME_PARTS = ("year", "month", "day", "day_of_week", "hour", "minute", "second")

UNKNOWN_CODE = 0
MISSING_CODE = 1


def embedding_width(input_dim: int) -> int:
    """Width of the embedding of a coded column with ``input_dim`` codes.

    The empirical rule of fastai, ``round(1.6 * input_dim ** 0.56)``, capped at 50 so that wide
    columns stay cheap.

    Example:

    >>> embedding_width(12), embedding_width(102), embedding_width(10002)
    (6, 21, 50)
    """
    return int(min(50, round(1.6 * input_dim**0.56)))


@dataclass(frozen=True)
class EmbeddingSpec:
    """One integer-coded column of the feature matrix and the embedding it gets.

    Attributes:
        column_index: Position of the coded column in the feature matrix.
        input_dim: Number of codes (training categories plus the unknown and missing slots).
        output_dim: Embedding width (see ``embedding_width``).
        column: Name of the raw column the codes come from.
    """

    column_index: int
    input_dim: int
    output_dim: int
    column: Any = None


# ----------------------------------------------------------------------------------------------
# Small helpers


def _warn(message: str, category: type[Warning], cli_message: str | None = None) -> None:
    """Warn with the caller's line outside dlstructured as the location.

    ``cli_message`` is the notice with its advice phrased for the command line (see
    [`DataWarning`][dlstructured.errors.DataWarning]).
    """
    level = 2
    frame = sys._getframe(1)
    while frame is not None and frame.f_globals.get("__name__", "").startswith("dlstructured"):
        frame = frame.f_back
        level += 1
    warnings.warn(category(message, cli_message=cli_message), stacklevel=level)


def _shown(value: Any) -> Any:
    """A value as a message shows it: numpy scalars as Python ones (``5.217``, not
    ``np.float64(5.217)``)."""
    return value.item() if isinstance(value, np.generic) else value


def _names(columns: Sequence[Any]) -> str:
    return ", ".join(repr(_shown(c)) for c in columns)


def _number(value: Any) -> str:
    """A number for a message, at most 6 significant digits (``5.217``, ``1e+300``)."""
    return f"{float(value):.6g}"


def _kinds_advice(columns: Sequence[Any], kind: str) -> tuple[str, str]:
    """The advice to set ``kind`` for ``columns``: for Python, and for the command line."""
    python = "kinds={" + ", ".join(f"{_shown(c)!r}: {kind!r}" for c in columns) + "}"
    command_line = "--kinds " + ",".join(f"{_shown(c)}={kind}" for c in columns)
    return python, command_line


def _is_missing_scalar(value: Any) -> bool:
    if value is None or value is pd.NA or value is pd.NaT:
        return True
    try:
        result = pd.isna(value)
    except (TypeError, ValueError):
        return False
    return bool(result) if isinstance(result, (bool, np.bool_)) else False


def _norm(value: Any) -> str | None:
    """The category string of one raw value (``None`` when missing).

    Numbers that are whole give the same string whether they arrive as int or float, so a column
    read as integers at training and as floats (because of a missing value) later still matches.
    """
    if isinstance(value, str):
        return value
    if _is_missing_scalar(value):
        return None
    if isinstance(value, (bool, np.bool_)):
        return "True" if value else "False"
    if isinstance(value, numbers.Integral):
        return str(int(value))
    if isinstance(value, numbers.Real):
        number = float(value)
        if number.is_integer() and abs(number) < 2**63:
            return str(int(number))
        return repr(number)
    if isinstance(value, bytes):
        return value.decode("utf-8", "backslashreplace")
    return str(value)


def _native(value: Any) -> Any:
    """A JSON-able Python scalar for a class label."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return int(value) if value.is_integer() and abs(value) < 2**53 else value
    return _norm(value)


def _label_sort_key(value: Any):
    if isinstance(value, bool):
        return (0, int(value), "")
    if isinstance(value, (int, float)):
        return (1, value, "")
    return (2, 0, str(value))


def _is_text_dtype(dtype: Any) -> bool:
    return pd.api.types.is_string_dtype(dtype) or pd.api.types.is_object_dtype(dtype)


def _is_bool_dtype(dtype: Any) -> bool:
    return pd.api.types.is_bool_dtype(dtype) and not isinstance(dtype, pd.CategoricalDtype)


def _is_number_dtype(dtype: Any) -> bool:
    return (
        pd.api.types.is_numeric_dtype(dtype)
        and not _is_bool_dtype(dtype)
        and not pd.api.types.is_complex_dtype(dtype)
    )


def infer_kind(series: pd.Series) -> str:
    """Infer the kind of one column: ``"numeric"``, ``"categorical"`` or ``"datetime"``.

    Numbers (including pandas' nullable ``Int64``/``Float64`` and time spans) are numeric;
    text (pandas' ``str`` dtype or ``object``), ``category`` and booleans are categorical;
    ``datetime64`` columns (with or without a time zone) are date-times. An ``object`` column that
    holds only numbers counts as numeric.

    Args:
        series: The column.

    Returns:
        The kind's name.

    Raises:
        ColumnTypeError: If the dtype cannot be used (complex numbers, periods, intervals ...);
            the message names the column.

    Example:

    >>> import pandas as pd
    >>> infer_kind(pd.Series([1.5, 2.0])), infer_kind(pd.Series(["a", "b"]))
    ('numeric', 'categorical')
    """
    dtype = series.dtype
    if isinstance(dtype, pd.CategoricalDtype) or _is_bool_dtype(dtype):
        return "categorical"
    if pd.api.types.is_datetime64_any_dtype(dtype):
        return "datetime"
    if pd.api.types.is_timedelta64_dtype(dtype) or _is_number_dtype(dtype):
        return "numeric"
    if pd.api.types.is_string_dtype(dtype) and not pd.api.types.is_object_dtype(dtype):
        return _text_kind(series)
    if pd.api.types.is_object_dtype(dtype):
        inferred = pd.api.types.infer_dtype(series, skipna=True)
        if inferred in ("integer", "floating", "mixed-integer-float", "decimal"):
            return "numeric"
        if inferred in ("datetime", "datetime64", "date"):
            return "datetime"
        if inferred in ("string", "mixed-integer"):  # "mixed-integer": 1, 2, "?" ...
            return _text_kind(series)
        return "categorical"
    python, command_line = _kinds_advice([series.name], "ignore")
    message = (
        f"Column {series.name!r} has dtype {dtype}, which dlstructured cannot use as a feature. "
        f"Convert it to numbers or text, or leave it out with {{}}. Received: dtype={dtype}"
    )
    raise ColumnTypeError(
        message.format(python), cli_message=message.format(command_line)
    )


# Text columns are first judged on this many distinct values; only a column whose sample could
# be numbers or dates is looked at in full.
_TEXT_SAMPLE = 200


def _text_kind(series: pd.Series) -> str:
    """``"datetime"`` for year-first date texts, ``"numeric"`` for numbers with placeholders,
    else ``"categorical"`` (see ``PLACEHOLDERS`` and ``_DATE_TEXT``)."""
    present = series.dropna()
    if present.empty:
        return "categorical"
    sample = pd.unique(present.iloc[: 20 * _TEXT_SAMPLE].astype(str))[:_TEXT_SAMPLE]
    if all(_DATE_TEXT.fullmatch(text) for text in sample):
        values = pd.unique(present.astype(str))
        if all(_DATE_TEXT.fullmatch(text) for text in values) and _parses_as_dates(values):
            return "datetime"
        return "categorical"
    if _placeholder_tokens(series, sample) is not None:
        return "numeric"
    return "categorical"


def _parses_as_dates(texts: np.ndarray) -> bool:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            pd.to_datetime(pd.Series(texts), errors="raise", format="mixed")
    except (ValueError, TypeError, OverflowError):
        return False
    return True


def _placeholder_tokens(series: pd.Series, sample: np.ndarray | None = None) -> list[str] | None:
    """The placeholder texts of a text column of numbers, or ``None`` when it is not one.

    ``sample``, some of the column's distinct texts, is checked first so that a column of words
    costs little.
    """
    if not _is_text_dtype(series.dtype):
        return None
    if sample is not None:
        parsed = pd.to_numeric(pd.Series(sample, dtype=object).str.strip(), errors="coerce")
        if int(parsed.notna().sum()) < 0.5 * len(sample):
            return None
    present = series.dropna()
    codes, texts = pd.factorize(present.astype(str))
    texts = pd.Series(texts, dtype=object)
    numbers = pd.to_numeric(texts.str.strip(), errors="coerce")
    is_number = numbers.notna().to_numpy()
    if is_number.all() or numbers.nunique() < 2:
        return None
    others = [t for t, n in zip(texts, is_number, strict=True) if not n]
    unlisted = [t for t in others if t.strip().casefold() not in PLACEHOLDERS]
    if unlisted:
        counts = np.bincount(codes, minlength=len(texts))
        unlisted_rows = int(sum(counts[k] for k in np.flatnonzero(texts.isin(unlisted))))
        if (
            len(unlisted) > PLACEHOLDER_MAX_OTHER
            or unlisted_rows > PLACEHOLDER_OTHER_SHARE * len(present)
        ):
            return None
    return sorted(others)


def _first_present(series: pd.Series) -> Any:
    """The first non-missing value of a column, to show in an error message."""
    present = series.dropna()
    return _shown(present.iloc[0]) if len(present) else None


def _numeric_values(series: pd.Series, name: Any, placeholders: Sequence[str] = ()) -> np.ndarray:
    """A float64 array of one numeric column (NaN for missing), or a DataError if it is not.

    In a text column, the ``placeholders`` found at fitting and the texts of
    ``PLACEHOLDERS`` are missing values.
    """
    dtype = series.dtype
    if _is_number_dtype(dtype) or _is_bool_dtype(dtype):
        return series.to_numpy(dtype=np.float64, na_value=np.nan)
    if pd.api.types.is_timedelta64_dtype(dtype):
        return series.dt.total_seconds().to_numpy(dtype=np.float64, na_value=np.nan)
    if _is_text_dtype(dtype) or isinstance(dtype, pd.CategoricalDtype):
        values = series.astype(object)
        if placeholders or _is_text_dtype(dtype):
            values = _without_placeholders(values, placeholders)
        try:
            converted = pd.to_numeric(values, errors="raise")
            return _numeric_values(pd.Series(converted), name)
        except (ValueError, TypeError):
            pass
        example = _first_non_number(values)
    else:
        example = _first_present(series)
    python, command_line = _kinds_advice([name], "categorical")
    message = (
        f"Column {name!r} must hold numbers (it was numeric when the preprocessing was fitted), "
        f"but it holds {dtype} values such as {example!r}: its kind changed. Convert the column "
        f"to numbers, or prepare the data again with {{}}. Received: dtype={dtype}"
    )
    raise DataError(message.format(python), cli_message=message.format(command_line))


def _without_placeholders(values: pd.Series, placeholders: Sequence[str]) -> pd.Series:
    """Text values with placeholder texts replaced by NaN (other values stripped of spaces)."""
    texts = values.where(values.isna(), values.astype(str))
    stripped = texts.str.strip()
    known = set(placeholders)
    is_placeholder = texts.isin(known) | stripped.str.casefold().isin(PLACEHOLDERS)
    return stripped.where(~is_placeholder, np.nan)


def _first_non_number(values: pd.Series) -> Any:
    """The first present value that is not a number (for a message)."""
    parsed = pd.to_numeric(values, errors="coerce")
    bad = values[parsed.isna() & values.notna()]
    return _shown(bad.iloc[0]) if len(bad) else _first_present(values)


def _datetime_values(series: pd.Series, name: Any) -> pd.Series:
    dtype = series.dtype
    if pd.api.types.is_datetime64_any_dtype(dtype):
        return series
    if series.isna().all():
        return pd.Series(pd.NaT, index=series.index, dtype="datetime64[ns]")
    if _is_text_dtype(dtype):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)
                return pd.to_datetime(series, errors="raise", format="mixed")
        except (ValueError, TypeError, OverflowError):
            pass
    example = _first_present(series)
    message = (
        f"Column {name!r} must hold dates or times (it did when the preprocessing was fitted), "
        f"but it holds {dtype} values such as {example!r}: its kind changed. {{}} "
        f"Received: dtype={dtype}"
    )
    raise DataError(
        message.format("Convert it with `pd.to_datetime`."),
        cli_message=message.format("Write the column as dates (2024-01-31) in the file."),
    )


def _datetime_part(values: pd.Series, part: str) -> np.ndarray:
    return getattr(values.dt, part).to_numpy(dtype=np.float64, na_value=np.nan)


def _category_source(series: pd.Series) -> str:
    return _dtype_source(series.dtype)


def _dtype_source(dtype: Any) -> str:
    if _is_bool_dtype(dtype):
        return "bool"
    if _is_number_dtype(dtype):
        return "number"
    return "text"


# Up to this many rows, categories are coded in Python: pandas's factorize costs tens of
# microseconds per call, which is most of a one-row prediction on a table of text columns.
_FEW_ROWS = 16


def _factorize(series: pd.Series) -> tuple[np.ndarray, list[str | None]]:
    """Codes per row (-1 for missing) and the category string of each code.

    Object columns are coded value by value (about 0.2 s per million rows): pandas merges
    values that compare equal across types (``True`` and ``1``), so a row's category would
    depend on which other rows share its batch.
    """
    if len(series) <= _FEW_ROWS or series.dtype == object:
        return _code_values(series.tolist())
    codes, uniques = pd.factorize(series, use_na_sentinel=True)
    return codes, [_norm(value) for value in uniques]


def _code_values(values: list) -> tuple[np.ndarray, list[str | None]]:
    """``_factorize`` of a column's raw values given as a list, coded one by one."""
    seen: dict[str, int] = {}
    codes = np.fromiter(
        (-1 if (string := _norm(value)) is None else seen.setdefault(string, len(seen))
         for value in values),
        np.int64, len(values),
    )
    return codes, list(seen)


def _scale_params(values: np.ndarray, scaling: str) -> tuple[float, float]:
    """``(center, half)`` such that ``(x / 2 - center / 2) / half`` is the scaled value.

    Halving first keeps every step finite for any finite input, even at float64's extremes.
    """
    if scaling == "minmax":
        low, high = float(values.min()), float(values.max())
        center, half = low, high * 0.5 - low * 0.5
    elif scaling == "robust":
        return _robust_params(values)
    else:
        size = float(np.abs(values).max())
        if size == 0.0:
            return 0.0, 1.0
        center = float(np.mean(values / size) * size)
        half = float(np.std(values / size) * size) * 0.5
    if not (half > 0.0 and math.isfinite(half)):
        half = 1.0
    return center, half


# Quantiles for the extreme-value check are taken on at most about this many evenly spaced rows.
_QUANTILE_SAMPLE = 65536


def _check_extremes(present: np.ndarray, name: Any) -> None:
    """Warn when a few extreme values dominate a column's scale (see ``EXTREME_RATIO``)."""
    if present.size < 20:
        return
    sample = present[:: max(1, present.size // _QUANTILE_SAMPLE)]
    low, high = np.quantile(sample, [0.05, 0.95], method="nearest")
    smallest, largest = float(present.min()), float(present.max())
    bulk = float(high) * 0.5 - float(low) * 0.5  # halves: finite even at float64's extremes
    whole = largest * 0.5 - smallest * 0.5
    if not (bulk > 0.0 and whole > EXTREME_RATIO * bulk):
        return
    message = (
        f"A few extreme values dominate the scaling of column {name!r}: its training values "
        f"range from {_number(smallest)} to {_number(largest)}, but 90% of them lie between "
        f"{_number(low)} and {_number(high)}, which scaling squeezes into a share of "
        f"{_number(bulk / whole)} of the range: the network can hardly tell those rows "
        "apart. {}"
    )
    python = (
        "Clip or transform the column first (`frame[col].clip(upper=...)`, `np.log1p`), or drop "
        "the rows with the extreme values."
    )
    command_line = (
        "Clip or transform the column in the file, or drop the rows with the extreme values."
    )
    _warn(
        message.format(python), ExtremeValuesWarning, cli_message=message.format(command_line)
    )


def _robust_params(values: np.ndarray) -> tuple[float, float]:
    """Robust scaling: ``(x - median) / IQR`` (half the range when the quartiles agree); a
    column of two values maps to -1 and +1."""
    low, high = float(values.min()), float(values.max())
    if np.unique(values).size == 2:
        return low * 0.5 + high * 0.5, high * 0.25 - low * 0.25
    with np.errstate(over="ignore"):
        first, third = (float(q) for q in np.quantile(values * 0.5, (0.25, 0.75)))
    half = third - first
    if not half > 0.0:
        half = high * 0.25 - low * 0.25
    if not (half > 0.0 and math.isfinite(half)):
        half = 1.0
    return _median(values), half


def smooth_clip(values: np.ndarray, limit: float = 3.0) -> np.ndarray:
    """``x / sqrt(1 + (x / limit)^2)``: about ``x`` near 0, never beyond ``+-limit``."""
    return values / np.sqrt(1.0 + np.square(values / limit))


def _median(values: np.ndarray) -> float:
    """The median; the middle pair is averaged by halves so that huge values cannot overflow."""
    with np.errstate(over="ignore"):
        median = float(np.median(values))
    if not math.isfinite(median):
        median = float(np.median(values * 0.5)) * 2.0
    return median


def _apply_scale(values: np.ndarray, center: Any, half: Any, limit: float = CLIP) -> np.ndarray:
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        scaled = values * 0.5
        scaled -= center * 0.5
        scaled /= half
    np.clip(scaled, -limit, limit, out=scaled)
    return scaled


# ----------------------------------------------------------------------------------------------
# Task inference


def _target_summary(series: pd.Series, limit: int | None = None) -> list[Any]:
    """Distinct non-missing target values; for numbers, only the first ``limit`` when given.

    Counting a few distinct numbers takes a few passes over the array, much cheaper than hashing
    a million distinct regression targets.
    """
    if limit is not None and _is_number_dtype(series.dtype):
        values = series.to_numpy(dtype=np.float64, na_value=np.nan)
        rest = values[~np.isnan(values)]
        found = []
        while rest.size and len(found) < limit:
            found.append(rest[0])
            rest = rest[rest != rest[0]]
        return found
    return list(pd.factorize(series, use_na_sentinel=True)[1])


def infer_task(series: pd.Series) -> str:
    """Infer the task from a target column.

    Exactly two distinct values make a binary task (any two values: ``good``/``bad``,
    ``True``/``False``, 0/1); numbers with more than two distinct values make regression (the
    course treats red wine's integer ``quality`` as regression); text with more than two values
    makes a multiclass task.

    Args:
        series: The target column.

    Returns:
        ``"regression"``, ``"binary"`` or ``"multiclass"``.

    Raises:
        DataError: If the target is entirely missing or holds one value only.

    Example:

    >>> import pandas as pd
    >>> infer_task(pd.Series([5, 6, 7])), infer_task(pd.Series(["good", "bad"]))
    ('regression', 'binary')
    """
    uniques = _target_summary(series, limit=3)
    _check_target_values(series, uniques)
    if len(uniques) == 2:
        return "binary"
    if _is_number_dtype(series.dtype) or infer_kind(series) == "numeric":
        return "regression"
    return "multiclass"


MAX_CLASS_SHARE = 0.5
"""A multiclass target may have at most one class per two labelled rows (and always 20)."""


def _check_class_labels(name: Any, labels: list[Any], rows: int) -> None:
    """Refuse a multiclass target that is a measurement, not a set of classes.

    Numbers that are not whole (``5.217``) are measurements; so is a target with more distinct
    values than ``max(20, MAX_CLASS_SHARE * rows)``: each class would have one or two rows.
    """
    fractional = [
        v for v in labels
        if isinstance(v, float) and math.isfinite(v) and not v.is_integer()
    ]
    too_many = len(labels) > max(20, MAX_CLASS_SHARE * rows)
    if not fractional and not too_many:
        return
    reason = (
        f"numbers that are not whole, such as {', '.join(_number(v) for v in fractional[:3])}"
        if fractional
        else f"one class per {_number(rows / len(labels))} rows"
    )
    message = (
        f"The target column {name!r} has {len(labels)} distinct values in {rows} rows "
        f"({reason}): it looks like a measurement, not a set of classes. Use {{}} for a "
        f"number, or group the values into classes first. Received: {{}}"
    )
    raise DataError(
        message.format("task='regression'", "task='multiclass'"),
        cli_message=message.format("--task regression", "--task multiclass"),
    )


def _check_target_values(series: pd.Series, uniques: list[Any]) -> None:
    name = series.name
    if len(uniques) == 0:
        raise DataError(
            f"The target column {name!r} is entirely missing: there is nothing to learn. "
            f"Fill it in, or choose another target. Received: target={name!r}"
        )
    if len(uniques) == 1:
        raise DataError(
            f"The target column {name!r} holds one value only ({_shown(uniques[0])!r}): there is "
            "nothing to learn. Choose another target, or add rows with other values. "
            f"Received: target={name!r}"
        )


# ----------------------------------------------------------------------------------------------
# The preprocessor


class TabularPreprocessor:
    """Learn, from a training table, how to turn raw rows into the network's feature matrix.

    Usually built by ``dlstructured.prepare``, which fits it on the training part of a split;
    use it directly to fit on a whole frame. Columns are numeric, categorical or date-time (see
    ``infer_kind``); the module documentation describes the feature matrix.

    Args:
        target: Name of the target column, or ``None`` for features only. Defaults to ``None``.
        task: ``"regression"``, ``"binary"`` or ``"multiclass"``, or ``None`` to infer it from
            the target (see ``infer_task``). Defaults to ``None``.
        kinds: Kind per column name, overriding the inferred one: ``"numeric"``,
            ``"categorical"``, ``"datetime"`` or ``"ignore"`` (leave the column out). Defaults to
            ``None``.
        scaling: ``"minmax"`` (to [0, 1] over the training part, the course's way),
            ``"standard"`` (zero mean, unit variance) or ``"robust"`` (RealMLP's: minus the
            median, over the interquartile range, then smoothly clipped to (-3, 3) by
            ``x / sqrt(1 + (x / 3)^2)``; a column of two values becomes -1/+1). Defaults to
            ``"minmax"``.
        target_scaling: For regression, ``"minmax"`` (the course's way), ``"standard"`` or
            ``"none"``/``None``. Predictions always come back in the target's own units.
            Defaults to ``"minmax"``.
        clip_target: For regression, clip predictions to the training part's target range.
            Defaults to ``False``.
        missing: ``"impute"``: missing numbers become the training median, plus an indicator
            column; ``"error"``: missing numbers raise a ``DataError`` listing the columns.
            Missing categories are always a category of their own. Defaults to ``"impute"``.
        max_one_hot: Categorical columns with at most this many categories are one-hot encoded,
            wider ones get integer codes for an embedding. Defaults to ``20``.
        positive_label: For a binary target, the label mapped to 1 (the other one is 0).
            Defaults to ``None``: the larger label in sorted order (``1``, ``True``, ``"yes"``
            over ``"no"``, ``"good"`` over ``"bad"``).

    Raises:
        TypeError: If an argument has the wrong type.
        ValueError: If an argument has a bad value.

    Example:

    >>> import pandas as pd
    >>> frame = pd.DataFrame({"size": [1.0, 3.0, None], "color": ["red", "blue", "red"],
    ...                       "label": ["no", "yes", "yes"]})
    >>> pre = TabularPreprocessor("label").fit(frame)
    >>> pre.feature_names
    ['size', 'size (missing)', 'color=blue', 'color=red']
    >>> pre.transform(frame).tolist()
    [[0.0, 0.0, 0.0, 1.0], [1.0, 0.0, 1.0, 0.0], [0.5, 1.0, 0.0, 1.0]]
    >>> pre.task, pre.classes
    ('binary', ['no', 'yes'])
    """

    def __init__(
        self,
        target: Any = None,
        *,
        task: str | None = None,
        kinds: Mapping[Any, str] | None = None,
        scaling: str = "minmax",
        target_scaling: str | None = "minmax",
        missing: str = "impute",
        max_one_hot: int = DEFAULT_MAX_ONE_HOT,
        positive_label: Any = None,
        clip_target: bool = False,
    ):
        if target is not None and not isinstance(target, (str, int)):
            raise TypeError(
                f"`target` must be a column name (a string). Received: target={target!r}"
            )
        if task is not None:
            check_choice("task", task, TASK_NAMES)
        kinds = check_kinds(kinds, KINDS)
        if target is not None and target in kinds:
            raise ValueError(
                f"`kinds` names the target column {target!r}; the target's handling follows from "
                f"`task`. Received: kinds={dict(kinds)!r}"
            )
        check_choice("scaling", scaling, SCALINGS)
        if target_scaling is None:
            target_scaling = "none"
        check_choice("target_scaling", target_scaling, TARGET_SCALINGS)
        check_choice("missing", missing, MISSING_POLICIES)
        if not isinstance(clip_target, bool):
            raise TypeError(
                f"`clip_target` must be True or False. Received: clip_target={clip_target!r}"
            )
        self.clip_target = clip_target
        max_one_hot = check_int("max_one_hot", max_one_hot, minimum=0)
        if positive_label is not None and not isinstance(positive_label, (str, int, float, bool)):
            raise TypeError(
                "`positive_label` must be one of the target's labels (a string, number or "
                f"boolean). Received: positive_label={positive_label!r}"
            )
        self.target = target
        self._task = task
        self.kinds = dict(kinds)
        self.scaling = scaling
        self.target_scaling = target_scaling
        self.missing = missing
        self.max_one_hot = max_one_hot
        self.positive_label = positive_label
        self._state: dict[str, Any] | None = None

    # -- public properties ------------------------------------------------------------------

    @property
    def fitted(self) -> bool:
        """Whether [`fit`][dlstructured.data.preprocessing.TabularPreprocessor.fit] has run."""
        return self._state is not None

    def _fitted_state(self) -> dict[str, Any]:
        if self._state is None:
            raise ValueError(
                "This TabularPreprocessor is not fitted yet. Call `fit(frame)` first, or use "
                "`dlstructured.prepare`."
            )
        return self._state

    @property
    def task(self) -> str | None:
        """The task: the fitted one once fitted, else the ``task`` option."""
        return self._state["task"] if self._state is not None else self._task

    @property
    def feature_names(self) -> list[str]:
        """Names of the feature matrix's columns, in order."""
        return list(self._layout()["feature_names"])

    @property
    def num_features(self) -> int:
        """Number of columns of the feature matrix."""
        return len(self._layout()["feature_names"])

    @property
    def embeddings(self) -> list[EmbeddingSpec]:
        """The integer-coded columns and their embeddings."""
        return list(self._layout()["embeddings"])

    @property
    def input_columns(self) -> list[Any]:
        """The raw columns the preprocessing reads, in the training frame's order."""
        return [entry["name"] for entry in self._fitted_state()["columns"]]

    @property
    def dropped_columns(self) -> dict[Any, str]:
        """Columns left out, with the reason.

        ``"constant"`` and ``"identifier"`` (each named in a warning at fitting), ``"ignored"``
        (``kinds=...: 'ignore'``), ``"dropped"`` (``prepare(drop=...)``) and ``"group"`` (the
        ``group_by`` column of a grouped split). The target is not listed.
        """
        return {name: reason for name, reason in self._fitted_state()["dropped"]}

    @property
    def classes(self) -> list[Any] | None:
        """Class labels in code order (``None`` for regression)."""
        classes = self._fitted_state()["classes"]
        return None if classes is None else list(classes)

    @property
    def num_classes(self) -> int | None:
        """Number of classes (``None`` for regression)."""
        classes = self._fitted_state()["classes"]
        return None if classes is None else len(classes)

    @property
    def target_unit_scale(self) -> float:
        """Multiply an error measured on the scaled target by this to get the target's units."""
        with np.errstate(over="ignore"):
            return float(self._fitted_state()["target_half"]) * 2.0

    # -- fitting ----------------------------------------------------------------------------

    def fit(self, frame: pd.DataFrame) -> TabularPreprocessor:
        """Fit on a whole frame (rows with a missing target are left out, with a warning).

        Args:
            frame: The training table; it is not modified.

        Returns:
            This preprocessor, fitted.

        Raises:
            TypeError: If ``frame`` is not a DataFrame or a column's dtype cannot be used.
            DataError: If the data cannot be used (the message names the column and the fix).
        """
        _check_frame(frame)
        rows = None
        if self.target is not None:
            rows = _rows_with_target(frame, self.target)
        self._fit(frame, rows, rows)
        return self

    def fit_transform_parts(
        self,
        frame: pd.DataFrame,
        parts: Sequence[np.ndarray],
        *,
        fit_rows: np.ndarray | None = None,
        label_rows: np.ndarray | None = None,
        exclude: Mapping[Any, str] | None = None,
    ) -> list[np.ndarray]:
        """Fit on some rows of a frame, then return the feature matrix of each part of it.

        This is ``prepare``'s step after the split: fitting on the training
        rows and transforming the training and validation rows in one pass reads each
        categorical column once.

        Args:
            frame: The whole table; it is not modified.
            parts: Row positions (integer arrays) of each part to transform.
            fit_rows: Positions of the rows whose statistics are fitted, or ``None`` for all.
                Defaults to ``None``.
            label_rows: Positions of the rows with a target (training and validation
                together): the task and the class labels are decided on them, so a label seen
                only in validation still gets a code. ``None`` means all rows. Defaults to
                ``None``.
            exclude: Columns to leave out, each with its reason as listed by
                ``dropped_columns`` (``"dropped"``, ``"group"``). Defaults to ``None``.

        Returns:
            One C-contiguous float32 matrix per part, in the order of ``parts``.

        Raises:
            TypeError: If ``frame`` is not a DataFrame, ``exclude`` is not a dict, or a column's
                dtype cannot be used.
            DataError: If the data cannot be used (the message names the column and the fix).
        """
        if exclude is None:
            exclude = {}
        if not isinstance(exclude, Mapping):
            raise TypeError(
                "`exclude` must be a dict of column name -> reason, such as {'id': 'dropped'}. "
                f"Received: exclude={exclude!r}"
            )
        factorized: dict = {}  # categorical columns are factorized once, for fit and transform
        self._fit(frame, fit_rows, label_rows, exclude=exclude, cache=factorized)
        return self._transform(frame, list(parts), warn_extra=False, cache=factorized)

    def _fit(
        self,
        frame: pd.DataFrame,
        train_rows: np.ndarray | None,
        label_rows: np.ndarray | None,
        exclude: Mapping[Any, str] | Sequence[Any] = (),
        cache: dict | None = None,
    ) -> None:
        """Fit statistics on ``frame``'s ``train_rows`` (positions; None for all).

        Kinds, task and class labels are decided on ``label_rows`` (the rows that have a target,
        training and validation together), so a label seen only in validation still has a code.
        """
        _check_frame(frame)
        self._check_kinds_columns(frame.columns)
        state = self._empty_state()
        state.update(self._fit_target(frame, train_rows, label_rows))
        notes = _FitNotes()
        for name in frame.columns:
            if name == self.target:
                continue
            if name in exclude:
                reason = exclude[name] if isinstance(exclude, Mapping) else "group"
                state["dropped"].append([name, reason])
                continue
            series = frame[name]
            kind = self.kinds.get(name) or infer_kind(series)
            if kind == "ignore":
                state["dropped"].append([name, "ignored"])
                continue
            if series.isna().all():
                notes.empty.append(name)
                continue
            placeholders = None
            if kind == "numeric" and _is_text_dtype(series.dtype):
                placeholders = _placeholder_tokens(series)
            if kind == "numeric":
                outcome = self._fit_numeric(
                    series, name, None, train_rows, state, placeholders=placeholders or ()
                )
            elif kind == "datetime":
                outcome = self._fit_datetime(series, name, train_rows, state)
            else:
                outcome = self._fit_categorical(
                    series, name, train_rows, state, name not in self.kinds, cache
                )
            notes.record(state, name, kind, outcome, placeholders)
        self._conclude(state, notes)

    def _check_kinds_columns(self, columns: pd.Index) -> None:
        missing_kinds = [c for c in self.kinds if c not in columns]
        if missing_kinds:
            raise DataError(
                f"`kinds` names columns that are not in the frame: {_names(missing_kinds)}. "
                f"Columns: {_names(list(columns)[:30])}. Received: kinds={self.kinds!r}",
                cli_message=f"--kinds names columns that are not in the file: "
                f"{_names(missing_kinds)}. Columns: {_names(list(columns)[:30])}.",
            )

    @staticmethod
    def _empty_state() -> dict[str, Any]:
        return {"columns": [], "numeric": [], "categorical": [], "dropped": []}

    def _conclude(self, state: dict[str, Any], notes: _FitNotes) -> None:
        """Raise or warn about what fitting found (``notes``), then keep ``state``."""
        if notes.empty:
            python, command_line = _kinds_advice(notes.empty, "ignore")
            raise DataError(
                f"Columns entirely missing: {_names(notes.empty)}. They hold no information: "
                f"drop them (`frame.drop(columns=[...])`) or leave them out with {python}.",
                cli_message=f"Columns entirely missing: {_names(notes.empty)}. They hold no "
                f"information: leave them out with --drop "
                f"{','.join(str(c) for c in notes.empty)}.",
            )
        if notes.strict_missing:
            raise DataError(
                f"Columns with missing values: {_names(notes.strict_missing)}, and "
                "missing='error' was asked. Fill them in, or use missing='impute' (median plus "
                "an indicator column)."
            )
        if notes.constant:
            _warn(
                "Dropped constant columns (one value in the training part): "
                f"{_names(notes.constant)}.",
                ConstantColumnWarning,
            )
        if notes.identifiers:
            python, command_line = _kinds_advice(notes.identifiers[:1], "categorical")
            message = (
                f"Dropped identifier-like text columns (a distinct value in nearly every row): "
                f"{_names(notes.identifiers)}. Keep one with {{}}."
            )
            _warn(
                message.format(python),
                IdentifierColumnWarning,
                cli_message=message.format(command_line),
            )
        if notes.placeholders:
            columns = [c["name"] for c in state["columns"] if c.get("placeholders")]
            python, command_line = _kinds_advice(columns[:1], "categorical")
            message = (
                f"Read text columns of numbers as numbers, their placeholder texts as missing "
                f"values (imputed, with an indicator column): {', '.join(notes.placeholders)}. "
                f"At prediction the same texts mean missing. To keep a column as text, use {{}}."
            )
            _warn(
                message.format(python),
                PlaceholderValuesWarning,
                cli_message=message.format(command_line),
            )
        if not state["numeric"] and not state["categorical"]:
            reasons = ", ".join(f"{n!r} ({r})" for n, r in state["dropped"]) or "none"
            message = (
                "No usable feature columns are left besides the target. Dropped columns: "
                f"{reasons}. Add feature columns, or keep a dropped one with {{}}."
            )
            raise DataError(
                message.format("`kinds=`"), cli_message=message.format("`--kinds COL=KIND`")
            )
        self._state = state
        self._layout_cache = None

    def _fit_target(self, frame, train_rows, label_rows) -> dict[str, Any]:
        if self.target is None:
            return self._target_state(None, None, [], 0)
        series = frame[self.target]
        if label_rows is not None:
            series = series.iloc[label_rows]
        task = self._task or infer_task(series)
        uniques = _target_summary(series, limit=2 if task == "regression" else None)
        _check_target_values(series, uniques)
        if task != "regression":
            return self._target_state(task, None, uniques, len(series))
        name = self.target
        if _is_text_dtype(series.dtype) or isinstance(series.dtype, pd.CategoricalDtype):
            if infer_kind(series) != "numeric":
                example = next(v for v in uniques if not _is_missing_scalar(v))
                message = (
                    f"A regression target must be numeric, but column {name!r} holds "
                    f"{series.dtype} values such as {_shown(example)!r}. Convert it to "
                    "numbers, or use {} or {}. Received: {}"
                )
                raise DataError(
                    message.format("task='binary'", "task='multiclass'", "task='regression'"),
                    cli_message=message.format(
                        "--task binary", "--task multiclass", "--task regression"
                    ),
                )
        values = _numeric_values(series, name)
        _check_finite_target(name, values)
        train_values = (
            values if train_rows is None else _numeric_values(frame[name].iloc[train_rows], name)
        )
        target_stats = _steps.TargetStep(task).fit(train_values).numeric
        return self._target_state(task, target_stats, [], len(series))

    def _target_state(
        self, task: str | None, stats: Any, labels: Sequence[Any], rows: int
    ) -> dict[str, Any]:
        """The target's part of the state, from its task and the statistics of the rows.

        ``stats`` is the regression target's ``NumericStats`` (training rows), ``labels`` the
        distinct labels of a classification target (every row with a target, ``rows`` of them).
        """
        # scaled target = (y / 2 - target_offset / 2) / target_half, finite for any finite y
        result = {"task": task, "classes": None, "target_offset": 0.0, "target_half": 0.5}
        if task is None:
            return result
        name = self.target
        if task == "regression":
            if self.target_scaling != "none":
                step = _steps.NumericStep(self.target_scaling, stats)
                result["target_offset"], result["target_half"] = step.scale()
            if self.clip_target:
                result["target_range"] = [stats.minimum, stats.maximum]
            return result
        labels = sorted({_native(v) for v in labels}, key=_label_sort_key)
        if task == "binary" and len(labels) != 2:
            message = (
                f"A binary task needs exactly two distinct target values, but column {name!r} "
                f"has {len(labels)}: {_names(labels[:10])}. Use {{}} or {{}}. Received: {{}}"
            )
            raise DataError(
                message.format("task='multiclass'", "task='regression'", "task='binary'"),
                cli_message=message.format(
                    "--task multiclass", "--task regression", "--task binary"
                ),
            )
        if self._task == "multiclass":
            # Only a task the caller chose: an inferred multiclass target is text-like labels.
            _check_class_labels(name, labels, rows)
        if self.positive_label is not None:
            if task != "binary":
                raise DataError(
                    "`positive_label` applies to binary tasks only; this one is "
                    f"{task}. Received: positive_label={self.positive_label!r}",
                    cli_message="--positive-label applies to binary tasks only; this one is "
                    f"{task}. Received: --positive-label {self.positive_label}",
                )
            matches = [
                v
                for v in labels
                if v == self.positive_label or _norm(v) == _norm(self.positive_label)
            ]
            if not matches:
                raise DataError(
                    f"`positive_label` must be one of the target's labels {_names(labels)}. "
                    f"Received: positive_label={self.positive_label!r}",
                    cli_message=f"--positive-label must be one of the target's labels "
                    f"{_names(labels)}. Received: --positive-label {self.positive_label}",
                )
            labels = [v for v in labels if v is not matches[0]] + [matches[0]]
        result["classes"] = labels
        return result

    def _fit_numeric(
        self, series, name, part, train_rows, state, values=None, placeholders=()
    ) -> str:
        if values is None:
            values = _numeric_values(series, name, placeholders)
            _check_finite_column(name, values)
        train = values if train_rows is None else values[train_rows]
        step = _steps.NumericStep(self.scaling).fit(train)
        return self._numeric_entry(step, name, part, state, bool(np.isnan(values).any()))

    def _numeric_entry(self, step, name, part, state, missing_anywhere: bool) -> str:
        """Add the entry of a fitted ``NumericStep`` to ``state``; return the column's outcome.

        ``missing_anywhere``: whether the column misses values in any row, validation included
        (``missing="error"`` refuses those too).
        """
        stats = step.stats
        if stats.count == 0:
            raise DataError(
                f"Column {name!r} has no values in the training part (all of its values are in "
                "the validation part). Use more rows, another seed, or drop the column."
            )
        has_missing = stats.missing > 0
        if (has_missing or missing_anywhere) and self.missing == "error":
            return "strict_missing"
        constant = stats.minimum == stats.maximum
        if constant and not has_missing:
            return "constant"
        center, half = step.scale()
        if part is None and not constant and self.scaling != "robust":
            # Robust scaling with smooth clipping is not flattened by a few extreme values.
            _check_extremes(stats.kept, name)
        entry = {
            "column": name,
            "part": part,
            "fill": step.fill(),
            "center": center,
            "half": half,
            "value": not constant,
            "indicator": has_missing,
        }
        if step.smooth_clip:
            entry["smooth_clip"] = True
        state["numeric"].append(entry)
        return "number"

    def _fit_datetime(self, series, name, train_rows, state) -> str:
        values = _datetime_values(series, name)
        steps, missing = {}, False
        for part in DATETIME_PARTS:
            part_values = _datetime_part(values, part)
            train = part_values if train_rows is None else part_values[train_rows]
            steps[part] = _steps.NumericStep(self.scaling).fit(train)
            missing = missing or bool(np.isnan(part_values).any())
        return self._datetime_entries(_steps.DateTimeStep(self.scaling, steps), name, state,
                                      missing)

    def _datetime_entries(self, step, name, state, missing_anywhere: bool) -> str:
        """Add the entries of a fitted ``DateTimeStep``'s parts that vary to ``state``."""
        before = len(state["numeric"])
        for part in DATETIME_PARTS:
            self._numeric_entry(step.parts[part], name, part, state, missing_anywhere)
        # Keep the parts that vary; one missing indicator per column (all parts share the NaT).
        parts = [entry for entry in state["numeric"][before:] if entry["value"]]
        has_missing = any(entry["indicator"] for entry in state["numeric"][before:])
        del state["numeric"][before:]
        if not parts:
            return "constant"
        for index, entry in enumerate(parts):
            entry["indicator"] = has_missing and index == 0
        state["numeric"].extend(parts)
        return "datetime"

    def _fit_categorical(self, series, name, train_rows, state, identifier_check, cache) -> str:
        source = _category_source(series)
        codes, strings = _factorize(series)
        if cache is not None:
            cache[name] = (codes, strings)
        train_codes = codes if train_rows is None else codes[train_rows]
        step = _steps.CategoricalStep(self.max_one_hot).fit_codes(train_codes, strings)
        present = int(np.count_nonzero(train_codes >= 0))  # texts that read as missing count
        identifier = identifier_check and _identifier_like(
            source, present, len(step.stats.counts), self.max_one_hot
        )
        return self._categorical_entry(step, name, source, identifier, state)

    def _categorical_entry(self, step, name, source: str, identifier: bool, state) -> str:
        """Add the entry of a fitted ``CategoricalStep`` to ``state``; return the outcome."""
        categories = step.stats.categories
        has_missing = step.stats.missing > 0
        if len(categories) + has_missing <= 1:
            return "constant"
        if identifier:
            return "identifier"
        state["categorical"].append(
            {
                "column": name,
                "encoding": step.encoding,
                "categories": categories,
                "missing": has_missing,
            }
        )
        return source

    # -- fitting from batches ---------------------------------------------------------------

    def fit_batches(
        self,
        batches: Iterable[Any],
        *,
        max_categories: int | None = None,
        exclude: Mapping[Any, str] | None = None,
    ) -> TabularPreprocessor:
        """Fit in one pass over batches of rows, for a table too large for one frame.

        Each item is a DataFrame (all of its rows are training rows) or a pair ``(frame,
        fit_rows)``, ``fit_rows`` a boolean mask of the rows whose statistics are fitted (the
        others, the validation rows, only count for the task and the class labels, as in
        ``prepare``). Every batch must have the columns of the first one.

        Column kinds, placeholder texts and, when ``task`` is not given, whether the target is
        numeric are decided on the first batch; a later batch that holds another kind of value
        raises a ``DataError``. The result is the same saved state as ``fit`` on the rows
        together, up to float rounding, while each numeric column has at most
        ``steps.MAX_KEPT_VALUES`` training values; beyond that the median and quartiles are
        approximate (see ``dlstructured.data.steps``).

        Args:
            batches: The batches, in row order.
            max_categories: Most categories a categorical column keeps: the most frequent
                ones; the rest go to the unknown slot, with a ``DataWarning`` naming the column.
                Beyond about four times this many distinct values the counts are approximate
                (the rarest are pruned as the pass goes). ``None`` keeps every category.
                Defaults to ``None``.
            exclude: Columns the batches leave out, each with its reason as
                ``dropped_columns`` lists it (``{"id": "dropped"}``). Defaults to ``None``.

        Returns:
            This preprocessor, fitted.

        Raises:
            TypeError: If a batch is not a DataFrame or ``max_categories`` not an integer.
            DataError: If the data cannot be used (the message names the column and the fix),
                or a batch's columns differ from the first batch's.

        Example:

        >>> import pandas as pd
        >>> frame = pd.DataFrame({"size": [1.0, 3.0, 2.0, 5.0], "label": ["a", "b", "a", "b"]})
        >>> whole = TabularPreprocessor("label").fit(frame)
        >>> parts = TabularPreprocessor("label").fit_batches([frame[:2], frame[2:]])
        >>> parts.get_config() == whole.get_config()
        True
        """
        if max_categories is not None:
            max_categories = check_int("max_categories", max_categories, minimum=1)
        fitter = None
        for item in batches:
            frame, fit_rows = item if isinstance(item, tuple) else (item, None)
            if fitter is None:
                _check_frame(frame)
                self._check_kinds_columns(frame.columns)
                fitter = _BatchFitter(self, frame, max_categories)
            fitter.add(frame, fit_rows)
        if fitter is None:
            raise DataError("`batches` held no batch: there is nothing to learn from.")
        state = self._empty_state()
        state.update(fitter.target_state())
        state["dropped"].extend([name, reason] for name, reason in (exclude or {}).items())
        notes = _FitNotes()
        fitter.entries(state, notes)
        self._conclude(state, notes)
        return self

    # -- layout -----------------------------------------------------------------------------

    def _layout(self) -> dict[str, Any]:
        cached = getattr(self, "_layout_cache", None)
        if cached is not None:
            return cached
        state = self._fitted_state()
        names: list[str] = []
        for entry in state["numeric"]:
            if entry["value"]:
                names.append(_feature_name(entry["column"], entry["part"]))
        value_count = len(names)
        for entry in state["numeric"]:
            if entry["indicator"]:
                names.append(f"{entry['column']} (missing)")
        indicator_count = len(names) - value_count
        categorical = []
        for entry in state["categorical"]:
            if entry["encoding"] == "one_hot":
                start = len(names)
                names.extend(f"{entry['column']}={c}" for c in entry["categories"])
                if entry["missing"]:
                    names.append(f"{entry['column']}=<missing>")
                categorical.append((entry, start))
        embeddings = []
        for entry in state["categorical"]:
            if entry["encoding"] == "embedding":
                start = len(names)
                names.append(f"{entry['column']} (code)")
                input_dim = len(entry["categories"]) + 2
                embeddings.append(
                    EmbeddingSpec(start, input_dim, embedding_width(input_dim), entry["column"])
                )
                categorical.append((entry, start))
        lookups = {
            id(entry): {c: k + 2 for k, c in enumerate(entry["categories"])}
            for entry, _ in categorical
        }
        sources = {entry["name"]: entry for entry in state["columns"]}
        self._layout_cache = {
            "feature_names": names,
            "value_count": value_count,
            "indicator_count": indicator_count,
            "categorical": categorical,
            "lookups": lookups,
            "embeddings": embeddings,
            "sources": sources,
            "known": set(sources)
            | {name for name, _ in state["dropped"]}
            | ({self.target} if self.target is not None else set()),
        }
        return self._layout_cache

    # -- transforming -----------------------------------------------------------------------

    def transform(self, frame: pd.DataFrame) -> np.ndarray:
        """Turn raw rows into the float32 feature matrix.

        Columns may come in any order; columns the preprocessing does not read are ignored with
        an ``ExtraColumnsWarning`` (the target and the columns left out
        at fitting are ignored silently).

        Args:
            frame: Raw rows with (at least) the columns of ``input_columns``.

        Returns:
            A C-contiguous float32 array of shape ``(len(frame), num_features)``.

        Raises:
            TypeError: If ``frame`` is not a DataFrame.
            DataError: If columns are missing (all are listed), a column's kind changed, values
                are infinite, or (with ``missing="error"``) numbers are missing.
        """
        if not isinstance(frame, pd.DataFrame):
            raise TypeError(
                f"`frame` must be a pandas DataFrame. Received: frame of type "
                f"{type(frame).__name__}"
            )
        return self._transform(frame, [None])[0]

    def _check_columns(self, frame: pd.DataFrame, warn_extra: bool) -> None:
        layout = self._layout()
        columns = frame.columns
        missing = [name for name in layout["sources"] if name not in columns]
        if missing:
            raise DataError(
                f"The input is missing {len(missing)} column(s) the model was trained on: "
                f"{_names(missing)}. Add them (missing values are allowed: use NaN/None)."
            )
        if warn_extra:
            extra = [name for name in columns if name not in layout["known"]]
            if extra:
                _warn(
                    f"Ignored columns the model does not use: {_names(extra[:20])}"
                    + (f" and {len(extra) - 20} more." if len(extra) > 20 else "."),
                    ExtraColumnsWarning,
                )
        if columns.has_duplicates:
            duplicated = sorted({str(c) for c in columns[columns.duplicated()]})
            raise DataError(
                f"The input has duplicate column names: {_names(duplicated)}. Rename them."
            )

    def _transform(
        self,
        frame: pd.DataFrame,
        row_sets: Sequence[np.ndarray | None],
        warn_extra: bool = True,
        cache: dict | None = None,
    ) -> list[np.ndarray]:
        """Feature matrices of ``frame``'s rows at each of ``row_sets`` (None: all rows).

        ``cache`` holds the factorized categorical columns of the same frame from ``_fit``."""
        state = self._fitted_state()
        layout = self._layout()
        self._check_columns(frame, warn_extra)
        size = len(frame)
        outputs = [
            np.zeros(
                (size if rows is None else len(rows), len(layout["feature_names"])), np.float32
            )
            for rows in row_sets
        ]
        infinite, strict_missing = [], []
        datetimes: dict[Any, pd.Series] = {}
        value_position = 0
        indicator_position = layout["value_count"]
        few = _FewRows(frame, layout["categorical"]) if size <= _FEW_ROWS else None
        block = (_SmallNumericBlock(frame, state["numeric"], None if few is None else few.matrix)
                 if size <= _BLOCK_ROWS else None)
        for entry in state["numeric"]:
            name, part = entry["column"], entry["part"]
            column = block.columns.get(name) if block is not None and part is None else None
            if column is not None:
                missing = block.missing[:, column]
                has_missing = bool(block.has_missing[column])
                is_infinite = bool(block.infinite[column])
                scaled = block.scaled[:, column]
            else:
                if part is None:
                    source = layout["sources"][name]
                    values = _numeric_values(frame[name], name, source.get("placeholders", ()))
                else:
                    if name not in datetimes:
                        datetimes[name] = _datetime_values(frame[name], name)
                    values = _datetime_part(datetimes[name], part)
                missing = np.isnan(values)
                has_missing = bool(missing.any())
                is_infinite = part is None and bool(np.isinf(values).any())
                if has_missing:
                    values = np.where(missing, entry["fill"], values)
                scaled = None
                if entry["value"]:
                    scaled = _apply_scale(values, entry["center"], entry["half"])
            if is_infinite:
                infinite.append(name)
            if has_missing and self.missing == "error":
                strict_missing.append(name)
            if entry["value"]:
                if entry.get("smooth_clip"):
                    scaled = (block.clipped[:, column] if column is not None
                              else smooth_clip(scaled))
                _write_column(outputs, row_sets, value_position, scaled)
                value_position += 1
            if entry["indicator"]:
                if has_missing:
                    _write_column(outputs, row_sets, indicator_position, missing)
                indicator_position += 1
        if infinite:
            raise DataError(
                f"Columns with infinite values: {_names(infinite)}. Replace them (e.g. with NaN, "
                "which is imputed) or drop those rows."
            )
        if strict_missing:
            raise DataError(
                f"Columns with missing values: {_names(strict_missing)}, and the model was "
                "prepared with missing='error'. Fill them in."
            )
        for entry, start in layout["categorical"]:
            name = entry["column"]
            factorized = (cache or {}).get(name)
            if few is not None and name in few.values:
                if factorized is None:
                    factorized = _code_values(few.values[name])
                slots = self._category_slots(None, entry, layout, factorized, few.dtypes[name])
            else:
                slots = self._category_slots(frame[name], entry, layout, factorized)
            if entry["encoding"] == "embedding":
                _write_column(outputs, row_sets, start, slots)
                continue
            # one-hot: slot 2.. -> column start + slot - 2; missing -> after the categories
            width = len(entry["categories"])
            offsets = slots - 2
            if entry["missing"]:
                offsets[slots == MISSING_CODE] = width
            for out, rows in zip(outputs, row_sets, strict=True):
                chosen = offsets if rows is None else offsets[rows]
                hit = np.flatnonzero(chosen >= 0)
                out[hit, start + chosen[hit]] = 1.0
        return outputs

    def _category_slots(self, series, entry, layout, factorized=None, dtype=None) -> np.ndarray:
        """Each row's slot of one categorical column: from ``series``, or from its
        ``factorized`` codes and ``dtype`` alone when ``series`` is None."""
        name = entry["column"]
        source = layout["sources"][name]["source"]
        lookup = layout["lookups"][id(entry)]
        missing_slot = MISSING_CODE if entry["missing"] else UNKNOWN_CODE
        codes, strings = factorized if factorized is not None else _factorize(series)
        dtype = series.dtype if series is not None else dtype
        received = _dtype_source(dtype)
        if received != source:
            _check_same_kind(name, source, received, dtype, strings, lookup)
        table = np.array(
            [missing_slot if s is None else lookup.get(s, UNKNOWN_CODE) for s in strings]
            + [missing_slot],
            dtype=np.int64,
        )
        return table[codes]

    # -- the target -------------------------------------------------------------------------

    def transform_target(self, values: Any) -> np.ndarray:
        """Map target values to what the network trains on.

        Args:
            values: Target values (a Series or array), none missing.

        Returns:
            Regression: float32, scaled as fitted. Binary: float32 0/1. Multiclass: int32 codes.

        Raises:
            DataError: If a label was never seen at fitting, or a regression value is not a
                finite number.
        """
        state = self._fitted_state()
        series = values if isinstance(values, pd.Series) else pd.Series(values, name=self.target)
        if state["task"] == "regression":
            numbers = _numeric_values(series, self.target)
            if not np.isfinite(numbers).all():
                raise DataError(
                    f"The target column {self.target!r} holds missing or infinite values. "
                    "Drop those rows first."
                )
            limit = float(np.finfo(np.float32).max)
            scaled = _apply_scale(numbers, state["target_offset"], state["target_half"], limit)
            return scaled.astype(np.float32)
        classes = state["classes"]
        codes = self._label_codes(series, classes)
        dtype = np.float32 if state["task"] == "binary" else np.int32
        return codes.astype(dtype)

    def _label_codes(self, series: pd.Series, classes: list[Any]) -> np.ndarray:
        lookup = {_label_key(c): k for k, c in enumerate(classes)}
        row_codes, uniques = pd.factorize(series, use_na_sentinel=True)
        table = []
        unknown = []
        for value in uniques:
            code = lookup.get(_label_key(_native(value)))
            if code is None:
                unknown.append(value)
                code = -1
            table.append(code)
        if unknown or (row_codes < 0).any():
            shown = [v for v in unknown[:10]] + (["<missing>"] if (row_codes < 0).any() else [])
            raise DataError(
                f"The target column {self.target!r} holds labels the model does not know: "
                f"{_names(shown)}. Known labels: {_names(classes[:20])}."
            )
        return np.asarray(table, dtype=np.int64)[row_codes]

    def inverse_transform_target(self, values: np.ndarray) -> np.ndarray:
        """Map network outputs back to the target's units or labels.

        Args:
            values: Regression: scaled predictions. Classification: integer class codes.

        Returns:
            Regression: float64 in the target's units. Classification: the original labels.
        """
        state = self._fitted_state()
        values = np.asarray(values)
        if state["task"] == "regression":
            with np.errstate(over="ignore", invalid="ignore"):
                result = (
                    values.astype(np.float64) * state["target_half"] * 2.0 + state["target_offset"]
                )
            if "target_range" in state:
                result = np.clip(result, *state["target_range"])
            return result
        return self.class_array[values.astype(np.int64)]

    @property
    def class_array(self) -> np.ndarray:
        """The class labels as a numpy array (labels' natural dtype)."""
        cached = getattr(self, "_class_array_cache", None)
        if cached is None:
            cached = pd.Index(self._fitted_state()["classes"]).to_numpy()
            self._class_array_cache = cached
        return cached

    # -- saving -----------------------------------------------------------------------------

    def get_config(self) -> dict[str, Any]:
        """The options and the whole fitted state, as plain JSON-able data."""
        config = {
            "format_version": FORMAT_VERSION,
            "target": self.target,
            "task": self._task,
            "kinds": [[name, kind] for name, kind in self.kinds.items()],
            "scaling": self.scaling,
            "target_scaling": self.target_scaling,
            "missing": self.missing,
            "max_one_hot": self.max_one_hot,
            "positive_label": self.positive_label,
            "state": None,
        }
        if self.clip_target:
            config["clip_target"] = True
        if self._state is not None:
            config["state"] = _plain(self._state)
        return config

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> TabularPreprocessor:
        """Rebuild a preprocessor from ``get_config``'s output.

        Raises:
            IncompatibleModelError: If the configuration was written by another format version.
            TypeError: If ``config`` is not a dict.
        """
        if not isinstance(config, Mapping):
            raise TypeError(
                f"`config` must be a dict from `get_config()`. Received: {type(config).__name__}"
            )
        check_format_version(config.get("format_version"))
        preprocessor = cls(
            config["target"],
            task=config["task"],
            kinds={name: kind for name, kind in config["kinds"]},
            scaling=config["scaling"],
            target_scaling=config["target_scaling"],
            missing=config["missing"],
            max_one_hot=config["max_one_hot"],
            positive_label=config["positive_label"],
            clip_target=config.get("clip_target", False),
        )
        state = config.get("state")
        if state is not None:
            preprocessor._state = _plain(dict(state))
            preprocessor._layout_cache = None
        return preprocessor

    def __repr__(self) -> str:
        if self._state is None:
            return f"TabularPreprocessor(target={self.target!r}, not fitted)"
        return (
            f"TabularPreprocessor(target={self.target!r}, task={self._state['task']!r}, "
            f"inputs={len(self._state['columns'])}, features={self.num_features})"
        )


# ----------------------------------------------------------------------------------------------
# Fitting: what both ways of fitting (a frame, batches) share


def _check_finite_column(name: Any, values: np.ndarray) -> None:
    infinite = np.isinf(values)
    if infinite.any():
        raise DataError(
            f"Column {name!r} holds infinite values ({int(infinite.sum())} rows). Replace "
            "them (e.g. with NaN, which is imputed) or drop those rows."
        )


def _check_finite_target(name: Any, values: np.ndarray) -> None:
    if np.isinf(values).any():
        raise DataError(
            f"The target column {name!r} holds infinite values. Remove or replace those "
            "rows (e.g. `frame[np.isfinite(frame[target])]`).",
            cli_message=f"The target column {name!r} holds infinite values. Remove or "
            "replace those rows in the file.",
        )


def _identifier_like(source: str, present: int, distinct: int, max_one_hot: int) -> bool:
    """Whether a text column looks like identifiers (see ``IDENTIFIER_RATIO``)."""
    return (
        source == "text"
        and present >= IDENTIFIER_MIN_ROWS
        and distinct > max_one_hot
        and distinct >= IDENTIFIER_RATIO * present
    )


@dataclass
class _FitNotes:
    """What fitting found about the columns, to raise or warn about once all are seen."""

    constant: list = field(default_factory=list)
    identifiers: list = field(default_factory=list)
    empty: list = field(default_factory=list)
    strict_missing: list = field(default_factory=list)
    placeholders: list = field(default_factory=list)

    def record(self, state: dict, name: Any, kind: str, outcome: str, placeholders: Any) -> None:
        """Note one column's outcome, and list it in ``state`` as kept or dropped."""
        if outcome == "constant":
            self.constant.append(name)
            state["dropped"].append([name, "constant"])
        elif outcome == "identifier":
            self.identifiers.append(name)
            state["dropped"].append([name, "identifier"])
        elif outcome == "strict_missing":
            self.strict_missing.append(name)
        else:
            column = {"name": name, "kind": kind, "source": outcome}
            if placeholders and outcome == "number":
                column["placeholders"] = placeholders
                self.placeholders.append(f"{name!r} ({_names(placeholders)})")
            state["columns"].append(column)


class _Values:
    """A numeric column's training values, gathered batch by batch.

    Batches are kept until they hold a quarter of ``steps.MAX_KEPT_VALUES`` values, then merged
    into the statistics at once: a small table gets the very statistics ``fit`` computes (the
    mean and variance of a larger one are merged exactly, up to float rounding), and a large one
    sorts its kept values once per quarter of that many values rather than once per batch, while
    the values waiting stay within a quarter of the kept ones.
    """

    def __init__(self, distinct: bool):
        self.distinct = distinct
        self.stats = _steps.NumericStats(few=() if distinct else None)
        self.pending: list[np.ndarray] = []
        self.size = 0

    def add(self, values: np.ndarray) -> None:
        self.pending.append(values)
        self.size += values.size
        if self.size >= _steps.MAX_KEPT_VALUES // 4:
            self._merge()

    def _merge(self) -> None:
        if self.pending:
            values = np.concatenate(self.pending) if len(self.pending) > 1 else self.pending[0]
            self.stats = self.stats.merge(_steps.NumericStats.of(values, distinct=self.distinct))
        self.pending, self.size = [], 0

    def finish(self) -> Any:
        """The statistics of every value added."""
        self._merge()
        return self.stats


# Categorical counts are pruned to twice ``max_categories`` once they exceed four times it.
_PRUNE_FACTOR, _KEEP_FACTOR = 4, 2


class _BatchFitter:
    """The one pass of ``TabularPreprocessor.fit_batches``: a step per column, each column's
    kind decided on the first batch."""

    def __init__(self, pre: TabularPreprocessor, first: pd.DataFrame, max_categories: Any):
        self.pre, self.max_categories = pre, max_categories
        self.columns = list(first.columns)
        self.kinds: dict[Any, str] = {}
        self.placeholders: dict[Any, Any] = {}
        self.steps: dict[Any, Any] = {}
        self.sources: dict[Any, str] = {}
        self.present: dict[Any, int] = {}  # training rows with a value (categorical)
        self.seen: dict[Any, bool] = {}  # any row with a value
        self.missing_anywhere: dict[Any, bool] = {}
        self.first_identifier: dict[Any, bool] = {}
        self.pruned: set = set()
        self.batches = 0
        robust = pre.scaling == "robust"
        for name in self.columns:
            if name == pre.target:
                continue
            series = first[name]
            kind = pre.kinds.get(name) or infer_kind(series)
            self.kinds[name] = kind
            if kind == "numeric":
                self.placeholders[name] = (
                    _placeholder_tokens(series) if _is_text_dtype(series.dtype) else None
                )
                self.steps[name] = _Values(robust)
            elif kind == "datetime":
                self.steps[name] = {part: _Values(robust) for part in DATETIME_PARTS}
            elif kind == "categorical":
                self.steps[name] = _steps.CategoricalStep(pre.max_one_hot)
                self.sources[name] = _category_source(series)
                self.present[name] = 0
            self.seen[name] = self.missing_anywhere[name] = False
        self.label_rows = self.unlabelled = 0
        self.labels: dict[Any, int] = {}
        self.target_values = _Values(False)
        self.numeric_target = False
        if pre.target is not None:
            if pre.target not in first.columns:
                _rows_with_target(first, pre.target)  # raises, naming the columns there are
            target = first[pre.target].dropna()
            self.numeric_target = pre._task == "regression" or (
                pre._task is None
                and (_is_number_dtype(target.dtype) or infer_kind(target) == "numeric")
            )
        self.many_labels = pre._task == "regression"

    def add(self, frame: pd.DataFrame, fit_rows: Any) -> None:
        """Add one batch's statistics (``fit_rows``: mask of its training rows, or None)."""
        self.batches += 1
        if not isinstance(frame, pd.DataFrame):
            raise TypeError(f"Each batch must be a pandas DataFrame. Received: batch "
                            f"{self.batches} of type {type(frame).__name__}")
        if list(frame.columns) != self.columns:
            raise DataError(
                f"Batch {self.batches} has other columns than the first batch: "
                f"{_names(list(frame.columns)[:30])} instead of {_names(self.columns[:30])}. "
                "Every batch must have the same columns."
            )
        fit_rows = (
            np.ones(len(frame), bool) if fit_rows is None else np.asarray(fit_rows, bool)
        )
        if self.pre.target is not None:
            labelled = frame[self.pre.target].notna().to_numpy()
            if not labelled.all():
                self.unlabelled += int((~labelled).sum())
                frame, fit_rows = frame[labelled], fit_rows[labelled]
            self._add_target(frame[self.pre.target], fit_rows)
        for name, kind in self.kinds.items():
            if kind != "ignore":
                self._add_column(frame[name], name, kind, fit_rows)

    def _add_target(self, series: pd.Series, fit_rows: np.ndarray) -> None:
        name = self.pre.target
        self.label_rows += len(series)
        if not self.many_labels:
            _, uniques = pd.factorize(series)
            for value in uniques:
                label = _native(value)
                self.labels[label] = self.labels.get(label, 0) + 1
            if self.numeric_target and self.pre._task is None and len(self.labels) > 2:
                self.many_labels = True  # a regression target: labels no longer matter
        if self.numeric_target:
            values = _numeric_values(series.iloc[np.flatnonzero(fit_rows)], name)
            _check_finite_target(name, values)
            self.target_values.add(values)

    def _add_column(self, series: pd.Series, name: Any, kind: str, fit_rows: np.ndarray) -> None:
        if kind == "categorical":
            codes, strings = _factorize(series)
            train_codes = codes[fit_rows]
            step = _steps.CategoricalStep(self.pre.max_one_hot).fit_codes(train_codes, strings)
            present = int(np.count_nonzero(train_codes >= 0))
            if name not in self.first_identifier:
                self.first_identifier[name] = _identifier_like(
                    self.sources[name], present, len(step.stats.counts), self.pre.max_one_hot
                )
            self.present[name] += present
            self.seen[name] = self.seen[name] or bool((codes >= 0).any())
            self.missing_anywhere[name] = self.missing_anywhere[name] or step.stats.missing > 0
            self.steps[name] = self.steps[name].merge(step)
            self._prune(name)
            return
        if kind == "numeric":
            values = _numeric_values(series, name, self.placeholders[name] or ())
            _check_finite_column(name, values)
            parts = {None: values}
        else:
            moments = _datetime_values(series, name)
            parts = {part: _datetime_part(moments, part) for part in DATETIME_PARTS}
        for part, values in parts.items():
            missing = np.isnan(values)
            self.seen[name] = self.seen[name] or not missing.all()
            self.missing_anywhere[name] = self.missing_anywhere[name] or bool(missing.any())
            gathered = self.steps[name] if part is None else self.steps[name][part]
            gathered.add(values[fit_rows])

    def _prune(self, name: Any) -> None:
        """Keep the counts of a column with very many categories bounded (approximate)."""
        step, limit = self.steps[name], self.max_categories
        if limit is None or len(step.stats.counts) <= _PRUNE_FACTOR * limit:
            return
        kept = _most_frequent(step.stats.counts, _KEEP_FACTOR * limit)
        step.stats = _steps.CategoricalStats(kept, step.stats.missing)
        self.pruned.add(name)

    def target_state(self) -> dict[str, Any]:
        """The target's part of the state, once every batch is added."""
        pre = self.pre
        if pre.target is None:
            return pre._target_state(None, None, [], 0)
        series = pd.Series([], dtype=object, name=pre.target)
        if self.label_rows == 0:
            _check_target_values(series, [])
        if self.unlabelled:
            _warn(
                f"Left out {self.unlabelled} of {self.unlabelled + self.label_rows} rows whose "
                f"target {pre.target!r} is missing.",
                MissingTargetWarning,
            )
        labels = list(self.labels)
        task = pre._task
        if task is None:
            if len(labels) == 2 and not self.many_labels:
                task = "binary"
            else:
                task = "regression" if self.numeric_target else "multiclass"
        if not self.many_labels:
            _check_target_values(series, labels)
        stats = self.target_values.finish() if task == "regression" else None
        return pre._target_state(task, stats, labels, self.label_rows)

    def entries(self, state: dict[str, Any], notes: _FitNotes) -> None:
        """Add every column's entry to ``state``, its outcome to ``notes``."""
        pre = self.pre
        for name, kind in self.kinds.items():
            if kind == "ignore":
                state["dropped"].append([name, "ignored"])
                continue
            if not self.seen[name]:
                notes.empty.append(name)
                continue
            missing = self.missing_anywhere[name]
            if kind == "numeric":
                step = _steps.NumericStep(pre.scaling, self.steps[name].finish())
                outcome = pre._numeric_entry(step, name, None, state, missing)
            elif kind == "datetime":
                parts = {
                    part: _steps.NumericStep(pre.scaling, gathered.finish())
                    for part, gathered in self.steps[name].items()
                }
                step = _steps.DateTimeStep(pre.scaling, parts)
                outcome = pre._datetime_entries(step, name, state, missing)
            else:
                outcome = self._categorical(name, state)
            notes.record(state, name, kind, outcome, self.placeholders.get(name))

    def _categorical(self, name: Any, state: dict[str, Any]) -> str:
        pre, step = self.pre, self.steps[name]
        counts = step.stats.counts
        if name in pre.kinds:
            identifier = False
        elif name in self.pruned:
            identifier = self.first_identifier[name]
        else:
            identifier = _identifier_like(
                self.sources[name], self.present[name], len(counts), pre.max_one_hot
            )
        limit = self.max_categories
        if not identifier and limit is not None and len(counts) > limit:
            kept = _most_frequent(counts, limit)
            rows = self.present[name] - sum(kept.values())
            some = "at least " if name in self.pruned else ""
            _warn(
                f"Column {name!r} has {some}{len(counts)} categories; kept the {limit} most "
                f"frequent. The values of the other {rows} training rows, and any other value "
                "at prediction, go to the unknown slot.",
                DataWarning,
            )
            step = _steps.CategoricalStep(step.max_one_hot,
                                          _steps.CategoricalStats(kept, step.stats.missing))
        return pre._categorical_entry(step, name, self.sources[name], identifier, state)


def _most_frequent(counts: Mapping[str, int], limit: int) -> dict[str, int]:
    """The ``limit`` most frequent categories (ties: the first in sorted order)."""
    chosen = sorted(counts.items(), key=lambda item: (-item[1], item[0]))[:limit]
    return dict(chosen)


# Frames of at most this many rows handle their plain numeric columns together (see
# `_SmallNumericBlock`); larger ones go column by column, so that no float64 copy of the whole
# table lives at once.
_BLOCK_ROWS = 4096


class _FewRows:
    """A few rows as one matrix of Python values, converted from the frame at once, and their
    categorical columns as lists (selecting each column costs pandas tens of microseconds,
    which is most of a one-row prediction).

    ``values`` maps each categorical column to its values, ``dtypes`` to its dtype. The values
    are what ``Series.tolist`` gives up to the scalar's type (``numpy.float64`` against
    ``float``), which ``_norm`` codes alike, so the codes match ``_factorize``'s. Columns of a
    date or time dtype are left to the per-column path.
    """

    def __init__(self, frame: pd.DataFrame, categorical: Sequence[tuple[dict, int]]) -> None:
        self.matrix = frame.to_numpy(dtype=object)
        positions = {name: position for position, name in enumerate(frame.columns)}
        dtypes = frame.dtypes.tolist()
        self.dtypes: dict[Any, Any] = {}
        self.values: dict[Any, list] = {}
        for entry, _ in categorical:
            name = entry["column"]
            position = positions[name]
            if not pd.api.types.is_datetime64_any_dtype(dtypes[position]):
                self.dtypes[name] = dtypes[position]
                self.values[name] = self.matrix[:, position].tolist()


class _SmallNumericBlock:
    """The numeric columns stored as numpy ints or floats, handled together for a few rows.

    A few prediction rows would otherwise cost pandas's and numpy's per-call overhead once per
    column. Each result matches the per-column path's exactly (the same operations, elementwise,
    on the same float64 values). Other columns (nullable, boolean, text holding numbers, dates)
    are left to the per-column path and its checks; ``columns`` maps the handled names to their
    index in the arrays (it is empty when fewer than two columns qualify).
    """

    def __init__(self, frame: pd.DataFrame, numeric: Sequence[dict],
                 matrix: np.ndarray | None = None) -> None:
        plain = {
            name: position
            for position, (name, dtype) in enumerate(zip(frame.columns, frame.dtypes, strict=True))
            if isinstance(dtype, np.dtype) and dtype.kind in "fiu"
        }
        entries = [e for e in numeric if e["part"] is None and e["column"] in plain]
        self.columns: dict[Any, int] = {}
        if len(entries) < 2:
            return
        names = [entry["column"] for entry in entries]
        if matrix is not None:
            # The frame as Python values (``_FewRows``): Python floats and ints convert to the
            # same float64 values as the columns' own.
            values = matrix[:, [plain[name] for name in names]].astype(np.float64)
        elif len(plain) == frame.shape[1]:
            # Every column is a plain number: convert the frame at once (selecting columns first
            # costs more than converting a few unused ones).
            values = frame.to_numpy(dtype=np.float64)[:, [plain[name] for name in names]]
        else:
            # By position: selecting by name costs pandas an index lookup per call.
            values = frame.iloc[:, [plain[name] for name in names]].to_numpy(dtype=np.float64)
        self.missing = np.isnan(values)
        self.has_missing = self.missing.any(axis=0)
        self.infinite = np.isinf(values).any(axis=0)
        if self.has_missing.any():
            fills = np.array([entry["fill"] for entry in entries], np.float64)
            values = np.where(self.missing, fills, values)
        centers = np.array([entry["center"] for entry in entries], np.float64)
        halves = np.array([entry["half"] for entry in entries], np.float64)
        self.scaled = _apply_scale(values, centers, halves)
        self.columns = {name: index for index, name in enumerate(names)}

    @functools.cached_property
    def clipped(self) -> np.ndarray:
        """``smooth_clip`` of ``scaled``, for the columns fitted with it (elementwise, so each
        column's values are those of the per-column path)."""
        return smooth_clip(self.scaled)


_SOURCE_WORDS = {"bool": "booleans (True/False)", "number": "numbers", "text": "text"}


def _check_same_kind(name, source, received, dtype, strings, lookup) -> None:
    """Raise a DataError when a categorical column's values changed kind since training.

    Values of another kind are accepted when each one is a training category as written (a
    boolean column read back from a CSV as the texts ``"True"``/``"False"``, codes ``1, 2``
    given as ``"1"``, ``"2"``); any other value means the column's kind changed (``1``/``0`` or
    ``"yes"``/``"no"`` for a boolean column).
    """
    if source == "bool":
        expected = {"True", "False"}
        unknown = [s for s in strings if s is not None and s not in expected]
    elif source == "number":
        present = pd.Series([s for s in strings if s is not None], dtype=object)
        unknown = present[pd.to_numeric(present, errors="coerce").isna()].tolist()
    else:
        unknown = [s for s in strings if s is not None and s not in lookup]
    if not unknown:
        return
    known = [text for text, _ in sorted(lookup.items(), key=lambda item: item[1])][:5]
    raise DataError(
        f"Column {name!r} changed kind: it held {_SOURCE_WORDS[source]} when the model was "
        f"trained (such as {_names(known)}), but it holds {_SOURCE_WORDS[received]} ({dtype}) "
        f"now, such as {_names(unknown[:3])}. Pass the values the column held in training. "
        f"Received: dtype={dtype}"
    )


def _write_column(outputs: list, row_sets: Sequence, position: int, vector: np.ndarray) -> None:
    """Write one feature (one value per frame row) into each output at its rows.

    Written at once, column by column, so that no more than one column's temporaries live at a
    time. (Gathering row blocks first measured no faster; a Fortran-ordered buffer was faster but
    doubles the memory.)
    """
    for out, rows in zip(outputs, row_sets, strict=True):
        out[:, position] = vector if rows is None else vector[rows]


def check_format_version(version: Any, source: str = "The model configuration") -> None:
    """Raise ``IncompatibleModelError`` unless ``version`` is ``FORMAT_VERSION``."""
    if version != FORMAT_VERSION:
        from dlstructured import __version__

        raise IncompatibleModelError(
            f"{source} was written with dlstructured model format version {version!r}, but this "
            f"dlstructured ({__version__}) reads format version {FORMAT_VERSION}. Load it with "
            "the dlstructured release that wrote it, or train and save the model again."
        )


def _label_key(value: Any) -> tuple[str, str]:
    if isinstance(value, (bool, np.bool_)):
        return ("bool", str(bool(value)))
    if isinstance(value, (int, float, np.integer, np.floating)):
        return ("number", _norm(value) or "")
    return ("text", str(value))


def _feature_name(column: Any, part: str | None) -> str:
    return str(column) if part is None else f"{column}.{part}"


def _plain(value: Any) -> Any:
    """A deep copy made of dicts, lists and Python scalars only (JSON-able)."""
    if isinstance(value, Mapping):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


def _check_frame(frame: Any) -> None:
    if not isinstance(frame, pd.DataFrame):
        raise TypeError(
            f"`frame` must be a pandas DataFrame (or a CSV/Parquet path for `prepare`). "
            f"Received: frame of type {type(frame).__name__}"
        )
    if len(frame) == 0 or len(frame.columns) == 0:
        raise DataError(
            f"The frame is empty ({len(frame)} rows, {len(frame.columns)} columns): there is "
            "nothing to learn from. Check how it was read or filtered."
        )
    columns = frame.columns
    if columns.has_duplicates:
        duplicated = sorted({str(c) for c in columns[columns.duplicated()]})
        raise DataError(f"The frame has duplicate column names: {_names(duplicated)}. Rename them.")
    bad = [c for c in columns if not isinstance(c, (str, int)) or isinstance(c, bool)]
    if bad:
        raise DataError(
            f"Column names must be strings or integers; found {_names(bad[:5])}. Rename them "
            "(e.g. `frame.columns = [str(c) for c in frame.columns]`)."
        )


def _rows_with_target(frame: pd.DataFrame, target: Any) -> np.ndarray | None:
    """Positions of rows with a target value (None when all have one); warns about the rest."""
    if target not in frame.columns:
        raise DataError(
            f"The target column {target!r} is not in the frame. Columns: "
            f"{_names(list(frame.columns)[:30])}. Received: target={target!r}"
        )
    missing = frame[target].isna().to_numpy()
    if not missing.any():
        return None
    if missing.all():
        raise DataError(
            f"The target column {target!r} is entirely missing: there is nothing to learn. "
            f"Fill it in, or choose another target. Received: target={target!r}"
        )
    _warn(
        f"Left out {int(missing.sum())} of {len(missing)} rows whose target {target!r} is missing.",
        MissingTargetWarning,
    )
    return np.flatnonzero(~missing)
