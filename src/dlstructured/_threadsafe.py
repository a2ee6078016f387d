"""Prediction that several threads may call at once on the same model.

On the JAX backend, Keras's ``Model.predict`` and ``Model.predict_on_batch`` are not safe to call
from two threads at once: each call swaps the model's state in and out of the Keras variables, so
a concurrent call can find a function slot emptied (``TypeError: 'NoneType' object is not
callable``) or a buffer already donated (``Buffer has been deleted or donated``); measured with
Keras 3.15 and JAX 0.10. On TensorFlow they are safe. ``predict_on_batch`` holds one lock per
model around Keras's call, so threads take turns on the compiled function and every result is
what a sequential call returns.

On JAX a leaner path is taken for models whose layers and variables it can see: one
``jax.jit``-compiled ``stateless_call`` in inference mode, given the variables' current values at
each call. It changes no state, so threads need no lock, and it skips the bookkeeping of Keras's
predict step, which is most of the time of a call on a few rows.
"""

from __future__ import annotations

import threading
import weakref
from typing import Any

import numpy as np

_LOCKS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_LOCKS_GUARD = threading.Lock()


def model_lock(model: Any) -> threading.Lock:
    """The lock that serializes Keras prediction calls on ``model`` (one per model)."""
    with _LOCKS_GUARD:
        lock = _LOCKS.get(model)
        if lock is None:
            lock = _LOCKS[model] = threading.Lock()
        return lock


def predict_on_batch(model: Any, batch: Any) -> np.ndarray:
    """``model.predict_on_batch(batch)`` as a numpy array, safe to call from many threads.

    Args:
        model: A Keras model.
        batch: The inputs of one batch.

    Returns:
        The model's outputs for the batch.

    Example:

    >>> import numpy as np
    >>> from dlstructured import linear_unit
    >>> from dlstructured._threadsafe import predict_on_batch
    >>> predict_on_batch(linear_unit(2, seed=0), np.zeros((3, 2), "float32")).shape
    (3, 1)
    """
    import keras

    if keras.backend.backend() == "jax" and isinstance(model, keras.Model) and model.built:
        trainable = [variable.value for variable in model.trainable_variables]
        non_trainable = [variable.value for variable in model.non_trainable_variables]
        return np.asarray(_jax_inference(model)(trainable, non_trainable, batch))
    with model_lock(model):
        return np.asarray(model.predict_on_batch(batch))


_JAX_INFERENCE: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _jax_inference(model: Any) -> Any:
    """The model's compiled inference function on JAX (one per model, made on first use)."""
    with _LOCKS_GUARD:
        function = _JAX_INFERENCE.get(model)
        if function is None:
            import jax

            reference = weakref.ref(model)  # the cache must not keep the model alive

            from dlstructured.training._engine_jax import _training_kwargs

            def infer(trainable, non_trainable, batch):
                network = reference()
                outputs, _ = network.stateless_call(
                    trainable, non_trainable, batch, **_training_kwargs(network, False)
                )
                return outputs

            function = _JAX_INFERENCE[model] = jax.jit(infer)
        return function
