"""What a table's columns are: inferred kinds and a profile of each column.

The kind of a column decides how training preprocesses it and how the registered pipeline takes it:

    numeric       int or float values                     imputed, scaled
    boolean       bool values, or only true/false words   imputed, as 0/1
    categorical   strings (or pandas categories) of few values  imputed, one-hot encoded
    text          strings of several words, mostly distinct     TF-IDF
    datetime      datetime64 values, or ISO 8601 date strings  year, month, day, weekday, hour
"""

from __future__ import annotations

import re
from typing import Any, Literal

import numpy as np
import pandas as pd

ColumnKind = Literal["numeric", "boolean", "categorical", "text", "datetime"]
KINDS: tuple[ColumnKind, ...] = ("numeric", "boolean", "categorical", "text", "datetime")

TRUE_WORDS = frozenset({"true", "yes", "t", "y"})
FALSE_WORDS = frozenset({"false", "no", "f", "n"})
ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}([ T]\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:?\d{2})?)?$")
TEXT_MIN_WORDS = 3.0
"""A string column whose values average this many words or more, and are mostly distinct, is text."""
TEXT_MIN_DISTINCT = 0.5
SAMPLE_ROWS = 1000
"""Rows of a column looked at to decide its kind (a deterministic head sample)."""
TOP_VALUES = 10


def _strings(series: pd.Series) -> pd.Series:
    return series.dropna().head(SAMPLE_ROWS).astype(str)


def infer_kind(series: pd.Series) -> ColumnKind:
    """The kind of one column (see the module docstring); an all-missing column is numeric."""
    dtype = series.dtype
    if pd.api.types.is_bool_dtype(dtype):
        return "boolean"
    if pd.api.types.is_numeric_dtype(dtype):
        return "numeric"
    if pd.api.types.is_datetime64_any_dtype(dtype):
        return "datetime"
    if isinstance(dtype, pd.CategoricalDtype):
        return "categorical"
    values = series.dropna().head(SAMPLE_ROWS)
    if values.empty:
        return "numeric"
    if all(isinstance(v, bool | np.bool_) for v in values):
        return "boolean"
    strings = values.astype(str).str.strip()
    lowered = set(strings.str.lower())
    if lowered <= TRUE_WORDS | FALSE_WORDS and lowered & TRUE_WORDS and lowered & FALSE_WORDS:
        return "boolean"
    if strings.map(lambda s: bool(ISO_DATE.match(s))).all():
        return "datetime"
    words = strings.str.split().str.len().mean()
    distinct = strings.nunique() / len(strings)
    if words >= TEXT_MIN_WORDS and distinct >= TEXT_MIN_DISTINCT:
        return "text"
    return "categorical"


def infer_kinds(frame: pd.DataFrame) -> dict[str, ColumnKind]:
    """Every column's kind, in the frame's column order."""
    return {str(name): infer_kind(frame[name]) for name in frame.columns}


def as_boolean(series: pd.Series) -> pd.Series:
    """A boolean column as floats 1.0 / 0.0, missing as NaN (true/false words accepted)."""
    if pd.api.types.is_bool_dtype(series.dtype) or pd.api.types.is_numeric_dtype(series.dtype):
        return series.astype(float)
    lowered = series.astype(object).map(lambda v: None if pd.isna(v) else str(v).strip().lower())
    flags = lowered.map(lambda v: 1.0 if v in TRUE_WORDS else 0.0 if v in FALSE_WORDS else np.nan)
    return flags.astype(float)


def as_datetime(series: pd.Series) -> pd.Series:
    """A datetime column as ``datetime64[ns]``; values that do not parse become NaT."""
    if pd.api.types.is_datetime64_any_dtype(series.dtype):
        parsed = series
    else:
        parsed = pd.to_datetime(series, errors="coerce", format="ISO8601", utc=True)
    if getattr(parsed.dt, "tz", None) is not None:
        parsed = parsed.dt.tz_convert("UTC").dt.tz_localize(None)
    return parsed


def _number(value: Any) -> float | None:
    number = float(value)
    return None if np.isnan(number) or np.isinf(number) else number


def _column_profile(series: pd.Series, kind: ColumnKind) -> dict[str, Any]:
    missing = int(series.isna().sum())
    present = series.dropna()
    profile: dict[str, Any] = {
        "name": str(series.name),
        "kind": kind,
        "dtype": str(series.dtype),
        "missing": missing,
        "unique": int(present.astype(str).nunique()) if kind != "numeric" else int(present.nunique()),
    }
    profile["stats"] = None
    if kind == "numeric":
        values = present.astype(float)
        values = values[np.isfinite(values)]  # read_csv makes "inf" cells infinite
        if values.empty:
            return profile
        quantiles = values.quantile([0.25, 0.5, 0.75]).tolist()
        profile["stats"] = {
            "mean": _number(values.mean()),
            "std": _number(values.std(ddof=1)) if len(values) > 1 else None,
            "min": _number(values.min()),
            "q25": _number(quantiles[0]),
            "median": _number(quantiles[1]),
            "q75": _number(quantiles[2]),
            "max": _number(values.max()),
        }
    elif kind == "boolean":
        flags = as_boolean(series).dropna()
        profile["stats"] = {"true": int(flags.sum()), "false": int(len(flags) - flags.sum())}
    elif kind == "categorical":
        counts = present.astype(str).value_counts().head(TOP_VALUES)
        profile["stats"] = {"top": [{"value": str(k), "count": int(v)} for k, v in counts.items()]}
    elif kind == "text":
        lengths = present.astype(str).str.len()
        profile["stats"] = {
            "mean_length": _number(lengths.mean()) if not lengths.empty else None,
            "max_length": int(lengths.max()) if not lengths.empty else None,
        }
    elif kind == "datetime":
        stamps = as_datetime(series).dropna()
        profile["stats"] = {
            "min": stamps.min().isoformat() if not stamps.empty else None,
            "max": stamps.max().isoformat() if not stamps.empty else None,
        }
    return profile


def profile_frame(frame: pd.DataFrame) -> dict[str, Any]:
    """``{"rows": n, "columns": [{"name", "kind", "dtype", "missing", "unique", "stats"}, ...]}``.

    ``stats`` depends on the kind: mean, std, min, quartiles and max for numeric columns; true and
    false counts for boolean ones; the ten most frequent values for categorical ones; mean and
    largest length for text; earliest and latest for datetimes. Every number is JSON-safe (no NaN).
    """
    kinds = infer_kinds(frame)
    return {
        "rows": len(frame),
        "columns": [_column_profile(frame[name], kinds[str(name)]) for name in frame.columns],
    }


def kinds_of(profile: dict[str, Any]) -> dict[str, ColumnKind]:
    """The kinds recorded in a profile made by :func:`profile_frame`."""
    return {column["name"]: column["kind"] for column in profile["columns"]}
