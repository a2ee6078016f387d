"""Builders for the course's models: each returns a new, uncompiled Keras model.

Every builder takes one positional argument for its input, either the number of input features or
prepared data (from ``dlstructured.prepare``), which knows its own input layout. Given
prepared data, the builder returns a ``dlstructured.TabularModel``: the same network with
the data's preprocessing attached, so it predicts on raw rows and saves to one file.
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from typing import Any

import numpy as np

from dlstructured._checks import (
    check_bool,
    check_int,
    check_optional_seed,
    check_rate,
    check_units_sequence,
)
from dlstructured.models.blocks import dense_block
from dlstructured.tasks import TASKS

DEFAULT_HIDDEN_UNITS = (512, 512, 512)


def _layer_seeds(seed: int | None, count: int) -> list[int | None]:
    """Distinct per-layer seeds derived from one builder seed (or ``None`` for each)."""
    if seed is None:
        return [None] * count
    rng = np.random.default_rng(seed)
    return [int(s) for s in rng.integers(0, 2**30, size=count)]


def _resolve_inputs(inputs: Any, task: str, builder: str):
    """Return ``(num_features, prepared_data_or_None)`` for a builder's first argument."""
    if hasattr(inputs, "num_features") and hasattr(inputs, "preprocessor"):
        data_task = getattr(inputs, "task", task)
        if data_task != task:
            suggestion = TASKS[data_task].builder
            raise ValueError(
                f"`{builder}` builds a {task} model, but the prepared data is a {data_task} task. "
                f"Use `{suggestion}(data, ...)`, or prepare the data with task={task!r}."
            )
        return int(inputs.num_features), inputs
    if isinstance(inputs, bool) or not isinstance(inputs, numbers.Integral):
        raise TypeError(
            "The first argument must be the number of input features (a positive integer) or "
            f"prepared data from `dlstructured.prepare`. Received: {type(inputs).__name__} "
            f"{inputs!r:.80}"
        )
    return check_int("num_features", inputs, minimum=1), None


def _features(num_features: int, data: Any, seed: int | None):
    """The network's input and the tensor that feeds its first block."""
    import keras

    from dlstructured.models.layers import CategoryEmbedding

    inputs = keras.Input(shape=(num_features,), name="features")
    x = inputs
    embeddings = list(getattr(data, "embeddings", None) or [])
    if embeddings:
        x = CategoryEmbedding(
            [spec.column_index for spec in embeddings],
            [spec.input_dim for spec in embeddings],
            [spec.output_dim for spec in embeddings],
            seed=seed,
            name="category_embedding",
        )(x)
    return inputs, x


def _finish(network: Any, data: Any) -> Any:
    if data is None:
        return network
    from dlstructured.tabular import TabularModel

    return TabularModel(network, data.preprocessor)


def _check_dropout_rates(dropout_rate: Any, depth: int) -> list[float]:
    if isinstance(dropout_rate, Sequence) and not isinstance(dropout_rate, (str, bytes)):
        if len(dropout_rate) != depth:
            raise ValueError(
                "`dropout_rate` must be one rate for all hidden layers or one per layer "
                f"({depth} here). Received: dropout_rate={list(dropout_rate)!r}"
            )
        return [check_rate("dropout_rate", rate) for rate in dropout_rate]
    return [check_rate("dropout_rate", dropout_rate)] * depth


#: The most weights a builder creates: 2**31 float32 values are 8 GiB, 32 GiB once training
#: adds gradients and Adam's two moments, beyond the memory of the machines this library targets.
MAX_PARAMETERS = 2**31


def _check_size(num_features: int, data: Any, hidden_units: Sequence[int], output_units: int):
    """Refuse, before any weight is allocated, a network with more than ``MAX_PARAMETERS``."""
    embeddings = list(getattr(data, "embeddings", None) or [])
    width = num_features + sum(spec.output_dim - 1 for spec in embeddings)
    total = 0
    for units in (*hidden_units, output_units):
        total += width * units + units
        width = units
    if total > MAX_PARAMETERS:
        raise ValueError(
            f"`hidden_units` asks for a network of about {total:.3g} weights "
            f"({total * 4 / 2**30:.3g} GiB as float32, before training state) on {num_features} "
            f"features, more than the {MAX_PARAMETERS:,} this library builds; give narrower "
            f"layers. Received: hidden_units={tuple(hidden_units)!r}"
        )


def _stack(
    inputs: Any,
    *,
    task: str,
    builder: str,
    output_units: int | None,
    hidden_units: Any,
    activation: Any,
    dropout_rate: Any,
    batch_norm: Any,
    batch_norm_position: str,
    input_batch_norm: Any,
    seed: Any,
    name: Any,
) -> Any:
    import keras

    num_features, data = _resolve_inputs(inputs, task, builder)
    hidden_units = check_units_sequence("hidden_units", hidden_units)
    rates = _check_dropout_rates(dropout_rate, len(hidden_units))
    batch_norm = check_bool("batch_norm", batch_norm)
    input_batch_norm = check_bool("input_batch_norm", input_batch_norm)
    seed = check_optional_seed("seed", seed)
    if not isinstance(name, str) or not name:
        raise TypeError(f"`name` must be a non-empty string. Received: name={name!r}")
    if output_units is None:
        output_units = 1
    if data is not None and task == "multiclass":
        output_units = int(data.num_classes)

    _check_size(num_features, data, hidden_units, output_units)

    seeds = _layer_seeds(seed, len(hidden_units) + 2)
    model_inputs, x = _features(num_features, data, seeds[-1])
    if input_batch_norm:
        x = keras.layers.BatchNormalization(name="input_batch_norm")(x)
    for index, (units, rate) in enumerate(zip(hidden_units, rates, strict=True), start=1):
        x = dense_block(
            x,
            units,
            activation=activation,
            dropout_rate=rate,
            batch_norm=batch_norm,
            batch_norm_position=batch_norm_position,
            seed=seeds[index - 1],
            name=f"block_{index}",
        )
    outputs = keras.layers.Dense(
        output_units,
        activation=TASKS[task].output_activation,
        kernel_initializer=keras.initializers.GlorotUniform(seed=seeds[-2]),
        name="output",
    )(x)
    return _finish(keras.Model(model_inputs, outputs, name=name), data)


def linear_unit(inputs: Any, *, seed: int | None = None, name: str = "linear_unit") -> Any:
    """Build a single neuron, ``y = w0*x0 + ... + w(n-1)*x(n-1) + b``: one Dense unit.

    Read the trained weight vector ``w`` and bias ``b`` with
    ``w, b = model.get_layer("output").get_weights()``.

    Args:
        inputs: Number of input features, or prepared data from ``dlstructured.prepare``.
        seed: Seed of the weight initializer. Defaults to ``None`` (unseeded).
        name: Name of the model. Defaults to ``"linear_unit"``.

    Returns:
        An uncompiled ``keras.Model`` (a ``TabularModel`` for prepared data).

    Raises:
        TypeError: If ``inputs`` is neither an integer nor prepared data.
        ValueError: If ``inputs`` is below 1, or prepared data is not a regression task.

    Example:

    >>> from dlstructured import linear_unit
    >>> model = linear_unit(11, seed=0)
    >>> model.count_params()
    12
    >>> w, b = model.get_layer("output").get_weights()
    >>> w.shape, b.shape
    ((11, 1), (1,))
    """
    return _stack(
        inputs,
        task="regression",
        builder="linear_unit",
        output_units=1,
        hidden_units=(),
        activation="relu",
        dropout_rate=0.0,
        batch_norm=False,
        batch_norm_position="before_dropout",
        input_batch_norm=False,
        seed=seed,
        name=name,
    )





def dense_stack(
    inputs: Any,
    *,
    hidden_units: Sequence[int] = DEFAULT_HIDDEN_UNITS,
    activation: Any = "relu",
    dropout_rate: float | Sequence[float] = 0.0,
    batch_norm: bool = False,
    batch_norm_position: str = "before_dropout",
    input_batch_norm: bool = False,
    seed: int | None = None,
    name: str = "dense_stack",
) -> Any:
    """Build a regression network: a stack of Dense layers and one linear output unit.

    Capacity grows wider (larger ``hidden_units`` entries) or deeper (more entries). Layers are
    named ``input_batch_norm``, ``block_{i}_dense``, ``block_{i}_batch_norm``,
    ``block_{i}_dropout`` and ``output``.

    Args:
        inputs: Number of input features, or prepared data from ``dlstructured.prepare``.
        hidden_units: Width of each hidden Dense layer; its length is the depth. Defaults to
            ``(512, 512, 512)``.
        activation: Keras activation of the hidden layers (``"relu"``, ``"elu"``, ``"selu"``,
            ``"gelu"``, ``"swish"`` ...). Defaults to ``"relu"``.
        dropout_rate: One dropout rate for every hidden layer, or one per layer; ``0`` adds no
            ``Dropout`` layer. Defaults to ``0.0``.
        batch_norm: Add ``BatchNormalization`` to each hidden block. Defaults to ``False``.
        batch_norm_position: ``"before_dropout"`` (``Dense, BatchNormalization, Dropout``) or
            ``"after_dropout"`` (``Dense, Dropout, BatchNormalization``). Defaults to
            ``"before_dropout"``.
        input_batch_norm: Batch-normalize the raw inputs first (trains on unscaled data).
            Defaults to ``False``.
        seed: Seed of every weight initializer and dropout mask; the same call builds the same
            model. Defaults to ``None`` (unseeded).
        name: Name of the model. Defaults to the builder's name.

    Returns:
        An uncompiled ``keras.Model`` (a ``TabularModel`` for prepared data).

    Raises:
        TypeError: If an argument has the wrong type (the message names it).
        ValueError: If an argument has a bad value, prepared data is not a regression task, or
            ``hidden_units`` gives more than ``MAX_PARAMETERS`` (2**31) weights.

    Example:

    >>> from dlstructured import dense_stack
    >>> model = dense_stack(8, hidden_units=(512, 512, 512), seed=0)
    >>> [layer.name for layer in model.layers]
    ['features', 'block_1_dense', 'block_2_dense', 'block_3_dense', 'output']
    >>> model.count_params()
    530433
    """
    return _stack(
        inputs,
        task="regression",
        builder="dense_stack",
        output_units=1,
        hidden_units=hidden_units,
        activation=activation,
        dropout_rate=dropout_rate,
        batch_norm=batch_norm,
        batch_norm_position=batch_norm_position,
        input_batch_norm=input_batch_norm,
        seed=seed,
        name=name,
    )


def binary_classifier(
    inputs: Any,
    *,
    hidden_units: Sequence[int] = DEFAULT_HIDDEN_UNITS,
    activation: Any = "relu",
    dropout_rate: float | Sequence[float] = 0.0,
    batch_norm: bool = False,
    batch_norm_position: str = "before_dropout",
    input_batch_norm: bool = False,
    seed: int | None = None,
    name: str = "binary_classifier",
) -> Any:
    """Build a binary classifier: the same dense stack with one sigmoid output unit.

    The output is the probability of the positive class (label 1).

    Args:
        inputs: Number of input features, or prepared data from ``dlstructured.prepare``.
        hidden_units: Width of each hidden Dense layer; its length is the depth. Defaults to
            ``(512, 512, 512)``.
        activation: Keras activation of the hidden layers (``"relu"``, ``"elu"``, ``"selu"``,
            ``"gelu"``, ``"swish"`` ...). Defaults to ``"relu"``.
        dropout_rate: One dropout rate for every hidden layer, or one per layer; ``0`` adds no
            ``Dropout`` layer. Defaults to ``0.0``.
        batch_norm: Add ``BatchNormalization`` to each hidden block. Defaults to ``False``.
        batch_norm_position: ``"before_dropout"`` (``Dense, BatchNormalization, Dropout``) or
            ``"after_dropout"`` (``Dense, Dropout, BatchNormalization``). Defaults to
            ``"before_dropout"``.
        input_batch_norm: Batch-normalize the raw inputs first (trains on unscaled data).
            Defaults to ``False``.
        seed: Seed of every weight initializer and dropout mask; the same call builds the same
            model. Defaults to ``None`` (unseeded).
        name: Name of the model. Defaults to the builder's name.

    Returns:
        An uncompiled ``keras.Model`` (a ``TabularModel`` for prepared data).

    Raises:
        TypeError: If an argument has the wrong type (the message names it).
        ValueError: If an argument has a bad value, prepared data is not a binary task, or
            ``hidden_units`` gives more than ``MAX_PARAMETERS`` (2**31) weights.

    Example:

    >>> from dlstructured import binary_classifier
    >>> model = binary_classifier(33, hidden_units=(4, 4), seed=0)
    >>> model.get_layer("output").get_config()["activation"]
    'sigmoid'
    >>> model.count_params()
    161
    """
    return _stack(
        inputs,
        task="binary",
        builder="binary_classifier",
        output_units=1,
        hidden_units=hidden_units,
        activation=activation,
        dropout_rate=dropout_rate,
        batch_norm=batch_norm,
        batch_norm_position=batch_norm_position,
        input_batch_norm=input_batch_norm,
        seed=seed,
        name=name,
    )


def multiclass_classifier(
    inputs: Any,
    *,
    num_classes: int | None = None,
    hidden_units: Sequence[int] = DEFAULT_HIDDEN_UNITS,
    activation: Any = "relu",
    dropout_rate: float | Sequence[float] = 0.0,
    batch_norm: bool = False,
    batch_norm_position: str = "before_dropout",
    input_batch_norm: bool = False,
    seed: int | None = None,
    name: str = "multiclass_classifier",
) -> Any:
    """Build a multiclass classifier: the dense stack with a softmax output over the classes.

    Args:
        inputs: Number of input features, or prepared data from ``dlstructured.prepare``.
        num_classes: Number of classes (at least 2); taken from prepared data when given.
            Defaults to ``None``.
        hidden_units: Width of each hidden Dense layer; its length is the depth. Defaults to
            ``(512, 512, 512)``.
        activation: Keras activation of the hidden layers (``"relu"``, ``"elu"``, ``"selu"``,
            ``"gelu"``, ``"swish"`` ...). Defaults to ``"relu"``.
        dropout_rate: One dropout rate for every hidden layer, or one per layer; ``0`` adds no
            ``Dropout`` layer. Defaults to ``0.0``.
        batch_norm: Add ``BatchNormalization`` to each hidden block. Defaults to ``False``.
        batch_norm_position: ``"before_dropout"`` (``Dense, BatchNormalization, Dropout``) or
            ``"after_dropout"`` (``Dense, Dropout, BatchNormalization``). Defaults to
            ``"before_dropout"``.
        input_batch_norm: Batch-normalize the raw inputs first (trains on unscaled data).
            Defaults to ``False``.
        seed: Seed of every weight initializer and dropout mask; the same call builds the same
            model. Defaults to ``None`` (unseeded).
        name: Name of the model. Defaults to the builder's name.

    Returns:
        An uncompiled ``keras.Model`` (a ``TabularModel`` for prepared data).

    Raises:
        TypeError: If an argument has the wrong type (the message names it).
        ValueError: If an argument has a bad value, ``num_classes`` is missing or below 2,
            prepared data is not a multiclass task, or ``hidden_units`` gives more than
            ``MAX_PARAMETERS`` (2**31) weights.

    Example:

    >>> from dlstructured import multiclass_classifier
    >>> model = multiclass_classifier(4, num_classes=3, hidden_units=(16,), seed=0)
    >>> model.output_shape
    (None, 3)
    """
    is_data = hasattr(inputs, "num_features") and hasattr(inputs, "preprocessor")
    if not is_data:
        if num_classes is None:
            raise ValueError(
                "`num_classes` is required when the input is a feature count. "
                "Received: num_classes=None"
            )
        num_classes = check_int("num_classes", num_classes, minimum=2)
    return _stack(
        inputs,
        task="multiclass",
        builder="multiclass_classifier",
        output_units=num_classes,
        hidden_units=hidden_units,
        activation=activation,
        dropout_rate=dropout_rate,
        batch_norm=batch_norm,
        batch_norm_position=batch_norm_position,
        input_batch_norm=input_batch_norm,
        seed=seed,
        name=name,
    )
