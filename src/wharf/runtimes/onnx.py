"""ONNX models through ONNX Runtime.

Inputs are read from the graph: one 2-D tensor (columns named by the ``wharf.columns`` metadata
property, else ``x0 .. x{n-1}``) or one ``[N, 1]`` tensor per column. A classifier is a graph with a
label output and a probability output; class labels come from ``wharf.classes`` metadata, else the
graph's classifier nodes.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from wharf.batch import Batch
from wharf.errors import InvalidModel, MissingDependency
from wharf.runtimes.base import calling_model, complete
from wharf.signature import Column, DType, Output, Signature

ONNX_TYPES: dict[str, tuple[DType, Any]] = {
    "tensor(float)": ("float32", np.float32),
    "tensor(double)": ("float64", np.float64),
    "tensor(int64)": ("int64", np.int64),
    "tensor(int32)": ("int32", np.int32),
    "tensor(bool)": ("bool", np.bool_),
    "tensor(string)": ("string", np.object_),
}
FLOAT_TYPES = frozenset({"tensor(float)", "tensor(double)", "tensor(float16)"})
"""Output types of a regressor's values."""
CLASS_ATTRIBUTES = ("classlabels_int64s", "classlabels_strings", "classlabels_ints")


def _ort() -> Any:
    try:
        import onnxruntime
    except ImportError as exc:
        raise MissingDependency(
            "Serving ONNX models needs onnxruntime; run: pip install 'wharf[onnx]'."
        ) from exc
    return onnxruntime


def _graph_classes(path: Path) -> list[Any] | None:
    """Class labels from the graph's classifier nodes (ZipMap, TreeEnsembleClassifier, ...)."""
    try:
        import onnx
    except ImportError:
        return None
    model = onnx.load(str(path), load_external_data=False)
    for node in model.graph.node:
        for attribute in node.attribute:
            if attribute.name in CLASS_ATTRIBUTES:
                if attribute.strings:
                    return [s.decode() for s in attribute.strings]
                return list(attribute.ints)
    return None


class OnnxRuntime:
    """An ``onnxruntime.InferenceSession`` on the CPU."""

    format: ClassVar[str] = "onnx"
    framework: ClassVar[str] = "onnxruntime"

    def __init__(self, session: Any, signature: Signature, made_with: dict[str, str]) -> None:
        self.session = session
        self.signature = signature
        self.made_with = made_with
        inputs = session.get_inputs()
        self._tensor = len(inputs) == 1 and _width(inputs[0]) != 1
        self._input_names = [i.name for i in inputs]
        self._input_types = [ONNX_TYPES.get(i.type, ("float32", np.float32))[1] for i in inputs]
        outputs = session.get_outputs()
        self._label = outputs[0].name
        self._proba = outputs[1].name if len(outputs) > 1 else None

    @classmethod
    def load(
        cls,
        path: Path,
        *,
        fmt: str = "onnx",
        signature: Signature | None = None,
        trusted: tuple[str, ...] = (),
    ) -> OnnxRuntime:
        ort = _ort()
        try:
            options = ort.SessionOptions()
            # One thread per call: concurrency comes from the server's threads and from batching,
            # and a session without a thread pool survives the server's fork intact.
            options.intra_op_num_threads = 1
            options.inter_op_num_threads = 1
            session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        except Exception as exc:
            detail = str(exc).replace(str(path), path.name)  # the server's paths stay private
            raise InvalidModel(f"This is not a loadable ONNX model: {detail}") from exc
        metadata = session.get_modelmeta().custom_metadata_map
        output = _output(session, metadata, path)
        inferred = _infer(session, metadata, output)
        resolved = complete(inferred, signature, "ONNX model", output=output)
        return cls(session, resolved, {"onnxruntime": ort.__version__})

    def _feed(self, batch: Batch) -> dict[str, np.ndarray]:
        if self._tensor:
            return {self._input_names[0]: batch.as_array(self._input_types[0])}
        return {
            name: batch.column(i).astype(dtype, copy=False).reshape(-1, 1)
            for i, (name, dtype) in enumerate(zip(self._input_names, self._input_types, strict=True))
        }

    def predict(self, batch: Batch) -> np.ndarray:
        with calling_model("ONNX"):
            (labels,) = self.session.run([self._label], self._feed(batch))
        labels = np.asarray(labels)
        return labels.ravel() if labels.ndim == 2 and labels.shape[1] == 1 else labels

    def predict_proba(self, batch: Batch) -> np.ndarray | None:
        if self._proba is None:
            return None
        with calling_model("ONNX"):
            (proba,) = self.session.run([self._proba], self._feed(batch))
        if isinstance(proba, list):  # ZipMap: one {class: probability} dict per row
            classes = self.signature.output.classes or list(proba[0])
            return np.array([[row[c] for c in classes] for row in proba], dtype=np.float64)
        return np.asarray(proba)


def _width(node: Any) -> int | None:
    shape = node.shape
    if len(shape) == 2 and isinstance(shape[1], int):
        return int(shape[1])
    return None


def _metadata_list(metadata: dict[str, str], key: str) -> list[Any] | None:
    """The JSON list stored under ``key`` in the model's metadata properties, if any.

    :raises InvalidModel: the property is there but is not a JSON list.
    """
    if key not in metadata:
        return None
    try:
        value = json.loads(metadata[key])
    except ValueError:
        value = None
    if not isinstance(value, list) or not value:
        raise InvalidModel(
            f"The ONNX metadata property {key!r} must be a non-empty JSON list, got "
            f"{metadata[key]!r:.80}; write it with json.dumps([...])."
        )
    return value


def _output(session: Any, metadata: dict[str, str], path: Path) -> Output:
    """A label and a probability output make a classifier; one float output a regressor."""
    outputs = session.get_outputs()
    if len(outputs) >= 2:
        classes = _metadata_list(metadata, "wharf.classes") or _graph_classes(path)
        return Output(kind="classification", classes=classes)
    return Output(kind="regression" if outputs[0].type in FLOAT_TYPES else "other")


def _infer(session: Any, metadata: dict[str, str], output: Output) -> Signature | None:
    """The signature the graph states, or None when its input width is not fixed.

    :raises InvalidModel: ``wharf.columns`` does not match the input width.
    """
    inputs = session.get_inputs()
    if len(inputs) == 1 and _width(inputs[0]) != 1:
        dtype = ONNX_TYPES.get(inputs[0].type, ("float32", None))[0]
        width = _width(inputs[0])
        names = _metadata_list(metadata, "wharf.columns")
        if names is None:
            if width is None:
                return None
            names = [f"x{i}" for i in range(width)]
        elif width is not None and len(names) != width:
            raise InvalidModel(
                f"The ONNX metadata property 'wharf.columns' names {len(names)} columns, but the "
                f"input {inputs[0].name!r} takes {width}; name every column once, in order."
            )
        nullable = metadata.get("wharf.nullable") == "true"
        return Signature(
            inputs=[Column(name=str(n), dtype=dtype, nullable=nullable) for n in names], output=output
        )
    columns = [
        Column(name=node.name, dtype=ONNX_TYPES.get(node.type, ("float32", None))[0]) for node in inputs
    ]
    return Signature(inputs=columns, output=output)
