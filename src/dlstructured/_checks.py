"""Argument checks shared by the public functions: one voice for every message."""

from __future__ import annotations

import numbers
from collections.abc import Iterable, Mapping, Sequence
from typing import Any


def _received(name: str, value: Any) -> str:
    return f"Received: {name}={value!r}"


def check_int(name: str, value: Any, *, minimum: int | None = None) -> int:
    """Return ``value`` as an int, or raise naming the argument.

    Booleans are refused even though Python treats them as integers.
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"`{name}` must be an integer. {_received(name, value)}")
    value = int(value)
    if minimum is not None and value < minimum:
        raise ValueError(f"`{name}` must be an integer >= {minimum}. {_received(name, value)}")
    return value


def check_float(
    name: str,
    value: Any,
    *,
    minimum: float | None = None,
    maximum: float | None = None,
    min_inclusive: bool = True,
    max_inclusive: bool = True,
) -> float:
    """Return ``value`` as a finite float within the given bounds, or raise naming the argument."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"`{name}` must be a number. {_received(name, value)}")
    value = float(value)
    if value != value or value in (float("inf"), float("-inf")):
        raise ValueError(f"`{name}` must be a finite number. {_received(name, value)}")
    low_ok = minimum is None or (value >= minimum if min_inclusive else value > minimum)
    high_ok = maximum is None or (value <= maximum if max_inclusive else value < maximum)
    if not (low_ok and high_ok):
        left = "[" if min_inclusive else "("
        right = "]" if max_inclusive else ")"
        low = "-inf" if minimum is None else f"{minimum:g}"
        high = "inf" if maximum is None else f"{maximum:g}"
        raise ValueError(
            f"`{name}` must be in {left}{low}, {high}{right}. {_received(name, value)}"
        )
    return value


def check_rate(name: str, value: Any) -> float:
    """A dropout-like rate in [0, 1)."""
    return check_float(name, value, minimum=0.0, maximum=1.0, max_inclusive=False)


def check_bool(name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"`{name}` must be True or False. {_received(name, value)}")
    return value


def check_choice(name: str, value: Any, choices: Iterable[str]) -> str:
    choices = tuple(choices)
    if not isinstance(value, str) or value not in choices:
        listed = ", ".join(repr(c) for c in choices)
        raise ValueError(f"`{name}` must be one of {listed}. {_received(name, value)}")
    return value


def check_kinds(value: Any, choices: Iterable[str]) -> dict:
    """A ``kinds`` mapping of column name -> kind (``None`` for none), as a new dict."""
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise TypeError(
            "`kinds` must be a dict of column name -> kind, such as {'zip': 'categorical'}. "
            f"{_received('kinds', value)}"
        )
    for column, kind in value.items():
        check_choice(f"kinds[{column!r}]", kind, choices)
    return dict(value)


def check_optional_seed(name: str, value: Any) -> int | None:
    if value is None:
        return None
    return check_int(name, value, minimum=0)


def check_units_sequence(name: str, value: Any, *, allow_empty: bool = True) -> tuple[int, ...]:
    """A sequence of positive layer widths such as ``(512, 512, 512)``."""
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
        raise TypeError(
            f"`{name}` must be a list or tuple of positive integers, such as (512, 512, 512). "
            f"{_received(name, value)}"
        )
    if not allow_empty and len(value) == 0:
        raise ValueError(f"`{name}` must name at least one layer width. {_received(name, value)}")
    for item in value:
        if isinstance(item, bool) or not isinstance(item, numbers.Integral):
            raise TypeError(
                f"`{name}` must contain only positive integers; found {item!r}. "
                f"{_received(name, value)}"
            )
        if item < 1:
            raise ValueError(
                f"`{name}` must contain only positive integers; found {item!r}. "
                f"{_received(name, value)}"
            )
    return tuple(int(item) for item in value)
