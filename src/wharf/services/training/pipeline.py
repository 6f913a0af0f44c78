"""The scikit-learn pipeline a training spec describes: a ColumnTransformer by column kind, then the model.

Each kind of column gets its own branch of one ``ColumnTransformer`` (``prepare``), named so that
``get_feature_names_out`` reads back as ``numeric__age``, ``categorical__city_Paris``,
``text_review__great``, ``datetime__sold_month``:

    numeric      SimpleImputer(numeric_imputation) -> scaler
    boolean      BooleanColumns (1.0 / 0.0 / NaN) -> SimpleImputer(most_frequent)
    categorical  StringColumns -> SimpleImputer(categorical_imputation)
                 -> OneHotEncoder(handle_unknown="ignore")
    datetime     DatetimeParts(datetime_parts) -> SimpleImputer(numeric_imputation) -> scaler
    text         TextDocuments (missing as "") -> TfidfVectorizer(max_features), one branch per column

The scaler is ``StandardScaler``, ``MinMaxScaler`` or none, per ``scaling``; the tree algorithms
(decision_tree, random_forest, gradient_boosting, xgboost, lightgbm) get none whatever ``scaling``
says, since scaling a column changes none of their splits. The pipeline takes the raw columns of
the table (or of a request, decoded by wharf), so the registered file is the whole of it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sklearn.compose import ColumnTransformer
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.impute import SimpleImputer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import MinMaxScaler, OneHotEncoder, StandardScaler

from wharf.services.profiling import ColumnKind
from wharf.services.training.algorithms import Task, algorithm_named
from wharf.services.training.spec import Preprocessing, TrainSpec
from wharf.services.training.transformers import BooleanColumns, DatetimeParts, StringColumns, TextDocuments

PREPARE = "prepare"
MODEL = "model"


def _scaler(scaling: str) -> list[tuple[str, Any]]:
    if scaling == "standard":
        return [("scale", StandardScaler())]
    if scaling == "minmax":
        return [("scale", MinMaxScaler())]
    return []


def text_branch(column: str) -> str:
    """The ColumnTransformer branch of one text column (``__`` is reserved by scikit-learn)."""
    return "text_" + column.replace("__", "_")


def preprocessor(
    preprocessing: Preprocessing, kinds: Mapping[str, ColumnKind], scale: bool = True, dense: bool = False
) -> ColumnTransformer:
    """The ``prepare`` step for the columns ``kinds`` (in the order the model takes them).

    :param scale: whether numbers and datetime parts are scaled (per ``preprocessing.scaling``).
    :param dense: always output a dense matrix (for estimators that refuse sparse input).
    """
    by_kind: dict[str, list[str]] = {}
    for name, kind in kinds.items():
        by_kind.setdefault(kind, []).append(name)
    scaler = _scaler(preprocessing.scaling) if scale else []
    numeric_imputer = ("impute", SimpleImputer(strategy=preprocessing.numeric_imputation))
    branches: list[tuple[str, Any, Any]] = []
    if "numeric" in by_kind:
        branches.append(("numeric", Pipeline([numeric_imputer, *scaler]), by_kind["numeric"]))
    if "boolean" in by_kind:
        steps = [("flags", BooleanColumns()), ("impute", SimpleImputer(strategy="most_frequent"))]
        branches.append(("boolean", Pipeline(steps), by_kind["boolean"]))
    if "categorical" in by_kind:
        steps = [
            ("strings", StringColumns()),
            ("impute", SimpleImputer(strategy=preprocessing.categorical_imputation)),
            ("onehot", OneHotEncoder(handle_unknown="ignore")),
        ]
        branches.append(("categorical", Pipeline(steps), by_kind["categorical"]))
    if "datetime" in by_kind:
        parts = ("parts", DatetimeParts(parts=tuple(preprocessing.datetime_parts)))
        imputer = ("impute", SimpleImputer(strategy=preprocessing.numeric_imputation))
        branches.append(("datetime", Pipeline([parts, imputer, *scaler]), by_kind["datetime"]))
    for column in by_kind.get("text", []):
        steps = [
            ("documents", TextDocuments()),
            ("tfidf", TfidfVectorizer(max_features=preprocessing.text_max_features)),
        ]
        branches.append((text_branch(column), Pipeline(steps), column))
    if not branches:
        raise ValueError("no feature columns to prepare")
    return ColumnTransformer(branches, remainder="drop", sparse_threshold=0.0 if dense else 0.3)


def build_pipeline(spec: TrainSpec, kinds: Mapping[str, ColumnKind]) -> Pipeline:
    """The unfitted ``Pipeline([("prepare", ColumnTransformer), ("model", estimator)])`` of ``spec``.

    :param spec: a spec resolved by :func:`wharf.services.training.spec.check` (its task is not
        ``auto``).
    :param kinds: the kind of each feature column, in the order the model takes them.
    :raises InvalidInput: the algorithm does not do the task or is not installed.
    """
    if spec.task == "auto":
        raise ValueError("resolve the spec's task with check() before building its pipeline")
    task: Task = spec.task
    algorithm = algorithm_named(spec.algorithm)
    prepare = preprocessor(spec.preprocessing, kinds, scale=not algorithm.tree, dense=algorithm.dense)
    return Pipeline([(PREPARE, prepare), (MODEL, algorithm.build(task, spec.params, spec.seed))])
