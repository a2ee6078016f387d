"""Shared fixtures: tiny, seeded data made by the tests themselves."""

from __future__ import annotations

import numpy as np
import pytest


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)


@pytest.fixture
def backend() -> str:
    import keras

    return keras.backend.backend()
