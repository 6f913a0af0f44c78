"""Who may call what, through the Flask test client of an app with auth on (issue 6).

A walk over Flask's URL map checks every route without a key (401), with each kind of wrong key
(401, one detail for all), with a key of too small a role (403) and with the right role (neither);
then model limits that leak nothing, the roles, ``/v1/keys`` and ``/v1/audit``, rate limits, and
the security and CORS headers.
"""

from __future__ import annotations

import io
import re
import sqlite3
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from httpcases import IRIS_COLUMNS, PROBLEM, Trained, check_problem, register
from sklearn.datasets import load_iris
from werkzeug.test import TestResponse
from werkzeug.wrappers import Response

from auth import ADMIN_KEY
from models import onnx_zipmap, skops_forest
from wharf import Settings, create_app
from wharf.errors import InvalidSettings
from wharf.http.security import METRICS, PUBLIC, permission_of
from wharf.services import Services
from wharf.services.security import (
    INVALID,
    KEY_PATTERN,
    MISSING,
    ROLE_PERMISSIONS,
    ROLES,
    digest,
    new_key,
)

FILL = {
    "name": "iris",
    "version": "1",
    "filename": "wharf-docs.js",
    "job_id": "1",
    "dataset_id": "1",
    "key_id": "0123abcd",
    "alias": "production",
}
"""A value for each URL parameter: the served iris model, ids that may or may not exist."""
CONVERTER = re.compile(r"<(?:[a-z]+:)?(\w+)>")
PROBED = ("GET", "POST", "PUT", "PATCH", "DELETE")
"""HEAD follows GET; OPTIONS is the CORS preflight, answered without a key on purpose."""
OTHER_ORIGIN = "https://evil.example"
ORIGIN = "https://app.example"
ROW = {"sepal_length": 5.1, "sepal_width": 3.5, "petal_length": 1.4, "petal_width": 0.2}
IRIS = load_iris(as_frame=True)
IRIS_CSV = (
    IRIS.data.set_axis(IRIS_COLUMNS, axis=1)
    .assign(species=IRIS.target_names[IRIS.target])
    .to_csv(index=False)
    .encode()
)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """The suite's settings (auth on, this run's admin key, no limits), with no job worker: a job
    these tests queue is never run."""
    return Settings(
        home=tmp_path / "home",
        refresh_seconds=0,
        admin_key=ADMIN_KEY,
        key_cache_seconds=0,
        rate_limits={},
        job_workers=0,
    )


@pytest.fixture
def make_app(tmp_path: Path, trained: dict[str, Trained]) -> Iterator[Callable[..., Flask]]:
    """``make_app(rate_limits=...)``: a fresh app with auth on, serving iris, with those settings."""
    apps: list[Flask] = []

    def make(**changes: Any) -> Flask:
        values: dict[str, Any] = {
            "refresh_seconds": 0,
            "admin_key": ADMIN_KEY,
            "key_cache_seconds": 0,
            "rate_limits": {},
            "job_workers": 0,
            **changes,
        }
        app = create_app(Settings(home=tmp_path / f"home-{len(apps)}", **values))
        apps.append(app)
        register(app.extensions["wharf"], trained["iris"])
        return app

    yield make
    for app in apps:
        app.extensions["wharf"].close()


def new(services: Services, role: str, models: list[str] | None = None) -> str:
    """A fresh key of ``role`` (limited to ``models``); its full string."""
    return services.keys.create(role, models)[1]


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


UI = "wharf_ui."
"""The dashboard's endpoints: its pages take a session cookie, walked in tests/http/test_ui_routes.py."""


def routes(app: Flask) -> list[tuple[str, str, str]]:
    """``(method, url, endpoint)`` of every route of the app, its parameters filled from FILL."""
    found = []
    for rule in app.url_map.iter_rules():
        if rule.endpoint.startswith(UI):
            continue
        url = CONVERTER.sub(lambda m: FILL[m.group(1)], rule.rule)
        found += [(method, url, rule.endpoint) for method in PROBED if method in (rule.methods or ())]
    return found


def weakest_role(permission: str) -> str:
    if permission == METRICS:  # read, as these tests run without metrics_public
        permission = "read"
    return next(role for role in ROLES if permission in ROLE_PERMISSIONS[role])


def problem_of(response: TestResponse) -> dict[str, Any]:
    assert response.mimetype == PROBLEM, (response.status_code, response.get_data(as_text=True))
    body: dict[str, Any] = response.get_json(force=True)
    assert body["status"] == response.status_code
    return body


def upload(client: FlaskClient, name: str, path: Path, key: str) -> TestResponse:
    return client.post(
        f"/v1/models/{name}/versions",
        data={"file": (io.BytesIO(path.read_bytes()), path.name)},
        content_type="multipart/form-data",
        headers=bearer(key),
    )


def predict(
    client: FlaskClient, name: str, key: str | None, headers: dict[str, str] | None = None, **kwargs: Any
) -> TestResponse:
    headers = {**(bearer(key) if key else {}), **(headers or {})}
    return client.post(f"/v1/models/{name}/predict", json={"instances": [ROW]}, headers=headers, **kwargs)


def upload_dataset(client: FlaskClient, key: str, filename: str = "iris.csv", rows: int = 150) -> int:
    """Upload the first ``rows`` of iris as a dataset (the same content twice is stored once)."""
    table = b"\n".join(IRIS_CSV.splitlines()[: rows + 1]) + b"\n"
    response = client.post(
        "/v1/datasets",
        data={"file": (io.BytesIO(table), filename)},
        content_type="multipart/form-data",
        headers=bearer(key),
    )
    assert response.status_code == 201, response.get_json()
    return int(response.get_json()["id"])


# -- the route walk --------------------------------------------------------------------------


ROLE_OF = {
    endpoint: role
    for role, endpoints in {
        PUBLIC: "healthz readyz openapi docs docs_asset",
        "reader": "list_models get_model model_stats list_versions get_version list_datasets get_dataset "
        "list_jobs get_job list_aliases prometheus model_drift",
        "predictor": "predict predict_version",
        "trainer": "upload_version convert_version set_fast unset_fast upload_dataset submit_job "
        "cancel_job fit edit_version archive_version restore_version set_alias delete_alias set_reference",
        "admin": "delete_model delete_version delete_dataset list_keys create_key revoke_key audit_log "
        "list_predictions",
    }.items()
    for endpoint in endpoints.split()
}
"""The weakest role that may call each route, as issue 6 assigns them: pinned here, so a route
declared with a looser permission than this fails even though the walk below follows the tables."""


def test_every_route_needs_the_role_issue_6_gives_it(app: Flask) -> None:
    declared = {}
    for rule in app.url_map.iter_rules():
        if rule.endpoint.startswith(UI):
            continue
        permission = permission_of(rule.endpoint)
        assert permission is not None, f"{rule.rule} declares no permission"
        endpoint = rule.endpoint.removeprefix("wharf.")
        declared[endpoint] = permission if permission == PUBLIC else weakest_role(permission)
    assert declared == ROLE_OF


def wrong_keys(services: Services) -> dict[str, str]:
    """Every kind of key that must not authenticate; each would be an admin key if it did."""
    _, random_key = new_key()
    record, revoked = services.keys.create("admin", name="revoked")
    services.keys.revoke(record.id)
    expired_id, expired = new_key()
    services.keys.table.add(
        expired_id, digest(expired), "admin", name="expired", expires_at=datetime.now(UTC) - timedelta(1)
    )
    admin_id = ADMIN_KEY.split("_")[1]
    return {
        "random": random_key,
        "wrong secret of a real id": f"wharf_{admin_id}_{new_key()[1].split('_', 2)[2]}",
        "admin key cut short": ADMIN_KEY[:-1],
        "malformed": "not-a-key",
        "malformed id": "wharf_XYZ_" + "a" * 43,
        "secret too short": f"wharf_{admin_id}_abc",
        "revoked": revoked,
        "expired": expired,
    }


def test_every_route_without_a_key_with_a_wrong_key_and_with_each_role(
    app: Flask, services: Services, served: dict[str, Trained]
) -> None:
    client = app.test_client()
    wrong = wrong_keys(services)
    keys = {role: new(services, role) for role in ROLES}
    keys["limited admin"] = new(services, "admin", ["iris"])
    failures: list[str] = []

    def expect(ok: bool, where: str, response: Response) -> None:
        if not ok:
            failures.append(f"{where} -> {response.status_code} {response.get_data(as_text=True)[:160]}")

    walked = routes(app)
    api = {r.endpoint for r in app.url_map.iter_rules() if not r.endpoint.startswith(UI)}
    assert {endpoint for _, _, endpoint in walked} == api
    # Deletes last: the other requests still find the model to act on.
    for method, url, endpoint in sorted(walked, key=lambda r: r[0] == "DELETE"):
        permission = permission_of(endpoint)
        assert permission is not None
        if permission == PUBLIC:
            for headers in ({}, bearer(wrong["random"]), {"X-API-Key": "not-a-key"}):
                with client.open(url, method=method, headers=headers) as response:  # files: close them
                    expect(response.status_code == 200, f"{method} {url} {headers}", response)
            continue

        response = client.open(url, method=method)
        body = problem_of(response) if response.status_code == 401 else {}
        expect(
            response.status_code == 401
            and body.get("detail") == MISSING
            and response.headers.get("WWW-Authenticate", "").startswith("Bearer"),
            f"{method} {url} without a key",
            response,
        )
        answers = set()
        for index, (kind, key) in enumerate(wrong.items()):
            headers = bearer(key) if index % 2 else {"X-API-Key": key}
            response = client.open(url, method=method, headers=headers)
            expect(response.status_code == 401, f"{method} {url} with a {kind} key", response)
            expect(
                response.headers.get("WWW-Authenticate", "").startswith("Bearer"), f"{kind}: header", response
            )
            answers.add(response.get_data())
        expect(len(answers) == 1, f"{method} {url}: wrong keys answered differently {answers}", response)
        if response.status_code == 401:
            assert problem_of(response)["detail"] == INVALID

        needed = weakest_role(permission)
        smaller = ROLES[: ROLES.index(needed)]
        if smaller:
            response = client.open(url, method=method, headers=bearer(keys[smaller[-1]]))
            expect(response.status_code == 403, f"{method} {url} as {smaller[-1]}", response)
            if response.status_code == 403:
                assert "permission" in problem_of(response)["detail"]
        if permission == "admin":
            response = client.open(url, method=method, headers=bearer(keys["limited admin"]))
            expect(response.status_code == 403, f"{method} {url} as a model-limited admin", response)
        response = client.open(url, method=method, headers=bearer(keys[needed]))
        expect(response.status_code not in (401, 403), f"{method} {url} as {needed}", response)
    assert not failures, "\n".join(failures)


@pytest.mark.parametrize(
    "header",
    [
        pytest.param(lambda key: {"Authorization": f"Bearer {key}"}, id="bearer"),
        pytest.param(lambda key: {"Authorization": f"bearer  {key} "}, id="bearer-lowercase-spaces"),
        pytest.param(lambda key: {"X-API-Key": key}, id="x-api-key"),
    ],
)
def test_a_key_is_accepted_in_either_header(
    app: Flask, services: Services, header: Callable[[str], dict[str, str]]
) -> None:
    key = new(services, "reader")
    assert app.test_client().get("/v1/models", headers=header(key)).status_code == 200


def test_other_schemes_are_not_keys(app: Flask) -> None:
    response = app.test_client().get("/v1/models", headers={"Authorization": f"Basic {ADMIN_KEY}"})
    assert response.status_code == 401
    assert problem_of(response)["detail"] == INVALID


# -- model limits ----------------------------------------------------------------------------


def test_a_model_limited_key_sees_its_model_and_learns_nothing_of_others(
    app: Flask, services: Services, served: dict[str, Trained]
) -> None:
    client = app.test_client()
    key = new(services, "predictor", ["iris"])
    assert client.get("/v1/models/iris", headers=bearer(key)).status_code == 200
    assert client.get("/v1/models/iris/versions/1", headers=bearer(key)).status_code == 200
    assert predict(client, "iris", key).status_code == 200
    listed = client.get("/v1/models", headers=bearer(key)).get_json()["models"]
    assert [m["name"] for m in listed] == ["iris"]
    assert {"houses", "reviews"} <= {
        m["name"] for m in client.get("/v1/models", headers=bearer(ADMIN_KEY)).get_json()["models"]
    }

    # "houses" is served, "nohere" (as long) is not: every route under a name answers both alike.
    assert client.get("/v1/models/houses", headers=bearer(ADMIN_KEY)).status_code == 200
    assert client.get("/v1/models/nohere", headers=bearer(ADMIN_KEY)).status_code == 404
    named = [(m, url, e) for m, url, e in routes(app) if "/v1/models/iris" in url]
    assert len(named) >= 10
    for method, url, _ in named:
        answers = []
        for name in ("houses", "nohere"):
            response = client.open(
                url.replace("/iris", f"/{name}"),
                method=method,
                json={"instances": [ROW]},
                headers=bearer(key),
            )
            assert response.status_code == 403, (method, url, response.get_json())
            problem_of(response)
            headers = sorted((k, v) for k, v in response.headers.items() if k != "X-Request-ID")
            answers.append((headers, response.get_data().replace(name.encode(), b"NAME")))
        assert answers[0] == answers[1], (method, url)


def test_the_public_spec_names_no_model(app: Flask, served: dict[str, Trained]) -> None:
    spec = app.test_client().get("/openapi.json").get_data(as_text=True)
    assert "houses" not in spec


def test_a_model_limited_key_sees_no_job_of_other_models(app: Flask, services: Services) -> None:
    client = app.test_client()
    dataset = upload_dataset(client, ADMIN_KEY)
    body = {"kind": "train", "dataset": dataset, "target": "species", "register_as": "secret-model"}
    assert client.post("/v1/jobs", json=body, headers=bearer(ADMIN_KEY)).status_code == 202
    key = new(services, "reader", ["iris"])
    assert "secret-model" not in client.get("/v1/jobs", headers=bearer(key)).get_data(as_text=True)
    job = client.get("/v1/jobs", headers=bearer(ADMIN_KEY)).get_json()["jobs"][0]["id"]
    assert client.get(f"/v1/jobs/{job}", headers=bearer(key)).status_code == 403
    assert client.post(f"/v1/jobs/{job}/cancel", headers=bearer(key)).status_code == 403


# -- roles -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def data_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Model files that are data (ONNX, skops), which trainers may upload."""
    folder = tmp_path_factory.mktemp("data-formats")
    (folder / "onnx").mkdir()
    (folder / "skops").mkdir()
    return {"onnx": onnx_zipmap(folder / "onnx").path, "skops": skops_forest(folder / "skops").path}


def test_a_reader_reads_but_does_not_predict(
    app: Flask, services: Services, served: dict[str, Trained]
) -> None:
    client, key = app.test_client(), new(services, "reader")
    for url in ("/v1/models", "/v1/models/iris", "/v1/models/iris/versions", "/v1/jobs", "/v1/datasets"):
        assert client.get(url, headers=bearer(key)).status_code == 200, url
    check_problem(predict(client, "iris", key), 403, detail="'predict' permission")


def test_a_predictor_predicts_but_does_not_upload(
    app: Flask, services: Services, served: dict[str, Trained], data_files: dict[str, Path]
) -> None:
    client, key = app.test_client(), new(services, "predictor")
    response = predict(client, "iris", key)
    assert response.status_code == 200
    assert response.get_json()["predictions"] == ["setosa"]
    check_problem(upload(client, "iris", data_files["onnx"], key), 403, detail="'register' permission")
    check_problem(
        client.post("/v1/fit", json={"X": [[1.0]], "y": [1]}, headers=bearer(key)), 403, detail="'train'"
    )


def test_a_trainer_uploads_data_formats_but_not_code_and_manages_nothing(
    app: Flask, services: Services, served: dict[str, Trained], data_files: dict[str, Path]
) -> None:
    client, key = app.test_client(), new(services, "trainer")
    for fmt, path in data_files.items():
        response = upload(client, f"by-trainer-{fmt}", path, key)
        assert response.status_code == 201, response.get_json()
        assert response.get_json()["format"] == fmt
    problem = check_problem(upload(client, "iris", served["iris"].path, key), 422, field="file")
    assert problem["type"] == "urn:wharf:problem:unsafe-model"
    assert (
        client.get("/v1/models/iris/versions", headers=bearer(key)).get_json()["versions"][-1]["version"] == 1
    )

    record, _ = services.keys.create("reader")
    refused = [
        ("DELETE", "/v1/models/iris"),
        ("DELETE", "/v1/models/iris/versions/1"),
        ("GET", "/v1/keys"),
        ("POST", "/v1/keys"),
        ("DELETE", f"/v1/keys/{record.id}"),
        ("GET", "/v1/audit"),
    ]
    for method, url in refused:
        response = client.open(url, method=method, json={"role": "admin"}, headers=bearer(key))
        check_problem(response, 403)
    assert services.registry.get("iris").version == 1
    assert services.keys.get(record.id).revoked_at is None
    assert [k.role for k in services.keys.list()].count("admin") == 1


def test_an_admin_uploads_code_deletes_and_manages_keys(
    app: Flask, services: Services, served: dict[str, Trained]
) -> None:
    client = app.test_client()
    response = upload(client, "iris", served["iris"].path, ADMIN_KEY)
    assert response.status_code == 201, response.get_json()
    assert response.get_json()["version"] == 2
    assert client.delete("/v1/models/iris/versions/1", headers=bearer(ADMIN_KEY)).status_code == 200
    assert client.delete("/v1/models/houses", headers=bearer(ADMIN_KEY)).status_code == 200
    created = client.post("/v1/keys", json={"role": "reader"}, headers=bearer(ADMIN_KEY))
    assert created.status_code == 201
    revoked = client.delete(f"/v1/keys/{created.get_json()['id']}", headers=bearer(ADMIN_KEY))
    assert revoked.status_code == 200
    assert client.get("/v1/audit", headers=bearer(ADMIN_KEY)).status_code == 200


def test_a_trainer_job_outside_its_models_is_refused_before_it_is_queued(
    app: Flask, services: Services
) -> None:
    client, key = app.test_client(), new(services, "trainer", ["iris"])
    iris_data = upload_dataset(client, key)
    houses_data = upload_dataset(client, key, "houses.csv", rows=149)
    train = {"kind": "train", "target": "species"}
    for body in (
        {**train, "dataset": iris_data, "register_as": "other"},
        {**train, "dataset": houses_data},  # registered as "houses", after its dataset's file name
    ):
        response = client.post("/v1/jobs", json=body, headers=bearer(key))
        check_problem(response, 403, field="name")
        assert services.jobs.recent() == []
    accepted = client.post("/v1/jobs", json={**train, "dataset": iris_data}, headers=bearer(key))
    assert accepted.status_code == 202, accepted.get_json()
    assert accepted.get_json()["spec"]["register_as"] == "iris"
    assert len(services.jobs.recent()) == 1


# -- /v1/keys --------------------------------------------------------------------------------


def database_text(home: Path) -> str:
    """Every value of every table of the SQLite registry, as one string."""
    with sqlite3.connect(home / "wharf.db") as db:
        tables = [row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        return "\n".join(repr(row) for table in tables for row in db.execute(f'SELECT * FROM "{table}"'))


def test_keys_are_created_shown_once_listed_without_secrets_and_revoked(
    app: Flask, client: FlaskClient, settings: Settings, served: dict[str, Trained]
) -> None:
    body = {"role": "predictor", "models": ["iris"], "expires": "90d", "name": "ci"}
    response = client.post("/v1/keys", json=body)
    assert response.status_code == 201, response.get_json()
    created = response.get_json()
    key = created["key"]
    match = KEY_PATTERN.fullmatch(key)
    assert match is not None and match["id"] == created["id"]
    assert len(match["secret"]) >= 43  # 256 random bits
    assert (created["role"], created["models"], created["name"]) == ("predictor", ["iris"], "ci")
    assert created["created_by"] == ADMIN_KEY.split("_")[1]
    expires = datetime.fromisoformat(created["expires_at"])
    assert timedelta(days=89) < expires - datetime.now(UTC) <= timedelta(days=90)
    assert response.headers["Location"] == "/v1/keys"

    listing = client.get("/v1/keys")
    assert listing.status_code == 200
    assert match["secret"] not in listing.get_data(as_text=True)
    listed = {k["id"]: k for k in listing.get_json()["keys"]}
    assert "key" not in listed[created["id"]]
    assert listed[created["id"]]["role"] == "predictor"
    stored = database_text(settings.home)
    assert match["secret"] not in stored and digest(key) in stored

    anyone = app.test_client()
    assert predict(anyone, "iris", key).status_code == 200
    revoked = client.delete(f"/v1/keys/{created['id']}")
    assert revoked.status_code == 200
    assert revoked.get_json()["revoked_at"] is not None
    response = predict(anyone, "iris", key)
    assert response.status_code == 401 and problem_of(response)["detail"] == INVALID
    assert client.delete(f"/v1/keys/{created['id']}").status_code == 200  # again: no change
    check_problem(client.delete("/v1/keys/0badc0de"), 404, field="key_id")


@pytest.mark.parametrize(
    ("cache_seconds", "status"), [(0, 401), (60, 200)], ids=["no-cache", "cached-for-a-minute"]
)
def test_a_revocation_by_another_server_takes_effect_within_the_cache_time(
    make_app: Callable[..., Flask], cache_seconds: float, status: int
) -> None:
    app = make_app(key_cache_seconds=cache_seconds)
    services: Services = app.extensions["wharf"]
    record, key = services.keys.create("reader")
    client = app.test_client()
    assert client.get("/v1/models", headers=bearer(key)).status_code == 200
    services.keys.table.revoke(record.id)  # as a replica sharing the database would
    assert client.get("/v1/models", headers=bearer(key)).status_code == status


def test_a_revocation_through_this_server_takes_effect_at_once_despite_the_cache(
    make_app: Callable[..., Flask],
) -> None:
    app = make_app(key_cache_seconds=60)
    client = app.test_client()
    record, key = app.extensions["wharf"].keys.create("reader")
    assert client.get("/v1/models", headers=bearer(key)).status_code == 200
    assert client.delete(f"/v1/keys/{record.id}", headers=bearer(ADMIN_KEY)).status_code == 200
    assert client.get("/v1/models", headers=bearer(key)).status_code == 401


@pytest.mark.parametrize(
    ("body", "status", "field", "fragment"),
    [
        pytest.param({"role": "reader", "expires": "2000-01-01"}, 422, "expires", "in the past", id="past"),
        pytest.param({"role": "reader", "expires": "soon"}, 422, "expires", "'30d'", id="bad-expiry"),
        pytest.param({"role": "reader", "colour": "red"}, 422, "body.colour", "colour", id="unknown-field"),
        pytest.param({"role": "reader", "models": []}, 422, "models", "no models", id="no-models"),
        pytest.param({"role": "reader", "models": ["../etc"]}, 422, "models", "'../etc'", id="bad-model"),
        pytest.param({"role": "reader", "name": "x" * 300}, 422, "body.name", "name", id="long-name"),
        pytest.param({"models": ["iris"]}, 422, "body.role", "role", id="no-role"),
        pytest.param(["reader"], 422, "body", "JSON object", id="not-an-object"),
        pytest.param(
            {"role": "reeder"},
            422,
            "role",
            "Did you mean 'reader'?",
            id="unknown-role",
        ),
    ],
)
def test_bad_key_requests_are_refused(
    client: FlaskClient, body: Any, status: int, field: str, fragment: str
) -> None:
    before = len(client.get("/v1/keys").get_json()["keys"])
    check_problem(client.post("/v1/keys", json=body), status, field=field, detail=fragment)
    assert len(client.get("/v1/keys").get_json()["keys"]) == before


def test_key_requests_that_are_not_json(client: FlaskClient) -> None:
    check_problem(client.post("/v1/keys", data="role=admin", content_type="text/plain"), 415)
    assert client.post("/v1/keys", data="{", content_type="application/json").status_code == 400


# -- /v1/audit -------------------------------------------------------------------------------


def test_admin_and_trainer_actions_are_audited_with_who_what_and_where(
    app: Flask, services: Services, served: dict[str, Trained], data_files: dict[str, Path]
) -> None:
    admin = app.test_client()
    admin.environ_base.update(HTTP_AUTHORIZATION=f"Bearer {ADMIN_KEY}", REMOTE_ADDR="10.0.0.7")
    admin_id = ADMIN_KEY.split("_")[1]
    trainer_record, trainer = services.keys.create("trainer")

    def entries() -> list[dict[str, Any]]:
        response = admin.get("/v1/audit?limit=1000")
        assert response.status_code == 200
        return list(response.get_json()["entries"])

    assert entries() == []
    assert upload(admin, "iris", served["iris"].path, ADMIN_KEY).status_code == 201
    assert upload(admin, "newmodel", data_files["onnx"], trainer).status_code == 201
    created = admin.post("/v1/keys", json={"role": "reader"}).get_json()
    assert admin.delete(f"/v1/keys/{created['id']}").status_code == 200
    assert admin.delete("/v1/models/houses").status_code == 200
    dataset = upload_dataset(admin, ADMIN_KEY)
    job = admin.post("/v1/jobs", json={"kind": "train", "dataset": dataset, "target": "species"})
    assert job.status_code == 202
    assert admin.delete("/v1/models/nohere").status_code == 404

    log = {(e["action"], e["target"], e["status"]): e for e in entries()}
    expected = [
        ("upload_version", "iris", 201, admin_id),
        ("upload_version", "newmodel", 201, trainer_record.id),
        ("create_key", f"key {created['id']}", 201, admin_id),
        ("revoke_key", f"key {created['id']}", 200, admin_id),
        ("delete_model", "houses", 200, admin_id),
        ("upload_dataset", f"dataset {dataset}", 201, admin_id),
        ("submit_job", f"job {job.get_json()['id']}", 202, admin_id),
        ("delete_model", "nohere", 404, admin_id),
    ]
    for action, target, status, key_id in expected:
        entry = log.get((action, target, status))
        assert entry is not None, (action, target, status, sorted(log))
        assert entry["key_id"] == key_id
        assert entry["remote_addr"] == "10.0.0.7"
        assert entry["at"]
    assert log[("create_key", f"key {created['id']}", 201)]["detail"]["role"] == "reader"
    assert log[("upload_version", "iris", 201)]["detail"]["version"] == 2
    assert created["key"] not in str(entries())

    # Predictions and reads are not actions.
    count = len(entries())
    predictor = new(services, "predictor")
    assert predict(admin, "iris", predictor).status_code == 200
    assert predict(admin, "iris", ADMIN_KEY).status_code == 200
    for url in ("/v1/models", "/v1/models/iris", "/v1/keys", "/v1/jobs", "/v1/datasets", "/v1/audit"):
        assert admin.get(url).status_code == 200
    assert admin.get("/v1/models", headers=bearer(new_key()[1])).status_code == 401
    assert len(entries()) == count
    only = admin.get(f"/v1/audit?key_id={trainer_record.id}").get_json()["entries"]
    assert [e["target"] for e in only] == ["newmodel"]


def test_only_unlimited_admins_read_the_audit_log(app: Flask, services: Services) -> None:
    client = app.test_client()
    for role in ("reader", "predictor", "trainer"):
        check_problem(client.get("/v1/audit", headers=bearer(new(services, role))), 403)
    limited = new(services, "admin", ["iris"])
    check_problem(client.get("/v1/audit", headers=bearer(limited)), 403, detail="limited to some models")
    assert client.get("/v1/audit", headers=bearer(ADMIN_KEY)).status_code == 200


# -- rate limits -----------------------------------------------------------------------------


def check_429(response: TestResponse) -> int:
    """Assert ``response`` is a 429 problem whose Retry-After header matches its body; the seconds."""
    problem = check_problem(response, 429)
    assert problem["type"] == "urn:wharf:problem:too-many-requests"
    assert re.fullmatch(r"[1-9]\d*", response.headers.get("Retry-After", "")), dict(response.headers)
    assert int(response.headers["Retry-After"]) == problem["retry_after"] >= 1
    return int(problem["retry_after"])


def test_a_role_limit_counts_per_key(make_app: Callable[..., Flask]) -> None:
    app = make_app(rate_limits={"predictor": "3/minute"})
    services: Services = app.extensions["wharf"]
    client = app.test_client()
    first, second = new(services, "predictor"), new(services, "predictor")
    for _ in range(3):
        assert predict(client, "iris", first).status_code == 200
    assert check_429(predict(client, "iris", first)) <= 60
    assert check_429(client.get("/v1/models", headers=bearer(first))) <= 60  # every route
    assert predict(client, "iris", second).status_code == 200
    for _ in range(5):  # other roles are not limited
        assert predict(client, "iris", ADMIN_KEY).status_code == 200


def test_callers_without_a_valid_key_are_limited_per_address(make_app: Callable[..., Flask]) -> None:
    app = make_app(rate_limits={"anonymous": "2/minute"})
    client = app.test_client()
    for headers in ({}, bearer(new_key()[1])):
        assert client.get("/v1/models", headers=headers).status_code == 401
    check_429(client.get("/v1/models"))
    check_429(client.get("/v1/models", headers=bearer(new_key()[1])))
    assert client.get("/v1/models", environ_base={"REMOTE_ADDR": "10.9.9.9"}).status_code == 401
    assert client.get("/v1/models", headers=bearer(ADMIN_KEY)).status_code == 200
    assert client.get("/healthz").status_code == 200


def test_a_route_limit_counts_per_key_on_that_route(make_app: Callable[..., Flask]) -> None:
    app = make_app(rate_limits={"route:predict": "2/minute"})
    client = app.test_client()
    key = new(app.extensions["wharf"], "predictor")
    for _ in range(2):
        assert predict(client, "iris", key).status_code == 200
    check_429(predict(client, "iris", key))
    assert (
        client.post(
            "/v1/models/iris/versions/1/predict", json={"instances": [ROW]}, headers=bearer(key)
        ).status_code
        == 200
    )  # another route
    assert client.get("/v1/models", headers=bearer(key)).status_code == 200
    assert predict(client, "iris", ADMIN_KEY).status_code == 200


def test_an_address_limit_counts_every_request_from_that_address(make_app: Callable[..., Flask]) -> None:
    app = make_app(rate_limits={"address": "3/minute"}, cors_origins=[ORIGIN])
    client = app.test_client()
    assert client.get("/healthz").status_code == 200
    assert client.get("/v1/models").status_code == 401
    assert predict(client, "iris", ADMIN_KEY).status_code == 200
    response = predict(client, "iris", ADMIN_KEY, headers={"Origin": ORIGIN})
    check_429(response)
    assert response.headers["Access-Control-Allow-Origin"] == ORIGIN  # a browser may read it
    assert "Retry-After" in response.headers["Access-Control-Expose-Headers"]
    check_429(client.get("/healthz"))
    other = {"REMOTE_ADDR": "192.0.2.1"}
    assert predict(client, "iris", ADMIN_KEY, environ_base=other).status_code == 200


def test_no_limits_is_no_limiting(make_app: Callable[..., Flask]) -> None:
    client = make_app(rate_limits={}).test_client()
    for _ in range(40):
        assert client.get("/v1/models").status_code == 401
        assert predict(client, "iris", ADMIN_KEY).status_code == 200


def test_callers_without_a_key_are_limited_by_default(tmp_path: Path) -> None:
    app = create_app(Settings(home=tmp_path / "home", admin_key=ADMIN_KEY))
    try:
        anonymous = app.test_client()
        assert [anonymous.get("/v1/models").status_code for _ in range(60)] == [401] * 60
        check_429(anonymous.get("/v1/models"))
        assert anonymous.get("/v1/models", headers=bearer(ADMIN_KEY)).status_code == 200
    finally:
        app.extensions["wharf"].close()


@pytest.mark.parametrize(
    "limits",
    [
        {"predictor": "lots"},
        {"predictor": "3/fortnight"},
        {"predictr": "3/minute"},
        {"route:": "3/minute"},
        {"everyone": "3/minute"},
    ],
)
def test_bad_rate_limits_are_refused_when_the_app_is_made(tmp_path: Path, limits: dict[str, str]) -> None:
    with pytest.raises(InvalidSettings, match="WHARF_RATE_LIMITS"):
        create_app(Settings(home=tmp_path / "home", rate_limits=limits))


# -- headers ---------------------------------------------------------------------------------


def csp(response: TestResponse) -> dict[str, list[str]]:
    """The Content-Security-Policy header as directive -> sources."""
    policy = response.headers.get("Content-Security-Policy", "")
    parts = [part.split() for part in policy.split(";") if part.strip()]
    return {part[0]: part[1:] for part in parts}


class Scripts(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.sources: list[str | None] = []
        self.inline_handlers: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "script":
            self.sources.append(dict(attrs).get("src"))
        self.inline_handlers += [name for name, _ in attrs if name.startswith("on")]


def test_security_headers_on_every_kind_of_response(app: Flask, served: dict[str, Trained]) -> None:
    client = app.test_client()
    responses = {
        "json": client.get("/v1/models", headers=bearer(ADMIN_KEY)),
        "prediction": predict(client, "iris", ADMIN_KEY),
        "401": client.get("/v1/models"),
        "403": predict(client, "iris", new(app.extensions["wharf"], "reader")),
        "unknown path": client.get("/v1/nothing-here"),
        "wrong method": client.patch("/v1/models"),
        "health": client.get("/healthz"),
        "spec": client.get("/openapi.json"),
        "asset": client.get("/docs/assets/wharf-docs.js"),
    }
    responses["asset"].close()  # a file, sent as it is read
    for what, response in responses.items():
        assert response.headers.get("X-Content-Type-Options") == "nosniff", what
        assert response.headers.get("X-Frame-Options") == "DENY", what
        assert "Strict-Transport-Security" not in response.headers, what  # plain http
        policy = csp(response)
        assert policy.get("frame-ancestors") == ["'none'"], what
        assert policy.get("default-src") == ["'none'"] and "script-src" not in policy, (what, policy)


def test_the_docs_page_runs_only_its_own_scripts(app: Flask) -> None:
    response = app.test_client().get("/docs")
    assert response.status_code == 200 and response.mimetype == "text/html"
    policy = csp(response)
    assert policy["default-src"] == ["'none'"]
    assert policy["script-src"] == ["'self'"]
    assert policy["frame-ancestors"] == ["'none'"]
    assert response.headers["X-Frame-Options"] == "DENY"
    # What the policy lets run is all the page needs: scripts from files, none inline.
    page = Scripts()
    page.feed(response.get_data(as_text=True))
    assert page.sources and all(src and src.startswith("/docs/assets/") for src in page.sources)
    assert page.inline_handlers == []


def test_hsts_only_over_https(app: Flask) -> None:
    client = app.test_client()
    assert "Strict-Transport-Security" not in client.get("/healthz").headers
    for response in (
        client.get("/healthz", base_url="https://localhost"),
        client.get("/v1/models", base_url="https://localhost"),
        client.get("/v1/nothing-here", base_url="https://localhost"),
    ):
        hsts = response.headers.get("Strict-Transport-Security", "")
        max_age = re.search(r"max-age=(\d+)", hsts)
        assert max_age is not None and int(max_age[1]) >= 180 * 24 * 3600, hsts


def test_cors_is_off_by_default(app: Flask) -> None:
    client = app.test_client()
    get = client.get("/v1/models", headers={**bearer(ADMIN_KEY), "Origin": ORIGIN})
    assert get.status_code == 200
    preflight = client.options(
        "/v1/models", headers={"Origin": ORIGIN, "Access-Control-Request-Method": "GET"}
    )
    for response in (get, preflight):
        assert not any(h.lower().startswith("access-control-") for h in response.headers.keys())


def test_cors_answers_only_the_configured_origins(make_app: Callable[..., Flask]) -> None:
    client = make_app(cors_origins=[ORIGIN]).test_client()
    get = client.get("/v1/models", headers={**bearer(ADMIN_KEY), "Origin": ORIGIN})
    assert get.status_code == 200
    assert get.headers["Access-Control-Allow-Origin"] == ORIGIN
    assert "Origin" in ", ".join(get.headers.get_all("Vary"))
    unauthorized = client.get("/v1/models", headers={"Origin": ORIGIN})
    assert unauthorized.status_code == 401
    assert unauthorized.headers["Access-Control-Allow-Origin"] == ORIGIN

    preflight = client.options(
        "/v1/models/iris/predict",
        headers={
            "Origin": ORIGIN,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization, content-type",
        },
    )
    assert preflight.status_code == 200
    assert preflight.headers["Access-Control-Allow-Origin"] == ORIGIN
    allowed = {h.strip().lower() for h in preflight.headers["Access-Control-Allow-Headers"].split(",")}
    assert {"authorization", "x-api-key", "content-type"} <= allowed
    assert "POST" in preflight.headers["Access-Control-Allow-Methods"]

    for response in (
        client.get("/v1/models", headers={**bearer(ADMIN_KEY), "Origin": OTHER_ORIGIN}),
        client.options(
            "/v1/models/iris/predict",
            headers={"Origin": OTHER_ORIGIN, "Access-Control-Request-Method": "POST"},
        ),
    ):
        assert not any(h.lower().startswith("access-control-") for h in response.headers.keys())
