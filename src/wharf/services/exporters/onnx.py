"""ONNX export: scikit-learn estimators and pipelines with skl2onnx, XGBoost and LightGBM
boosters with onnxmltools.

The graph keeps the source's columns so that one request body works for both versions: a model of
numeric columns takes one float tensor whose columns are named by the ``wharf.columns`` metadata
property; a model with string columns takes one input per column, named as the column. Class
labels go in ``wharf.classes``. Classifiers output labels and a probability matrix (no ZipMap).
"""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

from wharf.errors import UnsupportedConversion
from wharf.signature import Signature

TARGET_OPSET = {"": 17, "ai.onnx.ml": 3}
"""ai.onnx.ml 3 has tree ensembles with double thresholds; opset 17 is well inside ONNX Runtime's range."""
BOOSTER_OPSET = 15
"""The highest opset onnxmltools' XGBoost and LightGBM converters write."""


def to_onnx(model: Any, signature: Signature, dest: Path) -> None:
    """Write ``model`` as an ONNX graph taking ``signature``'s columns.

    :raises UnsupportedConversion: naming the step or model the converters do not know.
    """
    kind = type(model).__module__.split(".")[0]
    if kind == "xgboost":
        graph = _booster(model, signature, "xgboost")
    elif kind == "lightgbm":
        graph = _booster(model, signature, "lightgbm")
    else:
        graph = _sklearn(model, signature)
    _batch_dimension(graph)
    meta = {"wharf.columns": json.dumps(signature.names)}
    if signature.output.classes:
        meta["wharf.classes"] = json.dumps(signature.output.classes)
    if any(column.nullable for column in signature.inputs):
        meta["wharf.nullable"] = "true"
    for key, value in meta.items():
        entry = graph.metadata_props.add()
        entry.key, entry.value = key, value
    dest.write_bytes(graph.SerializeToString())


def _batch_dimension(graph: Any) -> None:
    """Name the first dimension of every output: some converters write a fixed 1 there, and ONNX
    Runtime then warns on every call that returns more rows."""
    for output in graph.graph.output:
        dims = output.type.tensor_type.shape.dim
        if dims and dims[0].HasField("dim_value"):
            dims[0].dim_param = "N"


def _numeric(signature: Signature) -> bool:
    return all(column.dtype != "string" for column in signature.inputs)


def _initial_types(signature: Signature) -> list[tuple[str, Any]]:
    from skl2onnx.common.data_types import FloatTensorType, Int64TensorType, StringTensorType

    if _numeric(signature):
        return [("input", FloatTensorType([None, len(signature.inputs)]))]
    types = {"string": StringTensorType, "int64": Int64TensorType}
    return [(c.name, types.get(c.dtype, FloatTensorType)([None, 1])) for c in signature.inputs]


def _sklearn(model: Any, signature: Signature) -> Any:
    from skl2onnx import convert_sklearn

    options: dict[int, dict[str, Any]] = {id(step): {"zipmap": False} for step in _classifiers(model)}
    for step in _text_vectorizers(model):
        # ONNX Runtime's StringNormalizer builds the graph's locale when the session loads, and
        # machines without en_US (most containers) fail there; C lowercases ASCII just the same.
        options[id(step)] = {"locale": "C"}
    if _numeric(signature):
        model = _positional(model, signature.names)
    try:
        return convert_sklearn(
            model,
            initial_types=_initial_types(signature),
            options=options,
            target_opset=TARGET_OPSET,
        )
    except Exception as exc:  # skl2onnx has no error type of its own: any failure is a refusal
        raise UnsupportedConversion(_sklearn_detail(model, exc), field="to") from exc


def _positional(model: Any, names: list[str]) -> Any:
    """A copy of ``model`` whose ColumnTransformers select columns by position, not by name.

    A numeric model's graph takes one tensor (the columns in signature order), where a
    ColumnTransformer fitted on a DataFrame names its columns; skl2onnx finds names only among
    separate inputs. Pipelines trained by wharf select by name.
    """
    transformers = _column_transformers(model)
    if not transformers:
        return model
    index = {name: i for i, name in enumerate(names)}
    copied = copy.deepcopy(model)
    for transformer in _column_transformers(copied):
        transformer.transformers_ = [
            (label, step, [index[c] for c in columns] if _all_named(columns, index) else columns)
            for label, step, columns in transformer.transformers_
        ]
    return copied


def _all_named(columns: Any, index: dict[str, int]) -> bool:
    return isinstance(columns, list | tuple) and bool(columns) and all(c in index for c in columns)


def _column_transformers(model: Any) -> list[Any]:
    found = [model] if hasattr(model, "transformers_") else []
    for _, step in getattr(model, "steps", None) or []:
        found += _column_transformers(step)
    return found


def _classifiers(model: Any) -> list[Any]:
    """Every classifier in ``model`` (itself, or the last step of nested pipelines)."""
    found = [model] if hasattr(model, "classes_") else []
    steps = getattr(model, "steps", None)
    if steps:
        found += _classifiers(steps[-1][1])
    return found


def _text_vectorizers(model: Any) -> list[Any]:
    found = [model] if hasattr(model, "vocabulary_") else []
    for _, step in getattr(model, "steps", None) or []:
        found += _text_vectorizers(step)
    for _, step, _ in getattr(model, "transformers_", None) or []:
        found += _text_vectorizers(step)
    return found


UNKNOWN_MODEL = re.compile(r"Unable to find a shape calculator for type '<class '([\w.]+)'>'")


def _sklearn_detail(model: Any, exc: Exception) -> str:
    message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    found = UNKNOWN_MODEL.search(str(exc))
    if found:
        step = found.group(1).rsplit(".", 1)[-1]
        where = _path_of(model, step)
        return (
            f"skl2onnx has no ONNX converter for the step {where} ({found.group(1)}); ONNX export "
            "supports scikit-learn's own estimators and transformers. Replace the step, or serve "
            "this version as it is."
        )
    final = model.steps[-1][1] if getattr(model, "steps", None) else model
    if len(message) > 200:  # some converters fail deep inside with a dump of the graph node
        message = f"{type(exc).__name__} inside the converter of {type(final).__name__}"
    return (
        f"skl2onnx cannot convert this {type(model).__name__} to ONNX: {message}. The step at fault is "
        f"likely {type(final).__name__}; serve this version as it is."
    )


def _path_of(model: Any, class_name: str, prefix: str = "") -> str:
    """Where in ``model`` a step of class ``class_name`` sits: ``'pipeline/step'`` or its class."""
    if type(model).__name__ == class_name:
        return repr(prefix or class_name)
    children: list[tuple[str, Any]] = list(getattr(model, "steps", None) or [])
    children += [(name, step) for name, step, _ in getattr(model, "transformers_", None) or []]
    for name, child in children:
        found = _path_of(child, class_name, f"{prefix}/{name}" if prefix else name)
        if found != repr(class_name):
            return found
    return repr(class_name)


def _booster(model: Any, signature: Signature, library: str) -> Any:
    import onnxmltools
    from onnxmltools.convert.common.data_types import FloatTensorType

    if not _numeric(signature):
        raise UnsupportedConversion(
            f"{library} models with string columns cannot be converted to ONNX here.", field="to"
        )
    initial = [("input", FloatTensorType([None, len(signature.inputs)]))]
    if library == "xgboost" and model.feature_names is not None:
        model = model.copy()  # the converter reads features as f0, f1, ...; the columns stay in metadata
        model.feature_names = None
    try:
        if library == "xgboost":
            return onnxmltools.convert_xgboost(model, initial_types=initial, target_opset=BOOSTER_OPSET)
        return onnxmltools.convert_lightgbm(
            model, initial_types=initial, target_opset=BOOSTER_OPSET, zipmap=False
        )
    except Exception as exc:
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UnsupportedConversion(
            f"onnxmltools cannot convert this {library} {type(model).__name__} to ONNX: {message[:300]}",
            field="to",
        ) from exc
