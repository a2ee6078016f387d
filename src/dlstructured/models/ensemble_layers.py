"""Registered Keras pieces of the ensemble MLP: its layers, its loss, its metric wrapper and its
learning-rate schedule.

The ensemble MLP trains ``members`` networks at once in one program (TabM-mini, Gorishniy et al.,
ICLR 2025): each member multiplies the features by its own learnable vector, all members share
the hidden layers, and each has its own output head. The network's output keeps the members on
an axis of their own, shape ``(batch, members, units)``:

* ``MemberMeanLoss`` scores each member against the target and averages the members' losses,
  so each member learns on its own (the loss of the averaged prediction would train one big
  model instead);
* ``MemberMeanMetric`` scores the members' mean prediction, which is what
  ``TabularModel.predict`` returns.

Everything here is registered under the ``dlstructured`` package, so it saves in a ``.keras`` file
and loads in safe mode.
"""

from __future__ import annotations

import math
from typing import Any

import keras
from keras import ops

from dlstructured._checks import check_float, check_int
from dlstructured.models.initializers import HostInitializer

PACKAGE = "dlstructured"
_ZEROS = HostInitializer("constant", value=0.0)

MEMBER_LOSSES = ("mae", "mse", "binary_crossentropy", "sparse_categorical_crossentropy")
"""Losses ``MemberMeanLoss`` computes per member."""


def smooth_clip(x: Any, limit: float = 3.0) -> Any:
    """``x / sqrt(1 + (x / limit)^2)``: about ``x`` near 0, tends to ``+-limit`` far out."""
    return x / ops.sqrt(1.0 + ops.square(x / limit))


@keras.saving.register_keras_serializable(package=PACKAGE)
class FeatureScale(keras.layers.Layer):
    """Multiply each input feature by its own learnable factor (initialised to 1).

    It lets training turn a feature up or down before the first dense layer (RealMLP's
    "scaling layer"). The factor is stored divided by ``rate_factor`` and multiplied back in
    the forward pass: with Adam, whose steps do not depend on the gradient's size, that makes
    the factor learn ``rate_factor`` times faster than the other weights (RealMLP uses 6).

    Args:
        rate_factor: How much faster than the other weights the factors learn (> 0).
            Defaults to ``1.0``.

    Example:

    >>> import numpy as np
    >>> import keras
    >>> scaled = FeatureScale(rate_factor=6.0)(np.ones((2, 3), "float32"))
    >>> keras.ops.convert_to_numpy(scaled).tolist()
    [[1.0, 1.0, 1.0], [1.0, 1.0, 1.0]]
    """

    def __init__(self, rate_factor: float = 1.0, **kwargs):
        super().__init__(**kwargs)
        self.rate_factor = check_float("rate_factor", rate_factor, minimum=0.0,
                                       min_inclusive=False)

    def build(self, input_shape):
        self.stored_scale = self.add_weight(
            name="scale",
            shape=(input_shape[-1],),
            initializer=HostInitializer("constant", value=1.0 / self.rate_factor),
            trainable=True,
        )

    @property
    def scale(self):
        """The factors the features are multiplied by."""
        return self.stored_scale * self.rate_factor

    def call(self, inputs):
        return inputs * self.scale

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "rate_factor": self.rate_factor}


@keras.saving.register_keras_serializable(package=PACKAGE)
class PeriodicEmbedding(keras.layers.Layer):
    """Describe each feature by waves of learned frequencies, beside its own value.

    For each feature ``x_j`` the layer computes ``cos(2 pi (w_jk x_j + b_jk))`` for
    ``frequencies`` learned frequencies ``w_jk`` and phases ``b_jk``, mixes those waves into
    ``units`` numbers with a small linear map of the feature's own, and keeps ``x_j`` itself in
    front (RealMLP's "PBLD" embedding: periodic, bias, linear, densenet). A wave turns a bump or a
    threshold in one feature into something the next dense layer can pick out with one weight.
    Maps ``(batch, features)`` to ``(batch, features * (1 + units))``.

    Args:
        frequencies: Waves per feature (at least 1). Defaults to ``16``.
        units: Numbers each feature's waves are mixed into (at least 1). Defaults to ``3``.
        sigma: Spread of the initial frequencies (normal, mean 0), in cycles per unit of the
            scaled feature (> 0). Defaults to ``0.1``.
        rate_factor: How fast its weights learn beside the others' (> 0): the weights are
            stored divided by it and multiplied back in the forward pass, which with Adam scales
            their steps by it. RealMLP uses 0.1, so the waves change slowly. Defaults to ``0.1``.
        seed: Seed of the initial frequencies, phases and mixing weights. Defaults to ``None``.

    Example:

    >>> import numpy as np
    >>> tuple(PeriodicEmbedding(frequencies=8, units=3, seed=0)(np.ones((2, 5), "float32")).shape)
    (2, 20)
    """

    def __init__(self, frequencies: int = 16, units: int = 3, sigma: float = 0.1,
                 rate_factor: float = 0.1, seed: int | None = None, **kwargs):
        super().__init__(**kwargs)
        self.frequencies = check_int("frequencies", frequencies, minimum=1)
        self.units = check_int("units", units, minimum=1)
        self.sigma = check_float("sigma", sigma, minimum=0.0, min_inclusive=False)
        self.rate_factor = check_float("rate_factor", rate_factor, minimum=0.0,
                                       min_inclusive=False)
        self.seed = seed

    def build(self, input_shape):
        features = input_shape[-1]
        seed = self.seed
        seeds = [None if seed is None else seed + offset for offset in range(3)]
        stored = 1.0 / self.rate_factor
        self.frequency = self.add_weight(
            name="frequency", shape=(features, self.frequencies),
            initializer=HostInitializer("normal", seeds[0], stddev=self.sigma * stored),
        )
        self.phase = self.add_weight(
            name="phase", shape=(features, self.frequencies),
            initializer=HostInitializer("uniform", seeds[1], low=-0.5 * stored,
                                        high=0.5 * stored),
        )
        limit = stored / math.sqrt(self.frequencies)
        self.mixing = self.add_weight(
            name="mixing", shape=(features, self.frequencies, self.units),
            initializer=HostInitializer("uniform", seeds[2], low=-limit, high=limit),
        )
        self.mixing_bias = self.add_weight(
            name="mixing_bias", shape=(features, self.units), initializer=_ZEROS
        )

    def call(self, inputs):
        factor = self.rate_factor
        waves = ops.cos(2.0 * math.pi * factor * (inputs[..., None] * self.frequency
                                                  + self.phase))
        mixed = factor * (ops.einsum("bfk,fku->bfu", waves, self.mixing) + self.mixing_bias)
        joined = ops.concatenate([inputs[..., None], mixed], axis=-1)
        return ops.reshape(joined, (-1, joined.shape[1] * (1 + self.units)))

    def compute_output_shape(self, input_shape):
        return (input_shape[0], input_shape[-1] * (1 + self.units))

    def get_config(self):
        return {**super().get_config(), "frequencies": self.frequencies, "units": self.units,
                "sigma": self.sigma, "rate_factor": self.rate_factor, "seed": self.seed}


@keras.saving.register_keras_serializable(package=PACKAGE)
class MemberAdapter(keras.layers.Layer):
    """Give each of ``members`` copies of the input a learnable multiplicative adapter.

    Maps ``(batch, features)`` to ``(batch, members, features)``: member ``m`` sees
    ``x * r[m]``. ``r`` starts as random signs (+-1), so the members differ from the first step
    while every feature keeps its size.

    Args:
        members: Number of ensemble members (at least 1).
        seed: Seed of the random signs. Defaults to ``None``.

    Example:

    >>> import numpy as np
    >>> tuple(MemberAdapter(4, seed=0)(np.ones((2, 3), "float32")).shape)
    (2, 4, 3)
    """

    def __init__(self, members: int, seed: int | None = None, **kwargs):
        super().__init__(**kwargs)
        self.members = check_int("members", members, minimum=1)
        self.seed = seed

    def build(self, input_shape):
        self.adapter = self.add_weight(
            name="adapter",
            shape=(self.members, input_shape[-1]),
            initializer=HostInitializer("signs", self.seed),
            trainable=True,
        )

    def call(self, inputs):
        return ops.expand_dims(inputs, 1) * self.adapter

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.members, input_shape[-1])

    def get_config(self):
        return {**super().get_config(), "members": self.members, "seed": self.seed}


@keras.saving.register_keras_serializable(package=PACKAGE)
class NTKDense(keras.layers.Layer):
    """A dense layer in the neural-tangent-kernel parametrisation: ``x @ W / sqrt(fan_in) + b``.

    ``W`` starts standard normal. Dividing by ``sqrt(fan_in)`` in the forward pass (instead of
    in the initialisation) makes Adam's steps on ``W`` act alike for every width. The bias is
    stored divided by ``bias_rate_factor`` (so that, with Adam, it learns that many times as
    fast as ``W``; RealMLP uses 0.1) and starts standard normal (``bias_initializer="normal"``)
    or at zero. It works on any leading axes, so ensemble members share it.

    Args:
        units: Width of the output.
        activation: Keras activation. Defaults to ``None`` (linear).
        bias_initializer: ``"normal"`` (standard normal) or ``"zeros"``. Defaults to
            ``"normal"``.
        bias_rate_factor: Learning speed of the bias relative to ``W`` (> 0). Defaults to
            ``0.1``.
        seed: Seed of the initializers. Defaults to ``None``.

    Example:

    >>> import numpy as np
    >>> tuple(NTKDense(5, seed=0)(np.ones((2, 4, 3), "float32")).shape)
    (2, 4, 5)
    """

    def __init__(self, units: int, activation: Any = None, bias_initializer: str = "normal",
                 bias_rate_factor: float = 0.1, seed: int | None = None, **kwargs):
        super().__init__(**kwargs)
        self.units = check_int("units", units, minimum=1)
        self.activation = keras.activations.get(activation)
        if bias_initializer not in ("normal", "zeros"):
            raise ValueError(
                "`bias_initializer` must be 'normal' or 'zeros'. Received: "
                f"bias_initializer={bias_initializer!r}"
            )
        self.bias_initializer = bias_initializer
        self.bias_rate_factor = check_float(
            "bias_rate_factor", bias_rate_factor, minimum=0.0, min_inclusive=False
        )
        self.seed = seed

    def build(self, input_shape):
        seed = None if self.seed is None else self.seed + 1
        self.kernel = self.add_weight(
            name="kernel",
            shape=(input_shape[-1], self.units),
            initializer=HostInitializer("normal", self.seed),
        )
        if self.bias_initializer == "normal":
            initializer = HostInitializer("normal", seed, stddev=1.0 / self.bias_rate_factor)
        else:
            initializer = _ZEROS
        self.stored_bias = self.add_weight(name="bias", shape=(self.units,),
                                           initializer=initializer)

    @property
    def bias(self):
        """The bias added to ``x @ W / sqrt(fan_in)``."""
        return self.stored_bias * self.bias_rate_factor

    def call(self, inputs):
        fan_in = self.kernel.shape[0]
        outputs = ops.matmul(inputs, self.kernel) * (1.0 / math.sqrt(fan_in)) + self.bias
        return self.activation(outputs)

    def compute_output_shape(self, input_shape):
        return (*input_shape[:-1], self.units)

    def get_config(self):
        return {
            **super().get_config(),
            "units": self.units,
            "activation": keras.activations.serialize(self.activation),
            "bias_initializer": self.bias_initializer,
            "bias_rate_factor": self.bias_rate_factor,
            "seed": self.seed,
        }


@keras.saving.register_keras_serializable(package=PACKAGE)
class MemberHeads(keras.layers.Layer):
    """One output head per ensemble member: ``(batch, members, d)`` to ``(batch, members, units)``.

    Member ``m`` computes ``activation(x[:, m] @ W[m] / sqrt(d) + b[m])``. The weights start at
    zero (RealMLP's zero-initialised output), so every member starts from the same prediction.

    Args:
        units: Output units of each member.
        activation: Output activation (``"linear"``, ``"sigmoid"``, ``"softmax"``). Defaults to
            ``None`` (linear).

    Example:

    >>> import numpy as np
    >>> tuple(MemberHeads(1)(np.ones((2, 4, 3), "float32")).shape)
    (2, 4, 1)
    """

    def __init__(self, units: int, activation: Any = None, **kwargs):
        super().__init__(**kwargs)
        self.units = check_int("units", units, minimum=1)
        self.activation = keras.activations.get(activation)

    def build(self, input_shape):
        members, width = input_shape[1], input_shape[2]
        self.kernel = self.add_weight(
            name="kernel", shape=(members, width, self.units), initializer=_ZEROS
        )
        self.bias = self.add_weight(name="bias", shape=(members, self.units), initializer=_ZEROS)

    def call(self, inputs):
        width = self.kernel.shape[1]
        outputs = ops.einsum("bmd,mdu->bmu", inputs, self.kernel) * (1.0 / math.sqrt(width))
        return self.activation(outputs + self.bias)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], input_shape[1], self.units)

    def get_config(self):
        return {
            **super().get_config(),
            "units": self.units,
            "activation": keras.activations.serialize(self.activation),
        }


def has_member_axis(network: Any) -> bool:
    """Whether ``network`` ends in ``MemberHeads`` (its output has a member axis)."""
    layers = getattr(network, "layers", None)
    return bool(layers) and isinstance(layers[-1], MemberHeads)


def _member_values(loss: str, y_true: Any, y_pred: Any, label_smoothing: float) -> Any:
    """The loss of each row and member, shape ``(batch, members)`` (members may be absent)."""
    if loss == "sparse_categorical_crossentropy":
        classes = y_pred.shape[-1]
        codes = ops.cast(ops.reshape(y_true, (-1,)), "int32")
        target = ops.one_hot(codes, classes, dtype=y_pred.dtype)
        if label_smoothing:
            target = target * (1.0 - label_smoothing) + label_smoothing / classes
        if len(y_pred.shape) == 3:
            target = ops.expand_dims(target, 1)
        probabilities = ops.clip(y_pred, 1e-7, 1.0 - 1e-7)
        return -ops.sum(target * ops.log(probabilities), axis=-1)
    target = ops.cast(ops.reshape(y_true, (-1,) + (1,) * (len(y_pred.shape) - 1)), y_pred.dtype)
    if loss == "mae":
        return ops.mean(ops.abs(y_pred - target), axis=-1)
    if loss == "mse":
        return ops.mean(ops.square(y_pred - target), axis=-1)
    if label_smoothing:
        target = target * (1.0 - label_smoothing) + 0.5 * label_smoothing
    probabilities = ops.clip(y_pred, 1e-7, 1.0 - 1e-7)
    values = -(target * ops.log(probabilities) + (1.0 - target) * ops.log(1.0 - probabilities))
    return ops.mean(values, axis=-1)


@keras.saving.register_keras_serializable(package=PACKAGE)
class MemberMeanLoss(keras.losses.Loss):
    """A task loss scored per ensemble member and averaged over the members.

    ``y_pred`` is ``(batch, members, units)`` (or ``(batch, units)``, one member); ``y_true`` is
    one value per row. Classification losses can smooth the labels: the target puts
    ``1 - label_smoothing`` on the true class and spreads ``label_smoothing`` evenly.

    Args:
        loss: One of ``"mae"``, ``"mse"``, ``"binary_crossentropy"``,
            ``"sparse_categorical_crossentropy"`` (probabilities, not logits).
        label_smoothing: In [0, 1), for the cross-entropies. Defaults to ``0.0``.
        **kwargs: Other arguments of ``keras.losses.Loss`` (``name``, ``reduction``).

    Raises:
        ValueError: If ``loss`` is not one of those, or ``label_smoothing`` is outside [0, 1) or
            given with a regression loss.

    Example:

    >>> import numpy as np
    >>> float(MemberMeanLoss("mae")(np.array([1.0]), np.array([[[0.0], [4.0]]])))
    2.0
    """

    def __init__(self, loss: str = "mae", label_smoothing: float = 0.0, **kwargs):
        kwargs.setdefault("name", "member_mean_loss")
        super().__init__(**kwargs)
        if loss not in MEMBER_LOSSES:
            valid = ", ".join(repr(name) for name in MEMBER_LOSSES)
            raise ValueError(f"`loss` must be one of {valid}. Received: loss={loss!r}")
        label_smoothing = check_float(
            "label_smoothing", label_smoothing, minimum=0.0, maximum=1.0, max_inclusive=False
        )
        if label_smoothing and loss in ("mae", "mse"):
            raise ValueError(
                "`label_smoothing` applies to classification losses only. Received: "
                f"label_smoothing={label_smoothing} with loss={loss!r}"
            )
        self.loss = loss
        self.label_smoothing = label_smoothing

    def call(self, y_true, y_pred):
        values = _member_values(self.loss, y_true, y_pred, self.label_smoothing)
        if len(values.shape) == 2:
            values = ops.mean(values, axis=1)
        return values

    def get_config(self):
        return {
            **super().get_config(),
            "loss": self.loss,
            "label_smoothing": self.label_smoothing,
        }


@keras.saving.register_keras_serializable(package=PACKAGE)
class MemberMeanMetric(keras.metrics.Metric):
    """A metric of the members' mean prediction: ``metric(y_true, mean(y_pred, axis=1))``.

    It reports under the wrapped metric's name (``mae``, ``auc`` ...), so history columns are
    those of a plain model.

    Args:
        metric: A Keras metric object, updated with the averaged predictions.

    Example:

    >>> import keras, numpy as np
    >>> metric = MemberMeanMetric(keras.metrics.MeanAbsoluteError(name="mae"))
    >>> metric.update_state(np.array([1.0]), np.array([[[0.0], [4.0]]]))
    >>> float(metric.result())
    1.0
    """

    def __init__(self, metric: Any, **kwargs):
        if isinstance(metric, dict):
            metric = keras.saving.deserialize_keras_object(metric)
        if not isinstance(metric, keras.metrics.Metric):
            raise TypeError(
                "`metric` must be a keras.metrics.Metric. Received: "
                f"{type(metric).__name__} {metric!r:.80}"
            )
        kwargs.setdefault("name", metric.name)
        super().__init__(**kwargs)
        self.metric = metric

    def update_state(self, y_true, y_pred, sample_weight=None):
        if len(y_pred.shape) == 3:
            y_pred = ops.mean(y_pred, axis=1)
        if len(y_true.shape) == 1 and y_pred.shape[-1] == 1:
            y_true = ops.expand_dims(y_true, -1)
        self.metric.update_state(y_true, y_pred, sample_weight=sample_weight)

    def result(self):
        return self.metric.result()

    def reset_state(self):
        self.metric.reset_state()

    def get_config(self):
        return {
            "name": self.name,
            "dtype": self.dtype,
            "metric": keras.saving.serialize_keras_object(self.metric),
        }


DEFAULT_CYCLES = 4  # warm-restart cycles of LogCosineRestarts


def cycle_ends(epochs: int, cycles: int = DEFAULT_CYCLES) -> tuple[int, ...]:
    """The epochs (from 1) nearest the ends of ``LogCosineRestarts``'s cycles over ``epochs``
    epochs, each once (a short run has fewer distinct ones).

    Example:

    >>> cycle_ends(128), cycle_ends(3)
    ((9, 26, 60, 128), (1, 3))
    """
    ends = (round(epochs * (2**k - 1) / (2**cycles - 1)) for k in range(1, cycles + 1))
    return tuple(sorted({end for end in ends if end >= 1}))


@keras.saving.register_keras_serializable(package=PACKAGE)
class LogCosineRestarts(keras.optimizers.schedules.LearningRateSchedule):
    """Cosine cycles on a logarithmic time axis: warm restarts that come ever later.

    At step ``t`` of ``total_steps`` (progress ``p = t / total_steps``) the rate is
    ``peak * (1 - cos(2 pi log2(1 + (2^cycles - 1) p))) / 2``: it rises from 0 to ``peak`` and
    falls back to 0 ``cycles`` times, each cycle twice as long as the one before, and ends at 0
    (RealMLP's "coslog" schedule). Steps past ``total_steps`` stay at 0.

    Args:
        peak_learning_rate: The highest rate (> 0).
        total_steps: Steps of the whole run (at least 1), usually epochs times steps per epoch.
        cycles: Number of cycles (at least 1). Defaults to ``4``.

    Raises:
        TypeError: If an argument has the wrong type.
        ValueError: If an argument is out of range.

    Example:

    >>> schedule = LogCosineRestarts(0.1, total_steps=150, cycles=4)
    >>> [round(float(schedule(step)), 4) for step in (0, 4, 10, 150)]
    [0.0, 0.0998, 0.0, 0.0]
    """

    def __init__(self, peak_learning_rate: float, total_steps: int,
                 cycles: int = DEFAULT_CYCLES):
        self.peak_learning_rate = check_float(
            "peak_learning_rate", peak_learning_rate, minimum=0.0, min_inclusive=False
        )
        self.total_steps = check_int("total_steps", total_steps, minimum=1)
        self.cycles = check_int("cycles", cycles, minimum=1)

    def __call__(self, step):
        progress = ops.minimum(ops.cast(step, "float32") / float(self.total_steps), 1.0)
        phase = ops.log2(1.0 + (2.0**self.cycles - 1.0) * progress)
        return self.peak_learning_rate * 0.5 * (1.0 - ops.cos(2.0 * math.pi * phase))

    def get_config(self):
        return {
            "peak_learning_rate": self.peak_learning_rate,
            "total_steps": self.total_steps,
            "cycles": self.cycles,
        }
