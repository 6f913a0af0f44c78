"""A spec's hyper-parameter search as scikit-learn's own ``GridSearchCV`` / ``RandomizedSearchCV``,
with progress that advances as each candidate is scored on each fold.

Progress is counted honestly: the search's scorer is wrapped so that every call (one per fitted
candidate and fold) ticks; the refit of the best candidate completes the fit's share.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from sklearn.metrics import check_scoring
from sklearn.model_selection import GridSearchCV, ParameterGrid, RandomizedSearchCV

from wharf.services.training.algorithms import Task, algorithm_named
from wharf.services.training.evaluate import plain
from wharf.services.training.pipeline import MODEL
from wharf.services.training.spec import TrainSpec


class Ticker:
    """Advances the ``fitting`` stage's fraction over ``fits`` model fits of ``per_fit`` ticks each.

    :param progress: the ``(fraction, stage)`` callback.
    :param span: the fractions fitting starts and ends at.
    :param fits: how many times the model (or the search) is fitted.
    """

    def __init__(self, progress: Callable[[float, str], None], span: tuple[float, float], fits: int) -> None:
        self.progress = progress
        self.span = span
        self.fits = fits
        self.per_fit = 1
        self.fits_done = 0
        self.done = 0
        self.reported = span[0]

    def tick(self, fold_done: bool = False) -> None:
        """One candidate scored on one fold; with ``fold_done``, one whole fit finished."""
        if fold_done:
            self.fits_done += 1
            self.done = self.fits_done * self.per_fit
        else:
            self.done = min(self.done + 1, (self.fits_done + 1) * self.per_fit)
        low, high = self.span
        total = self.fits * self.per_fit
        fraction = low + (high - low) * min(self.done, total) / total
        if fraction != self.reported:
            self.reported = fraction
            self.progress(fraction, "fitting")


def _prefix(spec: TrainSpec, task: Task) -> str:
    return f"{MODEL}__{algorithm_named(spec.algorithm).param_prefix(task)}"


def searching(spec: TrainSpec, pipeline: Any, task: Task, ticker: Ticker) -> Any:
    """The unfitted search over ``pipeline`` that ``spec.search`` describes.

    Failing candidates raise (``error_score="raise"``) rather than scoring NaN, so a bad value in
    the grid fails the job with scikit-learn's message. A random search draws at most as many
    candidates as the grid holds.
    """
    search = spec.search
    assert search is not None
    prefix = _prefix(spec, task)
    grid = {prefix + name: list(values) for name, values in search.params.items()}
    candidates = len(ParameterGrid(grid))
    base = check_scoring(pipeline, scoring=search.scoring)

    # A plain function, not an object: clone() deep-copies a search's params, and deepcopy keeps
    # a function as it is, so the ticker stays shared by every fold's copy of the search.
    def scoring(estimator: Any, X: Any, y: Any) -> float:
        score = base(estimator, X, y)
        ticker.tick()
        return float(score)

    found: Any
    if search.method == "grid":
        found = GridSearchCV(pipeline, grid, scoring=scoring, cv=search.cv, error_score="raise")
    else:
        candidates = min(search.n_iter, candidates)
        found = RandomizedSearchCV(
            pipeline,
            grid,
            n_iter=candidates,
            scoring=scoring,
            cv=search.cv,
            random_state=spec.seed,
            error_score="raise",
        )
    ticker.per_fit = candidates * search.cv
    return found


def best_of(search: Any, spec: TrainSpec, task: Task) -> tuple[dict[str, Any], dict[str, Any]]:
    """A fitted search's best params (named as in the spec) and that candidate's per-fold scores
    ``{"scoring", "scores", "mean", "std"}``."""
    assert spec.search is not None
    prefix = _prefix(spec, task)
    params = {name.removeprefix(prefix): plain(value) for name, value in search.best_params_.items()}
    index = search.best_index_
    scores = [float(search.cv_results_[f"split{k}_test_score"][index]) for k in range(search.n_splits_)]
    name = spec.search.scoring or ("accuracy" if task == "classification" else "r2")
    return params, {
        "scoring": name,
        "scores": scores,
        "mean": float(np.mean(scores)),
        "std": float(np.std(scores)),
    }
