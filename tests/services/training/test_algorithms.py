"""The catalogue: every algorithm builds, fits and predicts for each task it claims, seeded."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.calibration import CalibratedClassifierCV

from wharf.errors import InvalidInput
from wharf.services.training.algorithms import ALGORITHMS, EncodedLabels, Task, algorithm_named, check_params

RNG = np.random.default_rng(0)
X = RNG.normal(size=(40, 3))
TARGETS = {
    "classification": np.where(X[:, 0] + X[:, 1] > 0, "up", "down"),
    "regression": X @ np.array([1.0, -2.0, 0.5]),
}
TINY = {"n_estimators": 3}
"""Few trees: what is tested is that each builds and answers, not how well."""
REQUIRED = {
    "linear_regression",
    "ridge",
    "lasso",
    "logistic_regression",
    "decision_tree",
    "random_forest",
    "gradient_boosting",
    "svm",
    "knn",
    "mlp",
    "xgboost",
    "lightgbm",
}
PAIRS = [(name, task) for name, algorithm in ALGORITHMS.items() for task in algorithm.tasks]


def test_the_catalogue_has_what_the_issue_asks_for() -> None:
    assert set(ALGORITHMS) == REQUIRED
    assert not ALGORITHMS["linear_regression"].classifier and not ALGORITHMS["logistic_regression"].regressor


# Whether svm or mlp converge on 40 random rows is not what this test is about.
@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@pytest.mark.parametrize(("name", "task"), PAIRS, ids=[f"{n}-{t}" for n, t in PAIRS])
def test_every_algorithm_fits_its_tasks(name: str, task: Task) -> None:
    algorithm = ALGORITHMS[name]
    valid = algorithm.estimator_class(task)().get_params()
    params = {k: v for k, v in TINY.items() if k in valid}
    if name == "gradient_boosting":
        params["max_iter"] = 5
    check_params(algorithm, task, params)
    model = algorithm.build(task, params, seed=7)
    y = TARGETS[task]
    predicted = clone(model).fit(X, y).predict(X)
    assert predicted.shape == (len(X),)
    if task == "classification":
        assert set(predicted) <= {"up", "down"}
    core = model.estimator if isinstance(model, EncodedLabels | CalibratedClassifierCV) else model
    if "random_state" in valid:
        assert core.get_params()["random_state"] == 7


def test_xgboost_answers_in_the_original_labels() -> None:
    model = ALGORITHMS["xgboost"].build("classification", {"n_estimators": 3}, seed=0)
    fitted = model.fit(X, TARGETS["classification"])
    assert fitted.classes_.tolist() == ["down", "up"]
    assert fitted.predict_proba(X).shape == (len(X), 2)


def test_svm_gives_calibrated_probabilities() -> None:
    model = ALGORITHMS["svm"].build("classification", {"C": 2.0}, seed=0)
    assert isinstance(model, CalibratedClassifierCV) and model.estimator.C == 2.0
    assert ALGORITHMS["svm"].param_prefix("classification") == "estimator__"
    assert ALGORITHMS["svm"].param_prefix("regression") == ""


def test_unknown_algorithm() -> None:
    with pytest.raises(InvalidInput, match="Did you mean 'lightgbm'") as caught:
        algorithm_named("lightgbn")
    assert caught.value.field == "algorithm"


def test_params_of_libraries_without_declared_constraints_are_checked_by_name() -> None:
    check_params(ALGORITHMS["xgboost"], "regression", {"max_depth": "deep"})  # found at fit time
    with pytest.raises(InvalidInput, match="Did you mean 'max_depth'") as caught:
        check_params(ALGORITHMS["xgboost"], "regression", {"maxdepth": 3})
    assert caught.value.field == "params.maxdepth"
