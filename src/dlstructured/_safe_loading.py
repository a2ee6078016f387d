"""Checks that a ``.keras`` file is sound and carries no code, before Keras reads it.

A ``.keras`` file is a zip archive holding ``config.json`` (how to rebuild the model),
``metadata.json`` and the weights. ``read_keras_config`` checks the container (present, not
empty, a zip archive whose checksums hold, a JSON configuration); ``check_config_is_safe``
refuses a configuration with a ``Lambda`` layer, serialized Python code, or a class or function
from a package other than Keras and dlstructured. ``dlstructured.load_model`` runs both, then
loads with Keras safe mode on. Every refusal is a ``ModelFileError`` that
names the file.
"""

from __future__ import annotations

import json
import os
import zipfile
from pathlib import Path
from typing import Any

from dlstructured.errors import ModelFileError

#: Top-level packages whose classes a model file may name.
ALLOWED_MODULES = ("keras", "dlstructured")


def _describe(path: Path) -> str:
    return repr(str(path))


def read_keras_config(path: str | os.PathLike) -> dict[str, Any]:
    """Check a ``.keras`` file's container and return its top-level configuration.

    Args:
        path: The ``.keras`` file.

    Returns:
        The parsed ``config.json`` of the archive.

    Raises:
        TypeError: If ``path`` is not a string or ``os.PathLike``.
        ModelFileError: If the file is missing, empty, not a zip archive, truncated, or has no
            readable ``config.json``.

    Example:

    >>> from dlstructured._safe_loading import read_keras_config
    >>> read_keras_config("no-such-model.keras")
    Traceback (most recent call last):
    ...
    dlstructured.errors.ModelFileError: No model file at 'no-such-model.keras'. Check the path.
    """
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"`path` must be a file path (str or os.PathLike). Received: path={path!r}")
    path = Path(path)
    if not path.exists():
        raise ModelFileError(f"No model file at {_describe(path)}. Check the path.")
    if not path.is_file():
        raise ModelFileError(f"{_describe(path)} is not a file (a folder?). Pass the .keras file.")
    if path.stat().st_size == 0:
        raise ModelFileError(f"The model file {_describe(path)} is empty (0 bytes).")
    try:
        with zipfile.ZipFile(path) as archive:
            damaged = archive.testzip()
            if damaged is not None:
                raise ModelFileError(
                    f"The model file {_describe(path)} is corrupt: member {damaged!r} fails its "
                    "checksum."
                )
            with archive.open("config.json") as handle:
                config = json.load(handle)
    except KeyError as error:
        raise ModelFileError(
            f"{_describe(path)} is a zip archive but not a Keras model file (no config.json)."
        ) from error
    except zipfile.BadZipFile as error:
        raise ModelFileError(
            f"{_describe(path)} is not a readable .keras model file (not a zip archive: "
            f"truncated or corrupt?): {error}"
        ) from error
    except (OSError, EOFError, ValueError, UnicodeDecodeError, zipfile.LargeZipFile) as error:
        if isinstance(error, ModelFileError):
            raise
        raise ModelFileError(
            f"The model file {_describe(path)} is unreadable (truncated or corrupt?): "
            f"{type(error).__name__}: {error}"
        ) from error
    if not isinstance(config, dict) or "class_name" not in config:
        raise ModelFileError(f"{_describe(path)} does not hold a Keras model configuration.")
    return config


def _refuse(path: Path, what: str) -> ModelFileError:
    return ModelFileError(
        f"Refused to load {_describe(path)}: it holds {what}. dlstructured loads model files with "
        "Keras safe mode on and never runs code from a file; rebuild the model from code and load "
        "only its weights if you trust the file's author."
    )


def check_config_is_safe(config: Any, path: str | os.PathLike) -> None:
    """Refuse a configuration that names code outside Keras and dlstructured, or carries bytecode.

    Args:
        config: A parsed ``config.json``.
        path: The file it came from (for the message).

    Raises:
        ModelFileError: If the configuration holds a ``Lambda`` layer, serialized Python code, or
            a class or function from another package.
    """
    path = Path(path)
    stack = [config]
    while stack:
        item = stack.pop()
        if isinstance(item, list):
            stack.extend(item)
            continue
        if not isinstance(item, dict):
            continue
        class_name = item.get("class_name")
        if class_name in ("Lambda", "__lambda__") or "function_type" in item:
            raise _refuse(path, "a Lambda layer (serialized Python code)")
        module = item.get("module")
        if isinstance(module, str) and "class_name" in item:
            top = module.split(".", 1)[0]
            is_keras_function = (  # a Keras function by name, e.g. the loss "mean_absolute_error"
                module == "builtins"
                and class_name == "function"
                and isinstance(item.get("config"), str)
            )
            if top not in ALLOWED_MODULES and not is_keras_function:
                raise _refuse(path, f"{class_name!r} from module {module!r}, which is not Keras's")
        stack.extend(item.values())
