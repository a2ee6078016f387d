"""scikit-learn estimators: ``TabularRegressor`` and ``TabularClassifier``.

Each estimator trains the network a [`RunConfig`][dlstructured.config.RunConfig] describes, on a
raw DataFrame (text, categories, dates and missing values are welcome) or a numeric array
(whose columns are named ``x0``, ``x1`` ...). The library's preprocessing runs inside ``fit``,
fitted on the training rows only, and early stopping watches an internal split of those rows
(``valid_fraction``), so the estimators fit in a ``Pipeline``, ``cross_val_score`` or
``GridSearchCV`` without leaking a fold's held-out rows.

Every ``RunConfig`` field is a constructor parameter of the same name and default, except
``task`` (the class says it) and ``seed``, which is ``random_state``. A fitted estimator pickles
with its Keras model as the bytes of its ``.keras`` file.

Importing this module does not import Keras; fitting does.
"""

from __future__ import annotations

import numbers
import os
import tempfile
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
from sklearn.utils import check_random_state
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import (
    _check_sample_weight,
    check_array,
    check_consistent_length,
    check_is_fitted,
    column_or_1d,
    validate_data,
)

from dlstructured.config import RunConfig

__all__ = ["TabularClassifier", "TabularRegressor"]

# Constructor parameters that are the estimator's own, not RunConfig fields.
_OWN_PARAMS = ("random_state", "class_weight", "verbose")
_MAX_SEED = 2**31 - 1


def run_config_of(params: dict[str, Any], task: str) -> RunConfig:
    """The ``RunConfig`` that an estimator's ``get_params()`` describes, for ``task``.

    Every parameter that is not one of the estimator's own (``random_state``,
    ``class_weight``, ``verbose``) is the ``RunConfig`` field of the same name, so a field
    added to ``RunConfig`` needs only its parameter in the estimators' ``__init__``.

    Raises:
        TypeError: If ``random_state`` is not an integer, a ``RandomState`` or ``None``.
        ValueError: If ``random_state`` is negative, or a field has a bad value (the message
            is ``RunConfig``'s, naming the parameter).

    Example:

    >>> from dlstructured.sklearn import TabularRegressor, run_config_of
    >>> config = run_config_of(TabularRegressor(epochs=5, random_state=3).get_params(),
    ...                        "regression")
    >>> config.task, config.epochs, config.seed
    ('regression', 5, 3)
    """
    values = {name: value for name, value in params.items() if name not in _OWN_PARAMS}
    return RunConfig(task=task, seed=_seed(params.get("random_state")), **values)


def _seed(random_state: Any) -> int:
    if isinstance(random_state, numbers.Integral) and not isinstance(random_state, bool):
        if random_state < 0:
            raise ValueError("`random_state` must be an integer >= 0, a numpy RandomState or "
                             f"None. Received: random_state={random_state!r}")
        return int(random_state) % (_MAX_SEED + 1)
    if random_state is None or isinstance(random_state, np.random.RandomState):
        return int(check_random_state(random_state).randint(0, _MAX_SEED))
    raise TypeError("`random_state` must be an integer >= 0, a numpy RandomState or None. "
                    f"Received: random_state={random_state!r}")


def _unused_name(columns: Any, name: str = "target") -> str:
    taken = {str(column) for column in columns}
    while name in taken:
        name = f"_{name}"
    return name


class _TabularEstimator(BaseEstimator):
    """What both estimators share: input checks, the frame, training, pickling."""

    _task_kind = "regression"

    # -- input --------------------------------------------------------------------------------

    def _frame(self, X: Any, *, reset: bool) -> pd.DataFrame:
        """``X`` as a DataFrame with the fitted column names, checked as scikit-learn checks."""
        if isinstance(X, pd.DataFrame):
            validate_data(self, X, reset=reset, skip_check_array=True)
            if X.shape[0] == 0 or X.shape[1] == 0:
                raise ValueError(f"`X` must hold at least one row and one column. Received: X "
                                 f"of shape {X.shape}")
            frame = X.reset_index(drop=True)
            if not all(isinstance(column, str) for column in frame.columns):
                frame.columns = [f"x{i}" for i in range(frame.shape[1])]
            return frame
        values = validate_data(self, X, reset=reset, dtype=None, ensure_all_finite="allow-nan")
        names = getattr(self, "feature_names_in_", None)
        if names is None:
            names = [f"x{i}" for i in range(values.shape[1])]
        frame = pd.DataFrame(values, columns=list(names))
        if values.dtype == object:
            frame = frame.infer_objects()  # numbers held as objects are numbers
        return frame

    def _targets(self, y: Any) -> np.ndarray:
        raise NotImplementedError

    # -- training -----------------------------------------------------------------------------

    def _fit(self, X: Any, y: Any, sample_weight: Any, task: str, class_weight: Any = None):
        from dlstructured.run import fit_frame

        if y is None:
            raise ValueError(f"{type(self).__name__} requires y to be passed, but the target y "
                             "is None. Received: y=None")
        frame = self._frame(X, reset=True)
        check_consistent_length(frame, y)
        targets = self._targets(y)
        check_consistent_length(frame, targets)
        if len(frame) < 2:
            raise ValueError(f"`X` has 1 sample; at least 2 are needed to train. Received: X of "
                             f"shape {frame.shape}")
        if sample_weight is not None:
            sample_weight = _check_sample_weight(sample_weight, frame, dtype=np.float64)
        config = run_config_of(self.get_params(deep=False), task)
        target = _unused_name(frame.columns)
        frame[target] = targets
        if task == "binary" and config.positive_label is not None:
            config = config.replace(positive_label=self._code_of(config.positive_label))
        run = fit_frame(frame, target, config, sample_weight=sample_weight,
                        class_weight=class_weight, verbose=self.verbose)
        self.model_ = run.model
        self.history_ = run.result.history
        self.n_epochs_ = int(run.result.epochs_run)
        self.best_epoch_ = run.result.best_epoch
        self.target_name_ = target
        return self

    def _outputs(self, X: Any, proba: bool) -> Any:
        check_is_fitted(self, "model_")
        frame = self._frame(X, reset=False)
        if proba:
            return self.model_.predict_proba(frame)
        return np.asarray(self.model_.predict(frame))

    # -- pickling: the model travels as its .keras bytes --------------------------------------

    def __getstate__(self) -> dict[str, Any]:
        state = dict(super().__getstate__())  # a copy: the estimator keeps its model
        model = state.get("model_")
        if model is not None:
            with tempfile.TemporaryDirectory() as folder:
                path = os.path.join(folder, "model.keras")
                model.save(path)
                with open(path, "rb") as stream:
                    state["model_"] = stream.read()
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        model = state.get("model_")
        if isinstance(model, bytes):
            from dlstructured.tabular import load_model

            with tempfile.TemporaryDirectory() as folder:
                path = os.path.join(folder, "model.keras")
                with open(path, "wb") as stream:
                    stream.write(model)
                state = {**state, "model_": load_model(path)}
        super().__setstate__(state)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = True  # missing numbers get the median and an indicator
        tags.input_tags.string = True  # text columns are categories
        tags.input_tags.categorical = True
        return tags


class TabularRegressor(RegressorMixin, _TabularEstimator):
    """A dlstructured network as a scikit-learn regressor, on raw tables.

    ``fit(X, y)`` takes a DataFrame of raw columns or a numeric array; the target is scaled
    inside and ``predict`` answers in its units. ``score`` is R².

    The parameters ``model``, ``hidden_units``, ``activation``, ``dropout_rate``,
    ``batch_norm``, ``input_batch_norm``, ``members``, ``epochs``, ``batch_size``,
    ``learning_rate``,
    ``patience``, ``metrics``, ``valid_fraction``, ``stratify``, ``group_by``, ``kinds``,
    ``drop``, ``positive_label``, ``sep`` and ``encoding`` are the
    [`RunConfig`][dlstructured.config.RunConfig] fields of these names, with their defaults and
    meanings there. ``kinds``, ``drop`` and ``group_by`` name columns of ``X`` (``x0``, ``x1``
    ... for an array; ``kinds=None`` is none); ``sep`` and ``encoding``, which only reading a
    CSV file uses, are accepted and unused.

    Args:
        random_state: The run's ``seed``: an integer makes ``fit`` repeatable; ``None`` or
            a ``numpy.random.RandomState`` draws one per ``fit``. Defaults to ``0``, as
            ``RunConfig.seed``.
        verbose: ``0`` silent, ``1`` a progress bar, ``2`` a line per epoch. Defaults to
            ``0``.

    Attributes:
        model_: The trained ``TabularModel`` (network and preprocessing).
        history_: The learning curves, a DataFrame with one row per epoch.
        n_epochs_: Epochs trained.
        best_epoch_: The epoch whose weights were kept.
        n_features_in_: Columns of ``X`` seen in ``fit``.
        feature_names_in_: Their names, when ``X`` was a DataFrame with text column names.

    Example:

    >>> import numpy as np
    >>> from dlstructured.sklearn import TabularRegressor
    >>> x = np.linspace(0, 1, 60).reshape(-1, 1)
    >>> model = TabularRegressor(hidden_units=(8,), epochs=3, random_state=0)
    >>> model.fit(x, 3 * x[:, 0] + 2).n_epochs_, model.predict(x[:2]).shape
    (3, (2,))
    """

    def __init__(
        self,
        *,
        model: str = "auto",
        hidden_units: tuple[int, ...] | None = None,
        activation: str | None = None,
        dropout_rate: float = 0.0,
        batch_norm: bool = False,
        input_batch_norm: bool = False,
        members: int | None = None,
        epochs: int | None = None,
        batch_size: int | None = None,
        learning_rate: float | None = None,
        patience: int | None = None,
        metrics: tuple[str, ...] | None = None,
        valid_fraction: float | None = None,
        stratify: bool = False,
        group_by: Any = None,
        kinds: dict[Any, str] | None = None,
        drop: tuple[Any, ...] = (),
        positive_label: Any = None,
        sep: str | None = None,
        encoding: str | None = None,
        random_state: Any = 0,
        verbose: int = 0,
    ):
        self.model = model
        self.hidden_units = hidden_units
        self.activation = activation
        self.dropout_rate = dropout_rate
        self.batch_norm = batch_norm
        self.input_batch_norm = input_batch_norm
        self.members = members
        self.epochs = epochs
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.patience = patience
        self.metrics = metrics
        self.valid_fraction = valid_fraction
        self.stratify = stratify
        self.group_by = group_by
        self.kinds = kinds
        self.drop = drop
        self.positive_label = positive_label
        self.sep = sep
        self.encoding = encoding
        self.random_state = random_state
        self.verbose = verbose

    def _targets(self, y: Any) -> np.ndarray:
        values = check_array(y, ensure_2d=False, dtype="numeric", input_name="y")
        return column_or_1d(values, warn=True).astype(np.float64)

    def fit(self, X: Any, y: Any, sample_weight: Any = None) -> TabularRegressor:
        """Train on raw rows ``X`` and numeric targets ``y``.

        Args:
            X: A DataFrame of raw columns, or an array of shape ``(n_samples, n_features)``.
            y: One number per row.
            sample_weight: One non-negative weight per row, weighing the training loss.
                Defaults to ``None`` (equal weights).

        Returns:
            The estimator, trained.

        Raises:
            ValueError: If ``X`` and ``y`` differ in length, ``y`` is not numeric or holds
                NaN, or a parameter has a bad value (the message names it).
            DataError: If the table cannot be prepared (a ``ValueError`` too).
        """
        return self._fit(X, y, sample_weight, "regression")

    def predict(self, X: Any) -> np.ndarray:
        """Predictions in the target's units, one per row of ``X`` (float64).

        Raises:
            NotFittedError: If the estimator is not fitted.
            ValueError: If ``X`` has other columns than in ``fit``.
        """
        return self._outputs(X, proba=False).astype(np.float64).reshape(-1)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        # A few epochs on a few rows, as the estimator checks train, do not reach R² 0.5.
        tags.regressor_tags.poor_score = True
        return tags


class TabularClassifier(ClassifierMixin, _TabularEstimator):
    """A dlstructured network as a scikit-learn classifier (binary or multiclass), on raw tables.

    ``fit(X, y)`` takes a DataFrame of raw columns or a numeric array, and labels of any kind;
    ``classes_`` holds them sorted, ``predict`` answers with them and ``predict_proba`` has
    one column per class, in the order of ``classes_``. Two classes train a binary network
    (sigmoid), more a multiclass one (softmax). ``score`` is accuracy.

    The parameters ``model``, ``hidden_units``, ``activation``, ``dropout_rate``,
    ``batch_norm``, ``input_batch_norm``, ``members``, ``epochs``, ``batch_size``,
    ``learning_rate``,
    ``patience``, ``metrics``, ``valid_fraction``, ``stratify``, ``group_by``, ``kinds``,
    ``drop``, ``positive_label``, ``sep`` and ``encoding`` are the
    [`RunConfig`][dlstructured.config.RunConfig] fields of these names, with their defaults and
    meanings there. ``kinds``, ``drop`` and ``group_by`` name columns of ``X`` (``x0``, ``x1``
    ... for an array; ``kinds=None`` is none); ``sep`` and ``encoding``, which only reading a
    CSV file uses, are accepted and unused.

    Args:
        class_weight: ``None``, ``"balanced"`` (weights inversely proportional to the class
            counts of the training rows) or ``{label: weight}`` in ``y``'s labels; it
            multiplies ``sample_weight``. Defaults to ``None``.
        random_state: The run's ``seed``: an integer makes ``fit`` repeatable; ``None`` or
            a ``numpy.random.RandomState`` draws one per ``fit``. Defaults to ``0``, as
            ``RunConfig.seed``.
        verbose: ``0`` silent, ``1`` a progress bar, ``2`` a line per epoch. Defaults to
            ``0``.

    Attributes:
        classes_: The labels of ``y``, sorted.
        model_: The trained ``TabularModel`` (network and preprocessing).
        history_: The learning curves, a DataFrame with one row per epoch.
        n_epochs_: Epochs trained.
        best_epoch_: The epoch whose weights were kept.
        n_features_in_: Columns of ``X`` seen in ``fit``.
        feature_names_in_: Their names, when ``X`` was a DataFrame with text column names.

    Example:

    >>> import pandas as pd
    >>> from dlstructured.sklearn import TabularClassifier
    >>> table = pd.DataFrame({"size": [1.0, 2.0, 3.0, 4.0] * 10,
    ...                       "colour": ["red", "blue"] * 20})
    >>> labels = ["small", "small", "big", "big"] * 10
    >>> model = TabularClassifier(hidden_units=(8,), epochs=2).fit(table, labels)
    >>> model.classes_.tolist(), model.predict_proba(table).shape
    (['big', 'small'], (40, 2))
    """

    def __init__(
        self,
        *,
        model: str = "auto",
        hidden_units: tuple[int, ...] | None = None,
        activation: str | None = None,
        dropout_rate: float = 0.0,
        batch_norm: bool = False,
        input_batch_norm: bool = False,
        members: int | None = None,
        epochs: int | None = None,
        batch_size: int | None = None,
        learning_rate: float | None = None,
        patience: int | None = None,
        metrics: tuple[str, ...] | None = None,
        valid_fraction: float | None = None,
        stratify: bool = False,
        group_by: Any = None,
        kinds: dict[Any, str] | None = None,
        drop: tuple[Any, ...] = (),
        positive_label: Any = None,
        sep: str | None = None,
        encoding: str | None = None,
        class_weight: Any = None,
        random_state: Any = 0,
        verbose: int = 0,
    ):
        self.model = model
        self.hidden_units = hidden_units
        self.activation = activation
        self.dropout_rate = dropout_rate
        self.batch_norm = batch_norm
        self.input_batch_norm = input_batch_norm
        self.members = members
        self.epochs = epochs
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.patience = patience
        self.metrics = metrics
        self.valid_fraction = valid_fraction
        self.stratify = stratify
        self.group_by = group_by
        self.kinds = kinds
        self.drop = drop
        self.positive_label = positive_label
        self.sep = sep
        self.encoding = encoding
        self.class_weight = class_weight
        self.random_state = random_state
        self.verbose = verbose

    def _targets(self, y: Any) -> np.ndarray:
        values = check_array(y, ensure_2d=False, dtype=None, input_name="y")
        values = column_or_1d(values, warn=True)
        check_classification_targets(values)
        classes = np.unique(values)
        if len(classes) < 2:
            raise ValueError(
                "`y` holds one class; a classifier needs at least 2 classes to learn from. "
                f"Received: y with the single class {classes.tolist()!r}"
            )
        self.classes_ = classes
        # The network learns class codes 0..k-1, the positions in classes_.
        return np.searchsorted(classes, values).astype(np.int64)

    def _code_of(self, label: Any) -> int:
        matches = np.flatnonzero(self.classes_ == label)
        if len(matches) == 0:
            raise ValueError(f"`positive_label` must be one of the labels of `y`, "
                             f"{self.classes_.tolist()!r}. Received: positive_label={label!r}")
        return int(matches[0])

    def _class_weight_codes(self) -> Any:
        weights = self.class_weight
        if weights is None or isinstance(weights, str):
            return weights
        if not isinstance(weights, dict):
            raise TypeError("`class_weight` must be None, 'balanced' or a dict {label: weight}. "
                            f"Received: class_weight={weights!r}")
        unknown = [label for label in weights if not (self.classes_ == label).any()]
        if unknown:
            raise ValueError(f"`class_weight` names labels that `y` lacks: {unknown!r}; its "
                             f"labels are {self.classes_.tolist()!r}. "
                             f"Received: class_weight={weights!r}")
        return {self._code_of(label): weight for label, weight in weights.items()}

    def fit(self, X: Any, y: Any, sample_weight: Any = None) -> TabularClassifier:
        """Train on raw rows ``X`` and labels ``y`` (two or more classes).

        Args:
            X: A DataFrame of raw columns, or an array of shape ``(n_samples, n_features)``.
            y: One label per row: numbers, text or booleans.
            sample_weight: One non-negative weight per row, weighing the training loss.
                Defaults to ``None`` (equal weights).

        Returns:
            The estimator, trained.

        Raises:
            ValueError: If ``X`` and ``y`` differ in length, ``y`` holds one class or
                continuous values, or a parameter has a bad value (the message names it).
            DataError: If the table cannot be prepared (a ``ValueError`` too).
        """
        if y is None:
            raise ValueError(f"{type(self).__name__} requires y to be passed, but the target y "
                             "is None. Received: y=None")
        # The classes are known only once y is read; the task and weights follow from them.
        self._targets(y)
        task = "binary" if len(self.classes_) == 2 else "multiclass"
        return self._fit(X, y, sample_weight, task, class_weight=self._class_weight_codes())

    def predict(self, X: Any) -> np.ndarray:
        """The most probable label of ``classes_`` for each row of ``X``.

        For two classes the positive one (``classes_[1]``, or ``positive_label``) is predicted
        from a probability of 0.5.

        Raises:
            NotFittedError: If the estimator is not fitted.
            ValueError: If ``X`` has other columns than in ``fit``.
        """
        codes = self._outputs(X, proba=False).reshape(-1).astype(np.int64)
        return self.classes_[codes]

    def predict_proba(self, X: Any) -> np.ndarray:
        """Class probabilities, shape ``(n_samples, len(classes_))``, columns as ``classes_``.

        Raises:
            NotFittedError: If the estimator is not fitted.
            ValueError: If ``X`` has other columns than in ``fit``.
        """
        probabilities = self._outputs(X, proba=True)
        return probabilities[list(range(len(self.classes_)))].to_numpy(dtype=np.float64)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        # A few epochs on a few rows, as the estimator checks train, may not reach 83% accuracy.
        tags.classifier_tags.poor_score = True
        return tags

