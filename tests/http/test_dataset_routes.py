"""The dataset routes: upload, list, profile, delete; refusals as problems, leaving nothing behind."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from flask import Flask
from flask.testing import FlaskClient
from httpcases import check_problem

from wharf import Settings, create_app
from wharf.services import Services
from wharf.services.profiling import profile_frame

TABLE = pd.DataFrame(
    {
        "area": [50.5, 80.0, None, 120.25],
        "city": ["paris", "lyon", None, "paris"],
        "garden": [True, False, True, False],
    }
)
CSV = TABLE.to_csv(index=False).encode()


def post(client: FlaskClient, data: bytes, filename: str = "houses.csv", **form: str) -> Any:
    return client.post(
        "/v1/datasets",
        data={"file": (io.BytesIO(data), filename), **form},
        content_type="multipart/form-data",
    )


def stored_files(services: Services) -> list[Path]:
    home = services.settings.home
    return sorted(p for p in home.rglob("*") if p.is_file() and p.suffix not in (".db", ".db-wal", ".db-shm"))


def test_upload_list_get_delete(client: FlaskClient, services: Services) -> None:
    response = post(client, CSV, name="Houses in France")
    assert response.status_code == 201, response.get_json()
    body = response.get_json()
    assert response.headers["Location"] == f"/v1/datasets/{body['id']}"
    assert {k: body[k] for k in ("name", "filename", "format", "rows", "columns", "created")} == {
        "name": "Houses in France",
        "filename": "houses.csv",
        "format": "csv",
        "rows": 4,
        "columns": 3,
        "created": True,
    }
    assert len(body["sha256"]) == 64
    assert body["profile"] == profile_frame(services.datasets.frame(body["id"]))
    assert [c["kind"] for c in body["profile"]["columns"]] == ["numeric", "categorical", "boolean"]
    assert body["profile"]["columns"][0]["stats"]["mean"] == pytest.approx(TABLE["area"].mean())

    again = post(client, CSV, filename="copy.csv")
    assert again.status_code == 200
    assert (again.get_json()["id"], again.get_json()["created"]) == (body["id"], False)

    listed = client.get("/v1/datasets").get_json()["datasets"]
    assert [d["id"] for d in listed] == [body["id"]]
    assert "profile" not in listed[0]

    shown = client.get(f"/v1/datasets/{body['id']}").get_json()
    assert shown == {**body, "created": False}

    deleted = client.delete(f"/v1/datasets/{body['id']}")
    assert deleted.get_json() == {"id": body["id"], "name": "Houses in France", "deleted": True}
    check_problem(client.get(f"/v1/datasets/{body['id']}"), 404, field="dataset", detail="No dataset with id")
    check_problem(client.delete(f"/v1/datasets/{body['id']}"), 404)
    assert client.get("/v1/datasets").get_json() == {"datasets": []}
    assert stored_files(services) == []


@pytest.mark.parametrize(
    ("filename", "write"),
    [
        ("houses.json", lambda: TABLE.to_json(orient="records").encode()),
        ("houses.jsonl", lambda: TABLE.to_json(orient="records", lines=True).encode()),
        ("houses.parquet", lambda: TABLE.to_parquet(index=False)),
        ("houses.xlsx", lambda: excel_bytes(TABLE)),
    ],
)
def test_other_formats(client: FlaskClient, filename: str, write: Any) -> None:
    response = post(client, write(), filename)
    assert response.status_code == 201, response.get_json()
    assert response.get_json()["format"] == filename.rsplit(".", 1)[1]
    assert response.get_json()["rows"] == 4


def excel_bytes(frame: pd.DataFrame) -> bytes:
    buffer = io.BytesIO()
    frame.to_excel(buffer, index=False)
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("data", "filename", "form", "status", "where", "fragment"),
    [
        (b"a,b,a\n1,2,3\n", "d.csv", {}, 422, {"field": "file", "column": "a"}, "two columns named 'a'"),
        (b"a,b\n1,2\n3,4,5\n", "d.csv", {}, 422, {"field": "file"}, "line 3"),
        (b"a,b\n", "d.csv", {}, 422, {"field": "file"}, "no rows"),
        (b"a,b\n1,2\n", "d.xlsx", {}, 422, {"field": "file"}, "not an .xlsx workbook"),
        (b"\x00\x01garbage", "d.bin", {}, 422, {"field": "file"}, "binary data"),
        (b"a,b\n1,2\n", "d.csv", {"name": "bad\x01name"}, 422, {"field": "name"}, "Invalid dataset name"),
    ],
)
def test_refusals(
    client: FlaskClient,
    services: Services,
    data: bytes,
    filename: str,
    form: dict[str, str],
    status: int,
    where: dict[str, str],
    fragment: str,
) -> None:
    problem = check_problem(post(client, data, filename, **form), status, detail=fragment, **where)
    assert str(services.settings.home) not in problem["detail"]
    assert client.get("/v1/datasets").get_json() == {"datasets": []}
    assert stored_files(services) == []


def test_a_problem_carries_the_line(client: FlaskClient) -> None:
    problem = check_problem(post(client, b'[\n{"a": 1},\n{"a": }\n]', "d.json"), 422)
    assert problem["line"] == 3
    assert problem["type"] == "urn:wharf:problem:invalid-dataset"


def test_the_form_is_checked(client: FlaskClient) -> None:
    check_problem(client.post("/v1/datasets", json={"file": "a,b"}), 415, field="Content-Type")
    missing = client.post("/v1/datasets", data={"other": (io.BytesIO(CSV), "x.csv")})
    check_problem(missing, 400, field="file", detail="multipart field 'file'")


@pytest.fixture
def small_app(tmp_path: Path) -> Any:
    app = create_app(Settings(auth=False, home=tmp_path / "small", refresh_seconds=0, max_dataset_bytes=2048))
    yield app
    app.extensions["wharf"].close()


def test_the_size_limit(small_app: Flask) -> None:
    client = small_app.test_client()
    check_problem(post(client, b"a\n" + b"1\n" * 2000), 413, detail="2048 bytes")
    assert post(client, b"a\n" + b"1\n" * 100).status_code == 201
    services = small_app.extensions["wharf"]
    assert len(services.datasets.list()) == 1
    assert len(stored_files(services)) == 1


def test_the_routes_are_documented(client: FlaskClient) -> None:
    spec = client.get("/openapi.json").get_json()
    upload = spec["paths"]["/v1/datasets"]["post"]
    assert set(upload["requestBody"]["content"]) == {"multipart/form-data"}
    assert {"200", "201"} <= set(upload["responses"])
    assert set(spec["paths"]["/v1/datasets/{dataset_id}"]) == {"get", "delete"}
    assert "DatasetUploadForm" in spec["components"]["schemas"]
