"""Builders: the course's eight architectures layer for layer, parameter counts, bad arguments."""

from __future__ import annotations

import keras
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dlstructured import (
    binary_classifier,
    dense_block,
    dense_stack,
    linear_unit,
    multiclass_classifier,
)


def describe(model):
    """(kind, units, activation, rate) per layer after the input, in order."""
    rows = []
    for layer in model.layers[1:]:
        config = layer.get_config()
        if isinstance(layer, keras.layers.Dense):
            rows.append(("Dense", config["units"], config["activation"]))
        elif isinstance(layer, keras.layers.Dropout):
            rows.append(("Dropout", config["rate"]))
        elif isinstance(layer, keras.layers.BatchNormalization):
            rows.append(("BatchNormalization",))
        else:
            rows.append((type(layer).__name__,))
    return rows


def dense_params(n_in, n_out):
    return n_in * n_out + n_out


def bn_params(n):
    return 4 * n  # gamma, beta, moving mean, moving variance


def test_architecture_1_linear_unit_on_11_inputs():
    model = linear_unit(11, seed=0)
    assert model.input_shape == (None, 11)
    assert describe(model) == [("Dense", 1, "linear")]
    assert model.count_params() == dense_params(11, 1)


def test_architecture_2_three_512_relu_layers_on_8_inputs():
    model = dense_stack(8, hidden_units=(512, 512, 512), seed=0)
    assert describe(model) == [("Dense", 512, "relu")] * 3 + [("Dense", 1, "linear")]
    expected = dense_params(8, 512) + 2 * dense_params(512, 512) + dense_params(512, 1)
    assert model.count_params() == expected


def test_architecture_3_128_128_64():
    model = dense_stack(11, hidden_units=[128, 128, 64])
    assert describe(model) == [
        ("Dense", 128, "relu"), ("Dense", 128, "relu"), ("Dense", 64, "relu"), ("Dense", 1, "linear")
    ]
    expected = dense_params(11, 128) + dense_params(128, 128) + dense_params(128, 64) + 65
    assert model.count_params() == expected


def test_architecture_4_dropout_after_each_dense():
    model = dense_stack(11, hidden_units=(128, 64), dropout_rate=0.3)
    assert describe(model) == [
        ("Dense", 128, "relu"), ("Dropout", 0.3), ("Dense", 64, "relu"), ("Dropout", 0.3),
        ("Dense", 1, "linear"),
    ]
    assert model.count_params() == dense_params(11, 128) + dense_params(128, 64) + 65


def test_architecture_5_dense_dropout_batchnorm_three_times():
    model = dense_stack(
        11, hidden_units=(1024,) * 3, dropout_rate=0.3, batch_norm=True,
        batch_norm_position="after_dropout",
    )
    block = [("Dense", 1024, "relu"), ("Dropout", 0.3), ("BatchNormalization",)]
    assert describe(model) == block * 3 + [("Dense", 1, "linear")]
    expected = (dense_params(11, 1024) + 2 * dense_params(1024, 1024) + 3 * bn_params(1024)
                + dense_params(1024, 1))
    assert model.count_params() == expected


def test_architecture_6_input_batchnorm_then_dense_batchnorm():
    model = dense_stack(11, hidden_units=(512,) * 3, batch_norm=True, input_batch_norm=True)
    block = [("Dense", 512, "relu"), ("BatchNormalization",)]
    assert describe(model) == [("BatchNormalization",)] + block * 3 + [("Dense", 1, "linear")]
    expected = (bn_params(11) + dense_params(11, 512) + 2 * dense_params(512, 512)
                + 3 * bn_params(512) + dense_params(512, 1))
    assert model.count_params() == expected
    assert model.layers[1].name == "input_batch_norm"


def test_architecture_7_sigmoid_classifier_on_33_inputs():
    model = binary_classifier(33, hidden_units=(4, 4))
    assert describe(model) == [("Dense", 4, "relu"), ("Dense", 4, "relu"), ("Dense", 1, "sigmoid")]
    assert model.count_params() == dense_params(33, 4) + dense_params(4, 4) + dense_params(4, 1)


def test_architecture_8_input_bn_dense_bn_dropout_classifier():
    model = binary_classifier(
        63, hidden_units=(256, 256), batch_norm=True, dropout_rate=0.3, input_batch_norm=True,
        batch_norm_position="before_dropout",
    )
    block = [("Dense", 256, "relu"), ("BatchNormalization",), ("Dropout", 0.3)]
    assert describe(model) == [("BatchNormalization",)] + block * 2 + [("Dense", 1, "sigmoid")]
    expected = (bn_params(63) + dense_params(63, 256) + bn_params(256) + dense_params(256, 256)
                + bn_params(256) + dense_params(256, 1))
    assert model.count_params() == expected


def test_layer_names_are_stable_across_builds():
    first = [layer.name for layer in dense_stack(5, hidden_units=(8, 8), batch_norm=True).layers]
    second = [layer.name for layer in dense_stack(5, hidden_units=(8, 8), batch_norm=True).layers]
    assert first == second == [
        "features", "block_1_dense", "block_1_batch_norm", "block_2_dense", "block_2_batch_norm",
        "output",
    ]


def test_builders_return_new_uncompiled_models_with_declared_input():
    model = dense_stack(4, hidden_units=(8,))
    assert model.compiled is False
    assert model.input_shape == (None, 4)
    assert dense_stack(4, hidden_units=(8,)) is not model


def test_per_layer_dropout_rates_and_activation():
    model = dense_stack(3, hidden_units=(8, 8), dropout_rate=[0.1, 0.5], activation="gelu")
    assert describe(model) == [
        ("Dense", 8, "gelu"), ("Dropout", 0.1), ("Dense", 8, "gelu"), ("Dropout", 0.5),
        ("Dense", 1, "linear"),
    ]


def test_same_seed_builds_the_same_model_and_other_seeds_differ():
    a = dense_stack(6, hidden_units=(16, 16), seed=3).get_weights()
    b = dense_stack(6, hidden_units=(16, 16), seed=3).get_weights()
    c = dense_stack(6, hidden_units=(16, 16), seed=4).get_weights()
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert not all(np.array_equal(x, y) for x, y in zip(a, c))


def test_layers_of_the_same_shape_get_different_initial_weights():
    weights = dense_stack(4, hidden_units=(8, 8, 8), seed=0)
    k2 = weights.get_layer("block_2_dense").get_weights()[0]
    k3 = weights.get_layer("block_3_dense").get_weights()[0]
    assert not np.array_equal(k2, k3)


def test_multiclass_classifier_has_softmax_over_classes():
    model = multiclass_classifier(5, num_classes=4, hidden_units=(8,))
    assert describe(model)[-1] == ("Dense", 4, "softmax")


def test_multiclass_requires_num_classes():
    with pytest.raises(ValueError, match="num_classes"):
        multiclass_classifier(5)


def test_dense_block_orders_and_bias_rule():
    inputs = keras.Input((3,))
    x = dense_block(inputs, 4, activation=None, batch_norm=True, name="b")
    model = keras.Model(inputs, x)
    dense = model.get_layer("b_dense")
    assert dense.use_bias is False  # batch norm right after a linear Dense cancels its bias
    x = dense_block(inputs, 4, batch_norm=True, name="c")
    assert keras.Model(inputs, x).get_layer("c_dense").use_bias is True


BAD_COUNTS = [0, -1, 2.5, None, "64", True]


@pytest.mark.parametrize("value", BAD_COUNTS)
def test_bad_feature_count_is_refused_with_its_value(value):
    with pytest.raises((TypeError, ValueError)) as info:
        dense_stack(value)
    assert repr(value) in str(info.value)


@pytest.mark.parametrize("value", [(0,), (-1, 4), (2.5,), (None,), ("64",), (True,), "64", 64, None])
def test_bad_hidden_units_are_refused_naming_the_argument(value):
    with pytest.raises((TypeError, ValueError), match="hidden_units"):
        dense_stack(4, hidden_units=value)


@pytest.mark.parametrize("value", [1.5, -0.1, 1.0, "0.3", None, True, [0.1]])
def test_bad_dropout_rates_are_refused_naming_the_argument(value):
    with pytest.raises((TypeError, ValueError), match="dropout_rate"):
        dense_stack(4, hidden_units=(8, 8), dropout_rate=value)


@pytest.mark.parametrize(
    "kwargs, name",
    [
        ({"batch_norm": 1}, "batch_norm"),
        ({"input_batch_norm": "yes"}, "input_batch_norm"),
        ({"batch_norm_position": "middle"}, "batch_norm_position"),
        ({"activation": "no_such_activation"}, "activation"),
        ({"seed": -1}, "seed"),
        ({"seed": 1.5}, "seed"),
        ({"name": ""}, "name"),
    ],
)
def test_other_bad_arguments_name_themselves(kwargs, name):
    with pytest.raises((TypeError, ValueError), match=name):
        binary_classifier(4, hidden_units=(8,), **kwargs)


def test_error_message_shows_received_value():
    with pytest.raises(ValueError, match=r"Received: dropout_rate=1\.5"):
        dense_stack(4, dropout_rate=1.5)


@settings(deadline=None, max_examples=12)
@given(
    num_features=st.integers(1, 40),
    hidden=st.lists(st.integers(1, 24), min_size=0, max_size=4),
    rate=st.floats(0.0, 0.9),
    batch_norm=st.booleans(),
    input_batch_norm=st.booleans(),
    position=st.sampled_from(["before_dropout", "after_dropout"]),
)
def test_parameter_count_matches_the_formula(
    num_features, hidden, rate, batch_norm, input_batch_norm, position
):
    model = dense_stack(
        num_features, hidden_units=hidden, dropout_rate=rate, batch_norm=batch_norm,
        input_batch_norm=input_batch_norm, batch_norm_position=position,
    )
    expected = bn_params(num_features) if input_batch_norm else 0
    width = num_features
    for units in hidden:
        expected += dense_params(width, units) + (bn_params(units) if batch_norm else 0)
        width = units
    expected += dense_params(width, 1)
    assert model.count_params() == expected
    kinds = [row[0] for row in describe(model)]
    assert kinds.count("Dropout") == (len(hidden) if rate > 0 else 0)
    assert kinds.count("BatchNormalization") == len(hidden) * batch_norm + input_batch_norm
    assert model.output_shape == (None, 1)
