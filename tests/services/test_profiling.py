"""Column kinds and profiles: each kind inferred from what real files hold, each number equal to
what pandas itself computes on the same column."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from wharf.services.profiling import (
    KINDS,
    TOP_VALUES,
    as_boolean,
    as_datetime,
    infer_kind,
    infer_kinds,
    kinds_of,
    profile_frame,
)


@pytest.mark.parametrize(
    ("values", "dtype", "kind"),
    [
        ([1, 2, 3], None, "numeric"),
        ([1.5, None, 3.0], None, "numeric"),
        ([1, None, 3], "Int64", "numeric"),
        ([None, None], "float64", "numeric"),  # all missing: nothing says otherwise
        ([True, False, True], None, "boolean"),
        ([True, None, False], "boolean", "boolean"),
        ([True, None, False], object, "boolean"),
        (["yes", "no", None, "Yes "], None, "boolean"),
        (["t", "f"], None, "boolean"),
        (["yes", "yes"], None, "categorical"),  # only one of the two words: a category
        (["paris", "lyon", "paris", None], None, "categorical"),
        (["a", "b"], "category", "categorical"),
        ([1, 2], "category", "categorical"),
        (["a fine film indeed", "an awful film sadly", "quite good overall"], None, "text"),
        (["a b c", "a b c", "a b c", "a b c"], None, "categorical"),  # many words, few values
        (["2024-01-02", "2024-03-04T10:00:00", None], None, "datetime"),
        (["2024-01-02T10:00:00Z", "2024-01-02 10:00:00+02:00"], None, "datetime"),
        (pd.to_datetime(["2024-01-02", None]), None, "datetime"),
        (["2024-01-02", "soon"], None, "categorical"),
    ],
)
def test_infer_kind(values: list[object], dtype: object, kind: str) -> None:
    series = pd.Series(values, dtype=dtype)
    assert infer_kind(series) == kind


def test_infer_kinds_keeps_the_column_order() -> None:
    frame = pd.DataFrame({"b": [1.0], "a": ["x"], "c": [True]})
    assert list(infer_kinds(frame).items()) == [("b", "numeric"), ("a", "categorical"), ("c", "boolean")]


def test_as_boolean() -> None:
    words = pd.Series(["Yes", "no", None, "TRUE", "f", "maybe"], dtype=object)
    assert as_boolean(words).tolist()[:5] == [1.0, 0.0, pytest.approx(np.nan, nan_ok=True), 1.0, 0.0]
    assert np.isnan(as_boolean(words).iloc[5])
    assert as_boolean(pd.Series([True, False])).tolist() == [1.0, 0.0]
    assert as_boolean(pd.Series([True, False])).dtype == np.float64


def test_as_datetime_is_naive_utc_and_coerces() -> None:
    parsed = as_datetime(pd.Series(["2024-01-02T10:00:00+02:00", "2024-01-02", "not a date", None]))
    assert str(parsed.dtype) == "datetime64[ns]"
    assert parsed.iloc[0] == pd.Timestamp("2024-01-02 08:00:00")
    assert parsed.iloc[1] == pd.Timestamp("2024-01-02")
    assert parsed.iloc[2:].isna().all()
    aware = pd.Series(pd.to_datetime(["2024-01-02T10:00:00+02:00"]))
    assert as_datetime(aware).iloc[0] == pd.Timestamp("2024-01-02 08:00:00")


@pytest.fixture
def frame() -> pd.DataFrame:
    rng = np.random.default_rng(0)
    n = 40
    return pd.DataFrame(
        {
            "area": np.where(np.arange(n) % 7 == 0, np.nan, rng.uniform(30, 200, n)),
            "rooms": rng.integers(1, 6, n),
            "city": rng.choice(["paris", "lyon", "nice", None], n),
            "garden": rng.choice(["yes", "no"], n),
            "review": [f"review number {i} says words" for i in range(n)],
            "sold": pd.Series(pd.date_range("2024-01-01", periods=n, freq="36h")).where(
                np.arange(n) % 5 != 0
            ),
            "listed": [f"2023-{1 + i % 12:02d}-{1 + i % 28:02d}" for i in range(n)],
        }
    )


def test_profile_equals_pandas(frame: pd.DataFrame) -> None:
    profile = profile_frame(frame)
    assert profile["rows"] == len(frame)
    columns = {c["name"]: c for c in profile["columns"]}
    assert list(columns) == list(frame.columns)
    assert kinds_of(profile) == {
        "area": "numeric",
        "rooms": "numeric",
        "city": "categorical",
        "garden": "boolean",
        "review": "text",
        "sold": "datetime",
        "listed": "datetime",
    }
    for name, column in columns.items():
        series = frame[name]
        assert column["dtype"] == str(series.dtype)
        assert column["missing"] == int(series.isna().sum())
        assert set(column) == {"name", "kind", "dtype", "missing", "unique", "stats"}

    for name in ("area", "rooms"):
        present = frame[name].dropna().astype(float)
        stats = columns[name]["stats"]
        assert stats == pytest.approx(
            {
                "mean": present.mean(),
                "std": present.std(),
                "min": present.min(),
                "q25": present.quantile(0.25),
                "median": present.median(),
                "q75": present.quantile(0.75),
                "max": present.max(),
            }
        )
        assert columns[name]["unique"] == frame[name].nunique()

    counts = frame["city"].value_counts()
    assert columns["city"]["unique"] == frame["city"].nunique()
    assert columns["city"]["stats"]["top"] == [{"value": k, "count": int(v)} for k, v in counts.items()]

    garden = frame["garden"].value_counts()
    assert columns["garden"]["stats"] == {"true": int(garden["yes"]), "false": int(garden["no"])}

    lengths = frame["review"].str.len()
    assert columns["review"]["stats"] == {"mean_length": lengths.mean(), "max_length": lengths.max()}

    sold = frame["sold"].dropna()
    assert columns["sold"]["stats"] == {"min": sold.min().isoformat(), "max": sold.max().isoformat()}
    listed = pd.to_datetime(frame["listed"])
    assert columns["listed"]["stats"] == {"min": listed.min().isoformat(), "max": listed.max().isoformat()}


def test_categorical_stats_keep_the_top_values_only() -> None:
    series = pd.Series([f"v{i % 25}" for i in range(100)] + ["v0"] * 5, name="code")
    column = profile_frame(series.to_frame())["columns"][0]
    assert column["unique"] == 25
    assert len(column["stats"]["top"]) == TOP_VALUES
    assert column["stats"]["top"][0] == {"value": "v0", "count": 9}


def test_a_profile_is_plain_json() -> None:
    import orjson

    frame = pd.DataFrame({"x": [1.0], "flag": [True], "when": pd.to_datetime(["2024-01-01"])})
    profile = profile_frame(frame)
    assert orjson.loads(orjson.dumps(profile)) == profile
    assert profile["columns"][0]["stats"]["std"] is None  # one value: no spread, not NaN


def test_every_kind_is_named() -> None:
    assert set(KINDS) == {"numeric", "boolean", "categorical", "text", "datetime"}


# -- found while testing; the fixes belong in profiling.py --------------------------------------


def test_a_string_dtype_boolean_column_with_missing_values() -> None:
    series = pd.Series(["yes", pd.NA, "no"], dtype="string", name="flag")
    assert profile_frame(series.to_frame())["columns"][0]["stats"] == {"true": 1, "false": 1}


def test_a_numeric_column_with_infinities() -> None:
    series = pd.Series([1.0, 2.0, np.inf], name="x")  # read_csv gives this for a cell "inf"
    stats = profile_frame(series.to_frame())["columns"][0]["stats"]
    assert stats["min"] == 1.0


def test_every_column_has_stats() -> None:
    frame = pd.DataFrame({"empty": [np.nan, np.nan]})
    assert "stats" in profile_frame(frame)["columns"][0]
