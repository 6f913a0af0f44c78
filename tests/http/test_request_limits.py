"""Request limits beyond size: JSON nesting depth on the routes whose bodies are flat objects."""

from __future__ import annotations

import json
from typing import Any

import pytest
from flask.testing import FlaskClient


def nested(depth: int) -> Any:
    value: Any = 1
    for _ in range(depth - 1):
        value = [value]
    return value


@pytest.mark.parametrize(
    ("url", "body"),
    [
        ("/v1/jobs", lambda deep: {"kind": "train", "dataset": 1, "target": "y", "params": {"x": deep}}),
        ("/v1/keys", lambda deep: {"role": "reader", "models": deep}),
        ("/v1/fit", lambda deep: {"X": deep, "y": [1]}),
        ("/v1/models/iris/versions/1/convert", lambda deep: {"to": "onnx", "sample": deep}),
    ],
)
def test_bodies_nested_past_the_limit_are_refused_before_they_are_read(
    make_client: Any, url: str, body: Any
) -> None:
    client: FlaskClient = make_client(max_json_depth=8)
    too_deep = client.post(url, data=json.dumps(body(nested(12))), content_type="application/json")
    assert too_deep.status_code == 400, too_deep.get_json()
    problem = too_deep.get_json()
    assert problem["type"] == "urn:wharf:problem:malformed-body"
    assert "8 levels" in problem["detail"] and "WHARF_MAX_JSON_DEPTH" in problem["detail"]
    shallow = client.post(url, data=json.dumps(body(nested(3))), content_type="application/json")
    assert shallow.status_code != 400 or "levels deep" not in shallow.get_json()["detail"]
