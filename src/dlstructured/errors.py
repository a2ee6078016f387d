"""Exceptions raised by dlstructured.

Every error the library raises on bad input is one of these or a plain ``TypeError``/``ValueError``
whose message names the argument or column, what was expected and what was received.
"""

from __future__ import annotations


class DLStructuredError(Exception):
    """Base class of the library's own exceptions."""


class DataError(DLStructuredError, ValueError):
    """The data cannot be used as given: the message names the column and the fix."""


class ModelFileError(DLStructuredError, ValueError):
    """A model file is missing, truncated, not a model, or refused by safe loading."""


class IncompatibleModelError(ModelFileError):
    """A model file was written by an incompatible dlstructured format version."""


class ColumnTypeError(DLStructuredError, TypeError):
    """A column's dtype cannot be used (complex numbers, intervals ...): the message names it."""


class DataWarning(UserWarning):
    """Base class of the notices dlstructured gives about the data it was handed."""


class ConstantColumnWarning(DataWarning):
    """Columns holding a single value in the training part were dropped."""


class IdentifierColumnWarning(DataWarning):
    """Text columns with a distinct value in nearly every row (identifiers) were dropped."""


class MissingTargetWarning(DataWarning):
    """Rows whose target value is missing were left out."""


class ExtraColumnsWarning(DataWarning):
    """Prediction input holds columns the model does not use; they were ignored."""
