"""PMML export of scikit-learn estimators and pipelines with sklearn2pmml.

sklearn2pmml pickles the model and runs a Java converter (JPMML-SkLearn) on the pickle, which
prints why it refuses a step and exits; that output is captured here and turned into an
:class:`~wharf.errors.UnsupportedConversion` naming the step. The document's target field is ``y``
(``y_`` and so on where a column has that name); the runtime reads it from the mining schema.
"""

from __future__ import annotations

import contextlib
import copy
import io
import logging
import pickle
import re
import shutil
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from wharf.errors import MissingDependency, UnsupportedConversion
from wharf.signature import Signature

log = logging.getLogger("wharf.exporters")

NO_TELEMETRY = ["-Dhttps.proxyHost=127.0.0.1", "-Dhttps.proxyPort=9"]
"""When it fails, sklearn2pmml's Java converter posts the exception and the versions of the Python
packages to telemetry.jpmml.org, without a switch to turn it off. A proxy on a closed loopback port
makes that post fail at once: nothing about a user's model leaves the machine, and a firewalled
network cannot stall a failed conversion."""
EXCEPTION_LINE = re.compile(r"^([a-zA-Z_$][\w$]*(?:\.[\w$]+)+): (.*)$")
PYTHON_CLASS = re.compile(r"Python class ([\w.]+)")
SKLEARN_VERSION = re.compile(r"Scikit-Learn version '([^']+)' is not supported")
VERSION = re.compile(r"\d+(?:\.\d+)+")
SELECTOR_PROXY = "sklearn2pmml.SelectorProxy"
PATH = re.compile(r"(?<![\w.])(?:[A-Za-z]:)?[\\/](?:[^\s'\"\\/]+[\\/])+[^\s'\"]*")
"""Absolute file paths, kept out of the details sent to clients."""

_capture_lock = threading.Lock()
"""sklearn2pmml prints the converter's output to ``sys.stdout``, which one export at a time owns."""


def to_pmml(model: Any, signature: Signature, dest: Path) -> None:
    """Write ``model``, a fitted scikit-learn estimator or pipeline, as a PMML document at ``dest``.

    The model is copied first: sklearn2pmml rewrites some steps of what it converts in place.

    :param signature: the columns the document takes, in order.
    :raises UnsupportedConversion: the converter refuses the model or one of its steps, naming it,
        or refuses this scikit-learn version.
    :raises MissingDependency: sklearn2pmml or Java 11+ is not installed.
    """
    try:
        import sklearn2pmml
        from sklearn.base import BaseEstimator
    except ImportError as exc:
        raise MissingDependency(
            "Converting to PMML needs sklearn2pmml; run: pip install 'wharf[pmml]'."
        ) from exc
    if shutil.which("java") is None:
        raise MissingDependency(_NO_JAVA)
    if not isinstance(model, BaseEstimator):
        raise UnsupportedConversion(
            f"PMML export converts scikit-learn estimators and pipelines; this model is a "
            f"{type(model).__module__}.{type(model).__qualname__}. Fit it through its scikit-learn "
            "wrapper, or convert it to ONNX.",
            field="to",
        )
    target = next(
        name for name in ("y", *(f"y{'_' * n}" for n in range(1, 99))) if name not in signature.names
    )
    pipeline = sklearn2pmml.make_pmml_pipeline(
        copy.deepcopy(model), active_fields=signature.names, target_fields=[target]
    )
    if _allows_missing(model):
        # Trees send a missing value down the branch scikit-learn takes, instead of no prediction.
        pipeline.configure(allow_missing=True)
    printed = io.StringIO()
    try:
        with _capture_lock, contextlib.redirect_stdout(printed):
            sklearn2pmml.sklearn2pmml(pipeline, str(dest), java_opts=NO_TELEMETRY)
    except (pickle.PicklingError, AttributeError) as exc:
        raise UnsupportedConversion(_unpicklable(model, exc), field="to") from exc
    except RuntimeError as exc:
        output = printed.getvalue()
        log.info("sklearn2pmml failed:\n%s", output)
        if "Java is not installed" in str(exc):
            raise MissingDependency(_NO_JAVA) from exc
        raise UnsupportedConversion(_refusal(model, output, sklearn2pmml.__version__), field="to") from exc
    log.debug("sklearn2pmml:\n%s", printed.getvalue())


_NO_JAVA = (
    "Converting to PMML needs Java 11+ (sklearn2pmml runs a Java converter), and no 'java' is on "
    "the PATH; install one, e.g. apt-get install openjdk-17-jre-headless."
)


@dataclass
class _JavaException:
    name: str
    message: str
    solution: list[str] = field(default_factory=list)
    context: list[str] = field(default_factory=list)


def _exceptions(output: str) -> list[_JavaException]:
    """The exception and its causes, outermost first, from the converter's printed report: a line
    ``org.jpmml.sklearn.SkLearnException: <message>`` each, then tab-indented lines under
    ``Solution:`` and ``Context:`` (the Python classes involved), then the stack trace."""
    found: list[_JavaException] = []
    section = ""
    for line in output.splitlines():
        match = EXCEPTION_LINE.match(line)
        if match and match.group(1).endswith(("Exception", "Error")):
            found.append(_JavaException(match.group(1), match.group(2).strip()))
            section = ""
        elif found and line.rstrip(":") in ("Solution", "Context", "Stack trace") and line.endswith(":"):
            section = line.rstrip(":")
        elif found and line.startswith("\t") and section in ("Solution", "Context"):
            target = found[-1].solution if section == "Solution" else found[-1].context
            target.append(line.strip())
        elif not line.startswith("\t"):
            section = ""
    return found


def _refusal(model: Any, output: str, version: str) -> str:
    """A one-paragraph detail for a refusal by the Java converter."""
    exceptions = _exceptions(output)
    for exc in exceptions:
        unsupported = SKLEARN_VERSION.search(exc.message)
        if unsupported:
            known = VERSION.search(" ".join(exc.solution))
            upto = f" (it knows up to {known.group(0)})" if known else ""
            return (
                f"sklearn2pmml {version} does not support scikit-learn {unsupported.group(1)}{upto}, so "
                "this model cannot be converted to PMML. Upgrade sklearn2pmml, or train with a "
                "scikit-learn version it supports."
            )
    # The deepest exception of the converter's own says why; wrappers and Java's own say less.
    own = [e for e in exceptions if not e.name.startswith("java.") and not e.message.startswith("Failed to")]
    reason = own[-1] if own else (exceptions[-1] if exceptions else None)
    if reason is None:
        return (
            f"sklearn2pmml {version} could not convert this {type(model).__name__} to PMML and gave no "
            "reason; the server log holds its output."
        )
    if "SkLearn2PMML package" in reason.message:  # "... has expired": it refuses to run at all
        return (
            f"sklearn2pmml {version} refuses to run: {reason.message}. "
            "Upgrade it: pip install -U sklearn2pmml."
        )
    named = [m.group(1) for e in exceptions for m in PYTHON_CLASS.finditer(e.message)]
    named += [c for e in exceptions for c in e.context if not c.startswith("sklearn2pmml.pipeline.")]
    if named:
        where, name = _locate(model, named[0])
        step = f"the step {where!r} ({name})" if where else f"the model ({name})"
    else:
        step = f"this {type(model).__name__}"
    solution = f" The converter suggests: {' '.join(reason.solution).rstrip('.')}." if reason.solution else ""
    detail = (
        f"sklearn2pmml {version} cannot convert {step} to PMML: {reason.message.rstrip('.')}.{solution} "
        "Replace or remove it, or convert to ONNX instead."
    )
    return PATH.sub("<file>", detail)


def _unpicklable(model: Any, exc: Exception) -> str:
    """A detail for a model that cannot be pickled for the converter (a lambda, a local function)."""
    for where, step in _steps(model):
        try:
            pickle.dumps(step)
        except Exception:
            name = f"{type(step).__module__}.{type(step).__qualname__}"
            at = f"the step {where!r} ({name})" if where else f"the model ({name})"
            return (
                f"sklearn2pmml cannot convert {at} to PMML: it holds an object that cannot be pickled "
                "(a lambda or a local function?), and the converter reads the model from a pickle. "
                "Use a module-level NumPy function, or sklearn2pmml's ExpressionTransformer."
            )
    message = PATH.sub("<file>", str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
    return f"sklearn2pmml cannot convert this {type(model).__name__} to PMML: {message}."


def _allows_missing(model: Any) -> bool:
    """Whether the final estimator takes NaN itself (scikit-learn's trees and forests)."""
    from sklearn.utils import get_tags

    while getattr(model, "steps", None):
        model = model.steps[-1][1]
    try:
        return bool(get_tags(model).input_tags.allow_nan)
    except Exception:
        return False


def _steps(model: Any, prefix: str = "") -> Iterator[tuple[str, Any]]:
    """Every step of ``model`` with its path (``'prep/numbers/scale'``), leaves first."""
    children: list[tuple[str, Any]] = list(getattr(model, "steps", None) or [])
    children += [(name, step) for name, step, _ in getattr(model, "transformers_", None) or []]
    children += list(getattr(model, "transformer_list", None) or [])
    for name, child in children:
        if not isinstance(child, str):  # "drop", "passthrough"
            yield from _steps(child, f"{prefix}/{name}" if prefix else name)
    yield prefix, model


def _locate(model: Any, class_name: str) -> tuple[str, str]:
    """The path and class of the step the converter names by its class (empty path: the model)."""
    from sklearn.feature_selection import SelectorMixin

    for where, step in _steps(model):
        name = f"{type(step).__module__}.{type(step).__qualname__}"
        # sklearn2pmml converts feature selectors through a proxy class of its own.
        if name == class_name or (class_name == SELECTOR_PROXY and isinstance(step, SelectorMixin)):
            return where, name
    return "", class_name
