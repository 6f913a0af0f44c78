"""Data drift: a reference profile of each input column, live rows counted into its bins, and tests.

The pieces, in the order wharf uses them::

    build_reference(columns)        at registration: bins and counts of each column of a sample
    bin_counts(reference, columns)  in serving: live rows counted into the reference's bins
    add_counts(total, more)         counts summed across processes and minutes
    compare(reference, live)        over a window: per column, PSI and a two-sample test

Numeric columns have up to ``FINE_BINS`` bins, inner edges at the reference's percentiles 1..99;
categorical ones a bin per kept category and a last bin for every other value, unseen ones too.
Missing values are counted apart and left out of every proportion. All is pure (no I/O) and plain
JSON (lists, floats, ints, strs): live counts are summed in a database, references stored.
"""

from __future__ import annotations

import copy
import math
import numbers
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from typing import Any, TypeGuard

import numpy as np

# scipy.special rather than scipy.stats: both distributions are there, at a fraction of the import.
from scipy.special import chdtrc, kolmogorov

NUMERIC = "numeric"
CATEGORICAL = "categorical"
KINDS = (NUMERIC, CATEGORICAL)
MAX_CATEGORIES = 50
"""Most categories kept per categorical column; the rest share the last ("other") bin."""
FINE_BINS = 100
"""Numeric bins at most: inner edges at the reference's percentiles 1..99, fewer where they tie."""
PSI_GROUPS = 10
"""Numeric PSI is taken over the reference's deciles (the usual PSI binning), not the fine bins."""
EPSILON = 1e-4
"""Floor of each proportion in PSI, so a bin empty on one side adds a large but finite term."""
JSON_FIELDS: dict[str, Callable[[Any], bool]] = {
    "name": lambda v: isinstance(v, str),
    "kind": lambda v: isinstance(v, str),
    "edges": lambda v: isinstance(v, list) and all(map(_is_real, v)),
    "categories": lambda v: isinstance(v, list) and all(isinstance(c, str) for c in v),
    "counts": lambda v: isinstance(v, list) and all(map(_is_count, v)),
    "missing": lambda v: _is_count(v),
    "summary": lambda v: isinstance(v, dict) and all(map(_is_real, v.values())),  # JSON keys are str
}
"""A column's fields in JSON and the types they must have (ColumnReference checks the rest)."""


@dataclass(frozen=True)
class ColumnReference:
    """The reference profile of one input column.

    :param kind: :data:`NUMERIC` or :data:`CATEGORICAL`.
    :param edges: numeric: sorted unique inner bin edges, ``k`` edges make ``k + 1`` bins;
        ``[]`` for categorical columns and for constant or all-missing numeric ones.
    :param categories: categorical: kept category labels, most frequent first; ``[]`` for numeric.
    :param counts: reference rows per bin, ``len(edges) + 1`` (numeric) or ``len(categories) + 1``
        (categorical, the last bin holding every other value). Missing rows are not in it.
    :param missing: reference rows that were missing.
    :param summary: numeric: ``mean``, ``std`` (population), ``min``, ``max`` of the non-missing
        values, ``{}`` when there are none; categorical: ``{"distinct": n}``.
    :raises ValueError: the fields do not fit together (wrong number of counts, unsorted edges...).
    """

    name: str
    kind: str
    edges: list[float]
    categories: list[str]
    counts: list[int]
    missing: int
    summary: dict[str, float]

    def __post_init__(self) -> None:
        numeric = self.kind == NUMERIC
        labels, unused = (self.edges, self.categories) if numeric else (self.categories, self.edges)
        edges = np.asarray(self.edges, dtype=np.float64)
        problems = [
            (self.kind not in KINDS, f"kind must be one of {list(KINDS)}"),
            (bool(unused), f"a {self.kind} column has no {'categories' if numeric else 'edges'}"),
            (len(self.counts) != len(labels) + 1, f"expected {len(labels) + 1} counts"),
            (min(self.counts, default=0) < 0 or self.missing < 0, "counts must not be negative"),
            (not (np.isfinite(edges).all() and (edges[1:] > edges[:-1]).all()), "edges must increase"),
            (len(set(self.categories)) != len(self.categories), "categories must be distinct"),
        ]
        for failed, problem in problems:
            if failed:
                raise ValueError(f"drift reference column {self.name!r}: {problem}, got {self!r}")

    def bins(self) -> int:
        """Number of bins, ``len(counts)``."""
        return len(self.counts)


@dataclass(frozen=True)
class Reference:
    """The reference profile of a model's input columns.

    :param columns: one profile per column, names distinct, in the sample's column order.
    :param rows: rows of the sample the profile was built from.
    :raises ValueError: two columns share a name, or ``rows`` is negative.
    """

    columns: list[ColumnReference]
    rows: int

    def __post_init__(self) -> None:
        names = [c.name for c in self.columns]
        if len(set(names)) != len(names) or self.rows < 0:
            raise ValueError(f"drift reference: names must differ, rows be >= 0, got {names}, {self.rows}")

    def column(self, name: str) -> ColumnReference | None:
        """The profile of column ``name``, or None when the reference has no such column."""
        return next((c for c in self.columns if c.name == name), None)

    def to_json(self) -> dict[str, Any]:
        """``{"rows": int, "columns": [{name, kind, edges, categories, counts, missing, summary}]}``."""
        return {"rows": self.rows, "columns": [asdict(c) for c in self.columns]}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Reference:
        """The reference :meth:`to_json` wrote.

        :raises ValueError: ``data`` is not of that shape; the message names the faulty field.
        """
        rows, columns = (data.get("rows"), data.get("columns")) if isinstance(data, dict) else (None, None)
        if not _is_count(rows) or not isinstance(columns, list):
            raise ValueError(
                "a drift reference is an object {'rows': integer >= 0, 'columns': [...]}, got "
                f"a {type(data).__name__} with rows {rows!r} and columns of type {type(columns).__name__}"
            )
        return cls([_column_from_json(c, i) for i, c in enumerate(columns)], rows)


@dataclass(frozen=True)
class ColumnDrift:
    """How one column's live values compare with its reference.

    :param rows: live non-missing rows compared.
    :param missing: live missing rows.
    :param test: ``"ks"`` (numeric) or ``"chi2"`` (categorical), see :func:`compare`.
    :param statistic: the test's statistic, with its ``p_value``, and the population stability
        index ``psi``; all three None when there are no live rows or no reference values.
    :param drifting: enough live rows, and the PSI or the p-value over its threshold.
    :param reason: why the column drifts, or why it could not be judged; None otherwise.
    """

    name: str
    kind: str
    rows: int
    missing: int
    test: str
    statistic: float | None
    p_value: float | None
    psi: float | None
    drifting: bool
    reason: str | None

    def to_json(self) -> dict[str, Any]:
        """Every field, by name."""
        return asdict(self)


@dataclass(frozen=True)
class DriftReport:
    """Drift of every reference column over one window of live rows.

    :param rows: live rows in the window, the largest ``rows + missing`` of any column.
    :param columns: one result per reference column, in the reference's order.
    :param drifting: whether any column drifts.
    """

    rows: int
    columns: list[ColumnDrift]
    drifting: bool

    def to_json(self) -> dict[str, Any]:
        """``{"rows": int, "drifting": bool, "columns": [ColumnDrift.to_json(), ...]}``."""
        return {"rows": self.rows, "drifting": self.drifting, "columns": [c.to_json() for c in self.columns]}


def build_reference(columns: Mapping[str, np.ndarray], kinds: Mapping[str, str] | None = None) -> Reference:
    """Profile each column of a sample (the training data, or an uploaded one).

    A column's kind is ``kinds[name]`` when given, else numeric for int and float arrays and for
    object arrays whose non-missing values are all real numbers (not bools), else categorical.
    Bools are categories ``"true"`` and ``"false"``.

    Numeric: edges ``np.unique(np.percentile(values, 1..99))`` over the non-missing values, ``[]``
    for a constant column (one bin). Categorical: the :data:`MAX_CATEGORIES` most frequent labels
    (ties by label) and a last bin for the rest; labels are ``str(value)``, except bools (above)
    and integral floats, written as ints (``3.0`` is ``"3"``), because pandas turns an int column
    with missing values into floats while live JSON sends ints.

    :param columns: name -> 1-D array, all of length ``n``, of numbers, strings or objects (None
        and NaN are missing).
    :param kinds: forced kind of some columns, :data:`NUMERIC` or :data:`CATEGORICAL`.
    :returns: the profile; an all-missing column has only zero counts and ``missing = n``.
    :raises ValueError: arrays not 1-D or of different lengths, an unknown kind, or a kind for
        a column not in ``columns``.
    """
    kinds = dict(kinds or {})
    if set(kinds) - set(columns) or set(kinds.values()) - set(KINDS):
        raise ValueError(f"kinds must map columns of the sample to one of {list(KINDS)}, got {kinds}")
    arrays = {name: _one_dimensional(name, values) for name, values in columns.items()}
    lengths = {name: len(a) for name, a in arrays.items()}
    if len(set(lengths.values())) > 1:
        raise ValueError(f"reference columns must all have the same length, got {lengths}")
    profiles = []
    for name, values in arrays.items():
        numeric = (kinds.get(name) or _infer_kind(values)) == NUMERIC
        profiles.append((_numeric_reference if numeric else _categorical_reference)(name, values))
    return Reference(profiles, next(iter(lengths.values()), 0))


def bin_counts(reference: Reference, columns: Mapping[str, np.ndarray]) -> dict[str, list[int]]:
    """Count live rows into the reference's bins.

    Numeric values go to bin ``searchsorted(edges, value, side="right")``: a value equal to an edge
    counts in the bin above it. Numeric strings are read as numbers; other strings, None, NaN and
    infinities count as missing. Categorical values go to their category's bin, or the last one.

    :param columns: name -> 1-D array of live values; columns the reference lacks are ignored,
        reference columns absent here are left out of the result.
    :returns: ``{name: counts}``, ``len(counts) == bins() + 1``, the last entry the missing values.
    :raises ValueError: an array is not 1-D.
    """
    counted = {}
    for column in reference.columns:
        if column.name in columns:
            count = _numeric_counts if column.kind == NUMERIC else _categorical_counts
            counted[column.name] = count(column, _one_dimensional(column.name, columns[column.name]))
    return counted


def add_counts(total: dict[str, list[int]], more: dict[str, list[int]]) -> dict[str, list[int]]:
    """Element-wise sum of two results of :func:`bin_counts`, over the union of their columns.

    :returns: a new dict; neither argument is changed.
    :raises ValueError: a column has counts of different lengths in the two.
    """
    summed = {name: list(counts) for name, counts in total.items()}
    for name, counts in more.items():
        if len(summed.setdefault(name, [0] * len(counts))) != len(counts):
            raise ValueError(
                f"counts of column {name!r} have {len(summed[name])} and {len(counts)} entries; "
                "both must come from the same reference"
            )
        summed[name] = [a + b for a, b in zip(summed[name], counts, strict=True)]
    return summed


def compare(
    reference: Reference,
    live: Mapping[str, list[int]],
    *,
    psi_threshold: float = 0.2,
    p_value: float = 0.001,
    min_rows: int = 100,
) -> DriftReport:
    """Compare live counts (summed :func:`bin_counts`) with the reference, column by column.

    Proportions are over non-missing rows: ``p`` of the reference, ``q`` of the live window.

    - PSI ``= sum((q - p) * ln(q / p))``, each proportion floored at :data:`EPSILON` first (the
      usual smoothing of empty bins; proportions are not renormalised). Numeric columns group
      the fine bins into about :data:`PSI_GROUPS` of ~10% of the reference each (its deciles).
    - Numeric test, two-sample Kolmogorov-Smirnov on the fine bins: ``D = max |F_ref - F_live|``
      over the edges, p-value from the asymptotic distribution, ``kolmogorov(D * sqrt(n m / (n + m)))``.
      ``D`` is a lower bound of the unbinned statistic (fewer points are compared), so the p-value
      errs high: the test is conservative.
    - Categorical test, chi-square test of homogeneity of the 2 x bins table (reference, live):
      ``sum((O - E)^2 / E)``, ``E = row total * bin total / N``, over bins with any count, ``bins - 1``
      degrees of freedom. It takes the reference for the sample it is: a goodness-of-fit test
      against its proportions fires on noise alone once the live window is as large as it.

    A column drifts when ``rows >= min_rows`` and ``psi >= psi_threshold`` or ``p < p_value``;
    below ``min_rows`` it does not and ``reason`` says so (statistics are given when ``rows > 0``).
    With no drift, PSI is still about ``(bins - 1) (1/n + 1/m)``, more with empty live bins: a
    column of 51 bins reads ~0.9 at 100 live rows, so it needs ~1000 before 0.2 means anything.

    :param live: name -> counts + [missing], as :func:`bin_counts` returns; reference columns
        absent here are reported with 0 rows, names the reference lacks are ignored.
    :raises ValueError: a column's counts do not have ``bins() + 1`` non-negative entries, or a
        threshold is out of range.
    """
    if not psi_threshold > 0 or not 0 < p_value <= 1 or min_rows < 0:
        raise ValueError(
            "expected psi_threshold > 0, 0 < p_value <= 1 and min_rows >= 0, "
            f"got {psi_threshold}, {p_value} and {min_rows}"
        )
    drifts = [_column_drift(c, live.get(c.name), psi_threshold, p_value, min_rows) for c in reference.columns]
    rows = max((d.rows + d.missing for d in drifts), default=0)
    return DriftReport(rows, drifts, any(d.drifting for d in drifts))


def _one_dimensional(name: str, values: np.ndarray) -> np.ndarray:
    array = np.asarray(values)
    if array.ndim != 1:
        raise ValueError(f"column {name!r} must be a 1-D array, got shape {array.shape}")
    return array


def _is_missing(value: object) -> bool:
    return value is None or (isinstance(value, float | np.floating) and math.isnan(value))


def _infer_kind(values: np.ndarray) -> str:
    if values.dtype.kind in "iuf":
        return NUMERIC
    if values.dtype.kind == "O" and all(
        _is_missing(v) or (isinstance(v, numbers.Real) and not isinstance(v, bool | np.bool_))
        for v in values.tolist()
    ):
        return NUMERIC
    return CATEGORICAL


def _numeric_reference(name: str, values: np.ndarray) -> ColumnReference:
    present = _present_numbers(values)
    missing = len(values) - len(present)
    if present.size == 0:
        return ColumnReference(name, NUMERIC, [], [], [0], missing, {})
    low, high = float(present.min()), float(present.max())
    # A constant column's percentiles are all that value: one bin, not an empty one below it too.
    with np.errstate(over="ignore", invalid="ignore"):  # interpolating between values near the limit
        percentiles = np.percentile(present, np.arange(1, FINE_BINS))
    edges = [] if low == high else np.unique(percentiles[np.isfinite(percentiles)]).tolist()
    counts = np.bincount(np.searchsorted(edges, present, side="right"), minlength=len(edges) + 1)
    with np.errstate(over="ignore", invalid="ignore"):  # values near the float limit overflow these
        moments = {"mean": float(present.mean()), "std": float(present.std())}
    # JSON (and PostgreSQL's json type) has no infinity: a moment that overflowed is left out.
    summary = {**{k: v for k, v in moments.items() if math.isfinite(v)}, "min": low, "max": high}
    return ColumnReference(name, NUMERIC, edges, [], counts.tolist(), missing, summary)


def _categorical_reference(name: str, values: np.ndarray) -> ColumnReference:
    labelled, missing = _label_counts(values)
    ranked = sorted(labelled.items(), key=lambda item: (-item[1], item[0]))
    categories = [label for label, _ in ranked[:MAX_CATEGORIES]]
    counts = [n for _, n in ranked[:MAX_CATEGORIES]] + [sum(n for _, n in ranked[MAX_CATEGORIES:])]
    return ColumnReference(name, CATEGORICAL, [], categories, counts, missing, {"distinct": len(ranked)})


def _number(value: object) -> float:
    """One value as a float, NaN when it is neither a real number nor a numeric string."""
    try:
        return float(value) if isinstance(value, str | numbers.Real) else math.nan
    except (ValueError, OverflowError):
        return math.nan


def _present_numbers(values: np.ndarray) -> np.ndarray:
    """The finite numbers among ``values``, as float64; infinities count as missing, since they
    have no percentile and no JSON form."""
    try:
        # In C: numbers, bools and numeric strings convert, None becomes NaN.
        floats = values.astype(np.float64)
    except (TypeError, ValueError, OverflowError):
        floats = np.fromiter(map(_number, values.tolist()), dtype=np.float64, count=len(values))
    return floats[np.isfinite(floats)]


def _label(value: object) -> str | None:
    """The category label of one value, None when it is missing."""
    if _is_missing(value):
        return None
    if isinstance(value, bool | np.bool_):
        return "true" if value else "false"
    if isinstance(value, numbers.Integral) or (isinstance(value, float | np.floating) and value.is_integer()):
        return str(int(value))
    return str(value)


def _label_counts(values: np.ndarray) -> tuple[dict[str, int], int]:
    """Non-missing values counted by label, and the number of missing values."""
    # Few distinct values in many rows: count the values in C, label only the distinct ones.
    if values.dtype.kind in "biufU":
        distinct = dict(zip(*(a.tolist() for a in np.unique(values, return_counts=True)), strict=True))
    else:
        rows = values.tolist()
        try:
            distinct = Counter(rows)
            mixed = len({type(v) for v in distinct if not _is_missing(v)}) > 1
        except TypeError:  # unhashable values, such as lists
            mixed = True
        if mixed:  # True == 1 == 1.0 count as one value, yet their labels differ: label every row
            distinct = Counter(map(_label, rows))
    labelled: Counter[str | None] = Counter()
    for value, n in distinct.items():
        labelled[_label(value)] += n
    missing = labelled.pop(None, 0)
    return {label: n for label, n in labelled.items() if label is not None}, missing


def _numeric_counts(column: ColumnReference, values: np.ndarray) -> list[int]:
    present = _present_numbers(values)
    bins = np.bincount(np.searchsorted(column.edges, present, side="right"), minlength=column.bins())
    return [*bins.tolist(), len(values) - len(present)]


def _categorical_counts(column: ColumnReference, values: np.ndarray) -> list[int]:
    labelled, missing = _label_counts(values)
    index = {label: i for i, label in enumerate(column.categories)}
    counts = [0] * column.bins()
    for label, n in labelled.items():
        counts[index.get(label, len(counts) - 1)] += n
    return [*counts, missing]


def _column_drift(
    column: ColumnReference, counts: list[int] | None, psi_threshold: float, p_value: float, min_rows: int
) -> ColumnDrift:
    found = np.asarray([0] * (column.bins() + 1) if counts is None else counts, dtype=np.int64)
    if found.shape != (column.bins() + 1,) or (found < 0).any():
        raise ValueError(
            f"live counts of column {column.name!r} must be {column.bins() + 1} integers >= 0 "
            f"({column.bins()} bins, then the missing values), got {counts!r}"
        )
    reference, live, rows = np.asarray(column.counts, dtype=np.int64), found[:-1], int(found[:-1].sum())
    head = (column.name, column.kind, rows, int(found[-1]), "ks" if column.kind == NUMERIC else "chi2")
    insufficient = f"insufficient data: {rows} rows < {min_rows}"
    if reference.sum() == 0:
        return ColumnDrift(*head, None, None, None, False, "the reference has no values to compare with")
    if rows == 0:
        return ColumnDrift(*head, None, None, None, False, insufficient)
    if column.kind == NUMERIC:
        statistic, p = _kolmogorov_smirnov(reference, live)
        starts = _decile_starts(reference)
        psi = _psi(np.add.reduceat(reference, starts), np.add.reduceat(live, starts))
    else:
        statistic, p = _chi_square(reference, live)
        psi = _psi(reference, live)
    if rows < min_rows:
        return ColumnDrift(*head, statistic, p, psi, False, insufficient)
    reasons = [f"psi {psi:.3g} >= {psi_threshold:g}"] if psi >= psi_threshold else []
    reasons += [f"{head[-1]} p-value {p:.2g} < {p_value:g}"] if p < p_value else []
    return ColumnDrift(*head, statistic, p, psi, bool(reasons), "; ".join(reasons) or None)


def _psi(reference: np.ndarray, live: np.ndarray) -> float:
    p = np.maximum(reference / reference.sum(), EPSILON)
    q = np.maximum(live / live.sum(), EPSILON)
    return float(np.sum((q - p) * np.log(q / p)))


def _decile_starts(reference: np.ndarray) -> np.ndarray:
    """First fine bin of each PSI group: a group ends at the boundary between fine bins whose
    cumulative reference share is nearest 0.1, 0.2, ... 0.9 (boundaries that coincide merge)."""
    before = np.cumsum(reference)[:-1] / reference.sum()  # share of the bins before boundary 1..k
    if before.size == 0:
        return np.zeros(1, dtype=np.intp)
    targets = np.arange(1, PSI_GROUPS) / PSI_GROUPS
    nearest = np.abs(before[np.newaxis, :] - targets[:, np.newaxis]).argmin(axis=1) + 1
    return np.unique(np.concatenate([[0], nearest]))


def _kolmogorov_smirnov(reference: np.ndarray, live: np.ndarray) -> tuple[float, float]:
    n, m = int(reference.sum()), int(live.sum())
    # The last cumulative share is 1 on both sides (x / x is exact), so one bin gives D = 0.
    d = float(np.abs(np.cumsum(reference) / n - np.cumsum(live) / m).max())
    return d, float(kolmogorov(d * math.sqrt(n * m / (n + m))))


def _chi_square(reference: np.ndarray, live: np.ndarray) -> tuple[float, float]:
    table = np.vstack([reference, live]).astype(np.float64)
    table = table[:, table.sum(axis=0) > 0]  # a bin empty on both sides has no expected count
    if table.shape[1] < 2:
        return 0.0, 1.0
    expected = table.sum(axis=1, keepdims=True) * table.sum(axis=0) / table.sum()
    statistic = float(((table - expected) ** 2 / expected).sum())
    return statistic, float(chdtrc(table.shape[1] - 1, statistic))


def _is_count(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _is_real(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _column_from_json(data: object, index: int) -> ColumnReference:
    where = f"drift reference: columns[{index}]"
    if not isinstance(data, dict) or set(JSON_FIELDS) - set(data):
        raise ValueError(f"{where} must be an object with the fields {list(JSON_FIELDS)}, got {data!r}")
    wrong = {field: data[field] for field, check in JSON_FIELDS.items() if not check(data[field])}
    if wrong:
        raise ValueError(
            f"{where}: wrong type of {list(wrong)}, got {wrong!r}; expected name and kind strings, edges "
            "numbers, categories strings, counts and missing integers >= 0, summary {str: number}"
        )
    fields = {field: copy.copy(data[field]) for field in JSON_FIELDS}  # not the caller's lists
    return ColumnReference(**{**fields, "edges": [float(e) for e in fields["edges"]]})
