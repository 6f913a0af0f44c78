"""Tiny real models of every format, trained once per session into a temporary folder.

Each :class:`Case` carries the file, its format, rows to send, and the in-process model's own
``predict`` / ``predict_proba`` on those rows, which HTTP answers must equal. :data:`BUILDERS`
names every case; :class:`CaseBook` trains each one on first use.

Training is deliberately tiny (a few trees, a few iterations): what is tested is that wharf
serves exactly what the model computes, not that the model is any good.
"""

from __future__ import annotations

import json
import math
import pickle
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pandas as pd
from sklearn import datasets
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import RandomForestClassifier
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

SEED = 0
N_ROWS = 6
"""Rows sent per case, spread over datasets sorted by class so that every class is among them."""


@dataclass
class Case:
    name: str
    path: Path
    fmt: str
    rows: list[dict[str, Any]]
    """Rows keyed by column, as a client sends them."""
    expected: np.ndarray
    """The in-process model's predict() on ``rows``."""
    expected_proba: np.ndarray | None = None
    """The in-process model's predict_proba() on ``rows``, for classifiers."""
    signature: dict[str, Any] | None = None
    """An explicit signature to register with, where the file cannot say."""
    classes: list[Any] | None = None
    """The model's ``classes_``, which responses must name in ``predict_proba`` column order."""
    columns: list[dict[str, Any]] = field(default_factory=list)
    """The signature inputs wharf must infer (or keep): ``{"name", "dtype", "nullable"}`` each."""
    kind: str = "other"
    """The signature output kind wharf must infer."""
    model: Any = None
    """The in-process model the expectations come from."""
    extra: dict[str, Any] = field(default_factory=dict)
    """What a per-runtime test needs besides, e.g. ``feed``: an ONNX graph's input by name."""


Builder = Callable[[Path], Case]


def column(name: str, dtype: str = "float64", nullable: bool = False) -> dict[str, Any]:
    """One expected signature input, in the JSON form the API answers."""
    return {"name": name, "dtype": dtype, "nullable": nullable}


def records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """Rows of ``frame`` as JSON-ready dicts: Python scalars, NaN as None."""
    return [{str(k): _plain(v) for k, v in row.items()} for row in frame.to_dict(orient="records")]


def _plain(value: Any) -> Any:
    if isinstance(value, np.generic):
        value = value.item()
    return None if isinstance(value, float) and math.isnan(value) else value


def numbered(array: np.ndarray, prefix: str = "x") -> list[dict[str, Any]]:
    """Rows of a 2-D array keyed ``{prefix}0 .. {prefix}{n-1}``."""
    return [{f"{prefix}{j}": float(v) for j, v in enumerate(row)} for row in array]


def spread(n: int, total: int) -> np.ndarray:
    """``n`` row indices spread evenly over ``total`` rows (so sorted datasets give every class)."""
    return np.linspace(0, total - 1, n).astype(int)


def _iris() -> tuple[pd.DataFrame, np.ndarray]:
    """The iris measurements (a DataFrame) and species names as string labels."""
    X, y = datasets.load_iris(return_X_y=True, as_frame=True)
    return X, datasets.load_iris().target_names[y]


# -- scikit-learn ---------------------------------------------------------------------------


def joblib_iris(folder: Path) -> Case:
    """StandardScaler + LogisticRegression fitted on a DataFrame with string class labels."""
    X, y = _iris()
    model = Pipeline([("scale", StandardScaler()), ("clf", LogisticRegression(max_iter=500))]).fit(X, y)
    path = folder / "iris.joblib"
    joblib.dump(model, path)
    sample = X.iloc[spread(N_ROWS, len(X))]
    return Case(
        name="joblib-iris",
        path=path,
        fmt="joblib",
        rows=records(sample),
        expected=model.predict(sample),
        expected_proba=model.predict_proba(sample),
        classes=model.classes_.tolist(),
        columns=[column(str(name)) for name in X.columns],
        kind="classification",
        model=model,
    )


def pickle_ridge(folder: Path) -> Case:
    """A Ridge regressor fitted on a plain array: no feature names, so columns x0 .. x9."""
    X, y = datasets.load_diabetes(return_X_y=True)
    model = Ridge(alpha=0.5).fit(X, y)
    path = folder / "ridge.pkl"
    path.write_bytes(pickle.dumps(model))
    sample = X[spread(N_ROWS, len(X))]
    return Case(
        name="pickle-ridge",
        path=path,
        fmt="pickle",
        rows=numbered(sample),
        expected=model.predict(sample),
        columns=[column(f"x{j}") for j in range(X.shape[1])],
        kind="regression",
        model=model,
    )


def skops_forest(folder: Path) -> Case:
    """A small RandomForestClassifier in the skops format, fitted on the wine DataFrame."""
    import skops.io as sio

    X, y = datasets.load_wine(return_X_y=True, as_frame=True)
    model = RandomForestClassifier(n_estimators=8, max_depth=3, random_state=SEED).fit(X, y)
    path = folder / "wine.skops"
    sio.dump(model, path)
    sample = X.iloc[spread(N_ROWS, len(X))]
    return Case(
        name="skops-forest",
        path=path,
        fmt="skops",
        rows=records(sample),
        expected=model.predict(sample),
        expected_proba=model.predict_proba(sample),
        classes=model.classes_.tolist(),
        # scikit-learn's forests route missing values down a learned branch: every column nullable.
        columns=[column(str(name), nullable=True) for name in X.columns],
        kind="classification",
        model=model,
    )


CORPUS = [
    ("the service was quick and friendly", "good"),
    ("great food and a lovely evening", "good"),
    ("friendly staff, great coffee", "good"),
    ("lovely view and quick service", "good"),
    ("what a great and friendly place", "good"),
    ("slow service and cold food", "bad"),
    ("the coffee was cold and bitter", "bad"),
    ("rude staff, slow and noisy", "bad"),
    ("noisy room and a bitter taste", "bad"),
    ("cold, slow, rude: never again", "bad"),
]


def text_tfidf(folder: Path) -> Case:
    """TfidfVectorizer + LogisticRegression on a small corpus: one string column ``text``."""
    texts, labels = zip(*CORPUS, strict=True)
    model = Pipeline([("tfidf", TfidfVectorizer()), ("clf", LogisticRegression())]).fit(texts, labels)
    path = folder / "reviews.joblib"
    joblib.dump(model, path)
    sample = ["quick and friendly", "cold and noisy", "great coffee", "rude", "a word never seen"]
    return Case(
        name="text-tfidf",
        path=path,
        fmt="joblib",
        rows=[{"text": text} for text in sample],
        expected=model.predict(sample),
        expected_proba=model.predict_proba(sample),
        classes=model.classes_.tolist(),
        columns=[column("text", "string")],
        kind="classification",
        model=model,
    )


def _mixed_frame(n: int) -> tuple[pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(SEED)
    frame = pd.DataFrame(
        {
            "city": rng.choice(["Paris", "Rome", "Lima"], size=n),
            "age": rng.normal(40, 12, size=n).round(),
            "income": rng.normal(50, 15, size=n).round(1),
        }
    )
    target = np.where((frame["age"] > 40) ^ (frame["city"] == "Rome"), "yes", "no")
    frame.loc[rng.choice(n, size=6, replace=False), "age"] = np.nan
    frame.loc[rng.choice(n, size=6, replace=False), "income"] = np.nan
    return frame, target


def mixed_columns(folder: Path) -> Case:
    """ColumnTransformer: one-hot on a string column, impute + scale on numeric columns with NaN."""
    X, y = _mixed_frame(80)
    numeric = Pipeline([("impute", SimpleImputer()), ("scale", StandardScaler())])
    prep = ColumnTransformer(
        [
            ("city", OneHotEncoder(handle_unknown="ignore"), ["city"]),
            ("numbers", numeric, ["age", "income"]),
        ]
    )
    model = Pipeline([("prep", prep), ("clf", LogisticRegression())]).fit(X, y)
    path = folder / "mixed.joblib"
    joblib.dump(model, path)
    sample = pd.DataFrame(
        {
            "city": ["Paris", "Rome", "Lima", "Rome", "Oslo", "Paris"],
            "age": [25.0, np.nan, 61.0, 33.0, 47.0, np.nan],
            "income": [40.5, 55.0, np.nan, 70.0, np.nan, np.nan],
        }
    )
    return Case(
        name="mixed-columns",
        path=path,
        fmt="joblib",
        rows=records(sample),
        expected=model.predict(sample),
        expected_proba=model.predict_proba(sample),
        classes=model.classes_.tolist(),
        columns=[
            {**column("city", "string"), "categories": sorted(X["city"].unique().tolist())},
            column("age", nullable=True),
            column("income", nullable=True),
        ],
        kind="classification",
        model=model,
    )


# -- ONNX ------------------------------------------------------------------------------------
# The graphs compute in float32; their answers agree with the scikit-learn originals on float32
# rows to about 1e-7, so the originals are the reference.


def onnx_zipmap(folder: Path) -> Case:
    """skl2onnx LogisticRegression with the default ZipMap output (one dict per row).

    The graph has no wharf metadata: columns come from its input width, classes from its nodes.
    """
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import FloatTensorType

    X, y = _iris()
    X = X.to_numpy(np.float32)
    model = LogisticRegression(max_iter=500).fit(X, y)
    onx = convert_sklearn(
        model, initial_types=[("features", FloatTensorType([None, X.shape[1]]))], target_opset=17
    )
    path = folder / "iris-zipmap.onnx"
    path.write_bytes(onx.SerializeToString())
    sample = X[spread(N_ROWS, len(X))]
    return Case(
        name="onnx-zipmap",
        path=path,
        fmt="onnx",
        rows=numbered(sample),
        expected=model.predict(sample),
        expected_proba=model.predict_proba(sample),
        classes=model.classes_.tolist(),
        columns=[column(f"x{j}", "float32") for j in range(X.shape[1])],
        kind="classification",
        model=model,
        extra={"feed": {"features": sample}},
    )


def onnx_mlp(folder: Path) -> Case:
    """skl2onnx MLPClassifier with ``zipmap=False`` and wharf.columns / wharf.classes metadata."""
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import FloatTensorType

    X, y = datasets.load_iris(return_X_y=True, as_frame=True)
    names = [str(c) for c in X.columns]
    data = X.to_numpy(np.float32)
    model = MLPClassifier(hidden_layer_sizes=(8,), learning_rate_init=0.02, max_iter=600, random_state=SEED)
    model.fit(data, y.to_numpy())
    onx = convert_sklearn(
        model,
        initial_types=[("measurements", FloatTensorType([None, data.shape[1]]))],
        options={id(model): {"zipmap": False}},
        target_opset=17,
    )
    for key, value in {"wharf.columns": names, "wharf.classes": model.classes_.tolist()}.items():
        prop = onx.metadata_props.add()
        prop.key, prop.value = key, json.dumps(value)
    path = folder / "iris-mlp.onnx"
    path.write_bytes(onx.SerializeToString())
    sample = data[spread(N_ROWS, len(data))]
    return Case(
        name="onnx-mlp",
        path=path,
        fmt="onnx",
        rows=[dict(zip(names, map(float, row), strict=True)) for row in sample],
        expected=model.predict(sample),
        expected_proba=model.predict_proba(sample),
        classes=model.classes_.tolist(),
        columns=[column(name, "float32") for name in names],
        kind="classification",
        model=model,
        extra={"feed": {"measurements": sample}},
    )


def onnx_explicit(folder: Path) -> Case:
    """An ONNX LogisticRegression whose input width is not fixed: registered with a signature.

    The explicit signature names the columns and says nothing of the output; the classes must
    still come from the graph.
    """
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import FloatTensorType

    X, y = datasets.load_iris(return_X_y=True)
    X = X.astype(np.float32)
    model = LogisticRegression(max_iter=500).fit(X, y)
    onx = convert_sklearn(model, initial_types=[("features", FloatTensorType([None, None]))], target_opset=17)
    path = folder / "any-width.onnx"
    path.write_bytes(onx.SerializeToString())
    names = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
    sample = X[spread(N_ROWS, len(X))]
    return Case(
        name="onnx-explicit",
        path=path,
        fmt="onnx",
        rows=[dict(zip(names, map(float, row), strict=True)) for row in sample],
        expected=model.predict(sample),
        expected_proba=model.predict_proba(sample),
        signature={"inputs": [{"name": name} for name in names]},
        classes=model.classes_.tolist(),
        columns=[column(name) for name in names],
        kind="classification",
        model=model,
        extra={"feed": {"features": sample}},
    )


# -- XGBoost ---------------------------------------------------------------------------------


def xgboost_multiclass(folder: Path) -> Case:
    """A 3-class XGBClassifier on the iris DataFrame, saved as the booster's JSON."""
    import xgboost

    X, y = datasets.load_iris(return_X_y=True, as_frame=True)
    model = xgboost.XGBClassifier(n_estimators=4, max_depth=2, random_state=SEED).fit(X, y)
    path = folder / "m.json"
    model.get_booster().save_model(str(path))
    sample = X.iloc[spread(N_ROWS, len(X))]
    return Case(
        name="xgboost-multiclass",
        path=path,
        fmt="xgboost",
        rows=records(sample),
        expected=model.predict(sample),
        expected_proba=model.predict_proba(sample),
        classes=model.classes_.tolist(),
        columns=[column(str(name), nullable=True) for name in X.columns],
        kind="classification",
        model=model,
    )


def _binary_frame(n: int) -> tuple[pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(SEED)
    frame = pd.DataFrame(
        {"score": rng.normal(size=n), "visits": rng.integers(0, 20, size=n).astype(np.int64)}
    )
    target = ((frame["score"] + frame["visits"] / 10 + rng.normal(0, 0.5, size=n)) > 1).astype(int)
    return frame, target.to_numpy()


def xgboost_binary(folder: Path) -> Case:
    """A binary XGBClassifier on a frame with an integer column (feature type ``int``)."""
    import xgboost

    X, y = _binary_frame(120)
    model = xgboost.XGBClassifier(n_estimators=5, max_depth=2, random_state=SEED).fit(X, y)
    path = folder / "binary.ubj"
    model.get_booster().save_model(str(path))
    sample = X.iloc[:8]
    return Case(
        name="xgboost-binary",
        path=path,
        fmt="xgboost",
        rows=records(sample),
        expected=model.predict(sample),
        expected_proba=model.predict_proba(sample),
        classes=model.classes_.tolist(),
        columns=[column("score", nullable=True), column("visits", "int64", nullable=True)],
        kind="classification",
        model=model,
    )


def xgboost_regressor(folder: Path) -> Case:
    """An XGBRegressor fitted on a plain array, saved as UBJSON: columns x0 .. x9."""
    import xgboost

    X, y = datasets.load_diabetes(return_X_y=True)
    model = xgboost.XGBRegressor(n_estimators=5, max_depth=3, random_state=SEED).fit(X, y)
    path = folder / "diabetes.ubj"
    model.get_booster().save_model(str(path))
    sample = X[spread(N_ROWS, len(X))]
    return Case(
        name="xgboost-regressor",
        path=path,
        fmt="xgboost",
        rows=numbered(sample),
        expected=model.predict(sample),
        columns=[column(f"x{j}", nullable=True) for j in range(X.shape[1])],
        kind="regression",
        model=model,
    )


# -- LightGBM --------------------------------------------------------------------------------

LGBM_TINY = {"n_estimators": 5, "num_leaves": 4, "min_child_samples": 5, "verbose": -1}


def lightgbm_binary(folder: Path) -> Case:
    """A binary LGBMClassifier on a DataFrame, saved as the booster's text model file."""
    import lightgbm

    X, y = _binary_frame(120)
    model = lightgbm.LGBMClassifier(**LGBM_TINY, random_state=SEED).fit(X, y)
    path = folder / "m.txt"
    model.booster_.save_model(str(path))
    sample = X.iloc[:8]
    return Case(
        name="lightgbm-binary",
        path=path,
        fmt="lightgbm",
        rows=records(sample),
        expected=model.predict(sample),
        expected_proba=model.predict_proba(sample),
        classes=model.classes_.tolist(),
        columns=[column("score", nullable=True), column("visits", nullable=True)],
        kind="classification",
        model=model,
    )


def lightgbm_regressor(folder: Path) -> Case:
    """An LGBMRegressor fitted on a plain array: LightGBM names its columns Column_0 .. 9."""
    import lightgbm

    X, y = datasets.load_diabetes(return_X_y=True)
    model = lightgbm.LGBMRegressor(**LGBM_TINY, random_state=SEED).fit(X, y)
    path = folder / "diabetes.lgb"
    model.booster_.save_model(str(path))
    sample = X[spread(N_ROWS, len(X))]
    return Case(
        name="lightgbm-regressor",
        path=path,
        fmt="lightgbm",
        rows=numbered(sample, prefix="Column_"),
        expected=model.predict(sample),
        columns=[column(f"Column_{j}", nullable=True) for j in range(X.shape[1])],
        kind="regression",
        model=model,
    )


# -- PMML ------------------------------------------------------------------------------------


def pmml_iris(folder: Path) -> Case:
    """The iris pipeline exported by sklearn2pmml: PMML names the columns; every one is nullable."""
    from wharf.services.exporters.pmml import to_pmml
    from wharf.signature import Column, Signature

    X, y = _iris()
    model = Pipeline([("scale", StandardScaler()), ("clf", LogisticRegression(max_iter=500))]).fit(X, y)
    path = folder / "iris.pmml"
    to_pmml(model, Signature(inputs=[Column(name=str(name)) for name in X.columns]), path)
    sample = X.iloc[spread(N_ROWS, len(X))]
    return Case(
        name="pmml-iris",
        path=path,
        fmt="pmml",
        rows=records(sample),
        expected=model.predict(sample),
        expected_proba=model.predict_proba(sample),
        classes=model.classes_.tolist(),
        columns=[column(str(name), nullable=True) for name in X.columns],
        kind="classification",
        model=model,
    )


BUILDERS: dict[str, Builder] = {
    "joblib-iris": joblib_iris,
    "pickle-ridge": pickle_ridge,
    "skops-forest": skops_forest,
    "text-tfidf": text_tfidf,
    "mixed-columns": mixed_columns,
    "onnx-zipmap": onnx_zipmap,
    "onnx-mlp": onnx_mlp,
    "onnx-explicit": onnx_explicit,
    "xgboost-multiclass": xgboost_multiclass,
    "xgboost-binary": xgboost_binary,
    "xgboost-regressor": xgboost_regressor,
    "lightgbm-binary": lightgbm_binary,
    "lightgbm-regressor": lightgbm_regressor,
    "pmml-iris": pmml_iris,
}
"""Every case by name; the contract test runs over all of them."""


class CaseBook:
    """Builds each case on first use into its own subfolder of ``folder``, then keeps it."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._built: dict[str, Case] = {}

    def __getitem__(self, name: str) -> Case:
        if name not in self._built:
            target = self.folder / name
            target.mkdir(parents=True, exist_ok=True)
            case = BUILDERS[name](target)
            assert case.name == name, f"builder {name!r} made a case named {case.name!r}"
            self._built[name] = case
        return self._built[name]
