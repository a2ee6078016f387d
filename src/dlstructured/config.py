"""What a training run is made of: one flat, frozen, validated ``RunConfig``.

The command line, ``dlstructured.fit_table`` and the files a run writes (``run.json``) all
speak this one vocabulary: each command-line flag is a field of the same name with dashes as
underscores (``--hidden-units`` is ``hidden_units``). A config checks itself when it is made, so a
bad value fails before any data is read, with the message the rest of the library gives
(the argument, what was expected, ``Received: ...``).

``to_dict`` writes plain JSON values and a ``config_version``; ``from_dict`` reads every earlier
version, filling the keys an older version did not have with the values that version used, so a
run recorded by an older release means what it meant then.
"""

from __future__ import annotations

import dataclasses
import json
import numbers
from collections.abc import Mapping, Sequence
from typing import Any

from dlstructured._checks import (
    check_bool,
    check_choice,
    check_float,
    check_int,
    check_kinds,
    check_units_sequence,
)
from dlstructured.tasks import TASK_NAMES

CONFIG_VERSION = 3

TASK_CHOICES = TASK_NAMES
MODEL_CHOICES = ("auto", "dense", "linear")
KIND_CHOICES = ("numeric", "categorical", "datetime", "ignore")

# Widths of the hidden layers when `hidden_units` is None, per model.
DEFAULT_HIDDEN_UNITS = {"auto": (256, 256, 256), "dense": (512, 512, 512), "linear": ()}

# The command-line names of 0.1.0's run.json ("options"), and the fields they became.
_LEGACY_NAMES = {"hidden": "hidden_units", "dropout": "dropout_rate"}

# What each earlier version meant by a key it did not record. Version 1 is 0.1.0's run.json
# options: its runs were read with pandas' defaults and had no per-column options.
# Versions 1 and 2 knew only the course's models, whose fields all had values.
_COURSE_VALUES = {"model": "dense", "members": None}
_VERSION_DEFAULTS: dict[int, dict[str, Any]] = {
    1: {"metrics": None, "kinds": {}, "drop": (), "positive_label": None, "sep": None,
        "encoding": None, **_COURSE_VALUES},
    2: _COURSE_VALUES,
}


def _received(name: str, value: Any) -> str:
    return f"Received: {name}={value!r}"


def _check_column(name: str, value: Any) -> Any:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (str, numbers.Integral)):
        raise TypeError(f"`{name}` must be a column name (a string). {_received(name, value)}")
    return value


def _check_optional_text(name: str, value: Any) -> str | None:
    if value is not None and (not isinstance(value, str) or not value):
        raise TypeError(f"`{name}` must be a non-empty string or None. {_received(name, value)}")
    return value


def _check_metrics(value: Any) -> tuple[str, ...] | None:
    if value is None:
        return None
    if isinstance(value, str) or not isinstance(value, Sequence):
        raise TypeError(
            "`metrics` must be a list of Keras metric names such as ['mae'], [] for none, or "
            f"None for the task's. {_received('metrics', value)}"
        )
    for item in value:
        if not isinstance(item, str) or not item:
            raise TypeError(
                f"`metrics` must hold metric names (strings); found {item!r}. "
                f"{_received('metrics', value)}"
            )
    return tuple(value)


def _check_kinds(value: Any) -> dict[Any, str]:
    kinds = check_kinds(value, KIND_CHOICES)
    for column in kinds:
        _check_column("kinds", column)
    return kinds


def _check_drop(value: Any) -> tuple[Any, ...]:
    if value is None:
        return ()
    if isinstance(value, str) or not isinstance(value, Sequence):
        raise TypeError(
            f"`drop` must be a list of column names, such as ['id']. {_received('drop', value)}"
        )
    for column in value:
        _check_column("drop", column)
    return tuple(value)


@dataclasses.dataclass(frozen=True)
class RunConfig:
    """Everything a training run is made of, checked when it is made.

    The defaults are the command line's. Each field is the command-line flag of the same name
    (``hidden_units`` is ``--hidden-units``).

    Args:
        task: ``"regression"``, ``"binary"``, ``"multiclass"``, or ``None`` to infer it from the
            target. Defaults to ``None``.
        model: ``"auto"`` (the strong default: an ensemble of MLPs trained as one network,
            with its own preprocessing and training recipe), ``"dense"`` (a stack of hidden
            layers: the course's recipe, exactly as dlstructured 0.1.0 ran it) or ``"linear"``
            (no hidden layer). Defaults to ``"auto"``.
        hidden_units: Widths of the hidden layers, or ``None`` for the model's own: 256, 256,
            256 for ``"auto"``, 512, 512, 512 for ``"dense"``; a linear model has none.
            Defaults to ``None``.
        activation: Keras activation of the hidden layers, or ``None`` for the model's own
            (``"selu"`` for ``"auto"``, ``"relu"`` for the course's). Defaults to ``None``.
        dropout_rate: Dropout after each hidden layer, in [0, 1). Defaults to ``0.0``.
        batch_norm: Batch-normalize each hidden layer (course models). Defaults to ``False``.
        input_batch_norm: Batch-normalize the inputs first (course models). Defaults to
            ``False``.
        members: Ensemble members of ``"auto"``, or ``None`` for its 8. Defaults to ``None``.
        epochs: Most epochs, or ``None`` for the model's own: 200 for the course's; for
            ``"auto"`` a budget of about 1,200 gradient steps (16 to 128 epochs). Defaults to
            ``None``.
        batch_size: Rows per gradient step, or ``None`` for the model's own: 256 for the
            course's; 256, 512 or 1,024 by table size for ``"auto"``. Defaults to ``None``.
        learning_rate: Adam's (peak) learning rate, in (0, 10], or ``None`` for the model's
            own: 0.001 for the course's; 0.06 (regression) or 0.04 (classification) for
            ``"auto"``, whose layers scale their weights down. Defaults to ``None``.
        patience: Epochs without improvement of the validation loss before stopping; ``0``
            turns early stopping off; ``None`` for the model's own: 20 for the course's; for
            ``"auto"`` the whole budget, keeping the best epoch. Defaults to ``None``.
        metrics: Keras metric names to report besides the loss, ``()`` for none, or ``None``
            for the task's. Defaults to ``None``.
        valid_fraction: Share of rows held out for validation, in [0, 1), or ``None`` for the
            model's own: 0.3 for the course's, 0.2 for ``"auto"`` (which then refits on every
            row). Defaults to ``None``.
        stratify: Keep the class proportions in both parts. Defaults to ``False``.
        group_by: Column whose groups must not straddle the split. Defaults to ``None``.
        seed: Seed of the split, the weights and the shuffling. Defaults to ``0``.
        kinds: Kind per column, overriding the inferred one (``"numeric"``,
            ``"categorical"``, ``"datetime"`` or ``"ignore"``). Defaults to none.
        drop: Columns to leave out. Defaults to none.
        positive_label: For a binary target, the label that means 1. Defaults to ``None``.
        sep: Field separator of a CSV file, or ``None`` to detect it. Defaults to ``None``.
        encoding: Text encoding of a CSV file, or ``None`` for UTF-8. Defaults to ``None``.

    Raises:
        TypeError: If a field has the wrong type.
        ValueError: If a field has a bad value, or two fields conflict.

    Example:

    >>> from dlstructured import RunConfig
    >>> config = RunConfig(model="dense", hidden_units=(64, 64), epochs=50)
    >>> config.resolved_hidden_units, config.patience
    ((64, 64), None)
    >>> RunConfig.from_dict(config.to_dict()) == config
    True
    """

    task: str | None = None
    model: str = "auto"
    hidden_units: tuple[int, ...] | None = None
    activation: str | None = None
    dropout_rate: float = 0.0
    batch_norm: bool = False
    input_batch_norm: bool = False
    members: int | None = None
    epochs: int | None = None
    batch_size: int | None = None
    learning_rate: float | None = None
    patience: int | None = None
    metrics: tuple[str, ...] | None = None
    valid_fraction: float | None = None
    stratify: bool = False
    group_by: Any = None
    seed: int = 0
    kinds: Mapping[Any, str] = dataclasses.field(default_factory=dict)
    drop: tuple[Any, ...] = ()
    positive_label: Any = None
    sep: str | None = None
    encoding: str | None = None

    def __post_init__(self) -> None:
        def put(name: str, value: Any) -> None:
            object.__setattr__(self, name, value)

        if self.task is not None:
            check_choice("task", self.task, TASK_CHOICES)
        check_choice("model", self.model, MODEL_CHOICES)
        if self.hidden_units is not None:
            put("hidden_units", check_units_sequence("hidden_units", self.hidden_units))
            if self.model == "linear" and self.hidden_units:
                raise ValueError(
                    "`hidden_units` does not apply to model='linear', which has no hidden "
                    "layer; choose model='dense' for hidden layers. "
                    f"{_received('hidden_units', self.hidden_units)}"
                )
        if self.activation is not None and (not isinstance(self.activation, str)
                                            or not self.activation):
            raise TypeError(
                "`activation` must be the name of a Keras activation, such as 'relu'. "
                f"{_received('activation', self.activation)}"
            )
        put("dropout_rate", check_float(
            "dropout_rate", self.dropout_rate, minimum=0.0, maximum=1.0, max_inclusive=False
        ))
        check_bool("batch_norm", self.batch_norm)
        check_bool("input_batch_norm", self.input_batch_norm)
        if self.model == "linear":
            for name, unused in (("dropout_rate", self.dropout_rate > 0),
                                 ("batch_norm", self.batch_norm)):
                if unused:
                    raise ValueError(
                        f"`{name}` does not apply to model='linear', which has no hidden layer. "
                        f"{_received(name, getattr(self, name))}"
                    )
        if self.model == "auto":
            for name in ("batch_norm", "input_batch_norm"):
                if getattr(self, name):
                    raise ValueError(
                        f"`{name}` does not apply to model='auto', whose layers are scaled "
                        "without batch normalization; choose model='dense' for it. "
                        f"{_received(name, True)}"
                    )
        elif self.members is not None:
            raise ValueError(
                f"`members` applies to model='auto' only (an ensemble); model={self.model!r} is "
                f"one network. {_received('members', self.members)}"
            )
        checks = {
            "members": lambda v: check_int("members", v, minimum=1),
            "epochs": lambda v: check_int("epochs", v, minimum=1),
            "batch_size": lambda v: check_int("batch_size", v, minimum=1),
            "learning_rate": lambda v: check_float(
                "learning_rate", v, minimum=0.0, maximum=10.0, min_inclusive=False),
            "patience": lambda v: check_int("patience", v, minimum=0),
            "valid_fraction": lambda v: check_float(
                "valid_fraction", v, minimum=0.0, maximum=1.0, max_inclusive=False),
        }
        for name, check in checks.items():
            if getattr(self, name) is not None:
                put(name, check(getattr(self, name)))
        put("metrics", _check_metrics(self.metrics))
        check_bool("stratify", self.stratify)
        _check_column("group_by", self.group_by)
        if self.stratify and self.group_by is not None:
            raise ValueError(
                "`stratify` and `group_by` cannot be combined: a grouped split keeps whole "
                f"groups together. Choose one. {_received('group_by', self.group_by)}"
            )
        put("seed", check_int("seed", self.seed, minimum=0))
        put("kinds", _check_kinds(self.kinds))
        put("drop", _check_drop(self.drop))
        put("sep", _check_optional_text("sep", self.sep))
        put("encoding", _check_optional_text("encoding", self.encoding))

    @property
    def resolved_hidden_units(self) -> tuple[int, ...]:
        """The hidden layer widths this run builds: ``hidden_units`` or the model's own."""
        if self.hidden_units is not None:
            return self.hidden_units
        return DEFAULT_HIDDEN_UNITS[self.model]

    @property
    def split(self) -> str:
        """The split ``prepare`` makes: ``"grouped"``, ``"stratified"`` or ``"random"``."""
        if self.group_by is not None:
            return "grouped"
        return "stratified" if self.stratify else "random"

    def replace(self, **changes: Any) -> RunConfig:
        """A copy with ``changes`` applied, checked like a new config."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """The config as plain JSON values, with its ``config_version``."""
        record: dict[str, Any] = {"config_version": CONFIG_VERSION}
        for item in dataclasses.fields(self):
            value = getattr(self, item.name)
            if isinstance(value, Mapping):
                value = dict(value)
            elif isinstance(value, tuple):
                value = list(value)
            record[item.name] = value
        return record

    @classmethod
    def from_dict(cls, record: Mapping[str, Any]) -> RunConfig:
        """Read a config written by ``to_dict`` of this or any earlier version.

        A record without ``config_version`` is 0.1.0's run.json ``options``, under the command
        line's names of then (``hidden``, ``dropout``); keys an older version did not record
        take the values that version used.

        Raises:
            TypeError: If ``record`` is not a mapping.
            ValueError: If it names a key no version had, is of a newer version, or holds a bad
                value.
        """
        if not isinstance(record, Mapping):
            raise TypeError(f"`record` must be a dict. {_received('record', record)}")
        values = dict(record)
        version = values.pop("config_version", 1)
        if isinstance(version, bool) or not isinstance(version, int) or version < 1:
            raise ValueError(f"`config_version` must be a whole number >= 1. "
                             f"{_received('config_version', version)}")
        if version > CONFIG_VERSION:
            raise ValueError(
                f"this config was written by a newer dlstructured (config version {version}; "
                f"this one reads up to {CONFIG_VERSION}); upgrade dlstructured to read it"
            )
        if version == 1:
            values = {_LEGACY_NAMES.get(key, key): value for key, value in values.items()}
        for key, value in _VERSION_DEFAULTS.get(version, {}).items():
            values.setdefault(key, value)
        names = {item.name for item in dataclasses.fields(cls)}
        unknown = sorted(set(values) - names)
        if unknown:
            raise ValueError(
                f"unknown run option(s) {', '.join(map(repr, unknown))}; known ones: "
                f"{', '.join(sorted(names))}"
            )
        for key in ("hidden_units", "drop", "metrics"):
            if isinstance(values.get(key), list):
                values[key] = tuple(values[key])
        if version == 1 and values.get("model") == "linear":
            # 0.1.0 recorded the defaults of options a linear model does not use.
            values.update(hidden_units=None, dropout_rate=0.0, batch_norm=False)
        return cls(**values)

    def __hash__(self) -> int:
        return hash(json.dumps(self.to_dict(), sort_keys=True, default=repr))


def _names_from_text(text: str) -> tuple[str, ...]:
    names = tuple(part.strip() for part in text.split(","))
    if not all(names):
        raise ValueError("expected comma-separated names such as a,b")
    return names


def _kinds_from_text(text: str) -> dict[str, str]:
    kinds = {}
    for part in text.split(","):
        column, equals, kind = part.partition("=")
        if not equals or not column.strip():
            raise ValueError(f"expected COL=KIND[,COL=KIND...] with KIND one of "
                             f"{', '.join(KIND_CHOICES)}")
        kinds[column.strip()] = kind.strip().lower()
    return kinds


# How a field is written as text, where it is not a plain int, float or string.
_FROM_TEXT: dict[str, Any] = {
    "hidden_units": lambda text: tuple(int(part) for part in _names_from_text(text)),
    "metrics": lambda text: () if text.strip().lower() == "none" else _names_from_text(text),
    "kinds": _kinds_from_text,
    "drop": _names_from_text,
}


def field_from_text(name: str, text: str) -> Any:
    """Read the value of the ``RunConfig`` field ``name`` from text, as a flag writes it.

    Lists are comma-separated (``hidden_units="64,64"``), ``kinds`` is ``COL=KIND[,...]`` and
    ``metrics="none"`` means no metrics. The value is checked as ``RunConfig`` checks the field.

    Args:
        name: A ``RunConfig`` field that takes a value (not a switch such as ``batch_norm``).
        text: The value as text.

    Returns:
        The value, of the field's type.

    Raises:
        ValueError: If the text cannot be read, or the value is bad for the field.
        TypeError: If the value has the wrong type for the field.

    Example:

    >>> from dlstructured.config import field_from_text
    >>> field_from_text("hidden_units", "64, 32"), field_from_text("learning_rate", "3e-4")
    ((64, 32), 0.0003)
    """
    types = {item.name: str(item.type) for item in dataclasses.fields(RunConfig)}
    check_choice("name", name, list(types))
    plain = {"int": int, "float": float}.get(types[name].split(" ")[0], str)
    parse = _FROM_TEXT.get(name) or plain
    value = parse(text)
    RunConfig(**{name: value})
    return value
