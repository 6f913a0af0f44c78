"""build_pipeline(): one real ColumnTransformer branch per column kind, then the estimator."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest
from scipy import sparse
from sklearn.base import clone
from sklearn.compose import ColumnTransformer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import MinMaxScaler, StandardScaler
from training_tables import everything

from wharf.services.profiling import ColumnKind, infer_kinds
from wharf.services.training.pipeline import build_pipeline, text_branch
from wharf.services.training.spec import TrainSpec

FEATURES = ["area", "garden", "furnished", "district", "sold", "listed", "note"]


def spec(**fields: Any) -> TrainSpec:
    return TrainSpec.model_validate({"dataset": 1, "target": "price", "task": "regression", **fields})


def kinds(frame: pd.DataFrame) -> dict[str, ColumnKind]:
    found = infer_kinds(frame)
    return {name: found[name] for name in FEATURES}


def branches(pipeline: Pipeline) -> dict[str, tuple[list[str], Any]]:
    prepare = pipeline.named_steps["prepare"]
    return {
        name: ([type(s).__name__ for _, s in t.steps], columns) for name, t, columns in prepare.transformers
    }


def test_a_branch_per_kind() -> None:
    frame = everything()
    pipeline = build_pipeline(spec(algorithm="ridge"), kinds(frame))
    assert isinstance(pipeline, Pipeline) and isinstance(pipeline.named_steps["prepare"], ColumnTransformer)
    assert branches(pipeline) == {
        "numeric": (["SimpleImputer", "StandardScaler"], ["area"]),
        "boolean": (["BooleanColumns", "SimpleImputer"], ["garden", "furnished"]),
        "categorical": (["StringColumns", "SimpleImputer", "OneHotEncoder"], ["district"]),
        "datetime": (["DatetimeParts", "SimpleImputer", "StandardScaler"], ["sold", "listed"]),
        "text_note": (["TextDocuments", "TfidfVectorizer"], "note"),
    }
    assert type(pipeline.named_steps["model"]).__name__ == "Ridge"
    clone(pipeline).set_params(model__alpha=2.0)  # a real, cloneable scikit-learn object


def test_feature_names_read_back() -> None:
    frame = everything()
    pipeline = build_pipeline(spec(algorithm="ridge"), kinds(frame)).fit(frame[FEATURES], frame["price"])
    names = pipeline[:-1].get_feature_names_out().tolist()
    assert names[:3] == ["numeric__area", "boolean__garden", "boolean__furnished"]
    assert {"categorical__district_north", "datetime__sold_month", "datetime__listed_hour"} <= set(names)
    assert any(name.startswith("text_note__") for name in names)


@pytest.mark.parametrize(
    ("scaling", "algorithm", "expected"),
    [
        ("standard", "ridge", StandardScaler),
        ("minmax", "knn", MinMaxScaler),
        ("none", "ridge", None),
        ("standard", "random_forest", None),  # trees: no scaling whatever is asked
        ("minmax", "lightgbm", None),
    ],
)
def test_scaling(scaling: str, algorithm: str, expected: type | None) -> None:
    pipeline = build_pipeline(
        spec(algorithm=algorithm, preprocessing={"scaling": scaling}), kinds(everything())
    )
    for name in ("numeric", "datetime"):
        branch = {n: t for n, t, _ in pipeline.named_steps["prepare"].transformers}[name]
        steps = dict(branch.steps)
        assert (type(steps["scale"]) if "scale" in steps else None) is expected


@pytest.mark.parametrize(("algorithm", "dense"), [("gradient_boosting", True), ("random_forest", False)])
def test_dense_output_where_the_estimator_needs_it(algorithm: str, dense: bool) -> None:
    frame = everything()
    prepare = build_pipeline(spec(algorithm=algorithm), kinds(frame)).named_steps["prepare"]
    assert prepare.sparse_threshold == (0.0 if dense else 0.3)  # scikit-learn's default otherwise
    if dense:
        assert not sparse.issparse(prepare.fit_transform(frame[FEATURES]))


def test_imputation_settings() -> None:
    frame = everything()
    settings = {
        "numeric_imputation": "constant",
        "categorical_imputation": "constant",
        "datetime_parts": ["year"],
    }
    pipeline = build_pipeline(spec(algorithm="ridge", preprocessing=settings), kinds(frame))
    prepare = pipeline.named_steps["prepare"].fit(frame[FEATURES])
    named = prepare.named_transformers_
    assert named["numeric"].named_steps["impute"].strategy == "constant"
    assert "categorical__district_missing_value" in prepare.get_feature_names_out()
    assert named["datetime"].named_steps["parts"].parts == ("year",)
    area = prepare.transform(frame[FEATURES].assign(area=np.nan))[:, 0]
    assert np.all(np.asarray(area.todense() if sparse.issparse(area) else area) == area[0])


def test_text_settings_and_branch_names() -> None:
    frame = pd.DataFrame(
        {"a__b": ["one two three", "four five six", "seven eight nine"], "y": [1.0, 2.0, 3.0]}
    )
    pipeline = build_pipeline(spec(target="y", preprocessing={"text_max_features": 2}), {"a__b": "text"})
    assert text_branch("a__b") == "text_a_b"
    prepared = pipeline.named_steps["prepare"].fit_transform(frame[["a__b"]])
    assert prepared.shape == (3, 2)


def test_the_task_must_be_resolved_first() -> None:
    with pytest.raises(ValueError, match="check"):
        build_pipeline(spec(task="auto"), {"area": "numeric"})
