"""From a table and a target column to model-ready arrays: ``prepare``.

This module uses numpy and pandas only (no Keras), so preparing data is fast and works before a
Keras backend is chosen.
"""

from __future__ import annotations

import bz2
import csv
import gzip
import inspect
import lzma
import os
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from dlstructured._checks import check_choice, check_float, check_int
from dlstructured.data.datasets import find_index_column
from dlstructured.data.preprocessing import (
    EmbeddingSpec,
    TabularPreprocessor,
    _check_frame,
    _names,
    _rows_with_target,
    _warn,
    infer_task,
)
from dlstructured.data.split import split_positions
from dlstructured.errors import ColumnNamesWarning, DataError, SmallTrainingPartWarning

__all__ = ["EmbeddingSpec", "PreparedData", "prepare", "read_table", "split_frame"]

SPLITS = ("random", "stratified", "grouped", "hash")
_READERS = {".csv": "csv", ".tsv": "csv", ".txt": "csv", ".parquet": "parquet", ".pq": "parquet"}
_COMPRESSED = (".gz", ".bz2", ".zip", ".xz", ".zst")
_OPENERS = {".gz": gzip.open, ".bz2": bz2.open, ".xz": lzma.open}

SEPARATORS = (",", ";", "\t", "|")
"""The separators [`read_table`][dlstructured.data.prepare.read_table] recognizes by itself."""

_SNIFF_BYTES = 65536
_SNIFF_LINES = 50

MIN_TRAIN_ROWS = 2
SMALL_TRAIN_ROWS = 20
"""A split leaving fewer than ``MIN_TRAIN_ROWS`` training rows is refused; fewer than
``SMALL_TRAIN_ROWS``, and fewer than the validation part, gets a
``SmallTrainingPartWarning`` naming ``valid_fraction``."""


@dataclass(frozen=True, repr=False)
class PreparedData:
    """Model-ready arrays and the fitted preprocessing, from ``prepare``.

    Attributes:
        x_train: Training features, float32, C-contiguous, shape ``(n_train, num_features)``.
        y_train: Training targets: float32 (scaled if target scaling is on) for regression,
            float32 0/1 for binary, int32 class codes for multiclass.
        x_valid: Validation features, or ``None`` when ``valid_fraction=0``.
        y_valid: Validation targets, or ``None`` when ``valid_fraction=0``.
        task: ``"regression"``, ``"binary"`` or ``"multiclass"``.
        num_features: Number of feature columns.
        num_classes: ``None`` for regression, 2 for binary, k for multiclass.
        feature_names: Name of each feature column.
        embeddings: The integer-coded columns and their embedding sizes.
        preprocessor: The fitted ``TabularPreprocessor``.
        target: Name of the target column.
        target_unit_scale: Multiply an error measured on the scaled target (an MAE) by this to
            get the target's own units; 1.0 when the target is not scaled.
        train_index: Index labels of the training rows, in training order.
        valid_index: Index labels of the validation rows (empty when there are none).
    """

    x_train: np.ndarray
    y_train: np.ndarray
    x_valid: np.ndarray | None
    y_valid: np.ndarray | None
    task: str
    num_features: int
    num_classes: int | None
    feature_names: list[str]
    embeddings: list[EmbeddingSpec]
    preprocessor: TabularPreprocessor
    target: Any
    target_unit_scale: float
    train_index: pd.Index = field(default_factory=lambda: pd.RangeIndex(0))
    valid_index: pd.Index = field(default_factory=lambda: pd.RangeIndex(0))

    @property
    def classes(self) -> list[Any] | None:
        """Class labels in code order (``None`` for regression)."""
        return self.preprocessor.classes

    def __repr__(self) -> str:
        valid = 0 if self.x_valid is None else len(self.x_valid)
        return (
            f"PreparedData(task={self.task!r}, target={self.target!r}, train={len(self.x_train)}, "
            f"valid={valid}, num_features={self.num_features}, "
            f"embeddings={len(self.embeddings)}, num_classes={self.num_classes})"
        )


def read_table(
    path: str | os.PathLike, *, sep: str | None = None, encoding: str | None = None
) -> pd.DataFrame:
    """Read a CSV (``.csv``, ``.tsv``, also compressed) or Parquet (``.parquet``, ``.pq``) file.

    The separator of a CSV is found from its first lines (comma, semicolon, tab or ``|``; a
    ``.tsv`` file is tab-separated): Python's ``csv.Sniffer`` looks at up to 50 lines, and the
    file is then read by pandas's fast C reader. The text must be UTF-8 unless ``encoding`` says
    otherwise; a file that is not gets a [`DataError`][dlstructured.errors.DataError] saying which
    ``encoding=`` to pass (no encoding is guessed: a wrong guess would change the text in
    silence). Duplicate or empty column names, which pandas renames (``a.1``, ``Unnamed: 3``),
    get a ``ColumnNamesWarning`` (except a nameless first column of row
    numbers, as ``DataFrame.to_csv`` writes). For other reading options (an index column
    ...), read the file with pandas and pass the DataFrame.

    Args:
        path: The file.
        sep: The CSV separator, one character (``"\\t"`` and ``"tab"`` mean a tab), or ``None``
            to find it. Defaults to ``None``.
        encoding: The CSV text encoding (``"latin-1"``, ``"cp1252"`` ...), or ``None`` for
            UTF-8. Defaults to ``None``.

    Returns:
        The table.

    Raises:
        TypeError: If ``path``, ``sep`` or ``encoding`` has the wrong type.
        ValueError: If the extension is not one of the supported ones, ``sep`` is not one
            character, or ``encoding`` is not a known encoding.
        DataError: If the file does not exist, is not UTF-8 text (without ``encoding``), or
            cannot be read.
        ImportError: If a Parquet file is read without pyarrow (the message names the extra).

    Example:

    >>> import pathlib, tempfile
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> _ = (folder / "t.csv").write_text("a;b\\n1;x\\n2;y\\n")
    >>> read_table(folder / "t.csv").columns.tolist()
    ['a', 'b']
    """
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"`path` must be a file path. Received: path={path!r}")
    sep = _check_sep(sep)
    encoding = _check_encoding(encoding)
    path = Path(path)
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes and suffixes[-1] in _COMPRESSED:
        suffixes = suffixes[:-1]
    reader = _READERS.get(suffixes[-1] if suffixes else "")
    if reader is None:
        raise ValueError(
            f"`path` must end in .csv, .tsv, .parquet or .pq (a CSV may be compressed, e.g. "
            f".csv.gz). Read other files with pandas and pass the DataFrame. "
            f"Received: path={str(path)!r}"
        )
    if not path.is_file():
        raise DataError(f"No such data file: {str(path)!r}. Check the path. Received: {path}")
    if reader == "parquet":
        return _read_parquet(path)
    sample = _text_sample(path, encoding)
    if sep is None:
        sep = "\t" if suffixes[-1] == ".tsv" else _sniff_separator(sample)
    try:
        frame = pd.read_csv(path, sep=sep, encoding=encoding or "utf-8")
    except UnicodeDecodeError as error:
        raise _encoding_error(path, error, encoding) from error
    except Exception as error:  # noqa: BLE001 - the reader's own error is kept as the cause
        raise DataError(f"Could not read {str(path)!r} as {reader}: {error}") from error
    if sample is not None:
        _check_column_names(path, sample, sep, frame.columns, find_index_column(frame))
    return frame


def _check_sep(sep: Any) -> str | None:
    if sep is None:
        return None
    if not isinstance(sep, str):
        raise TypeError(f"`sep` must be a string (one character). Received: sep={sep!r}")
    sep = {"\\t": "\t", "tab": "\t"}.get(sep.lower(), sep)
    if len(sep) != 1 or sep in "\n\r\"":
        raise ValueError(
            f"`sep` must be one character, such as {_names(SEPARATORS)}. Received: sep={sep!r}"
        )
    return sep


def _check_encoding(encoding: Any) -> str | None:
    if encoding is None:
        return None
    if not isinstance(encoding, str):
        raise TypeError(
            f"`encoding` must be the name of a text encoding. Received: encoding={encoding!r}"
        )
    import codecs

    try:
        codecs.lookup(encoding)
    except LookupError:
        raise ValueError(
            "`encoding` must be a text encoding Python knows, such as 'utf-8', 'latin-1' or "
            f"'cp1252'. Received: encoding={encoding!r}"
        ) from None
    return encoding


def _read_parquet(path: Path) -> pd.DataFrame:
    try:
        return pd.read_parquet(path)
    except ImportError as error:
        raise ImportError(
            f"Reading the Parquet file {str(path)!r} needs pyarrow, which is not installed. "
            "Install it with: pip install 'dlstructured[parquet]'"
        ) from error
    except Exception as error:  # noqa: BLE001 - the reader's own error is kept as the cause
        raise DataError(f"Could not read {str(path)!r} as parquet: {error}") from error


def _text_sample(path: Path, encoding: str | None) -> str | None:
    """The first whole lines of a CSV file, decoded (``None`` for a .zst or .zip archive)."""
    suffix = path.suffix.lower()
    opener = _OPENERS.get(suffix, open if suffix not in _COMPRESSED else None)
    if opener is None:
        return None
    try:
        with opener(path, "rb") as handle:
            data = handle.read(_SNIFF_BYTES)
    except (OSError, EOFError, lzma.LZMAError, zipfile.BadZipFile) as error:
        raise DataError(f"Could not read {str(path)!r}: {error}") from error
    if len(data) == _SNIFF_BYTES and b"\n" in data:
        data = data[: data.rindex(b"\n") + 1]  # whole lines only: no character cut in two
    try:
        return data.decode(encoding or "utf-8-sig")
    except UnicodeDecodeError as error:
        raise _encoding_error(path, error, encoding) from error


def _encoding_error(path: Path, error: UnicodeDecodeError, encoding: str | None) -> DataError:
    if encoding is not None:
        return DataError(
            f"Could not read {str(path)!r} as {encoding} text: {error}. Check the file's "
            f"encoding. Received: encoding={encoding!r}"
        )
    byte = error.object[error.start : error.start + 1].hex()
    message = (
        f"Could not read {str(path)!r}: it is not UTF-8 text (byte 0x{byte} near position "
        f"{error.start} is not UTF-8). Files saved by Excel or older programs are often "
        "Windows-1252 or Latin-1: pass {}, or save the file as UTF-8."
    )
    return DataError(
        message.format("encoding='cp1252' (or 'latin-1')"),
        cli_message=message.format("--encoding cp1252 (or --encoding latin-1)"),
    )


def _sniff_separator(sample: str | None) -> str:
    """The separator of a CSV sample: comma unless ``csv.Sniffer`` finds another one."""
    if not sample:
        return ","
    lines = sample.splitlines()[:_SNIFF_LINES]
    try:
        found = csv.Sniffer().sniff("\n".join(lines), delimiters="".join(SEPARATORS)).delimiter
    except csv.Error:
        return ","
    return found if found in lines[0] else ","


def _check_column_names(
    path: Path, sample: str, sep: str, columns: pd.Index, row_numbers: Any = None
) -> None:
    """Warn about duplicate or empty names in a CSV header (pandas renamed them).

    A nameless first column of row numbers (``row_numbers``, as pandas's ``to_csv`` and R write)
    is the usual index column, not a naming slip: it is left to
    [`find_index_column`][dlstructured.data.datasets.find_index_column].
    """
    try:
        header = next(csv.reader([sample.splitlines()[0]], delimiter=sep))
    except (csv.Error, StopIteration, IndexError):
        return
    if len(header) != len(columns):
        return
    header = [name.strip() for name in header]
    counts = pd.Series(header).value_counts()
    notes = []
    for name in counts[counts > 1].index:
        if name:
            read = [columns[k] for k, raw in enumerate(header) if raw == name]
            notes.append(f"{name!r} appears {counts[name]} times (read as {_names(read)})")
    for position, raw in enumerate(header):
        if not raw and not (position == 0 and row_numbers == columns[0]):
            notes.append(f"column {position + 1} has no name (read as {columns[position]!r})")
    if notes:
        _warn(
            f"The header of {str(path)!r} has repeated or empty column names, which were renamed: "
            f"{'; '.join(notes)}. Give each column its own name in the file.",
            ColumnNamesWarning,
        )


def _split_positions(
    size: int,
    valid_fraction: float,
    split: str,
    seed: int,
    labels: np.ndarray | None = None,
    groups: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Training and validation positions among ``size`` rows, for ``split=``."""
    method = "sample" if split == "random" else split
    return split_positions(
        size, valid_fraction, method=method, seed=seed, labels=labels, groups=groups
    )


def _check_split_args(valid_fraction: Any, split: Any, seed: Any) -> tuple[float, str, int]:
    valid_fraction = check_float(
        "valid_fraction", valid_fraction, minimum=0.0, maximum=1.0, max_inclusive=False
    )
    split = check_choice("split", split, SPLITS)
    seed = check_int("seed", seed, minimum=0)
    return valid_fraction, split, seed


def _strata(labels: pd.Series, task: str) -> np.ndarray:
    if task == "regression":
        values = pd.to_numeric(labels, errors="coerce")
        bins = pd.qcut(values.rank(method="first"), q=min(10, len(values)), labels=False)
        return np.asarray(bins)
    return labels.to_numpy()


def split_frame(
    frame: pd.DataFrame,
    valid_fraction: float = 0.3,
    *,
    split: str = "random",
    target: Any = None,
    group_by: Any = None,
    seed: int = 0,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Split a frame into a training part and a validation part.

    ``split="random"`` reproduces the course exactly: with ``valid_fraction=0.3`` and ``seed=0``
    the training part is ``frame.sample(frac=0.7, random_state=0)`` (same rows, same order) and
    the validation part is the remaining rows in their original order. ``"stratified"`` keeps
    each target value's share in both parts (regression targets are binned into deciles);
    ``"grouped"`` puts every row of a group (the course's artists) on the same side, taking
    ``valid_fraction`` of the groups for validation; ``"hash"`` decides each row by a seeded
    hash of its position, both parts in row order (see ``dlstructured.data.split``).

    Args:
        frame: The table; it is not modified.
        valid_fraction: Share of rows (of groups for ``"grouped"``) kept for validation, in
            [0, 1). Defaults to ``0.3``.
        split: ``"random"``, ``"stratified"``, ``"grouped"`` or ``"hash"``. Defaults to
            ``"random"``.
        target: Target column, needed for ``"stratified"``. Defaults to ``None``.
        group_by: Group column, needed for ``"grouped"``. Defaults to ``None``.
        seed: Seed of the split; the same seed gives the same split. Defaults to ``0``.

    Returns:
        ``(train_frame, valid_frame)``.

    Raises:
        TypeError: If an argument has the wrong type.
        ValueError: If an argument has a bad value or a needed column is missing.

    Example:

    >>> import pandas as pd
    >>> frame = pd.DataFrame({"x": range(10)})
    >>> train, valid = split_frame(frame, 0.3, seed=0)
    >>> train.equals(frame.sample(frac=0.7, random_state=0))
    True
    >>> valid.index.tolist()
    [0, 3, 5]
    """
    if not isinstance(frame, pd.DataFrame):
        raise TypeError(f"`frame` must be a pandas DataFrame. Received: {type(frame).__name__}")
    valid_fraction, split, seed = _check_split_args(valid_fraction, split, seed)
    labels, groups = _split_columns(frame, split, target, group_by)
    if labels is not None:
        labels = _strata(labels, infer_task(labels))
    train, valid = _split_positions(len(frame), valid_fraction, split, seed, labels, groups)
    return frame.iloc[train], frame.iloc[valid]


def _split_columns(frame, split, target, group_by):
    labels = groups = None
    if split == "stratified":
        if target is None or target not in frame.columns:
            raise ValueError(
                "split='stratified' needs the target column in the frame. "
                f"Received: target={target!r}"
            )
        labels = frame[target]
    if split == "grouped":
        if group_by is None or group_by not in frame.columns:
            raise ValueError(
                "split='grouped' needs `group_by`, the name of a column of the frame (the "
                f"course groups songs by artist). Received: group_by={group_by!r}"
            )
        groups = frame[group_by].to_numpy()
    elif group_by is not None:
        raise ValueError(
            f"`group_by` applies to split='grouped' only. Received: group_by={group_by!r}, "
            f"split={split!r}"
        )
    return labels, groups


def _check_drop(drop: Any, frame: pd.DataFrame, target: Any) -> list[Any]:
    """The column names of ``prepare(drop=...)``, checked against the frame."""
    if drop is None:
        return []
    if isinstance(drop, (str, int)) and not isinstance(drop, bool):
        drop = [drop]
    if not isinstance(drop, Sequence) or isinstance(drop, (str, bytes)):
        raise TypeError(
            f"`drop` must be a list of column names. Received: drop={drop!r}"
        )
    unknown = [name for name in drop if name not in frame.columns]
    if unknown:
        raise DataError(
            f"`drop` names columns that are not in the frame: {_names(unknown)}. Columns: "
            f"{_names(list(frame.columns)[:30])}. Received: drop={list(drop)!r}",
            cli_message=f"--drop names columns that are not in the file: {_names(unknown)}. "
            f"Columns: {_names(list(frame.columns)[:30])}.",
        )
    if target in drop:
        raise ValueError(
            f"`drop` names the target column {target!r}. Received: drop={list(drop)!r}"
        )
    return list(drop)


def _check_train_size(train_rows: int, valid_rows: int, valid_fraction: float) -> None:
    """Refuse or flag a split that leaves too few training rows (see ``SMALL_TRAIN_ROWS``)."""
    message = (
        f"valid_fraction={valid_fraction} leaves {train_rows} training rows "
        f"({valid_rows} for validation){{}}"
    )
    cli = f"--valid-fraction {valid_fraction} leaves {train_rows} training rows ({valid_rows} " \
        "for validation){}"
    if 0 < train_rows < MIN_TRAIN_ROWS:
        advice = f": at least {MIN_TRAIN_ROWS} are needed. Use a smaller valid_fraction."
        raise DataError(
            message.format(advice),
            cli_message=cli.format(advice.replace("valid_fraction", "--valid-fraction")),
        )
    if 0 < train_rows < SMALL_TRAIN_ROWS and train_rows < valid_rows:
        advice = (
            ": too few to learn from. Use a smaller valid_fraction (0.2 or 0.3 is usual)."
        )
        _warn(
            message.format(advice),
            SmallTrainingPartWarning,
            cli_message=cli.format(advice.replace("valid_fraction", "--valid-fraction")),
        )


def prepare(
    data: pd.DataFrame | str | os.PathLike,
    target: Any,
    *,
    valid_fraction: float = 0.3,
    split: str = "random",
    group_by: Any = None,
    drop: Sequence[Any] | None = None,
    seed: int = 0,
    **options: Any,
) -> PreparedData:
    """Split a table, fit the preprocessing on the training part, and return model-ready arrays.

    Column kinds are inferred (numbers are numeric; text, categories and booleans categorical;
    ``datetime64`` columns become numeric parts) and can be overridden per column. Numeric
    columns are scaled with statistics of the training part only; missing numbers get the
    training median and an indicator column; categorical columns are one-hot encoded up to
    ``max_one_hot`` categories and integer-coded for an embedding beyond. Constant columns and
    identifier-like text columns are dropped with a warning. The task follows from the target
    (see ``dlstructured.data.preprocessing.infer_task``) unless given. Rows with a missing
    target are left out with a warning. The caller's frame is never modified.

    Args:
        data: A DataFrame, or the path of a CSV or Parquet file.
        target: Name of the target column.
        valid_fraction: Share of rows kept for validation, in [0, 1); ``0`` keeps none.
            Defaults to ``0.3``.
        split: ``"random"`` (the course's ``sample(frac=0.7, random_state=seed)``),
            ``"stratified"`` (by the target), ``"grouped"`` (by ``group_by``) or ``"hash"``
            (each row by a seeded hash of its row number, as streamed data needs; see
            ``dlstructured.data.split``). Defaults to ``"random"``.
        group_by: Column whose groups must not straddle the split (it is not used as a
            feature). Defaults to ``None``.
        drop: Names of columns to leave out (an identifier, a leak of the target); each is
            listed in ``data.preprocessor.dropped_columns`` as ``"dropped"`` and ignored at
            prediction. Defaults to ``None`` (none).
        seed: Seed of the split. Defaults to ``0``.
        **options: The preprocessing options, passed to
            ``TabularPreprocessor``, which documents them all (``task``,
            ``kinds``, ``scaling``, ``max_one_hot`` ...); each defaults to its default there.

    Returns:
        A [`PreparedData`][dlstructured.data.prepare.PreparedData].

    Raises:
        TypeError: If an argument or a column's dtype has the wrong type.
        ValueError: If an argument has a bad value.
        DataError: If the data cannot be used: an empty frame, a missing target column, a target
            with one value or all missing, a non-numeric regression target, an entirely missing
            column, infinite values, too few rows for the split. The message names the column
            and the fix.

    Example:

    >>> import pandas as pd
    >>> frame = pd.DataFrame({"x": [float(i) for i in range(10)], "y": [0, 1] * 5})
    >>> data = prepare(frame, "y")
    >>> data.task, data.x_train.shape, data.x_valid.shape
    ('binary', (7, 1), (3, 1))
    """
    if isinstance(data, (str, os.PathLike)):
        frame = read_table(data)
    else:
        frame = data
    _check_frame(frame)
    if not isinstance(target, (str, int)) or isinstance(target, bool):
        raise TypeError(f"`target` must be a column name (a string). Received: target={target!r}")
    preprocessor = _preprocessor(target, options)
    task = preprocessor.task
    valid_fraction, split, seed = _check_split_args(valid_fraction, split, seed)
    dropped = _check_drop(drop, frame, target)
    labelled = _rows_with_target(frame, target)
    if labelled is None:
        labelled = np.arange(len(frame))
    labels, groups = _split_columns(frame, split, target, group_by)
    target_values = frame[target].iloc[labelled]
    resolved_task = task or infer_task(target_values)
    if labels is not None:
        labels = _strata(target_values, resolved_task)
    if groups is not None:
        groups = groups[labelled]
    train, valid = _split_positions(
        len(labelled), valid_fraction, split, seed, labels=labels, groups=groups
    )
    if len(train) == 0 or (valid_fraction > 0 and len(valid) == 0):
        message = (
            f"{len(labelled)} labelled rows are too few for a split with {{}}: one part would be "
            "empty. Use more rows, another split, or {} (no validation part)."
        )
        raise DataError(
            message.format(f"valid_fraction={valid_fraction}", "valid_fraction=0"),
            cli_message=message.format(f"--valid-fraction {valid_fraction}", "--valid-fraction 0"),
        )
    _check_train_size(len(train), len(valid), valid_fraction)
    train, valid = labelled[train], labelled[valid]
    exclude = {name: "dropped" for name in dropped}
    if group_by is not None:
        exclude[group_by] = "group"
    features = preprocessor.fit_transform_parts(
        frame, [train, valid], fit_rows=train, label_rows=labelled, exclude=exclude
    )
    target_column = frame[target]
    y_train = preprocessor.transform_target(target_column.iloc[train])
    y_valid = preprocessor.transform_target(target_column.iloc[valid]) if len(valid) else None
    return PreparedData(
        x_train=features[0],
        y_train=y_train,
        x_valid=features[1] if len(valid) else None,
        y_valid=y_valid,
        task=preprocessor.task,
        num_features=preprocessor.num_features,
        num_classes=preprocessor.num_classes,
        feature_names=preprocessor.feature_names,
        embeddings=preprocessor.embeddings,
        preprocessor=preprocessor,
        target=target,
        target_unit_scale=preprocessor.target_unit_scale,
        train_index=frame.index[train],
        valid_index=frame.index[valid],
    )


_PREPROCESSING_OPTIONS = tuple(
    name for name in inspect.signature(TabularPreprocessor).parameters if name != "target"
)


def _preprocessor(target: Any, options: Mapping[str, Any]) -> TabularPreprocessor:
    """The unfitted preprocessor of ``prepare(..., **options)``."""
    unknown = [name for name in options if name not in _PREPROCESSING_OPTIONS]
    if unknown:
        raise TypeError(
            f"prepare() got unknown options {_names(unknown)}. Its options are the split's "
            "(valid_fraction, split, group_by, drop, seed) and the preprocessing's "
            f"({', '.join(_PREPROCESSING_OPTIONS)}). Received: "
            + ", ".join(f"{name}={options[name]!r}" for name in unknown)
        )
    return TabularPreprocessor(target, **options)
