"""Property tests over the public entry points: every input works or raises a documented error.

A documented error is a ``TypeError`` or ``ValueError`` (the library's own errors subclass them)
whose message names the argument (or column) at fault: one that the case set to a doubtful value,
and whose replacement by a valid value makes that error go away. Anything else, a ``KeyError`` or
``AttributeError`` from deep inside Keras, or a message that only says "x" or "rows" where the
fault lies elsewhere, fails. Budgets scale with the hypothesis profile: a brief run in
``make test``, a large one under ``HYPOTHESIS_PROFILE=fuzz`` (``make fuzz``).
"""

from __future__ import annotations

import contextlib
import io
import math
import re
import warnings
import zipfile

import keras
import numpy as np
import pandas as pd
import pytest
from hypothesis import assume, event, given
from hypothesis import strategies as st

import dlstructured
from conftest import budget
from dlstructured import (
    EarlyStopping,
    ModelFileError,
    binary_classifier,
    dense_stack,
    linear_unit,
    multiclass_classifier,
    train,
)

pytestmark = pytest.mark.fuzz

# Values that are wrong for almost every argument, mixed into each argument's strategy.
JUNK = st.sampled_from([None, True, False, -1, 0, 2.5, float("nan"), float("inf"), "", "64",
                        "relu", [], (), {}, b"x", object()])


# How messages name a positional argument; any other suspect is named by its own name. The table
# messages, shared with the command line (where the table is a file, not `data=`), open with
# "The frame ..." or "The input ...": only a message that opens so names the table argument.
ALIASES = {"inputs": ("inputs", "num_features", "first argument")}
OPENINGS = {"data": ("The frame ",), "x": ("The input ",)}


def _named(error: Exception, suspects) -> list[str]:
    """The suspects that the message of ``error`` names as a whole word (or opens with)."""
    text = str(error)
    return [
        suspect for suspect in suspects
        if any(re.search(rf"(?<!\w){re.escape(word)}(?!\w)", text)
               for word in ALIASES.get(suspect, (suspect,)))
        or text.startswith(OPENINGS.get(suspect, ()))
    ]


def _raised(call) -> Exception | None:
    """The exception that ``call()`` raises (warnings silenced), or None."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            call()
    except Exception as error:  # noqa: BLE001 - the caller judges it
        return error
    return None


def _documented(error: Exception, suspects, again=None) -> None:
    """Fail unless ``error`` is a TypeError/ValueError that blames one of ``suspects``.

    Args:
        error: What the call under test raised.
        suspects: The arguments (or columns) this case set to values that may be bad.
        again: Called with the suspects the message names, it repeats the call with each of them
            set to a valid value and returns what that raises (or None). The same error again
            means the message blamed an argument that was not at fault. Defaults to ``None``
            (no repeat: for suspects that have no valid stand-in, such as columns).
    """
    event(f"refused: {type(error).__name__}")
    assert isinstance(error, (TypeError, ValueError)), (
        f"undocumented {type(error).__name__}: {error}"
    )
    named = _named(error, suspects)
    assert named, f"message names none of {sorted(suspects)}: {error}"
    if again is not None:
        repeated = again(named)
        assert repeated is None or (type(repeated), str(repeated)) != (type(error), str(error)), (
            f"with {named} valid the same error comes back, so they are not at fault: {error}"
        )


# --------------------------------------------------------------------------------------------
# Builders

BUILDERS = {
    "linear_unit": linear_unit,
    "dense_stack": dense_stack,
    "binary_classifier": binary_classifier,
    "multiclass_classifier": multiclass_classifier,
}

widths = st.integers(min_value=-2, max_value=12)
builder_kwargs = st.fixed_dictionaries(
    {},
    optional={
        "hidden_units": st.one_of(
            st.lists(widths, max_size=3), st.lists(widths, max_size=3).map(tuple),
            st.lists(st.one_of(widths, JUNK), max_size=3), JUNK,
        ),
        "activation": st.one_of(
            st.sampled_from(["relu", "elu", "selu", "gelu", "swish", "tanh", "linear", "sigmoid",
                             "no_such_activation", "RELU"]), JUNK,
        ),
        "dropout_rate": st.one_of(
            st.floats(min_value=-0.5, max_value=1.5),
            st.lists(st.floats(min_value=0.0, max_value=0.9), max_size=3), JUNK,
        ),
        "batch_norm": st.one_of(st.booleans(), JUNK),
        "batch_norm_position": st.one_of(
            st.sampled_from(["before_dropout", "after_dropout", "middle"]), JUNK),
        "input_batch_norm": st.one_of(st.booleans(), JUNK),
        "seed": st.one_of(st.none(), st.integers(min_value=-5, max_value=2**40), JUNK),
        "name": st.one_of(st.text(max_size=12), JUNK),
        "num_classes": st.one_of(st.integers(min_value=-1, max_value=6), JUNK),
    },
)


@budget(2.0)
@given(
    builder=st.sampled_from(sorted(BUILDERS)),
    inputs=st.one_of(st.integers(min_value=-2, max_value=20), JUNK),
    kwargs=builder_kwargs,
)
def test_builders_build_or_refuse_clearly(builder, inputs, kwargs):
    if builder == "linear_unit":
        kwargs = {k: v for k, v in kwargs.items() if k in ("seed", "name")}
    elif builder != "multiclass_classifier":
        kwargs.pop("num_classes", None)
    try:
        model = BUILDERS[builder](inputs, **kwargs)
    except Exception as error:  # noqa: BLE001 - the property is about which exceptions

        def again(named):
            valid_inputs = 3 if "inputs" in named else inputs
            mended = {k: v for k, v in kwargs.items() if k not in named}  # the default
            if builder == "multiclass_classifier" and "num_classes" in named:
                mended["num_classes"] = 3  # required: no default to fall back on
            return _raised(lambda: BUILDERS[builder](valid_inputs, **mended))

        # multiclass_classifier needs num_classes: leaving it out can be the fault.
        required = ["num_classes"] if builder == "multiclass_classifier" else []
        _documented(error, sorted({"inputs", *kwargs, *required}), again)
        return
    event("built")
    assert isinstance(model, keras.Model)
    assert model.input_shape == (None, inputs)
    units = kwargs.get("num_classes", 1) if builder == "multiclass_classifier" else 1
    assert model.output_shape == (None, units)
    assert model.count_params() > 0


# --------------------------------------------------------------------------------------------
# train()

ROWS = 12
_X = np.random.default_rng(0).normal(size=(ROWS, 2)).astype("float32")
_Y_REGRESSION = _X.sum(axis=1)
_Y_BINARY = (_X[:, 0] > 0).astype("float32")

# Each argument: a few valid values first, then invalid ones.
TRAIN_VALUES = {
    "epochs": st.sampled_from([1, 2, 0, -1, 2.5, "2", True, None]),
    "batch_size": st.sampled_from([4, 32, 0, -3, 1.5, "8", None]),
    "learning_rate": st.sampled_from([0.01, 1e-3, 0.0, -1.0, float("nan"), float("inf"), "0.1",
                                      None, True]),
    "early_stopping": st.one_of(
        st.sampled_from([True, False, 0, 3, -1, "yes", 2.5, None]),
        st.builds(EarlyStopping, patience=st.integers(1, 3), min_delta=st.sampled_from([0.0, 0.1])),
    ),
    "valid_fraction": st.sampled_from([None, 0.25, 0.0, 1.0, 1.5, -0.1, "0.2", float("nan")]),
    "task": st.sampled_from([None, "regression", "binary", "multiclass", "ranking", 3]),
    "verbose": st.sampled_from([0, 3, -1, "1", True, 1.0]),
    "seed": st.sampled_from([None, 0, 7, -1, "1", 1.5, 2**70]),
    "engine": st.sampled_from(["auto", "keras", "jax", "torch", None]),
    "on_interrupt": st.sampled_from(["return", "raise", "ignore", None]),
    "optimizer": st.sampled_from([None, "adam", "sgd", "rmsprop", "no_such_optimizer", 3, []]),
    "loss": st.sampled_from([None, "mse", "mae", "no_such_loss", 3]),
    "class_weight": st.sampled_from([None, "balanced", {0: 1.0, 1: 2.0}, {0: 1.0}, "x", [1, 2],
                                     {0: -1.0, 1: 1.0}]),
    "sample_weight": st.sampled_from(["none", "ones", "short", "negative", "nan", "text"]),
    "callbacks": st.sampled_from(["none", "empty", "strings", "bare_callback"]),
    "validation_data": st.sampled_from(["none", "pair", "triple", "one", "wrong_width", "text"]),
    "checkpoint_dir": st.sampled_from(["none", "folder", 3]),
    "resume": st.sampled_from([False, True, "yes"]),
    "y": st.sampled_from(["regression", "binary", "short", "nan", "text", "none", "2d"]),
    "x": st.sampled_from(["array", "frame", "nan", "3d", "empty", "text_frame", "list"]),
}
VALID = {  # a valid choice for every argument, used for the small share of cases that train
    "epochs": 1, "batch_size": 4, "learning_rate": 0.01, "early_stopping": True,
    "valid_fraction": None, "task": None, "verbose": 0, "seed": 0, "engine": "auto",
    "on_interrupt": "return", "optimizer": None, "loss": None, "class_weight": None,
    "sample_weight": "none", "callbacks": "none", "validation_data": "none",
    "checkpoint_dir": "none", "resume": False, "y": "regression", "x": "array",
}


def _is_valid_choice(name, value) -> bool:
    """Whether ``value`` is the VALID choice for ``name`` (``True`` is not ``1`` here)."""
    return type(value) is type(VALID[name]) and value == VALID[name]


def _materialize(name, value, tmp_folder):
    if name == "x":
        return {
            "array": _X, "frame": pd.DataFrame(_X, columns=["a", "b"]),
            "nan": np.where(_X > 1, np.nan, _X), "3d": _X.reshape(ROWS, 2, 1),
            "empty": _X[:0], "text_frame": pd.DataFrame({"a": ["u"] * ROWS, "b": _X[:, 1]}),
            "list": _X.tolist(),
        }[value]
    if name == "y":
        return {
            "regression": _Y_REGRESSION, "binary": _Y_BINARY, "short": _Y_REGRESSION[:3],
            "nan": np.where(_Y_REGRESSION > 0, np.nan, 0.0), "text": np.array(["a"] * ROWS),
            "none": None, "2d": np.stack([_Y_REGRESSION] * 2, axis=1),
        }[value]
    if name == "sample_weight":
        return {"none": None, "ones": np.ones(ROWS), "short": np.ones(3),
                "negative": -np.ones(ROWS), "nan": np.full(ROWS, np.nan), "text": "w"}[value]
    if name == "callbacks":
        return {"none": None, "empty": [], "strings": ["not a callback"],
                "bare_callback": keras.callbacks.Callback()}[value]
    if name == "validation_data":
        return {"none": None, "pair": (_X[:4], _Y_REGRESSION[:4]),
                "triple": (_X[:4], _Y_REGRESSION[:4], np.ones(4)), "one": (_X[:4],),
                "wrong_width": (_X[:4, :1], _Y_REGRESSION[:4]), "text": "valid"}[value]
    if name == "checkpoint_dir":
        return {"none": None, "folder": str(tmp_folder)}.get(value, value)
    return value


@st.composite
def train_arguments(draw):
    """Mostly mixed valid/invalid arguments; about one case in twelve fully valid (it trains)."""
    chosen = {}
    all_valid = draw(st.integers(0, 11)) == 0
    for name, strategy in TRAIN_VALUES.items():
        if all_valid:
            value = VALID[name]
            if name in ("valid_fraction", "early_stopping", "seed", "verbose", "y", "x"):
                value = draw(strategy) if draw(st.booleans()) else value
        else:
            value = draw(strategy) if draw(st.integers(0, 3)) == 0 else VALID[name]
        chosen[name] = value
    return chosen


@budget(1.5)
@given(arguments=train_arguments())
def test_train_trains_or_refuses_clearly(arguments, tmp_path_factory):
    folder = tmp_path_factory.mktemp("fuzz-checkpoints")
    values = {name: _materialize(name, value, folder) for name, value in arguments.items()}
    x, y = values.pop("x"), values.pop("y")
    model = linear_unit(2, seed=0)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # divergence or interruption warnings are allowed
            result = train(model, x, y, **values)
    except Exception as error:  # noqa: BLE001 - the property is about which exceptions

        def again(named):
            mended = {name: _materialize(name, VALID[name] if name in named else value, folder)
                      for name, value in arguments.items()}
            return _raised(lambda: train(linear_unit(2, seed=0), mended.pop("x"),
                                         mended.pop("y"), **mended))

        suspects = [name for name, value in arguments.items()
                    if not _is_valid_choice(name, value)]
        _documented(error, suspects, again)
        return
    event("trained")
    assert 1 <= result.epochs_run <= values["epochs"]
    assert len(result.history) == result.epochs_run
    assert "loss" in result.history.columns


# --------------------------------------------------------------------------------------------
# Model files: a valid file with random damage loads, or raises ModelFileError naming it


@pytest.fixture(scope="module")
def model_bytes(tmp_path_factory):
    path = tmp_path_factory.mktemp("fuzz-model") / "model.keras"
    dense_stack(2, hidden_units=(3,), seed=0).save(path)
    return path.read_bytes()


@st.composite
def damage(draw, size):
    kind = draw(st.sampled_from(["flip", "truncate", "overwrite", "insert", "json"]))
    if kind == "truncate":
        return kind, draw(st.integers(0, size - 1)), b""
    position = draw(st.integers(0, size - 1))
    return kind, position, draw(st.binary(min_size=1, max_size=64))


def _damaged(original: bytes, kind, position, payload) -> bytes:
    if kind == "truncate":
        return original[:position]
    if kind == "insert":
        return original[:position] + payload + original[position:]
    if kind == "json":  # a well-formed archive whose config.json is damaged
        with zipfile.ZipFile(io.BytesIO(original)) as archive:
            members = {name: archive.read(name) for name in archive.namelist()}
        config = members["config.json"]
        cut = position % max(1, len(config))
        members["config.json"] = config[:cut] + payload + config[cut + len(payload):]
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w") as archive:
            for name, content in members.items():
                archive.writestr(name, content)
        return buffer.getvalue()
    data = bytearray(original)
    for offset, byte in enumerate(payload):
        if position + offset < len(data):
            data[position + offset] = (data[position + offset] ^ byte) if kind == "flip" else byte
    return bytes(data)


@budget(1.5)
@given(data=st.data())
def test_damaged_model_files_load_or_raise_model_file_error(model_bytes, data, tmp_path_factory):
    kind, position, payload = data.draw(damage(len(model_bytes)))
    damaged = _damaged(model_bytes, kind, position, payload)
    assume(damaged != model_bytes)
    path = tmp_path_factory.mktemp("damaged") / "damaged.keras"
    path.write_bytes(damaged)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = dlstructured.load_model(path)
    except ModelFileError as error:
        event(f"refused: {kind}")
        assert "damaged.keras" in str(error)
        return
    event(f"loaded despite {kind}")
    # Damage that Keras tolerates (a name, a number in the configuration) still gives a model.
    outputs = model.predict(np.zeros((2, 2), "float32"), verbose=0)
    assert outputs.shape[0] == 2


# --------------------------------------------------------------------------------------------
# Prepared data, prediction on raw rows, the command line

# A valid choice for each drawn argument of prepare(); the table itself is always a suspect.
VALID_PREPARE = {"target": "target", "task": None, "valid_fraction": 0.3, "split": "random"}

cells = st.one_of(st.none(), st.floats(allow_nan=True, allow_infinity=True, width=32),
                  st.integers(-5, 5), st.sampled_from(["a", "b", "", "c d", "1.5"]))


@st.composite
def frames(draw):
    rows = draw(st.integers(0, 12))
    columns = draw(st.lists(st.sampled_from(["x", "y", "z", "target", "group"]), min_size=1,
                            max_size=4, unique=True))
    return pd.DataFrame({c: draw(st.lists(cells, min_size=rows, max_size=rows)) for c in columns})


@budget(1.0)
@given(frame=frames(), target=st.one_of(st.sampled_from(["target", "x", "missing"]), JUNK),
       task=st.sampled_from([None, "regression", "binary", "multiclass", "ranking"]),
       valid_fraction=st.sampled_from([0.0, 0.3, 0.99, 1.0, -0.1, "0.3"]),
       split=st.sampled_from(["random", "stratified", "group", "time", "nope"]))
def test_prepare_prepares_or_refuses_clearly(frame, target, task, valid_fraction, split):
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            data = dlstructured.prepare(frame, target, task=task, valid_fraction=valid_fraction,
                                        split=split, seed=0)
    except Exception as error:  # noqa: BLE001
        chosen = {"target": target, "task": task, "valid_fraction": valid_fraction,
                  "split": split}

        def again(named):
            mended = {name: VALID_PREPARE[name] if name in named else value
                      for name, value in chosen.items()}
            if mended == chosen:  # only the table or its columns are blamed: no stand-in
                return None
            target_, rest = mended.pop("target"), mended
            return _raised(lambda: dlstructured.prepare(frame, target_, seed=0, **rest))

        suspects = {"data", *frame.columns}
        suspects.update(name for name, value in chosen.items()
                        if type(value) is not type(VALID_PREPARE[name])
                        or value != VALID_PREPARE[name])
        if split == "group":
            suspects.add("group_by")  # the group split needs it, and the case leaves it out
        _documented(error, sorted(suspects, key=str), again)
        return
    event("prepared")
    assert data.x_train.dtype == np.float32 and data.x_train.shape[1] == data.num_features
    assert np.isfinite(data.x_train).all()


@pytest.fixture(scope="module")
def tabular_model():
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"size": rng.uniform(0, 10, 40), "colour": rng.choice(["r", "g"], 40),
                          "target": rng.uniform(0, 1, 40)})
    data = dlstructured.prepare(frame, "target", seed=0)
    return dlstructured.dense_stack(data, hidden_units=(4,), seed=0)


@budget(1.0)
@given(frame=frames(), as_kind=st.sampled_from(["frame", "dict", "records", "array", "text"]))
def test_prediction_on_raw_rows_predicts_or_refuses_clearly(tabular_model, frame, as_kind):
    frame = frame.rename(columns={"x": "size", "y": "colour"})
    rows = {"frame": frame, "dict": frame.iloc[0].to_dict() if len(frame) else {},
            "records": frame.to_dict("records"), "array": frame.to_numpy(), "text": "rows"}[as_kind]
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            predictions = tabular_model.predict(rows)
    except Exception as error:  # noqa: BLE001
        # The rows (argument x) or one of the model's columns, or one the rows bring.
        _documented(error, sorted({"x", "size", "colour", *frame.columns}, key=str))
        return
    event("predicted")
    assert all(math.isfinite(float(value)) for value in np.ravel(predictions))


@budget(0.5)
@given(argv=st.lists(st.sampled_from(["train", "predict", "evaluate", "--epochs", "0", "-1",
                                      "abc", "1e9", "--batch-size", "--seed", "--hidden", "4,x",
                                      "--dropout", "1.5", "--help-me", "absent.csv", "--target",
                                      "--task", "ranking", "--valid-fraction", "--backend",
                                      "torch", "--quiet"]), max_size=7))
def test_command_line_options_exit_cleanly(argv):
    """Bad options and missing files end with status 2 and one line, never a traceback."""
    from dlstructured import cli

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = cli.main(argv)
        except SystemExit as exit_:
            code = exit_.code
    event(f"exit {code}")
    assert code in (0, 2), f"exit status {code!r} for {argv}: {err.getvalue()[-500:]}"
    assert "Traceback" not in err.getvalue()
