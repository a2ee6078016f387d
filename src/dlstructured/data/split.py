"""One validation split for the whole library: ``split_positions``.

``prepare``, ``split_frame`` and
``train(valid_fraction=...)`` all choose their validation rows here. The ``method`` says how:

- ``"sample"``: the course's ``frame.sample(frac=1 - valid_fraction, random_state=seed)``, row
  for row: the training positions in pandas's sampled order, the validation positions sorted.
  What ``prepare`` and ``split_frame`` have always done for ``split="random"``.
- ``"permutation"``: ``np.random.default_rng(seed).permutation(size)``, its first
  ``round(size * valid_fraction)`` positions (at least one, never all) for validation, both
  parts sorted. What ``train(valid_fraction=...)`` has always done.
- ``"hash"``: a row goes to validation when a seeded 64-bit hash of its row number, read as a
  number in [0, 1), is below ``valid_fraction``. Each row is decided alone, so the same row
  lands in the same part however the rows are cut into batches (pass ``start=`` for a batch
  that does not begin at row 0); the validation share is ``valid_fraction`` on average, not
  exactly. Both parts are in row order.
- ``"stratified"`` and ``"grouped"``: ``valid_fraction`` of each label's rows, or of the groups,
  drawn with ``np.random.default_rng(seed)``; the training positions come shuffled.

Only numpy and pandas are used.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from dlstructured._checks import check_choice, check_float, check_int

__all__ = ["SPLIT_METHODS", "hash_fractions", "split_positions"]

SPLIT_METHODS = ("sample", "permutation", "hash", "stratified", "grouped")

# splitmix64's constants (Steele, Lea and Flood, "Fast splittable pseudorandom number
# generators", 2014): a bijective mix of 64-bit integers whose outputs look uniform.
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MIX_1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX_2 = np.uint64(0x94D049BB133111EB)


def hash_fractions(rows: np.ndarray, seed: int) -> np.ndarray:
    """A number in [0, 1) for each row number, fixed by ``(row, seed)`` alone.

    Args:
        rows: Row numbers (non-negative integers).
        seed: The seed; another seed gives unrelated numbers.

    Returns:
        float64 array of the same length as ``rows``.
    """
    rows = np.asarray(rows, dtype=np.uint64)
    with np.errstate(over="ignore"):
        mixed = _splitmix(np.full(1, seed, dtype=np.uint64))
        value = rows * _GOLDEN + mixed
        value = _splitmix(value)
    return (value >> np.uint64(11)).astype(np.float64) / float(1 << 53)


def _splitmix(value: np.ndarray) -> np.ndarray:
    value = value + _GOLDEN
    value = (value ^ (value >> np.uint64(30))) * _MIX_1
    value = (value ^ (value >> np.uint64(27))) * _MIX_2
    return value ^ (value >> np.uint64(31))


def split_positions(
    size: int,
    valid_fraction: float,
    *,
    method: str = "sample",
    seed: int | None = 0,
    labels: np.ndarray | None = None,
    groups: np.ndarray | None = None,
    start: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """Training and validation positions among ``size`` rows (see the module's methods).

    Args:
        size: Number of rows.
        valid_fraction: Share of rows (of groups for ``"grouped"``) for validation, in [0, 1);
            ``0`` keeps all rows for training.
        method: ``"sample"``, ``"permutation"``, ``"hash"``, ``"stratified"`` or ``"grouped"``.
            Defaults to ``"sample"``.
        seed: Seed of the split; ``None`` (``"permutation"`` only) draws a fresh one. Defaults
            to ``0``.
        labels: One stratum per row, for ``"stratified"``. Defaults to ``None``.
        groups: One group per row, for ``"grouped"``. Defaults to ``None``.
        start: Row number of the first row, for ``"hash"`` (a batch of a longer stream).
            Defaults to ``0``.

    Returns:
        ``(train, valid)``: int64 position arrays in ``range(size)``; with ``"hash"`` the
        positions are relative to ``start``.

    Raises:
        TypeError: If an argument has the wrong type.
        ValueError: If an argument has a bad value, or ``labels``/``groups`` is missing for
            its method.

    Example:

    >>> train, valid = split_positions(10, 0.3, seed=0)
    >>> valid.tolist()
    [0, 3, 5]
    """
    size = check_int("size", size, minimum=0)
    valid_fraction = check_float(
        "valid_fraction", valid_fraction, minimum=0.0, maximum=1.0, max_inclusive=False
    )
    method = check_choice("method", method, SPLIT_METHODS)
    if seed is not None or method != "permutation":
        seed = check_int("seed", seed, minimum=0)
    if valid_fraction == 0.0:
        return np.arange(size), np.arange(0)
    if method == "sample":
        # pandas draws the sample; going through it keeps the course's rows exactly.
        train = (
            pd.RangeIndex(size)
            .to_series()
            .sample(frac=1.0 - valid_fraction, random_state=seed)
            .to_numpy()
        )
        return train, _others(size, train)
    if method == "permutation":
        order = np.random.default_rng(seed).permutation(size)
        count = min(max(1, round(size * valid_fraction)), size - 1)
        return np.sort(order[count:]), np.sort(order[:count])
    if method == "hash":
        start = check_int("start", start, minimum=0)
        in_valid = hash_fractions(np.arange(start, start + size), seed) < valid_fraction
        return np.flatnonzero(~in_valid), np.flatnonzero(in_valid)
    rng = np.random.default_rng(seed)
    if method == "stratified":
        codes = _codes("labels", labels, size, method)
        parts = []
        for code in range(codes.max() + 1):
            members = rng.permutation(np.flatnonzero(codes == code))
            parts.append(members[: int(round(valid_fraction * len(members)))])
        valid = np.sort(np.concatenate(parts))
    else:
        codes = _codes("groups", groups, size, method)
        count = int(codes.max()) + 1
        chosen_groups = rng.permutation(count)[: int(round(valid_fraction * count))]
        valid = np.flatnonzero(np.isin(codes, chosen_groups))
    return rng.permutation(_others(size, valid)), valid


def _others(size: int, chosen: np.ndarray) -> np.ndarray:
    """The positions of ``range(size)`` not in ``chosen``, in order."""
    mask = np.ones(size, dtype=bool)
    mask[chosen] = False
    return np.flatnonzero(mask)


def _codes(name: str, values: Any, size: int, method: str) -> np.ndarray:
    if values is None or len(values) != size:
        raise ValueError(
            f"method={method!r} needs `{name}`, one value per row ({size}). Received: "
            f"{name}={'None' if values is None else f'{len(values)} values'}"
        )
    return pd.factorize(np.asarray(values), use_na_sentinel=False)[0]
