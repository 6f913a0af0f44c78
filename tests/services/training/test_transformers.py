"""The custom column transformers: scikit-learn's estimator checks, and what each makes of the
values a table holds and of the values wharf's decoder hands over."""

from __future__ import annotations

import pickle
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.utils.estimator_checks import parametrize_with_checks

from wharf.services.training.transformers import (
    BooleanColumns,
    DatetimeParts,
    StringColumns,
    TextDocuments,
)

NUMERIC_OUTPUT_CHECKS = {
    name: "assert_allclose cannot compare string output; test_string_columns_keep_the_contract does"
    for name in (
        "check_pipeline_consistency",
        "check_estimators_pickle",
        "check_transformer_data_not_an_array",
        "check_transformer_general",
        "check_methods_sample_order_invariance",
        "check_methods_subset_invariance",
        "check_fit_idempotent",
    )
}


def _expected_failures(estimator: Any) -> dict[str, str]:
    return NUMERIC_OUTPUT_CHECKS if isinstance(estimator, StringColumns) else {}


# pytest refuses a generator as parametrize values; the mark's arguments are made a list.
_CHECKS = parametrize_with_checks(
    [BooleanColumns(), DatetimeParts(), StringColumns()], expected_failed_checks=_expected_failures
)


@pytest.mark.parametrize(_CHECKS.args[0], list(_CHECKS.args[1]), **_CHECKS.kwargs)
def test_scikit_learn_estimator_checks(estimator: Any, check: Any) -> None:
    check(estimator)


def test_string_columns_keep_the_contract() -> None:
    X = pd.DataFrame(
        {"city": ["Paris", None, "Rome", np.nan, "Lima"], "code": [1, 2, None, 4, 5]}, dtype=object
    )
    fitted = StringColumns().fit(X)
    out = fitted.transform(X)
    expected = np.array(
        [["Paris", "1"], [np.nan, "2"], ["Rome", np.nan], [np.nan, "4"], ["Lima", "5"]], dtype=object
    )
    assert pd.DataFrame(out).equals(pd.DataFrame(expected))
    again = pickle.loads(pickle.dumps(fitted)).transform(X)
    assert pd.DataFrame(again).equals(pd.DataFrame(out))
    assert pd.DataFrame(clone(fitted).fit_transform(X)).equals(pd.DataFrame(out))
    order = [4, 2, 0, 3, 1]
    assert pd.DataFrame(fitted.transform(X.iloc[order])).equals(pd.DataFrame(out[order]))
    assert pd.DataFrame(fitted.transform(X.iloc[1:3])).equals(pd.DataFrame(out[1:3]))
    assert fitted.get_feature_names_out().tolist() == ["city", "code"]


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ([True, False, True], [1.0, 0.0, 1.0]),
        ([True, None, False], [1.0, np.nan, 0.0]),  # what the decoder gives for a nullable bool
        ([1.0, np.nan, 0.0], [1.0, np.nan, 0.0]),  # the decoder's all-numeric batch
        (["yes", "No", " TRUE ", "f", "maybe", None], [1.0, 0.0, 1.0, 0.0, np.nan, np.nan]),
        (["True", "False", "1", "0"], [1.0, 0.0, 1.0, 0.0]),  # JSON true sent for a word column
        ([2.0, 1.0], [np.nan, 1.0]),
    ],
)
def test_boolean_columns(values: list[Any], expected: list[float]) -> None:
    frame = pd.DataFrame({"flag": pd.Series(values, dtype=object if None in values else None)})
    out = BooleanColumns().fit(frame).transform(frame)
    np.testing.assert_array_equal(out[:, 0], expected)
    assert out.dtype == np.float64


def test_boolean_columns_need_fitting_and_name_their_output() -> None:
    with pytest.raises(NotFittedError):
        BooleanColumns().transform([[True]])
    frame = pd.DataFrame({"a": [True], "b": ["yes"]})
    assert BooleanColumns().fit(frame).get_feature_names_out().tolist() == ["a", "b"]


def test_datetime_parts_agree_for_datetimes_and_iso_strings() -> None:
    stamps = pd.DataFrame({"at": pd.to_datetime(["2024-03-05 10:15", None, "2023-12-31 23:00"])})
    strings = pd.DataFrame({"at": ["2024-03-05T10:15:00", None, "2023-12-31T23:00:00.000"]}, dtype=object)
    offsets = pd.DataFrame({"at": ["2024-03-05T12:15:00+02:00", "not a date", "2024-01-01T00:00:00+01:00"]})
    parts = DatetimeParts(parts=("year", "month", "day", "weekday", "hour", "minute", "dayofyear", "quarter"))
    expected = np.array(
        [[2024, 3, 5, 1, 10, 15, 65, 1], [np.nan] * 8, [2023, 12, 31, 6, 23, 0, 365, 4]], dtype=np.float64
    )
    fitted = parts.fit(stamps)
    np.testing.assert_array_equal(fitted.transform(stamps), expected)
    np.testing.assert_array_equal(fitted.transform(strings), expected)
    np.testing.assert_array_equal(fitted.transform(offsets), expected)  # offsets are converted to UTC
    assert fitted.get_feature_names_out()[:2].tolist() == ["at_year", "at_month"]


def test_datetime_parts_take_dates_and_treat_numbers_as_missing() -> None:
    import datetime as dt

    frame = pd.DataFrame({"day": [dt.date(2024, 2, 29), 20240229, None]}, dtype=object)
    out = DatetimeParts(parts=["year", "month", "day"]).fit(frame).transform(frame)
    np.testing.assert_array_equal(out, [[2024, 2, 29], [np.nan] * 3, [np.nan] * 3])


@pytest.mark.parametrize("parts", [(), ("year", "century")])
def test_datetime_parts_refuse_unknown_parts(parts: tuple[str, ...]) -> None:
    with pytest.raises(ValueError, match="parts must be a non-empty list"):
        DatetimeParts(parts=parts).fit(pd.DataFrame({"at": ["2024-01-01"]}))


def test_text_documents() -> None:
    column = pd.Series(["a quick fox", None, np.nan, 42], dtype=object)
    fitted = TextDocuments().fit(column)
    assert fitted.transform(column).tolist() == ["a quick fox", "", "", "42"]
    assert fitted.transform(column.to_frame()).tolist() == ["a quick fox", "", "", "42"]
    with pytest.raises(ValueError, match="one column"):
        fitted.transform(pd.DataFrame({"a": ["x"], "b": ["y"]}))
    with pytest.raises(NotFittedError):
        TextDocuments().transform(column)
