"""evaluate() and explain(): scikit-learn's numbers as plain JSON values, and per-feature weights."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn import metrics as skm
from sklearn.compose import ColumnTransformer
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler
from training_tables import mixed

from wharf.services.training.algorithms import ALGORITHMS
from wharf.services.training.evaluate import evaluate, explain, feature_columns
from wharf.services.training.pipeline import build_pipeline
from wharf.services.training.spec import TrainSpec


def plain_json(value: Any) -> Any:
    return json.loads(json.dumps(value, allow_nan=False))


def test_regression_metrics() -> None:
    y_true, y_pred = np.array([3.0, -0.5, 2.0, 7.0]), np.array([2.5, 0.0, 2.0, 8.0])
    metrics = evaluate("regression", y_true, y_pred)
    assert metrics == {
        "mae": skm.mean_absolute_error(y_true, y_pred),
        "mse": skm.mean_squared_error(y_true, y_pred),
        "rmse": skm.root_mean_squared_error(y_true, y_pred),
        "r2": skm.r2_score(y_true, y_pred),
    }
    assert plain_json(metrics) == metrics and all(type(v) is float for v in metrics.values())


def test_an_undefined_score_is_none() -> None:
    assert evaluate("regression", [1.0], [2.0])["r2"] is None  # R2 of one row


def test_binary_metrics_use_the_second_class_as_positive() -> None:
    y_true = ["no", "yes", "yes", "no", "yes"]
    y_pred = ["no", "yes", "no", "no", "yes"]
    proba = np.array([[0.8, 0.2], [0.3, 0.7], [0.6, 0.4], [0.9, 0.1], [0.2, 0.8]])
    metrics = evaluate("classification", y_true, y_pred, proba, np.array(["no", "yes"], dtype=object))
    assert metrics["roc_auc"] == skm.roc_auc_score([0, 1, 1, 0, 1], proba[:, 1])
    assert metrics["log_loss"] == skm.log_loss(y_true, proba, labels=["no", "yes"])
    assert metrics["f1_macro"] == skm.f1_score(y_true, y_pred, average="macro")
    assert metrics["confusion_matrix"] == {"labels": ["no", "yes"], "matrix": [[2, 0], [1, 2]]}
    assert plain_json(metrics) == metrics


def test_multiclass_metrics() -> None:
    y_true = np.array([0, 1, 2, 2, 1, 0])
    proba = np.array(
        [[0.7, 0.2, 0.1], [0.2, 0.5, 0.3], [0.1, 0.2, 0.7], [0.3, 0.4, 0.3], [0.1, 0.8, 0.1], [0.4, 0.4, 0.2]]
    )
    y_pred = np.array([0, 1, 2, 1, 1, 0])
    metrics = evaluate("classification", y_true, y_pred, proba, np.array([0, 1, 2]))
    assert metrics["roc_auc"] == skm.roc_auc_score(y_true, proba, multi_class="ovr", average="macro")
    assert metrics["precision_weighted"] == skm.precision_score(y_true, y_pred, average="weighted")
    assert metrics["confusion_matrix"]["labels"] == [0, 1, 2]
    assert "omitted" not in metrics


def test_a_class_missing_from_the_evaluated_rows_omits_roc_auc_with_the_reason() -> None:
    y_true, y_pred = ["a", "b", "a"], ["a", "b", "c"]
    proba = np.array([[0.6, 0.2, 0.2], [0.2, 0.6, 0.2], [0.2, 0.2, 0.6]])
    metrics = evaluate("classification", y_true, y_pred, proba, ["a", "b", "c"])
    assert "roc_auc" not in metrics and "['c']" in metrics["omitted"]["roc_auc"]
    assert metrics["log_loss"] == skm.log_loss(y_true, proba, labels=["a", "b", "c"])
    assert metrics["precision_macro"] == skm.precision_score(y_true, y_pred, average="macro", zero_division=0)
    assert metrics["confusion_matrix"]["matrix"] == [[1, 0, 1], [0, 1, 0], [0, 0, 0]]


def test_no_probabilities_omits_the_scores_that_need_them() -> None:
    metrics = evaluate("classification", [0, 1], [0, 1], None, [0, 1])
    assert set(metrics["omitted"]) == {"roc_auc", "log_loss"} and "roc_auc" not in metrics


# -- explain -----------------------------------------------------------------------------------


def one_hot_regression() -> tuple[Pipeline, pd.DataFrame, np.ndarray]:
    frame = pd.DataFrame({"city": ["a", "b", "c", "a", "b", "c"], "size": [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]})
    y = np.array([1.0, 3.0, 2.0, 4.0, 7.0, 5.0])
    prepare = ColumnTransformer([("cat", OneHotEncoder(), ["city"]), ("num", StandardScaler(), ["size"])])
    return Pipeline([("prepare", prepare), ("model", LinearRegression())]).fit(frame, y), frame, y


def test_linear_weights_per_output_feature_and_by_input_column() -> None:
    pipeline, _, _ = one_hot_regression()
    explained = explain(pipeline)
    coef = pipeline[-1].coef_
    assert explained["kind"] == "coefficients"
    assert explained["weights"] == dict(
        zip(["cat__city_a", "cat__city_b", "cat__city_c", "num__size"], coef.tolist(), strict=True)
    )
    assert explained["bias"] == pipeline[-1].intercept_
    assert explained["by_column"] == {
        "city": {"cat__city_a": coef[0], "cat__city_b": coef[1], "cat__city_c": coef[2]},
        "size": {"num__size": coef[3]},
    }
    assert plain_json(explained) == explained


def test_binary_and_multiclass_coefficients() -> None:
    X = pd.DataFrame({"x": [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]})
    binary = LogisticRegression().fit(X, ["n", "n", "n", "y", "y", "y"])
    explained = explain(binary)
    assert explained["positive_class"] == "y" and list(explained["weights"]) == ["x"]
    multi = LogisticRegression().fit(X, [0, 0, 1, 1, 2, 2])
    classes = explain(multi)["classes"]
    assert [c["class"] for c in classes] == [0, 1, 2]
    assert [c["weights"]["x"] for c in classes] == multi.coef_[:, 0].tolist()


def test_importances_by_feature_largest_first() -> None:
    frame = mixed(80)
    spec = TrainSpec(dataset=1, target="bought", task="classification", params={"n_estimators": 5})
    kinds = {"age": "numeric", "income": "numeric", "city": "categorical"}
    pipeline = build_pipeline(spec, kinds).fit(frame[list(kinds)], frame["bought"])  # type: ignore[arg-type]
    explained = explain(pipeline)
    values = list(explained["importances"].values())
    assert explained["kind"] == "importances" and values == sorted(values, reverse=True)
    assert sum(values) == pytest.approx(1.0)
    assert explained["columns"]["city"] == [
        "categorical__city_Lima",
        "categorical__city_Oslo",
        "categorical__city_Paris",
        "categorical__city_Rome",
    ]
    assert explained["columns"]["age"] == ["numeric__age"]


@pytest.mark.parametrize("algorithm", ["xgboost", "svm", "knn"])
def test_wrapped_and_opaque_estimators(algorithm: str) -> None:
    frame = mixed(80)
    kinds = {"age": "numeric", "income": "numeric", "city": "categorical"}
    spec = TrainSpec(dataset=1, target="bought", task="classification", algorithm=algorithm)
    pipeline = build_pipeline(spec, kinds).fit(frame[list(kinds)], frame["bought"])  # type: ignore[arg-type]
    explained = explain(pipeline)
    if ALGORITHMS[algorithm].tree:
        assert explained["kind"] == "importances" and len(explained["importances"]) == 6
    else:
        assert explained["kind"] == "none" and "neither" in explained["reason"]


def test_columns_cannot_be_traced_through_unknown_steps() -> None:
    pipeline = Pipeline([("model", KNeighborsClassifier(n_neighbors=1))]).fit([[0.0], [1.0]], [0, 1])
    assert feature_columns(pipeline) is None
    assert explain(pipeline)["kind"] == "none"


def test_a_class_the_model_never_saw() -> None:
    y_true, y_pred = ["a", "b", "z"], ["a", "b", "a"]
    proba = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4]])
    metrics = evaluate("classification", y_true, y_pred, proba, ["a", "b"])
    assert "not fitted on" in metrics["omitted"]["log_loss"] and "roc_auc" not in metrics
    assert metrics["confusion_matrix"] == {
        "labels": ["a", "b", "z"],
        "matrix": [[1, 0, 0], [0, 1, 0], [1, 0, 0]],
    }
    assert metrics["accuracy"] == skm.accuracy_score(y_true, y_pred)
