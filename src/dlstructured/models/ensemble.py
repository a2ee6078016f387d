"""The ensemble MLP builder: several MLPs that share their hidden layers and train as one network.

The recipe follows TabM-mini (Gorishniy et al., ICLR 2025) and RealMLP (Holzmueller et al.,
NeurIPS 2024): a learnable scale per feature, a multiplicative adapter per member, shared
hidden layers in the NTK parametrisation (``x @ W / sqrt(fan_in)``) and one zero-initialised
output head per member. The output is ``(batch, members, units)``; ``train`` averages the
members' losses and reports metrics of their mean prediction, and ``TabularModel.predict``
returns that mean.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from dlstructured._checks import (
    check_bool,
    check_int,
    check_optional_seed,
    check_rate,
    check_units_sequence,
)
from dlstructured.models.builders import (
    _check_size,
    _features,
    _finish,
    _layer_seeds,
    _resolve_inputs,
)
from dlstructured.tasks import TASKS, get_task

DEFAULT_ENSEMBLE_UNITS = (256, 256, 256)
DEFAULT_MEMBERS = 8


def ensemble_mlp(
    inputs: Any,
    *,
    task: str | None = None,
    num_classes: int | None = None,
    hidden_units: Sequence[int] = DEFAULT_ENSEMBLE_UNITS,
    members: int = DEFAULT_MEMBERS,
    activation: Any = "selu",
    dropout_rate: float = 0.0,
    periodic_embedding: bool = False,
    seed: int | None = None,
    name: str = "ensemble_mlp",
) -> Any:
    """Build an ensemble of ``members`` MLPs that share their hidden layers (TabM-mini).

    Layers are named ``features``, ``category_embedding`` (when the data has embedded columns),
    ``periodic_embedding`` (when ``periodic_embedding`` is on), ``feature_scale``,
    ``member_adapter``, ``block_{i}_dense``, ``block_{i}_dropout`` and
    ``output``. The network's output has shape ``(batch, members, units)``: one prediction per
    member. Train it with ``dlstructured.train``, which averages the members' losses; its
    metrics and ``TabularModel.predict`` use the members' mean prediction.

    Args:
        inputs: Number of input features, or prepared data from ``dlstructured.prepare``.
        task: ``"regression"``, ``"binary"`` or ``"multiclass"``. Defaults to ``None``: the
            prepared data's task, else ``"regression"``.
        num_classes: Number of classes for a multiclass task (taken from prepared data).
            Defaults to ``None``.
        hidden_units: Width of each shared hidden layer; its length is the depth. Defaults to
            ``(256, 256, 256)``.
        members: Number of ensemble members. Defaults to ``8``.
        activation: Keras activation of the hidden layers. Defaults to ``"selu"``.
        dropout_rate: Dropout after each hidden layer; ``0`` adds no ``Dropout`` layer.
            Defaults to ``0.0``.
        periodic_embedding: Describe each input feature by learned waves beside its value
            (``PeriodicEmbedding``, 16 frequencies mixed into 3 numbers) before the scaling.
            Defaults to ``False``: on the validation splits of our development tables it did
            not help the default recipe (see the docs page "Beyond the course").
        seed: Seed of every initializer and dropout mask. Defaults to ``None`` (unseeded).
        name: Name of the model. Defaults to ``"ensemble_mlp"``.

    Returns:
        An uncompiled ``keras.Model`` (a ``TabularModel`` for prepared data).

    Raises:
        TypeError: If an argument has the wrong type (the message names it).
        ValueError: If an argument has a bad value, ``num_classes`` is missing for a multiclass
            feature count, prepared data is of another task than ``task``, or
            ``hidden_units`` gives more than ``MAX_PARAMETERS`` (2**31) weights.

    Example:

    >>> from dlstructured import ensemble_mlp
    >>> model = ensemble_mlp(8, hidden_units=(16, 16), members=4, seed=0)
    >>> model.output_shape
    (None, 4, 1)
    >>> model.count_params()  # 8 + 4*8 + (8*16+16) + (16*16+16) + 4*(16+1)
    524
    """
    import keras

    from dlstructured.models.ensemble_layers import (
        FeatureScale,
        MemberAdapter,
        MemberHeads,
        NTKDense,
        PeriodicEmbedding,
    )

    is_data = hasattr(inputs, "num_features") and hasattr(inputs, "preprocessor")
    if task is None:
        task = getattr(inputs, "task", None) if is_data else "regression"
    policy = get_task(task)
    num_features, data = _resolve_inputs(inputs, policy.name, "ensemble_mlp")
    hidden_units = check_units_sequence("hidden_units", hidden_units)
    members = check_int("members", members, minimum=1)
    dropout_rate = check_rate("dropout_rate", dropout_rate)
    seed = check_optional_seed("seed", seed)
    if not isinstance(name, str) or not name:
        raise TypeError(f"`name` must be a non-empty string. Received: name={name!r}")
    output_units = 1
    if policy.name == "multiclass":
        if data is not None:
            output_units = int(data.num_classes)
        elif num_classes is None:
            raise ValueError(
                "`num_classes` is required for a multiclass model built from a feature count. "
                "Received: num_classes=None"
            )
        else:
            output_units = check_int("num_classes", num_classes, minimum=2)

    check_bool("periodic_embedding", periodic_embedding)
    # The hidden layers are shared; each member has its own output head.
    _check_size(num_features, data, hidden_units, output_units * members)
    seeds = _layer_seeds(seed, 2 * len(hidden_units) + 2)
    model_inputs, x = _features(num_features, data, seeds[-1])
    if periodic_embedding:  # its seed comes after the others, which stay as they were
        periodic_seed = _layer_seeds(seed, len(seeds) + 1)[-1]
        x = PeriodicEmbedding(seed=periodic_seed, name="periodic_embedding")(x)
    x = FeatureScale(rate_factor=6.0, name="feature_scale")(x)
    x = MemberAdapter(members, seed=seeds[-2], name="member_adapter")(x)
    for index, units in enumerate(hidden_units, start=1):
        x = NTKDense(
            units, activation=activation, seed=seeds[2 * index - 2], name=f"block_{index}_dense"
        )(x)
        if dropout_rate > 0:
            x = keras.layers.Dropout(
                dropout_rate, seed=seeds[2 * index - 1], name=f"block_{index}_dropout"
            )(x)
    outputs = MemberHeads(output_units, activation=TASKS[policy.name].output_activation,
                          name="output")(x)
    return _finish(keras.Model(model_inputs, outputs, name=name), data)
