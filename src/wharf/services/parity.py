"""How close a converted model answers to its source: sample rows, compare, time both.

The sample is, in order of preference, rows the caller sends (the training holdout, or any rows
of real data), else rows generated from the signature with what the source model knows of its
inputs: a scaler's means and spreads, a tree's split thresholds, an encoder's categories, a text
vectorizer's vocabulary. Generated rows are seeded, so a report can be reproduced.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from wharf.batch import Batch
from wharf.runtimes.base import Predictor
from wharf.signature import Column, Signature

SAMPLE_ROWS = 500
MISSING_SHARE = 0.05
"""Share of generated values left missing in nullable columns."""
TIMING_REPEATS = 50


@dataclass(frozen=True)
class Tolerance:
    """When a conversion counts as faithful.

    :param labels: least share of rows whose label must be equal (classifiers).
    :param rtol: largest difference of a probability or value, relative to ``max(|source|, 1)``
        (so probabilities, within 0 and 1, are compared to within ``rtol`` absolutely).
    """

    labels: float = 1.0
    rtol: float = 1e-4


# -- sample rows -------------------------------------------------------------------------------


@dataclass
class Hint:
    """What a model tells about one input column's values."""

    center: float | None = None
    spread: float | None = None
    points: list[float] | None = None
    """Split thresholds: values just either side of each exercise every branch."""
    words: list[str] | None = None
    categories: list[Any] | None = None


def hints_of(model: Any, signature: Signature) -> dict[str, Hint]:
    """Per column, what a scikit-learn model or pipeline knows of its values (best effort)."""
    hints: dict[str, Hint] = {c.name: Hint() for c in signature.inputs}
    _walk(model, list(signature.names), hints)
    return hints


def _walk(step: Any, columns: list[str], hints: dict[str, Hint]) -> None:
    """Read ``step`` (fed ``columns``) and the steps inside it, filling ``hints``."""
    if step is None or isinstance(step, str):
        return
    if hasattr(step, "steps"):  # Pipeline: the first step sees the input columns
        if step.steps:
            _walk(step.steps[0][1], columns, hints)
        return
    if hasattr(step, "transformers_"):  # ColumnTransformer: each part sees its own columns
        for _, part, selected in step.transformers_:
            _walk(part, _selected(selected, columns), hints)
        return
    for attribute, kind in (("mean_", "center"), ("scale_", "spread"), ("statistics_", "center")):
        values = getattr(step, attribute, None)
        if isinstance(values, np.ndarray) and values.dtype.kind in "fiu" and len(values) == len(columns):
            for name, value in zip(columns, values, strict=True):
                if name in hints and getattr(hints[name], kind) is None and np.isfinite(value):
                    setattr(hints[name], kind, float(value))
    categories = getattr(step, "categories_", None)
    if isinstance(categories, list) and len(categories) == len(columns):
        for name, values in zip(columns, categories, strict=True):
            if name in hints:
                hints[name].categories = [v.item() if isinstance(v, np.generic) else v for v in values]
    vocabulary = getattr(step, "vocabulary_", None)
    if isinstance(vocabulary, dict) and len(columns) == 1 and columns[0] in hints:
        hints[columns[0]].words = sorted(vocabulary)[:2000]
    for tree in _trees(step):
        features, thresholds = tree.tree_.feature, tree.tree_.threshold
        for index in np.unique(features[features >= 0]):
            if index < len(columns) and columns[index] in hints:
                hint = hints[columns[index]]
                hint.points = (hint.points or []) + thresholds[features == index].tolist()


def _selected(selected: Any, columns: list[str]) -> list[str]:
    if isinstance(selected, str):
        return [selected]
    values = list(np.asarray(selected).ravel()) if not callable(selected) else []
    if values and isinstance(values[0], (bool, np.bool_)):
        return [c for c, keep in zip(columns, values, strict=False) if keep]
    if values and isinstance(values[0], (int, np.integer)):
        return [columns[int(i)] for i in values if int(i) < len(columns)]
    return [str(v) for v in values]


def _trees(step: Any) -> list[Any]:
    if hasattr(step, "tree_"):
        return [step]
    estimators = getattr(step, "estimators_", None)
    if isinstance(estimators, list):
        return [t for t in estimators if hasattr(t, "tree_")][:50]
    if isinstance(estimators, np.ndarray):  # GradientBoosting: (n_stages, n_outputs)
        return [t for t in estimators.ravel() if hasattr(t, "tree_")][:50]
    return []


def generate_rows(
    signature: Signature, hints: dict[str, Hint], n: int, seed: int = 0
) -> list[dict[str, Any]]:
    """``n`` rows for ``signature``, drawn with ``hints``; None where a nullable value is missing."""
    rng = np.random.default_rng(seed)
    values = {c.name: _values(c, hints.get(c.name, Hint()), n, rng) for c in signature.inputs}
    for column in signature.inputs:
        if column.nullable and column.dtype != "bool":
            missing = rng.random(n) < MISSING_SHARE
            values[column.name] = [
                None if m else v for v, m in zip(values[column.name], missing, strict=True)
            ]
    return [{name: values[name][i] for name in signature.names} for i in range(n)]


def _values(column: Column, hint: Hint, n: int, rng: np.random.Generator) -> list[Any]:
    choices = column.categories or hint.categories
    if choices:
        return [choices[int(i)] for i in rng.integers(0, len(choices), n)]
    if column.dtype == "bool":
        return [bool(v) for v in rng.integers(0, 2, n)]
    if column.dtype == "string":
        words = hint.words or ["alpha", "beta", "gamma", "delta"]
        return [
            " ".join(words[int(i)] for i in rng.integers(0, len(words), 1 + int(k)))
            for k in rng.integers(0, 8, n)
        ]
    if hint.points:
        points = np.asarray(hint.points)
        nudge = rng.normal(0, 1e-3 + 1e-3 * np.abs(points).mean(), n)
        numbers = points[rng.integers(0, len(points), n)] + nudge
    else:
        center = hint.center if hint.center is not None else 0.0
        spread = hint.spread if hint.spread else 1.0
        numbers = center + spread * rng.standard_normal(n) * rng.choice([0.5, 1.0, 2.0], n)
    if column.dtype == "int64":
        return [int(v) for v in np.rint(numbers)]
    return [float(v) for v in numbers]


# -- compare and time --------------------------------------------------------------------------


def compare(source: Predictor, converted: Predictor, batch: Batch, tolerance: Tolerance) -> dict[str, Any]:
    """Labels, probabilities or values of both models on ``batch``, and whether they agree."""
    classifier = bool(source.signature.output.classes)
    expected, got = source.predict(batch), converted.predict(batch)
    report: dict[str, Any] = {"rows": batch.n_rows}
    passed = True
    if classifier:
        same = _same_labels(expected, got)
        report["labels_equal"] = float(np.mean(same))
        passed = report["labels_equal"] >= tolerance.labels
        _where_missing(report, batch, ~same)
        expected_values, got_values = source.predict_proba(batch), converted.predict_proba(batch)
    else:
        expected_values, got_values = expected, got
    if expected_values is not None and got_values is not None:
        a = np.asarray(expected_values, dtype=np.float64).reshape(batch.n_rows, -1)
        b = np.asarray(got_values, dtype=np.float64).reshape(batch.n_rows, -1)
        if a.shape != b.shape:
            report["values_shape"] = [list(a.shape), list(b.shape)]
            passed = False
        else:
            diff = np.abs(a - b)
            relative = diff / np.maximum(np.abs(a), 1.0)
            report["max_abs_diff"] = float(diff.max()) if diff.size else 0.0
            report["mean_abs_diff"] = float(diff.mean()) if diff.size else 0.0
            report["max_rel_diff"] = float(relative.max()) if relative.size else 0.0
            passed = passed and report["max_rel_diff"] <= tolerance.rtol
            if not classifier:
                _where_missing(report, batch, np.asarray((relative > tolerance.rtol).any(axis=1)))
    report["passed"] = passed
    return report


def _where_missing(report: dict[str, Any], batch: Batch, differs: np.ndarray) -> None:
    """Count the rows that differ, and how many of them have a missing value (converters often
    route missing values another way than the source model)."""
    frame = batch.as_frame()
    missing = frame.isna().to_numpy().any(axis=1)
    report["rows_differing"] = int(differs.sum())
    report["rows_differing_with_missing"] = int((differs & missing).sum())
    report["rows_with_missing"] = int(missing.sum())


def _same_labels(expected: np.ndarray, got: np.ndarray) -> np.ndarray:
    a, b = np.asarray(expected).ravel(), np.asarray(got).ravel()
    if a.dtype.kind in "fiub" and b.dtype.kind in "fiub":
        return a == b
    return np.array([str(x) == str(y) for x, y in zip(a.tolist(), b.tolist(), strict=True)])


def latency(model: Predictor, batch: Batch, one: Batch) -> dict[str, float]:
    """Median milliseconds of one-row and whole-batch predictions (after one warm-up call each)."""
    out = {}
    for key, rows, repeats in (("one_row_ms", one, TIMING_REPEATS), ("batch_ms", batch, 5)):
        model.predict(rows)
        times = []
        for _ in range(repeats):
            started = time.perf_counter()
            model.predict(rows)
            times.append(time.perf_counter() - started)
        out[key] = round(statistics.median(times) * 1000, 4)
    out["batch_rows"] = batch.n_rows
    return out


def parity_text(report: dict[str, Any]) -> str:
    """The report as the lines the CLI prints."""
    lines = [
        f"parity on {report['rows']} {report['sample']} rows: {'passed' if report['passed'] else 'FAILED'}"
    ]
    if "labels_equal" in report:
        lines.append(f"  labels equal       {report['labels_equal']:.2%}")
    if "max_abs_diff" in report:
        lines.append(
            f"  max |difference|   {report['max_abs_diff']:.3g}  (mean {report['mean_abs_diff']:.3g})"
        )
        lines.append(
            f"  max relative diff  {report['max_rel_diff']:.3g}  (allowed {report['tolerance']['rtol']:g})"
        )
    if report.get("rows_differing"):
        missing = report["rows_differing_with_missing"]
        lines.append(f"  rows differing     {report['rows_differing']} ({missing} with a missing value)")
    source, converted = report["latency"]["source"], report["latency"]["converted"]
    lines.append(f"  {'latency':<18} {'':>16} {'1 row':>10} {str(source['batch_rows']) + ' rows':>12}")
    for side, t in (("source", source), ("converted", converted)):
        lines.append(
            f"  {'':<18} {side + ' ' + t['format']:>16} {t['one_row_ms']:>8.3f}ms {t['batch_ms']:>10.3f}ms"
        )
    if report.get("forced"):
        lines.append("  registered although outside the tolerance (--force): never used as a fast twin")
    return "\n".join(lines)
