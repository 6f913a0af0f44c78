"""Train a pipeline from a table as a spec says: split or fold, fit (or search), evaluate, explain.

:func:`train` runs in a job's worker process; it reads no storage and registers nothing: it returns
a :class:`TrainResult` whose ``pipeline`` and ``signature`` the caller registers. Evaluation:

- holdout (``{"test_size"}``): ``train_test_split(X, y, test_size, random_state=seed,
  stratify=y)`` for classification when every class has 2 rows or more (and each side of the
  split can hold every class), else unstratified. The pipeline is fitted on the training rows
  only and scored on the test rows; that fitted pipeline is the one returned, so the metrics
  describe exactly the registered model.
- cross-validation (``{"cv": k}``): ``StratifiedKFold(k, shuffle=True, random_state=seed)`` for
  classification when every class has k rows or more, else ``KFold`` alike. The metrics are
  those of the out-of-fold predictions (what ``cross_val_predict`` gives, ``predict`` and
  ``predict_proba``), one score over all rows; ``cv_scores`` has the per-fold primary score
  (accuracy or R2). The returned pipeline is then fitted on every row.
- a search (grid or random) runs scikit-learn's ``GridSearchCV`` / ``RandomizedSearchCV`` with
  ``cv`` folds (stratified, unshuffled, as scikit-learn does for an integer ``cv``) on the rows
  being fitted, and refits the best candidate; under cross-validation it runs in every fold.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import clone
from sklearn.model_selection import KFold, StratifiedKFold, train_test_split

from wharf.services.profiling import ColumnKind, kinds_of, profile_frame
from wharf.services.training.algorithms import Task
from wharf.services.training.evaluate import evaluate, explain, plain
from wharf.services.training.fitting import CallerError, fitting
from wharf.services.training.pipeline import build_pipeline
from wharf.services.training.quick import quick_fit as quick_fit
from wharf.services.training.search import Ticker, best_of, searching
from wharf.services.training.spec import CrossValidation, Holdout, TrainSpec, check
from wharf.signature import Column, Output, Signature

Progress = Callable[[float, str], None]
STAGES = ("preparing", "splitting", "fitting", "evaluating", "done")
FITTING = (0.1, 0.9)
"""The span of the progress fraction that fitting advances through."""
MAX_CATEGORIES = 1000
"""Categories listed in the signature per column (documentation and examples); more are not listed."""


def _quiet(fraction: float, stage: str) -> None:
    return None


@dataclass
class TrainResult:
    """What a training run made.

    :ivar pipeline: the fitted ``Pipeline`` (``prepare`` then ``model``), to register as joblib.
    :ivar signature: its input columns (every one nullable) and output, to register with it.
    :ivar metrics: see :func:`wharf.services.training.evaluate.evaluate`.
    :ivar explanation: see :func:`wharf.services.training.evaluate.explain`.
    :ivar holdout: the test rows (feature columns and the target, the dataset's row index) under
        holdout validation, else None.
    :ivar best_params: the search's best estimator params (names as in the spec), else None.
    :ivar cv_scores: ``{"scoring", "scores", "mean", "std"}``: per-fold scores of the folds
        evaluated (cross-validation) or of the best candidate (search), else None.
    :ivar timings: seconds per stage, and ``total``.
    :ivar validation: how it was evaluated: ``{"method": "holdout", "test_size", "train_rows",
        "test_rows", "stratified"}`` or ``{"method": "cv", "folds", "rows", "stratified"}``.
    :ivar dropped_rows: rows left out because their target is missing.
    :ivar warnings: what scikit-learn warned while fitting (convergence, ...), deduplicated.
    """

    pipeline: Any
    task: Task
    metrics: dict[str, Any]
    explanation: dict[str, Any]
    signature: Signature
    holdout: pd.DataFrame | None
    best_params: dict[str, Any] | None
    cv_scores: dict[str, Any] | None
    timings: dict[str, float]
    features: list[str] = field(default_factory=list)
    kinds: dict[str, ColumnKind] = field(default_factory=dict)
    validation: dict[str, Any] = field(default_factory=dict)
    dropped_rows: int = 0
    warnings: list[str] = field(default_factory=list)


class _Clock:
    def __init__(self, progress: Progress) -> None:
        self.progress = progress
        self.started = self.last = time.perf_counter()
        self.stage: str | None = None
        self.timings: dict[str, float] = {}

    def enter(self, stage: str, fraction: float) -> None:
        now = time.perf_counter()
        if self.stage is not None:
            self.timings[self.stage] = round(now - self.last, 6)
        self.stage, self.last = stage, now
        if stage == "done":
            self.timings["total"] = round(now - self.started, 6)
        self.progress(fraction, stage)


def _reporting(progress: Progress) -> Progress:
    def report(fraction: float, stage: str) -> None:
        try:
            progress(fraction, stage)
        except Exception as exc:
            raise CallerError(exc) from exc

    return report


# -- the table -------------------------------------------------------------------------------


def prepare_frame(
    frame: pd.DataFrame, target: str, features: list[str], kinds: dict[str, ColumnKind], task: Task
) -> tuple[pd.DataFrame, pd.Series, int]:
    """The feature columns and the target of the rows that have a target, and how many had none.

    Numbers become float64 (what wharf's decoder gives), infinities missing; pandas' nullable
    booleans become objects with None; a regression target must be finite; class labels are kept
    as they are, except that labels mixing types become strings.
    """
    labelled = frame[target].notna().to_numpy()
    if task == "regression":
        labelled &= np.isfinite(pd.to_numeric(frame[target], errors="coerce").to_numpy(np.float64))
    X = frame.loc[labelled, features].copy()
    for name in features:
        if kinds[name] == "numeric":
            # read_csv makes "inf" cells infinite; JSON cannot send one: missing, for the imputer
            numbers = pd.to_numeric(X[name], errors="coerce").astype(np.float64)
            X[name] = numbers.where(np.isfinite(numbers), np.nan)
        elif kinds[name] == "boolean" and X[name].dtype != np.dtype(bool):
            X[name] = X[name].astype(object).where(X[name].notna(), None)
    y = frame.loc[labelled, target]
    if task == "regression":
        y = pd.to_numeric(y).astype(np.float64)
    else:
        y = _labels(y)
    return X, y, int((~labelled).sum())


def _labels(y: pd.Series) -> pd.Series:
    # numpy dtypes for pandas' nullable ones too (no NA is left among labelled rows)
    numpy_dtypes = {
        "b": np.dtype(bool),
        "i": np.dtype(np.int64),
        "u": np.dtype(np.int64),
        "f": np.dtype(np.float64),
    }
    if y.dtype.kind in numpy_dtypes:
        return y.astype(numpy_dtypes[y.dtype.kind])
    values = y.astype(object).tolist()
    types = {type(plain(v)) for v in values}
    if types <= {bool}:
        return y.astype(bool)
    if types <= {int}:
        return y.astype(np.int64)
    if types <= {int, float}:
        return y.astype(np.float64)
    return y.astype(object) if types == {str} else y.astype(str)


def signature_of(X: pd.DataFrame, kinds: dict[str, ColumnKind], task: Task, classes: Any) -> Signature:
    """The registered pipeline's signature: the columns as a client sends them in JSON.

    numeric -> float64; boolean -> bool when the table held booleans (JSON true/false, 0/1),
    string when it held words (then "yes", "no", true and false are all taken); categorical, text
    and datetime (ISO 8601) -> string. Every column is nullable: the pipeline imputes.
    """
    inputs = []
    for name in X.columns:
        kind = kinds[name]
        if kind == "numeric":
            inputs.append(Column(name=name, dtype="float64", nullable=True))
        elif kind == "boolean" and all(isinstance(v, bool | np.bool_) for v in X[name].dropna()):
            inputs.append(Column(name=name, dtype="bool", nullable=True))
        elif kind in ("boolean", "categorical"):
            values = sorted({str(v) for v in X[name].dropna()})
            categories = values if 0 < len(values) <= MAX_CATEGORIES else None
            inputs.append(Column(name=name, dtype="string", nullable=True, categories=categories))
        else:
            inputs.append(Column(name=name, dtype="string", nullable=True))
    if task == "classification":
        output = Output(kind="classification", classes=[plain(c) for c in classes])
    else:
        output = Output(kind="regression")
    return Signature(inputs=inputs, output=output)


# -- splitting --------------------------------------------------------------------------------


def holdout_split(
    X: pd.DataFrame, y: pd.Series, validation: Holdout, task: Task, seed: int
) -> tuple[Any, bool]:
    """``(X_train, X_test, y_train, y_test), stratified``."""
    stratify = None
    if task == "classification":
        counts = y.value_counts()
        n_test = math.ceil(validation.test_size * len(y))
        if counts.min() >= 2 and min(n_test, len(y) - n_test) >= len(counts):
            stratify = y
    parts = train_test_split(X, y, test_size=validation.test_size, random_state=seed, stratify=stratify)
    return parts, stratify is not None


def folds_of(y: pd.Series, validation: CrossValidation, task: Task, seed: int) -> tuple[list[Any], bool]:
    """The ``(train_index, test_index)`` of each fold, and whether they are stratified."""
    stratified = task == "classification" and int(y.value_counts().min()) >= validation.cv
    splitter = (StratifiedKFold if stratified else KFold)(validation.cv, shuffle=True, random_state=seed)
    return list(splitter.split(np.zeros(len(y)), y)), stratified


def _out_of_fold(
    model: Any, X: pd.DataFrame, y: pd.Series, folds: list[Any], classes: Any, ticker: Ticker
) -> Any:
    """Each row's prediction (and class probabilities) by the model fitted without its fold."""
    pred: np.ndarray = np.empty(len(y), dtype=object)
    proba = (
        np.zeros((len(y), len(classes))) if classes is not None and hasattr(model, "predict_proba") else None
    )
    for train_index, test_index in folds:
        fold = clone(model).fit(X.iloc[train_index], y.iloc[train_index])
        ticker.tick(fold_done=True)
        pred[test_index] = fold.predict(X.iloc[test_index])
        if proba is not None:
            columns = np.searchsorted(classes, fold.classes_)
            proba[np.ix_(test_index, columns)] = fold.predict_proba(X.iloc[test_index])
    return np.asarray(pred.tolist()), proba


def _fold_scores(y: pd.Series, pred: np.ndarray, folds: list[Any], task: Task) -> dict[str, Any]:
    from sklearn.metrics import accuracy_score, r2_score

    score = accuracy_score if task == "classification" else r2_score
    values = [float(score(y.iloc[test], pred[test])) for _, test in folds]
    name = "accuracy" if task == "classification" else "r2"
    return {"scoring": name, "scores": values, "mean": float(np.mean(values)), "std": float(np.std(values))}


# -- training ---------------------------------------------------------------------------------


def train(spec: TrainSpec, frame: pd.DataFrame, progress: Progress = _quiet) -> TrainResult:
    """Train, evaluate and explain the pipeline ``spec`` describes on ``frame``.

    :param frame: the dataset, every column as uploaded.
    :param progress: called with ``(fraction, stage)``, stages in the order of :data:`STAGES`;
        during a search or cross-validation the fraction advances per fitted candidate and fold.
        An exception it raises propagates unchanged.
    :raises InvalidInput: the spec does not fit the table, or fitting failed on the params or data.
    :raises ModelError: fitting ran out of memory.
    """
    report = _reporting(progress)
    clock = _Clock(report)
    try:
        return _train(spec, frame, clock)
    except CallerError as exc:
        raise exc.original from None


def _train(spec: TrainSpec, frame: pd.DataFrame, clock: _Clock) -> TrainResult:
    clock.enter("preparing", 0.0)
    profile = profile_frame(frame)
    spec = check(spec, profile)
    assert spec.features is not None and spec.task != "auto"
    task: Task = spec.task
    all_kinds = kinds_of(profile)
    kinds = {name: all_kinds[name] for name in spec.features}
    X, y, dropped = prepare_frame(frame, spec.target, spec.features, kinds, task)
    pipeline = build_pipeline(spec, kinds)
    caught: list[str] = []
    has_params = bool(spec.params) or spec.search is not None
    clock.enter("splitting", FITTING[0] / 2)
    holdout: pd.DataFrame | None = None
    cv_scores: dict[str, Any] | None = None
    validation = spec.validation
    if isinstance(validation, Holdout):
        (X_train, X_test, y_train, y_test), stratified = holdout_split(X, y, validation, task, spec.seed)
        folds: list[Any] = []
        described = {
            "method": "holdout",
            "test_size": validation.test_size,
            "train_rows": len(y_train),
            "test_rows": len(y_test),
            "stratified": stratified,
        }
    else:
        folds, stratified = folds_of(y, validation, task, spec.seed)
        described = {"method": "cv", "folds": len(folds), "rows": len(y), "stratified": stratified}
    ticker = Ticker(clock.progress, FITTING, fits=len(folds) + 1)
    model = searching(spec, pipeline, task, ticker) if spec.search is not None else pipeline
    clock.enter("fitting", FITTING[0])
    with fitting(spec.algorithm, has_params, caught):
        if isinstance(validation, Holdout):
            fitted = model.fit(X_train, y_train)
            ticker.tick(fold_done=True)
            classes = getattr(fitted, "classes_", None)
            pred = fitted.predict(X_test)
            proba = (
                fitted.predict_proba(X_test)
                if classes is not None and hasattr(fitted, "predict_proba")
                else None
            )
            y_eval = y_test
            holdout = X_test.assign(**{spec.target: y_test})
        else:
            classes = np.unique(y) if task == "classification" else None
            pred, proba = _out_of_fold(model, X, y, folds, classes, ticker)
            y_eval = y
            cv_scores = _fold_scores(y, pred, folds, task)
            fitted = model.fit(X, y)
            ticker.tick(fold_done=True)
    best_params = None
    if spec.search is not None:
        best_params, search_scores = best_of(fitted, spec, task)
        cv_scores = cv_scores or search_scores
        fitted = fitted.best_estimator_
    clock.enter("evaluating", FITTING[1])
    classes = getattr(fitted, "classes_", None)
    metrics = evaluate(task, y_eval, pred, proba, classes)
    explanation = explain(fitted)
    signature = signature_of(X, kinds, task, classes)
    clock.enter("done", 1.0)
    return TrainResult(
        pipeline=fitted,
        task=task,
        metrics=metrics,
        explanation=explanation,
        signature=signature,
        holdout=holdout,
        best_params=best_params,
        cv_scores=cv_scores,
        timings=clock.timings,
        features=list(spec.features),
        kinds=kinds,
        validation=described,
        dropped_rows=dropped,
        warnings=caught,
    )
