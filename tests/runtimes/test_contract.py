"""The runtime contract: every format, registered and served over HTTP, answers what the model
answers in-process.

One test walks every case of :data:`models.BUILDERS`: it uploads the file through the real API,
checks the signature wharf inferred, then predicts with and without probabilities.
"""

from __future__ import annotations

import io
import json
from typing import Any

import numpy as np
import pytest
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from models import BUILDERS, Case, CaseBook
from wharf import runtimes

TOLERANCE = 1e-6


def upload(client: FlaskClient, name: str, case: Case) -> TestResponse:
    """POST the case's file as a new version of ``name``, with its signature where it has one."""
    data: dict[str, Any] = {"file": (io.BytesIO(case.path.read_bytes()), case.path.name)}
    if case.signature is not None:
        data["metadata"] = json.dumps({"signature": case.signature})
    return client.post(f"/v1/models/{name}/versions", data=data, content_type="multipart/form-data")


def assert_same_predictions(got: list[Any], expected: np.ndarray) -> None:
    """Values within :data:`TOLERANCE`, labels exactly (type included: 1 is not 1.0 or "1")."""
    if expected.dtype.kind == "f":
        # Parse at the model's own precision: a float32 output is written with float32's
        # shortest repr, which round-trips exactly to float32 but not to float64.
        np.testing.assert_allclose(np.asarray(got, dtype=expected.dtype), expected, rtol=0, atol=TOLERANCE)
        return
    want = expected.tolist()
    assert got == want
    assert [type(v) for v in got] == [type(v) for v in want]


@pytest.mark.parametrize("name", list(BUILDERS))
def test_served_model_answers_as_in_process(client: FlaskClient, cases: CaseBook, name: str) -> None:
    case = cases[name]

    registered = upload(client, name, case)
    assert registered.status_code == 201, registered.get_json()
    version = registered.get_json()
    assert version["format"] == case.fmt
    assert version["signature"]["inputs"] == case.columns
    assert version["signature"]["output"] == {"kind": case.kind, "classes": case.classes}

    plain = client.post(f"/v1/models/{name}/predict", json={"instances": case.rows})
    assert plain.status_code == 200, plain.get_json()
    body = plain.get_json()
    assert body["version"] == version["version"]
    assert_same_predictions(body["predictions"], case.expected)
    assert "probabilities" not in body

    asked = client.post(f"/v1/models/{name}/predict?probabilities=true", json={"instances": case.rows})
    assert asked.status_code == 200, asked.get_json()
    body = asked.get_json()
    assert_same_predictions(body["predictions"], case.expected)
    if case.expected_proba is None:
        assert "probabilities" not in body
        assert "classes" not in body
    else:
        assert body["classes"] == case.classes
        assert np.asarray(body["probabilities"]).shape == case.expected_proba.shape
        np.testing.assert_allclose(body["probabilities"], case.expected_proba, rtol=0, atol=TOLERANCE)


@pytest.mark.parametrize("name", list(BUILDERS))
def test_format_is_told_by_content_alone(cases: CaseBook, name: str) -> None:
    """A file uploaded without a telling name is still recognised (ONNX has no magic bytes)."""
    case = cases[name]
    head = case.path.read_bytes()[:4096]
    if case.fmt == "onnx":
        with pytest.raises(runtimes.InvalidModel, match="Cannot tell the format"):
            runtimes.detect_format("upload", head)
        return
    expected = {"pickle": "joblib"}.get(case.fmt, case.fmt)  # joblib loads plain pickles too
    assert runtimes.detect_format("upload", head) == expected
