"""What a training job is asked to do, and its check against the dataset before it is queued.

:class:`TrainSpec` is the body of ``POST /v1/jobs`` for ``"kind": "train"``; its shape is checked by
pydantic. :func:`check` then holds it against the dataset's profile (the columns and their kinds,
see :mod:`wharf.services.profiling`), so a job that cannot run is refused before it is queued.
"""

from __future__ import annotations

import math
import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, field_validator

from wharf.errors import InvalidInput, suggest
from wharf.services.training.algorithms import Task, algorithm_named, check_params
from wharf.services.training.transformers import DEFAULT_PARTS, DatetimePart

AUTO_MAX_CLASSES = 20
"""``task: "auto"`` takes an integer target with at most this many distinct values as classes."""
MAX_CLASSES = 1000
"""A classification target with more distinct values than this is refused."""
MAX_NAME = 256
"""Longest column name a signature takes."""
MODEL_NAME = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"
INTEGER_DTYPE = re.compile(r"^u?int\d*$", re.IGNORECASE)


class Preprocessing(BaseModel):
    """How each kind of column is prepared (see :mod:`wharf.services.training.pipeline`)."""

    model_config = ConfigDict(extra="forbid")

    numeric_imputation: Literal["median", "mean", "most_frequent", "constant"] = "median"
    """What replaces a missing number (``constant``: 0); also used for datetime parts."""
    categorical_imputation: Literal["most_frequent", "constant"] = "most_frequent"
    """What replaces a missing category (``constant``: the category ``"missing_value"``)."""
    scaling: Literal["standard", "minmax", "none"] = "standard"
    """Scaling of numbers and datetime parts; tree algorithms get none whatever this says."""
    text_max_features: int = Field(20000, ge=1, le=1_000_000)
    """Most TF-IDF terms kept per text column (the most frequent ones)."""
    datetime_parts: list[DatetimePart] = Field(default_factory=lambda: list(DEFAULT_PARTS), min_length=1)
    """Numbers taken from each datetime column."""

    @field_validator("datetime_parts")
    @classmethod
    def _distinct(cls, parts: list[str]) -> list[str]:
        if len(set(parts)) != len(parts):
            raise ValueError(f"each part may appear once; got {parts}")
        return parts


class Holdout(BaseModel):
    """Fit on a random split of the rows and evaluate on the rest (stratified for classes)."""

    model_config = ConfigDict(extra="forbid")

    test_size: float = Field(0.2, gt=0, lt=1)
    """Fraction of the rows held out for evaluation."""


class CrossValidation(BaseModel):
    """Evaluate by k-fold cross-validation, then fit on every row."""

    model_config = ConfigDict(extra="forbid")

    cv: int = Field(ge=2, le=100)
    """Number of folds."""


HOLDOUT, CV = "holdout", "cv"
VALIDATION_TAGS = frozenset({HOLDOUT, CV})
"""Which shape of ``validation`` pydantic checks a body against; dropped from error locations."""


def _validation_kind(value: Any) -> str:
    """``cv`` when the body names folds (so their errors are about folds), else ``holdout``."""
    if isinstance(value, CrossValidation) or (isinstance(value, dict) and "cv" in value):
        return CV
    return HOLDOUT


class Search(BaseModel):
    """A hyper-parameter search with cross-validation on the training rows."""

    model_config = ConfigDict(extra="forbid")

    method: Literal["grid", "random"] = "grid"
    params: dict[str, list[Any]] = Field(min_length=1)
    """Candidate values per estimator parameter, e.g. ``{"max_depth": [3, 5, null]}``."""
    cv: int = Field(3, ge=2, le=20)
    n_iter: int = Field(10, ge=1, le=10_000)
    """Candidates drawn by a random search (at most the grid's size)."""
    scoring: str | None = None
    """A scikit-learn scorer name (``f1_macro``, ``neg_root_mean_squared_error``, ...); default:
    accuracy for classification, R2 for regression."""


class TrainSpec(BaseModel):
    """A training job: which dataset, which target, how to prepare, fit, validate and register."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["train"] = "train"
    dataset: int = Field(ge=1)
    """Id of an uploaded dataset."""
    target: str = Field(min_length=1)
    """The column to predict."""
    task: Literal["auto", "classification", "regression"] = "auto"
    """``auto``: classification for a non-numeric target or an integer one of at most 20 distinct
    values, else regression."""
    features: list[str] | None = Field(None, min_length=1)
    """Input columns, in the order the model takes them; default: every column but the target
    (columns with no value at all left out)."""
    algorithm: str = "random_forest"
    params: dict[str, Any] = Field(default_factory=dict)
    """Estimator constructor arguments, e.g. ``{"n_estimators": 200}``."""
    preprocessing: Preprocessing = Field(default_factory=Preprocessing)
    validation: Annotated[
        Annotated[Holdout, Tag(HOLDOUT)] | Annotated[CrossValidation, Tag(CV)],
        Discriminator(_validation_kind),
    ] = Field(default_factory=Holdout)
    """``{"test_size": 0.2}`` or ``{"cv": 5}``."""
    search: Search | None = None
    seed: int = Field(0, ge=0, le=2**32 - 1)
    """Seeds the split, the folds, the search and the estimator."""
    register_as: str | None = Field(None, pattern=MODEL_NAME)
    """Model name the result is registered under; default: from the dataset's name."""


def _columns(profile: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {str(column["name"]): column for column in profile["columns"]}


def _features(spec: TrainSpec, columns: dict[str, dict[str, Any]], rows: int) -> list[str]:
    features = _listed_features(spec, columns, rows)
    for name in features:
        if len(name) > MAX_NAME:
            where = f"features[{features.index(name)}]" if spec.features else "features"
            raise InvalidInput(
                f"The column {name[:40]!r}... has a name of {len(name)} characters; a model's columns "
                f"take at most {MAX_NAME}. Rename it, or leave it out of 'features'.",
                field=where,
            )
    return features


def _listed_features(spec: TrainSpec, columns: dict[str, dict[str, Any]], rows: int) -> list[str]:
    if spec.features is None:
        features = [n for n, c in columns.items() if n != spec.target and c["missing"] < rows]
        if not features:
            raise InvalidInput(
                f"The dataset has no column with values besides the target {spec.target!r}; upload "
                "a table with at least one input column.",
                field="features",
            )
        return features
    seen: set[str] = set()
    for i, name in enumerate(spec.features):
        where = f"features[{i}]"
        if name not in columns:
            raise InvalidInput(
                f"Unknown feature column {name!r}; the dataset has {_shown(list(columns))}."
                + suggest(name, list(columns)),
                field=where,
            )
        if name == spec.target:
            raise InvalidInput(
                f"The target {name!r} is also listed as a feature; remove it from 'features'.", field=where
            )
        if name in seen:
            raise InvalidInput(f"Feature {name!r} is listed twice.", field=where)
        if columns[name]["missing"] >= rows:
            raise InvalidInput(
                f"Feature {name!r} has no value in any row; leave it out of 'features'.", field=where
            )
        seen.add(name)
    return list(spec.features)


def _shown(names: list[str], limit: int = 10) -> str:
    shown = ", ".join(repr(n) for n in names[:limit])
    return shown + (f", ... ({len(names)} in all)" if len(names) > limit else "")


def resolve_task(task: str, column: dict[str, Any]) -> Task:
    """The task for a target column of the profile (``kind``, ``dtype``, ``unique``).

    :raises InvalidInput: (``field="task"`` or ``"target"``) the target does not suit the task.
    """
    name, kind, unique = column["name"], column["kind"], int(column["unique"])
    if kind == "datetime":
        raise InvalidInput(
            f"The target {name!r} holds datetimes; predict a number or a class, or derive one "
            "(a year, a delay) before uploading.",
            field="target",
        )
    if unique < 2:
        raise InvalidInput(
            f"The target {name!r} has {unique} distinct value(s); there is nothing to learn. Pick "
            "another target.",
            field="target",
        )
    if task == "auto":
        integers = kind == "numeric" and INTEGER_DTYPE.match(str(column.get("dtype", "")))
        resolved: Task = (
            "regression"
            if kind == "numeric" and not (integers and unique <= AUTO_MAX_CLASSES)
            else "classification"
        )
        return resolved
    if task == "regression" and kind != "numeric":
        raise InvalidInput(
            f"Regression needs a numeric target; {name!r} is {kind}. Use task 'classification', or "
            "another target.",
            field="task",
        )
    if task == "classification" and unique > MAX_CLASSES:
        hint = " Use task 'regression'." if kind == "numeric" else ""
        raise InvalidInput(
            f"The target {name!r} has {unique} distinct values; classification takes at most "
            f"{MAX_CLASSES} classes.{hint}",
            field="task",
        )
    return "classification" if task == "classification" else "regression"


def _check_validation(spec: TrainSpec, rows: int) -> int:
    """:returns: the rows a search's folds split (the training rows)."""
    validation = spec.validation
    if isinstance(validation, CrossValidation):
        if validation.cv > rows:
            raise InvalidInput(
                f"{validation.cv} folds need at least {validation.cv} rows with a target; the dataset "
                f"has {rows}. Use fewer folds.",
                field="validation.cv",
            )
        return rows - math.ceil(rows / validation.cv)
    n_test = math.ceil(validation.test_size * rows)
    if rows - n_test < 2:
        raise InvalidInput(
            f"A test_size of {validation.test_size} leaves {rows - n_test} of {rows} rows to fit on; "
            "use a smaller test_size or more rows.",
            field="validation.test_size",
        )
    return rows - n_test


def _check_search(spec: TrainSpec, task: Task, train_rows: int) -> None:
    search = spec.search
    if search is None:
        return
    algorithm = algorithm_named(spec.algorithm)
    check_params(algorithm, task, search.params, field="search.params", grid=True)
    if search.cv > train_rows:
        raise InvalidInput(
            f"A search with {search.cv} folds needs at least {search.cv} training rows; there are "
            f"{train_rows}. Use fewer folds.",
            field="search.cv",
        )
    if search.scoring is not None:
        from sklearn.metrics import get_scorer_names

        names = sorted(get_scorer_names())
        if search.scoring not in names:
            raise InvalidInput(
                f"Unknown scoring {search.scoring!r}; use a scikit-learn scorer name such as "
                "'accuracy', 'f1_macro', 'roc_auc', 'r2' or 'neg_mean_absolute_error'."
                + suggest(search.scoring, names),
                field="search.scoring",
            )


def check(spec: TrainSpec, profile: dict[str, Any]) -> TrainSpec:
    """Check ``spec`` against a dataset profile (:func:`wharf.services.profiling.profile_frame`).

    :returns: the spec with ``task`` resolved (never ``auto``) and ``features`` listed.
    :raises InvalidInput: naming the field at fault (``target``, ``features[2]``, ``task``,
        ``algorithm``, ``params.max_depth``, ``validation.cv``, ``search.params.C[1]``, ...).
    """
    columns = _columns(profile)
    rows = int(profile["rows"])
    if spec.target not in columns:
        raise InvalidInput(
            f"Unknown target column {spec.target!r}; the dataset has {_shown(list(columns))}."
            + suggest(spec.target, list(columns)),
            field="target",
        )
    features = _features(spec, columns, rows)
    target = {"name": spec.target, **columns[spec.target]}
    task = resolve_task(spec.task, target)
    labelled = rows - int(target["missing"])
    if labelled < 3:
        raise InvalidInput(
            f"The target {spec.target!r} has a value in {labelled} row(s); training needs at least 3.",
            field="target",
        )
    algorithm = algorithm_named(spec.algorithm)
    check_params(algorithm, task, spec.params)
    train_rows = _check_validation(spec, labelled)
    _check_search(spec, task, train_rows)
    return spec.model_copy(update={"task": task, "features": features})
