"""Shared fixtures: tiny, seeded data made by the tests themselves.

Hypothesis profiles: ``default`` (a brief run inside ``make test``) and ``fuzz`` (the large budget
of ``make fuzz``), chosen with ``HYPOTHESIS_PROFILE``. Property tests scale their own share of the
budget with :func:`budget`, so each test is written once and runs under both.
"""

from __future__ import annotations

import contextlib
import os
import re
import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, settings

_COMMON = dict(
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    print_blob=True,
)
settings.register_profile("default", max_examples=20, **_COMMON)
settings.register_profile("fuzz", max_examples=400, **_COMMON)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))


def budget(share: float) -> settings:
    """Settings running ``share`` times the active profile's ``max_examples`` (at least 5)."""
    return settings(max_examples=max(5, round(settings.default.max_examples * share)))


@contextlib.contextmanager
def expect_warning(category: type[Warning], match: str = ""):
    """Like ``pytest.warns``, without re-raising third-party noise caught meanwhile.

    Yields a list that holds the matching warnings once the block has run.

    ``pytest.warns`` re-emits every other warning it caught, which loses the module that
    pyproject's filters use to ignore Keras's own deprecation notices. Here the warnings of other
    categories from dlstructured itself still fail the test.
    """
    matching: list[warnings.WarningMessage] = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        yield matching
    ours = [w for w in caught if isinstance(w.message, category)
            and re.search(match, str(w.message))]
    matching.extend(ours)
    seen = [str(w.message) for w in caught]
    assert ours, f"no {category.__name__} matching {match!r}; got {seen}"
    stray = [w for w in caught if not isinstance(w.message, category)
             and "dlstructured" in w.filename.replace("\\", "/").split("site-packages")[-1]]
    assert not stray, [str(w.message) for w in stray]


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)


@pytest.fixture
def backend() -> str:
    import keras

    return keras.backend.backend()
