"""Column transformers the training pipelines use where scikit-learn has none.

Each follows scikit-learn's estimator contract literally: hyper-parameters are stored unchanged in
``__init__``, ``fit`` validates and returns ``self``, learned state ends with ``_``, and
``get_feature_names_out`` names the output columns. :class:`BooleanColumns`,
:class:`DatetimeParts` and :class:`StringColumns` pass ``parametrize_with_checks``.

A trained version is a joblib file that imports these classes by name at load time, so their
module and names are part of every such file: rename one only with an alias left behind.

Values arrive in two shapes: as the training frame holds them (bools, datetimes, strings with NaN),
and as wharf's decoder hands a request's columns over (a bool column as ``True``/``False``/``None``
or as ``1.0``/``0.0``/``NaN``; strings with ``None`` for missing). Both give the same output.
"""

from __future__ import annotations

import math
from datetime import date
from typing import Any, Literal

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, OneToOneFeatureMixin, TransformerMixin
from sklearn.utils.validation import _check_feature_names_in, check_is_fitted, validate_data

from wharf.services.profiling import FALSE_WORDS, TRUE_WORDS, as_datetime

DatetimePart = Literal["year", "month", "day", "weekday", "hour", "minute", "dayofyear", "quarter"]
DATETIME_PARTS: tuple[DatetimePart, ...] = (
    "year",
    "month",
    "day",
    "weekday",
    "hour",
    "minute",
    "dayofyear",
    "quarter",
)
DEFAULT_PARTS: tuple[DatetimePart, ...] = ("year", "month", "day", "weekday", "hour")
DATE_TYPES = (str, date, np.datetime64)
"""What a datetime column's value may be: ISO 8601 text, or a date or datetime (``pd.Timestamp`` is one)."""
TRUE_TEXT = TRUE_WORDS | {"1", "1.0"}
FALSE_TEXT = FALSE_WORDS | {"0", "0.0"}


def is_missing(value: Any) -> bool:
    """None, NaN, NaT and pandas' NA."""
    if value is None or value is pd.NaT or value is pd.NA:
        return True
    return isinstance(value, float | np.floating) and math.isnan(value)


def _flag(value: Any) -> float:
    if isinstance(value, bool | np.bool_):
        return float(value)
    if isinstance(value, str):
        word = value.strip().lower()
        return 1.0 if word in TRUE_TEXT else 0.0 if word in FALSE_TEXT else math.nan
    if isinstance(value, int | float | np.integer | np.floating) and value in (0, 1):
        return float(value)
    return math.nan


def _validate(estimator: BaseEstimator, X: Any, reset: bool) -> np.ndarray:
    """``X`` as a 2-D array of any dtype (object for strings), missing values allowed."""
    return validate_data(estimator, X, reset=reset, dtype=None, ensure_all_finite=False)


class _Columnwise(TransformerMixin, BaseEstimator):
    """Shared fit and tags: stateless per-column transforms that still need ``fit`` first."""

    def fit(self, X: Any, y: Any = None) -> Any:
        """Record the number and names of the input columns.

        :param X: ``(n_rows, n_columns)`` array-like or DataFrame.
        :returns: ``self``.
        """
        _validate(self, X, reset=True)
        return self

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = True
        tags.input_tags.string = True
        return tags


class BooleanColumns(OneToOneFeatureMixin, _Columnwise):
    """Boolean columns as floats: ``1.0`` for true, ``0.0`` for false, NaN for missing.

    True: ``True``, ``1``, and the words ``true``, ``yes``, ``t``, ``y``, ``1`` (any case, spaces
    around ignored); false likewise with ``false``, ``no``, ``f``, ``n``, ``0``. Anything else is
    NaN, for the imputer that follows.
    """

    def transform(self, X: Any) -> np.ndarray:
        """:returns: ``(n_rows, n_columns)`` float64 array of 1.0, 0.0 and NaN."""
        check_is_fitted(self)
        values = _validate(self, X, reset=False)
        if values.dtype.kind in "biuf":
            flags = values.astype(np.float64)
            flags[~np.isin(flags, (0.0, 1.0))] = np.nan
            return flags
        flat = [_flag(value) for value in values.ravel()]
        return np.asarray(flat, dtype=np.float64).reshape(values.shape)


class StringColumns(OneToOneFeatureMixin, _Columnwise):
    """Values as strings, missing values (None, NaN, NaT, NA) as NaN.

    Categorical columns pass this before ``SimpleImputer``, which sees NaN but not None as missing,
    and before ``OneHotEncoder``, which refuses a column mixing numbers and strings. A number
    becomes ``str(number)``, as wharf's decoder turns a number sent for a string column into one.
    """

    def transform(self, X: Any) -> np.ndarray:
        """:returns: ``(n_rows, n_columns)`` object array of str and NaN."""
        check_is_fitted(self)
        values = _validate(self, X, reset=False)
        flat = [math.nan if is_missing(value) else str(value) for value in values.ravel()]
        return np.asarray(flat, dtype=object).reshape(values.shape)

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.transformer_tags.preserves_dtype = []
        return tags


class DatetimeParts(_Columnwise):
    """Datetime columns as numeric parts, each part of each column one output column.

    A value is a datetime or an ISO 8601 string (an offset is converted to UTC); anything else,
    numbers included, is missing. Missing values give NaN parts, for the imputer that follows.
    ``weekday`` is 0 for Monday.

    :param parts: drawn from ``year``, ``month``, ``day``, ``weekday``, ``hour``, ``minute``,
        ``dayofyear``, ``quarter``; output columns are named ``{column}_{part}``.
    """

    def __init__(self, parts: tuple[str, ...] | list[str] = DEFAULT_PARTS) -> None:
        self.parts = parts

    def fit(self, X: Any, y: Any = None) -> Any:
        """Check ``parts`` and record the input columns; :returns: ``self``.

        :raises ValueError: ``parts`` is empty or names an unknown part.
        """
        unknown = [part for part in self.parts if part not in DATETIME_PARTS]
        if not self.parts or unknown:
            raise ValueError(
                f"parts must be a non-empty list drawn from {list(DATETIME_PARTS)}; got {self.parts!r}."
            )
        return super().fit(X, y)

    def transform(self, X: Any) -> np.ndarray:
        """:returns: ``(n_rows, n_columns * len(parts))`` float64 array, column by column."""
        check_is_fitted(self)
        values = _validate(self, X, reset=False)
        out = np.empty((values.shape[0], values.shape[1] * len(self.parts)), dtype=np.float64)
        for j in range(values.shape[1]):
            stamps = self._datetimes(values[:, j])
            for k, part in enumerate(self.parts):
                out[:, j * len(self.parts) + k] = getattr(stamps.dt, part).to_numpy(
                    np.float64, na_value=np.nan
                )
        return out

    @staticmethod
    def _datetimes(column: np.ndarray) -> pd.Series:
        if column.dtype.kind == "M":
            return as_datetime(pd.Series(column))
        dates = [value if isinstance(value, DATE_TYPES) else None for value in column]
        return as_datetime(pd.Series(dates, dtype=object))

    def get_feature_names_out(self, input_features: Any = None) -> np.ndarray:
        """``{column}_{part}`` for each input column, each part."""
        check_is_fitted(self)
        names = _check_feature_names_in(self, input_features)
        return np.asarray([f"{name}_{part}" for name in names for part in self.parts], dtype=object)


class TextDocuments(TransformerMixin, BaseEstimator):
    """One text column as the 1-D array of documents ``TfidfVectorizer`` takes; missing as ``""``.

    Like scikit-learn's text vectorizers it takes one column, not a 2-D array (a ``(n, 1)`` array
    is accepted too), so the 2-D estimator checks do not apply to it.
    """

    def fit(self, X: Any, y: Any = None) -> Any:
        """Nothing to learn; :returns: ``self``."""
        self.n_documents_ = len(X)
        return self

    def transform(self, X: Any) -> np.ndarray:
        """:returns: ``(n_rows,)`` object array of str."""
        check_is_fitted(self)
        values = np.asarray(X, dtype=object)
        if values.ndim == 2 and values.shape[1] == 1:
            values = values[:, 0]
        if values.ndim != 1:
            raise ValueError(f"TextDocuments takes one column of documents; got shape {values.shape}.")
        return np.asarray(["" if is_missing(value) else str(value) for value in values], dtype=object)

    def get_feature_names_out(self, input_features: Any = None) -> np.ndarray:
        """The column's name (the vectorizer after this names the real features)."""
        names = ["text"] if input_features is None else list(np.atleast_1d(input_features))
        return np.asarray(names, dtype=object)

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.input_tags.two_d_array = False
        tags.input_tags.one_d_array = True
        tags.input_tags.string = True
        tags.input_tags.allow_nan = True
        return tags
