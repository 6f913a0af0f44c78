"""The ONNX runtime: signatures read from the graph and its metadata, classifier outputs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime
import pytest
from onnx import TensorProto, helper
from skl2onnx import convert_sklearn
from skl2onnx.common.data_types import DoubleTensorType, FloatTensorType
from sklearn.linear_model import LinearRegression

from models import CaseBook
from wharf.batch import Batch
from wharf.errors import InvalidModel
from wharf.runtimes.onnx import OnnxRuntime
from wharf.signature import Signature

RNG = np.random.default_rng(0)
X = RNG.normal(size=(30, 3))
OPSET = 17


def save(model: onnx.ModelProto, path: Path, metadata: dict[str, str] | None = None) -> Path:
    for key, value in (metadata or {}).items():
        prop = model.metadata_props.add()
        prop.key, prop.value = key, value
    path.write_bytes(model.SerializeToString())
    return path


def two_inputs() -> onnx.ModelProto:
    """``y = a + b`` from a float column ``a`` and an int64 column ``b``, each an ``[N, 1]`` input."""
    graph = helper.make_graph(
        [
            helper.make_node("Cast", ["b"], ["b_float"], to=TensorProto.FLOAT),
            helper.make_node("Add", ["a", "b_float"], ["y"]),
        ],
        "sum",
        [
            helper.make_tensor_value_info("a", TensorProto.FLOAT, [None, 1]),
            helper.make_tensor_value_info("b", TensorProto.INT64, [None, 1]),
        ],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 1])],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], ir_version=8)


def linear(tensor: Any) -> onnx.ModelProto:
    model = LinearRegression().fit(X, X @ [1.0, 2.0, 3.0])
    return convert_sklearn(model, initial_types=[("x", tensor)], target_opset=OPSET)


def test_random_bytes_are_not_a_model(tmp_path: Path) -> None:
    path = tmp_path / "noise.onnx"
    path.write_bytes(RNG.integers(0, 256, size=512, dtype=np.uint8).tobytes())
    with pytest.raises(InvalidModel, match="not a loadable ONNX model"):
        OnnxRuntime.load(path)


def test_one_tensor_input_gives_numbered_columns_of_its_type(tmp_path: Path) -> None:
    runtime = OnnxRuntime.load(save(linear(DoubleTensorType([None, 3])), tmp_path / "m.onnx"))
    assert [(c.name, c.dtype, c.nullable) for c in runtime.signature.inputs] == [
        ("x0", "float64", False),
        ("x1", "float64", False),
        ("x2", "float64", False),
    ]
    assert runtime.signature.output.kind == "regression"
    values = runtime.predict(Batch(["x0", "x1", "x2"], array=X[:4]))
    np.testing.assert_allclose(values, X[:4] @ [1.0, 2.0, 3.0], rtol=0, atol=1e-9)
    assert runtime.predict_proba(Batch(["x0", "x1", "x2"], array=X[:4])) is None


def test_one_input_per_column_is_fed_column_by_column(tmp_path: Path) -> None:
    runtime = OnnxRuntime.load(save(two_inputs(), tmp_path / "sum.onnx"))
    assert [(c.name, c.dtype) for c in runtime.signature.inputs] == [("a", "float32"), ("b", "int64")]
    batch = Batch(["a", "b"], columns=[np.array([0.5, 1.5, -2.0]), np.array([1, 2, 3])])
    np.testing.assert_array_equal(runtime.predict(batch), np.array([1.5, 3.5, 1.0], dtype=np.float32))


def test_metadata_names_the_columns_and_their_nullability(tmp_path: Path) -> None:
    metadata = {"wharf.columns": json.dumps(["area", "rooms", "age"]), "wharf.nullable": "true"}
    path = save(linear(FloatTensorType([None, 3])), tmp_path / "m.onnx", metadata)
    signature = OnnxRuntime.load(path).signature
    assert [(c.name, c.dtype, c.nullable) for c in signature.inputs] == [
        ("area", "float32", True),
        ("rooms", "float32", True),
        ("age", "float32", True),
    ]


@pytest.mark.parametrize(
    ("columns", "message"),
    [
        (json.dumps(["area", "rooms"]), "names 2 columns, but the input 'x' takes 3"),
        ("area,rooms,age", "'wharf.columns' must be a non-empty JSON list"),
        (json.dumps({"area": 0}), "'wharf.columns' must be a non-empty JSON list"),
    ],
)
def test_metadata_columns_that_do_not_fit_are_refused(tmp_path: Path, columns: str, message: str) -> None:
    path = save(linear(FloatTensorType([None, 3])), tmp_path / "m.onnx", {"wharf.columns": columns})
    with pytest.raises(InvalidModel, match=message):
        OnnxRuntime.load(path)


def test_unknown_width_needs_a_signature_and_keeps_the_graph_classes(cases: CaseBook) -> None:
    case = cases["onnx-explicit"]
    with pytest.raises(InvalidModel, match="Cannot infer the input columns of this ONNX model"):
        OnnxRuntime.load(case.path)
    explicit = Signature.model_validate(case.signature)
    runtime = OnnxRuntime.load(case.path, signature=explicit)
    assert runtime.signature.names == explicit.names
    assert runtime.signature.output.kind == "classification"
    assert runtime.signature.output.classes == case.model.classes_.tolist()


@pytest.mark.parametrize("name", ["onnx-zipmap", "onnx-mlp", "onnx-explicit"])
def test_classifier_answers_as_its_graph_and_its_original(cases: CaseBook, name: str) -> None:
    """Labels equal the graph run directly; probabilities, in class order, the scikit-learn model."""
    case = cases[name]
    signature = Signature.model_validate(case.signature) if case.signature else None
    runtime = OnnxRuntime.load(case.path, signature=signature)
    (sample,) = case.extra["feed"].values()
    batch = Batch(runtime.signature.names, array=sample.astype(np.float64))

    session = onnxruntime.InferenceSession(str(case.path), providers=["CPUExecutionProvider"])
    labels, _ = session.run(None, case.extra["feed"])
    np.testing.assert_array_equal(runtime.predict(batch), labels)
    np.testing.assert_array_equal(runtime.predict(batch), case.model.predict(sample))
    assert runtime.signature.output.classes == case.model.classes_.tolist()
    proba = runtime.predict_proba(batch)
    assert proba is not None
    np.testing.assert_allclose(proba, case.model.predict_proba(sample), rtol=0, atol=1e-6)


def test_made_with_is_the_loading_onnxruntime(cases: CaseBook) -> None:
    runtime = OnnxRuntime.load(cases["onnx-zipmap"].path)
    assert runtime.made_with == {"onnxruntime": onnxruntime.__version__}
