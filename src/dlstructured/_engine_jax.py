"""The fast training engine for the JAX backend: each epoch runs as one compiled XLA program.

Tabular networks are small, so on a CPU most of the time Keras's ``fit`` spends per epoch is
Python and dispatch overhead, not arithmetic. This engine removes it while keeping the Keras model,
its layers, its loss, its metrics and its optimizer:

- the data go to the device once per :func:`fit`, not once per epoch;
- one ``jax.jit``-compiled function runs a whole epoch: a ``jax.lax.scan`` over the full batches,
  one more step on the last partial batch (compiled into the same program), then the validation
  pass, in inference mode, in chunks. The forward pass is the network's ``stateless_call``, the
  update is the optimizer's ``stateless_apply``, the metrics use their stateless API;
- between epochs the only host work is the epoch's row order, one call of the compiled function,
  writing the new values into the Keras variables, and one transfer of the epoch's logs.

Keras semantics kept: dropout and batch normalization in training mode for the steps (the dropout
seed-generator states and the batch-norm moving statistics are carried like any other
non-trainable variable) and in inference mode for validation; regularization losses of the model
are added to the loss, in training and in validation, as Keras does; the training loss is the
mean of the per-batch losses weighted by batch size; metrics accumulate over the epoch and are
reset at its start. The row order of epoch ``e`` depends only on ``(seed, e)`` and is the same as
the generic engine's, so both engines see the batches in the same order.

Callbacks receive the epoch-level events (``on_train_begin``, ``on_epoch_begin``,
``on_epoch_end`` with the logs, ``on_train_end``) but no batch-level events: batches run inside
the compiled program. Before ``on_epoch_end`` the current weights, non-trainable state and
optimizer state are written into the Keras variables, so callbacks (early stopping, checkpoints)
see the model as it is; changes callbacks make to the model's weights or to the optimizer (for
example its learning rate) are read back at the start of the next epoch.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

# Validation runs in inference mode, where rows are independent, so its chunk size changes only
# speed and peak memory, never the results.
_MIN_VALIDATION_CHUNK = 2048
_MISSING = object()


def epoch_order(num_rows: int, seed: int | None, epoch: int) -> np.ndarray | None:
    """Row order for one epoch: a permutation fixed by ``(seed, epoch)``, or ``None`` (no shuffle).

    The same rule as the generic engine's, so both engines feed the same batches.
    """
    if seed is None:
        return None
    return np.random.default_rng((seed, epoch)).permutation(num_rows).astype(np.int32)


def _training_kwargs(network: Any, training: bool) -> dict[str, bool]:
    # Keras passes `training` only to models whose `call` accepts it (functional models do).
    if getattr(network, "_call_has_training_arg", True):
        return {"training": training}
    return {}


def _match_rank(y_true: Any, y_pred: Any) -> Any:
    """Give ``(batch,)`` targets the ``(batch, 1)`` shape of a single-unit output."""
    if y_true.ndim == 1 and y_pred.ndim == 2 and y_pred.shape[-1] == 1:
        return y_true[:, None]
    return y_true


def _take(array: Any, rows: Any) -> Any:
    # The rows of a batch are distinct indices within bounds: no clamping or fill needed.
    if array is None:
        return None
    return array.at[rows].get(mode="promise_in_bounds", unique_indices=True)


class _EpochProgram:
    """The compiled epoch for one network, loss, metric list, optimizer and data shape."""

    def __init__(
        self,
        network: Any,
        *,
        loss: Any,
        metrics: list,
        optimizer: Any,
        num_rows: int,
        batch_size: int,
        num_valid_rows: int,
    ) -> None:
        self.network = network
        self.loss = loss
        self.metrics = list(metrics)
        self.optimizer = optimizer
        self.num_rows = num_rows
        self.batch_size = min(batch_size, num_rows)
        self.num_valid_rows = num_valid_rows
        self.valid_chunk = min(num_valid_rows, max(batch_size, _MIN_VALIDATION_CHUNK))
        # Log names, in the order of the values the program returns; filled while tracing.
        self.names: list[str] = []
        # The state (argument 0) is donated: its buffers are reused for the new state.
        self.run = jax.jit(self._epoch, donate_argnums=0)

    # ----------------------------------------------------------------------------- tracing
    def _forward(self, trainable, non_trainable, x, training):
        y_pred, non_trainable, losses = self.network.stateless_call(
            trainable,
            non_trainable,
            x,
            return_losses=True,
            **_training_kwargs(self.network, training),
        )
        extra = sum(jnp.sum(value).astype(jnp.float32) for value in losses) if losses else 0.0
        return y_pred, non_trainable, extra

    def _loss_value(self, y_true, y_pred, sample_weight, extra):
        return jnp.asarray(self.loss(y_true, y_pred, sample_weight), jnp.float32) + extra

    def _update_metrics(self, metric_values, y_true, y_pred):
        # Unweighted, as Keras treats `compile(metrics=...)` (only `weighted_metrics` get the
        # sample weights).
        return [
            metric.stateless_update_state(values, y_true, y_pred)
            for metric, values in zip(self.metrics, metric_values, strict=True)
        ]

    def _train_step(self, data, carry, rows):
        x, y, sample_weight = data
        trainable, non_trainable, optimizer_values, metric_values, loss_sum = carry
        x_batch, y_batch, w_batch = _take(x, rows), _take(y, rows), _take(sample_weight, rows)

        def objective(trainable):
            y_pred, new_non_trainable, extra = self._forward(
                trainable, non_trainable, x_batch, True
            )
            value = self._loss_value(_match_rank(y_batch, y_pred), y_pred, w_batch, extra)
            return value, (y_pred, new_non_trainable)

        (value, (y_pred, non_trainable)), grads = jax.value_and_grad(objective, has_aux=True)(
            trainable
        )
        trainable, optimizer_values = self.optimizer.stateless_apply(
            optimizer_values, grads, trainable
        )
        metric_values = self._update_metrics(metric_values, _match_rank(y_batch, y_pred), y_pred)
        loss_sum = loss_sum + value * rows.shape[0]
        return (trainable, non_trainable, optimizer_values, metric_values, loss_sum)

    def _valid_step(self, state, data, carry, start, size):
        trainable, non_trainable = state
        x, y, sample_weight = data
        metric_values, loss_sum = carry

        def chunk(array):
            if array is None:
                return None
            return jax.lax.dynamic_slice_in_dim(array, start, size, axis=0)

        y_pred, _, extra = self._forward(trainable, non_trainable, chunk(x), False)
        y_true, weights = _match_rank(chunk(y), y_pred), chunk(sample_weight)
        value = self._loss_value(y_true, y_pred, weights, extra)
        metric_values = self._update_metrics(metric_values, y_true, y_pred)
        return metric_values, loss_sum + value * size

    def _results(self, prefix, metric_values, mean_loss):
        names, values = [prefix + "loss"], [mean_loss]
        for metric, metric_state in zip(self.metrics, metric_values, strict=True):
            result = metric.stateless_result(metric_state)
            if isinstance(result, dict):
                for key, item in result.items():
                    names.append(prefix + key)
                    values.append(item)
            else:
                names.append(prefix + metric.name)
                values.append(result)
        return names, [jnp.asarray(value, jnp.float32).reshape(()) for value in values]

    def _fresh_metric_values(self):
        return [
            [jnp.asarray(value) for value in metric.stateless_reset_state()]
            for metric in self.metrics
        ]

    def _epoch(self, state, data, valid_data, order):
        """One epoch: the training steps in ``order``, then validation. Traced once per fit."""
        trainable, non_trainable, optimizer_values = state
        batch = self.batch_size
        full_batches, remainder = divmod(self.num_rows, batch)
        carry = (
            trainable,
            non_trainable,
            optimizer_values,
            self._fresh_metric_values(),
            jnp.zeros((), jnp.float32),
        )

        def scan_step(carry, rows):
            return self._train_step(data, carry, rows), None

        if full_batches:
            rows = order[: full_batches * batch].reshape(full_batches, batch)
            carry, _ = jax.lax.scan(scan_step, carry, rows)
        if remainder:
            carry = self._train_step(data, carry, order[full_batches * batch :])
        trainable, non_trainable, optimizer_values, metric_values, loss_sum = carry
        names, values = self._results("", metric_values, loss_sum / self.num_rows)

        if valid_data is not None:
            valid_state = (trainable, non_trainable)
            chunk = self.valid_chunk
            full_chunks, remainder = divmod(self.num_valid_rows, chunk)
            carry = (self._fresh_metric_values(), jnp.zeros((), jnp.float32))

            def valid_scan_step(carry, index):
                return self._valid_step(valid_state, valid_data, carry, index * chunk, chunk), None

            if full_chunks:
                carry, _ = jax.lax.scan(valid_scan_step, carry, jnp.arange(full_chunks))
            if remainder:
                carry = self._valid_step(
                    valid_state, valid_data, carry, full_chunks * chunk, remainder
                )
            metric_values, loss_sum = carry
            valid_names, valid_values = self._results(
                "val_", metric_values, loss_sum / self.num_valid_rows
            )
            names += valid_names
            values += valid_values

        self.names = names
        return (trainable, non_trainable, optimizer_values), jnp.stack(values)


def _values(variables: list, seen: set) -> list:
    """Current values of ``variables``, each a buffer of its own so that it can be donated.

    Two variables may hold the same array (after ``a.assign(b.value)``, for example); XLA
    refuses to donate one buffer twice, so the second one gets a copy.
    """
    values = []
    for variable in variables:
        value = variable.value
        if id(value) in seen:
            value = jnp.copy(value)
        seen.add(id(value))
        values.append(value)
    return values


def _assign(variables: list, values: list) -> None:
    for variable, value in zip(variables, values, strict=True):
        variable.assign(value)


def fit(
    network: Any,
    *,
    x: np.ndarray,
    y: np.ndarray,
    sample_weight: np.ndarray | None,
    validation: tuple | None,
    loss: Any,
    metrics: list,
    optimizer: Any,
    epochs: int,
    initial_epoch: int,
    batch_size: int,
    seed: int | None,
    callbacks: Any,
) -> None:
    """Train ``network`` in place, one compiled XLA program per epoch (JAX backend only).

    Same contract as the generic engine (``_engine_keras.fit``); ``training.train`` checks the
    arguments. The network stays uncompiled; during the call ``network.optimizer`` is
    ``optimizer`` (learning-rate callbacks look for it there); afterwards it is as before.

    Args:
        network: An uncompiled single-input, single-output ``keras.Model``.
        x: Training features, float32 of shape ``(rows, features)``.
        y: Training targets of shape ``(rows,)``: float32 (regression, binary 0/1) or int32
            class codes (multiclass).
        sample_weight: Float32 weights of shape ``(rows,)``, or ``None``.
        validation: ``None`` or ``(x_valid, y_valid, sample_weight_valid_or_None)``.
        loss: A Keras loss object, called as ``loss(y_true, y_pred, sample_weight)``.
        metrics: Fresh Keras metric objects whose variables exist (the built-in metrics create
            them in their constructor).
        optimizer: A Keras optimizer, built on ``network.trainable_variables`` or not built yet.
        epochs: Index of the epoch to stop before (0-based, like Keras).
        initial_epoch: Index of the first epoch to run.
        batch_size: Rows per training step; the last, partial batch is used too.
        seed: Fixes the row order of each epoch; ``None`` keeps the rows in order (no shuffle).
        callbacks: A ``keras.callbacks.CallbackList`` whose model is ``network``. Only
            epoch-level events are sent.

    Returns:
        None. The network's variables and the optimizer's variables hold the trained state.

    Raises:
        ValueError: If a metric creates its variables only on its first update (for example
            ``keras.metrics.F1Score``), which cannot happen inside the compiled epoch.
    """
    for metric in metrics:
        if not metric.variables:
            raise ValueError(
                "The JAX engine needs metrics whose state variables exist before training "
                f"(built-in metrics create them when constructed). Received: metric "
                f"{metric.name!r} ({type(metric).__name__}) with no variables; use "
                "engine='keras' for it."
            )
    num_rows = len(x)
    # Learning-rate callbacks find the optimizer as `model.optimizer`; an uncompiled model has no
    # such attribute, so lend it for the call and put things back as they were afterwards.
    previous_optimizer = getattr(network, "optimizer", _MISSING)
    network.optimizer = optimizer
    network.stop_training = False
    try:
        if not optimizer.built:
            optimizer.build(network.trainable_variables)
        data = (jnp.asarray(x), jnp.asarray(y), _device_or_none(sample_weight))
        valid_data, num_valid_rows = None, 0
        if validation is not None:
            x_valid, y_valid, w_valid = validation
            valid_data = (jnp.asarray(x_valid), jnp.asarray(y_valid), _device_or_none(w_valid))
            num_valid_rows = len(x_valid)
        program = _EpochProgram(
            network,
            loss=loss,
            metrics=metrics,
            optimizer=optimizer,
            num_rows=num_rows,
            batch_size=batch_size,
            num_valid_rows=num_valid_rows,
        )
        in_order = jnp.arange(num_rows, dtype=jnp.int32) if seed is None else None
        trainable = network.trainable_variables
        non_trainable = network.non_trainable_variables
        optimizer_variables = optimizer.variables

        logs: dict[str, float] = {}
        callbacks.on_train_begin()
        for epoch in range(initial_epoch, epochs):
            callbacks.on_epoch_begin(epoch)
            order = in_order if seed is None else epoch_order(num_rows, seed, epoch)
            seen: set[int] = set()
            state = tuple(
                _values(variables, seen)
                for variables in (trainable, non_trainable, optimizer_variables)
            )
            (new_trainable, new_non_trainable, new_optimizer), values = program.run(
                state, data, valid_data, order
            )
            # The call returns before the epoch has run, and `state` was donated: point the Keras
            # variables at the new (pending) values at once, so they stay valid even if the wait
            # below is interrupted.
            _assign(trainable, new_trainable)
            _assign(non_trainable, new_non_trainable)
            _assign(optimizer_variables, new_optimizer)
            logs = dict(zip(program.names, np.asarray(values).tolist(), strict=True))
            callbacks.on_epoch_end(epoch, logs)
            if network.stop_training:
                break
        callbacks.on_train_end(logs)
    finally:
        if previous_optimizer is _MISSING:
            del network.optimizer
        else:
            network.optimizer = previous_optimizer


def _device_or_none(array: np.ndarray | None) -> Any:
    return None if array is None else jnp.asarray(array)
