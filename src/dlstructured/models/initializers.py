"""Weight initializers that draw on the host with NumPy.

Under the JAX backend every Keras random draw of a new shape compiles a small XLA program (a
tenth of a second or more on a laptop core), and so does every ``zeros`` or constant fill; a
model with a dozen differently shaped weights spends seconds on them before its first step.
These initializers draw the same distributions with NumPy, so building a model compiles
nothing. The library's own layers use them inside ``build``; they are not part of any saved
config (a saved model keeps its weights, not how they started).

A given ``seed`` draws the same values on every backend; with ``seed=None`` the seed is drawn
from Python's ``random`` module, as Keras's own unseeded initializers do, so
``keras.utils.set_random_seed`` makes those repeat too.
"""

from __future__ import annotations

import random
from typing import Any

import numpy as np


class HostInitializer:
    """A callable ``(shape, dtype=None) -> numpy.ndarray`` of float32 draws.

    Args:
        distribution: ``"normal"`` (``mean``, ``stddev``), ``"uniform"`` (``low``, ``high``),
            ``"signs"`` (-1 or +1, each with probability 1/2) or ``"constant"`` (``value``).
        seed: Seed of the draws. Defaults to ``None`` (drawn from Python's ``random``).
        **params: The distribution's parameters, as listed above.

    Example:

    >>> draw = HostInitializer("uniform", seed=0, low=-1.0, high=1.0)
    >>> values = draw((2, 3))
    >>> values.shape, values.dtype.name, bool((abs(values) <= 1).all())
    ((2, 3), 'float32', True)
    >>> bool((draw((2, 3)) == values).all())
    True
    >>> HostInitializer("constant", value=0.5)((2,)).tolist()
    [0.5, 0.5]
    """

    _PARAMS = {"normal": ("mean", "stddev"), "uniform": ("low", "high"), "signs": (),
               "constant": ("value",)}

    def __init__(self, distribution: str, seed: int | None = None, **params: float) -> None:
        if distribution not in self._PARAMS:
            raise ValueError(
                f"`distribution` must be one of {sorted(self._PARAMS)}. "
                f"Received: distribution={distribution!r}"
            )
        defaults = {"mean": 0.0, "stddev": 1.0}
        unknown = set(params) - set(self._PARAMS[distribution])
        if unknown:
            raise ValueError(
                f"A {distribution!r} initializer takes {list(self._PARAMS[distribution])}. "
                f"Received: {sorted(unknown)}"
            )
        self.distribution = distribution
        self.params = {name: float(params.get(name, defaults.get(name, 0.0)))
                       for name in self._PARAMS[distribution]}
        # A constant needs no seed: drawing one would move Python's `random` for nothing (and
        # at import time for the module-level zeros).
        if seed is not None:
            self.seed = int(seed)
        else:
            self.seed = None if distribution == "constant" else random.randint(1, 10**9)

    def __call__(self, shape: Any, dtype: Any = None) -> np.ndarray:
        shape = tuple(int(size) for size in shape)
        params = self.params
        if self.distribution == "constant":
            return np.full(shape, params["value"], np.float32)
        rng = np.random.default_rng(self.seed)
        if self.distribution == "normal":
            values = rng.normal(params["mean"], params["stddev"], size=shape)
        elif self.distribution == "uniform":
            values = rng.uniform(params["low"], params["high"], size=shape)
        else:
            values = np.where(rng.random(size=shape) < 0.5, -1.0, 1.0)
        return values.astype(np.float32)
