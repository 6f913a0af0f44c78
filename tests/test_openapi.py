"""The OpenAPI document: valid, complete with respect to the URL map, and useful for predictions."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import joblib
import pytest
from flask import Flask
from flask.testing import FlaskClient
from jsonschema import Draft202012Validator
from openapi_spec_validator import validate
from sklearn import datasets
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from wharf import Settings, create_app
from wharf.services import Services
from wharf.services.registry import Registration

DOCS_ENDPOINTS = {"wharf.docs", "wharf.docs_asset", "wharf.openapi"}
"""The documentation serving itself: pages and files, not operations of the API."""
IGNORED_METHODS = {"HEAD", "OPTIONS"}


@pytest.fixture
def with_model(services: Services, tmp_path: Path) -> str:
    X, y = datasets.load_iris(return_X_y=True, as_frame=True)
    path = tmp_path / "iris.joblib"
    joblib.dump(make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000)).fit(X, y), path)
    services.registry.register("iris", path, path.name, Registration())
    return "iris"


def spec_of(client: FlaskClient) -> dict[str, Any]:
    response = client.get("/openapi.json")
    assert response.status_code == 200
    assert response.mimetype == "application/json"
    return response.get_json()  # type: ignore[no-any-return]


def openapi_path(rule: str) -> str:
    return re.sub(r"<(?:[a-z]+:)?(\w+)>", r"{\1}", rule)


def operations(spec: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [(path, method, op) for path, item in spec["paths"].items() for method, op in item.items()]


def test_valid_without_models(client: FlaskClient) -> None:
    spec = spec_of(client)
    validate(spec)
    assert spec["openapi"].startswith("3.1")


def test_valid_with_models(client: FlaskClient, with_model: str) -> None:
    validate(spec_of(client))


UI = "wharf_ui."


def test_every_route_is_documented(app: Flask, client: FlaskClient) -> None:
    spec = spec_of(client)
    documented = {(path, method.upper()) for path, method, _ in operations(spec)}
    routed = set()
    endpoints = set()
    for rule in app.url_map.iter_rules():
        endpoints.add(rule.endpoint)
        if rule.endpoint in DOCS_ENDPOINTS or rule.endpoint.startswith(UI):
            continue  # the dashboard's pages are not part of the API (tests/http/test_ui_routes.py)
        for method in (rule.methods or set()) - IGNORED_METHODS:
            routed.add((openapi_path(rule.rule), method))
    assert DOCS_ENDPOINTS <= endpoints  # the exceptions above are real routes
    assert routed - documented == set(), "routes missing from /openapi.json"
    assert documented - routed == set(), "documented operations without a route"
    assert {
        ("/healthz", "GET"),
        ("/readyz", "GET"),
        ("/v1/models", "GET"),
        ("/v1/models/{name}", "GET"),
        ("/v1/models/{name}/versions", "POST"),
        ("/v1/models/{name}/versions/{version}", "DELETE"),
        ("/v1/models/{name}/predict", "POST"),
    } <= routed


def test_no_static_route(app: Flask, client: FlaskClient) -> None:
    assert [rule for rule in app.url_map.iter_rules() if rule.endpoint == "static"] == []
    response = client.get("/static/app.py")
    assert response.status_code == 404
    assert response.mimetype == "application/problem+json"


def test_every_operation_is_complete(client: FlaskClient) -> None:
    spec = spec_of(client)
    ids = [op["operationId"] for _, _, op in operations(spec)]
    assert len(ids) == len(set(ids))
    for path, method, op in operations(spec):
        assert op["summary"], (path, method)
        assert op["tags"], (path, method)
        successes = [code for code in op["responses"] if code.startswith("2")]
        assert successes, (path, method)
        assert {"4XX", "5XX"} <= set(op["responses"])
        declared = {p["name"] for p in op.get("parameters", []) if p["in"] == "path"}
        assert declared == set(re.findall(r"{(\w+)}", path)), (path, method)


def resolve(spec: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        node: Any = spec
        for part in schema["$ref"].removeprefix("#/").split("/"):
            node = node[part]
        schema = node
    return schema


def test_every_predict_operation_takes_a_body(client: FlaskClient, with_model: str) -> None:
    spec = spec_of(client)
    predicts = [(path, method, op) for path, method, op in operations(spec) if path.endswith("/predict")]
    assert {(path, method) for path, method, _ in predicts} == {
        ("/v1/models/{name}/predict", "post"),
        ("/v1/models/{name}/versions/{version}/predict", "post"),
    }
    for path, _, op in predicts:
        body = op["requestBody"]
        assert body["required"] is True
        assert {"application/json", "text/csv"} <= set(body["content"]), path
        schema = body["content"]["application/json"]["schema"]
        assert resolve(spec, schema), path
        assert "probabilities" in {p["name"] for p in op["parameters"] if p["in"] == "query"}

        # The served model's example is offered, and it is a body the schema accepts.
        example = body["content"]["application/json"]["examples"][with_model]["value"]
        assert list(example["instances"][0]) == [
            "sepal length (cm)",
            "sepal width (cm)",
            "petal length (cm)",
            "petal width (cm)",
        ]
        validator = Draft202012Validator({**schema, "components": spec["components"]})
        assert list(validator.iter_errors(example)) == []
        assert list(validator.iter_errors({"rows": []})) != []  # and the schema does refuse things


def test_keys_are_declared_and_public_routes_take_none(client: FlaskClient) -> None:
    spec = spec_of(client)
    schemes = spec["components"]["securitySchemes"]
    assert schemes["bearer"] == {
        "type": "http",
        "scheme": "bearer",
        "description": schemes["bearer"]["description"],
    }
    assert schemes["apiKey"] == {"type": "apiKey", "in": "header", "name": "X-API-Key"}
    assert spec["security"] == [{"bearer": []}, {"apiKey": []}]  # either one
    public = {(path, method) for path, method, op in operations(spec) if op.get("security") == []}
    assert public == {("/healthz", "get"), ("/readyz", "get")}


def test_without_auth_no_key_is_declared(tmp_path: Path) -> None:
    app = create_app(Settings(home=tmp_path / "home", auth=False, refresh_seconds=0))
    try:
        spec = spec_of(app.test_client())
    finally:
        app.extensions["wharf"].close()
    validate(spec)
    assert "security" not in spec
    assert "securitySchemes" not in spec["components"]
    assert all("security" not in op for _, _, op in operations(spec))


def test_query_parameters_state_their_values(client: FlaskClient) -> None:
    spec = spec_of(client)
    query = {
        (path, p["name"]): p
        for path, _, op in operations(spec)
        for p in op.get("parameters", [])
        if p["in"] == "query"
    }
    for where in (("/v1/jobs", "limit"), ("/v1/audit", "limit")):
        assert query[where]["schema"] == {"type": "integer", "minimum": 1, "maximum": 1000}
    for where in (("/v1/jobs", "offset"), ("/v1/audit", "offset")):
        assert query[where]["schema"] == {"type": "integer", "minimum": 0, "maximum": 2**31 - 1}
    assert query["/v1/jobs", "state"]["schema"]["enum"] == [
        "queued",
        "running",
        "succeeded",
        "failed",
        "cancelled",
    ]
    # An empty value means the default, on every route (wharf.http.bodies.query_arg).
    assert all(p["allowEmptyValue"] is True for p in query.values())


def test_upload_metadata_is_a_json_part(client: FlaskClient) -> None:
    spec = spec_of(client)
    body = spec["paths"]["/v1/models/{name}/versions"]["post"]["requestBody"]["content"][
        "multipart/form-data"
    ]
    assert body["encoding"] == {"metadata": {"contentType": "application/json"}}
    form = resolve(spec, body["schema"])
    assert resolve(spec, form["properties"]["metadata"])["title"] == "UploadMetadata"
    assert form["required"] == ["file"]
    assert "default" not in form["properties"]["metadata"]  # left out, never null


def test_csv_bodies_are_not_empty(client: FlaskClient) -> None:
    spec = spec_of(client)
    for path in ("/v1/models/{name}/predict", "/v1/models/{name}/versions/{version}/predict"):
        csv = spec["paths"][path]["post"]["requestBody"]["content"]["text/csv"]["schema"]
        assert csv["type"] == "string" and csv["minLength"] == 1
