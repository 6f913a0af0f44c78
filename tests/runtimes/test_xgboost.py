"""The XGBoost runtime: booster signatures, objectives, and labels equal to XGBClassifier's."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import xgboost

from models import CaseBook
from wharf.batch import Batch
from wharf.errors import InvalidModel
from wharf.runtimes.xgboost import XGBoostRuntime
from wharf.signature import Signature

RNG = np.random.default_rng(0)
X = RNG.normal(size=(80, 3))
Y = (X[:, 0] + RNG.normal(0, 0.5, size=80) > 0).astype(int)
NAMES = ["x0", "x1", "x2"]
TINY = {"n_estimators": 4, "max_depth": 2, "random_state": 0}


def saved(model: xgboost.XGBModel | xgboost.Booster, path: Path) -> Path:
    booster = model if isinstance(model, xgboost.Booster) else model.get_booster()
    booster.save_model(str(path))
    return path


def batch(rows: np.ndarray) -> Batch:
    return Batch([f"x{j}" for j in range(rows.shape[1])], array=rows)


def test_feature_names_and_types_come_from_the_booster(tmp_path: Path) -> None:
    data = xgboost.DMatrix(
        X, label=Y, feature_names=["area", "rooms", "garden"], feature_types=["float", "int", "i"]
    )
    booster = xgboost.train({"max_depth": 2, "objective": "binary:logistic"}, data, num_boost_round=2)
    signature = XGBoostRuntime.load(saved(booster, tmp_path / "m.json")).signature
    assert [(c.name, c.dtype, c.nullable) for c in signature.inputs] == [
        ("area", "float64", True),
        ("rooms", "int64", True),
        ("garden", "bool", True),
    ]
    assert signature.output.kind == "classification"


@pytest.mark.parametrize("suffix", [".json", ".ubj"])
def test_columns_of_an_array_are_numbered(tmp_path: Path, suffix: str) -> None:
    model = xgboost.XGBRegressor(**TINY).fit(X, X[:, 0])
    runtime = XGBoostRuntime.load(saved(model, tmp_path / f"m{suffix}"))
    assert runtime.signature.names == NAMES
    assert runtime.signature.output.kind == "regression"
    np.testing.assert_array_equal(runtime.predict(batch(X)), model.predict(X))


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b'{"learner": "not a model"}', "not an XGBoost model file"),
        (json.dumps({"model": "ridge", "coef": [1, 2]}).encode(), "not an XGBoost model file"),
        (b"\x00\x01\x02 random bytes", "not an XGBoost model file"),
        (b"", "not an XGBoost model file"),
    ],
    ids=["bad-learner", "other-json", "random-bytes", "empty"],
)
def test_a_file_that_is_not_a_booster_is_refused(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "m.json"
    path.write_bytes(content)
    with pytest.raises(InvalidModel, match=message):
        XGBoostRuntime.load(path)


def test_a_file_without_suffix_loads_by_content(tmp_path: Path) -> None:
    """Stored artifacts have no suffix; xgboost would take them for JSON by default."""
    model = xgboost.XGBClassifier(**TINY).fit(X, Y)
    path = saved(model, tmp_path / "m.ubj").rename(tmp_path / "artifact")
    np.testing.assert_array_equal(XGBoostRuntime.load(path).predict(batch(X)), model.predict(X))


def test_binary_labels_equal_xgbclassifier_everywhere(tmp_path: Path) -> None:
    model = xgboost.XGBClassifier(**TINY).fit(X, Y)
    runtime = XGBoostRuntime.load(saved(model, tmp_path / "m.json"))
    np.testing.assert_array_equal(runtime.predict(batch(X)), model.predict(X))
    np.testing.assert_allclose(runtime.predict_proba(batch(X)), model.predict_proba(X), rtol=0, atol=1e-7)


def test_binary_probability_of_one_half_is_the_negative_class(tmp_path: Path) -> None:
    """XGBClassifier says 1 only above 0.5; a booster that learned nothing sits exactly there."""
    model = xgboost.XGBClassifier(n_estimators=1, learning_rate=0.0, base_score=0.5).fit(X, Y)
    assert (model.predict_proba(X[:5])[:, 1] == 0.5).all()
    runtime = XGBoostRuntime.load(saved(model, tmp_path / "m.json"))
    np.testing.assert_array_equal(runtime.predict(batch(X[:5])), model.predict(X[:5]))
    np.testing.assert_array_equal(runtime.predict(batch(X[:5])), [0, 0, 0, 0, 0])


@pytest.mark.parametrize(("objective", "target"), [("multi:softmax", Y + (X[:, 1] > 0)), ("binary:hinge", Y)])
def test_label_objectives_give_labels_without_probabilities(
    tmp_path: Path, objective: str, target: np.ndarray
) -> None:
    model = xgboost.XGBClassifier(objective=objective, **TINY).fit(X, target)
    runtime = XGBoostRuntime.load(saved(model, tmp_path / "m.json"))
    assert runtime.signature.output.classes == model.classes_.tolist()
    assert runtime.predict_proba(batch(X)) is None
    labels = runtime.predict(batch(X))
    np.testing.assert_array_equal(labels, model.predict(X))
    assert labels.dtype.kind == "i"


def test_missing_values_are_native(tmp_path: Path) -> None:
    model = xgboost.XGBClassifier(**TINY).fit(X, Y)
    runtime = XGBoostRuntime.load(saved(model, tmp_path / "m.json"))
    holes = X[:6].copy()
    holes[[0, 2, 4], [0, 1, 2]] = np.nan
    np.testing.assert_allclose(
        runtime.predict_proba(batch(holes)), model.predict_proba(holes), rtol=0, atol=1e-7
    )


def test_explicit_classes_name_the_labels(cases: CaseBook) -> None:
    case = cases["xgboost-binary"]
    explicit = Signature.model_validate(
        {"inputs": case.columns, "output": {"kind": "classification", "classes": ["stays", "churns"]}}
    )
    runtime = XGBoostRuntime.load(case.path, signature=explicit)
    rows = Batch(explicit.names, array=np.array([[row["score"], row["visits"]] for row in case.rows]))
    np.testing.assert_array_equal(runtime.predict(rows), np.array(["stays", "churns"])[case.expected])


def test_explicit_signature_gets_the_booster_classes(cases: CaseBook) -> None:
    case = cases["xgboost-multiclass"]
    explicit = Signature.model_validate({"inputs": [{"name": n} for n in ("a", "b", "c", "d")]})
    signature = XGBoostRuntime.load(case.path, signature=explicit).signature
    assert signature.names == ["a", "b", "c", "d"]
    assert signature.output.classes == [0, 1, 2]


def test_made_with_is_the_version_the_json_records(cases: CaseBook) -> None:
    path = cases["xgboost-multiclass"].path
    recorded = json.loads(path.read_bytes())["version"]
    assert XGBoostRuntime.load(path).made_with == {"xgboost": ".".join(map(str, recorded))}


def test_logitraw_gives_margins_not_labels(tmp_path: Path) -> None:
    model = xgboost.XGBClassifier(objective="binary:logitraw", **TINY).fit(X, Y)
    runtime = XGBoostRuntime.load(saved(model, tmp_path / "m.json"))
    assert runtime.signature.output.kind == "other"
    assert runtime.predict_proba(batch(X)) is None
    np.testing.assert_array_equal(runtime.predict(batch(X)), model.predict(X, output_margin=True))
