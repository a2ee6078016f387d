"""Atomic file writes: the one routine every writer of the library goes through.

A file is written under a temporary name in its own folder, flushed to disk, renamed over the
final name with ``os.replace`` and the folder's entry flushed too. Until the rename, a file that
was there stays as it was; after it, the new file is complete. A crash or a kill at any moment
leaves one or the other, never half a file, and no temporary file once the writer has returned
or raised.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

TEMPORARY_PREFIX = ".tmp-"


def fsync_folder(folder: str | os.PathLike) -> None:
    """Flush a folder's entries (new names, renames) to disk where the platform allows it."""
    try:
        handle = os.open(folder, os.O_RDONLY)
    except OSError:  # pragma: no cover - Windows cannot open folders
        return
    try:
        os.fsync(handle)
    except OSError:  # pragma: no cover - some file systems refuse fsync on folders
        pass
    finally:
        os.close(handle)


def _fsync_file(path: Path) -> None:
    with open(path, "rb") as handle:
        os.fsync(handle.fileno())


def _existing_folder(path: Path) -> Path:
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.is_dir():
        what = "is not a folder" if folder.exists() else "does not exist"
        raise FileNotFoundError(
            f"Cannot write {str(path)!r}: the folder {str(folder)!r} {what}. Create it first "
            "(`os.makedirs(folder, exist_ok=True)`) or give another path."
        )
    return folder


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; when the block ends, it replaces ``path``.

    For writers that open the file themselves (``keras.Model.save``, ``DataFrame.to_csv``,
    ``numpy.savez``): write to the yielded path. The temporary name keeps ``path``'s suffix, so
    a writer that checks it (Keras wants ``.keras``) is satisfied. If the block raises, the
    temporary file is removed and ``path`` is left as it was.

    Raises:
        FileNotFoundError: If the folder of ``path`` does not exist (the message names it).
    """
    final = Path(path)
    folder = _existing_folder(final)
    temporary = folder / f"{TEMPORARY_PREFIX}{secrets.token_hex(6)}-{final.name}"
    try:
        yield temporary
        _fsync_file(temporary)
        os.replace(temporary, final)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    fsync_folder(folder)


def write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    with atomic_path(path) as temporary:
        with open(temporary, "w", encoding="utf-8", newline="") as stream:
            stream.write(text)


def write_json(path: str | os.PathLike, payload: Any, *, indent: int = 2) -> None:
    """Write ``payload`` as JSON (no NaN or infinities) to ``path`` atomically."""
    write_text(path, json.dumps(payload, indent=indent, allow_nan=False) + "\n")
