"""Demo models, trained from datasets that ship inside scikit-learn (nothing is downloaded).

- ``iris``: StandardScaler + LogisticRegression pipeline (joblib);
- ``diabetes``: RandomForestRegressor (skops, the safe format);
- ``digits``: a small MLPClassifier exported to ONNX;
- ``breast-cancer``: HistGradientBoostingClassifier, which takes missing values (joblib).
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pandas as pd
from sklearn import datasets
from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestRegressor
from sklearn.linear_model import LogisticRegression
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from wharf.services.registry import Registration, Registry
from wharf.storage import VersionRecord

SEED = 0


def _example(frame: pd.DataFrame) -> dict[str, Any]:
    return {str(k): v.item() if hasattr(v, "item") else v for k, v in frame.iloc[0].items()}


def _reference(frame: pd.DataFrame) -> dict[str, Any]:
    """The training columns, kept as the version's drift reference."""
    return {str(column): frame[column].to_numpy() for column in frame.columns}


def _iris(folder: Path) -> tuple[Path, Registration]:
    X, y = datasets.load_iris(return_X_y=True, as_frame=True)
    names = datasets.load_iris().target_names
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000)).fit(X, names[y])
    path = folder / "iris.joblib"
    joblib.dump(model, path)
    return path, Registration(
        description="Iris species from flower measurements (StandardScaler + LogisticRegression).",
        tags={"demo": "true", "dataset": "iris"},
        extra={"example": _example(X)},
        reference=_reference(X),
        reference_source="training",
    )


def _diabetes(folder: Path) -> tuple[Path, Registration]:
    import skops.io as sio

    X, y = datasets.load_diabetes(return_X_y=True, as_frame=True)
    model = RandomForestRegressor(n_estimators=50, max_depth=8, random_state=SEED).fit(X, y)
    path = folder / "diabetes.skops"
    sio.dump(model, path)
    return path, Registration(
        description="Diabetes progression after one year (RandomForestRegressor, skops format).",
        tags={"demo": "true", "dataset": "diabetes"},
        extra={"example": _example(X)},
        reference=_reference(X),
        reference_source="training",
    )


def _digits(folder: Path) -> tuple[Path, Registration]:
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import FloatTensorType

    X, y = datasets.load_digits(return_X_y=True, as_frame=True)
    model = MLPClassifier(hidden_layer_sizes=(64,), max_iter=400, random_state=SEED)
    model.fit(X.to_numpy(np.float32), y.to_numpy())
    onx = convert_sklearn(
        model,
        initial_types=[("pixels", FloatTensorType([None, X.shape[1]]))],
        options={id(model): {"zipmap": False}},
        target_opset=17,
    )
    for key, value in {"wharf.columns": list(X.columns), "wharf.classes": model.classes_.tolist()}.items():
        prop = onx.metadata_props.add()
        prop.key, prop.value = key, json.dumps(value)
    path = folder / "digits.onnx"
    path.write_bytes(onx.SerializeToString())
    return path, Registration(
        description="Handwritten digit 0-9 from 8x8 pixel intensities (MLPClassifier exported to ONNX).",
        tags={"demo": "true", "dataset": "digits"},
        extra={"example": _example(X.astype(float))},
        reference=_reference(X.astype(float)),
        reference_source="training",
    )


def _breast_cancer(folder: Path) -> tuple[Path, Registration]:
    X, y = datasets.load_breast_cancer(return_X_y=True, as_frame=True)
    names = datasets.load_breast_cancer().target_names
    model = HistGradientBoostingClassifier(random_state=SEED).fit(X, names[y])
    path = folder / "breast-cancer.joblib"
    joblib.dump(model, path)
    return path, Registration(
        description="Malignant or benign tumour from cell nuclei measurements (gradient boosting).",
        tags={"demo": "true", "dataset": "breast_cancer"},
        extra={"example": _example(X)},
        reference=_reference(X),
        reference_source="training",
    )


DEMOS: dict[str, Callable[[Path], tuple[Path, Registration]]] = {
    "iris": _iris,
    "diabetes": _diabetes,
    "digits": _digits,
    "breast-cancer": _breast_cancer,
}


def install_demos(registry: Registry, force: bool = False) -> list[VersionRecord]:
    """Train and register each demo model that is not registered yet (all of them with ``force``)."""
    present = set(registry.names())
    added = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, train in DEMOS.items():
            if name in present and not force:
                continue
            path, registration = train(Path(tmp))
            added.append(registry.register(name, path, path.name, registration))
    return added
