"""Exporters: a loaded version's model written in another format (ONNX, PMML).

One function per target format, ``to_<format>(model, signature, dest)``, imported on first use so
that a server without the converters installed still starts; a missing converter raises
:class:`~wharf.errors.MissingDependency` naming the extra, an unsupported step
:class:`~wharf.errors.UnsupportedConversion` naming the step and the format.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

from wharf.errors import MissingDependency, UnsupportedConversion
from wharf.runtimes.base import Runtime

EXPORTERS: dict[str, str] = {
    "onnx": "wharf.services.exporters.onnx:to_onnx",
    "pmml": "wharf.services.exporters.pmml:to_pmml",
}
"""Target format -> ``module:function`` that writes it."""

SUFFIXES = {"onnx": ".onnx", "pmml": ".pmml"}


def targets() -> list[str]:
    return sorted(EXPORTERS)


def model_of(runtime: Runtime) -> Any:
    """The in-memory model an exporter converts: an estimator, or a booster.

    :raises UnsupportedConversion: a runtime whose files are already data (ONNX, PMML).
    """
    for attribute in ("estimator", "booster"):
        model = getattr(runtime, attribute, None)
        if model is not None:
            return model
    raise UnsupportedConversion(
        f"Versions in the {runtime.format!r} format cannot be converted: wharf converts "
        "scikit-learn (joblib, pickle, skops), XGBoost and LightGBM models.",
        field="version",
    )


def export(runtime: Runtime, target: str, dest: Path) -> None:
    """Write ``runtime``'s model to ``dest`` in the ``target`` format.

    :raises UnsupportedConversion: the format, the model or one of its steps cannot be converted.
    :raises MissingDependency: the target's converter is not installed.
    """
    if target not in EXPORTERS:
        raise UnsupportedConversion(
            f"Cannot convert to {target!r}; wharf converts to {', '.join(targets())}.", field="to"
        )
    if runtime.format == target:
        raise UnsupportedConversion(f"This version is already in the {target!r} format.", field="to")
    model = model_of(runtime)
    module_name, _, function = EXPORTERS[target].partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise MissingDependency(
            f"Converting to {target} needs {exc.name or 'a library'} that is not installed; "
            f"run: pip install 'wharf[{target}]'."
        ) from exc
    getattr(module, function)(model, runtime.signature, dest)
