"""LightGBM boosters from their text model files.

``binary`` and ``multiclass`` objectives are classifiers with probabilities; the rest give values.
Missing values are native to LightGBM, so every column is nullable.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from wharf.batch import Batch
from wharf.errors import InvalidModel, MissingDependency
from wharf.runtimes.base import calling_model, complete, labels_from_proba
from wharf.signature import Column, Output, Signature


def _lgb() -> Any:
    try:
        import lightgbm
    except ImportError as exc:
        raise MissingDependency(
            "Serving LightGBM models needs lightgbm; run: pip install 'wharf[lightgbm]'."
        ) from exc
    return lightgbm


def _header(path: Path) -> dict[str, str]:
    """``key=value`` lines of the model file before its first tree."""
    values: dict[str, str] = {}
    with path.open("r", encoding="utf-8", errors="replace") as fh:
        for line in fh:
            if line.startswith("Tree="):
                break
            key, sep, value = line.rstrip("\n").partition("=")
            if sep:
                values[key] = value
    return values


class LightGBMRuntime:
    """A ``lightgbm.Booster``."""

    format: ClassVar[str] = "lightgbm"
    framework: ClassVar[str] = "lightgbm"

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
        fmt: str = "lightgbm",
        signature: Signature | None = None,
        trusted: tuple[str, ...] = (),
    ) -> LightGBMRuntime:
        lgb = _lgb()
        try:
            header = _header(path)
            if "objective" not in header:
                raise ValueError("no 'objective=' line before the first tree")
            booster = lgb.Booster(model_file=str(path))
        except Exception as exc:
            reason = str(exc).replace(str(path), path.name)  # no server paths in client messages
            raise InvalidModel(
                f"This is not a LightGBM text model file: {reason}. Save the model with "
                "booster.save_model('model.txt')."
            ) from exc
        objective = header["objective"].split()[0]
        n_class = int(header.get("num_class", "1"))
        if objective == "binary":
            output = Output(kind="classification", classes=[0, 1])
        elif objective in {"multiclass", "multiclassova"}:
            output = Output(kind="classification", classes=list(range(n_class)))
        elif objective in {"lambdarank", "rank_xendcg"}:
            output = Output(kind="other")
        else:
            output = Output(kind="regression")
        columns = [Column(name=name, nullable=True) for name in booster.feature_name()]
        inferred = Signature(inputs=columns, output=output)
        made_with = {"lightgbm": lgb.__version__}
        return cls(booster, objective, complete(inferred, signature, "LightGBM model"), made_with)

    def _raw(self, batch: Batch) -> np.ndarray:
        with calling_model("LightGBM"):
            return np.asarray(self.booster.predict(batch.as_array(np.float64)))

    def predict(self, batch: Batch) -> np.ndarray:
        proba = self.predict_proba(batch)
        if proba is not None:
            return labels_from_proba(proba, self.signature.output.classes)
        return self._raw(batch)

    def predict_proba(self, batch: Batch) -> np.ndarray | None:
        if self.objective == "binary":
            p = self._raw(batch)
            return np.column_stack([1.0 - p, p])
        if self.objective in {"multiclass", "multiclassova"}:
            return self._raw(batch)
        return None
