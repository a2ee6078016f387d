"""Exceptions raised by dlstructured.

Every error the library raises on bad input is one of these or a plain ``TypeError``/``ValueError``
whose message names the argument or column, what was expected and what was received.
"""

from __future__ import annotations


class DLStructuredError(Exception):
    """Base class of the library's own exceptions.

    Args:
        *args: The message, as for any exception. Its advice is phrased for a Python caller
            (``kinds={'age': 'numeric'}``).
        cli_message: The same message with its advice phrased for the command line
            (``--kinds age=numeric``), or ``None`` when the message fits both. The command line
            prints it instead of the message. Defaults to ``None``.
    """

    def __init__(self, *args: object, cli_message: str | None = None) -> None:
        super().__init__(*args)
        self.cli_message = cli_message


class DataError(DLStructuredError, ValueError):
    """The data cannot be used as given: the message names the column and the fix."""


class ModelFileError(DLStructuredError, ValueError):
    """A model file is missing, truncated, not a model, or refused by safe loading."""


class IncompatibleModelError(ModelFileError):
    """A model file was written by an incompatible dlstructured format version."""


class CheckpointError(ModelFileError):
    """A checkpoint folder is missing, holds no completed checkpoint, or does not match the run."""


class RunError(DLStructuredError, ValueError):
    """A training run cannot start or resume as asked: its folder, data or config conflict."""


class ColumnTypeError(DLStructuredError, TypeError):
    """A column's dtype cannot be used (complex numbers, intervals ...): the message names it."""


class DataWarning(UserWarning):
    """Base class of the notices dlstructured gives about the data it was handed.

    Args:
        *args: The message; its advice is phrased for a Python caller.
        cli_message: The same notice with its advice phrased for the command line, or ``None``
            when the message fits both. Defaults to ``None``.
    """

    def __init__(self, *args: object, cli_message: str | None = None) -> None:
        super().__init__(*args)
        self.cli_message = cli_message


def message_for_command_line(error: BaseException) -> str:
    """The text of a library error or warning as the command line shows it."""
    return getattr(error, "cli_message", None) or str(error)


class ConstantColumnWarning(DataWarning):
    """Columns holding a single value in the training part were dropped."""


class IdentifierColumnWarning(DataWarning):
    """Text columns with a distinct value in nearly every row (identifiers) were dropped."""


class MissingTargetWarning(DataWarning):
    """Rows whose target value is missing were left out."""


class ExtraColumnsWarning(DataWarning):
    """Prediction input holds columns the model does not use; they were ignored."""


class PlaceholderValuesWarning(DataWarning):
    """A column of numbers held a few placeholder texts (``?``, ``n/a`` ...), read as missing."""


class ExtremeValuesWarning(DataWarning):
    """A few extreme values dominate a numeric column's scaling: the other rows are squeezed."""


class SmallTrainingPartWarning(DataWarning):
    """The split leaves very few rows for training."""


class ColumnNamesWarning(DataWarning):
    """A file has duplicate or empty column names, which pandas renamed (``a.1``, ``Unnamed: 3``).
    """


def is_out_of_memory(error: BaseException) -> bool:
    """Whether ``error`` says that memory ran out (host, or the backend's device memory)."""
    if isinstance(error, MemoryError):
        return True
    text = str(error)
    return "RESOURCE_EXHAUSTED" in text or "Out of memory" in text or "OOM when" in text
