"""``wharf serve`` as a user runs it: a real Granian server on loopback, driven over HTTP."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import orjson
import pandas as pd
import pytest
import requests
from openapi_spec_validator import validate
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler

pytestmark = pytest.mark.e2e

WHARF = Path(sys.executable).with_name("wharf")
READY_SECONDS = 60
STOP_SECONDS = 30


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Server:
    process: subprocess.Popen[bytes]
    url: str
    log: Path

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self) -> int:
        """SIGTERM, as a process supervisor stops it; the exit status."""
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=STOP_SECONDS)


BANNER = re.compile(r"serving \d+ model\(s\) at (http://\S+)")


def start(
    home: Path, *args: str, log: Path, port: int | None = None, env: dict[str, str] | None = None
) -> Server:
    """``wharf --home HOME serve ARGS... --port PORT``, returned once /readyz answers 200.

    :param port: default: a free port found here; 0: the one the server picks, read from its banner.
    :param env: WHARF_* settings; default: auth off (these tests are about serving; keys, TLS and
        limits through a real server are tests/e2e/test_security.py's).
    """
    port = free_port() if port is None else port
    settings = {"WHARF_AUTH": "false"} if env is None else env
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("WHARF_")}, **settings}
    with log.open("wb") as out:
        process = subprocess.Popen(
            [str(WHARF), "--home", str(home), "serve", *args, "--port", str(port)],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
        )
    server = Server(process, f"http://127.0.0.1:{port}", log)
    deadline = time.monotonic() + READY_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"wharf serve exited with {process.returncode}:\n{server.output()}")
        if port == 0:
            found = BANNER.search(server.output())
            if found is None:
                time.sleep(0.2)
                continue
            server.url = found[1]
        try:
            if requests.get(f"{server.url}/readyz", timeout=2).status_code == 200:
                return server
        except requests.ConnectionError:
            pass
        time.sleep(0.2)
    process.kill()
    process.wait()
    pytest.fail(f"wharf serve was not ready within {READY_SECONDS}s:\n{server.output()}")


def stopped(server: Server) -> None:
    if server.process.poll() is None:
        server.process.kill()
        server.process.wait()


@pytest.fixture(scope="module")
def model_file(tmp_path_factory: pytest.TempPathFactory, iris: tuple[Pipeline, pd.DataFrame]) -> Path:
    path = tmp_path_factory.mktemp("model") / "iris.joblib"
    joblib.dump(iris[0], path)
    return path


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, model_file: Path) -> Iterator[Server]:
    folder = tmp_path_factory.mktemp("serve")
    server = start(folder / "home", str(model_file), log=folder / "serve.log")
    yield server
    stopped(server)


def rows(X: pd.DataFrame) -> list[dict[str, float]]:
    return [{str(k): float(v) for k, v in row.items()} for _, row in X.iterrows()]


def test_predictions_equal_the_model(server: Server, iris: tuple[Pipeline, pd.DataFrame]) -> None:
    model, X = iris
    sample = X.iloc[::10]
    response = requests.post(
        f"{server.url}/v1/models/iris/predict", json={"instances": rows(sample)}, timeout=10
    )
    assert response.status_code == 200
    body = response.json()
    assert (body["model"], body["version"]) == ("iris", 1)
    assert body["predictions"] == model.predict(sample).tolist()

    # Rows as lists of numbers: the body wharf parses straight into an array (numericrows).
    for envelope in ("instances", "inputs"):
        plain = requests.post(
            f"{server.url}/v1/models/iris/predict", json={envelope: sample.to_numpy().tolist()}, timeout=10
        )
        assert plain.status_code == 200, plain.text
        assert plain.json()["predictions"] == body["predictions"]

    csv = requests.post(
        f"{server.url}/v1/models/iris/predict?probabilities=true",
        data=sample.to_csv(index=False),
        headers={"Content-Type": "text/csv"},
        timeout=10,
    ).json()
    assert csv["predictions"] == body["predictions"]
    assert csv["classes"] == model.classes_.tolist()
    np.testing.assert_allclose(csv["probabilities"], model.predict_proba(sample), rtol=1e-12)


def test_openapi_is_valid(server: Server) -> None:
    response = requests.get(f"{server.url}/openapi.json", timeout=10)
    assert response.status_code == 200
    spec = response.json()
    validate(spec)
    assert "/v1/models/{name}/predict" in spec["paths"]


class Assets(HTMLParser):
    """The URLs a page loads: scripts, stylesheets, icons, images."""

    def __init__(self) -> None:
        super().__init__()
        self.scripts: list[str] = []
        self.styles: list[str] = []
        self.others: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        if tag == "script" and found.get("src"):
            self.scripts.append(found["src"] or "")
        elif tag == "link" and found.get("href"):
            rel = found.get("rel") or ""
            (self.styles if "stylesheet" in rel else self.others).append(found["href"] or "")
        elif tag in ("img", "iframe") and found.get("src"):
            self.others.append(found["src"] or "")


def test_docs_load_everything_from_the_server(server: Server) -> None:
    response = requests.get(f"{server.url}/docs", timeout=10)
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/html")
    page = response.text
    assert not re.search(r"https?://|(?:src|href)=\"//", page), "the page must not load from elsewhere"
    assets = Assets()
    assets.feed(page)
    assert assets.scripts and assets.styles
    kinds = [("javascript", url) for url in assets.scripts] + [("text/css", url) for url in assets.styles]
    kinds += [("", url) for url in assets.others]
    for kind, url in kinds:
        assert url.startswith("/"), url
        asset = requests.get(server.url + url, timeout=10)
        assert asset.status_code == 200, url
        assert kind in asset.headers["Content-Type"], (url, asset.headers["Content-Type"])
        assert len(asset.content) > 0
    bundle = [url for url in assets.scripts if "swagger-ui-bundle" in url]
    assert bundle
    assert len(requests.get(server.url + bundle[0], timeout=10).content) > 100_000  # the real Swagger UI


@pytest.mark.parametrize(
    ("body", "headers", "status", "slug"),
    [
        (b'{"instances": [', {"Content-Type": "application/json"}, 400, "malformed-body"),
        (b'{"instances": [{"petal size": 1}]}', {"Content-Type": "application/json"}, 422, "invalid-input"),
        (b"<rows/>", {"Content-Type": "application/xml"}, 415, "unsupported-media-type"),
    ],
)
def test_bad_requests_get_problems(
    server: Server, body: bytes, headers: dict[str, str], status: int, slug: str
) -> None:
    response = requests.post(f"{server.url}/v1/models/iris/predict", data=body, headers=headers, timeout=10)
    assert response.status_code == status
    assert response.headers["Content-Type"] == "application/problem+json"
    problem: dict[str, Any] = response.json()
    assert problem["type"] == f"urn:wharf:problem:{slug}"
    assert problem["status"] == status
    assert problem["title"] and problem["detail"]
    assert problem["instance"] == "/v1/models/iris/predict"


def chunks(body: bytes, size: int = 65536) -> Iterator[bytes]:
    """``body`` in pieces: requests sends a generator with Transfer-Encoding: chunked."""
    for start in range(0, len(body), size):
        yield body[start : start + size]


def test_chunked_bodies_are_read_whole_and_bounded(
    server: Server, iris: tuple[Pipeline, pd.DataFrame]
) -> None:
    model, X = iris
    url = f"{server.url}/v1/models/iris/predict"
    body = orjson.dumps({"instances": rows(X)})
    json_type = {"Content-Type": "application/json"}
    response = requests.post(url, data=chunks(body, 1000), headers=json_type, timeout=10)
    assert response.status_code == 200
    assert response.json()["predictions"] == model.predict(X).tolist()

    limit = 16 * 1024 * 1024  # the default WHARF_MAX_BODY_BYTES
    huge = b'{"instances": [' + b" " * limit + b"]}"
    for data in (chunks(huge), huge):  # without a length, then with one
        response = requests.post(url, data=data, headers=json_type, timeout=30)
        assert response.status_code == 413
        detail = f"The request body is larger than this route's limit of {limit} bytes."
        assert response.json()["detail"] == detail


def test_unknown_routes_get_problems(server: Server) -> None:
    response = requests.get(f"{server.url}/v2/nothing", timeout=10)
    assert response.status_code == 404
    assert response.headers["Content-Type"] == "application/problem+json"


def test_a_production_server_that_stops_cleanly(
    tmp_path: Path, model_file: Path, iris: tuple[Pipeline, pd.DataFrame]
) -> None:
    server = start(tmp_path / "home", str(model_file), "--threads", "4", log=tmp_path / "serve.log")
    try:
        assert requests.get(f"{server.url}/healthz", timeout=10).json() == {"status": "ok"}
        output = server.output()
        assert "Starting granian" in output
        assert "Started worker-1" in output
        assert "development server" not in output.lower()
        assert "Running on http" not in output  # werkzeug's banner
        assert f"serving 1 model(s) at {server.url}" in output
        # The access log is written in batches: a line still held at a graceful stop is written.
        last = requests.post(
            f"{server.url}/v1/models/iris/predict",
            json={"instances": rows(iris[1].head(1))},
            headers={"X-Request-ID": "last-words"},
            timeout=10,
        )
        assert last.status_code == 200
        started = time.monotonic()
        assert server.stop() == 0
        assert time.monotonic() - started < STOP_SECONDS
        assert "Shutting down granian" in server.output()
        assert '"request_id":"last-words"' in server.output()
    finally:
        stopped(server)


def test_serving_the_same_file_again_adds_no_version(
    tmp_path: Path, model_file: Path, iris: tuple[Pipeline, pd.DataFrame]
) -> None:
    home = tmp_path / "home"
    for run in range(2):
        server = start(home, str(model_file), log=tmp_path / f"serve-{run}.log")
        try:
            model = requests.get(f"{server.url}/v1/models/iris", timeout=10).json()
            assert (model["latest_version"], model["versions"]) == (1, 1)
            registered = "registered" in server.output()
            assert registered == (run == 0), server.output()
            assert server.stop() == 0
        finally:
            stopped(server)

    # A changed file under the same name is a new version.
    changed = tmp_path / "iris.joblib"
    model, X = iris
    joblib.dump(
        make_pipeline(StandardScaler(), LogisticRegression(C=0.1, max_iter=1000)).fit(X, model.predict(X)),
        changed,
    )
    server = start(home, str(changed), log=tmp_path / "serve-changed.log")
    try:
        assert f"registered {changed} as iris:2" in server.output()
        assert requests.get(f"{server.url}/v1/models/iris", timeout=10).json()["latest_version"] == 2
        assert server.stop() == 0
    finally:
        stopped(server)


def test_several_workers_serve_a_registered_name(
    tmp_path: Path, model_file: Path, iris: tuple[Pipeline, pd.DataFrame]
) -> None:
    home = tmp_path / "home"
    first = start(home, str(model_file), log=tmp_path / "first.log")
    try:
        assert first.stop() == 0
    finally:
        stopped(first)
    server = start(home, "iris", "--workers", "2", log=tmp_path / "workers.log")
    try:
        model, X = iris
        expected = model.predict(X.head(3)).tolist()
        with requests.Session() as session:
            for _ in range(20):
                response = session.post(
                    f"{server.url}/v1/models/iris/predict", json={"instances": rows(X.head(3))}, timeout=10
                )
                assert response.status_code == 200
                assert response.json()["predictions"] == expected
        assert len(re.findall(r"Started worker-\d", server.output())) == 2
        assert server.stop() == 0
    finally:
        stopped(server)


def test_port_zero_serves_on_the_port_it_announces(tmp_path: Path, model_file: Path) -> None:
    server = start(tmp_path / "home", str(model_file), log=tmp_path / "serve.log", port=0)
    try:
        assert server.url != "http://127.0.0.1:0"
        output = server.output()
        assert f"Listening at: {server.url}\n" in output  # Granian's own line agrees with the banner
        assert f"API docs: {server.url}/docs" in output
        assert f"dashboard: {server.url}/ui/" in output

        # The banner's "try it" command works as printed.
        command = re.search(r"curl -s -H 'Content-Type: application/json' -d '(.+)' (\S+)", output)
        assert command is not None, output
        assert command[2] == f"{server.url}/v1/models/iris/predict"
        response = requests.post(
            command[2], data=command[1], headers={"Content-Type": "application/json"}, timeout=10
        )
        assert response.status_code == 200, response.text
        assert len(response.json()["predictions"]) == 1
        assert server.stop() == 0
    finally:
        stopped(server)


POLL_SECONDS = 10
"""How long another server may take to see a change: it re-reads a version's record every
refresh_seconds (2 by default)."""


def test_a_fast_twin_set_on_one_server_reaches_another(
    tmp_path: Path, model_file: Path, iris: tuple[Pipeline, pd.DataFrame]
) -> None:
    model, X = iris
    sample = X.iloc[::10]
    body = {"instances": rows(sample)}
    home = tmp_path / "home"
    first = start(home, str(model_file), log=tmp_path / "first.log")
    second = None
    try:
        second = start(home, "iris", log=tmp_path / "second.log")  # another replica on the same registry
        version_1 = "/v1/models/iris/versions/1"

        def answer(server: Server) -> dict[str, Any]:
            response = requests.post(f"{server.url}{version_1}/predict", json=body, timeout=10)
            assert response.status_code == 200, response.text
            result: dict[str, Any] = response.json()
            assert result["version"] == 1
            assert result["predictions"] == model.predict(sample).tolist()
            return result

        def until(server: Server, twin: int | None) -> None:
            """Poll ``server`` until it reports ``twin`` answering version 1; fail after POLL_SECONDS."""
            started = time.monotonic()
            while answer(server).get("answered_by") != twin:
                assert time.monotonic() - started < POLL_SECONDS, f"{server.url} still not answered by {twin}"
                time.sleep(0.2)

        assert "answered_by" not in answer(second)  # loaded, answering itself

        converted = requests.post(f"{first.url}{version_1}/convert", json={"to": "onnx"}, timeout=60)
        assert converted.status_code == 201, converted.text
        assert converted.headers["Location"].endswith("/v1/models/iris/versions/2")
        assert converted.json()["parity"]["passed"] is True
        fast = requests.put(f"{first.url}{version_1}/fast", timeout=10)
        assert fast.status_code == 200, fast.text
        assert fast.json()["answered_by"] == 2

        assert answer(first)["answered_by"] == 2  # the server that was told: at once
        until(second, 2)
        assert "loaded iris:1 (answered by v2, onnx)" in second.output()

        assert requests.delete(f"{first.url}{version_1}/fast", timeout=10).status_code == 200
        assert "answered_by" not in answer(first)
        until(second, None)

        assert first.stop() == 0
        assert second.stop() == 0
    finally:
        stopped(first)
        if second is not None:
            stopped(second)
