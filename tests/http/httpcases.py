"""Small real models for the HTTP tests, and the checks those tests share.

Each :class:`Trained` carries the fitted estimator itself, so a test compares what the HTTP API
answers with what the in-process model's own ``predict`` gives on the same rows.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.datasets import load_iris
from sklearn.dummy import DummyClassifier
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from wharf.services import Services
from wharf.services.registry import Registration

PROBLEM = "application/problem+json"
IRIS_COLUMNS = ["sepal_length", "sepal_width", "petal_length", "petal_width"]


@dataclass(frozen=True)
class Trained:
    """A fitted model saved with joblib, and rows to send it."""

    name: str
    path: Path
    model: Any
    rows: pd.DataFrame
    """A few rows in the model's column order, with the dtypes it was fitted on."""
    text: bool = False
    """The model takes a sequence of strings (its one column), not a frame."""

    @property
    def columns(self) -> list[str]:
        return list(self.rows.columns)

    def records(self) -> list[dict[str, Any]]:
        """The rows as JSON objects, with plain Python values."""
        return [
            {key: _plain(value) for key, value in record.items()}
            for record in self.rows.to_dict(orient="records")
        ]

    def lists(self) -> list[list[Any]]:
        """The rows as lists in signature order."""
        return [[record[c] for c in self.columns] for record in self.records()]

    def _inputs(self, rows: pd.DataFrame | None) -> Any:
        rows = self.rows if rows is None else rows
        return rows.iloc[:, 0].tolist() if self.text else rows

    def expected(self, rows: pd.DataFrame | None = None) -> list[Any]:
        """The in-process model's ``predict``, as JSON carries it."""
        return np.asarray(self.model.predict(self._inputs(rows))).tolist()

    def expected_proba(self, rows: pd.DataFrame | None = None) -> np.ndarray:
        """The in-process model's ``predict_proba``."""
        return np.asarray(self.model.predict_proba(self._inputs(rows)))


def _plain(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


def _iris_frame() -> tuple[pd.DataFrame, np.ndarray]:
    iris = load_iris(as_frame=True)
    frame = iris.data.set_axis(IRIS_COLUMNS, axis=1)
    return frame, iris.target_names[iris.target]


def _save(folder: Path, name: str, model: Any, rows: pd.DataFrame, text: bool = False) -> Trained:
    path = folder / f"{name}.joblib"
    joblib.dump(model, path)
    return Trained(name, path, model, rows.reset_index(drop=True), text)


def train_all(folder: Path) -> dict[str, Trained]:
    """iris (numeric classifier), iris_imputed (nullable), iris_constant (a second version),
    reviews (text) and houses (float, int and string columns, a regressor)."""
    x, y = _iris_frame()
    iris_rows = x.iloc[[0, 50, 100, 25, 125]]
    models = [
        _save(
            folder,
            "iris",
            Pipeline([("scale", StandardScaler()), ("clf", LogisticRegression(max_iter=1000))]).fit(x, y),
            iris_rows,
        ),
        _save(
            folder,
            "iris_imputed",
            Pipeline(
                [
                    ("impute", SimpleImputer()),
                    ("scale", StandardScaler()),
                    ("clf", LogisticRegression(max_iter=1000)),
                ]
            ).fit(x, y),
            iris_rows,
        ),
        _save(
            folder,
            "iris_constant",
            DummyClassifier(strategy="constant", constant="virginica").fit(x, y),
            iris_rows,
        ),
    ]
    texts = [
        "good great fine",
        "bad awful terrible",
        "great movie",
        "awful film",
        "fine good",
        "terrible bad",
    ]
    labels = ["pos", "neg", "pos", "neg", "pos", "neg"]
    reviews = Pipeline([("tfidf", TfidfVectorizer()), ("clf", LogisticRegression())]).fit(texts, labels)
    review_rows = pd.DataFrame({"text": ["a great film", "awful, just awful", "fine"]})
    models.append(_save(folder, "reviews", reviews, review_rows, text=True))

    rng = np.random.default_rng(0)
    houses = pd.DataFrame(
        {
            "area": rng.uniform(30, 200, 80),
            "rooms": rng.integers(1, 6, 80),
            "city": rng.choice(["paris", "lyon", "nice"], 80),
        }
    )
    price = houses.area * 3 + houses.rooms * 10 + houses.city.map({"paris": 100, "lyon": 50, "nice": 70})
    prep = ColumnTransformer(
        [
            ("area", StandardScaler(), ["area"]),
            ("rooms", OneHotEncoder(handle_unknown="ignore"), ["rooms"]),
            ("city", OneHotEncoder(handle_unknown="ignore"), ["city"]),
        ]
    )
    house_model = Pipeline([("prep", prep), ("reg", Ridge())]).fit(houses, price)
    models.append(_save(folder, "houses", house_model, houses.iloc[:4]))
    return {m.name: m for m in models}


def register(services: Services, model: Trained, name: str | None = None, **options: Any) -> int:
    """Register ``model`` as the next version of ``name`` (default: its own); its version number."""
    record = services.registry.register(
        name or model.name, model.path, model.path.name, Registration(**options)
    )
    return record.version


def check_problem(
    response: Any,
    status: int,
    *,
    field: str | None = None,
    row: int | None = None,
    column: str | None = None,
    detail: str | None = None,
) -> dict[str, Any]:
    """Assert ``response`` is an RFC 9457 problem of ``status`` placing the fault where given.

    ``detail`` is a fragment the detail must contain. Returns the problem object.
    """
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.mimetype == PROBLEM
    problem = response.get_json(force=True)
    assert problem["status"] == status
    assert problem["type"].startswith("urn:wharf:problem:")
    assert problem["title"] and problem["detail"]
    for key, value in (("field", field), ("row", row), ("column", column)):
        if value is not None:
            assert problem.get(key) == value, (key, problem)
    if detail is not None:
        assert detail in problem["detail"], problem["detail"]
    return problem
