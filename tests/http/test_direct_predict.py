"""The direct predict path (wharf.http.hotpath) answers exactly as Flask's view and hooks do.

Each request is sent twice to one application: through its WSGI callable (where the direct path
takes plain prediction requests) and straight to Flask's (``DirectPredict.flask``). Status,
headers, body and access log line must be equal, and a spy on Flask's callable shows which
requests the direct path took and which it left to Flask.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from flask import Flask
from httpcases import Trained, register
from werkzeug.test import Client, TestResponse

from auth import ADMIN_KEY
from wharf import Settings, create_app
from wharf.http.hotpath import DirectPredict
from wharf.services import Services

ORIGIN = "https://app.example"
LIMIT = 4096
IRIS = "/v1/models/iris/predict"
"""iris version 2 answers here (a constant model); version 1 at ``iris@production``."""
FIRST = "/v1/models/iris@production/predict"


@pytest.fixture
def app(tmp_path: Path, trained: dict[str, Trained]) -> Iterator[Flask]:
    settings = Settings(
        home=tmp_path / "home",
        refresh_seconds=0,
        admin_key=ADMIN_KEY,
        key_cache_seconds=0,
        rate_limits={"address": "100000/minute"},
        cors_origins=[ORIGIN],
        max_body_bytes=LIMIT,
    )
    app = create_app(settings)
    services: Services = app.extensions["wharf"]
    register(services, trained["iris"])
    register(services, trained["iris_constant"], name="iris")
    services.registry.set_alias("iris", "production", 1)
    register(services, trained["houses"])
    yield app
    services.close()


@pytest.fixture
def services(app: Flask) -> Services:
    return app.extensions["wharf"]  # type: ignore[no-any-return]


class Pair:
    """Sends one request through the direct path and through Flask alone, and compares."""

    def __init__(self, app: Flask, capfd: pytest.CaptureFixture[str]) -> None:
        self.direct: DirectPredict = app.wsgi_app  # type: ignore[assignment]
        assert isinstance(self.direct, DirectPredict)
        self.flask_calls: list[str] = []
        flask = self.direct.flask

        def spy(environ: dict[str, Any], start_response: Any) -> Any:
            self.flask_calls.append(environ["PATH_INFO"])
            return flask(environ, start_response)

        self.direct.flask = spy
        self.via_direct = Client(app)
        self.via_flask = Client(flask)
        self.capfd = capfd
        self.access_log = app.extensions["wharf"].access_log

    def send(self, path: str, *, taken: bool, **request: Any) -> TestResponse:
        """Send ``request`` both ways; assert equal answers; ``taken``: the direct path answers it."""
        request.setdefault("headers", {}).setdefault("X-Request-ID", "req-1")
        if "Authorization" not in request["headers"]:
            request["headers"]["Authorization"] = f"Bearer {ADMIN_KEY}"
        self.capfd.readouterr()
        before = len(self.flask_calls)
        direct = self.via_direct.post(path, **request)
        direct_log = self._log_line()
        assert (len(self.flask_calls) == before) is taken, f"{path}: taken by the direct path is not {taken}"
        flask = self.via_flask.post(path, **request)
        flask_log = self._log_line()
        assert direct.status == flask.status
        assert direct.get_data() == flask.get_data()
        assert sorted(direct.headers.to_wsgi_list()) == sorted(flask.headers.to_wsgi_list())
        assert direct_log == flask_log
        return direct

    def _log_line(self) -> dict[str, Any]:
        self.access_log.flush()
        lines = [line for line in self.capfd.readouterr().out.splitlines() if '"wharf.access"' in line]
        assert len(lines) == 1, lines
        line: dict[str, Any] = json.loads(lines[0])
        for varies in ("time", "duration_ms"):
            assert line.pop(varies) is not None
        return line


@pytest.fixture
def pair(app: Flask, capfd: pytest.CaptureFixture[str]) -> Pair:
    return Pair(app, capfd)


def test_predictions_equal_the_models_and_flasks(pair: Pair, trained: dict[str, Trained]) -> None:
    iris = trained["iris"]
    answer = pair.send(FIRST, taken=True, json={"instances": iris.lists()})
    assert answer.status_code == 200
    assert answer.json is not None
    assert answer.json["predictions"] == iris.model.predict(iris.rows).tolist()
    assert answer.headers["X-Request-ID"] == "req-1"

    proba = pair.send(FIRST + "?probabilities=true", taken=True, json={"instances": iris.records()})
    assert proba.json is not None
    assert np.allclose(proba.json["probabilities"], iris.model.predict_proba(iris.rows))

    houses = trained["houses"]
    answer = pair.send("/v1/models/houses/predict", taken=True, json={"instances": houses.records()})
    assert answer.json is not None
    assert np.allclose(answer.json["predictions"], houses.model.predict(houses.rows))


@pytest.mark.parametrize(
    ("path", "request_", "taken", "status"),
    [
        (
            IRIS,
            {
                "data": "sepal_length,sepal_width,petal_length,petal_width\n5.1,3.5,1.4,0.2\n",
                "content_type": "text/csv",
            },
            True,
            200,
        ),
        (
            IRIS,
            {
                "json": {"instances": [[5.1, 3.5, 1.4, 0.2]]},
                "content_type": "application/json; charset=utf-8",
            },
            True,
            200,
        ),
        ("/v1/models/iris/versions/2/predict", {"json": {"instances": [[5.1, 3.5, 1.4, 0.2]]}}, True, 200),
        ("/v1/models/iris@production/predict", {"json": {"instances": [[5.1, 3.5, 1.4, 0.2]]}}, True, 200),
        (IRIS + "?probabilities=1&probabilities=0", {"json": {"instances": [[1, 2, 3, 4]]}}, True, 422),
        (IRIS + "?other=x&probabilities=", {"json": {"instances": [[1, 2, 3, 4]]}}, True, 200),
        (IRIS, {"data": b"{not json", "content_type": "application/json"}, True, 400),
        (IRIS, {"data": b"x" * (LIMIT + 1), "content_type": "application/json"}, True, 413),
        (IRIS, {"data": "1,2", "content_type": "text/plain"}, True, 415),
        (IRIS, {"json": {"instances": [[1, 2, 3]]}}, True, 422),
        (IRIS, {"json": {"instances": [[1, 2, 3, "x"]]}}, True, 422),
        (IRIS, {"json": {"rows": [[1, 2, 3, 4]]}}, True, 400),
        ("/v1/models/nope/predict", {"json": {"instances": [[1, 2, 3, 4]]}}, True, 404),
        ("/v1/models/iris/versions/9/predict", {"json": {"instances": [[1, 2, 3, 4]]}}, True, 404),
        ("/v1/models/iris@staging/predict", {"json": {"instances": [[1, 2, 3, 4]]}}, True, 404),
        ("/v1/models/iris@Bad!/predict", {"json": {"instances": [[1, 2, 3, 4]]}}, True, 422),
        # Left to Flask, unread: a percent-encoded query, an alias in a versioned URL, version 0,
        # a non-ASCII name, a trailing slash, another method.
        # (werkzeug's test client sends an empty body without a length; Granian ends every body)
        (IRIS, {"data": b"", "content_type": "application/json"}, False, 400),
        (
            IRIS,
            {
                "data": b"",
                "content_type": "application/json",
                "environ_overrides": {"wsgi.input_terminated": True},
            },
            True,
            400,
        ),
        (
            IRIS,
            {
                "data": b"x" * (LIMIT + 1),
                "content_type": "application/json",
                "environ_overrides": {"wsgi.input_terminated": True, "CONTENT_LENGTH": ""},
            },
            True,
            413,
        ),
        (IRIS + "?probabilities=%74rue", {"json": {"instances": [[1, 2, 3, 4]]}}, False, 200),
        (
            "/v1/models/iris@production/versions/1/predict",
            {"json": {"instances": [[1, 2, 3, 4]]}},
            False,
            422,
        ),
        ("/v1/models/iris/versions/0/predict", {"json": {"instances": [[1, 2, 3, 4]]}}, False, 404),
        ("/v1/models/irís/predict", {"json": {"instances": [[1, 2, 3, 4]]}}, False, 404),
        (IRIS + "/", {"json": {"instances": [[1, 2, 3, 4]]}}, False, 404),
    ],
)
def test_answers_equal_flasks(
    pair: Pair, path: str, request_: dict[str, Any], taken: bool, status: int
) -> None:
    assert pair.send(path, taken=taken, **request_).status_code == status


@pytest.mark.parametrize("key", ["", "Bearer nope", f"Bearer {ADMIN_KEY[:-1]}x"])
def test_refused_keys(pair: Pair, key: str) -> None:
    answer = pair.send(IRIS, taken=True, json={"instances": [[1, 2, 3, 4]]}, headers={"Authorization": key})
    assert answer.status_code == 401
    assert answer.headers["WWW-Authenticate"] == 'Bearer realm="wharf"'


def test_roles_and_model_limits(pair: Pair, services: Services) -> None:
    _, reader = services.keys.create("reader")
    _, limited = services.keys.create("predictor", models=["houses"])
    _, allowed = services.keys.create("predictor", models=["iris"])
    body = {"json": {"instances": [[1, 2, 3, 4]]}}
    for key, status in ((reader, 403), (limited, 403), (allowed, 200)):
        answer = pair.send(IRIS, taken=True, headers={"Authorization": f"Bearer {key}"}, **body)
        assert answer.status_code == status
    answer = pair.send(IRIS, taken=True, headers={"X-API-Key": allowed}, **body)
    assert answer.status_code == 200


def test_headers_cors_https_and_request_ids(pair: Pair) -> None:
    body = {"json": {"instances": [[1, 2, 3, 4]]}}
    answer = pair.send(IRIS, taken=True, headers={"Origin": ORIGIN}, **body)
    assert answer.headers["Access-Control-Allow-Origin"] == ORIGIN
    assert answer.headers["Vary"] == "Origin"
    answer = pair.send(IRIS, taken=True, headers={"Origin": "https://evil.example"}, **body)
    assert "Access-Control-Allow-Origin" not in answer.headers
    answer = pair.send(IRIS, taken=True, base_url="https://localhost", **body)
    assert answer.headers["Strict-Transport-Security"].startswith("max-age=")
    assert answer.headers["X-Content-Type-Options"] == "nosniff"
    # A request id that is not a sane token is replaced (each path makes its own).
    direct = pair.via_direct.post(
        IRIS, headers={"X-Request-ID": "a b", "Authorization": f"Bearer {ADMIN_KEY}"}, **body
    )
    assert direct.status_code == 200
    assert len(direct.headers["X-Request-ID"]) == 24


def test_rate_limits_count_once(tmp_path: Path, trained: dict[str, Trained]) -> None:
    """A request the direct path answers is counted once against the limits, as through Flask."""
    settings = Settings(home=tmp_path / "limited", admin_key=ADMIN_KEY, rate_limits={"admin": "3/minute"})
    app = create_app(settings)
    try:
        register(app.extensions["wharf"], trained["iris"])
        client = Client(app)
        taken_by_flask: list[str] = []
        direct = app.wsgi_app
        assert isinstance(direct, DirectPredict)
        flask = direct.flask
        direct.flask = lambda environ, start: taken_by_flask.append("flask") or flask(environ, start)
        headers = {"Authorization": f"Bearer {ADMIN_KEY}"}
        statuses = [
            client.post(IRIS, json={"instances": [[1, 2, 3, 4]]}, headers=headers).status_code
            for _ in range(4)
        ]
        assert statuses == [200, 200, 200, 429]
        refused = client.post(IRIS, json={"instances": [[1, 2, 3, 4]]}, headers=headers)
        assert refused.headers["Retry-After"].isdigit()
        assert refused.mimetype == "application/problem+json"
        assert taken_by_flask == []  # every one answered by the direct path
    finally:
        app.extensions["wharf"].close()


def test_metrics_count_direct_answers(pair: Pair, services: Services) -> None:
    pair.send(IRIS, taken=True, json={"instances": [[1, 2, 3, 4]]})
    pair.send(IRIS, taken=True, json={"instances": [[1, 2, 3]]})
    requests = services.telemetry.requests
    assert requests[("predict", "POST", "200", "iris", "2")] == 2  # once each way
    assert requests[("predict", "POST", "422", "iris", "2")] == 2
    assert services.telemetry.errors[("invalid-input", "422")] == 2


def test_an_application_of_your_own_keeps_its_hooks(tmp_path: Path, trained: dict[str, Trained]) -> None:
    """Off by default in the extension: the application's own hooks see predictions."""
    from wharf.flask import Wharf

    app = Flask("mine")
    seen: list[str] = []
    app.before_request(lambda: seen.append("hook") and None)
    settings = Settings(home=tmp_path / "mine", admin_key=ADMIN_KEY, rate_limits={})
    Wharf(app, settings)
    try:
        register(app.extensions["wharf"], trained["iris"])
        assert not isinstance(app.wsgi_app, DirectPredict)
        answer = app.test_client().post(
            IRIS, json={"instances": [[1, 2, 3, 4]]}, headers={"Authorization": f"Bearer {ADMIN_KEY}"}
        )
        assert answer.status_code == 200
        assert seen == ["hook"]
    finally:
        app.extensions["wharf"].close()


def test_mounted_under_a_prefix(tmp_path: Path, trained: dict[str, Trained]) -> None:
    """In an application of your own with ``direct_predict=True``: under the prefix only."""
    from wharf.flask import Wharf

    app = Flask("mine")
    settings = Settings(home=tmp_path / "mounted", admin_key=ADMIN_KEY, rate_limits={})
    Wharf(app, settings, url_prefix="/ml", direct_predict=True)
    try:
        register(app.extensions["wharf"], trained["iris"])
        direct = app.wsgi_app
        assert isinstance(direct, DirectPredict)
        calls: list[str] = []
        flask = direct.flask
        direct.flask = lambda environ, start: calls.append(environ["PATH_INFO"]) or flask(environ, start)
        client = Client(app)
        headers = {"Authorization": f"Bearer {ADMIN_KEY}"}
        iris = trained["iris"]
        answer = client.post("/ml" + IRIS, json={"instances": iris.lists()}, headers=headers)
        assert answer.status_code == 200
        assert answer.json is not None
        assert answer.json["predictions"] == iris.model.predict(iris.rows).tolist()
        assert calls == []
        assert client.post(IRIS, json={"instances": iris.lists()}, headers=headers).status_code == 404
        assert calls == [IRIS]  # outside the prefix: Flask's (unknown path)
    finally:
        app.extensions["wharf"].close()
