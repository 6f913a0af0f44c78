"""Small tables for the training tests, made here or taken from scikit-learn, and the check that a
trained pipeline, registered as joblib and fed JSON rows through wharf's decoder, answers as it
does in process.

Tables are tiny on purpose (the machine is shared): what is tested is that wharf computes what
scikit-learn computes, not that the models are good.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import orjson
import pandas as pd
from sklearn import datasets

from wharf.runtimes.sklearn import SklearnRuntime
from wharf.services.decoding import Decoder

SEED = 0
WORDS = {
    "good": ["great", "lovely", "friendly", "quick", "tasty", "warm", "clean", "kind"],
    "bad": ["cold", "slow", "rude", "noisy", "bitter", "dirty", "late", "bland"],
    "plain": ["food", "staff", "room", "coffee", "view", "service", "table", "evening"],
}


def diabetes() -> pd.DataFrame:
    """scikit-learn's diabetes regression table: ten float columns and ``target``."""
    X, y = datasets.load_diabetes(return_X_y=True, as_frame=True)
    return X.assign(target=y)


def cancer(rows: int = 300) -> pd.DataFrame:
    """The breast-cancer binary table (integer labels 0 and 1), every other row up to ``rows``."""
    X, y = datasets.load_breast_cancer(return_X_y=True, as_frame=True)
    return X.assign(diagnosis=y).iloc[::2].head(rows)


def wine() -> pd.DataFrame:
    """The wine table with three classes as strings (``class_0`` ...)."""
    data = datasets.load_wine(as_frame=True)
    return data.data.assign(cultivar=data.target_names[data.target])


def mixed(rows: int = 160) -> pd.DataFrame:
    """Numbers and a categorical column, with missing values in each; a yes/no target."""
    rng = np.random.default_rng(SEED)
    frame = pd.DataFrame(
        {
            "age": rng.normal(40, 12, size=rows).round(),
            "income": rng.normal(50, 15, size=rows).round(1),
            "city": rng.choice(["Paris", "Rome", "Lima", "Oslo"], size=rows).astype(object),
        }
    )
    noise = rng.random(rows) < 0.1
    frame["bought"] = np.where((frame["age"] > 40) ^ (frame["city"] == "Rome") ^ noise, "yes", "no")
    for column, count in (("age", 12), ("income", 10), ("city", 15)):
        frame.loc[rng.choice(rows, size=count, replace=False), column] = np.nan
    return frame


def reviews(rows: int = 120) -> pd.DataFrame:
    """Short reviews (a text column) and their sentiment, ``good`` or ``bad``."""
    rng = np.random.default_rng(SEED)
    labels = rng.choice(["good", "bad"], size=rows)
    texts = []
    for label in labels:
        words = [*rng.choice(WORDS[label], size=2), *rng.choice(WORDS["plain"], size=2)]
        if rng.random() < 0.15:
            words.append(rng.choice(WORDS["bad" if label == "good" else "good"]))
        texts.append(" ".join(rng.permutation(words)))
    return pd.DataFrame({"review": texts, "sentiment": labels})


def everything(rows: int = 120) -> pd.DataFrame:
    """Every column kind, each with missing values: numeric, boolean (bools and words),
    categorical, datetime (datetime64 and ISO strings with offsets) and text; a numeric target."""
    rng = np.random.default_rng(SEED)
    frame = pd.DataFrame(
        {
            "area": rng.normal(80, 20, size=rows).round(1),
            "garden": rng.choice([True, False], size=rows).astype(object),
            "furnished": rng.choice(["yes", "no", "Yes", "NO"], size=rows).astype(object),
            "district": rng.choice(["north", "south", "east"], size=rows).astype(object),
            "sold": pd.Timestamp("2021-01-01") + pd.to_timedelta(rng.integers(0, 900, size=rows), unit="D"),
            "listed": [_listed(rng) for _ in range(rows)],
            "note": [" ".join(rng.choice(WORDS["plain"] + WORDS["good"], size=4)) for _ in range(rows)],
        }
    )
    frame["price"] = (
        frame["area"] * 3
        + np.where(frame["garden"].astype(bool), 40, 0)
        + np.where(frame["district"] == "north", 25, 0)
        + rng.normal(0, 5, size=rows)
    )
    for column in ("area", "garden", "furnished", "district", "sold", "listed", "note"):
        missing = rng.choice(rows, size=8, replace=False)
        frame.loc[missing, column] = pd.NaT if column == "sold" else None
    return frame


def _listed(rng: np.random.Generator) -> str:
    """An ISO 8601 datetime string with an offset."""
    month, day, hour = rng.integers(1, 13), rng.integers(1, 29), rng.integers(0, 24)
    return f"2022-{month:02d}-{day:02d}T{hour:02d}:30:00+02:00"


def json_value(value: Any) -> Any:
    """A cell as a JSON client sends it: null for missing, ISO 8601 for datetimes."""
    if value is None or value is pd.NaT or (isinstance(value, float) and math.isnan(value)):
        return None
    if isinstance(value, pd.Timestamp):
        return value.isoformat()
    if isinstance(value, np.generic):
        return value.item()
    return value


def json_rows(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """The rows of ``frame`` after a trip through JSON bytes."""
    rows = [{str(k): json_value(v) for k, v in row.items()} for row in frame.to_dict(orient="records")]
    return orjson.loads(orjson.dumps(rows))  # type: ignore[no-any-return]


def served(result: Any, folder: Path, rows: pd.DataFrame) -> tuple[np.ndarray, np.ndarray | None]:
    """Predictions (and probabilities) of ``result.pipeline`` registered as joblib with
    ``result.signature``, for ``rows`` sent as JSON ``instances``."""
    path = folder / "trained.joblib"
    joblib.dump(result.pipeline, path)
    runtime = SklearnRuntime.load(path, signature=result.signature)
    batch = Decoder(runtime.signature, max_rows=10_000).decode({"instances": json_rows(rows)})
    return runtime.predict(batch), runtime.predict_proba(batch)
