"""The fast training engine for the JAX backend: each epoch runs as compiled XLA programs.

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

Rows that are not in memory (any ``BatchSource`` other than an ``ArraySource``, a validation
``BatchSource``, or data-parallel training) are fed in chunks, so memory is bounded by a chunk,
not by the rows: the engine asks the source for ``CHUNK_ROWS // batch_size`` batches (at least
one), stacks them as ``(steps, batch, features)`` and runs a compiled chunk program (a
``jax.lax.scan`` over the steps) that carries the state, the metric states and the loss sum
from one call to the next; the last chunk's whole batches and the partial batch (a step of its
own, unpadded) are compiled once more. The device holds the chunk in flight while the host
gathers the next one. Validation runs after the epoch in chunks of up to ``CHUNK_ROWS`` rows,
padded with masked rows to equal chunks when the loss's reduction allows (else the last chunk
is smaller and compiled once more), its sums accumulated the same way. The history is the
in-memory path's on the same rows in the same order, to float rounding. Under a
``keras.distribution.DataParallel`` scope the chunks are sharded over the mesh; see
``training.parallel``.

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
from dlstructured.training import parallel
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
# Rows of one chunk when the rows are fed in chunks (training: CHUNK_ROWS // batch_size whole
# batches, at least one; validation: chunks of up to this many rows). A float32 chunk of 30
# features is 8 MB.
CHUNK_ROWS = 65536

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


class _Steps:
    """The traced pieces every compiled program of the engine is made of: the forward pass,
    the loss of the real rows, the metric updates, one training step, one validation chunk."""

    def __init__(self, network: Any, *, loss: Any, metrics: list, optimizer: Any) -> None:
        self.network = network
        self.loss = loss
        self.metrics = list(metrics)
        self.optimizer = optimizer
        self.rescale = _REDUCTION_RESCALE.get(getattr(loss, "reduction", None))
        # How padded training batches run (see `_padding_mode`); None: no padded batches.
        self.padding: str | None = None
        # Log names, in the order of the values a program returns; filled while tracing.
        self.names: list[str] = []

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
        batch = (_take(x, rows), _take(y, rows), _take(sample_weight, rows))
        return self._step(carry, batch, mask)

    def _step(self, carry, batch, mask=None):
        """One training step on ``batch``, ``(x, y, sample_weight_or_None)``."""
        x_batch, y_batch, w_batch = batch
        trainable, non_trainable, optimizer_values, metric_values, loss_sum = carry
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
        real_rows = x_batch.shape[0] if mask is None else jnp.sum(mask)
        loss_sum = loss_sum + value * real_rows
        return (trainable, non_trainable, optimizer_values, metric_values, loss_sum)

    def _valid_step(self, state, data, carry, start, size):
        def chunk(array):
            if array is None:
                return None
            return jax.lax.dynamic_slice_in_dim(array, start, size, axis=0)

        return self._valid_on(state, carry, tuple(chunk(array) for array in data))

    def _valid_on(self, state, carry, chunk):
        """Validation of one chunk ``(x, y, sample_weight, mask)`` (each may be ``None`` but
        ``x`` and ``y``)."""
        trainable, non_trainable = state
        x, y, weights, mask = chunk
        metric_values, loss_sum = carry
        # Inference mode: rows are independent, so padding rows need no Keras mask.
        y_pred, _, extra = self._forward(trainable, non_trainable, x, False)
        y_true = _match_rank(y, y_pred)
        value = self._loss_value(y_true, y_pred, weights, mask, extra)
        metric_values = self._update_metrics(metric_values, y_true, y_pred, mask)
        real_rows = x.shape[0] if mask is None else jnp.sum(mask)
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


class _EpochProgram(_Steps):
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
        super().__init__(network, loss=loss, metrics=metrics, optimizer=optimizer)
        self.num_rows = num_rows
        self.batch_size = min(batch_size, num_rows)
        self.num_valid_rows = num_valid_rows
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


class _ChunkProgram(_Steps):
    """The compiled pieces of an epoch fed in chunks: a chunk of training steps (a scan over
    whole batches, then the partial batch, if any, as a step of its own), a validation chunk,
    and the epoch's logs. The state and the metric sums are carried from call to call."""

    def __init__(self, network: Any, *, loss: Any, metrics: list, optimizer: Any) -> None:
        super().__init__(network, loss=loss, metrics=metrics, optimizer=optimizer)
        # The carry (argument 0 of `train`, 1 of `validate`) is donated, as in `_EpochProgram`.
        self.train = jax.jit(self._train_chunk, donate_argnums=0)
        self.validate = jax.jit(self._valid_chunk, donate_argnums=1)
        self.logs = jax.jit(self._logs)

    def fresh_sums(self, feed: Any) -> tuple:
        """Reset metric states and a zero loss sum, placed as ``feed`` places state."""
        leaves, tree = jax.tree_util.tree_flatten(
            (self._fresh_metric_values(), jnp.zeros((), jnp.float32))
        )
        return jax.tree_util.tree_unflatten(tree, feed.replicate(leaves))

    def _train_chunk(self, carry, batches, tail):
        """``batches``: ``(x, y, weights)`` stacked as ``(steps, batch, ...)``, or ``None``;
        ``tail``: the partial batch ``(x, y, weights)``, or ``None``."""
        if batches is not None:
            carry, _ = jax.lax.scan(lambda carry, batch: (self._step(carry, batch), None),
                                    carry, batches)
        if tail is not None:
            carry = self._step(carry, tail)
        return carry

    def _valid_chunk(self, state, carry, chunk):
        return self._valid_on(state, carry, chunk)

    def _logs(self, train_sums, train_rows, valid_sums, valid_rows):
        metric_values, loss_sum = train_sums
        names, values = self._results("", metric_values, loss_sum / train_rows)
        if valid_sums is not None:
            metric_values, loss_sum = valid_sums
            valid_names, valid_values = self._results("val_", metric_values, loss_sum / valid_rows)
            names, values = names + valid_names, values + valid_values
        self.names = names
        return jnp.stack(values)


def _checked_batch(batch: Any, *, epoch: int, features: int) -> tuple:
    """A source's batch as ``(x, y, weights_or_None)`` numpy arrays, or an error naming it."""
    if not isinstance(batch, tuple) or len(batch) != 3:
        raise TypeError(
            "A batch source's batches must be tuples (x, y, sample_weight_or_None). Received: "
            f"{type(batch).__name__} in epoch {epoch}"
        )
    x, y, weights = (None if part is None else np.asarray(part) for part in batch)
    rows = len(x)
    if x.ndim != 2 or x.shape[1] != features or y is None or y.shape != (rows,) or (
        weights is not None and weights.shape != (rows,)
    ):
        raise ValueError(
            f"A batch source's batch must be x of shape (rows, {features}) (the model's "
            "features), y of shape (rows,) and sample weights of shape (rows,) or None. "
            f"Received: x shape {x.shape}, y shape {None if y is None else y.shape}, weights "
            f"shape {None if weights is None else weights.shape} in epoch {epoch}"
        )
    return x, y, weights


def _stack(batches: list) -> tuple | None:
    if not batches:
        return None
    x, y, weights = zip(*batches, strict=True)
    if any(w is None for w in weights) and not all(w is None for w in weights):
        raise ValueError(
            "A batch source must give sample weights with every batch or with none. "
            "Received: batches with and without weights"
        )
    return np.stack(x), np.stack(y), None if weights[0] is None else np.stack(weights)


def _training_chunks(source: BatchSource, epoch: int, *, spec: FitSpec, batch_size: int,
                     rows: int, chunk_steps: int, features: int):
    """Epoch ``epoch``'s first ``rows`` rows of ``source`` in chunks: ``(batches, tail)`` with
    up to ``chunk_steps`` whole batches stacked, and the last, partial batch (or ``None``).

    Batches are asked for one chunk at a time, so the host holds one chunk (and the device the
    chunk in flight). The source must give ``batch_size`` rows per batch but the last.
    """
    full: list = []
    seen = 0
    batches = iter(source.batches(epoch, batch_size=batch_size, seed=spec.seed))
    for batch in batches:
        x, y, weights = _checked_batch(batch, epoch=epoch, features=features)
        if len(x) > batch_size or (len(x) < batch_size and seen + len(x) < min(
                rows, source.num_rows)):
            raise ValueError(
                f"A batch source must give batches of batch_size={batch_size} rows, only the "
                f"last one smaller. Received: a batch of {len(x)} rows after {seen} rows in "
                f"epoch {epoch}"
            )
        take = min(len(x), rows - seen)
        seen += take
        if take < batch_size:
            if take:
                yield _stack(full), (x[:take], y[:take], None if weights is None
                                     else weights[:take])
                full = []
            break
        full.append((x, y, weights))
        if len(full) == chunk_steps:
            yield _stack(full), None
            full = []
        if seen == rows:
            break
    if full:
        yield _stack(full), None
    if seen < rows or (rows == source.num_rows and next(batches, None) is not None):
        raise ValueError(
            "A batch source must give each of its rows once per epoch. Received: "
            f"{'fewer' if seen < rows else 'more'} rows in epoch {epoch} than its "
            f"num_rows={source.num_rows}"
        )


def _validation_chunks(source: BatchSource, *, chunk: int, chunks: int | None,
                       features: int):
    """``source``'s rows in chunks ``(x, y, weights, mask)`` of ``chunk`` rows.

    With ``chunks`` (padded mode) exactly that many chunks come, the missing rows padded with
    masked rows (mask 0); without, the last chunk may be smaller and ``mask`` is ``None``.
    """
    count = 0
    last = None
    for batch in source.batches(0, batch_size=chunk, seed=None):
        x, y, weights = _checked_batch(batch, epoch=0, features=features)
        last = (x, y, weights)
        count += 1
        if chunks is None:
            yield x, y, weights, None
            continue
        yield _padded(x, y, weights, chunk)
    if chunks is None:
        return
    if last is None:
        raise ValueError(
            "Validation under a distribution needs at least one validation row in every "
            f"process. Received: a validation source with num_rows={source.num_rows}"
        )
    empty = tuple(None if part is None else part[:0] for part in last)
    for _ in range(count, chunks):
        yield _padded(*empty, chunk)


def _padded(x, y, weights, rows: int) -> tuple:
    padding = rows - len(x)

    def pad(array):
        if array is None:
            return None
        return np.concatenate([array, np.zeros((padding, *array.shape[1:]), array.dtype)])

    mask = np.zeros(rows, np.float32)
    mask[: len(x)] = 1.0
    return pad(x), pad(y), pad(weights), mask


def _values(variables: list, seen: set) -> list:
    """Current values of ``variables``, each a buffer of its own so that it can be donated.

    Two variables may hold the same array (after ``a.assign(b.value)``, for example); XLA
    refuses to donate one buffer twice, so the second one gets a copy.
    """
    values = []
    for variable in variables:
        value = variable.value
        if getattr(value, "weak_type", False):
            # An initializer computed from Python scalars leaves a weakly typed value; the
            # epoch returns strongly typed ones, so without this the second epoch compiles
            # the whole program again.
            value = jnp.asarray(value, dtype=value.dtype)
        elif id(value) in seen:
            value = jnp.copy(value)
        seen.add(id(value))
        values.append(value)
    return values


def _assign(variables: list, values: list) -> None:
    for variable, value in zip(variables, values, strict=True):
        variable.assign(value)


class JaxEngine:
    """Trains with compiled XLA programs (JAX backend only); see ``contract.Engine``.

    An ``ArraySource`` with in-memory validation, on one device, goes to the device once per
    ``fit`` and runs one program per epoch (its order is ``order(epoch, seed)``). Any other
    source, a validation ``BatchSource``, or a ``keras.distribution.DataParallel`` scope runs
    in chunks of about ``CHUNK_ROWS`` rows (see the module's docstring), so memory is bounded
    by the chunk, not by the rows.
    """

    name = "jax"

    def fit(self, network: Any, source: BatchSource, spec: FitSpec) -> None:
        """Train ``network`` in place on ``source`` as ``spec`` says.

        Raises:
            ValueError: If a metric creates its variables only on its first update (for
                example ``keras.metrics.F1Score``), which cannot happen inside the compiled
                epoch, or if the source or the distribution does not fit (the message says).
        """
        for metric in spec.metrics:
            if not metric.variables:
                raise ValueError(
                    "The JAX engine needs metrics whose state variables exist before training "
                    f"(built-in metrics create them when constructed). Received: metric "
                    f"{metric.name!r} ({type(metric).__name__}) with no variables; use "
                    "engine='keras' for it."
                )
        distribution = parallel.data_parallel()
        # Compiled like Keras's engine leaves it: learning-rate callbacks find the optimizer as
        # `model.optimizer`, and afterwards `network.evaluate` works.
        compile_like_every_engine(network, spec)
        network.stop_training = False
        if not spec.optimizer.built:
            spec.optimizer.build(network.trainable_variables)
        whole = isinstance(source, ArraySource) and (
            spec.validation is None or isinstance(spec.validation, tuple)
        )
        if whole and distribution is None:
            _fit_whole(network, source, spec)
        else:
            _fit_in_chunks(network, source, spec, parallel.feed_for(distribution))


def _fit_whole(network: Any, source: ArraySource, spec: FitSpec) -> None:
    """The fast path: the rows on the device once, one compiled program per epoch."""
    optimizer, num_rows = spec.optimizer, source.num_rows
    program = _EpochProgram(
        network,
        loss=spec.loss,
        metrics=list(spec.metrics),
        optimizer=optimizer,
        num_rows=num_rows,
        batch_size=spec.batch_size,
        num_valid_rows=0 if spec.validation is None else len(spec.validation[0]),
    )
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
        order = source.order(epoch, spec.seed)
        order = in_order if order is None else order
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


def _fit_in_chunks(network: Any, source: BatchSource, spec: FitSpec, feed: Any) -> None:
    """Train from batches gathered a chunk at a time, on one device or a data-parallel mesh."""
    program = _ChunkProgram(
        network, loss=spec.loss, metrics=list(spec.metrics), optimizer=spec.optimizer
    )
    features = int(network.input_shape[-1])
    local_batch = feed.local_batch_size(spec.batch_size)
    # Every process trains on as many rows per epoch (see `parallel`); a partial last step
    # must split over this process's devices.
    rows = feed.agree(source.num_rows, "min")
    rows -= (rows % local_batch) % feed.local_devices
    if rows < 1:
        raise ValueError(
            "Every process needs at least one training row per device. Received: "
            f"num_rows={source.num_rows} in this process, {feed.local_devices} device(s)"
        )
    global_rows = float(rows * feed.process_count)
    chunk_steps = max(1, CHUNK_ROWS // spec.batch_size)
    validation = _validation_plan(spec.validation, program, feed)
    variables = (network.trainable_variables, network.non_trainable_variables,
                 spec.optimizer.variables)

    logs: dict[str, float] = {}
    callbacks = spec.callbacks
    callbacks.on_train_begin()
    for epoch in range(spec.initial_epoch, spec.epochs):
        callbacks.on_epoch_begin(epoch)
        seen: set[int] = set()
        state = [_values(group, seen) for group in variables]
        if epoch == spec.initial_epoch:
            # One start for all: process 0's values (an unseeded model differs per process).
            state = [feed.broadcast(values) for values in state]
        state = [feed.replicate(values) for values in state]
        carry = (*state, *program.fresh_sums(feed))
        for batches, tail in _training_chunks(
            source, epoch, spec=spec, batch_size=local_batch, rows=rows,
            chunk_steps=chunk_steps, features=features,
        ):
            carry = program.train(
                carry,
                None if batches is None else tuple(feed.put(part, 1) for part in batches),
                None if tail is None else tuple(feed.put(part, 0) for part in tail),
            )
            # The old state was donated: the Keras variables follow the new one at once, so
            # they stay valid if the next chunk is interrupted.
            for group, values in zip(variables, carry[:3], strict=True):
                _assign(group, values)
        valid_sums, valid_rows = None, None
        if validation is not None:
            valid_sums = program.fresh_sums(feed)
            valid_source, chunk, chunks, valid_rows = validation
            for part in _validation_chunks(
                valid_source, chunk=chunk, chunks=chunks, features=features
            ):
                valid_sums = program.validate(
                    carry[:2], valid_sums, tuple(feed.put(array, 0) for array in part)
                )
        values = program.logs(carry[3:], global_rows, valid_sums, valid_rows)
        logs = dict(zip(program.names, np.asarray(values).tolist(), strict=True))
        callbacks.on_epoch_end(epoch, logs)
        if network.stop_training:
            break
    callbacks.on_train_end(logs)


def _validation_plan(validation: Any, program: _ChunkProgram, feed: Any):
    """``None``, or ``(source, chunk_rows, chunks_or_None, global_rows)`` for the validation.

    With a loss whose reduction padding leaves exact, every process runs the same number of
    equal chunks, the missing rows masked; otherwise (one device only) chunks of up to
    ``CHUNK_ROWS`` rows, the last one smaller (compiled once more).
    """
    if validation is None:
        return None
    if isinstance(validation, tuple):
        validation = ArraySource(*validation)
    local_rows = feed.agree(validation.num_rows, "max")
    global_rows = float(feed.agree(validation.num_rows, "sum"))
    largest = max(_MIN_VALIDATION_CHUNK, CHUNK_ROWS) // feed.process_count
    largest = max(feed.local_devices, largest - largest % feed.local_devices)
    if not program.rescale:
        if feed.process_count > 1 or feed.local_devices > 1:
            raise ValueError(
                "Validation under DataParallel pads each process's rows with masked rows, "
                "which needs a loss with a known reduction ('sum_over_batch_size', 'sum', ...). "
                f"Received: loss={program.loss!r}"
            )
        return validation, min(largest, validation.num_rows), None, global_rows
    chunks = -(-local_rows // largest)
    chunk = -(-local_rows // chunks)
    chunk += -chunk % feed.local_devices
    return validation, chunk, chunks, global_rows


ENGINE = JaxEngine()


def _device(array: np.ndarray | None) -> Any:
    # `device_put` copies without compiling a program per shape (as `jnp.asarray` can).
    return None if array is None else jax.device_put(np.asarray(array))
