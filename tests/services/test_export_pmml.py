"""PMML export with sklearn2pmml: each real model, exported and served by the PMML runtime, answers
what scikit-learn answers on the same rows; steps the converter refuses are named.

Every export runs the Java converter (about a second each); the runtime's JVM starts once.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import lightgbm
import numpy as np
import pandas as pd
import pytest
import sklearn.base
import sklearn2pmml
from sklearn import datasets
from sklearn.compose import ColumnTransformer
from sklearn.discriminant_analysis import QuadraticDiscriminantAnalysis
from sklearn.ensemble import GradientBoostingClassifier, RandomForestClassifier
from sklearn.feature_selection import SelectKBest
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import FunctionTransformer, OneHotEncoder, SplineTransformer, StandardScaler
from sklearn.tree import DecisionTreeRegressor

from models import LGBM_TINY
from wharf.batch import Batch
from wharf.errors import MissingDependency, UnsupportedConversion
from wharf.runtimes.pmml import PmmlRuntime
from wharf.services.exporters.pmml import to_pmml
from wharf.signature import Column, Signature

RTOL = 1e-12
"""PMML evaluates the same double arithmetic; what differs is the order of a few sums."""


def numeric(names: list[str], **output: Any) -> Signature:
    return Signature(inputs=[Column(name=name) for name in names], output=output)


def exported(model: Any, signature: Signature, folder: Path) -> PmmlRuntime:
    """``model`` written as PMML and loaded back with the source's signature, as a conversion does."""
    path = folder / "model.pmml"
    to_pmml(model, signature, path)
    return PmmlRuntime.load(path, signature=signature)


def frame_batch(frame: pd.DataFrame) -> Batch:
    return Batch([str(c) for c in frame.columns], columns=[frame[c].to_numpy() for c in frame.columns])


def assert_same_classifier(runtime: PmmlRuntime, model: Any, frame: pd.DataFrame) -> None:
    """Labels equal, of the same Python types; probabilities in ``classes_`` order."""
    batch = frame_batch(frame)
    assert runtime.signature.output.classes == model.classes_.tolist()
    labels, expected = runtime.predict(batch).tolist(), model.predict(frame).tolist()
    assert labels == expected
    assert [type(v) for v in labels] == [type(v) for v in expected]
    proba = runtime.predict_proba(batch)
    assert proba is not None
    np.testing.assert_allclose(proba, model.predict_proba(frame), rtol=RTOL, atol=1e-15)


def test_iris_pipeline_answers_as_scikit_learn(iris: tuple[Pipeline, pd.DataFrame], tmp_path: Path) -> None:
    model, X = iris
    runtime = exported(model, numeric(list(X.columns)), tmp_path)
    assert_same_classifier(runtime, model, X)
    assert runtime.made_with["SkLearn2PMML package"] == sklearn2pmml.__version__


@pytest.fixture(scope="module")
def diabetes() -> tuple[pd.DataFrame, pd.Series]:
    X, y = datasets.load_diabetes(return_X_y=True, as_frame=True)
    return X, y


def test_a_regressor_fitted_on_an_array_keeps_a_column_named_y(
    diabetes: tuple[pd.DataFrame, pd.Series], tmp_path: Path
) -> None:
    """The document's target field must not take the name of an input column."""
    X, y = diabetes
    model = Ridge(alpha=0.5).fit(X.to_numpy(), y)
    names = [*X.columns[:-1], "y"]
    runtime = exported(model, numeric(names, kind="regression"), tmp_path)
    assert PmmlRuntime.load(tmp_path / "model.pmml").signature.output.kind == "regression"
    values = runtime.predict(Batch(names, array=X.to_numpy()))
    assert values.dtype == np.float64
    np.testing.assert_allclose(values, model.predict(X.to_numpy()), rtol=RTOL)


def test_a_tree_leaves_out_the_columns_it_never_reads(
    diabetes: tuple[pd.DataFrame, pd.Series], tmp_path: Path
) -> None:
    """sklearn2pmml drops unused columns; served with the source's signature, requests still fit."""
    X, y = diabetes
    model = DecisionTreeRegressor(max_depth=3, random_state=0).fit(X, y)
    runtime = exported(model, numeric(list(X.columns)), tmp_path)
    assert len(PmmlRuntime.load(tmp_path / "model.pmml").signature.inputs) < len(X.columns)
    assert runtime.signature.names == list(X.columns)
    np.testing.assert_array_equal(runtime.predict(frame_batch(X)), model.predict(X))


def test_string_categories_and_missing_values_answer_as_scikit_learn(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    n = 120
    X = pd.DataFrame(
        {
            "city": rng.choice(["Paris", "Rome", "Lima"], size=n).astype(object),
            "age": rng.normal(40, 12, size=n).round(),
            "income": rng.normal(50, 15, size=n).round(1),
        }
    )
    y = np.where((X["age"] > 40) ^ (X["city"] == "Rome"), "yes", "no")
    X.loc[rng.choice(n, size=8, replace=False), "age"] = np.nan
    X.loc[rng.choice(n, size=8, replace=False), "income"] = np.nan
    prep = ColumnTransformer(
        [
            ("city", OneHotEncoder(handle_unknown="ignore"), ["city"]),
            (
                "numbers",
                Pipeline([("impute", SimpleImputer()), ("scale", StandardScaler())]),
                ["age", "income"],
            ),
        ]
    )
    model = Pipeline([("prep", prep), ("clf", LogisticRegression())]).fit(X, y)
    signature = Signature(
        inputs=[Column(name="city", dtype="string"), Column(name="age"), Column(name="income")]
    )
    runtime = exported(model, signature, tmp_path)
    assert PmmlRuntime.load(tmp_path / "model.pmml").signature.inputs[0].categories == [
        "Lima",
        "Paris",
        "Rome",
    ]
    rows = pd.DataFrame(
        {
            "city": np.array(["Paris", "Rome", "Lima", "Rome", "Oslo", "Paris"], dtype=object),
            "age": [25.0, np.nan, 61.0, 33.0, 47.0, np.nan],
            "income": [40.5, 55.0, np.nan, 70.0, np.nan, np.nan],
        }
    )
    assert_same_classifier(runtime, model, pd.concat([rows, X]))


@pytest.mark.parametrize(
    ("model", "missing"),
    [
        (RandomForestClassifier(n_estimators=10, max_depth=4, random_state=0), True),
        (GradientBoostingClassifier(n_estimators=10, max_depth=2, random_state=0), False),
    ],
    ids=["forest", "boosting"],
)
def test_tree_ensembles_with_integer_labels_answer_as_scikit_learn(
    model: Any, missing: bool, tmp_path: Path
) -> None:
    """A forest takes missing values (scikit-learn sends them down the fuller branch); so does its PMML."""
    X, y = datasets.load_wine(return_X_y=True, as_frame=True)
    model.fit(X, y)
    runtime = exported(model, numeric(list(X.columns)), tmp_path)
    if missing:
        holes = X.mask(np.random.default_rng(0).random(X.shape) < 0.2)
        X = pd.concat([X, holes])
    assert_same_classifier(runtime, model, X)


def test_the_model_given_is_left_as_it_was(tmp_path: Path) -> None:
    """sklearn2pmml swaps feature selectors for proxies of its own in what it converts."""
    X, y = datasets.load_iris(return_X_y=True, as_frame=True)
    model = make_pipeline(StandardScaler(), SelectKBest(k=2), LogisticRegression(max_iter=500)).fit(X, y)
    runtime = exported(model, numeric(list(X.columns)), tmp_path)
    assert [type(step) for _, step in model.steps] == [StandardScaler, SelectKBest, LogisticRegression]
    assert_same_classifier(runtime, model, X)


def assert_clean(detail: str, folder: Path) -> None:
    """One paragraph naming the format, without a traceback, a Java stack or a server path."""
    assert "PMML" in detail
    assert "\n" not in detail
    assert "Traceback" not in detail and "\tat " not in detail and ".java" not in detail
    assert str(folder) not in detail and "/tmp" not in detail


def steps_refused() -> list[Any]:
    X = ["sepal length (cm)", "sepal width (cm)"]
    spline = ColumnTransformer([("spline", SplineTransformer(), X)], remainder="passthrough")
    return [
        pytest.param(
            make_pipeline(StandardScaler(), QuadraticDiscriminantAnalysis()),
            r"the step 'quadraticdiscriminantanalysis' \(sklearn\.discriminant_analysis\."
            r"QuadraticDiscriminantAnalysis\) to PMML: The object .* is not a supported Estimator",
            id="unknown-estimator",
        ),
        pytest.param(
            Pipeline([("prep", spline), ("clf", LogisticRegression(max_iter=500))]),
            r"the step 'prep/spline' \(sklearn\.preprocessing\.\w+\.SplineTransformer\) to PMML: Attribute "
            r"'extrapolation' has an unsupported value 'constant'\. The converter suggests: Use a "
            r"supported value 'error'",
            id="unsupported-option",
        ),
        pytest.param(
            make_pipeline(FunctionTransformer(lambda x: x * 2), LogisticRegression(max_iter=500)),
            r"the step 'functiontransformer' \(sklearn\.preprocessing\.\w+\.FunctionTransformer\) to PMML: "
            r"it holds an object that cannot be pickled",
            id="lambda",
        ),
        pytest.param(
            make_pipeline(SelectKBest(k=2), LogisticRegression(max_iter=500)),
            r"the step 'selectkbest' \(sklearn\.feature_selection\.\w+\.SelectKBest\)",
            id="selector-first",
        ),
    ]


@pytest.mark.parametrize(("model", "named"), steps_refused())
def test_a_step_the_converter_refuses_is_named(model: Any, named: str, tmp_path: Path) -> None:
    X, y = datasets.load_iris(return_X_y=True, as_frame=True)
    model.fit(X, y)
    with pytest.raises(UnsupportedConversion, match=named) as caught:
        to_pmml(model, numeric(list(X.columns)), tmp_path / "model.pmml")
    assert caught.value.field == "to"
    assert_clean(caught.value.detail, tmp_path)


def test_a_scikit_learn_newer_than_the_converter_is_named(
    iris: tuple[Pipeline, pd.DataFrame], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Estimators pickle the version they were made with; the converter reads and refuses it."""
    model, X = iris
    monkeypatch.setattr(sklearn.base, "__version__", "1.99.0")
    with pytest.raises(UnsupportedConversion) as caught:
        to_pmml(model, numeric(list(X.columns)), tmp_path / "model.pmml")
    detail = caught.value.detail
    assert f"sklearn2pmml {sklearn2pmml.__version__} does not support scikit-learn 1.99.0" in detail
    assert re.search(r"it knows up to \d+\.\d+", detail)
    assert_clean(detail, tmp_path)


def test_without_java_the_export_names_what_to_install(
    iris: tuple[Pipeline, pd.DataFrame], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    model, X = iris
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(MissingDependency, match="needs Java 11"):
        to_pmml(model, numeric(list(X.columns)), tmp_path / "model.pmml")


def test_a_booster_is_refused_naming_its_scikit_learn_wrapper(tmp_path: Path) -> None:
    """sklearn2pmml converts estimators: a bare LightGBM booster (what wharf loads) is not one."""
    X, y = datasets.load_diabetes(return_X_y=True)
    booster = lightgbm.LGBMRegressor(**LGBM_TINY).fit(X, y).booster_
    with pytest.raises(UnsupportedConversion, match=r"this model is a lightgbm\.basic\.Booster") as caught:
        to_pmml(booster, numeric([f"Column_{j}" for j in range(X.shape[1])]), tmp_path / "model.pmml")
    assert_clean(caught.value.detail, tmp_path)
