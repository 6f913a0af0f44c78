"""Drift: references built from seeded samples, live rows binned against them, and every statistic
checked against a hand computation or scipy's own two-sample tests on the same data."""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
import pytest
from scipy import stats
from scipy.special import kolmogorov

from wharf.services.drift import (
    CATEGORICAL,
    EPSILON,
    MAX_CATEGORIES,
    NUMERIC,
    ColumnReference,
    Reference,
    add_counts,
    bin_counts,
    build_reference,
    compare,
)

CITIES = np.array(["paris", "lyon", "lille", "nantes", "nice"])
CITY_SHARES = np.array([0.4, 0.25, 0.15, 0.12, 0.08])
PRODUCTS = np.array([f"p{i:02d}" for i in range(60)])
PRODUCT_SHARES = 1 / np.arange(1, 61) / (1 / np.arange(1, 61)).sum()
"""60 products, Zipf-like: 50 are kept, the 10 rarest share the "other" bin."""


def sample(
    seed: int, n: int, *, shift: float = 0.0, cities: np.ndarray = CITY_SHARES
) -> dict[str, np.ndarray]:
    """``n`` rows of four columns; ``shift`` moves ``age`` by that many standard deviations."""
    rng = np.random.default_rng(seed)
    return {
        "age": rng.normal(40 + 12 * shift, 12, n),
        "income": rng.lognormal(10, 0.5, n),
        "city": rng.choice(CITIES, n, p=cities).astype(object),
        "product": rng.choice(PRODUCTS, n, p=PRODUCT_SHARES),
    }


def drifting(reference: Reference, live: dict[str, np.ndarray], **options: Any) -> set[str]:
    report = compare(reference, bin_counts(reference, live), **options)
    return {c.name for c in report.columns if c.drifting}


def numeric(edges: list[float], counts: list[int]) -> Reference:
    column = ColumnReference("x", NUMERIC, edges, [], counts, 0, {})
    return Reference([column], sum(counts))


# -- build_reference --------------------------------------------------------------------------


def test_numeric_reference_of_a_normal_sample() -> None:
    values = np.random.default_rng(0).normal(5.0, 2.0, 10_000)
    values[:100] = np.nan
    column = build_reference({"x": values}).columns[0]
    assert column.kind == NUMERIC and column.categories == []
    assert len(column.edges) == 99 and np.all(np.diff(column.edges) > 0)
    assert column.bins() == 100 and sum(column.counts) == 9_900 and column.missing == 100
    assert all(0.009 <= c / 9_900 <= 0.011 for c in column.counts)  # ~1% of the rows per fine bin
    present = values[100:]
    assert column.summary == pytest.approx(
        {"mean": present.mean(), "std": present.std(), "min": present.min(), "max": present.max()}
    )


def test_categorical_reference_keeps_the_most_frequent() -> None:
    # Product i appears 100 + i times: the 50 most frequent are p69 down to p20.
    values = np.repeat([f"p{i}" for i in range(70)], [100 + i for i in range(70)])
    column = build_reference({"product": values}).columns[0]
    assert column.kind == CATEGORICAL and column.edges == []
    assert column.categories == [f"p{i}" for i in range(69, 19, -1)]
    assert len(column.categories) == MAX_CATEGORIES
    assert column.counts == [100 + i for i in range(69, 19, -1)] + [sum(100 + i for i in range(20))]
    assert column.summary == {"distinct": 70}


def test_categorical_ties_are_ordered_by_label() -> None:
    column = build_reference({"c": np.array(["b", "a", "c", "a", "b", None], dtype=object)}).columns[0]
    assert column.categories == ["a", "b", "c"] and column.counts == [2, 2, 1, 0] and column.missing == 1


@pytest.mark.parametrize(
    "values",
    [np.array([True, False, True]), np.array([True, None, False, True], dtype=object)],
    ids=["bool", "object"],
)
def test_booleans_are_categories(values: np.ndarray) -> None:
    column = build_reference({"flag": values}).columns[0]
    assert column.kind == CATEGORICAL
    assert column.categories == ["true", "false"] and column.counts == [2, 1, 0]
    assert column.missing == len(values) - 3


def test_constant_column_has_one_bin() -> None:
    reference = build_reference({"x": np.full(500, 3.0)})
    column = reference.columns[0]
    assert column.edges == [] and column.counts == [500]
    assert column.summary == {"mean": 3.0, "std": 0.0, "min": 3.0, "max": 3.0}
    result = compare(reference, bin_counts(reference, {"x": np.full(200, 7.0)})).columns[0]
    assert (result.statistic, result.psi, result.drifting) == (0.0, 0.0, False)


@pytest.mark.parametrize(
    ("values", "kinds", "kind"),
    [
        (np.full(7, np.nan), None, NUMERIC),
        (np.array([None] * 7, dtype=object), None, NUMERIC),
        (np.array([None] * 7, dtype=object), {"x": CATEGORICAL}, CATEGORICAL),
    ],
)
def test_all_missing_column(values: np.ndarray, kinds: dict[str, str] | None, kind: str) -> None:
    column = build_reference({"x": values}, kinds).columns[0]
    assert (column.kind, column.counts, column.missing) == (kind, [0], 7)
    assert column.edges == [] and column.categories == []


def test_object_column_of_numbers_and_none_is_numeric() -> None:
    values = np.array([1, 2.5, None, np.int64(4), np.float32(5.5), float("nan")] * 50, dtype=object)
    column = build_reference({"x": values}).columns[0]
    assert column.kind == NUMERIC and sum(column.counts) == 200 and column.missing == 100
    assert column.summary["min"] == 1.0 and column.summary["max"] == 5.5


def test_kinds_force_a_kind() -> None:
    reference = build_reference({"zip": np.array([75001, 69001, 75001])}, {"zip": CATEGORICAL})
    assert reference.columns[0].categories == ["75001", "69001"]
    # pandas makes an int column with gaps floats: 75001.0 is still the category "75001".
    assert bin_counts(reference, {"zip": np.array([75001.0, np.nan, 13001.0])}) == {"zip": [1, 0, 1, 1]}


def test_labels_of_mixed_values() -> None:
    values = np.array([True, 1, 1.0, "1", np.float64(2.5), None, False], dtype=object)
    column = build_reference({"c": values}).columns[0]
    # True == 1 == 1.0 in Python, but True is the category "true" and 1.0 is "1".
    assert dict(zip(column.categories, column.counts, strict=False)) == {
        "1": 3,
        "2.5": 1,
        "false": 1,
        "true": 1,
    }
    assert column.missing == 1


@pytest.mark.parametrize(
    ("columns", "kinds"),
    [
        ({"x": np.zeros(3), "y": np.zeros(4)}, None),
        ({"x": np.zeros((3, 2))}, None),
        ({"x": np.zeros(3)}, {"x": "text"}),
        ({"x": np.zeros(3)}, {"y": NUMERIC}),
    ],
    ids=["lengths", "2-D", "kind", "unknown column"],
)
def test_build_reference_rejects(columns: dict[str, np.ndarray], kinds: dict[str, str] | None) -> None:
    with pytest.raises(ValueError):
        build_reference(columns, kinds)


def test_json_round_trip() -> None:
    reference = build_reference(sample(0, 2_000) | {"flag": np.array([True, False] * 1_000)})
    text = json.dumps(reference.to_json(), allow_nan=False)
    assert Reference.from_json(json.loads(text)) == reference
    assert reference.column("city") == reference.columns[2] and reference.column("nope") is None


def good_json() -> dict[str, Any]:
    return numeric([0.0, 1.0], [1, 2, 3]).to_json()


def broken(path: tuple[Any, ...], value: Any) -> dict[str, Any]:
    data = good_json()
    target = data
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return data


@pytest.mark.parametrize(
    "data",
    [
        [],
        {"columns": []},
        broken(("rows",), -1),
        broken(("rows",), True),
        broken(("columns",), {}),
        broken(("columns", 0), "x"),
        broken(("columns", 0, "kind"), "text"),
        broken(("columns", 0, "counts"), [1, 2]),
        broken(("columns", 0, "counts"), [1, 2, -3]),
        broken(("columns", 0, "counts"), [1, 2, 3.5]),
        broken(("columns", 0, "edges"), [1.0, 0.0]),
        broken(("columns", 0, "edges"), [0.0, "1"]),
        broken(("columns", 0, "categories"), ["a"]),
        broken(("columns", 0, "missing"), None),
        broken(("columns", 0, "summary"), {"mean": "high"}),
        {"rows": 2, "columns": [good_json()["columns"][0]] * 2},
        {"rows": 2, "columns": [{k: v for k, v in good_json()["columns"][0].items() if k != "edges"}]},
    ],
)
def test_from_json_rejects_malformed_data(data: Any) -> None:
    with pytest.raises(ValueError):
        Reference.from_json(data)


# -- bin_counts, add_counts -------------------------------------------------------------------


def test_numeric_bins() -> None:
    reference = numeric([1.0, 2.0, 3.0], [1, 1, 1, 1])
    values = np.array(
        [0.5, 1.0, 1.5, 2.0, 2.999, 3.0, 9.0, -np.inf, np.nan, None, "abc", "2.5"], dtype=object
    )
    # side="right": a value equal to an edge counts in the bin above it (1.0 in bin 1, 3.0 in bin 3).
    # "2.5" is read as a number; -inf, NaN, None and "abc" are missing.
    assert bin_counts(reference, {"x": values}) == {"x": [1, 2, 3, 2, 4]}
    assert bin_counts(reference, {"x": np.array([0.0, 3.0, np.nan])}) == {"x": [1, 0, 0, 1, 1]}


def test_categorical_bins() -> None:
    reference = build_reference({"c": np.array(["a", "b", "b"]), "f": np.array([True, False, True])})
    live = {
        "c": np.array(["a", "b", "zzz", None, "b", float("nan"), 3], dtype=object),
        "f": np.array([False, False, None], dtype=object),
        "ignored": np.zeros(2),
    }
    # b, a, then "other" (unseen "zzz" and 3), then the missing values.
    assert bin_counts(reference, live) == {"c": [2, 1, 2, 2], "f": [0, 2, 0, 1]}
    assert bin_counts(reference, {"c": np.array(["a"])}) == {"c": [0, 1, 0, 0]}  # absent columns skipped


def test_add_counts() -> None:
    total = {"a": [1, 2, 0], "b": [5, 0]}
    assert add_counts(total, {"a": [1, 1, 1], "c": [3]}) == {"a": [2, 3, 1], "b": [5, 0], "c": [3]}
    assert total == {"a": [1, 2, 0], "b": [5, 0]}
    with pytest.raises(ValueError, match="'a'"):
        add_counts(total, {"a": [1, 1]})


# -- compare ----------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(20))
def test_no_false_alarm_on_unshifted_data(seed: int) -> None:
    reference = build_reference(sample(seed, 10_000))
    assert drifting(reference, sample(seed + 1_000, 5_000)) == set()


def test_no_false_alarms_with_a_window_larger_than_the_reference() -> None:
    # A goodness-of-fit test against the reference's proportions, taken as exact, flags a
    # categorical column in each of these 20 seeds; the reference is a sample too. At p < 0.001,
    # 80 comparisons of one distribution should give 0.08 false alarms on average.
    alarms = []
    for seed in range(20):
        reference = build_reference(sample(seed, 1_000))
        alarms += [(seed, name) for name in drifting(reference, sample(seed + 1_000, 20_000))]
    assert len(alarms) <= 1, alarms


@pytest.mark.parametrize("seed", range(5))
def test_shifted_columns_drift_and_only_they(seed: int) -> None:
    reference = build_reference(sample(seed, 10_000))
    live = sample(seed + 1_000, 5_000, shift=0.5, cities=np.array([0.2, 0.2, 0.2, 0.2, 0.2]))
    report = compare(reference, bin_counts(reference, live))
    assert {c.name for c in report.columns if c.drifting} == {"age", "city"}
    assert report.drifting and report.rows == 5_000
    age = report.columns[0]
    assert age.psi is not None and age.psi >= 0.2
    assert age.reason is not None and age.reason.startswith("psi ") and "ks p-value" in age.reason


def test_psi_equals_a_hand_computation() -> None:
    column = ColumnReference("c", CATEGORICAL, [], ["a", "b", "c"], [50, 30, 20, 0], 4, {})
    result = compare(Reference([column], 104), {"c": [40, 30, 20, 10, 5]}, min_rows=1).columns[0]
    p = np.maximum(np.array([50, 30, 20, 0]) / 100, EPSILON)
    q = np.array([40, 30, 20, 10]) / 100
    assert result.psi == pytest.approx(np.sum((q - p) * np.log(q / p)))
    assert (result.rows, result.missing) == (100, 5)


def test_numeric_psi_is_over_the_reference_deciles() -> None:
    rng = np.random.default_rng(1)
    reference = build_reference({"x": rng.normal(0, 1, 10_000)})
    live = bin_counts(reference, {"x": rng.normal(0.3, 1.2, 3_000)})["x"][:-1]
    # 100 fine bins of 1% each: the deciles are the fine bins grouped by ten.
    p = np.add.reduceat(np.array(reference.columns[0].counts), np.arange(0, 100, 10)) / 10_000
    q = np.add.reduceat(np.array(live), np.arange(0, 100, 10)) / 3_000
    result = compare(reference, {"x": [*live, 0]}).columns[0]
    assert result.psi == pytest.approx(np.sum((q - p) * np.log(q / p)))


@pytest.mark.parametrize("shift", [0.0, 0.1, 0.5])
def test_binned_ks_is_a_close_lower_bound(shift: float) -> None:
    rng = np.random.default_rng(7)
    first, second = rng.normal(0, 1, 10_000), rng.normal(shift, 1, 10_000)
    reference = build_reference({"x": first})
    result = compare(reference, bin_counts(reference, {"x": second})).columns[0]
    exact = stats.ks_2samp(first, second).statistic
    assert result.statistic is not None and result.p_value is not None
    assert exact - 0.02 <= result.statistic <= exact
    assert result.p_value == pytest.approx(kolmogorov(result.statistic * math.sqrt(5_000)))


@pytest.mark.parametrize(
    ("reference", "live"),
    [
        ([500, 300, 150, 50], [230, 160, 70, 40]),
        ([500, 300, 150, 0], [230, 160, 70, 40]),  # values unseen in the reference
        ([500, 300, 0, 50], [230, 160, 0, 40]),  # a bin empty on both sides has no degree of freedom
    ],
)
def test_chi_square_is_scipy_s_test_of_homogeneity(reference: list[int], live: list[int]) -> None:
    column = ColumnReference("c", CATEGORICAL, [], ["a", "b", "c"], reference, 0, {})
    result = compare(Reference([column], sum(reference)), {"c": [*live, 0]}).columns[0]
    table = np.array([reference, live])
    expected = stats.chi2_contingency(table[:, table.sum(axis=0) > 0], correction=False)
    assert result.test == "chi2"
    assert result.statistic == pytest.approx(expected.statistic)
    assert result.p_value == pytest.approx(expected.pvalue)


def test_too_few_rows_do_not_drift() -> None:
    reference = build_reference(sample(0, 10_000))
    report = compare(reference, bin_counts(reference, sample(1, 50, shift=2.0)))
    age = report.columns[0]
    assert not report.drifting and age.rows == 50
    assert age.reason == "insufficient data: 50 rows < 100"
    assert age.psi is not None and age.psi > 0.2 and age.p_value is not None  # still computed


def test_absent_columns_and_empty_references() -> None:
    reference = build_reference({"x": np.full(3, np.nan), "y": np.arange(3.0)})
    report = compare(reference, {"x": [0, 200]})
    x, y = report.columns
    assert (x.rows, x.missing, x.drifting, x.statistic, x.psi) == (0, 200, False, None, None)
    assert x.reason is not None and "reference has no values" in x.reason
    assert (y.rows, y.missing, y.p_value, y.reason) == (0, 0, None, "insufficient data: 0 rows < 100")
    assert report.rows == 200 and not report.drifting
    json.dumps(report.to_json(), allow_nan=False)


@pytest.mark.parametrize(
    ("live", "options"),
    [
        ({"x": [1, 2, 3]}, {}),
        ({"x": [1, 2, 3, -1, 0]}, {}),
        ({}, {"p_value": 0.0}),
        ({}, {"psi_threshold": -1.0}),
    ],
)
def test_compare_rejects(live: dict[str, list[int]], options: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        compare(numeric([0.0, 1.0, 2.0], [1, 1, 1, 1]), live, **options)


def test_report_json() -> None:
    reference = build_reference(sample(0, 2_000))
    data = compare(reference, bin_counts(reference, sample(1, 500, shift=1.0))).to_json()
    assert json.loads(json.dumps(data, allow_nan=False)) == data
    assert set(data) == {"rows", "drifting", "columns"} and data["rows"] == 500
    assert list(data["columns"][0]) == [
        "name",
        "kind",
        "rows",
        "missing",
        "test",
        "statistic",
        "p_value",
        "psi",
        "drifting",
        "reason",
    ]


def test_values_near_the_float_limit_keep_a_json_summary() -> None:
    huge = np.array([1.7e308, -1.7e308, 1.6e308, 1.5e308] * 10)
    reference = build_reference({"x": huge})
    column = reference.columns[0]
    assert column.summary["max"] == 1.7e308
    assert all(math.isfinite(v) for v in column.summary.values())
    assert Reference.from_json(json.loads(json.dumps(reference.to_json(), allow_nan=False))) == reference
