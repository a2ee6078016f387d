"""Tables larger than memory: Parquet files streamed in batches with Apache Arrow.

A table here is a Parquet file, a folder of Parquet files (searched recursively) or a glob
(``"logs/*.parquet"``), opened with ``pyarrow.dataset``; a CSV file is first converted to
Parquet once, block by block, into a cache folder (``csv_to_parquet``). Nothing reads the
whole table at once:

- ``StreamTable`` opens the files, checks that they agree on every column's name and type, and
  splits them into pieces: the row groups, numbered in file order (files sorted by path), so
  that every row has a global row number.
- ``valid_mask`` puts a row in the validation part by a seeded hash of that row number: the
  same rows whatever the batch sizes, the machine or the epoch, without loading anything.
- ``fit_preprocessor`` runs the one statistics pass:
  ``TabularPreprocessor.fit_batches`` over the pieces, the validation rows counting for the
  class labels only. Column kinds are decided on the first row group (see ``fit_batches``).
- ``StreamSource`` is a ``BatchSource`` (``dlstructured.training.contract``): each epoch reads
  the pieces in an order shuffled by ``(seed, epoch)``, transforms each with the fitted
  preprocessor to float32, and mixes the rows of consecutive pieces in a shuffle buffer of
  ``buffer_rows`` rows before cutting batches. Memory is bounded by the largest row group plus
  the buffer, not by the table.
- With several processes (``shard``), each source keeps one contiguous range of the global row
  numbers, ``shard_range``: the processes' parts differ by a row or so whatever the row-group
  sizes, and each process reads only the row groups its range touches.

This module uses pyarrow, numpy and pandas only; it never imports Keras.
"""

from __future__ import annotations

import glob
import json
import os
import shutil
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from dlstructured import _io
from dlstructured._checks import check_float, check_int
from dlstructured.errors import DataError

__all__ = [
    "CACHE_FOLDER",
    "DEFAULT_BUFFER_ROWS",
    "STREAM_MAX_CATEGORIES",
    "StreamSource",
    "StreamTable",
    "StreamedData",
    "csv_to_parquet",
    "detect_separator",
    "fit_preprocessor",
    "is_streamable",
    "prepare_stream",
    "shard_range",
    "valid_mask",
]

STREAM_MAX_CATEGORIES = 10_000
"""Most categories a streamed categorical column keeps (the most frequent); the rest go to the
unknown slot, with a notice naming the column."""

DEFAULT_BUFFER_ROWS = 65_536
"""Rows of the shuffle buffer: consecutive pieces are mixed within this many rows."""

CACHE_RESERVE_BYTES = 1 << 30
"""Free disk space a source's cache of transformed pieces leaves (see ``StreamSource.cache_in``)."""

CACHE_FOLDER = "stream-cache"
"""Folder, inside a run's output folder, that holds a CSV converted to Parquet."""

_PARQUET_SUFFIXES = (".parquet", ".pq")
_CSV_BLOCK_BYTES = 16 << 20  # a converted CSV gets a row group per 16 MiB block
_GLOB_CHARACTERS = frozenset("*?[")


def is_streamable(path: str | os.PathLike) -> bool:
    """Whether ``path`` names several files: a folder or a glob pattern.

    Example:

    >>> is_streamable("logs/*.parquet"), is_streamable("table.csv")
    (True, False)
    """
    text = os.fspath(path)
    if Path(text).is_file():  # a file whose name holds "[" or "*" is still a file
        return False
    return bool(_GLOB_CHARACTERS & set(text)) or Path(text).is_dir()


# --------------------------------------------------------------------------------------------
# Progress


class _Progress:
    """How far a long pass is, on stderr, in the style of training's progress bar
    (``training/progress.py``): redrawn in place on a terminal; elsewhere a line per tenth of
    the rows (every 30 s when the total is unknown). Silent unless ``verbose``."""

    width = 24

    def __init__(self, what: str, total: int | None, verbose: int):
        self.what, self.total, self.verbose = what, total, verbose
        self.done, self.started, self.shown, self.last = 0, time.perf_counter(), 0.0, ""
        self.live = bool(verbose) and bool(getattr(sys.stderr, "isatty", bool)())
        self.tenth = 0

    def update(self, rows: int) -> None:
        self.done += rows
        if not self.verbose:
            return
        now = time.perf_counter()
        if self.live:
            if now - self.shown >= 0.5:
                self.shown = now
                self._write("\r" + self._line().ljust(len(self.last)))
            return
        if self.total:
            tenth = 10 * self.done // self.total
            if tenth > self.tenth and self.done < self.total:
                self.tenth = tenth
                self._write(self._line() + "\n")
        elif now - self.shown >= 30:
            self.shown = now
            self._write(self._line() + "\n")

    def close(self) -> None:
        if self.verbose and self.done:
            self._write(("\r" + self._line().ljust(len(self.last)) if self.live
                         else self._line()) + "\n")

    def _line(self) -> str:
        parts = [self.what]
        if self.total:
            filled = min(self.width, round(self.width * self.done / self.total))
            parts.append("[" + "#" * filled + "." * (self.width - filled) + "]")
            parts.append(f"{self.done:,}/{self.total:,} rows")
        else:
            parts.append(f"{self.done:,} rows")
        parts.append(f"{time.perf_counter() - self.started:.0f}s")
        self.last = "  ".join(parts)
        return self.last

    def _write(self, text: str) -> None:
        sys.stderr.write(text)
        sys.stderr.flush()


# --------------------------------------------------------------------------------------------
# Opening the files


@dataclass(frozen=True)
class Piece:
    """One row group of one file.

    Attributes:
        path: The file.
        row_group: Index of the row group in the file.
        first_row: Global row number of its first row.
        num_rows: Its rows.
        fragment: The ``pyarrow.dataset`` fragment that reads it.
    """

    path: str
    row_group: int
    first_row: int
    num_rows: int
    fragment: Any


class StreamTable:
    """A Parquet file, folder of Parquet files or glob, opened for streaming.

    Args:
        path: The file, folder (searched recursively for ``.parquet`` and ``.pq`` files) or
            glob pattern.

    Attributes:
        path: ``path`` as given.
        files: The files, sorted.
        columns: The column names, in the first file's order.
        types: Each column's Arrow type, as text.
        pieces: The row groups, in file and row-group order.
        num_rows: Rows of every file together.

    Raises:
        TypeError: If ``path`` is not a path.
        DataError: If no file matches (naming the path), a file cannot be read, or the files
            disagree on a column's presence or type (naming the file and the column).

    Example:

    >>> import os, tempfile
    >>> import pandas as pd
    >>> folder = tempfile.mkdtemp()
    >>> for part in range(2):
    ...     frame = pd.DataFrame({"x": [1.0, 2.0, 3.0], "y": [0, 1, 0]})
    ...     frame.to_parquet(os.path.join(folder, f"part-{part}.parquet"))
    >>> table = StreamTable(folder)
    >>> table.num_rows, table.columns, len(table.pieces)
    (6, ['x', 'y'], 2)
    """

    def __init__(self, path: str | os.PathLike):
        import pyarrow as pa
        import pyarrow.dataset as ds

        if not isinstance(path, (str, os.PathLike)):
            raise TypeError(f"`path` must be a file, folder or glob pattern. Received: "
                            f"path of type {type(path).__name__}")
        self.path = os.fspath(path)
        self.files = _parquet_files(self.path)
        try:
            dataset = ds.dataset(self.files, format="parquet")
            fragments = list(dataset.get_fragments())
        except (pa.ArrowInvalid, OSError) as error:
            raise DataError(f"cannot read the Parquet files of {self.path!r}: {error}") from error
        first = fragments[0].physical_schema
        self.columns = list(first.names)
        self.types = {field.name: str(field.type) for field in first}
        self.pieces: list[Piece] = []
        row = 0
        for fragment in fragments:
            _check_schema(fragment.path, fragment.physical_schema, self.files[0], first)
            for part in fragment.split_by_row_group():
                group = part.row_groups[0]
                self.pieces.append(Piece(fragment.path, group.id, row, group.num_rows, part))
                row += group.num_rows
        self.num_rows = row

    def read(self, piece: Piece, columns: Sequence[Any] | None = None) -> pd.DataFrame:
        """One piece's rows as a DataFrame (only ``columns`` when given).

        Raises:
            DataError: If the row group cannot be read, naming the file and the row group.
        """
        import pyarrow as pa

        try:
            table = piece.fragment.to_table(columns=None if columns is None else list(columns))
        except (pa.ArrowException, OSError) as error:
            raise DataError(f"cannot read row group {piece.row_group} of {piece.path!r}: "
                            f"{error}") from error
        return table.to_pandas()

    def head(self, rows: int = 1000) -> pd.DataFrame:
        """About the first ``rows`` rows (whole row groups), for a first look at the columns."""
        frames, seen = [], 0
        for piece in self.pieces:
            frames.append(self.read(piece))
            seen += piece.num_rows
            if seen >= rows:
                break
        return pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]

    def frames(self, columns: Sequence[Any] | None = None, *, order: Sequence[int] | None = None,
               progress: _Progress | None = None) -> Iterator[tuple[Piece, pd.DataFrame]]:
        """Each piece with its rows, in ``order`` (piece positions) or in file order."""
        for index in range(len(self.pieces)) if order is None else order:
            piece = self.pieces[index]
            frame = self.read(piece, columns)
            if progress is not None:
                progress.update(len(frame))
            yield piece, frame

    def fingerprint(self) -> dict[str, Any]:
        """What identifies the files without reading them: each file's name, size and time of
        last change, hashed, with the rows and columns."""
        import hashlib

        digest = hashlib.sha256()
        for name in self.files:
            status = os.stat(name)
            digest.update(f"{name}\0{status.st_size}\0{status.st_mtime_ns}\n".encode())
        return {"sha256": digest.hexdigest(),
                "bytes": sum(os.path.getsize(name) for name in self.files),
                "rows": self.num_rows, "columns": [str(c) for c in self.columns]}


def _parquet_files(path: str) -> list[str]:
    if _GLOB_CHARACTERS & set(path):
        found = [name for name in glob.glob(path, recursive=True) if os.path.isfile(name)]
        where = f"the pattern {path!r} matches no file"
    elif os.path.isdir(path):
        found = [str(name) for name in Path(path).rglob("*")
                 if name.suffix.lower() in _PARQUET_SUFFIXES and name.is_file()
                 and not any(part.startswith((".", "_")) for part in name.relative_to(path).parts)]
        where = f"the folder {path!r} holds no Parquet file (.parquet, .pq)"
    elif os.path.isfile(path):
        found = [path]
        where = ""
    else:
        raise DataError(f"no file, folder or pattern at {path!r}; give a Parquet file, a folder "
                        "of Parquet files or a glob such as 'data/*.parquet'")
    if not found:
        raise DataError(f"{where}; give a CSV or Parquet file, or a folder or glob of Parquet "
                        f"files. Received: path={path!r}")
    return sorted(found)


def _check_schema(path: str, schema: Any, first_path: str, first: Any) -> None:
    """Refuse a file whose columns or types differ from the first file's."""
    names, expected = set(schema.names), set(first.names)
    for name in first.names:
        if name not in names:
            raise DataError(f"the Parquet files disagree: {path!r} has no column {name!r}, "
                            f"which {first_path!r} has. Every file needs the same columns.")
    for name in schema.names:
        if name not in expected:
            raise DataError(f"the Parquet files disagree: {path!r} has a column {name!r}, "
                            f"which {first_path!r} lacks. Every file needs the same columns.")
        found, wanted = schema.field(name).type, first.field(name).type
        if found != wanted:
            raise DataError(
                f"the Parquet files disagree on the type of column {name!r}: it is {wanted} in "
                f"{first_path!r} but {found} in {path!r}. Write every file with the same types "
                f"(cast the column). Received: {name}={found}"
            )


# --------------------------------------------------------------------------------------------
# A CSV file too large for memory


def csv_to_parquet(path: str | os.PathLike, cache_dir: str | os.PathLike, *,
                   sep: str | None = None, encoding: str | None = None,
                   verbose: int = 0) -> Path:
    """Convert a CSV file to one Parquet file in ``cache_dir``, block by block, once.

    The Parquet file is reused while the CSV's size and time of last change are those it was
    converted from. Column types are Arrow's, inferred from the first block (16 MiB).

    Args:
        path: The CSV file (it is only read).
        cache_dir: Folder for the Parquet file (created if missing); not the CSV's own folder.
        sep: Field separator, or ``None`` to detect it from the first line. Defaults to
            ``None``.
        encoding: Text encoding, or ``None`` for UTF-8. Defaults to ``None``.
        verbose: Show the conversion's progress on stderr. Defaults to ``0``.

    Returns:
        The Parquet file's path.

    Raises:
        DataError: If ``cache_dir`` is the CSV's folder, or a block cannot be converted (a
            column whose values change type past the first block: the message names the file).

    Example:

    >>> import os, tempfile
    >>> folder = tempfile.mkdtemp()
    >>> with open(os.path.join(folder, "t.csv"), "w") as file:
    ...     _ = file.write("x,y\\n1,2\\n3,4\\n")
    >>> converted = csv_to_parquet(os.path.join(folder, "t.csv"), os.path.join(folder, "cache"))
    >>> StreamTable(converted).num_rows
    2
    """
    import pyarrow as pa
    import pyarrow.csv as pcsv
    import pyarrow.parquet as pq

    source = Path(path).resolve()
    cache = Path(cache_dir).resolve()
    if cache == source.parent:
        raise DataError(f"the cache folder {str(cache)!r} is the CSV file's own folder; give "
                        "another one (the run's output folder holds it)")
    status = source.stat()
    about = {"source": str(source), "bytes": status.st_size, "mtime_ns": status.st_mtime_ns,
             "sep": sep, "encoding": encoding}
    import hashlib

    key = hashlib.sha256(str(source).encode()).hexdigest()[:12]
    converted = cache / f"{source.stem}-{key}.parquet"
    record = converted.with_suffix(".json")
    if converted.exists() and record.exists():
        try:
            if json.loads(record.read_text()) == about:
                return converted
        except (OSError, ValueError):
            pass
    cache.mkdir(parents=True, exist_ok=True)
    delimiter = sep or detect_separator(source, encoding)
    progress = _Progress(f"converting {source.name} to Parquet", None, verbose)
    try:
        reader = pcsv.open_csv(
            source,
            read_options=pcsv.ReadOptions(block_size=_CSV_BLOCK_BYTES,
                                          encoding=encoding or "utf8"),
            parse_options=pcsv.ParseOptions(delimiter=delimiter),
        )
        with _io.atomic_path(converted) as temporary:
            with pq.ParquetWriter(temporary, reader.schema) as writer:
                for batch in reader:
                    writer.write_batch(batch)
                    progress.update(batch.num_rows)
    except (pa.ArrowException, OSError) as error:
        raise DataError(f"cannot convert {str(path)!r} to Parquet: {error}. A column whose "
                        "values change type past the first rows (numbers, then text) must be "
                        "cleaned first.") from error
    finally:
        progress.close()
    _io.write_json(record, about)
    return converted


def detect_separator(path: Path, encoding: str | None) -> str:
    """The field separator of a CSV file: the most frequent of ``, ; tab |`` in its first line
    (a comma when none occurs)."""
    with open(path, encoding=encoding or "utf-8", errors="replace") as file:
        line = file.readline()
    counts = {candidate: line.count(candidate) for candidate in (",", ";", "\t", "|")}
    best = max(counts, key=counts.get)
    return best if counts[best] else ","


# --------------------------------------------------------------------------------------------
# The validation part


def valid_mask(rows: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """Which rows are validation rows: a seeded hash (SplitMix64) of each global row number,
    below ``fraction``.

    Args:
        rows: Global row numbers (non-negative integers).
        fraction: Expected share of validation rows, in [0, 1).
        seed: Seed of the hash.

    Returns:
        A boolean array, ``True`` for a validation row.

    Example:

    >>> import numpy as np
    >>> mask = valid_mask(np.arange(10_000), 0.25, seed=0)
    >>> bool(abs(mask.mean() - 0.25) < 0.02), bool((mask == valid_mask(np.arange(10_000),
    ...     0.25, seed=0)).all())
    (True, True)
    """
    if fraction <= 0.0:
        return np.zeros(len(rows), bool)
    mixed = np.asarray(rows, np.uint64) + np.uint64((seed * 0x9E3779B97F4A7C15) % 2**64)
    mixed ^= mixed >> np.uint64(30)
    mixed *= np.uint64(0xBF58476D1CE4E5B9)
    mixed ^= mixed >> np.uint64(27)
    mixed *= np.uint64(0x94D049BB133111EB)
    mixed ^= mixed >> np.uint64(31)
    return (mixed >> np.uint64(11)).astype(np.float64) * 2.0**-53 < fraction


def shard_range(num_rows: int, process_id: int, num_processes: int) -> tuple[int, int]:
    """The global row numbers ``[first, end)`` a process streams, of ``num_rows`` rows:
    ``num_processes`` contiguous ranges as equal as can be, in process order.

    Example:

    >>> [shard_range(10, process, 3) for process in range(3)]
    [(0, 3), (3, 6), (6, 10)]
    """
    num_processes = check_int("num_processes", num_processes, minimum=1)
    process_id = check_int("process_id", process_id, minimum=0)
    if process_id >= num_processes:
        raise ValueError(f"`process_id` must be below num_processes ({num_processes}). "
                         f"Received: process_id={process_id}")
    return num_rows * process_id // num_processes, num_rows * (process_id + 1) // num_processes


@dataclass(frozen=True)
class Split:
    """How a streamed table is split: ``valid_mask(rows, fraction, seed)``."""

    fraction: float
    seed: int

    def part(self, piece: Piece, frame: pd.DataFrame, target: Any, valid: bool) -> np.ndarray:
        """Mask of the piece's rows in the part (``valid``) that have a target value."""
        rows = piece.first_row + np.arange(len(frame))
        mask = valid_mask(rows, self.fraction, self.seed) == valid
        if target is not None:
            mask &= frame[target].notna().to_numpy()
        return mask


def _annotated(piece: Piece, error: DataError) -> DataError:
    """``error`` with the file and row group where it happened."""
    return DataError(f"in row group {piece.row_group} of {piece.path!r}: {error}",
                     cli_message=f"in row group {piece.row_group} of {piece.path!r}: "
                     + (getattr(error, "cli_message", None) or str(error)))


# --------------------------------------------------------------------------------------------
# The statistics pass


def fit_preprocessor(table: StreamTable, preprocessor: Any, *, valid_fraction: float,
                     seed: int, exclude: dict[Any, str] | None = None,
                     max_categories: int | None = STREAM_MAX_CATEGORIES,
                     verbose: int = 0) -> dict[str, int]:
    """Fit ``preprocessor`` in one pass over ``table``'s training rows.

    Args:
        table: The table.
        preprocessor: An unfitted ``TabularPreprocessor``; it is fitted in place.
        valid_fraction: Share of rows held out (see ``valid_mask``); they count for the task
            and the class labels only.
        seed: Seed of the split.
        exclude: Columns not read, each with its reason (``{"id": "dropped"}``). Defaults to
            ``None``.
        max_categories: As for ``TabularPreprocessor.fit_batches``. Defaults to
            ``STREAM_MAX_CATEGORIES``.
        verbose: Show the pass's progress on stderr. Defaults to ``0``.

    Returns:
        The rows with a target of each part: ``{"train": n, "valid": m}``.

    Raises:
        DataError: If the data cannot be used; the message names the file, the row group and
            the column.
    """
    valid_fraction = check_float("valid_fraction", valid_fraction, minimum=0.0, maximum=1.0,
                                 max_inclusive=False)
    seed = check_int("seed", seed, minimum=0)
    exclude = dict(exclude or {})
    columns = [name for name in table.columns if name not in exclude]
    split = Split(valid_fraction, seed)
    target = preprocessor.target
    counts = {"train": 0, "valid": 0}
    progress = _Progress("statistics pass", table.num_rows, verbose)
    current: list[Piece] = []  # the piece being added, until every piece is

    def batches() -> Iterator[tuple[pd.DataFrame, np.ndarray]]:
        for piece, frame in table.frames(columns, progress=progress):
            current[:] = [piece]
            train = split.part(piece, frame, None, valid=False)
            if target is not None and target in frame.columns:
                labelled = frame[target].notna().to_numpy()
                counts["train"] += int((train & labelled).sum())
                counts["valid"] += int((~train & labelled).sum())
            else:
                counts["train"] += int(train.sum())
            yield frame, train
        current.clear()

    try:
        preprocessor.fit_batches(batches(), max_categories=max_categories, exclude=exclude)
    except DataError as error:
        if not current or "row group" in str(error):
            raise
        raise _annotated(current[0], error) from error
    finally:
        progress.close()
    return counts


# --------------------------------------------------------------------------------------------
# The batch source


class StreamSource:
    """The rows of one part of a streamed table, as a ``BatchSource`` of feature batches.

    Each epoch reads the pieces in an order shuffled by ``(seed, epoch)``, transforms each piece
    with the fitted preprocessor, and mixes the rows in a buffer of ``buffer_rows`` rows before
    cutting batches; without a seed everything stays in file order.

    Args:
        table: The table.
        preprocessor: The fitted ``TabularPreprocessor``.
        part: ``"train"`` (rows outside the validation part) or ``"valid"``.
        valid_fraction: Share of validation rows, as the statistics pass had it.
        split_seed: Seed of the split, as the statistics pass had it.
        buffer_rows: Rows of the shuffle buffer. Defaults to ``DEFAULT_BUFFER_ROWS``.
        num_rows: The part's rows with a target, if known (``fit_preprocessor`` returns them);
            ``None`` counts them with a pass over the target column. Defaults to ``None``.
        shard: ``(process_id, num_processes)`` to keep only that process's rows, those of
            ``shard_range(table.num_rows, process_id, num_processes)``, or ``None`` for all.
            Defaults to ``None``.

    Raises:
        ValueError: If ``part`` or ``buffer_rows`` has a bad value.
        DataError: If a row group cannot be read or transformed, naming the file, the row
            group and the column.

    Example:

    >>> import os, tempfile
    >>> import numpy as np, pandas as pd
    >>> from dlstructured.data.preprocessing import TabularPreprocessor
    >>> folder = tempfile.mkdtemp()
    >>> for part in range(3):
    ...     rows = np.arange(10 * part, 10 * part + 10, dtype=float)
    ...     pd.DataFrame({"x": rows, "y": rows * 2}).to_parquet(
    ...         os.path.join(folder, f"{part}.parquet"))
    >>> table = StreamTable(folder)
    >>> pre = TabularPreprocessor("y")
    >>> counts = fit_preprocessor(table, pre, valid_fraction=0.2, seed=0)
    >>> train = StreamSource(table, pre, part="train", valid_fraction=0.2, split_seed=0,
    ...                      num_rows=counts["train"])
    >>> sizes = [len(x) for x, y, w in train.batches(0, batch_size=8, seed=1)]
    >>> sum(sizes) == counts["train"], sizes[0]
    (True, 8)
    """

    def __init__(self, table: StreamTable, preprocessor: Any, *, part: str,
                 valid_fraction: float, split_seed: int,
                 buffer_rows: int = DEFAULT_BUFFER_ROWS, num_rows: int | None = None,
                 shard: tuple[int, int] | None = None):
        if part not in ("train", "valid"):
            raise ValueError(f"`part` must be 'train' or 'valid'. Received: part={part!r}")
        self.table, self.preprocessor, self.part = table, preprocessor, part
        self.split = Split(valid_fraction, split_seed)
        self.rows = (0, table.num_rows) if shard is None else shard_range(table.num_rows, *shard)
        first, end = self.rows
        # Positions of the pieces with rows in the range (all of them without a shard).
        self.pieces = np.asarray([index for index, piece in enumerate(table.pieces)
                                  if piece.first_row < end
                                  and piece.first_row + piece.num_rows > first], dtype=np.int64)
        self.buffer_rows = check_int("buffer_rows", buffer_rows, minimum=1)
        self.target = preprocessor.target
        self.columns = list(preprocessor.input_columns) + (
            [] if self.target is None else [self.target])
        self._num_rows = num_rows
        self._cache: Path | None = None
        self._cached: dict[int, int] = {}  # piece position -> its rows of the part

    def cache_in(self, folder: str | os.PathLike, *,
                 reserve_bytes: int = CACHE_RESERVE_BYTES) -> None:
        """Keep each piece's transformed rows in ``folder`` once read, for the later epochs.

        The first epoch reads, transforms and saves each piece (``.npy`` files of its features
        and targets); later epochs read the saved arrays instead, which skips the Parquet
        decoding and the preprocessing, most of a streamed epoch's cost (as
        ``tf.data.Dataset.cache(filename)`` does). Memory stays bounded by the pieces and the
        shuffle buffer: a saved piece is read whole and released like a decoded one. Pieces
        stop being saved, without an error, once the folder's disk would have less than
        ``reserve_bytes`` free; those are read from the files every epoch. The caller owns
        ``folder`` and removes it.

        Args:
            folder: A folder for this source alone (created if missing).
            reserve_bytes: Free disk space to leave. Defaults to ``CACHE_RESERVE_BYTES``.
        """
        self._cache = Path(folder)
        self._cache.mkdir(parents=True, exist_ok=True)
        self._reserve = check_int("reserve_bytes", reserve_bytes, minimum=0)
        self._cached = {}

    @property
    def num_rows(self) -> int:
        """Rows of the part that have a target."""
        if self._num_rows is None:
            read = None if self.target is None else [self.target]
            self._num_rows = sum(int(self._mask(piece, frame).sum())
                                 for piece, frame in self.table.frames(read, order=self.pieces))
        return self._num_rows

    def piece_order(self, epoch: int, seed: int | None) -> np.ndarray:
        """The order the pieces (positions in ``table.pieces``) are read in epoch ``epoch``."""
        if seed is None:
            return self.pieces
        return np.random.default_rng((seed, epoch)).permutation(self.pieces)

    def arrays(self, order: Sequence[int] | None = None) -> Iterator[tuple]:
        """``(x, y)`` of each piece's rows of the part, transformed, in ``order`` (piece
        positions; defaults to the source's pieces in file order)."""
        for index in self.pieces if order is None else order:
            if index in self._cached:
                if self._cached[index]:
                    yield self._load(index)
                continue
            piece = self.table.pieces[index]
            arrays = self._transformed(piece, self.table.read(piece, self.columns))
            if self._cache is not None:
                self._save(index, arrays)
            if arrays is not None:
                yield arrays

    def _mask(self, piece: Piece, frame: pd.DataFrame) -> np.ndarray:
        """Which of the piece's rows the source gives: in its part and range, with a target."""
        mask = self.split.part(piece, frame, self.target, self.part == "valid")
        first, end = self.rows
        if piece.first_row < first or piece.first_row + len(frame) > end:
            rows = piece.first_row + np.arange(len(frame))
            mask &= (rows >= first) & (rows < end)
        return mask

    def _transformed(self, piece: Piece, frame: pd.DataFrame) -> tuple | None:
        mask = self._mask(piece, frame)
        if not mask.all():
            frame = frame.iloc[np.flatnonzero(mask)]
        if len(frame) == 0:
            return None
        try:
            x = self.preprocessor.transform(frame)
            y = (None if self.target is None
                 else self.preprocessor.transform_target(frame[self.target]))
        except DataError as error:
            raise _annotated(piece, error) from error
        return x, y

    def _paths(self, index: int) -> tuple[Path, Path]:
        return self._cache / f"{index}-x.npy", self._cache / f"{index}-y.npy"

    def _save(self, index: int, arrays: tuple | None) -> None:
        if arrays is None:
            self._cached[index] = 0
            return
        x, y = arrays
        size = x.nbytes + (0 if y is None else y.nbytes)
        if shutil.disk_usage(self._cache).free - size < self._reserve:
            return
        x_path, y_path = self._paths(index)
        np.save(x_path, x, allow_pickle=False)
        if y is not None:
            np.save(y_path, y, allow_pickle=False)
        self._cached[index] = len(x)

    def _load(self, index: int) -> tuple:
        x_path, y_path = self._paths(index)
        x = np.load(x_path, allow_pickle=False)
        return x, (np.load(y_path, allow_pickle=False) if self.target is not None else None)

    def batches(self, epoch: int, *, batch_size: int, seed: int | None) -> Iterator[tuple]:
        """The batches of epoch ``epoch``: ``(x float32, y, None)``, every row once."""
        batch_size = check_int("batch_size", batch_size, minimum=1)
        rng = None if seed is None else np.random.default_rng((seed, epoch, 1))
        held_x: list[np.ndarray] = []
        held_y: list[np.ndarray] = []
        held = 0
        for x, y in self.arrays(self.piece_order(epoch, seed)):
            held_x.append(x)
            held_y.append(y)
            held += len(x)
            if held < self.buffer_rows + batch_size:
                continue
            # Mix what is held, hand out whole batches and keep at least `buffer_rows` rows
            # to mix with the next pieces.
            x, y = _mixed(held_x, held_y, rng)
            handed = (held - self.buffer_rows) // batch_size * batch_size
            yield from _cut(x[:handed], y[:handed], batch_size)
            held_x, held_y, held = [x[handed:]], [y[handed:]], held - handed
        if held:
            x, y = _mixed(held_x, held_y, rng)
            yield from _cut(x, y, batch_size)


def _mixed(xs: list, ys: list, rng: Any) -> tuple[np.ndarray, np.ndarray]:
    x = np.concatenate(xs) if len(xs) > 1 else xs[0]
    y = np.concatenate(ys) if len(ys) > 1 else ys[0]
    if rng is not None:
        order = rng.permutation(len(x))
        # np.take gathers rows about three times as fast as indexing with `order`.
        x, y = np.take(x, order, axis=0), np.take(y, order, axis=0)
    return x, y


def _cut(x: np.ndarray, y: np.ndarray, batch_size: int) -> Iterator[tuple]:
    for start in range(0, len(x), batch_size):
        yield (np.ascontiguousarray(x[start:start + batch_size]), y[start:start + batch_size],
               None)


@dataclass
class StreamedData:
    """A streamed table made ready for training, as ``prepare`` makes a frame ready: the fitted
    preprocessing and the two parts as batch sources. The builders take it as they take
    ``PreparedData``.

    Attributes:
        train: The training rows.
        valid: The validation rows, or ``None`` when there are none.
        preprocessor: The fitted ``TabularPreprocessor``.
        counts: Rows with a target of each part of the whole table, ``{"train": n,
            "valid": m}`` (the sources of a shard hold fewer).
    """

    train: StreamSource
    valid: StreamSource | None
    preprocessor: Any
    counts: dict[str, int]

    task = property(lambda self: self.preprocessor.task)
    num_features = property(lambda self: self.preprocessor.num_features)
    num_classes = property(lambda self: self.preprocessor.num_classes)
    feature_names = property(lambda self: self.preprocessor.feature_names)
    embeddings = property(lambda self: self.preprocessor.embeddings)
    target = property(lambda self: self.preprocessor.target)
    classes = property(lambda self: self.preprocessor.classes)
    target_unit_scale = property(lambda self: self.preprocessor.target_unit_scale)

    @property
    def rows(self) -> dict[str, int]:
        """Rows of each part of the whole table: ``{"train": n, "valid": m}``."""
        return dict(self.counts)


def prepare_stream(table: StreamTable, preprocessor: Any, *, valid_fraction: float, seed: int,
                   exclude: dict[Any, str] | None = None,
                   buffer_rows: int = DEFAULT_BUFFER_ROWS, shard: tuple[int, int] | None = None,
                   verbose: int = 0) -> StreamedData:
    """Fit ``preprocessor`` on ``table`` (``fit_preprocessor``) and return both parts as sources.

    The statistics pass reads every row, so every process of a multi-process run fits the same
    preprocessing; with ``shard`` the sources then give that process's rows only.

    Args:
        table: The table.
        preprocessor: An unfitted ``TabularPreprocessor``, fitted in place.
        valid_fraction: Share of validation rows (see ``valid_mask``).
        seed: Seed of the split.
        exclude: Columns left out, each with its reason. Defaults to ``None``.
        buffer_rows: Rows of each source's shuffle buffer. Defaults to ``DEFAULT_BUFFER_ROWS``.
        shard: ``(process_id, num_processes)``, as for ``StreamSource``, or ``None`` for every
            row. Defaults to ``None``.
        verbose: Show the statistics pass's progress on stderr. Defaults to ``0``.

    Returns:
        The ``StreamedData``.

    Raises:
        DataError: If the data cannot be used, the training part is empty, or a process's
            shard of it is (naming the process).
    """
    counts = fit_preprocessor(table, preprocessor, valid_fraction=valid_fraction, seed=seed,
                              exclude=exclude, verbose=verbose)
    if counts["train"] == 0:
        raise DataError(f"the training part of {table.path!r} is empty: every row is a "
                        "validation row or lacks a target. Use a smaller valid_fraction.")
    options = dict(valid_fraction=valid_fraction, split_seed=seed, buffer_rows=buffer_rows,
                   shard=shard)
    sharded = shard is not None and shard[1] > 1

    def source(part: str) -> StreamSource:
        made = StreamSource(table, preprocessor, part=part,
                            num_rows=None if sharded else counts[part], **options)
        if made.num_rows == 0:  # a shard of a non-empty part
            first, end = made.rows
            raise DataError(f"process {shard[0]} of {shard[1]} has no {part} rows of "
                            f"{table.path!r} (its rows are {first} to {end - 1}): give fewer "
                            "processes, or a table with more rows")
        return made

    train = source("train")
    valid = source("valid") if counts["valid"] else None
    return StreamedData(train, valid, preprocessor, counts)
