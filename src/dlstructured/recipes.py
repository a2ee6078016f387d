"""What each ``RunConfig.model`` means: the preprocessing, network and training it runs.

A ``RunConfig`` leaves ``None`` in the fields whose value depends on the model; ``resolve``
fills them in once the table's size and task are known, so the rest of a run reads one
concrete config.

- ``"dense"`` and ``"linear"`` are the course's recipe, exactly as dlstructured 0.1.0 ran it:
  min-max scaled features and target, ReLU 512x3 (or no hidden layer), Adam with a constant
  rate of 0.001, the task's loss (mean absolute error for regression), at most 200 epochs with
  early stopping after 20 without improvement on a 30% validation split.
- ``"auto"`` is the strong default (see the docs page "Beyond the course: a strong default"):
  robust scaling with smooth clipping and a standardised target clipped to the training range;
  ``dlstructured.ensemble_mlp`` (8 members sharing SELU 256x3 layers); Adam with
  ``beta_2=0.95`` and a per-step cosine schedule with warm restarts; label smoothing 0.1 for
  classification; a fixed budget of about ``TARGET_STEPS`` steps keeping the epoch of the best
  validation loss on a 20% split (stopping sooner after a whole cycle of the schedule that
  improved nothing), then a refit on every row for that many epochs.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from dlstructured.config import RunConfig

# The course's recipe (dlstructured 0.1.0's command-line defaults).
COURSE = {"activation": "relu", "epochs": 200, "batch_size": 256, "learning_rate": 0.001,
          "patience": 20, "valid_fraction": 0.3}

# The strong default. Learning rates are for NTK-parametrised layers (RealMLP's scale).
AUTO_UNITS = (256, 256, 256)
AUTO_MEMBERS = 8
AUTO_ACTIVATION = "selu"
AUTO_VALID_FRACTION = 0.2
AUTO_LEARNING_RATE = {"regression": 0.06, "binary": 0.04, "multiclass": 0.04}
AUTO_LABEL_SMOOTHING = 0.1
AUTO_ADAM_BETA_2 = 0.95
TARGET_STEPS = 1200  # gradient steps of the epoch budget
MIN_EPOCHS, MAX_EPOCHS = 16, 128
REVIEW_MIN_EPOCHS = 48  # shorter budgets run whole (see `resolve`)
SMALL_TABLE = 16  # fewer training rows than this get a notice
# (fewest training rows, batch size): larger tables take larger batches.
AUTO_BATCH_SIZES = ((0, 256), (8_000, 512), (40_000, 1024))


@dataclasses.dataclass(frozen=True)
class Recipe:
    """A run's concrete settings: the config with every model-dependent field filled in, and
    the training options beyond it.

    Attributes:
        config: The ``RunConfig`` with no ``None`` left in a model-dependent field.
        prepare: Keyword arguments of ``dlstructured.prepare`` beyond the config's.
        train: Keyword arguments of ``dlstructured.train`` beyond the config's.
        refit: Whether a second fit on every row follows the one that chose the epochs.
        min_delta: The smallest change of the validation loss that counts as an improvement.
        review_epochs: Epochs at which the fit that chooses the epochs also stops when nothing
            improved since the one before (``EarlyStopping.review_epochs``).
        notices: What was adapted to a small table, one sentence each.
    """

    config: RunConfig
    prepare: dict[str, Any]
    train: dict[str, Any]
    refit: bool
    min_delta: float = 0.001
    review_epochs: tuple[int, ...] = ()
    notices: tuple[str, ...] = ()


def prepare_options(config: RunConfig) -> dict[str, Any]:
    """The options of ``prepare`` a model needs, known before the data is read.

    Example:

    >>> from dlstructured import RunConfig
    >>> prepare_options(RunConfig(model="dense"))
    {'valid_fraction': 0.3}
    >>> sorted(prepare_options(RunConfig()))
    ['clip_target', 'scaling', 'target_scaling', 'valid_fraction']
    """
    if config.model != "auto":
        return {"valid_fraction": _given(config.valid_fraction, COURSE["valid_fraction"])}
    return {"valid_fraction": _given(config.valid_fraction, AUTO_VALID_FRACTION),
            "scaling": "robust", "target_scaling": "standard", "clip_target": True}


def resolve(config: RunConfig, *, task: str, train_rows: int, valid_rows: int) -> Recipe:
    """Fill in the model-dependent fields of ``config`` for a table of this task and size.

    Args:
        config: The run's config.
        task: ``"regression"``, ``"binary"`` or ``"multiclass"``.
        train_rows: Rows of the training part.
        valid_rows: Rows of the validation part.

    Returns:
        The ``Recipe``.

    Example:

    >>> from dlstructured import RunConfig
    >>> recipe = resolve(RunConfig(), task="regression", train_rows=1000, valid_rows=250)
    >>> recipe.config.epochs, recipe.config.batch_size, recipe.config.learning_rate
    (128, 256, 0.06)
    >>> resolve(RunConfig(model="dense"), task="binary", train_rows=10,
    ...         valid_rows=5).config.epochs
    200
    """
    changes = {"valid_fraction": prepare_options(config)["valid_fraction"]}
    if config.model != "auto":
        for name in ("activation", "epochs", "batch_size", "learning_rate", "patience"):
            changes[name] = _given(getattr(config, name), COURSE[name])
        return Recipe(config.replace(**changes), {}, {}, refit=False)

    notices = []
    batch_size = config.batch_size
    if batch_size is None:
        batch_size = [size for least, size in AUTO_BATCH_SIZES if train_rows >= least][-1]
    if train_rows < SMALL_TABLE:
        notices.append(f"the training part has only {train_rows} rows: each epoch is one "
                       "batch of them all, and the model will be rough")
    steps_per_epoch = -(-train_rows // max(1, min(batch_size, train_rows)))
    epochs = config.epochs
    if epochs is None:
        epochs = min(MAX_EPOCHS, max(MIN_EPOCHS, round(TARGET_STEPS / steps_per_epoch)))
    changes.update(
        activation=_given(config.activation, AUTO_ACTIVATION),
        batch_size=batch_size,
        epochs=epochs,
        learning_rate=_given(config.learning_rate, AUTO_LEARNING_RATE[task]),
        # By default the whole budget runs (patience = epochs) and the best epoch is kept.
        patience=_given(config.patience, epochs),
        hidden_units=_given(config.hidden_units, AUTO_UNITS),
        members=_given(config.members, AUTO_MEMBERS),
    )
    train = {"learning_rate_schedule": "log_cosine", "adam_beta_2": AUTO_ADAM_BETA_2}
    if task != "regression":
        train["label_smoothing"] = AUTO_LABEL_SMOOTHING
    refit = valid_rows > 0
    if valid_rows == 0 and config.valid_fraction != 0:
        notices.append("the table is too small to hold rows out for validation, so the last "
                       "epoch is kept")
    # Unless a patience is given, a cycle of the schedule that improves nothing ends the fit,
    # on budgets as long as those it was measured on (training rows only,
    # benchmarks/stopping_study.py); short budgets have short cycles, and on a 16-epoch one
    # it stopped at epoch 7 of a fit whose best epoch was the 16th.
    from dlstructured.models.ensemble_layers import cycle_ends

    reviews = (cycle_ends(epochs)[:-1]
               if config.patience is None and epochs >= REVIEW_MIN_EPOCHS else ())
    return Recipe(config.replace(**changes), prepare_options(config), train, refit,
                  min_delta=0.0, review_epochs=reviews, notices=tuple(notices))


def _given(value: Any, default: Any) -> Any:
    return default if value is None else value
