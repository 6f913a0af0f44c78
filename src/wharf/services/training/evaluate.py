"""Scores of a fitted model on held-out rows, and what the model says about its features.

Every number is computed by scikit-learn's own metric functions and returned as a plain JSON value
(Python ``float``/``int``, ``None`` where scikit-learn gives NaN), so stored metrics equal what a
data scientist computes by hand on the same predictions.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
from sklearn import metrics as skm
from sklearn.calibration import CalibratedClassifierCV
from sklearn.exceptions import UndefinedMetricWarning
from sklearn.pipeline import Pipeline

from wharf.services.training.algorithms import EncodedLabels, Task

REGRESSION_METRICS = ("mae", "mse", "rmse", "r2")
CLASSIFICATION_METRICS = (
    "accuracy",
    "precision_macro",
    "recall_macro",
    "f1_macro",
    "precision_weighted",
    "recall_weighted",
    "f1_weighted",
    "roc_auc",
    "log_loss",
)


def plain(value: Any) -> Any:
    """A numpy scalar as its Python value; a non-finite float as None."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _score(function: Any, *args: Any, **kwargs: Any) -> float | None:
    # scikit-learn warns (UndefinedMetricWarning) and answers NaN where a score is undefined,
    # e.g. R2 on one row; the stored value is then None.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UndefinedMetricWarning)
        return plain(float(function(*args, **kwargs)))


def regression_metrics(y_true: Any, y_pred: Any) -> dict[str, Any]:
    """``mae``, ``mse``, ``rmse`` and ``r2``."""
    return {
        "mae": _score(skm.mean_absolute_error, y_true, y_pred),
        "mse": _score(skm.mean_squared_error, y_true, y_pred),
        "rmse": _score(skm.root_mean_squared_error, y_true, y_pred),
        "r2": _score(skm.r2_score, y_true, y_pred),
    }


def classification_metrics(
    y_true: Any, y_pred: Any, proba: np.ndarray | None, classes: Sequence[Any]
) -> dict[str, Any]:
    """Accuracy; precision, recall and F1, macro and weighted (``zero_division=0``); ROC-AUC
    (binary: of ``classes[1]``; else one-vs-rest, macro); log loss; the confusion matrix.

    A score that cannot be computed is left out and ``omitted`` says why. The confusion matrix's
    labels are ``classes``, then any class found only in ``y_true``.
    """
    labels = list(classes)
    out: dict[str, Any] = {"accuracy": _score(skm.accuracy_score, y_true, y_pred)}
    for average in ("macro", "weighted"):
        for name, function in (
            ("precision", skm.precision_score),
            ("recall", skm.recall_score),
            ("f1", skm.f1_score),
        ):
            out[f"{name}_{average}"] = _score(function, y_true, y_pred, average=average, zero_division=0)
    omitted: dict[str, str] = {}
    present = set(np.asarray(y_true).tolist())
    unseen = sorted(present - {plain(c) for c in labels})
    if proba is None:
        reason = "the model gives no class probabilities"
        omitted["roc_auc"] = omitted["log_loss"] = reason
    elif unseen:
        # A class with too few rows can end up only in the evaluated rows.
        reason = f"the evaluated rows hold class(es) {unseen!r} that the model was not fitted on"
        omitted["roc_auc"] = omitted["log_loss"] = reason
    else:
        missing = [plain(c) for c in labels if plain(c) not in present]
        if missing:
            omitted["roc_auc"] = (
                f"the evaluated rows hold no row of the class(es) {missing!r}, so ROC-AUC is undefined"
            )
        elif len(labels) == 2:
            out["roc_auc"] = _score(skm.roc_auc_score, y_true, proba[:, 1])
        else:
            out["roc_auc"] = _score(
                skm.roc_auc_score, y_true, proba, multi_class="ovr", average="macro", labels=labels
            )
        out["log_loss"] = _score(skm.log_loss, y_true, proba, labels=labels)
    matrix_labels = [plain(c) for c in labels] + unseen
    matrix = skm.confusion_matrix(y_true, y_pred, labels=matrix_labels)
    out["confusion_matrix"] = {"labels": matrix_labels, "matrix": matrix.tolist()}
    if omitted:
        out["omitted"] = omitted
    return out


def evaluate(
    task: Task,
    y_true: Any,
    y_pred: Any,
    proba: np.ndarray | None = None,
    classes: Sequence[Any] | None = None,
) -> dict[str, Any]:
    """The metrics of ``task`` for predictions ``y_pred`` (and ``proba``, ``(n_rows, n_classes)`` in
    ``classes`` order) against ``y_true``; see :func:`regression_metrics` and
    :func:`classification_metrics`.
    """
    if task == "regression":
        return regression_metrics(y_true, y_pred)
    if classes is None:
        raise ValueError("classification metrics need the model's classes")
    return classification_metrics(y_true, y_pred, proba, classes)


# -- explanations -----------------------------------------------------------------------------


def core_estimator(estimator: Any) -> Any:
    """The fitted estimator inside wharf's wrappers (EncodedLabels, CalibratedClassifierCV)."""
    if isinstance(estimator, EncodedLabels):
        return core_estimator(estimator.estimator_)
    calibrated = getattr(estimator, "calibrated_classifiers_", None)
    if isinstance(estimator, CalibratedClassifierCV) and calibrated and len(calibrated) == 1:
        return core_estimator(calibrated[0].estimator)
    return estimator


def feature_names(pipeline: Any) -> list[str]:
    """Names of the features the final estimator sees (``ColumnTransformer.get_feature_names_out``)."""
    if isinstance(pipeline, Pipeline) and len(pipeline) > 1:
        return [str(n) for n in pipeline[:-1].get_feature_names_out()]
    names = getattr(pipeline, "feature_names_in_", None)
    if names is not None:
        return [str(n) for n in names]
    return [f"x{i}" for i in range(int(pipeline.n_features_in_))]


def feature_columns(pipeline: Any) -> dict[str, list[str]] | None:
    """For each input column, the names of the features made from it; None when the pipeline's
    first step is not a fitted ColumnTransformer whose branches can be traced."""
    prepare = pipeline[0] if isinstance(pipeline, Pipeline) and len(pipeline) > 1 else None
    if prepare is None or not hasattr(prepare, "transformers_"):
        return None
    out: dict[str, list[str]] = {}
    for name, transformer, columns in prepare.transformers_:
        if name == "remainder" or transformer == "drop":
            continue
        names = [f"{name}__{n}" for n in transformer.get_feature_names_out()]
        if isinstance(columns, str):
            out.setdefault(columns, []).extend(names)
            continue
        counts = _counts(transformer, len(columns))
        if counts is None or sum(counts) != len(names):
            return None
        start = 0
        for column, count in zip(columns, counts, strict=True):
            out.setdefault(str(column), []).extend(names[start : start + count])
            start += count
    return out


def _counts(transformer: Any, n_columns: int) -> list[int] | None:
    """Features per input column, for a branch built of one-to-one steps, a one-hot encoder and
    datetime parts."""
    counts = [1] * n_columns
    for step in getattr(transformer, "steps", [("", transformer)]):
        step = step[1]
        if hasattr(step, "categories_"):
            dropped = getattr(step, "drop_idx_", None)
            counts = [
                len(c) - (0 if dropped is None or dropped[j] is None else 1)
                for j, c in enumerate(step.categories_)
            ]
        elif hasattr(step, "parts"):
            counts = [count * len(step.parts) for count in counts]
        elif not type(step).__name__.endswith(("Imputer", "Scaler", "Columns")):
            return None
    return counts


def _coefficients(estimator: Any, names: list[str], by_column: dict[str, list[str]] | None) -> dict[str, Any]:
    coef = np.atleast_2d(np.asarray(estimator.coef_, dtype=np.float64))
    intercept = np.atleast_1d(np.asarray(getattr(estimator, "intercept_", 0.0), dtype=np.float64))
    if intercept.size == 1 and coef.shape[0] > 1:
        intercept = np.repeat(intercept, coef.shape[0])

    def weights(row: np.ndarray, bias: float) -> dict[str, Any]:
        named = {name: plain(w) for name, w in zip(names, row, strict=True)}
        out: dict[str, Any] = {"weights": named, "bias": plain(bias)}
        if by_column is not None:
            out["by_column"] = {column: {f: named[f] for f in made} for column, made in by_column.items()}
        return out

    classes = getattr(estimator, "classes_", None)
    if coef.shape[0] == 1:
        single = weights(coef[0], float(intercept[0]))
        if classes is not None and len(classes) == 2:
            single["positive_class"] = plain(classes[1])
        return {"kind": "coefficients", **single}
    labels = [plain(c) for c in classes] if classes is not None else list(range(coef.shape[0]))
    return {
        "kind": "coefficients",
        "classes": [
            {"class": label, **weights(row, float(b))}
            for label, row, b in zip(labels, coef, intercept, strict=True)
        ],
    }


def explain(pipeline: Any) -> dict[str, Any]:
    """What a fitted pipeline says about its features.

    - tree models: ``{"kind": "importances", "importances": {feature: value}}``, largest first;
    - linear models: ``{"kind": "coefficients", "weights": {feature: w}, "bias": b, "by_column":
      {input column: {feature: w}}}`` (binary classifiers add ``positive_class``; multi-class ones
      give ``"classes": [{"class", "weights", "bias", "by_column"}, ...]``);
    - others: ``{"kind": "none", "reason": ...}``.

    Features are named by ``ColumnTransformer.get_feature_names_out`` (``numeric__age``,
    ``categorical__city_Paris``); one-hot weights stay per category, never summed. ``columns``
    maps each input column to its features where the branches can be traced.
    """
    model = pipeline[-1] if isinstance(pipeline, Pipeline) else pipeline
    estimator = core_estimator(model)
    names = feature_names(pipeline)
    by_column = feature_columns(pipeline)
    out: dict[str, Any]
    importances = getattr(estimator, "feature_importances_", None)
    coef = None
    if importances is None:
        try:
            coef = getattr(estimator, "coef_", None)
        except AttributeError:  # SVC and SVR have coef_ only with a linear kernel
            coef = None
    if importances is not None:
        values = np.asarray(importances, dtype=np.float64)
        order = np.argsort(-values, kind="stable")
        out = {"kind": "importances", "importances": {names[i]: plain(values[i]) for i in order}}
    elif coef is not None:
        out = _coefficients(estimator, names, by_column)
    else:
        out = {
            "kind": "none",
            "reason": f"{type(estimator).__name__} has neither feature importances nor coefficients",
        }
    if by_column is not None:
        out["columns"] = by_column
    return out
