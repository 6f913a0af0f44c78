"""TrainSpec's shape, and check(): every way a spec can miss its dataset, refused naming the field."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest
from pydantic import ValidationError

from wharf.errors import InvalidInput
from wharf.services.profiling import profile_frame
from wharf.services.training.algorithms import Algorithm
from wharf.services.training.spec import TrainSpec, check, resolve_task

ROWS = 40


def table() -> pd.DataFrame:
    rng = np.random.default_rng(0)
    return pd.DataFrame(
        {
            "sqft": rng.normal(100, 20, size=ROWS),
            "rooms": rng.integers(1, 6, size=ROWS),
            "city": rng.choice(["Paris", "Rome"], size=ROWS),
            "sold": pd.date_range("2024-01-01", periods=ROWS, freq="D"),
            "garden": rng.choice([True, False], size=ROWS),
            "empty": [None] * ROWS,
            "price": rng.normal(300, 50, size=ROWS),
            "constant": ["x"] * ROWS,
        }
    )


PROFILE = profile_frame(table())


def spec(**fields: Any) -> TrainSpec:
    return TrainSpec.model_validate({"dataset": 1, "target": "price", **fields})


def test_defaults() -> None:
    plain = spec()
    assert plain.kind == "train" and plain.task == "auto" and plain.algorithm == "random_forest"
    assert plain.validation.model_dump() == {"test_size": 0.2}
    assert plain.preprocessing.model_dump() == {
        "numeric_imputation": "median",
        "categorical_imputation": "most_frequent",
        "scaling": "standard",
        "text_max_features": 20000,
        "datetime_parts": ["year", "month", "day", "weekday", "hour"],
    }
    assert plain.seed == 0 and plain.search is None and plain.register_as is None


def test_a_spec_survives_its_json_form() -> None:
    full = spec(validation={"cv": 4}, search={"params": {"max_depth": [2, None]}}, register_as="houses")
    assert TrainSpec.model_validate(full.model_dump(mode="json")) == full


@pytest.mark.parametrize(
    ("fields", "where"),
    [
        ({"colour": "red"}, "colour"),
        ({"task": "clustering"}, "task"),
        ({"validation": {"test_size": 1.0}}, "validation"),
        ({"validation": {"test_size": 0.2, "cv": 3}}, "validation"),
        ({"validation": {"cv": 1}}, "validation"),
        ({"preprocessing": {"scaling": "robust"}}, "preprocessing.scaling"),
        ({"preprocessing": {"datetime_parts": ["year", "year"]}}, "preprocessing.datetime_parts"),
        ({"preprocessing": {"datetime_parts": ["eon"]}}, "preprocessing.datetime_parts.0"),
        ({"preprocessing": {"text_max_features": 0}}, "preprocessing.text_max_features"),
        ({"search": {"params": {}}}, "search.params"),
        ({"search": {"params": {"max_depth": [2]}, "method": "bayes"}}, "search.method"),
        ({"features": []}, "features"),
        ({"seed": -1}, "seed"),
        ({"register_as": "no spaces allowed"}, "register_as"),
    ],
)
def test_shape_errors_name_the_field(fields: dict[str, Any], where: str) -> None:
    with pytest.raises(ValidationError) as caught:
        spec(**fields)
    locations = {".".join(str(p) for p in error["loc"]) for error in caught.value.errors()}
    assert any(loc == where or loc.startswith(where + ".") for loc in locations), locations


@pytest.mark.parametrize(
    ("fields", "where", "says"),
    [
        ({"target": "prise"}, "target", "Did you mean 'price'?"),
        ({"features": ["sqft", "room"]}, "features[1]", "Did you mean 'rooms'?"),
        ({"features": ["sqft", "price"]}, "features[1]", "also listed as a feature"),
        ({"features": ["sqft", "sqft"]}, "features[1]", "listed twice"),
        ({"features": ["empty"]}, "features[0]", "no value in any row"),
        ({"target": "sold"}, "target", "holds datetimes"),
        ({"target": "constant"}, "target", "1 distinct value"),
        ({"target": "city", "task": "regression"}, "task", "Regression needs a numeric target"),
        ({"algorithm": "random_forrest"}, "algorithm", "Did you mean 'random_forest'?"),
        ({"algorithm": "logistic_regression"}, "algorithm", "for regression use one of"),
        ({"target": "city", "algorithm": "lasso"}, "algorithm", "does regression, not classification"),
        ({"params": {"n_estimator": 5}}, "params.n_estimator", "Did you mean 'n_estimators'?"),
        ({"params": {"n_estimators": "many"}}, "params.n_estimators", "must be an int"),
        ({"params": {"n_estimators": 0}}, "params.n_estimators", "range [1, inf)"),
        ({"params": {"random_state": 3}}, "params.random_state", "give 'seed' instead"),
        ({"algorithm": "mlp", "params": {"activation": "sigmoid"}}, "params.activation", "'logistic'"),
        ({"validation": {"cv": 41}}, "validation.cv", "at least 41 rows"),
        ({"validation": {"test_size": 0.99}}, "validation.test_size", "leaves 0 of 40 rows"),
        ({"search": {"params": {"max_depth": [2, -1]}}}, "search.params.max_depth[1]", "max_depth"),
        ({"search": {"params": {"depth": [2]}}}, "search.params.depth", "Did you mean 'max_depth'?"),
        ({"search": {"params": {"max_depth": []}}}, "search.params.max_depth", "non-empty list"),
        (
            {"search": {"params": {"max_depth": [2]}, "cv": 20}, "validation": {"test_size": 0.6}},
            "search.cv",
            "at least 20 training rows; there are 16",
        ),
        ({"search": {"params": {"max_depth": [2]}, "scoring": "accuracyy"}}, "search.scoring", "'accuracy'?"),
    ],
)
def test_check_refuses_naming_the_field(fields: dict[str, Any], where: str, says: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        check(spec(**fields), PROFILE)
    assert caught.value.field == where
    assert says in caught.value.detail


def test_check_resolves_task_and_features() -> None:
    resolved = check(spec(), PROFILE)
    assert resolved.task == "regression"
    assert resolved.features == ["sqft", "rooms", "city", "sold", "garden", "constant"]  # not "empty"
    assert check(spec(target="city"), PROFILE).task == "classification"
    assert check(spec(target="garden", algorithm="knn"), PROFILE).task == "classification"
    assert check(spec(features=["city", "sqft"]), PROFILE).features == ["city", "sqft"]


@pytest.mark.parametrize(
    ("column", "task"),
    [
        ({"kind": "numeric", "dtype": "float64", "unique": 3}, "regression"),
        ({"kind": "numeric", "dtype": "int64", "unique": 3}, "classification"),
        ({"kind": "numeric", "dtype": "Int64", "unique": 20}, "classification"),
        ({"kind": "numeric", "dtype": "int64", "unique": 21}, "regression"),
        ({"kind": "categorical", "dtype": "object", "unique": 300}, "classification"),
        ({"kind": "boolean", "dtype": "bool", "unique": 2}, "classification"),
        ({"kind": "text", "dtype": "object", "unique": 50}, "classification"),
    ],
)
def test_auto_task(column: dict[str, Any], task: str) -> None:
    assert resolve_task("auto", {"name": "y", **column}) == task


def test_too_many_classes() -> None:
    column = {"name": "y", "kind": "numeric", "dtype": "float64", "unique": 5000}
    with pytest.raises(InvalidInput, match="Use task 'regression'") as caught:
        resolve_task("classification", column)
    assert caught.value.field == "task"


def test_an_uninstalled_algorithm_says_how_to_install_it() -> None:
    missing = Algorithm("quantum", "no_such_package.models:Quantum", None, package="no-such-package")
    with pytest.raises(InvalidInput, match="pip install no-such-package") as caught:
        missing.estimator_class("classification")
    assert caught.value.field == "algorithm"


def test_a_target_with_too_few_values() -> None:
    frame = table().assign(price=[1.0, 2.0] + [None] * (ROWS - 2))
    with pytest.raises(InvalidInput, match="a value in 2 row") as caught:
        check(spec(), profile_frame(frame))
    assert caught.value.field == "target"


def test_a_column_name_too_long_for_a_signature() -> None:
    frame = table().rename(columns={"sqft": "s" * 300})
    with pytest.raises(InvalidInput, match="at most 256") as caught:
        check(spec(), profile_frame(frame))
    assert caught.value.field == "features"
