"""The building block of every dense stack, public so other projects can compose their own."""

from __future__ import annotations

from typing import Any

from dlstructured._checks import (
    check_bool,
    check_choice,
    check_int,
    check_optional_seed,
    check_rate,
)

BATCH_NORM_POSITIONS = ("before_dropout", "after_dropout")


def _check_activation(activation: Any) -> Any:
    import keras

    if activation is None:
        return "linear"
    try:
        keras.activations.get(activation)
    except (ValueError, TypeError) as error:
        raise ValueError(
            "`activation` must be a Keras activation name such as 'relu', 'elu', 'selu', "
            f"'gelu' or 'swish', or a callable. Received: activation={activation!r}"
        ) from error
    return activation


def _activation_name(activation: Any) -> str:
    if isinstance(activation, str):
        return activation
    return getattr(activation, "__name__", str(activation))


def dense_block(
    x: Any,
    units: int,
    *,
    activation: Any = "relu",
    dropout_rate: float = 0.0,
    batch_norm: bool = False,
    batch_norm_position: str = "before_dropout",
    seed: int | None = None,
    name: str | None = None,
) -> Any:
    """Apply ``Dense(units, activation)``, then batch normalization and dropout if asked.

    The block leaves out the layers it does not use: ``dropout_rate=0`` adds no ``Dropout`` and
    ``batch_norm=False`` adds no ``BatchNormalization``. With both, ``batch_norm_position`` picks
    the order, as the course uses both:

    - ``"before_dropout"``: ``Dense -> BatchNormalization -> Dropout``;
    - ``"after_dropout"``: ``Dense -> Dropout -> BatchNormalization``.

    The Dense layer keeps its bias, except when it has no activation and batch normalization
    follows, where the bias would be cancelled by the normalization.

    Args:
        x: A Keras tensor (from ``keras.Input`` or an earlier layer).
        units: Width of the Dense layer, a positive integer.
        activation: Any Keras activation name or callable. Defaults to ``"relu"``.
        dropout_rate: Fraction of units dropped while training, in ``[0, 1)``. Defaults to ``0.0``.
        batch_norm: Whether to add ``BatchNormalization``. Defaults to ``False``.
        batch_norm_position: ``"before_dropout"`` or ``"after_dropout"``. Defaults to
            ``"before_dropout"``.
        seed: Seed of the kernel initializer and of the dropout mask. Defaults to ``None``.
        name: Prefix of the layer names (``{name}_dense``, ``{name}_batch_norm``,
            ``{name}_dropout``). Defaults to ``None`` (Keras picks the names).

    Returns:
        The block's output tensor.

    Raises:
        TypeError: If an argument has the wrong type.
        ValueError: If ``units`` is below 1, ``dropout_rate`` is outside ``[0, 1)``, the
            activation is unknown or ``batch_norm_position`` is not one of the two orders.

    Example:

    >>> import keras
    >>> from dlstructured import dense_block
    >>> inputs = keras.Input(shape=(8,))
    >>> x = dense_block(inputs, 64, dropout_rate=0.3, batch_norm=True, name="block_1")
    >>> outputs = keras.layers.Dense(1, name="output")(x)
    >>> model = keras.Model(inputs, outputs)
    >>> [layer.name for layer in model.layers[1:]]
    ['block_1_dense', 'block_1_batch_norm', 'block_1_dropout', 'output']
    """
    import keras

    units = check_int("units", units, minimum=1)
    activation = _check_activation(activation)
    dropout_rate = check_rate("dropout_rate", dropout_rate)
    batch_norm = check_bool("batch_norm", batch_norm)
    batch_norm_position = check_choice(
        "batch_norm_position", batch_norm_position, BATCH_NORM_POSITIONS
    )
    seed = check_optional_seed("seed", seed)

    def layer_name(suffix: str) -> str | None:
        return None if name is None else f"{name}_{suffix}"

    linear = _activation_name(activation) == "linear"
    x = keras.layers.Dense(
        units,
        activation=activation,
        use_bias=not (batch_norm and linear),
        kernel_initializer=keras.initializers.GlorotUniform(seed=seed),
        name=layer_name("dense"),
    )(x)
    dropout = None
    if dropout_rate > 0:
        dropout = keras.layers.Dropout(
            dropout_rate, seed=None if seed is None else seed + 1, name=layer_name("dropout")
        )
    if batch_norm and batch_norm_position == "before_dropout":
        x = keras.layers.BatchNormalization(name=layer_name("batch_norm"))(x)
    if dropout is not None:
        x = dropout(x)
    if batch_norm and batch_norm_position == "after_dropout":
        x = keras.layers.BatchNormalization(name=layer_name("batch_norm"))(x)
    return x
