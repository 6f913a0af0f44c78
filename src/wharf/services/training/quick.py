"""The synchronous quick fit of ``POST /v1/fit``: a small numeric table in, weights and metrics out.

No preprocessing: the estimator sees the numbers as sent, so a linear model's weights and bias are
in the units of the request (the tutorial's ``y = 2x + 1`` comes back as weight 2, bias 1). The
metrics are those on the rows fitted on; there is no held-out set at this size.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from wharf.errors import InvalidInput
from wharf.services.training.algorithms import Task, algorithm_named, check_params
from wharf.services.training.evaluate import core_estimator, evaluate, plain
from wharf.services.training.fitting import fitting
from wharf.services.training.spec import AUTO_MAX_CLASSES


def _matrix(X: Sequence[Sequence[float]]) -> np.ndarray:
    if not X:
        raise InvalidInput("'X' holds no rows; send at least one row of numbers.", field="X")
    width = len(X[0])
    if width == 0:
        raise InvalidInput("Row 0 of 'X' is empty; send at least one number per row.", field="X[0]")
    for i, row in enumerate(X):
        if len(row) != width:
            raise InvalidInput(
                f"Row {i} of 'X' has {len(row)} values, row 0 has {width}; every row needs as many.",
                field=f"X[{i}]",
            )
        for j, value in enumerate(row):
            if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
                raise InvalidInput(
                    f"'X[{i}][{j}]' must be a finite number; got {value!r:.40}.", field=f"X[{i}][{j}]"
                )
    return np.asarray(X, dtype=np.float64)


def _task(y: Sequence[Any], algorithm: Any, task: str) -> Task:
    if task in ("classification", "regression"):
        return task  # type: ignore[return-value]
    if len(algorithm.tasks) == 1:
        return algorithm.tasks[0]
    if any(isinstance(v, str | bool) for v in y):
        return "classification"
    if all(isinstance(v, int) for v in y) and len(set(y)) <= AUTO_MAX_CLASSES:
        return "classification"
    return "regression"


def _targets(y: Sequence[Any], n_rows: int, task: Task) -> np.ndarray:
    if len(y) != n_rows:
        raise InvalidInput(f"'y' has {len(y)} values for {n_rows} rows of 'X'; send one per row.", field="y")
    for i, value in enumerate(y):
        number = isinstance(value, int | float) and not isinstance(value, bool)
        if task == "regression" and not (number and math.isfinite(value)):
            raise InvalidInput(
                f"Regression needs a finite number for every target; 'y[{i}]' is {value!r:.40}.",
                field=f"y[{i}]",
            )
        if task == "classification" and not isinstance(value, str | int | bool | float):
            raise InvalidInput(
                f"'y[{i}]' must be a class label (a string, number or boolean); got {value!r:.40}.",
                field=f"y[{i}]",
            )
    if task == "regression":
        return np.asarray(y, dtype=np.float64)
    if len({type(v) for v in y}) > 1 and any(isinstance(v, str) for v in y):
        raise InvalidInput("The labels in 'y' mix strings with other values; use one type.", field="y")
    labels = np.asarray(y)
    if len(np.unique(labels)) < 2:
        raise InvalidInput("Classification needs at least two distinct labels in 'y'.", field="y")
    return labels


def _array(value: Any) -> Any:
    array = np.asarray(value, dtype=np.float64)
    return [plain(v) for v in array] if array.ndim == 1 else [[plain(v) for v in row] for row in array]


def quick_fit(
    X: Sequence[Sequence[float]],
    y: Sequence[Any],
    algorithm: str,
    params: dict[str, Any] | None = None,
    seed: int = 0,
    task: str = "auto",
) -> dict[str, Any]:
    """Fit ``algorithm`` on ``X`` (rows of numbers) and ``y`` at once.

    :param task: ``auto`` (default): the algorithm's only task, else classification for string,
        boolean or integer labels (at most 20 distinct), else regression.
    :returns: ``{"algorithm", "task", "rows", "metrics"}``; ``weights`` and ``bias`` where the
        model has coefficients (regression: a list and a number; classification: one row and one
        bias per class, a single row for binary), else None; ``classes`` for classification;
        ``importances`` for tree models; ``warnings`` when fitting warned.
    :raises InvalidInput: naming ``X[i][j]``, ``y[i]``, ``algorithm`` or ``params.name``.
    """
    found = algorithm_named(algorithm)
    matrix = _matrix(X)
    resolved = _task(y, found, task)
    check_params(found, resolved, params or {})
    targets = _targets(y, len(matrix), resolved)
    model = found.build(resolved, params or {}, seed)
    caught: list[str] = []
    with fitting(algorithm, bool(params), caught):  # some refuse their params only when predicting (knn)
        model.fit(matrix, targets)
        predicted = model.predict(matrix)
        classes = getattr(model, "classes_", None)
        proba = (
            model.predict_proba(matrix) if classes is not None and hasattr(model, "predict_proba") else None
        )
    out: dict[str, Any] = {
        "algorithm": algorithm,
        "task": resolved,
        "rows": len(matrix),
        "metrics": evaluate(resolved, targets, predicted, proba, classes),
        "weights": None,
        "bias": None,
    }
    core = core_estimator(model)
    try:
        coef = getattr(core, "coef_", None)
    except AttributeError:  # SVC and SVR: only with a linear kernel
        coef = None
    if coef is not None:
        out["weights"] = _array(coef)
        intercept = getattr(core, "intercept_", 0.0)
        out["bias"] = _array(intercept) if np.ndim(intercept) else plain(float(intercept))
    importances = getattr(core, "feature_importances_", None)
    if importances is not None:
        out["importances"] = _array(importances)
    if classes is not None:
        out["classes"] = [plain(c) for c in classes]
    if caught:
        out["warnings"] = caught
    return out
