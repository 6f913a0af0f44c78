"""quick_fit(): weights and bias in the units sent, training-set metrics, and refusals by place."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from wharf.errors import InvalidInput
from wharf.services.training.quick import quick_fit
from wharf.services.training.trainer import quick_fit as exported


def test_the_tutorial_line() -> None:
    result = quick_fit([[1.0], [2.0], [3.0], [4.0]], [3, 5, 7, 9], "linear_regression")
    assert result["task"] == "regression" and result["rows"] == 4
    assert result["weights"] == pytest.approx([2.0]) and result["bias"] == pytest.approx(1.0)
    assert result["metrics"]["r2"] == pytest.approx(1.0)
    assert json.loads(json.dumps(result)) == result
    assert exported is quick_fit


def test_logistic_weights_equal_scikit_learns() -> None:
    X = [[0.0, 1.0], [1.0, 0.5], [2.0, 0.0], [3.0, 1.5], [4.0, 1.0], [5.0, 0.0]]
    y = ["low", "low", "low", "high", "high", "high"]
    result = quick_fit(X, y, "logistic_regression", {"C": 0.5})
    model = LogisticRegression(C=0.5, max_iter=1000, random_state=0).fit(X, y)
    assert result["classes"] == ["high", "low"]
    np.testing.assert_allclose(result["weights"], model.coef_, rtol=1e-12)
    np.testing.assert_allclose(result["bias"], model.intercept_, rtol=1e-12)
    assert result["metrics"]["accuracy"] == model.score(X, y)


def test_models_without_coefficients() -> None:
    X = np.random.default_rng(0).normal(size=(20, 2)).tolist()
    result = quick_fit(X, [int(row[0] > 0) for row in X], "random_forest", {"n_estimators": 3})
    assert result["task"] == "classification"  # integer labels, few values
    assert result["weights"] is None and result["bias"] is None
    assert len(result["importances"]) == 2
    assert quick_fit(X, [row[0] * 2 for row in X], "knn", {"n_neighbors": 2})["task"] == "regression"


def test_warnings_come_back() -> None:
    X = [[float(i)] for i in range(10)]
    result = quick_fit(X, [i % 2 for i in range(10)], "mlp", {"max_iter": 1})
    assert any("ConvergenceWarning" in w for w in result["warnings"])


@pytest.mark.parametrize(
    ("X", "y", "algorithm", "params", "where"),
    [
        ([[1.0], [2.0, 3.0]], [1, 2], "linear_regression", None, "X[1]"),
        ([[1.0], [float("inf")]], [1, 2], "linear_regression", None, "X[1][0]"),
        ([[1.0], ["a"]], [1, 2], "linear_regression", None, "X[1][0]"),
        ([[]], [1], "linear_regression", None, "X[0]"),
        ([], [], "linear_regression", None, "X"),
        ([[1.0], [2.0]], [1], "linear_regression", None, "y"),
        ([[1.0], [2.0]], [1, "a"], "linear_regression", None, "y[1]"),
        ([[1.0], [2.0]], ["a", 1], "logistic_regression", None, "y"),
        ([[1.0], [2.0]], ["a", "a"], "logistic_regression", None, "y"),
        ([[1.0], [2.0]], [1, 2], "linear_regresion", None, "algorithm"),
        ([[1.0], [2.0]], [1, 2], "linear_regression", {"fit_intercep": False}, "params.fit_intercep"),
        ([[1.0], [2.0]], [1, 2], "knn", {"n_neighbors": 5}, "params"),  # found when fitting
    ],
)
def test_refusals_name_the_place(X: Any, y: Any, algorithm: str, params: Any, where: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        quick_fit(X, y, algorithm, params)
    assert caught.value.field == where
