"""Two ``wharf serve`` replicas (two workers each) sharing one PostgreSQL database and one S3 bucket
(moto's server), as a team runs wharf behind a load balancer: they see the same models, a change made
through one is served by the other within 2 seconds, moving ``production`` under load fails no
request, and concurrent registrations through both get distinct, contiguous version numbers."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import joblib
import pandas as pd
import pytest
import requests
from sklearn.dummy import DummyClassifier
from sklearn.pipeline import Pipeline
from test_serve import Server, rows, start, stopped

from auth import ADMIN_KEY
from objectstore import ACCESS_KEY_ID, PREFIX, REGION, SECRET_ACCESS_KEY, s3_client
from postgres import fresh_database
from wharf.services.security import new_key

pytestmark = pytest.mark.e2e

PROPAGATION_SECONDS = 2.0
"""Issue 7: a change made through one replica is served by every replica within this."""
LOAD_THREADS = 4
HEADERS = {"Authorization": f"Bearer {ADMIN_KEY}"}


@dataclass
class Cluster:
    servers: list[Server]
    models: dict[int, Any]
    """Version -> the in-process model registered as that version."""
    files: dict[int, Path] = field(default_factory=dict)


@pytest.fixture(scope="module")
def cluster(
    tmp_path_factory: pytest.TempPathFactory, s3_server: str, iris: tuple[Pipeline, pd.DataFrame]
) -> Iterator[Cluster]:
    folder = tmp_path_factory.mktemp("replicas")
    bucket = f"wharf-replicas-{uuid.uuid4().hex[:16]}"
    s3 = {
        "s3_endpoint_url": s3_server,
        "s3_region": REGION,
        "s3_access_key_id": ACCESS_KEY_ID,
        "s3_secret_access_key": SECRET_ACCESS_KEY,
    }
    s3_client(s3).create_bucket(Bucket=bucket)
    model, X = iris
    constant = DummyClassifier(strategy="constant", constant=model.classes_[2]).fit(X, model.predict(X))
    files = {1: folder / "iris-logistic.joblib", 2: folder / "iris-constant.joblib"}
    joblib.dump(model, files[1])
    joblib.dump(constant, files[2])
    with fresh_database() as database:
        env = {
            "WHARF_DATABASE_URL": database,
            "WHARF_ARTIFACTS": f"s3://{bucket}/{PREFIX}",
            **{f"WHARF_{key.upper()}": value for key, value in s3.items()},
            "WHARF_ADMIN_KEY": ADMIN_KEY,
            "WHARF_RATE_LIMITS": "{}",
            "WHARF_WORKERS": "2",
            "WHARF_THREADS": "8",
        }
        servers: list[Server] = []
        try:
            for name in ("a", "b"):  # each its own home: nothing shared but the database and bucket
                servers.append(start(folder / name, log=folder / f"{name}.log", env=env))
            yield Cluster(servers, {1: model, 2: constant}, files)
        finally:
            for server in servers:
                stopped(server)


def register(server: Server, path: Path, name: str = "iris") -> int:
    with path.open("rb") as fh:
        response = requests.post(
            f"{server.url}/v1/models/{name}/versions",
            files={"file": (path.name, fh)},
            headers=HEADERS,
            timeout=120,
        )
    assert response.status_code == 201, response.text
    return int(response.json()["version"])


def move(server: Server, alias: str, version: int, name: str = "iris") -> dict[str, Any]:
    response = requests.post(
        f"{server.url}/v1/models/{name}/aliases/{alias}",
        json={"version": version},
        headers=HEADERS,
        timeout=30,
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def answer(session: requests.Session, server: Server, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    url = f"{server.url}/v1/models/iris@production/predict"
    response = session.post(url, json=body, headers=HEADERS, timeout=30)
    return response.status_code, response.json()


def wait_for(server: Server, body: dict[str, Any], version: int) -> float:
    """Seconds until ``server`` answers ``iris@production`` with ``version`` on several requests in a
    row (so both of its workers do)."""
    started, in_a_row = time.monotonic(), 0
    with requests.Session() as session:
        while in_a_row < 8:
            status, result = answer(session, server, body)
            in_a_row = in_a_row + 1 if status == 200 and result["version"] == version else 0
            assert time.monotonic() - started < 30, f"{server.url} never answered with v{version}: {result}"
    return time.monotonic() - started


def test_moving_production_under_load_on_both_replicas_fails_no_request(
    cluster: Cluster, iris: tuple[Pipeline, pd.DataFrame]
) -> None:
    _, X = iris
    sample = X.iloc[::15]
    body = {"instances": rows(sample)}
    expected = {v: m.predict(sample).tolist() for v, m in cluster.models.items()}
    assert expected[1] != expected[2]  # the answer tells which version made it
    a, b = cluster.servers
    assert [register(a, cluster.files[1]), register(b, cluster.files[2])] == [1, 2]
    # Both replicas list the same models, whichever registered them.
    listed = [requests.get(f"{s.url}/v1/models", headers=HEADERS, timeout=10).json() for s in (a, b)]
    assert listed[0] == listed[1]
    assert [m["latest_version"] for m in listed[0]["models"]] == [2]

    assert move(a, "production", 1)["previous"] is None
    assert wait_for(b, body, 1) < PROPAGATION_SECONDS  # made through a, served by b

    answers: list[tuple[str, float, int, dict[str, Any]]] = []
    stop = threading.Event()

    def load(index: int) -> None:
        server = cluster.servers[index % 2]
        with requests.Session() as session:  # keep-alive, as a client pool does
            while not stop.is_set():
                status, result = answer(session, server, body)
                answers.append((server.url, time.monotonic(), status, result))

    threads = [threading.Thread(target=load, args=(i,)) for i in range(LOAD_THREADS)]
    for thread in threads:
        thread.start()
    try:
        time.sleep(1.0)
        moved_at = time.monotonic()
        assert move(b, "production", 2) == {
            "name": "iris",
            "alias": "production",
            "version": 2,
            "previous": 1,
        }
        time.sleep(PROPAGATION_SECONDS + 1.0)
    finally:
        stop.set()
        for thread in threads:
            thread.join()

    failed = [(url, status, result) for url, _, status, result in answers if status != 200]
    assert failed == []
    for _, _, _, result in answers:
        assert result["predictions"] == expected[result["version"]]  # each names the version that made it
    for server in cluster.servers:
        mine = [(at, result["version"]) for url, at, _, result in answers if url == server.url]
        assert {v for at, v in mine if at < moved_at} == {1}
        assert {v for at, v in mine if at > moved_at + PROPAGATION_SECONDS} == {2}, server.url
        assert len(mine) > 50  # both replicas were under load the whole time
    for server in cluster.servers:  # loaded and warmed before it took traffic: once per worker
        assert server.output().count("loaded iris:2") >= 1


def test_fifty_concurrent_registrations_across_two_replicas_get_contiguous_versions(cluster: Cluster) -> None:
    a, b = cluster.servers
    before = requests.get(f"{a.url}/v1/models/iris", headers=HEADERS, timeout=10)
    start_at = int(before.json()["latest_version"]) if before.status_code == 200 else 0
    targets = [cluster.servers[i % 2] for i in range(50)]
    with ThreadPoolExecutor(max_workers=10) as pool:
        numbers = list(pool.map(lambda server: register(server, cluster.files[2], "iris"), targets))
    assert sorted(numbers) == list(range(start_at + 1, start_at + 51))
    for server in (a, b):
        listing = requests.get(
            f"{server.url}/v1/models/iris/versions", params={"limit": 1000}, headers=HEADERS, timeout=30
        ).json()
        assert [v["version"] for v in listing["versions"]][-50:] == list(range(start_at + 1, start_at + 51))
        assert len({v["sha256"] for v in listing["versions"][-50:]}) == 1  # one file, stored once


def test_rate_limits_are_one_budget_across_replicas_sharing_redis(
    tmp_path: Path, iris: tuple[Pipeline, pd.DataFrame]
) -> None:
    """WHARF_REDIS_URL alone puts the counters in Redis: a key's budget is spent on either replica."""
    model, X = iris
    path = tmp_path / "iris.joblib"
    joblib.dump(model, path)
    _, admin = new_key()  # fresh: its counters are new in a Redis that outlives test runs
    env = {
        "WHARF_DATABASE_URL": f"sqlite:///{tmp_path / 'shared.db'}",
        "WHARF_ARTIFACTS": str(tmp_path / "artifacts"),
        "WHARF_ADMIN_KEY": admin,
        "WHARF_REDIS_URL": "redis://127.0.0.1:6379/0",
        "WHARF_RATE_LIMITS": '{"admin": "6/minute"}',
    }
    servers: list[Server] = []
    try:
        for name in ("a", "b"):
            servers.append(start(tmp_path / name, log=tmp_path / f"{name}.log", env=env))
        headers = {"Authorization": f"Bearer {admin}"}
        with path.open("rb") as fh:  # request 1, on a
            url = f"{servers[0].url}/v1/models/iris/versions"
            assert requests.post(url, files={"file": fh}, headers=headers, timeout=60).status_code == 201
        body = {"instances": rows(X.iloc[:2])}
        statuses = [
            requests.post(
                f"{servers[i % 2].url}/v1/models/iris/predict", json=body, headers=headers, timeout=30
            ).status_code
            for i in range(1, 8)
        ]
        assert statuses == [200] * 5 + [429] * 2  # six in all, whichever replica took them
    finally:
        for server in servers:
            stopped(server)
