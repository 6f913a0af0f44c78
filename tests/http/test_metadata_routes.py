"""Metadata routes: models, versions, their facts and examples; deletion; health."""

from __future__ import annotations

import hashlib
import io
import json
import platform
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy
import pytest
import sklearn
from flask.testing import FlaskClient
from httpcases import Trained, check_problem, register

from wharf.services import Services
from wharf.services.registry import Registration

VERSION_KEYS = {
    "name",
    "version",
    "format",
    "signature",
    "sha256",
    "size",
    "filename",
    "created_at",
    "description",
    "tags",
    "library_versions",
    "warnings",
    "metadata",
    "example",
}


def check_version(body: dict[str, Any], model: Trained, name: str, version: int) -> None:
    """``body`` describes ``version`` of ``name``, registered from ``model``'s file just now."""
    assert VERSION_KEYS <= set(body)
    assert (body["name"], body["version"], body["format"]) == (name, version, "joblib")
    content = model.path.read_bytes()
    assert body["sha256"] == hashlib.sha256(content).hexdigest()
    assert body["size"] == len(content)
    assert body["filename"] == model.path.name
    created = datetime.fromisoformat(body["created_at"])
    if created.tzinfo is None:
        created = created.replace(tzinfo=UTC)
    assert abs(datetime.now(UTC) - created) < timedelta(minutes=5)
    libraries = body["library_versions"]
    assert libraries["python"] == platform.python_version()
    assert libraries["numpy"] == numpy.__version__
    assert libraries["scikit-learn"] == sklearn.__version__
    assert [c["name"] for c in body["signature"]["inputs"]] == model.columns
    assert body["warnings"] == []


def test_list_models(client: FlaskClient, served: dict[str, Trained]) -> None:
    response = client.get("/v1/models")
    assert response.status_code == 200
    assert response.mimetype == "application/json"
    models = {m["name"]: m for m in response.get_json()["models"]}
    assert set(models) == {"iris", "iris_imputed", "reviews", "houses"}
    for name, entry in models.items():
        assert entry["latest_version"] == 1
        assert entry["versions"] == 1
        check_version(entry["latest"], served[name], name, 1)


def test_list_models_when_none_are_registered(client: FlaskClient) -> None:
    response = client.get("/v1/models")
    assert response.status_code == 200
    assert response.get_json() == {"models": [], "total": 0}


@pytest.mark.parametrize("name", ["iris", "iris_imputed", "reviews", "houses"])
def test_get_model(client: FlaskClient, served: dict[str, Trained], name: str) -> None:
    response = client.get(f"/v1/models/{name}")
    assert response.status_code == 200
    body = response.get_json()
    assert (body["name"], body["latest_version"], body["versions"]) == (name, 1, 1)
    check_version(body["latest"], served[name], name, 1)


def test_signatures_say_dtypes_nullability_and_classes(
    client: FlaskClient, served: dict[str, Trained]
) -> None:
    def signature(name: str) -> dict[str, Any]:
        return client.get(f"/v1/models/{name}").get_json()["latest"]["signature"]

    houses = {c["name"]: (c["dtype"], c["nullable"]) for c in signature("houses")["inputs"]}
    assert houses == {"area": ("float64", False), "rooms": ("int64", False), "city": ("string", False)}
    assert signature("houses")["output"]["kind"] == "regression"
    assert all(c["nullable"] for c in signature("iris_imputed")["inputs"])
    assert not any(c["nullable"] for c in signature("iris")["inputs"])
    assert signature("iris")["output"] == {
        "kind": "classification",
        "classes": ["setosa", "versicolor", "virginica"],
    }
    assert signature("reviews")["inputs"] == [{"name": "text", "dtype": "string", "nullable": False}]


@pytest.mark.parametrize("name", ["iris", "iris_imputed", "reviews", "houses"])
@pytest.mark.parametrize(
    "route", ["/v1/models/{name}", "/v1/models/{name}/versions/1", "/v1/models/{name}/versions"]
)
def test_example_request_answers_200(
    client: FlaskClient, served: dict[str, Trained], name: str, route: str
) -> None:
    body = client.get(route.format(name=name)).get_json()
    version = body["latest"] if "latest" in body else body["versions"][0] if "versions" in body else body
    example = version["example"]
    assert set(example) == {"instances"}
    assert set(example["instances"][0]) == set(served[name].columns)
    response = client.post(f"/v1/models/{name}/predict", json=example)
    assert response.status_code == 200, response.get_json()
    assert len(response.get_json()["predictions"]) == 1


def test_example_row_given_at_upload_is_the_example(client: FlaskClient, served: dict[str, Trained]) -> None:
    model = served["houses"]
    row = model.records()[2]
    metadata = {"description": "Prices", "tags": {"team": "ml"}, "metadata": {"example": row, "owner": "me"}}
    response = client.post(
        "/v1/models/houses/versions",
        data={
            "file": (io.BytesIO(model.path.read_bytes()), "houses.joblib"),
            "metadata": json.dumps(metadata),
        },
        content_type="multipart/form-data",
    )
    assert response.status_code == 201, response.get_json()
    body = client.get("/v1/models/houses/versions/2").get_json()
    assert body["example"] == {"instances": [row]}
    assert (body["description"], body["tags"], body["metadata"]) == (
        "Prices",
        {"team": "ml"},
        {"owner": "me"},
    )
    answer = client.post("/v1/models/houses/predict", json=body["example"]).get_json()
    assert answer["version"] == 2
    assert answer["predictions"] == model.expected(model.rows.iloc[[2]])


def test_list_versions_oldest_first(
    services: Services, client: FlaskClient, trained: dict[str, Trained]
) -> None:
    register(services, trained["iris"], "flowers")
    register(services, trained["iris_constant"], "flowers", description="always virginica")
    response = client.get("/v1/models/flowers/versions")
    assert response.status_code == 200
    body = response.get_json()
    assert body["name"] == "flowers"
    assert [v["version"] for v in body["versions"]] == [1, 2]
    check_version(body["versions"][0], trained["iris"], "flowers", 1)
    assert (
        body["versions"][1]["sha256"]
        == hashlib.sha256(trained["iris_constant"].path.read_bytes()).hexdigest()
    )
    assert body["versions"][1]["description"] == "always virginica"
    model = client.get("/v1/models/flowers").get_json()
    assert (model["latest_version"], model["versions"], model["latest"]["version"]) == (2, 2, 2)


def test_get_version(services: Services, client: FlaskClient, trained: dict[str, Trained]) -> None:
    register(services, trained["iris"], "flowers")
    register(services, trained["reviews"], "flowers")
    first = client.get("/v1/models/flowers/versions/1")
    assert first.status_code == 200
    check_version(first.get_json(), trained["iris"], "flowers", 1)
    check_version(client.get("/v1/models/flowers/versions/2").get_json(), trained["reviews"], "flowers", 2)


def test_upload_answers_201_with_location(client: FlaskClient, trained: dict[str, Trained]) -> None:
    model = trained["iris"]
    response = client.post(
        "/v1/models/flowers/versions",
        data={"file": (io.BytesIO(model.path.read_bytes()), model.path.name)},
        content_type="multipart/form-data",
    )
    assert response.status_code == 201
    check_version(response.get_json(), model, "flowers", 1)
    assert response.headers["Location"].endswith("/v1/models/flowers/versions/1")
    assert client.get(response.headers["Location"]).get_json() == response.get_json()


def test_same_file_twice_is_stored_once(
    services: Services, client: FlaskClient, trained: dict[str, Trained]
) -> None:
    register(services, trained["iris"], "flowers")
    register(services, trained["iris"], "flowers")
    artifacts = [p for p in Path(services.settings.resolved_artifacts).rglob("*") if p.is_file()]
    assert len(artifacts) == 1
    versions = client.get("/v1/models/flowers/versions").get_json()["versions"]
    assert versions[0]["sha256"] == versions[1]["sha256"]


# -- deletion ----------------------------------------------------------------------------------


def test_delete_version(services: Services, client: FlaskClient, trained: dict[str, Trained]) -> None:
    register(services, trained["iris"], "flowers")
    register(services, trained["iris_constant"], "flowers")
    body = {"instances": trained["iris"].lists()}
    assert client.post("/v1/models/flowers/versions/2/predict", json=body).status_code == 200  # loaded

    response = client.delete("/v1/models/flowers/versions/2")
    assert response.status_code == 200
    assert response.get_json() == {"name": "flowers", "deleted": [2]}
    check_problem(client.get("/v1/models/flowers/versions/2"), 404, field="version")
    check_problem(client.post("/v1/models/flowers/versions/2/predict", json=body), 404, field="version")
    check_problem(client.delete("/v1/models/flowers/versions/2"), 404, field="version")
    assert [v["version"] for v in client.get("/v1/models/flowers/versions").get_json()["versions"]] == [1]
    assert client.get("/v1/models/flowers").get_json()["latest_version"] == 1
    digest = hashlib.sha256(trained["iris_constant"].path.read_bytes()).hexdigest()
    assert not list(Path(services.settings.resolved_artifacts).rglob(digest))


def test_delete_model(services: Services, client: FlaskClient, served: dict[str, Trained]) -> None:
    register(services, served["iris_constant"], "iris")
    body = {"instances": served["iris"].lists()}
    assert client.post("/v1/models/iris/predict", json=body).status_code == 200

    response = client.delete("/v1/models/iris")
    assert response.status_code == 200
    assert response.get_json() == {"name": "iris", "deleted": [1, 2]}
    check_problem(client.get("/v1/models/iris"), 404, field="name")
    check_problem(client.get("/v1/models/iris/versions"), 404, field="name")
    check_problem(client.get("/v1/models/iris/versions/1"), 404)
    check_problem(client.post("/v1/models/iris/predict", json=body), 404, field="name")
    check_problem(client.delete("/v1/models/iris"), 404, field="name")
    names = {m["name"] for m in client.get("/v1/models").get_json()["models"]}
    assert names == {"iris_imputed", "reviews", "houses"}
    for model in (served["iris"], served["iris_constant"]):
        digest = hashlib.sha256(model.path.read_bytes()).hexdigest()
        assert not list(Path(services.settings.resolved_artifacts).rglob(digest))
    assert (
        client.post("/v1/models/reviews/predict", json={"instances": served["reviews"].lists()}).status_code
        == 200
    )


def test_delete_keeps_a_file_other_versions_use(
    services: Services, client: FlaskClient, trained: dict[str, Trained]
) -> None:
    register(services, trained["iris"], "flowers")
    register(services, trained["iris"], "petals")
    assert client.delete("/v1/models/flowers").status_code == 200
    response = client.post("/v1/models/petals/predict", json={"instances": trained["iris"].lists()})
    assert response.status_code == 200
    assert response.get_json()["predictions"] == trained["iris"].expected()


def test_registered_again_after_delete(
    services: Services, client: FlaskClient, trained: dict[str, Trained]
) -> None:
    register(services, trained["iris"], "flowers")
    assert client.delete("/v1/models/flowers").status_code == 200
    services.registry.register(
        "flowers", trained["iris_constant"].path, "constant.joblib", Registration(description="again")
    )
    answer = client.post("/v1/models/flowers/predict", json={"instances": trained["iris"].lists()}).get_json()
    assert answer["predictions"] == trained["iris_constant"].expected()


# -- health ------------------------------------------------------------------------------------


def test_healthz(client: FlaskClient) -> None:
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.mimetype == "application/json"
    assert response.get_json() == {"status": "ok"}


def test_readyz_counts_served_models(client: FlaskClient, served: dict[str, Trained]) -> None:
    response = client.get("/readyz")
    assert response.status_code == 200
    assert response.get_json() == {"status": "ready", "models": 4}


def test_readyz_is_503_problem_while_loading(services: Services, client: FlaskClient) -> None:
    services.inference.ready.clear()
    problem = check_problem(client.get("/readyz"), 503)
    assert problem["type"] == "urn:wharf:problem:not-ready"
    assert client.get("/healthz").status_code == 200
    services.inference.ready.set()
    assert client.get("/readyz").status_code == 200


def test_openapi_and_docs_are_served(client: FlaskClient, served: dict[str, Trained]) -> None:
    spec = client.get("/openapi.json")
    assert spec.status_code == 200
    paths = spec.get_json()["paths"]
    assert {"/v1/models/{name}/predict", "/v1/models/{name}/versions/{version}", "/healthz"} <= set(paths)
    docs = client.get("/docs")
    assert docs.status_code == 200
    assert docs.mimetype == "text/html"
