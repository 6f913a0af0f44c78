"""Monitoring through a real ``wharf serve`` with two worker processes: ``/metrics`` sums both
workers, every request gives one JSON access log line, and drift is flagged on shifted inputs and
not on unshifted ones."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import joblib
import orjson
import pandas as pd
import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families
from sklearn.datasets import make_classification
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler
from test_serve import Server, start, stopped

pytestmark = pytest.mark.e2e

COLUMNS = ["x0", "x1", "x2", "x3"]
KEY = "wharf_0123abcd_monitoringmonitoringmonitoring42"
AUTH = {"Authorization": f"Bearer {KEY}"}


@pytest.fixture(scope="module")
def model() -> tuple[Pipeline, pd.DataFrame]:
    X, y = make_classification(n_samples=6000, n_features=4, n_informative=3, n_redundant=0, random_state=0)
    frame = pd.DataFrame(X, columns=COLUMNS)
    return make_pipeline(StandardScaler(), LogisticRegression()).fit(frame, y), frame


@pytest.fixture(scope="module")
def server(
    tmp_path_factory: pytest.TempPathFactory, model: tuple[Pipeline, pd.DataFrame]
) -> Iterator[Server]:
    folder = tmp_path_factory.mktemp("monitoring")
    path = folder / "clf.joblib"
    joblib.dump(model[0], path)
    env = {
        "WHARF_AUTH": "true",
        "WHARF_ADMIN_KEY": KEY,
        "WHARF_RATE_LIMITS": "{}",
        "WHARF_MONITOR_FLUSH_SECONDS": "1",
        "WHARF_PREDICTION_LOG_SAMPLE": "1",
    }
    server = start(folder / "home", str(path), "--workers", "2", log=folder / "serve.log", env=env)
    yield server
    stopped(server)


def records(frame: pd.DataFrame) -> list[dict[str, float]]:
    return [dict(zip(COLUMNS, map(float, row), strict=True)) for row in frame.to_numpy()]


def metrics(server: Server, **headers: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    response = requests.get(f"{server.url}/metrics", headers={**AUTH, **headers}, timeout=10)
    assert response.status_code == 200, response.text
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def value(found: dict[Any, float], name: str, **labels: str) -> float:
    return found.get((name, tuple(sorted(labels.items()))), 0.0)


def wait_for(check: Any, seconds: float = 10.0) -> Any:
    deadline = time.monotonic() + seconds
    while True:
        result = check()
        if result or time.monotonic() > deadline:
            return result
        time.sleep(0.2)


def test_metrics_sum_every_worker_and_logs_name_every_request(
    server: Server, model: tuple[Pipeline, pd.DataFrame]
) -> None:
    pipeline, frame = model
    url = f"{server.url}/v1/models/clf/predict"
    batches = [frame.iloc[i * 7 : i * 7 + 7] for i in range(60)]

    def send(i: int) -> tuple[str, list[Any]]:
        # A new connection each time, so both workers answer some.
        rid = f"test-{i}"
        response = requests.post(
            url, json={"instances": records(batches[i])}, headers={**AUTH, "X-Request-ID": rid}, timeout=30
        )
        assert response.status_code == 200, response.text
        assert response.headers["X-Request-ID"] == rid
        return rid, response.json()["predictions"]

    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(send, range(len(batches))))
    expected = Counter(str(label) for label in pipeline.predict(frame.iloc[: 7 * len(batches)]))
    assert Counter(str(p) for _, ps in answers for p in ps) == expected

    def settled() -> dict[Any, float] | None:
        found = metrics(server)
        classes = {
            label: value(found, "wharf_predicted_classes_total", model="clf", version="1", **{"class": label})
            for label in expected
        }
        done = value(
            found,
            "wharf_http_requests_total",
            route="predict",
            method="POST",
            status="200",
            model="clf",
            version="1",
        ) == len(batches) and classes == {k: float(v) for k, v in expected.items()}
        return found if done else None

    found = wait_for(settled)
    assert found, "the workers' counts did not add up within 10 s"
    assert (
        value(found, "wharf_http_request_duration_seconds_count", route="predict", model="clf", version="1")
        == 60
    )
    assert value(found, "wharf_predicted_rows_total", model="clf", version="1") == 7 * 60
    assert value(found, "wharf_model_batch_rows_sum", model="clf", version="1") == 7 * 60
    assert value(found, "wharf_model_loaded", model="clf", version="1") == 2  # both workers hold it
    # Loaded once, before the fork: counted once, not once per worker.
    assert value(found, "wharf_model_load_duration_seconds_count", model="clf", version="1") == 1
    assert value(found, "wharf_jobs", state="queued") == 0

    # Errors by type, and unknown model names kept out of the labels.
    bad = requests.post(url, json={"instances": [{"x0": "high"}]}, headers=AUTH, timeout=10)
    assert bad.status_code == 422
    bad_type = bad.json()["type"].rpartition(":")[2]
    missing = requests.post(f"{server.url}/v1/models/nope-123/predict", json={}, headers=AUTH, timeout=10)
    assert missing.status_code == 404
    found = wait_for(
        lambda: (
            (f := metrics(server))
            and value(f, "wharf_errors_total", type="model-not-found", status="404") >= 1
            and value(f, "wharf_errors_total", type=bad_type, status="422") >= 1
            and f
        )
    )
    assert found, "the two errors were not counted within 10 s"
    assert not any("nope-123" in str(labels) for _, labels in found)

    # One JSON line per request on stdout, with the id the client sent.
    lines = [orjson.loads(line) for line in server.output().splitlines() if line.startswith('{"time"')]
    logged = {line["request_id"]: line for line in lines if line["route"] == "predict"}
    for rid, _ in answers:
        line = logged[rid]
        assert (line["status"], line["model"], line["version"], line["key_id"]) == (200, "clf", 1, "0123abcd")
        assert line["duration_ms"] > 0
    assert KEY not in server.output()

    # OpenMetrics when the scraper asks for it.
    openmetrics = requests.get(
        f"{server.url}/metrics",
        headers={**AUTH, "Accept": "application/openmetrics-text; version=1.0.0"},
        timeout=10,
    )
    assert openmetrics.headers["Content-Type"].startswith("application/openmetrics-text")
    assert openmetrics.text.rstrip().endswith("# EOF")
    # A key is needed (the server is not set to public metrics).
    assert requests.get(f"{server.url}/metrics", timeout=10).status_code == 401

    # The sampled prediction log holds what was sent and answered (sample 1: every request).
    def logged_entries() -> list[dict[str, Any]]:
        response = requests.get(
            f"{server.url}/v1/models/clf/predictions?limit=1000", headers=AUTH, timeout=10
        )
        assert response.status_code == 200, response.text
        entries: list[dict[str, Any]] = response.json()["entries"]
        return entries if len(entries) >= 60 else []

    entries = wait_for(logged_entries)
    by_id = {e["request_id"]: e for e in entries}
    for rid, predictions in answers[:5]:
        assert by_id[rid]["outputs"]["predictions"] == predictions
        assert by_id[rid]["inputs"]["instances"] == records(batches[int(rid.split("-")[1])])


def predict_in_chunks(server: Server, frame: pd.DataFrame, size: int = 100) -> None:
    for first in range(0, len(frame), size):
        requests.post(
            f"{server.url}/v1/models/clf/predict",
            json={"instances": records(frame.iloc[first : first + size])},
            headers=AUTH,
            timeout=30,
        ).raise_for_status()


def test_drift_is_flagged_on_shifted_inputs_only(
    server: Server, model: tuple[Pipeline, pd.DataFrame]
) -> None:
    _, frame = model
    reference = frame.iloc[:3000]
    put = requests.put(
        f"{server.url}/v1/models/clf/versions/1/reference",
        data=reference.to_csv(index=False),
        headers={**AUTH, "Content-Type": "text/csv"},
        timeout=30,
    )
    assert put.status_code == 200, put.text
    assert put.json()["rows"] == 3000
    time.sleep(11)  # each worker trusts what it read of the reference for up to 10 s

    def drift() -> dict[str, Any]:
        response = requests.get(f"{server.url}/v1/models/clf/drift", headers=AUTH, timeout=10)
        assert response.status_code == 200, response.text
        report: dict[str, Any] = response.json()
        return report

    unshifted = frame.iloc[3000:4000]  # the same distribution, rows the reference never saw
    predict_in_chunks(server, unshifted)
    report = wait_for(lambda: (r := drift())["rows"] >= 1000 and r)
    assert report, drift()
    assert report["status"] == "ok"
    assert report["reference"]["source"] == "upload"
    assert not report["drifting"], report["columns"]

    shifted = frame.iloc[4000:5000].copy()
    shifted["x2"] += shifted["x2"].std()  # one column moves by a standard deviation
    predict_in_chunks(server, shifted)
    report = wait_for(lambda: (r := drift())["rows"] >= 2000 and r)
    assert report, drift()
    flagged = {c["name"] for c in report["columns"] if c["drifting"]}
    assert flagged == {"x2"}, report["columns"]
    # The gauges say so too (each worker reads them at most every 15 s; either may answer).
    steady = ("wharf_drift_drifting", (("column", "x0"), ("model", "clf"), ("version", "1")))
    moved = ("wharf_drift_drifting", (("column", "x2"), ("model", "clf"), ("version", "1")))
    found = wait_for(lambda: (f := metrics(server)).get(moved) == 1 and f, 20)
    assert found, "the x2 drift gauge did not reach 1 within 20 s"
    assert found[steady] == 0  # the series is there, and says no
