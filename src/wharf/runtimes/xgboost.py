"""XGBoost boosters from their own JSON or UBJSON model files.

The objective decides the output: ``binary:logistic`` and ``multi:softprob`` are classifiers with
probabilities, ``binary:hinge`` and ``multi:softmax`` give labels only, everything else gives values
(``binary:logitraw`` its margins). Missing values (null, NaN) are native to XGBoost, so every column
is nullable.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from wharf.batch import Batch
from wharf.errors import InvalidModel, MissingDependency
from wharf.runtimes.base import calling_model, complete, labels_from_proba
from wharf.signature import Column, DType, Output, Signature

FEATURE_TYPES: dict[str, DType] = {"float": "float64", "q": "float64", "int": "int64", "i": "bool"}
LABEL_OBJECTIVES = frozenset({"binary:hinge", "multi:softmax"})
"""Objectives whose raw output is the class index."""


def _xgb() -> Any:
    try:
        import xgboost
    except ImportError as exc:
        raise MissingDependency(
            "Serving XGBoost models needs xgboost; run: pip install 'wharf[xgboost]'."
        ) from exc
    return xgboost


def _saved_version(data: bytes) -> str | None:
    """The xgboost version a JSON model file records (UBJSON files are not read for it)."""
    if data[:1] != b"{":
        return None
    try:
        version = json.loads(data).get("version")
    except ValueError:
        return None
    return ".".join(str(part) for part in version) if isinstance(version, list) else None


class XGBoostRuntime:
    """An ``xgboost.Booster``; predictions through thread-safe ``inplace_predict``."""

    format: ClassVar[str] = "xgboost"
    framework: ClassVar[str] = "xgboost"

    def __init__(self, booster: Any, objective: str, signature: Signature, made_with: dict[str, str]) -> None:
        self.booster = booster
        self.objective = objective
        self.signature = signature
        self.made_with = made_with

    @classmethod
    def load(
        cls,
        path: Path,
        *,
        fmt: str = "xgboost",
        signature: Signature | None = None,
        trusted: tuple[str, ...] = (),
    ) -> XGBoostRuntime:
        xgb = _xgb()
        data = path.read_bytes()
        if not data:  # xgboost aborts the process on an empty buffer
            raise InvalidModel("This is not an XGBoost model file: it is empty.")
        booster = xgb.Booster()
        try:
            # From bytes, not the path: xgboost picks JSON or UBJSON by the file's suffix, and
            # stored artifacts have none; from a buffer it reads the format from the content.
            booster.load_model(bytearray(data))
            config = json.loads(booster.save_config())
        except Exception as exc:
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise InvalidModel(
                f"This is not an XGBoost model file: {reason}. Save the model with "
                "booster.save_model('model.json') or 'model.ubj'."
            ) from exc
        learner = config["learner"]
        objective = learner["objective"]["name"]
        n_class = int(learner["learner_model_param"].get("num_class", "0") or 0)
        inferred = _infer(booster, objective, n_class)
        made_with = {"xgboost": _saved_version(data) or xgb.__version__}
        return cls(booster, objective, complete(inferred, signature, "XGBoost model"), made_with)

    def _raw(self, batch: Batch) -> np.ndarray:
        with calling_model("XGBoost"):
            return np.asarray(
                self.booster.inplace_predict(batch.as_array(np.float32), validate_features=False)
            )

    def predict(self, batch: Batch) -> np.ndarray:
        proba = self.predict_proba(batch)
        if proba is not None:
            return labels_from_proba(proba, self.signature.output.classes)
        raw = self._raw(batch)
        if self.objective in LABEL_OBJECTIVES and self.signature.output.classes:
            return np.asarray(self.signature.output.classes)[raw.astype(np.int64)]
        return raw

    def predict_proba(self, batch: Batch) -> np.ndarray | None:
        if self.objective == "binary:logistic":
            p = self._raw(batch).astype(np.float64)
            return np.column_stack([1.0 - p, p])
        if self.objective == "multi:softprob":
            return self._raw(batch).astype(np.float64)
        return None


def _infer(booster: Any, objective: str, n_class: int) -> Signature | None:
    if objective in {"binary:logistic", "binary:hinge"}:
        output = Output(kind="classification", classes=[0, 1])
    elif objective.startswith("multi:"):
        output = Output(kind="classification", classes=list(range(n_class)))
    elif objective.startswith(("reg:", "count:", "survival:")):
        output = Output(kind="regression")
    else:
        output = Output(kind="other")
    n_features = booster.num_features()
    if n_features < 1:
        return None
    names = booster.feature_names or [f"x{i}" for i in range(n_features)]
    types = booster.feature_types or ["float"] * n_features
    columns = [
        Column(name=name, dtype=FEATURE_TYPES.get(kind, "float64"), nullable=True)
        for name, kind in zip(names, types, strict=True)
    ]
    return Signature(inputs=columns, output=output)
