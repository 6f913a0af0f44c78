"""Request ids, the JSON access log, ``/metrics`` parsed with prometheus_client's own parsers, and
the drift routes, through the Flask test client of an app with auth on."""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest
from flask.testing import FlaskClient
from httpcases import IRIS_COLUMNS, Trained, check_problem
from prometheus_client.openmetrics.parser import text_string_to_metric_families as openmetrics_families
from prometheus_client.parser import text_string_to_metric_families
from sklearn.datasets import load_iris

from auth import ADMIN_KEY
from wharf.services import Services, linewriter, monitor
from wharf.services.telemetry import Telemetry

IRIS = load_iris(as_frame=True).data.set_axis(IRIS_COLUMNS, axis=1)
"""The 150 iris rows, in the served model's column names."""
UNKNOWN = "nosuchmodel-7f3a"
ACCESS_FIELDS = {
    "time",
    "level",
    "logger",
    "request_id",
    "method",
    "path",
    "route",
    "status",
    "duration_ms",
    "model",
    "version",
    "key_id",
    "remote_addr",
}
GENERATED_ID = re.compile(r"[0-9a-f]{24}")


@pytest.fixture(autouse=True)
def _no_background_ticks(monkeypatch: pytest.MonkeyPatch) -> None:
    """The monitor's counting thread waits out the test: tests tick and flush it themselves."""
    monkeypatch.setattr(monitor, "TICK_SECONDS", 3600.0)


def records(frame: Any) -> list[dict[str, float]]:
    return [{k: float(v) for k, v in row.items()} for row in frame.to_dict(orient="records")]


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def scrape(
    client: FlaskClient, services: Services, **headers: str
) -> dict[tuple[str, frozenset[Any]], float]:
    """``/metrics`` parsed by prometheus_client: ``(sample name, labels) -> value``."""
    services.monitor.tick()  # class counting happens off the request path
    response = client.get("/metrics", headers=headers)
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.content_type.startswith("text/plain; version=0.0.4")
    return samples(text_string_to_metric_families(response.get_data(as_text=True)))


def samples(families: Iterable[Any]) -> dict[tuple[str, frozenset[Any]], float]:
    return {(s.name, frozenset(s.labels.items())): s.value for family in families for s in family.samples}


def value(metrics: dict[tuple[str, frozenset[Any]], float], name: str, **labels: str) -> float | None:
    return metrics.get((name, frozenset(labels.items())))


def series(metrics: dict[tuple[str, frozenset[Any]], float], name: str) -> list[tuple[dict[str, str], float]]:
    """Every sample of ``name``: its labels and value."""
    return [(dict(labels), v) for (sample, labels), v in metrics.items() if sample == name]


def access_lines(out: str) -> list[dict[str, Any]]:
    """The access log lines among what the server wrote to stdout."""
    lines = [orjson.loads(line) for line in out.splitlines() if line.startswith("{")]
    return [line for line in lines if line.get("logger") == "wharf.access"]


# -- request ids -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "sent",
    [
        "0f8fad5b-d9cb-469f-a165-70867728950e",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        "a",
        "x" * 128,
    ],
    ids=["uuid", "traceparent", "one-char", "longest"],
)
def test_a_sensible_request_id_is_echoed(client: FlaskClient, served: dict[str, Trained], sent: str) -> None:
    response = client.post(
        "/v1/models/iris/predict",
        json={"instances": served["iris"].records()},
        headers={"X-Request-ID": sent},
    )
    assert response.status_code == 200
    assert response.headers["X-Request-ID"] == sent


@pytest.mark.parametrize(
    "sent",
    ["x" * 129, "x" * 300, "has spaces", "semi;colon", 'quote"d', "ünïcödé", "<script>"],
    ids=["129-chars", "300-chars", "spaces", "semicolon", "quote", "non-ascii", "markup"],
)
def test_any_other_request_id_is_replaced(
    client: FlaskClient, served: dict[str, Trained], capfd: pytest.CaptureFixture[str], sent: str
) -> None:
    response = client.get("/v1/models/iris", headers={"X-Request-ID": sent})
    assert response.status_code == 200
    rid = response.headers["X-Request-ID"]
    assert GENERATED_ID.fullmatch(rid), rid
    out = logged(client, capfd)
    [line] = access_lines(out)
    assert line["request_id"] == rid
    assert sent not in out


@pytest.mark.parametrize(
    "sent",
    ["abc\r\nX-Injected: 1", "abc\nX-Injected: 1", "abc\r\n\r\n<html>", "ok\x00nul"],
    ids=["crlf", "lf", "response-splitting", "nul"],
)
def test_header_injection_in_a_request_id_goes_nowhere(
    client: FlaskClient, capfd: pytest.CaptureFixture[str], sent: str
) -> None:
    # Through the WSGI environ, as a lenient proxy would pass it: the test client refuses such headers.
    response = client.get("/healthz", environ_overrides={"HTTP_X_REQUEST_ID": sent})
    rid = response.headers["X-Request-ID"]
    assert GENERATED_ID.fullmatch(rid), rid
    assert "X-Injected" not in response.headers
    assert all("\n" not in v and "\r" not in v for _, v in response.headers.items())
    out = logged(client, capfd)
    assert "Injected" not in out and "<html>" not in out


def test_generated_request_ids_differ_across_processes() -> None:
    """Workers are forked from one process: each makes ids of its own."""
    from wharf.http.observe import new_request_id

    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: its first ids, then gone
        os.write(write, " ".join(new_request_id() for _ in range(3)).encode())
        os._exit(0)
    os.close(write)
    os.waitpid(pid, 0)
    child = os.read(read, 1000).decode().split()
    os.close(read)
    parent = [new_request_id() for _ in range(3)]
    assert all(GENERATED_ID.fullmatch(rid) for rid in child + parent)
    assert len(set(child + parent)) == 6
    assert {rid[:12] for rid in child}.isdisjoint({rid[:12] for rid in parent})


def test_generated_request_ids_differ(client: FlaskClient) -> None:
    ids = {client.get("/v1/models").headers["X-Request-ID"] for _ in range(20)}
    assert len(ids) == 20
    assert all(GENERATED_ID.fullmatch(rid) for rid in ids)


@pytest.mark.parametrize(
    ("method", "path", "headers", "status"),
    [
        ("GET", "/no/such/route", {}, 404),
        ("GET", f"/v1/models/{UNKNOWN}", {}, 404),
        ("DELETE", "/metrics", {}, 405),
        ("GET", "/v1/models", {"Authorization": "Bearer wrong"}, 401),
    ],
    ids=["unknown-route", "unknown-model", "wrong-method", "bad-key"],
)
def test_error_answers_carry_the_request_id(
    client: FlaskClient, method: str, path: str, headers: dict[str, str], status: int
) -> None:
    response = client.open(path, method=method, headers={"X-Request-ID": "trace-42", **headers})
    check_problem(response, status)
    assert response.headers["X-Request-ID"] == "trace-42"


def logged(client: FlaskClient, capfd: pytest.CaptureFixture[str]) -> str:
    """What the app wrote to stdout so far, its access log lines included (written in batches)."""
    client.application.extensions["wharf"].access_log.flush()
    return capfd.readouterr().out


# -- the access log ----------------------------------------------------------------------------------


def test_one_access_line_per_request_with_its_fields(
    client: FlaskClient, services: Services, served: dict[str, Trained], capfd: pytest.CaptureFixture[str]
) -> None:
    record, key = services.keys.create("predictor", name="log-test")
    capfd.readouterr()
    before = datetime.now(UTC)
    ok = client.post(
        "/v1/models/iris/predict",
        json={"instances": served["iris"].records()},
        headers={**bearer(key), "X-Request-ID": "req-1"},
    )
    missing = client.post("/v1/models/nope/predict", json={"instances": [[1, 2, 3, 4]]}, headers=bearer(key))
    unmatched = client.get("/not/a/route", headers={"X-Request-ID": "req-3"})
    after = datetime.now(UTC)
    assert (ok.status_code, missing.status_code, unmatched.status_code) == (200, 404, 404)

    services.access_log.flush()
    captured = capfd.readouterr()
    lines = access_lines(captured.out)
    assert len(lines) == 3
    assert all(set(line) == ACCESS_FIELDS for line in lines)
    first, second, third = lines

    assert {k: first[k] for k in ACCESS_FIELDS - {"time", "duration_ms"}} == {
        "level": "info",
        "logger": "wharf.access",
        "request_id": "req-1",
        "method": "POST",
        "path": "/v1/models/iris/predict",
        "route": "predict",
        "status": 200,
        "model": "iris",
        "version": 1,
        "key_id": record.id,
        "remote_addr": "127.0.0.1",
    }
    assert before - timedelta(milliseconds=1) <= datetime.fromisoformat(first["time"]) <= after
    assert isinstance(first["duration_ms"], float) and first["duration_ms"] > 0

    assert (second["status"], second["model"], second["version"], second["key_id"]) == (
        404,
        None,
        None,
        record.id,
    )
    assert second["request_id"] == missing.headers["X-Request-ID"]
    assert (third["route"], third["status"], third["key_id"], third["request_id"]) == (
        "unmatched",
        404,
        None,
        "req-3",
    )

    # No secret anywhere in what the server wrote.
    for secret in (key, ADMIN_KEY):
        assert secret not in captured.out and secret not in captured.err


def test_a_long_path_is_cut_and_the_line_stays_whole(
    client: FlaskClient, capfd: pytest.CaptureFixture[str]
) -> None:
    capfd.readouterr()
    path = "/" + "a" * 6000
    assert client.get(path).status_code == 404
    out = logged(client, capfd)
    [line] = access_lines(out)
    assert line["path"] == path[:1024]
    assert max(len(raw.encode()) + 1 for raw in out.splitlines()) <= 4096


def test_access_log_can_be_turned_off(
    make_client: Callable[..., FlaskClient], capfd: pytest.CaptureFixture[str]
) -> None:
    client = make_client(access_log=False)
    capfd.readouterr()
    assert client.get("/v1/models").status_code == 200
    assert access_lines(logged(client, capfd)) == []


# -- /metrics: access --------------------------------------------------------------------------------


def test_metrics_needs_a_reader_key(app: Any, services: Services) -> None:
    anonymous = app.test_client()
    check_problem(anonymous.get("/metrics"), 401)
    _, reader = services.keys.create("reader")
    response = anonymous.get("/metrics", headers=bearer(reader))
    assert response.status_code == 200
    assert "wharf_info" in response.get_data(as_text=True)


def test_a_key_limited_to_some_models_may_not_read_metrics(app: Any, services: Services) -> None:
    _, limited = services.keys.create("reader", models=["iris"])  # /metrics names every model
    check_problem(app.test_client().get("/metrics", headers=bearer(limited)), 403, field="key")


def test_unknown_methods_share_one_label(client: FlaskClient, services: Services) -> None:
    for i in range(5):
        client.open("/v1/models", method=f"BREW{i}")
    methods = {
        labels["method"] for labels, _ in series(scrape(client, services), "wharf_http_requests_total")
    }
    assert "other" in methods
    assert not any(method.startswith("BREW") for method in methods)


def test_access_log_lines_lost_are_counted(
    client: FlaskClient, services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert value(scrape(client, services), "wharf_access_log_dropped_lines_total") == 0
    monkeypatch.setattr(linewriter, "MAX_PENDING", 0)  # every line finds the writer's store full
    for _ in range(3):
        assert client.get("/v1/models").status_code == 200
    # The scrape's own line is logged after its answer: the three requests' lines are counted.
    assert value(scrape(client, services), "wharf_access_log_dropped_lines_total") == 3


def test_metrics_may_be_public(make_client: Callable[..., FlaskClient]) -> None:
    client = make_client(metrics_public=True)
    del client.environ_base["HTTP_AUTHORIZATION"]
    assert client.get("/metrics").status_code == 200
    check_problem(client.get("/v1/models"), 401)  # only /metrics


# -- /metrics: values --------------------------------------------------------------------------------


def test_metrics_count_predictions_as_the_model_predicts(
    client: FlaskClient, services: Services, served: dict[str, Trained]
) -> None:
    iris = served["iris"]
    batches = [IRIS.iloc[0:7], IRIS.iloc[45:105], IRIS.iloc[[3]], IRIS.iloc[100:150]]
    for rows in batches:
        response = client.post("/v1/models/iris/predict", json={"instances": records(rows)})
        assert response.status_code == 200
    proba = client.post(
        "/v1/models/iris/predict?probabilities=true", json={"instances": records(IRIS.iloc[:5])}
    )
    assert proba.status_code == 200
    sent = [*batches, IRIS.iloc[:5]]
    n, rows = len(sent), sum(len(b) for b in sent)

    metrics = scrape(client, services)
    iris_v1 = {"model": "iris", "version": "1"}
    assert (
        value(metrics, "wharf_http_requests_total", route="predict", method="POST", status="200", **iris_v1)
        == n
    )
    assert value(metrics, "wharf_predicted_rows_total", **iris_v1) == rows

    predicted = np.concatenate([iris.model.predict(b) for b in sent])
    labels, counts = np.unique(predicted, return_counts=True)
    classes = {
        labels["class"]: v
        for labels, v in series(metrics, "wharf_predicted_classes_total")
        if labels["model"] == "iris"
    }
    assert classes == {str(label): float(c) for label, c in zip(labels, counts, strict=True)}

    assert value(metrics, "wharf_http_request_duration_seconds_count", route="predict", **iris_v1) == n
    assert value(metrics, "wharf_model_batch_rows_count", **iris_v1) == n + 1  # predict_proba too
    assert value(metrics, "wharf_model_batch_rows_sum", **iris_v1) == rows + 5
    assert value(metrics, "wharf_model_predict_duration_seconds_count", **iris_v1) == n + 1
    assert value(metrics, "wharf_model_loaded", **iris_v1) == 1
    assert value(metrics, "wharf_model_load_duration_seconds_count", **iris_v1) == 1
    buckets = sorted(
        (float(labels["le"]), v)
        for labels, v in series(metrics, "wharf_model_batch_rows_bucket")
        if labels["model"] == "iris"
    )
    assert [v for _, v in buckets] == sorted(v for _, v in buckets)  # cumulative
    sizes = np.array([len(b) for b in sent] + [5])
    for bound, count in buckets:
        assert count == np.sum(sizes <= bound), bound


def test_metrics_sum_a_regressors_values(
    client: FlaskClient, services: Services, served: dict[str, Trained]
) -> None:
    houses = served["houses"]
    assert client.post("/v1/models/houses/predict", json={"instances": houses.records()}).status_code == 200
    assert (
        client.post("/v1/models/houses/predict", json={"instances": houses.records()[:2]}).status_code == 200
    )
    metrics = scrape(client, services)
    expected = np.concatenate([houses.model.predict(houses.rows), houses.model.predict(houses.rows.iloc[:2])])
    assert value(metrics, "wharf_predicted_value_count", model="houses", version="1") == expected.size
    assert value(metrics, "wharf_predicted_value_sum", model="houses", version="1") == pytest.approx(
        expected.sum()
    )
    assert not [
        labels
        for labels, _ in series(metrics, "wharf_predicted_classes_total")
        if labels["model"] == "houses"
    ]


def test_errors_are_counted_by_problem_type_and_unknown_names_stay_out(
    client: FlaskClient, services: Services, served: dict[str, Trained]
) -> None:
    bad = client.post("/v1/models/iris/predict", json={"instances": [{"sepal_length": "long"}]})
    check_problem(bad, 422)
    unknown = client.post(f"/v1/models/{UNKNOWN}/predict", json={"instances": [[1, 2, 3, 4]]})
    check_problem(unknown, 404)
    check_problem(client.get(f"/v1/models/{UNKNOWN}/versions/3"), 404)
    check_problem(client.get(f"/{UNKNOWN}"), 404)

    metrics = scrape(client, services)
    assert (
        value(metrics, "wharf_errors_total", type=bad.get_json()["type"].rpartition(":")[2], status="422")
        == 1
    )
    assert value(metrics, "wharf_errors_total", type="invalid-input", status="422") == 1
    assert value(metrics, "wharf_errors_total", type="model-not-found", status="404") == 2
    assert value(metrics, "wharf_errors_total", type="not-found", status="404") == 1
    assert (
        value(
            metrics,
            "wharf_http_requests_total",
            route="predict",
            method="POST",
            status="404",
            model="",
            version="",
        )
        == 1
    )
    assert (
        value(
            metrics,
            "wharf_http_requests_total",
            route="predict",
            method="POST",
            status="422",
            model="iris",
            version="1",
        )
        == 1
    )
    assert (
        value(
            metrics,
            "wharf_http_requests_total",
            route="unmatched",
            method="GET",
            status="404",
            model="",
            version="",
        )
        == 1
    )
    label_values = {v for _, labels in metrics for _, v in labels}
    assert not any(UNKNOWN in v for v in label_values)


def test_openmetrics_when_asked(client: FlaskClient, services: Services, served: dict[str, Trained]) -> None:
    for _ in range(3):
        assert (
            client.post("/v1/models/iris/predict", json={"instances": served["iris"].records()}).status_code
            == 200
        )
    response = client.get("/metrics", headers={"Accept": "application/openmetrics-text; version=1.0.0"})
    assert response.status_code == 200
    assert response.content_type.startswith("application/openmetrics-text")
    text = response.get_data(as_text=True)
    assert text.endswith("# EOF\n")
    metrics = samples(openmetrics_families(text))
    labels = {"route": "predict", "method": "POST", "status": "200", "model": "iris", "version": "1"}
    assert value(metrics, "wharf_http_requests_total", **labels) == 3

    plain = client.get("/metrics", headers={"Accept": "text/plain"})
    assert plain.content_type.startswith("text/plain; version=0.0.4")


def test_metrics_add_other_workers_snapshots(
    client: FlaskClient, services: Services, served: dict[str, Trained], tmp_path: Path
) -> None:
    """A second worker's snapshot in the shared folder is added to this one's live values."""
    other = Telemetry()
    other.request("predict", "POST", 200, 0.01, "iris", 1)
    other.request("predict", "POST", 200, 0.01, "iris", 1)
    other.model_call("iris", 1, 9, 0.001)
    folder = tmp_path / "workers"
    folder.mkdir()
    (folder / "1.json").write_bytes(orjson.dumps({**other.snapshot(), "pid": 1}))
    services.telemetry.folder = folder
    assert (
        client.post("/v1/models/iris/predict", json={"instances": served["iris"].records()}).status_code
        == 200
    )

    metrics = scrape(client, services)
    labels = {"route": "predict", "method": "POST", "status": "200", "model": "iris", "version": "1"}
    assert value(metrics, "wharf_http_requests_total", **labels) == 3
    assert value(metrics, "wharf_predicted_rows_total", model="iris", version="1") == 9 + len(
        served["iris"].rows
    )


# -- drift -------------------------------------------------------------------------------------------


def test_drift_without_a_reference(client: FlaskClient, served: dict[str, Trained]) -> None:
    response = client.get("/v1/models/iris/drift")
    assert response.status_code == 200
    body = response.get_json()
    assert (body["name"], body["version"], body["status"], body["rows"], body["columns"]) == (
        "iris",
        1,
        "no-reference",
        0,
        [],
    )


def test_a_reference_then_predictions_make_a_drift_report(make_client: Callable[..., FlaskClient]) -> None:
    client = make_client(drift_min_rows=100)
    services = client.application.extensions["wharf"]
    response = client.put("/v1/models/iris/versions/1/reference", json={"instances": records(IRIS)})
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.get_json() == {
        "name": "iris",
        "version": 1,
        "source": "upload",
        "rows": 150,
        "columns": IRIS_COLUMNS,
    }

    sent = [IRIS.iloc[::2], IRIS.iloc[1::3]]  # 75 + 50 rows drawn like the reference
    for rows in sent:
        assert client.post("/v1/models/iris/predict", json={"instances": records(rows)}).status_code == 200
    services.monitor.flush()

    report = client.get("/v1/models/iris/drift?version=1").get_json()
    assert report["status"] == "ok"
    assert report["rows"] == 125
    assert [c["name"] for c in report["columns"]] == IRIS_COLUMNS
    assert all(c["rows"] == 125 for c in report["columns"])
    assert report["drifting"] is False
    assert report["reference"]["rows"] == 150 and report["reference"]["source"] == "upload"
    assert client.get("/v1/models/iris/drift").get_json()["rows"] == 125


def test_a_reference_from_csv(client: FlaskClient, services: Services, served: dict[str, Trained]) -> None:
    csv = IRIS.iloc[:40].to_csv(index=False)
    response = client.put("/v1/models/iris/versions/1/reference", data=csv, content_type="text/csv")
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.get_json()["rows"] == 40
    report = client.get("/v1/models/iris/drift").get_json()
    assert report["reference"]["rows"] == 40
    assert report["status"] == "insufficient-data"


def test_a_replaced_reference_still_gives_a_drift_report(
    client: FlaskClient, services: Services, served: dict[str, Trained]
) -> None:
    """Live counts binned against the former reference must not break the report of the new one."""
    url = "/v1/models/iris/versions/1/reference"
    assert client.put(url, json={"instances": records(IRIS.iloc[[0, 50, 100, 25, 125]])}).status_code == 200
    assert (
        client.post("/v1/models/iris/predict", json={"instances": records(IRIS.iloc[:20])}).status_code == 200
    )
    services.monitor.flush()
    assert client.put(url, json={"instances": records(IRIS)}).status_code == 200

    response = client.get("/v1/models/iris/drift")
    assert response.status_code == 200, response.get_data(as_text=True)
    report = response.get_json()
    assert report["reference"]["rows"] == 150
    assert report["rows"] == 0  # the 20 rows were binned against the former reference: not mixed in
    assert (
        client.post("/v1/models/iris/predict", json={"instances": records(IRIS.iloc[:7])}).status_code == 200
    )
    services.monitor.flush()
    assert client.get("/v1/models/iris/drift").get_json()["rows"] == 7


@pytest.mark.parametrize(
    ("url", "kwargs", "status", "field"),
    [
        (
            "/v1/models/iris/versions/1/reference",
            {"json": {"instances": [[5.1, 3.5, 1.4, 0.2]]}},
            400,
            "instances",
        ),
        (
            "/v1/models/iris/versions/1/reference",
            {"json": {"instances": [{**dict.fromkeys(IRIS_COLUMNS, 1.0), "petal_width": "wide"}] * 3}},
            422,
            "instances[0].petal_width",
        ),
        ("/v1/models/iris/versions/1/reference", {"json": {"rows": []}}, 400, "rows"),
        (
            "/v1/models/iris/versions/1/reference",
            {"data": "5.1,3.5", "content_type": "text/plain"},
            415,
            None,
        ),
        ("/v1/models/iris/versions/9/reference", {"json": {"instances": [[1, 2, 3, 4]] * 3}}, 404, "version"),
        (
            f"/v1/models/{UNKNOWN}/versions/1/reference",
            {"json": {"instances": [[1, 2, 3, 4]] * 3}},
            404,
            "name",
        ),
    ],
    ids=[
        "one-row",
        "wrong-type",
        "no-instances",
        "unsupported-media-type",
        "unknown-version",
        "unknown-model",
    ],
)
def test_bad_reference_bodies_are_problems(
    client: FlaskClient,
    served: dict[str, Trained],
    url: str,
    kwargs: dict[str, Any],
    status: int,
    field: str | None,
) -> None:
    problem = check_problem(client.put(url, **kwargs), status, field=field)
    assert "field" in problem or status == 415
    assert client.get("/v1/models/iris/drift").get_json()["status"] == "no-reference"


def test_drift_of_unknown_models_and_versions(client: FlaskClient, served: dict[str, Trained]) -> None:
    check_problem(client.get(f"/v1/models/{UNKNOWN}/drift"), 404)
    check_problem(client.get("/v1/models/iris/drift?version=9"), 404)
    check_problem(client.get("/v1/models/iris/drift?version=zero"), 422, field="version")


def test_a_reader_may_read_drift_but_not_set_a_reference(
    app: Any, services: Services, served: dict[str, Trained]
) -> None:
    _, reader = services.keys.create("reader")
    anonymous = app.test_client()
    assert anonymous.get("/v1/models/iris/drift", headers=bearer(reader)).status_code == 200
    response = anonymous.put(
        "/v1/models/iris/versions/1/reference", json={"instances": records(IRIS)}, headers=bearer(reader)
    )
    check_problem(response, 403)
    check_problem(
        anonymous.put("/v1/models/iris/versions/1/reference", json={"instances": records(IRIS)}), 401
    )
