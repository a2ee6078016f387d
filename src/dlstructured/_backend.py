"""Small backend-neutral helpers over Keras variables."""

from __future__ import annotations

from typing import Any

import keras
import numpy as np


def variable_to_numpy(variable: Any) -> np.ndarray:
    """A host copy of a Keras variable's value, on any backend, without NumPy copy warnings."""
    if keras.backend.backend() == "tensorflow":
        return np.array(variable.numpy())  # TF variables' __array__ lacks numpy 2's copy keyword
    return np.array(keras.ops.convert_to_numpy(variable.value))
