"""Small backend-neutral helpers over Keras variables and Keras's saving."""

from __future__ import annotations

import contextlib
import sys
import threading
from collections.abc import Iterator
from typing import Any

import keras
import numpy as np

_SAVING = threading.RLock()


def variable_to_numpy(variable: Any) -> np.ndarray:
    """A host copy of a Keras variable's value, on any backend, without NumPy copy warnings."""
    if keras.backend.backend() == "tensorflow":
        return np.array(variable.numpy())  # TF variables' __array__ lacks numpy 2's copy keyword
    return np.array(keras.ops.convert_to_numpy(variable.value))


@contextlib.contextmanager
def saving_without_tensorflow() -> Iterator[None]:
    """Keep Keras's ``.keras`` saving from importing TensorFlow when nothing has imported it.

    On JAX, Keras's serializer asks whether TensorFlow is installed (importing it: about 2 s,
    a tenth of a 2,000-row ``dlstructured train``) before checking whether a value is a
    TensorFlow shape, dtype or type spec. While TensorFlow is not imported no value can be
    one, so within this block that question is answered "no" without the import: the same
    file is written. The answer Keras had cached is put back afterwards; saves from several
    threads take turns. Where Keras's internals are not as expected, nothing is changed.
    """
    with _SAVING:
        lazy = None
        if "tensorflow" not in sys.modules:
            from keras.src.saving import serialization_lib

            lazy = getattr(serialization_lib, "tf", None)
            if getattr(lazy, "_available", "missing") not in (None, False):
                lazy = None  # not Keras's lazy module as we know it, or TensorFlow seen
        if lazy is None:
            yield
            return
        cached = lazy._available
        lazy._available = False
        try:
            yield
        finally:
            lazy._available = cached
