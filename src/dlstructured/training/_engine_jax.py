"""The fast training engine for the JAX backend: each epoch runs as one compiled XLA program.

Tabular networks are small, so on a CPU most of the time Keras's ``fit`` spends per epoch is
Python and dispatch overhead, not arithmetic. This engine removes it while keeping the Keras model,
its layers, its loss, its metrics and its optimizer:

- the data go to the device once per ``fit``, not once per epoch;
- one ``jax.jit``-compiled function runs a whole epoch: a ``jax.lax.scan`` over the batches, then
  the validation pass, in inference mode, in chunks. The forward pass is the network's
  ``stateless_call``, the update is the optimizer's ``stateless_apply``, the metrics use their
  stateless API;
- compiling is most of the first epoch's time, so the validation rows are padded to whole chunks
  of equal size, with rows that are masked out (zero weight in the loss and the metrics), and
  the forward pass is compiled once. The last, partial training batch is padded the same way
  (with a Keras mask for batch normalization's statistics) when the padding rows are a small
  share of the epoch's rows; otherwise, or where padding could change a result (a layer this
  module does not know to work row by row, or a loss whose reduction it does not know), it runs
  as a step of its own, compiled into the same program;
- between epochs the only host work is the epoch's row order, one call of the compiled function,
  writing the new values into the Keras variables, and one transfer of the epoch's logs.

Keras semantics kept: dropout and batch normalization in training mode for the steps (the dropout
seed-generator states and the batch-norm moving statistics are carried like any other
non-trainable variable) and in inference mode for validation; regularization losses of the model
are added to the loss, in training and in validation, as Keras does; the training loss is the
mean of the per-batch losses weighted by batch size; metrics accumulate over the epoch and are
reset at its start. A padded partial batch gives the same loss, gradient, metrics and
batch-normalization statistics as the partial batch alone (to float rounding); its dropout masks
are drawn for a full batch's rows, so they need not be the ones Keras's ``fit`` would draw for
that step (they are as random). The row order of epoch ``e`` depends only on ``(seed, e)`` and
is the same as the generic engine's, so both engines see the batches in the same order.

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

from dlstructured.models.layers import CategoryEmbedding
from dlstructured.training.contract import (  # one row-order rule for both engines
    ArraySource,
    BatchSource,
    FitSpec,
    compile_like_every_engine,
    epoch_order,
)

# Validation runs in inference mode, where rows are independent, so its chunk size changes only
# speed and peak memory, never the results.
__all__ = ["ENGINE", "JaxEngine", "epoch_order"]

_MIN_VALIDATION_CHUNK = 2048
# Padding the partial batch saves compiling a second step (a good part of a second) but computes
# the padding rows in every epoch; it pays when they are a small share of the epoch's rows.
_MAX_PADDING_SHARE = 0.02

# Loss reductions that padding rows with zero weight leaves exact: "count" reductions divide by
# the number of rows, padding included, so the loss is scaled back by rows / real rows; "weight"
# reductions divide by the summed weights (or not at all), which padding does not change.
_REDUCTION_RESCALE = {
    "sum_over_batch_size": "count",
    "mean": "count",
    "sum": "weight",
    "mean_with_sample_weight": "weight",
}


def _rowwise_layer_types() -> tuple[frozenset, frozenset]:
    """Layer classes known to act on each row alone in training mode, and the subset of them
    that hands a Keras mask on to the next layer (so that it reaches batch normalization)."""
    import keras

    layers = keras.layers
    passes_masks = frozenset(
        {layers.InputLayer, layers.Dense, layers.Dropout, layers.Activation, layers.ReLU}
    )
    rowwise = passes_masks | {
        layers.LeakyReLU,
        layers.ELU,
        layers.Softmax,
        layers.GaussianNoise,
        layers.GaussianDropout,
        layers.AlphaDropout,
        layers.LayerNormalization,
        layers.Concatenate,
        layers.Flatten,
        CategoryEmbedding,
    }
    return frozenset(rowwise), passes_masks


def _padding_mode(network: Any) -> str | None:
    """How a batch padded with masked-out rows can run through ``network`` in training mode.

    Returns ``"plain"`` when every layer works row by row (padding rows change nothing for the
    real ones), ``"mask"`` when there is batch normalization too and every layer is known to pass
    a Keras mask on to it (so its batch statistics leave the padding out), or ``None`` when
    padding could change the results (any other layer, a nested model, a subclassed model).
    Exact class checks: a subclass may override ``call``.
    """
    import keras

    rowwise, passes_masks = _rowwise_layer_types()
    kinds = {type(layer) for layer in network.layers}
    if kinds <= rowwise:
        return "plain"
    chain = type(network).__name__ in ("Functional", "Sequential")
    if chain and kinds <= passes_masks | {keras.layers.BatchNormalization}:
        return "mask"
    return None


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
        self.rescale = _REDUCTION_RESCALE.get(getattr(loss, "reduction", None))
        # Pad the partial batch (see the module's docstring), or run it as a step of its own.
        self.padding = _padding_mode(network) if self.rescale else None
        padding_rows = -num_rows % self.batch_size
        self.pads_tail = (
            self.padding is not None
            and padding_rows > 0
            and padding_rows <= _MAX_PADDING_SHARE * num_rows
        )
        # Validation in equal chunks of at least _MIN_VALIDATION_CHUNK rows (or batch_size),
        # the last one padded, when the loss's reduction allows; else chunks of that size and a
        # smaller last one.
        largest = max(batch_size, _MIN_VALIDATION_CHUNK)
        if self.rescale and num_valid_rows:
            chunks = -(-num_valid_rows // largest)
            self.valid_chunk = -(-num_valid_rows // chunks)
            self.padded_valid_rows = chunks * self.valid_chunk
        else:
            self.valid_chunk = min(num_valid_rows, largest)
            self.padded_valid_rows = num_valid_rows
        # Log names, in the order of the values the program returns; filled while tracing.
        self.names: list[str] = []
        # The state (argument 0) is donated: its buffers are reused for the new state.
        self.run = jax.jit(self._epoch, donate_argnums=0)

    def validation_arrays(self, x: np.ndarray, y: np.ndarray, weights: np.ndarray | None):
        """The validation data on the device, padded to whole chunks, and the rows' mask.

        The mask is ``None`` when nothing is padded (and on the exact path).
        """
        padding = self.padded_valid_rows - len(x)
        if not padding:
            return (_device(x), _device(y), _device(weights), None)

        def pad(array):
            if array is None:
                return None
            return _device(np.concatenate([array, np.zeros_like(array[:1]).repeat(padding, 0)]))

        mask = np.zeros(self.padded_valid_rows, np.float32)
        mask[: len(x)] = 1.0
        return (pad(x), pad(y), pad(weights), _device(mask))

    # ----------------------------------------------------------------------------- tracing
    def _forward(self, trainable, non_trainable, x, training, mask=None):
        kwargs = _training_kwargs(self.network, training)
        if mask is not None:
            kwargs["mask"] = mask > 0
        y_pred, non_trainable, losses = self.network.stateless_call(
            trainable, non_trainable, x, return_losses=True, **kwargs
        )
        if mask is not None:
            # The output carries the Keras mask, which Keras losses and metrics would apply (and
            # rescale) on their own; the padding rows' weights are applied explicitly instead.
            y_pred = jnp.array(y_pred, copy=True)
        extra = sum(jnp.sum(value).astype(jnp.float32) for value in losses) if losses else 0.0
        return y_pred, non_trainable, extra

    def _loss_value(self, y_true, y_pred, weights, mask, extra):
        """The loss of the real rows (``mask`` > 0; all rows when it is ``None``) plus ``extra``."""
        if mask is not None:
            weights = mask if weights is None else weights * mask
        value = jnp.asarray(self.loss(y_true, y_pred, weights), jnp.float32)
        if mask is not None and self.rescale == "count":
            value = value * (mask.shape[0] / jnp.sum(mask))
        return value + extra

    def _update_metrics(self, metric_values, y_true, y_pred, mask=None):
        # Unweighted, as Keras treats `compile(metrics=...)` (only `weighted_metrics` get the
        # sample weights); padding rows get weight 0.
        kwargs = {} if mask is None else {"sample_weight": mask}
        return [
            metric.stateless_update_state(values, y_true, y_pred, **kwargs)
            for metric, values in zip(self.metrics, metric_values, strict=True)
        ]

    def _train_step(self, data, carry, rows, mask=None):
        x, y, sample_weight = data
        trainable, non_trainable, optimizer_values, metric_values, loss_sum = carry
        x_batch, y_batch, w_batch = _take(x, rows), _take(y, rows), _take(sample_weight, rows)
        layer_mask = mask if self.padding == "mask" else None

        def objective(trainable):
            y_pred, new_non_trainable, extra = self._forward(
                trainable, non_trainable, x_batch, True, layer_mask
            )
            y_true = _match_rank(y_batch, y_pred)
            value = self._loss_value(y_true, y_pred, w_batch, mask, extra)
            return value, (y_pred, new_non_trainable)

        (value, (y_pred, non_trainable)), grads = jax.value_and_grad(objective, has_aux=True)(
            trainable
        )
        trainable, optimizer_values = self.optimizer.stateless_apply(
            optimizer_values, grads, trainable
        )
        metric_values = self._update_metrics(
            metric_values, _match_rank(y_batch, y_pred), y_pred, mask
        )
        real_rows = rows.shape[0] if mask is None else jnp.sum(mask)
        loss_sum = loss_sum + value * real_rows
        return (trainable, non_trainable, optimizer_values, metric_values, loss_sum)

    def _valid_step(self, state, data, carry, start, size):
        trainable, non_trainable = state
        x, y, sample_weight, mask = data
        metric_values, loss_sum = carry

        def chunk(array):
            if array is None:
                return None
            return jax.lax.dynamic_slice_in_dim(array, start, size, axis=0)

        # Inference mode: rows are independent, so padding rows need no Keras mask.
        y_pred, _, extra = self._forward(trainable, non_trainable, chunk(x), False)
        y_true, weights, mask = _match_rank(chunk(y), y_pred), chunk(sample_weight), chunk(mask)
        value = self._loss_value(y_true, y_pred, weights, mask, extra)
        metric_values = self._update_metrics(metric_values, y_true, y_pred, mask)
        real_rows = size if mask is None else jnp.sum(mask)
        return metric_values, loss_sum + value * real_rows

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

    def _batches(self, order):
        """The epoch's batches as ``(rows, masks)`` to scan over, and the rows of a partial
        batch that runs as a step of its own (``None`` when there is none)."""
        batch = self.batch_size
        full_batches, remainder = divmod(self.num_rows, batch)
        rows = order[: full_batches * batch].reshape(full_batches, batch)
        if not remainder:
            return (rows, None), None
        if not self.pads_tail:
            return (rows, None), order[full_batches * batch :]
        # Pad with the epoch's first rows: the batch's indices stay distinct (see `_take`).
        tail = jnp.concatenate([order[full_batches * batch :], order[: batch - remainder]])
        rows = jnp.concatenate([rows, tail[None, :]])
        positions = jnp.arange((full_batches + 1) * batch).reshape(full_batches + 1, batch)
        return (rows, (positions < self.num_rows).astype(jnp.float32)), None

    def _epoch(self, state, data, valid_data, order):
        """One epoch: the training steps in ``order``, then validation. Traced once per fit."""
        trainable, non_trainable, optimizer_values = state
        carry = (
            trainable,
            non_trainable,
            optimizer_values,
            self._fresh_metric_values(),
            jnp.zeros((), jnp.float32),
        )

        def scan_step(carry, batch):
            rows, mask = batch
            return self._train_step(data, carry, rows, mask), None

        scanned, own_step = self._batches(order)
        if scanned[0].shape[0]:
            carry, _ = jax.lax.scan(scan_step, carry, scanned)
        if own_step is not None:
            carry = self._train_step(data, carry, own_step)
        trainable, non_trainable, optimizer_values, metric_values, loss_sum = carry
        names, values = self._results("", metric_values, loss_sum / self.num_rows)

        if valid_data is not None:
            valid_state = (trainable, non_trainable)
            chunk = self.valid_chunk
            full_chunks, remainder = divmod(self.padded_valid_rows, chunk)
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


class JaxEngine:
    """Trains one compiled XLA program per epoch (JAX backend only); see ``contract.Engine``.

    An ``ArraySource`` goes to the device once per ``fit`` and each epoch's order is its
    ``order(epoch, seed)``; any other source's batches of an epoch are gathered on the host and
    go to the device once per epoch (the compiled program is the same).
    """

    name = "jax"

    def fit(self, network: Any, source: BatchSource, spec: FitSpec) -> None:
        """Train ``network`` in place on ``source`` as ``spec`` says.

        Raises:
            ValueError: If a metric creates its variables only on its first update (for
                example ``keras.metrics.F1Score``), which cannot happen inside the compiled
                epoch.
        """
        for metric in spec.metrics:
            if not metric.variables:
                raise ValueError(
                    "The JAX engine needs metrics whose state variables exist before training "
                    f"(built-in metrics create them when constructed). Received: metric "
                    f"{metric.name!r} ({type(metric).__name__}) with no variables; use "
                    "engine='keras' for it."
                )
        # Compiled like Keras's engine leaves it: learning-rate callbacks find the optimizer as
        # `model.optimizer`, and afterwards `network.evaluate` works.
        compile_like_every_engine(network, spec)
        network.stop_training = False
        optimizer, num_rows = spec.optimizer, source.num_rows
        if not optimizer.built:
            optimizer.build(network.trainable_variables)
        program = _EpochProgram(
            network,
            loss=spec.loss,
            metrics=list(spec.metrics),
            optimizer=optimizer,
            num_rows=num_rows,
            batch_size=spec.batch_size,
            num_valid_rows=0 if spec.validation is None else len(spec.validation[0]),
        )
        in_memory = isinstance(source, ArraySource)
        if in_memory:
            data = (_device(source.x), _device(source.y), _device(source.sample_weight))
        validation = spec.validation
        valid_data = None if validation is None else program.validation_arrays(*validation)
        in_order = jnp.arange(num_rows, dtype=jnp.int32)
        trainable = network.trainable_variables
        non_trainable = network.non_trainable_variables
        optimizer_variables = optimizer.variables

        logs: dict[str, float] = {}
        callbacks = spec.callbacks
        callbacks.on_train_begin()
        for epoch in range(spec.initial_epoch, spec.epochs):
            callbacks.on_epoch_begin(epoch)
            if in_memory:
                order = source.order(epoch, spec.seed)
                order = in_order if order is None else order
            else:
                data, order = _epoch_arrays(source, epoch, spec), in_order
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


def _epoch_arrays(source: BatchSource, epoch: int, spec: FitSpec) -> tuple:
    """One epoch of a source's batches, concatenated in their order, on the device."""
    batches = list(source.batches(epoch, batch_size=spec.batch_size, seed=spec.seed))
    x, y, weights = (list(part) for part in zip(*batches, strict=True))
    if sum(len(rows) for rows in x) != source.num_rows:
        raise ValueError(
            f"A batch source must give each of its rows once per epoch. Received: "
            f"{sum(len(rows) for rows in x)} rows in epoch {epoch} from a source with "
            f"num_rows={source.num_rows}"
        )
    weights = None if any(w is None for w in weights) else np.concatenate(weights)
    return (_device(np.concatenate(x)), _device(np.concatenate(y)), _device(weights))


ENGINE = JaxEngine()


def _device(array: np.ndarray | None) -> Any:
    # `device_put` copies without compiling a program per shape (as `jnp.asarray` can).
    return None if array is None else jax.device_put(np.asarray(array))
