"""The algorithms a training spec may name: which tasks each supports and how its estimator is built.

Every estimator class is imported on first use (xgboost and lightgbm only when installed). A spec's
``params`` go to the estimator's constructor; ``random_state`` comes from the spec's ``seed`` for
every estimator that takes one, so it is not a param. Two classifiers are wrapped:

- ``svm``: ``CalibratedClassifierCV(SVC(), ensemble=False, cv=3)``, scikit-learn's replacement for
  the deprecated ``SVC(probability=True)``; params go to the ``SVC``.
- ``xgboost``: :class:`EncodedLabels` around ``XGBClassifier``, which only takes labels 0..k-1;
  the pipeline answers in the original labels.

``tree`` algorithms get no scaling (a per-column monotonic scaling changes no split); ``dense``
ones get a dense matrix (HistGradientBoosting refuses sparse input).
"""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, clone
from sklearn.preprocessing import LabelEncoder
from sklearn.utils.validation import check_is_fitted

from wharf.errors import InvalidInput, suggest

Task = Literal["classification", "regression"]
TASKS: tuple[Task, ...] = ("classification", "regression")
INNER = "estimator__"
"""Where params go, inside a wrapped classifier, in a search grid's keys."""


class EncodedLabels(ClassifierMixin, BaseEstimator):
    """A classifier fitted on the labels encoded as 0..k-1 that answers in the original labels.

    :param estimator: an unfitted classifier that needs labels 0..k-1 (XGBClassifier).
    """

    def __init__(self, estimator: Any) -> None:
        self.estimator = estimator

    def fit(self, X: Any, y: Any, **fit_params: Any) -> EncodedLabels:
        """Fit a clone of ``estimator`` on the encoded labels; :returns: ``self``."""
        self.encoder_ = LabelEncoder().fit(y)
        self.classes_ = self.encoder_.classes_
        self.estimator_ = clone(self.estimator).fit(X, self.encoder_.transform(y), **fit_params)
        return self

    def predict(self, X: Any) -> np.ndarray:
        """:returns: ``(n_rows,)`` labels from ``classes_``."""
        check_is_fitted(self)
        return np.asarray(self.classes_[np.asarray(self.estimator_.predict(X), dtype=np.int64)])

    def predict_proba(self, X: Any) -> np.ndarray:
        """:returns: ``(n_rows, n_classes)`` probabilities in ``classes_`` order."""
        check_is_fitted(self)
        return np.asarray(self.estimator_.predict_proba(X))

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = True
        tags.input_tags.allow_nan = True
        return tags


@dataclass(frozen=True)
class Algorithm:
    """One entry of the catalogue.

    :param classifier: ``"module:Class"`` for classification, or None.
    :param regressor: ``"module:Class"`` for regression, or None.
    :param defaults: constructor arguments wharf sets unless the spec's params set them.
    :param wrap: how the classifier is wrapped: ``"calibrated"``, ``"encoded"`` or None.
    :param package: what to ``pip install`` when the module is missing.
    """

    name: str
    classifier: str | None
    regressor: str | None
    tree: bool = False
    dense: bool = False
    defaults: Mapping[str, Any] = field(default_factory=dict)
    wrap: Literal["calibrated", "encoded"] | None = None
    package: str = "scikit-learn"

    @property
    def tasks(self) -> list[Task]:
        return [task for task in TASKS if self._path(task) is not None]

    def _path(self, task: Task) -> str | None:
        return self.classifier if task == "classification" else self.regressor

    def estimator_class(self, task: Task) -> type:
        """The class ``params`` configure.

        :raises InvalidInput: (``field="algorithm"``) it does not do ``task``, or its package is
            not installed.
        """
        path = self._path(task)
        if path is None:
            others = ", ".join(a.name for a in ALGORITHMS.values() if task in a.tasks)
            raise InvalidInput(
                f"The algorithm {self.name!r} does {' and '.join(self.tasks)}, not {task}; for "
                f"{task} use one of {others}.",
                field="algorithm",
            )
        module, _, name = path.partition(":")
        try:
            return getattr(importlib.import_module(module), name)
        except ImportError as exc:
            raise InvalidInput(
                f"The algorithm {self.name!r} needs the package {self.package!r}, which is not "
                f"installed on the server; run: pip install {self.package}, or choose one of "
                f"{', '.join(installed(task))}.",
                field="algorithm",
            ) from exc

    def param_prefix(self, task: Task) -> str:
        """Where this algorithm's params sit under the pipeline's ``model`` step."""
        return INNER if task == "classification" and self.wrap else ""

    def build(self, task: Task, params: Mapping[str, Any], seed: int) -> Any:
        """An unfitted estimator for ``task`` from the spec's ``params`` and ``seed``."""
        cls = self.estimator_class(task)
        arguments = dict(self.defaults)
        if "random_state" in cls().get_params():
            arguments["random_state"] = seed
        arguments.update(params)
        estimator = cls(**arguments)
        if task == "classification" and self.wrap == "calibrated":
            from sklearn.calibration import CalibratedClassifierCV

            return CalibratedClassifierCV(estimator, ensemble=False, cv=3)
        if task == "classification" and self.wrap == "encoded":
            return EncodedLabels(estimator)
        return estimator


def _both(module: str, stem: str) -> tuple[str, str]:
    return f"{module}:{stem}Classifier", f"{module}:{stem}Regressor"


ALGORITHMS: dict[str, Algorithm] = {
    a.name: a
    for a in (
        Algorithm("linear_regression", None, "sklearn.linear_model:LinearRegression"),
        Algorithm("ridge", "sklearn.linear_model:RidgeClassifier", "sklearn.linear_model:Ridge"),
        Algorithm("lasso", None, "sklearn.linear_model:Lasso"),
        Algorithm(
            "logistic_regression",
            "sklearn.linear_model:LogisticRegression",
            None,
            defaults={"max_iter": 1000},
        ),
        Algorithm("decision_tree", *_both("sklearn.tree", "DecisionTree"), tree=True),
        Algorithm("random_forest", *_both("sklearn.ensemble", "RandomForest"), tree=True),
        Algorithm(
            "gradient_boosting", *_both("sklearn.ensemble", "HistGradientBoosting"), tree=True, dense=True
        ),
        Algorithm("svm", "sklearn.svm:SVC", "sklearn.svm:SVR", wrap="calibrated"),
        Algorithm("knn", *_both("sklearn.neighbors", "KNeighbors")),
        Algorithm("mlp", "sklearn.neural_network:MLPClassifier", "sklearn.neural_network:MLPRegressor"),
        Algorithm(
            "xgboost",
            "xgboost:XGBClassifier",
            "xgboost:XGBRegressor",
            tree=True,
            defaults={"verbosity": 0},
            wrap="encoded",
            package="xgboost",
        ),
        Algorithm(
            "lightgbm",
            "lightgbm:LGBMClassifier",
            "lightgbm:LGBMRegressor",
            tree=True,
            defaults={"verbose": -1},
            package="lightgbm",
        ),
    )
}


def installed(task: Task) -> list[str]:
    """Names of the algorithms for ``task`` whose package can be imported."""
    names = []
    for algorithm in ALGORITHMS.values():
        path = algorithm._path(task)
        if path is not None and importlib.util.find_spec(path.partition(":")[0].split(".")[0]):
            names.append(algorithm.name)
    return names


def algorithm_named(name: str, field: str = "algorithm") -> Algorithm:
    """:raises InvalidInput: ``name`` is not in the catalogue (with a suggestion)."""
    found = ALGORITHMS.get(name)
    if found is None:
        raise InvalidInput(
            f"Unknown algorithm {name!r}; expected one of {', '.join(ALGORITHMS)}."
            + suggest(name, list(ALGORITHMS)),
            field=field,
        )
    return found


def check_params(
    algorithm: Algorithm, task: Task, params: Mapping[str, Any], field: str = "params", grid: bool = False
) -> None:
    """Check param names against the estimator's ``get_params()`` and values against its declared
    constraints (scikit-learn's ``_parameter_constraints``, where the class has them).

    :param grid: each value is a list of candidate values (a search's ``params``).
    :raises InvalidInput: naming ``{field}.{name}`` (``{field}.{name}[i]`` for a grid value).
    """
    from sklearn.utils._param_validation import InvalidParameterError, validate_parameter_constraints

    cls = algorithm.estimator_class(task)
    valid = sorted(cls().get_params())
    constraints = getattr(cls, "_parameter_constraints", {})
    for name, value in params.items():
        where = f"{field}.{name}"
        if name == "random_state":
            raise InvalidInput(
                "'random_state' is set from the spec's 'seed'; give 'seed' instead.", field=where
            )
        if name not in valid:
            raise InvalidInput(
                f"Unknown parameter {name!r} for {cls.__name__} ({algorithm.name}); its parameters are "
                f"{', '.join(valid)}." + suggest(name, valid),
                field=where,
            )
        if grid and (not isinstance(value, list) or not value):
            raise InvalidInput(
                f"{where!r} must be a non-empty list of candidate values; got {value!r:.100}.", field=where
            )
        candidates = [(f"{where}[{i}]", v) for i, v in enumerate(value)] if grid else [(where, value)]
        for place, candidate in candidates:
            if name not in constraints:
                continue
            try:
                validate_parameter_constraints(
                    {name: constraints[name]}, {name: candidate}, caller_name=cls.__name__
                )
            except InvalidParameterError as exc:
                raise InvalidInput(f"{exc} Fix {place!r}.", field=place) from exc
