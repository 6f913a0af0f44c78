"""train(): metrics equal scikit-learn's for a pipeline written out by hand on the same split and
seed; the registered pipeline answers JSON rows as it answers in process; progress, dropped rows,
labels, warnings and fit-time failures."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn import metrics as skm
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.model_selection import (
    GridSearchCV,
    RandomizedSearchCV,
    StratifiedKFold,
    cross_val_predict,
    train_test_split,
)
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler
from sklearn.tree import DecisionTreeClassifier
from training_tables import cancer, diabetes, everything, mixed, reviews, served, wine

from wharf.errors import InvalidInput
from wharf.services.training.spec import TrainSpec
from wharf.services.training.trainer import STAGES, TrainResult, train

SEED = 0


def spec(**fields: Any) -> TrainSpec:
    return TrainSpec.model_validate({"dataset": 1, **fields})


def numeric(columns: list[str]) -> tuple[str, Any, list[str]]:
    return (
        "numeric",
        Pipeline([("impute", SimpleImputer(strategy="median")), ("scale", StandardScaler())]),
        columns,
    )


def regression_expected(y_true: Any, pred: Any) -> dict[str, float]:
    return {
        "mae": skm.mean_absolute_error(y_true, pred),
        "mse": skm.mean_squared_error(y_true, pred),
        "rmse": skm.root_mean_squared_error(y_true, pred),
        "r2": skm.r2_score(y_true, pred),
    }


def classification_expected(y_true: Any, pred: Any, proba: np.ndarray, classes: Any) -> dict[str, Any]:
    expected: dict[str, Any] = {"accuracy": skm.accuracy_score(y_true, pred)}
    for average in ("macro", "weighted"):
        expected[f"precision_{average}"] = skm.precision_score(y_true, pred, average=average, zero_division=0)
        expected[f"recall_{average}"] = skm.recall_score(y_true, pred, average=average, zero_division=0)
        expected[f"f1_{average}"] = skm.f1_score(y_true, pred, average=average, zero_division=0)
    if len(classes) == 2:
        expected["roc_auc"] = skm.roc_auc_score(y_true, proba[:, 1])
    else:
        expected["roc_auc"] = skm.roc_auc_score(
            y_true, proba, multi_class="ovr", average="macro", labels=classes
        )
    expected["log_loss"] = skm.log_loss(y_true, proba, labels=classes)
    return expected


def assert_classification(
    result: TrainResult, y_true: Any, pred: Any, proba: np.ndarray, classes: Any
) -> None:
    expected = classification_expected(y_true, pred, proba, classes)
    got = {key: result.metrics[key] for key in expected}
    assert got == pytest.approx(expected, rel=1e-12, abs=1e-15)
    matrix = skm.confusion_matrix(y_true, pred, labels=classes)
    assert result.metrics["confusion_matrix"] == {"labels": list(classes), "matrix": matrix.tolist()}


def holdout_parts(frame: pd.DataFrame, target: str, stratify: bool) -> Any:
    X, y = frame.drop(columns=[target]), frame[target]
    return train_test_split(X, y, test_size=0.2, random_state=SEED, stratify=y if stratify else None)


# -- metrics equal scikit-learn's --------------------------------------------------------------


def test_regression_on_diabetes() -> None:
    frame = diabetes()
    result = train(spec(target="target", algorithm="ridge", params={"alpha": 0.5}), frame)
    X_train, X_test, y_train, y_test = holdout_parts(frame, "target", stratify=False)
    by_hand = Pipeline(
        [
            ("prepare", ColumnTransformer([numeric(list(X_train.columns))])),
            ("model", Ridge(alpha=0.5, random_state=SEED)),
        ]
    ).fit(X_train, y_train)
    assert result.task == "regression"
    assert result.metrics == pytest.approx(regression_expected(y_test, by_hand.predict(X_test)), rel=1e-12)
    assert result.validation == {
        "method": "holdout",
        "test_size": 0.2,
        "train_rows": len(y_train),
        "test_rows": len(y_test),
        "stratified": False,
    }
    assert result.holdout is not None and result.holdout.index.equals(X_test.index)
    assert result.explanation["kind"] == "coefficients"
    weights = list(result.explanation["weights"].values())
    assert weights == pytest.approx(by_hand[-1].coef_.tolist(), rel=1e-12)
    assert result.explanation["bias"] == pytest.approx(by_hand[-1].intercept_, rel=1e-12)


def test_binary_classification_on_breast_cancer() -> None:
    frame = cancer()
    result = train(spec(target="diagnosis", params={"n_estimators": 8, "max_depth": 4}), frame)
    X_train, X_test, y_train, y_test = holdout_parts(frame, "diagnosis", stratify=True)
    impute = ("numeric", Pipeline([("impute", SimpleImputer(strategy="median"))]), list(X_train.columns))
    model = RandomForestClassifier(n_estimators=8, max_depth=4, random_state=SEED)
    by_hand = Pipeline([("prepare", ColumnTransformer([impute])), ("model", model)]).fit(X_train, y_train)
    assert result.task == "classification" and result.validation["stratified"] is True
    assert result.signature.output.classes == [0, 1]
    assert_classification(result, y_test, by_hand.predict(X_test), by_hand.predict_proba(X_test), [0, 1])
    importances = result.explanation["importances"]
    assert sorted(importances.values(), reverse=True) == list(importances.values())
    assert importances["numeric__mean radius"] == pytest.approx(by_hand[-1].feature_importances_[0])


def test_multiclass_with_cross_validation_on_wine() -> None:
    frame = wine()
    result = train(spec(target="cultivar", algorithm="logistic_regression", validation={"cv": 3}), frame)
    X, y = frame.drop(columns=["cultivar"]), frame["cultivar"]
    by_hand = Pipeline(
        [
            ("prepare", ColumnTransformer([numeric(list(X.columns))])),
            ("model", LogisticRegression(max_iter=1000, random_state=SEED)),
        ]
    )
    folds = StratifiedKFold(3, shuffle=True, random_state=SEED)
    pred = cross_val_predict(by_hand, X, y, cv=folds)
    proba = cross_val_predict(by_hand, X, y, cv=folds, method="predict_proba")
    classes = ["class_0", "class_1", "class_2"]
    assert_classification(result, y, pred, proba, classes)
    assert result.holdout is None
    assert result.validation == {"method": "cv", "folds": 3, "rows": len(y), "stratified": True}
    per_fold = [skm.accuracy_score(y.iloc[test], pred[test]) for _, test in folds.split(X, y)]
    assert result.cv_scores is not None and result.cv_scores["scores"] == pytest.approx(per_fold)
    # the returned pipeline is fitted on every row
    refitted = by_hand.fit(X, y)
    np.testing.assert_allclose(result.pipeline[-1].coef_, refitted[-1].coef_, rtol=1e-12)
    assert [c["class"] for c in result.explanation["classes"]] == classes


def test_categorical_and_missing_values() -> None:
    frame = mixed()
    result = train(spec(target="bought", algorithm="gradient_boosting", params={"max_iter": 15}), frame)
    X_train, X_test, y_train, y_test = holdout_parts(frame, "bought", stratify=True)
    numbers = ("numeric", Pipeline([("impute", SimpleImputer(strategy="median"))]), ["age", "income"])
    category = Pipeline(
        [
            ("impute", SimpleImputer(strategy="most_frequent")),
            ("onehot", OneHotEncoder(handle_unknown="ignore")),
        ]
    )
    prepare = ColumnTransformer([numbers, ("categorical", category, ["city"])], sparse_threshold=0)
    model = HistGradientBoostingClassifier(max_iter=15, random_state=SEED)
    by_hand = Pipeline([("prepare", prepare), ("model", model)]).fit(X_train, y_train)
    assert result.kinds == {"age": "numeric", "income": "numeric", "city": "categorical"}
    assert_classification(
        result, y_test, by_hand.predict(X_test), by_hand.predict_proba(X_test), ["no", "yes"]
    )


def test_text_classification() -> None:
    frame = reviews()
    result = train(spec(target="sentiment", algorithm="logistic_regression"), frame)
    X_train, X_test, y_train, y_test = holdout_parts(frame, "sentiment", stratify=True)
    prepare = ColumnTransformer([("text_review", TfidfVectorizer(max_features=20000), "review")])
    model = LogisticRegression(max_iter=1000, random_state=SEED)
    by_hand = Pipeline([("prepare", prepare), ("model", model)]).fit(X_train, y_train)
    assert result.kinds == {"review": "text"}
    assert_classification(
        result, y_test, by_hand.predict(X_test), by_hand.predict_proba(X_test), ["bad", "good"]
    )
    weights = result.explanation["weights"]
    assert weights["text_review__great"] > 0 > weights["text_review__rude"]


@pytest.mark.parametrize("method", ["grid", "random"])
def test_search_equals_scikit_learns(method: str) -> None:
    frame = cancer(200)
    grid = {"max_depth": [2, 4], "min_samples_leaf": [1, 8]}
    search = {"method": method, "params": grid, "cv": 3, "n_iter": 3}
    result = train(spec(target="diagnosis", algorithm="decision_tree", search=search), frame)
    X_train, X_test, y_train, y_test = holdout_parts(frame, "diagnosis", stratify=True)
    impute = ("numeric", Pipeline([("impute", SimpleImputer(strategy="median"))]), list(X_train.columns))
    pipeline = Pipeline(
        [("prepare", ColumnTransformer([impute])), ("model", DecisionTreeClassifier(random_state=SEED))]
    )
    prefixed = {f"model__{name}": values for name, values in grid.items()}
    if method == "grid":
        by_hand: Any = GridSearchCV(pipeline, prefixed, cv=3)
    else:
        by_hand = RandomizedSearchCV(pipeline, prefixed, n_iter=3, cv=3, random_state=SEED)
    by_hand.fit(X_train, y_train)
    assert result.best_params == {k.removeprefix("model__"): v for k, v in by_hand.best_params_.items()}
    best = by_hand.best_estimator_
    assert_classification(result, y_test, best.predict(X_test), best.predict_proba(X_test), [0, 1])
    splits = [by_hand.cv_results_[f"split{k}_test_score"][by_hand.best_index_] for k in range(3)]
    assert result.cv_scores == {
        "scoring": "accuracy",
        "scores": pytest.approx(splits),
        "mean": pytest.approx(np.mean(splits)),
        "std": pytest.approx(np.std(splits)),
    }


# -- served predictions equal in-process ones ------------------------------------------------


CASES = {
    "diabetes": (diabetes, {"target": "target", "algorithm": "ridge"}),
    "cancer": (cancer, {"target": "diagnosis", "params": {"n_estimators": 5}}),
    "wine": (wine, {"target": "cultivar", "algorithm": "logistic_regression"}),
    "mixed": (mixed, {"target": "bought", "algorithm": "gradient_boosting", "params": {"max_iter": 10}}),
    "reviews": (reviews, {"target": "sentiment", "algorithm": "logistic_regression"}),
    "everything": (everything, {"target": "price", "algorithm": "ridge"}),
    "everything-xgboost": (
        everything,
        {"target": "price", "algorithm": "xgboost", "params": {"n_estimators": 5}},
    ),
    "mixed-lightgbm": (mixed, {"target": "bought", "algorithm": "lightgbm", "params": {"n_estimators": 5}}),
}


@pytest.mark.parametrize("case", list(CASES))
def test_served_predictions_equal_in_process(case: str, tmp_path: Path) -> None:
    make, fields = CASES[case]
    result = train(spec(**fields), make())
    assert result.holdout is not None
    rows = result.holdout[result.features]
    predicted, proba = served(result, tmp_path, rows)
    expected = result.pipeline.predict(rows)
    if result.task == "regression":
        np.testing.assert_allclose(predicted, expected, rtol=1e-12)
    else:
        np.testing.assert_array_equal(predicted, expected)
        np.testing.assert_allclose(proba, result.pipeline.predict_proba(rows), rtol=1e-12)


def test_every_kind_of_column_is_taken_as_json_sends_it(tmp_path: Path) -> None:
    result = train(spec(target="price", algorithm="ridge"), everything())
    columns = {c.name: (c.dtype, c.nullable) for c in result.signature.inputs}
    assert columns == {
        "area": ("float64", True),
        "garden": ("bool", True),
        "furnished": ("string", True),
        "district": ("string", True),
        "sold": ("string", True),
        "listed": ("string", True),
        "note": ("string", True),
    }
    assert result.signature.output.kind == "regression"
    district = next(c for c in result.signature.inputs if c.name == "district")
    assert district.categories == ["east", "north", "south"]
    base = {"area": 70.0, "district": "north", "sold": "2022-03-01", "listed": "2022-05-01T10:30:00+02:00"}
    rows = pd.DataFrame(
        [
            {**base, "garden": True, "furnished": "yes", "note": "great view"},
            {**base, "garden": 1, "furnished": True, "note": "great view"},  # what JSON may send instead
            {**base, "garden": None, "furnished": None, "note": None, "district": "west"},  # unseen, missing
        ],
        dtype=object,
    )
    predicted, _ = served(result, tmp_path, rows)
    assert predicted[0] == predicted[1]
    frame_rows = rows.assign(garden=[True, True, None], furnished=["yes", "yes", None])
    np.testing.assert_allclose(predicted, result.pipeline.predict(frame_rows), rtol=1e-12)


# -- the run itself ------------------------------------------------------------------------------


def test_progress_goes_through_the_stages_in_order() -> None:
    seen: list[tuple[float, str]] = []
    search = {"params": {"max_depth": [1, 2, 3]}, "cv": 2}
    train(
        spec(target="bought", algorithm="decision_tree", search=search, validation={"cv": 2}),
        mixed(60),
        progress=lambda fraction, stage: seen.append((fraction, stage)),
    )
    stages = [stage for i, (_, stage) in enumerate(seen) if i == 0 or seen[i - 1][1] != stage]
    assert stages == list(STAGES)
    fractions = [fraction for fraction, _ in seen]
    assert fractions == sorted(fractions) and fractions[0] == 0.0 and seen[-1] == (1.0, "done")
    # 2 outer folds + the final fit, each a search of 3 candidates x 2 folds: 18 scored fits
    assert len([1 for _, stage in seen if stage == "fitting"]) == 1 + 18


def test_an_exception_from_progress_propagates_unchanged() -> None:
    class Cancelled(Exception):
        pass

    def cancel(fraction: float, stage: str) -> None:
        if stage == "fitting" and fraction > 0.1:
            raise Cancelled

    with pytest.raises(Cancelled):
        train(
            spec(target="bought", algorithm="decision_tree", validation={"cv": 2}), mixed(40), progress=cancel
        )


def test_rows_without_a_target_are_dropped_and_counted() -> None:
    frame = mixed(80)
    frame.loc[[3, 10, 11], "bought"] = None
    result = train(spec(target="bought", algorithm="decision_tree"), frame)
    assert result.dropped_rows == 3
    assert result.validation["train_rows"] + result.validation["test_rows"] == 77
    assert result.holdout is not None and not result.holdout.index.isin([3, 10, 11]).any()


@pytest.mark.parametrize(
    ("labels", "classes"),
    [
        (["yes", "no"], ["no", "yes"]),
        ([3, 7], [3, 7]),
        ([True, False], [False, True]),
    ],
)
def test_labels_are_kept_as_they_are(labels: list[Any], classes: list[Any]) -> None:
    frame = mixed(60)
    frame["bought"] = np.where(frame["bought"] == "yes", labels[0], labels[1])
    result = train(spec(target="bought", task="classification", algorithm="decision_tree"), frame)
    assert result.signature.output.classes == classes
    assert result.metrics["confusion_matrix"]["labels"] == classes
    assert all(type(c) is type(classes[0]) for c in result.signature.output.classes)


def test_warnings_are_recorded_not_raised() -> None:
    result = train(spec(target="bought", algorithm="mlp", params={"max_iter": 2}), mixed(60))
    assert any(w.startswith("ConvergenceWarning") for w in result.warnings)


@pytest.mark.parametrize(
    ("algorithm", "params"),
    [("mlp", {"hidden_layer_sizes": [0]}), ("xgboost", {"max_depth": "deep"})],
)
def test_a_fit_time_failure_is_a_wharf_error(algorithm: str, params: dict[str, Any]) -> None:
    with pytest.raises(InvalidInput, match=f"Fitting {algorithm} failed") as caught:
        train(spec(target="bought", algorithm=algorithm, params=params), mixed(40))
    assert caught.value.field == "params"


def test_the_spec_is_checked_against_the_table() -> None:
    with pytest.raises(InvalidInput, match="Did you mean 'bought'") as caught:
        train(spec(target="bougt"), mixed(40))
    assert caught.value.field == "target"


def test_timings_cover_every_stage() -> None:
    result = train(spec(target="bought", algorithm="decision_tree"), mixed(40))
    assert set(result.timings) == {"preparing", "splitting", "fitting", "evaluating", "total"}
    assert result.timings["total"] >= sum(v for k, v in result.timings.items() if k != "total") - 1e-6


def test_a_class_of_one_row_is_split_unstratified() -> None:
    frame = mixed(40)
    frame.loc[5, "bought"] = "maybe"
    result = train(spec(target="bought", algorithm="decision_tree"), frame)
    assert result.validation["stratified"] is False
    assert "roc_auc" in result.metrics["omitted"]


def test_nullable_integer_labels_become_plain_integers() -> None:
    frame = mixed(40)
    frame["bought"] = pd.array(np.where(frame["bought"] == "yes", 1, 0), dtype="Int64")
    frame.loc[0, "bought"] = pd.NA
    result = train(spec(target="bought", algorithm="decision_tree"), frame)
    assert result.task == "classification" and result.signature.output.classes == [0, 1]
    assert result.dropped_rows == 1


def test_pandas_nullable_columns(tmp_path: Path) -> None:
    frame = mixed(60)
    rng = np.random.default_rng(1)
    frame["member"] = pd.array(rng.choice([True, False], size=60), dtype="boolean")
    frame["visits"] = pd.array(rng.integers(0, 9, size=60), dtype="Int64")
    frame.loc[[1, 2], ["member", "visits"]] = pd.NA
    result = train(spec(target="bought", algorithm="logistic_regression"), frame)
    assert result.kinds["member"] == "boolean" and result.kinds["visits"] == "numeric"
    assert {c.name: c.dtype for c in result.signature.inputs}["member"] == "bool"
    rows = frame.loc[[1, 2, 3, 4], result.features]
    predicted, proba = served(result, tmp_path, rows)
    np.testing.assert_array_equal(predicted, result.pipeline.predict(rows))
    np.testing.assert_allclose(proba, result.pipeline.predict_proba(rows), rtol=1e-12)


def test_infinities_are_missing_values() -> None:
    frame = diabetes().head(60)
    frame.loc[[0, 1], "bmi"] = np.inf
    frame.loc[2, "target"] = -np.inf
    result = train(spec(target="target", algorithm="ridge"), frame)
    assert result.dropped_rows == 1
    assert result.metrics["r2"] is not None
