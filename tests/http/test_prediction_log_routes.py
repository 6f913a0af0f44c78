"""GET /v1/models/{name}/predictions: the prediction log, newest first, filtered and paged; admins only."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from flask.testing import FlaskClient
from httpcases import check_problem

from wharf.services import Services

URL = "/v1/models/iris/predictions"


@pytest.fixture
def client(make_client: Callable[..., FlaskClient]) -> FlaskClient:
    """An admin's client of an app logging every prediction, serving iris (version 1)."""
    return make_client(prediction_log_sample=1.0)


def services_of(client: FlaskClient) -> Services:
    return client.application.extensions["wharf"]  # type: ignore[no-any-return]


def log(client: FlaskClient, *entries: dict[str, Any]) -> None:
    """Offer ``entries`` (``n``, and optionally ``version``, ``key_id``) to the log, and write them."""
    predictions = services_of(client).predictions
    for entry in entries:
        n = entry["n"]
        assert predictions.offer(
            "iris",
            entry.get("version", 1),
            inputs={"instances": [[5.1, 3.5, 1.4, n]]},
            outputs={"model": "iris", "version": entry.get("version", 1), "predictions": [f"answer {n}"]},
            request_id=f"req-{n}",
            key_id=entry.get("key_id"),
        )
    predictions.flush()


def numbers(body: dict[str, Any]) -> list[int]:
    return [entry["inputs"]["instances"][0][3] for entry in body["entries"]]


def test_an_admin_reads_entries_newest_first(client: FlaskClient) -> None:
    before = datetime.now(UTC)
    log(client, {"n": 0, "key_id": "0a1b2c3d"}, {"n": 1}, {"n": 2})
    response = client.get(URL)
    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    assert body["name"] == "iris" and body["total"] == 3
    assert numbers(body) == [2, 1, 0]
    oldest = body["entries"][-1]
    assert set(oldest) == {"id", "at", "model", "version", "request_id", "key_id", "inputs", "outputs"}
    assert (oldest["model"], oldest["version"], oldest["request_id"], oldest["key_id"]) == (
        "iris",
        1,
        "req-0",
        "0a1b2c3d",
    )
    assert oldest["outputs"] == {"model": "iris", "version": 1, "predictions": ["answer 0"]}
    at = datetime.fromisoformat(oldest["at"])
    assert at.utcoffset() == timedelta(0) and before <= at <= datetime.now(UTC)


def test_an_empty_log(client: FlaskClient) -> None:
    assert client.get(URL).get_json() == {"name": "iris", "total": 0, "entries": []}


def test_filters_and_paging(client: FlaskClient) -> None:
    log(client, {"n": 0}, {"n": 1, "version": 2}, {"n": 2}, {"n": 3, "version": 2}, {"n": 4})
    page = client.get(f"{URL}?limit=2&offset=1").get_json()
    assert page["total"] == 5 and numbers(page) == [3, 2]
    only = client.get(f"{URL}?version=2").get_json()
    assert only["total"] == 2 and numbers(only) == [3, 1]
    assert client.get(f"{URL}?version=7").get_json()["total"] == 0

    times = {n: datetime.fromisoformat(e["at"]) for n, e in zip(numbers(page), page["entries"], strict=True)}
    since = times[2].isoformat()  # inclusive
    until = times[3].isoformat()  # exclusive
    assert numbers(client.get(URL, query_string={"since": since}).get_json()) == [4, 3, 2]
    window = client.get(URL, query_string={"since": since, "until": until, "limit": 10}).get_json()
    assert window["total"] == 1 and numbers(window) == [2]
    future = (datetime.now(UTC) + timedelta(days=1)).isoformat()
    assert client.get(URL, query_string={"since": future}).get_json()["total"] == 0


@pytest.mark.parametrize(
    "query",
    [
        {"since": "2000-01-01"},
        {"since": "2000-01-01T00:00:00"},
        {"since": "2000-01-01T00:00:00Z"},
        {"since": "2000-01-01T02:00:00+02:00"},
        {"since": "2000-01-01T02:00:00 02:00"},  # an unescaped "+" arrives as a space
        {"since": "2000-01-01 00:00"},
        {"since": "2000-01-01t00:00:00z"},
        {"until": "2999-12-31T23:59:59.999999-05:00"},
        {"since": "", "until": "", "version": "", "limit": "", "offset": ""},
    ],
)
def test_times_in_every_iso_form(client: FlaskClient, query: dict[str, str]) -> None:
    log(client, {"n": 0})
    response = client.get(URL, query_string=query)
    assert response.status_code == 200, response.get_json()
    assert response.get_json()["total"] == 1


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("since=yesterday", "since"),
        ("since=2025-13-01", "since"),
        ("since=2025-01-01T25:00", "since"),
        ("until=1714000000", "until"),
        ("until=0001-01-01T00:00:00%2B01:00", "until"),  # before year 1 in UTC
        ("since=%00", "since"),
        ("since=2025-01-01&since=2025-01-02", "since"),
        ("since=2025-01-02&until=2025-01-01", "since"),
        ("version=x", "version"),
        ("version=0", "version"),
        ("version=-1", "version"),
        ("version=1.5", "version"),
        ("version=2147483648", "version"),
        ("limit=0", "limit"),
        ("limit=1001", "limit"),
        ("limit=ten", "limit"),
        ("offset=-1", "offset"),
    ],
)
def test_bad_query_values_are_refused_naming_them(client: FlaskClient, query: str, field: str) -> None:
    problem = check_problem(client.get(f"{URL}?{query}"), 422, field=field)
    assert problem["type"] == "urn:wharf:problem:invalid-input"
    assert len(problem["detail"]) < 300


def test_an_unknown_model_is_404(client: FlaskClient) -> None:
    problem = check_problem(client.get("/v1/models/irsi/predictions"), 404, field="name", detail="'iris'")
    assert problem["type"] == "urn:wharf:problem:model-not-found"
    check_problem(client.get("/v1/models/iris@production/predictions"), 404)


@pytest.mark.parametrize("role", ["reader", "predictor", "trainer"])
def test_only_admins_read_the_log(client: FlaskClient, role: str) -> None:
    log(client, {"n": 0})
    _, key = services_of(client).keys.create(role)
    response = client.get(URL, headers={"Authorization": f"Bearer {key}"})
    check_problem(response, 403, detail="'admin' permission")
    assert b"5.1" not in response.get_data()


def test_an_admin_limited_to_the_model_is_refused_too(client: FlaskClient) -> None:
    _, key = services_of(client).keys.create("admin", ["iris"])
    check_problem(client.get(URL, headers={"Authorization": f"Bearer {key}"}), 403)


def test_no_key_is_401(client: FlaskClient) -> None:
    check_problem(client.get(URL, headers={"Authorization": ""}), 401)


def test_with_the_log_off_the_route_answers_an_empty_log(make_client: Callable[..., FlaskClient]) -> None:
    client = make_client()
    assert not services_of(client).predictions.offer(
        "iris", 1, inputs={}, outputs={}, request_id=None, key_id=None
    )
    assert client.get(URL).get_json() == {"name": "iris", "total": 0, "entries": []}


def test_the_route_is_documented(client: FlaskClient) -> None:
    operation = client.get("/openapi.json").get_json()["paths"]["/v1/models/{name}/predictions"]["get"]
    assert {p["name"] for p in operation["parameters"]} == {
        "name",
        "version",
        "since",
        "until",
        "limit",
        "offset",
    }
    assert operation["responses"]["200"]["content"]["application/json"]["schema"]
