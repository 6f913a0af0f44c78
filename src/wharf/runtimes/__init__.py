"""Runtimes: one module per model format behind :class:`~wharf.runtimes.base.Runtime`.

Rule of this layer: no Flask, no SQL, no settings. A runtime module imports its heavy library on
first use, and a missing library raises :class:`~wharf.errors.MissingDependency` naming the extra.
Third-party runtimes register under the ``wharf.runtimes`` entry-point group as
``format = "package.module:Class"``.
"""

from __future__ import annotations

import importlib
from functools import cache
from importlib.metadata import entry_points

from wharf.errors import InvalidModel, MissingDependency
from wharf.runtimes.base import Runtime as Runtime

RUNTIMES: dict[str, str] = {
    "joblib": "wharf.runtimes.sklearn:SklearnRuntime",
    "pickle": "wharf.runtimes.sklearn:SklearnRuntime",
    "skops": "wharf.runtimes.sklearn:SklearnRuntime",
    "onnx": "wharf.runtimes.onnx:OnnxRuntime",
    "xgboost": "wharf.runtimes.xgboost:XGBoostRuntime",
    "lightgbm": "wharf.runtimes.lightgbm:LightGBMRuntime",
    "pmml": "wharf.runtimes.pmml:PmmlRuntime",
}
"""Format name -> ``module:Class`` of the runtime that loads it."""

CODE_FORMATS = frozenset({"joblib", "pickle"})
"""Formats whose files run code when loaded (Python pickles)."""

EXTRAS: dict[str, str] = {
    "skops": "skops",
    "onnx": "onnx",
    "xgboost": "xgboost",
    "lightgbm": "lightgbm",
    "pmml": "pmml",
}

SUFFIXES: dict[str, str] = {
    ".joblib": "joblib",
    ".pkl": "pickle",
    ".pickle": "pickle",
    ".skops": "skops",
    ".onnx": "onnx",
    ".ubj": "xgboost",
    ".xgb": "xgboost",
    ".lgb": "lightgbm",
    ".pmml": "pmml",
}


@cache
def table() -> dict[str, str]:
    """Built-in formats plus those registered by installed packages."""
    found = dict(RUNTIMES)
    for point in entry_points(group="wharf.runtimes"):
        found.setdefault(point.name, point.value)
    return found


def formats() -> list[str]:
    return sorted(table())


def runtime_class(fmt: str) -> type[Runtime]:
    """The runtime class for format ``fmt``.

    :raises InvalidModel: no runtime knows ``fmt``.
    :raises MissingDependency: the runtime's library is not installed.
    """
    target = table().get(fmt)
    if target is None:
        raise InvalidModel(f"Unknown model format {fmt!r}; wharf serves {', '.join(formats())}.")
    module_name, _, class_name = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        extra = EXTRAS.get(fmt, fmt)
        raise MissingDependency(
            f"Serving {fmt!r} models needs {exc.name or 'a library'} that is not installed; "
            f"run: pip install 'wharf[{extra}]'."
        ) from exc
    cls: type[Runtime] = getattr(module, class_name)
    return cls


def detect_format(filename: str, head: bytes) -> str:
    """Guess a file's format from its name, then from its first bytes.

    :param head: the first few kilobytes of the file.
    :raises InvalidModel: neither tells.
    """
    lower = filename.lower()
    for suffix, fmt in SUFFIXES.items():
        if lower.endswith(suffix):
            return fmt
    stripped = head.lstrip()
    if (lower.endswith(".json") or stripped.startswith(b"{")) and b"learner" in head[:64]:
        return "xgboost"  # JSON {"learner": ...} or UBJSON {L<length>learner...
    if stripped.startswith(b"tree\n") or b"\nversion=v" in head[:200]:
        return "lightgbm"
    if head.startswith(b"PK"):
        return "skops"
    if b"<PMML" in head:
        return "pmml"
    if head[:1] == b"\x80":
        # joblib.load reads plain pickles too, while pickle.load fails on joblib's array frames.
        return "joblib"
    raise InvalidModel(
        f"Cannot tell the format of {filename!r} from its name or content; name it with one of "
        f"{', '.join(sorted(SUFFIXES))} or pass the format explicitly ({', '.join(formats())})."
    )


FRAMEWORK_MODULES: dict[str, str] = {
    "scikit-learn": "sklearn",
    "onnxruntime": "onnxruntime",
    "xgboost": "xgboost",
    "lightgbm": "lightgbm",
}


def installed_version(framework: str) -> str | None:
    """The version of ``framework`` importable here, or None."""
    try:
        module = importlib.import_module(FRAMEWORK_MODULES.get(framework, framework))
    except ImportError:
        return None
    return getattr(module, "__version__", None)
