"""RunConfig: defaults, checks, and the round trip through plain JSON values, old versions too."""

from __future__ import annotations

import json
import pickle

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dlstructured.config import CONFIG_VERSION, RunConfig


def test_defaults_are_the_command_line_defaults():
    config = RunConfig()
    assert config.model == "auto" and config.seed == 0
    # The fields whose value depends on the model are left to the model's recipe.
    for name in ("hidden_units", "activation", "members", "epochs", "batch_size",
                 "learning_rate", "patience", "valid_fraction"):
        assert getattr(config, name) is None, name
    assert config.resolved_hidden_units == (256, 256, 256)
    assert RunConfig(model="dense").resolved_hidden_units == (512, 512, 512)
    assert RunConfig(model="linear").resolved_hidden_units == ()


def test_a_version_2_config_is_the_course_recipe_it_was():
    # Written before the default model existed: no `members`, and every value given.
    record = RunConfig(model="dense").to_dict()
    del record["members"]
    record.update(config_version=2, epochs=200, batch_size=256, learning_rate=0.001,
                  patience=20, valid_fraction=0.3, activation="relu")
    config = RunConfig.from_dict(record)
    assert (config.model, config.members, config.epochs) == ("dense", None, 200)
    record.pop("model")
    assert RunConfig.from_dict(record).model == "dense"


def test_fields_are_frozen():
    with pytest.raises(AttributeError):
        RunConfig().epochs = 3  # type: ignore[misc]


configs = st.builds(
    RunConfig,
    model=st.just("dense"),
    task=st.sampled_from([None, "regression", "binary", "multiclass"]),
    hidden_units=st.one_of(st.none(), st.lists(st.integers(1, 64), max_size=3).map(tuple)),
    dropout_rate=st.floats(0.0, 0.9),
    batch_norm=st.booleans(),
    epochs=st.integers(1, 500),
    learning_rate=st.floats(1e-5, 1.0),
    patience=st.integers(0, 50),
    metrics=st.one_of(st.none(), st.lists(st.sampled_from(["mae", "auc", "mse"]),
                                          max_size=2, unique=True).map(tuple)),
    valid_fraction=st.floats(0.0, 0.9),
    group_by=st.one_of(st.none(), st.just("city")),
    seed=st.integers(0, 2**31),
    kinds=st.dictionaries(st.sampled_from(["a", "b"]),
                          st.sampled_from(["numeric", "categorical", "datetime", "ignore"])),
    drop=st.lists(st.sampled_from(["id", "name"]), unique=True).map(tuple),
    positive_label=st.one_of(st.none(), st.just("yes"), st.just(1)),
)


auto_configs = st.builds(
    RunConfig,
    members=st.one_of(st.none(), st.integers(1, 16)),
    epochs=st.one_of(st.none(), st.integers(1, 500)),
    batch_size=st.one_of(st.none(), st.integers(1, 4096)),
    patience=st.one_of(st.none(), st.integers(0, 50)),
    valid_fraction=st.one_of(st.none(), st.floats(0.0, 0.9)),
)


@given(st.one_of(configs, auto_configs))
def test_to_dict_and_back_is_the_same_config(config):
    record = json.loads(json.dumps(config.to_dict()))
    assert record["config_version"] == CONFIG_VERSION
    again = RunConfig.from_dict(record)
    assert again == config
    assert hash(again) == hash(config)
    assert pickle.loads(pickle.dumps(config)) == config


def test_an_old_run_json_means_what_it_meant_in_0_1_0():
    # The "options" of a run.json written by 0.1.0's `dlstructured train`.
    options = {
        "task": None, "model": "dense", "hidden": [64, 32], "activation": "relu",
        "dropout": 0.25, "batch_norm": False, "input_batch_norm": True, "epochs": 30,
        "batch_size": 128, "learning_rate": 0.01, "patience": 5, "valid_fraction": 0.2,
        "stratify": False, "group_by": None, "seed": 7,
    }
    config = RunConfig.from_dict(options)
    assert config.hidden_units == (64, 32)
    assert config.dropout_rate == 0.25
    assert config.metrics is None  # 0.1.0 runs before --metrics used the task's
    assert (config.epochs, config.seed, config.input_batch_norm) == (30, 7, True)
    # A linear run recorded the unused dense defaults; they meant nothing then either.
    linear = RunConfig.from_dict({**options, "model": "linear", "hidden": [512, 512, 512]})
    assert linear.resolved_hidden_units == () and linear.dropout_rate == 0.0


@pytest.mark.parametrize(
    ("changes", "error", "names"),
    [
        ({"epochs": 0}, ValueError, "epochs=0"),
        ({"epochs": 2.5}, TypeError, "epochs=2.5"),
        ({"hidden_units": "512,512"}, TypeError, "hidden_units='512,512'"),
        ({"hidden_units": (8, 0)}, ValueError, "hidden_units"),
        ({"dropout_rate": 1.0}, ValueError, "dropout_rate=1.0"),
        ({"learning_rate": 0.0}, ValueError, "learning_rate=0.0"),
        ({"valid_fraction": 1.0}, ValueError, "valid_fraction=1.0"),
        ({"task": "ranking"}, ValueError, "task='ranking'"),
        ({"model": "forest"}, ValueError, "model='forest'"),
        ({"model": "dense", "batch_norm": 1}, TypeError, "batch_norm=1"),
        ({"metrics": "mae"}, TypeError, "metrics='mae'"),
        ({"kinds": {"age": "number"}}, ValueError, "kinds['age']='number'"),
        ({"drop": "id"}, TypeError, "drop='id'"),
        ({"model": "linear", "hidden_units": (8, 8)}, ValueError, "hidden_units=(8, 8)"),
        ({"model": "linear", "dropout_rate": 0.5}, ValueError, "dropout_rate=0.5"),
        ({"stratify": True, "group_by": "city"}, ValueError, "group_by='city'"),
        ({"sep": ""}, TypeError, "sep=''"),
        ({"members": 0}, ValueError, "members=0"),
        ({"model": "dense", "members": 4}, ValueError, "members=4"),
        ({"batch_norm": True}, ValueError, "batch_norm=True"),
        ({"input_batch_norm": True}, ValueError, "input_batch_norm=True"),
        ({"activation": ""}, TypeError, "activation=''"),
    ],
)
def test_bad_values_name_the_field_and_what_was_received(changes, error, names):
    with pytest.raises(error, match="Received: " + names.replace("[", r"\[").replace("(", r"\(")
                       .replace(")", r"\)")):
        RunConfig(**changes)


def test_replace_checks_like_a_new_config():
    assert RunConfig().replace(epochs=3).epochs == 3
    with pytest.raises(ValueError, match="Received: epochs=-1"):
        RunConfig().replace(epochs=-1)


def test_from_dict_refuses_unknown_keys_and_newer_versions():
    with pytest.raises(ValueError, match="'hiden_units'"):
        RunConfig.from_dict({"config_version": CONFIG_VERSION, "hiden_units": [8]})
    with pytest.raises(ValueError, match="newer dlstructured"):
        RunConfig.from_dict({"config_version": CONFIG_VERSION + 1})
    with pytest.raises(TypeError, match="record"):
        RunConfig.from_dict([("epochs", 3)])
