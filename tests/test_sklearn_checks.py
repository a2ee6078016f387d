"""scikit-learn's estimator checks for ``TabularRegressor`` and ``TabularClassifier``.

The full set runs on JAX; on TensorFlow, where every fit is slower, a named subset runs and the
rest are skipped with the reason.
"""

from __future__ import annotations

import functools
import os

import pytest
from sklearn.utils.estimator_checks import estimator_checks_generator, parametrize_with_checks

from dlstructured.sklearn import TabularClassifier, TabularRegressor

# Tiny networks and two epochs: the checks test the contract, not the learning.
ESTIMATORS = [
    TabularRegressor(hidden_units=(16,), members=2, epochs=2, random_state=0),
    TabularClassifier(hidden_units=(16,), members=2, epochs=2, random_state=0),
]

_WEIGHTS = (
    "fitting with a weight of 2 is not the same as repeating the row: the rows are split at "
    "random for early stopping, and stochastic gradient descent sees another sequence of batches"
)
EXPECTED_FAILURES = {"check_sample_weight_equivalence_on_dense_data": _WEIGHTS}

# What runs on TensorFlow: the parts of the contract that do not depend on the engine, plus one
# training check per kind of estimator.
TENSORFLOW_SUBSET = frozenset({
    "check_no_attributes_set_in_init",
    "check_parameters_default_constructible",
    "check_get_params_invariance",
    "check_set_params",
    "check_estimator_cloneable",
    "check_estimator_repr",
    "check_estimators_unfitted",
    "check_requires_y_none",
    "check_n_features_in_after_fitting",
    "check_estimators_pickle",
    "check_fit_idempotent",
    "check_classifiers_train",
    "check_regressors_train",
})


def _name(check) -> str:
    while isinstance(check, functools.partial):
        check = check.func
    return check.__name__


# The checks fit on a dozen rows, where the default model's small-table notice is expected.
@pytest.mark.filterwarnings("ignore:the training part has only:dlstructured.errors.DataWarning")
@parametrize_with_checks(ESTIMATORS, expected_failed_checks=lambda _: EXPECTED_FAILURES)
def test_estimator_checks(estimator, check):
    name = _name(check)
    if os.environ.get("KERAS_BACKEND") == "tensorflow" and name not in TENSORFLOW_SUBSET:
        pytest.skip(f"{name} runs on JAX only: TensorFlow's slower fits would make the full set "
                    "take minutes; the named subset covers the contract there")
    check(estimator)


def test_the_named_checks_exist():
    names = {_name(check) for estimator in ESTIMATORS
             for _, check in estimator_checks_generator(estimator)}
    assert TENSORFLOW_SUBSET <= names
    assert set(EXPECTED_FAILURES) <= names
