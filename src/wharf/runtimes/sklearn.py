"""scikit-learn estimators and pipelines (and anything with their API) from joblib, pickle or skops.

joblib and pickle files run code when loaded; only load files you trust. skops files are loaded with
an explicit list of trusted types and refused, with the untrusted type names, otherwise.
"""

from __future__ import annotations

import importlib
import pickle
import warnings
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Any, ClassVar

import joblib
import numpy as np
import sklearn
from sklearn.base import is_regressor
from sklearn.utils import get_tags

from wharf.batch import Batch
from wharf.errors import InvalidInput, InvalidModel, MissingDependency, UnsafeModel
from wharf.runtimes.base import calling_model, complete
from wharf.signature import Column, Output, Signature, dtype_from_numpy

TEXT_COLUMN = "text"
NO_NAMES_WARNING = "X does not have valid feature names"
# An array in feature_names_in_ order is what needs_frame() allows; the warning says nothing then.
warnings.filterwarnings("ignore", message=NO_NAMES_WARNING, category=UserWarning)
TRUSTED_PREFIXES = ("sklearn.",)
"""skops types trusted without asking: classes of these packages (never their functions)."""


def _load_object(path: Path, fmt: str, trusted: tuple[str, ...]) -> tuple[Any, str | None]:
    """The unpickled object and the scikit-learn version it was saved with, when it says."""
    if fmt == "skops":
        return _load_skops(path, trusted), None
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", sklearn.exceptions.InconsistentVersionWarning)
        try:
            if fmt == "pickle":
                with path.open("rb") as fh:
                    obj = pickle.load(fh)  # documented: pickle and joblib uploads are admin-only
            else:
                obj = joblib.load(path)
        except Exception as exc:
            raise InvalidModel(f"This is not a loadable {fmt} file: {type(exc).__name__}: {exc}") from exc
    saved = None
    for warning in caught:
        if isinstance(warning.message, sklearn.exceptions.InconsistentVersionWarning):
            saved = warning.message.original_sklearn_version
    return obj, saved


def _load_skops(path: Path, trusted: tuple[str, ...]) -> Any:
    try:
        import skops.io as sio
    except ImportError as exc:
        raise MissingDependency("Loading skops files needs skops; run: pip install 'wharf[skops]'.") from exc
    try:
        untrusted = sio.get_untrusted_types(file=path)
    except Exception as exc:
        raise InvalidModel(f"This is not a skops file: {type(exc).__name__}: {exc}") from exc
    refused = sorted(t for t in set(untrusted) - set(trusted) if not _sklearn_class(t))
    if refused:
        raise UnsafeModel(
            f"The skops file holds types that are not trusted: {', '.join(refused)}. Review them "
            "and add the ones you trust to WHARF_SKOPS_TRUSTED_TYPES.",
            untrusted=refused,
        )
    try:
        return sio.load(path, trusted=list(untrusted))
    except Exception as exc:
        raise InvalidModel(f"The skops file does not load: {type(exc).__name__}: {exc}") from exc


def _sklearn_class(name: str) -> bool:
    """Whether ``name`` is a class defined in scikit-learn (its Tree, loss objects, ...).

    Classes are rebuilt from data; a function named in a skops file would be called, so no
    function is trusted here, scikit-learn's included.
    """
    module_name, _, attribute = name.rpartition(".")
    if not module_name.startswith(TRUSTED_PREFIXES):
        return False
    try:
        found = getattr(importlib.import_module(module_name), attribute)
    except (ImportError, AttributeError):
        return False
    return isinstance(found, type) and found.__module__.startswith(TRUSTED_PREFIXES)


def _is_text_vectorizer(step: Any) -> bool:
    return hasattr(step, "vocabulary_") and hasattr(step, "build_analyzer")


def _first_step(estimator: Any) -> Any:
    return _steps(estimator)[0]


def _steps(estimator: Any) -> list[Any]:
    """The estimators a row passes through, nested pipelines flattened."""
    steps = getattr(estimator, "steps", None)
    if not steps:
        return [estimator]
    return [inner for _, step in steps if step not in (None, "passthrough") for inner in _steps(step)]


def _allow_nan(estimator: Any, after: list[Any] | None = None) -> bool:
    """Whether a missing value can pass: an imputer comes before any step that refuses NaN.

    :param after: steps that run after ``estimator`` (the rest of an outer pipeline).
    """
    for step in [*_steps(estimator), *(after or [])]:
        if type(step).__name__.endswith("Imputer"):  # SimpleImputer, KNNImputer, IterativeImputer
            return True
        try:
            if not get_tags(step).input_tags.allow_nan:
                return False
        except Exception:
            return False
    return True


def _column_kinds(estimator: Any) -> dict[str, Column]:
    """Per-column dtype, nullability and categories where a fitted ColumnTransformer says."""
    steps = _steps(estimator)
    first, rest = steps[0], steps[1:]
    kinds: dict[str, Column] = {}
    for _, transformer, columns in getattr(first, "transformers_", []):
        if isinstance(columns, str):
            columns = [columns]
        if isinstance(transformer, str) or not isinstance(columns, list | tuple):
            continue
        head = _first_step(transformer)
        nullable = _allow_nan(transformer, rest)
        categories = getattr(_last_step(transformer, "categories_"), "categories_", None)
        for j, name in enumerate(columns):
            if not isinstance(name, str):
                continue
            if _is_text_vectorizer(head):
                kinds[name] = Column(name=name, dtype="string")
            elif categories is not None and j < len(categories):
                known = [c for c in categories[j].tolist() if c is not None and c == c]  # no NaN
                dtype = dtype_from_numpy(categories[j].dtype.kind)
                kinds[name] = Column(name=name, dtype=dtype, nullable=nullable, categories=known or None)
            else:
                kinds[name] = Column(name=name, nullable=nullable)
    return kinds


def _last_step(transformer: Any, attribute: str) -> Any:
    for _, step in reversed(getattr(transformer, "steps", [])):
        if hasattr(step, attribute):
            return step
    return transformer


def _is_regressor(estimator: Any) -> bool:
    """scikit-learn's answer; objects that only share its API (no tags) are not regressors."""
    try:
        return bool(is_regressor(estimator))
    except Exception:  # scikit-learn >= 1.6 raises for objects without __sklearn_tags__
        return False


def infer_signature(estimator: Any) -> Signature | None:
    """What a fitted estimator says about its inputs and output."""
    classes = getattr(estimator, "classes_", None)
    if classes is not None:
        output = Output(kind="classification", classes=np.asarray(classes).tolist())
    else:
        output = Output(kind="regression" if _is_regressor(estimator) else "other")
    if _is_text_vectorizer(_first_step(estimator)):
        return Signature(inputs=[Column(name=TEXT_COLUMN, dtype="string")], output=output)
    nullable = _allow_nan(estimator)
    names = getattr(estimator, "feature_names_in_", None)
    if names is not None:
        kinds = _column_kinds(estimator)
        columns = [kinds.get(n) or Column(name=str(n), nullable=nullable) for n in names]
        return Signature(inputs=columns, output=output)
    try:
        n_features = int(estimator.n_features_in_)
    except (AttributeError, TypeError):
        return None
    inputs = [Column(name=f"x{i}", nullable=nullable) for i in range(n_features)]
    return Signature(inputs=inputs, output=output)


def needs_frame(estimator: Any) -> bool:
    """Whether predict needs a DataFrame, not an array in ``feature_names_in_`` order.

    Only a step that selects columns by name needs one (a ColumnTransformer, a FunctionTransformer,
    a class from outside scikit-learn, a gradient-boosting model with categorical columns); a
    DataFrame costs a hundred microseconds or more per call, which a numeric pipeline skips.
    """
    if getattr(estimator, "feature_names_in_", None) is None:
        return False
    for step in _steps(estimator):
        module = type(step).__module__
        if not module.startswith("sklearn.") or module.startswith("sklearn.compose"):
            return True
        if type(step).__name__ == "FunctionTransformer":
            return True
        categorical = getattr(step, "is_categorical_", None)
        if categorical is not None and bool(np.any(categorical)):
            return True
    return False


def _check_frame_names(estimator: Any, signature: Signature) -> None:
    """:raises InvalidInput: a model fitted on a DataFrame is given other column names."""
    fitted = getattr(estimator, "feature_names_in_", None)
    if fitted is None or signature.names == [str(n) for n in fitted]:
        return
    raise InvalidInput(
        f"The signature names the columns {signature.names!r:.200}, but this "
        f"{type(estimator).__name__} was fitted on a DataFrame with the columns "
        f"{[str(n) for n in fitted]!r:.200}; use those names, in that order.",
        field="signature.inputs",
    )


class SklearnRuntime:
    """An object with scikit-learn's ``predict`` (and maybe ``predict_proba``) API."""

    format: ClassVar[str] = "joblib"
    framework: ClassVar[str] = "scikit-learn"

    def __init__(self, estimator: Any, signature: Signature, made_with: dict[str, str]) -> None:
        self.estimator = estimator
        self.signature = signature
        self.made_with = made_with
        self._text = _is_text_vectorizer(_first_step(estimator))
        self._frame = needs_frame(estimator)
        self._has_proba = hasattr(estimator, "predict_proba")
        self._finite_inputs = not any(column.nullable for column in signature.inputs)

    @classmethod
    def load(
        cls,
        path: Path,
        *,
        signature: Signature | None = None,
        trusted: tuple[str, ...] = (),
        fmt: str = "joblib",
    ) -> SklearnRuntime:
        estimator, saved_version = _load_object(path, fmt, trusted)
        if not callable(getattr(estimator, "predict", None)):
            raise InvalidModel(
                f"The {fmt} file holds a {type(estimator).__name__}, which has no predict method; "
                "save the fitted estimator or pipeline itself."
            )
        resolved = complete(infer_signature(estimator), signature, type(estimator).__name__)
        _check_frame_names(estimator, resolved)
        made_with = {"scikit-learn": saved_version or sklearn.__version__}
        return cls(estimator, resolved, made_with)

    def _inputs(self, batch: Batch) -> Any:
        if self._text:
            return batch.column(0)
        if self._frame:
            return batch.as_frame()
        return batch.as_array()

    def _calling(self) -> AbstractContextManager[Any]:
        # With no nullable column the decoder lets no NaN or infinity through, so scikit-learn's
        # own finiteness scan of every input (a tenth of a one-row predict) is skipped. Where a
        # column is nullable, the scan stays: it is what refuses a NaN the signature wrongly allows.
        if self._finite_inputs:
            return sklearn.config_context(assume_finite=True)
        return nullcontext()

    def predict(self, batch: Batch) -> np.ndarray:
        with calling_model(type(self.estimator).__name__), self._calling():
            return np.asarray(self.estimator.predict(self._inputs(batch)))

    def predict_proba(self, batch: Batch) -> np.ndarray | None:
        if not self._has_proba:
            return None
        with calling_model(type(self.estimator).__name__), self._calling():
            return np.asarray(self.estimator.predict_proba(self._inputs(batch)))
