"""``wharf serve`` with auth on, as an operator starts it: the admin key printed once, keys over
HTTP, HTTPS with a certificate made here, and an admin key chosen through ``WHARF_ADMIN_KEY``."""

from __future__ import annotations

import os
import re
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from test_serve import READY_SECONDS, WHARF, Server, free_port, start, stopped

from wharf.services.security import new_key

pytestmark = pytest.mark.e2e

PRINTED_KEY = re.compile(r"wharf_[0-9a-f]{8}_[A-Za-z0-9_-]{32,}")


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and localhost, and its key: ``(certfile, keyfile)``."""
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        [
            *"openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 1".split(),
            *["-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"],
            *["-keyout", str(key), "-out", str(cert)],
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


def start_https(home: Path, cert: Path, key: Path, log: Path, env: dict[str, str]) -> Server:
    """``wharf serve --certfile --keyfile``, returned once /readyz answers 200 over HTTPS.

    (``start`` waits for plain HTTP, which a TLS port never answers.)
    """
    port = free_port()
    environ = {**{k: v for k, v in os.environ.items() if not k.startswith("WHARF_")}, **env}
    args = ["--certfile", str(cert), "--keyfile", str(key), "--port", str(port)]
    with log.open("wb") as out:
        process = subprocess.Popen(
            [str(WHARF), "--home", str(home), "serve", *args],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=environ,
        )
    server = Server(process, f"https://127.0.0.1:{port}", log)
    deadline = time.monotonic() + READY_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"wharf serve exited with {process.returncode}:\n{server.output()}")
        try:
            if requests.get(f"{server.url}/readyz", timeout=2, verify=str(cert)).status_code == 200:
                return server
        except requests.ConnectionError:
            pass
        time.sleep(0.2)
    stopped(server)
    pytest.fail(f"wharf serve was not ready within {READY_SECONDS}s:\n{server.output()}")


@pytest.fixture
def servers() -> Iterator[list[Server]]:
    """Servers a test starts, killed at its end whatever happened."""
    started: list[Server] = []
    yield started
    for server in started:
        stopped(server)


def test_the_first_start_prints_an_admin_key_once_and_it_works(tmp_path: Path, servers: list[Server]) -> None:
    home = tmp_path / "home"
    first = start(home, log=tmp_path / "first.log", env={})
    servers.append(first)
    printed = PRINTED_KEY.findall(first.output())
    assert len(printed) == 1, first.output()
    key = printed[0]
    assert f"export WHARF_KEY={key}" in first.output()

    response = requests.get(f"{first.url}/v1/models", timeout=10)
    assert response.status_code == 401
    assert response.headers["Content-Type"] == "application/problem+json"
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    wrong = requests.get(f"{first.url}/v1/models", headers=bearer(new_key()[1]), timeout=10)
    assert wrong.status_code == 401
    for headers in (bearer(key), {"X-API-Key": key}):
        response = requests.get(f"{first.url}/v1/models", headers=headers, timeout=10)
        assert response.status_code == 200, response.text
        assert response.json() == {"models": [], "total": 0}
        assert response.headers["X-Content-Type-Options"] == "nosniff"
        assert "Strict-Transport-Security" not in response.headers
    assert first.stop() == 0

    second = start(home, log=tmp_path / "second.log", env={})
    servers.append(second)
    assert PRINTED_KEY.search(second.output()) is None, second.output()
    assert "WHARF_KEY=" not in second.output()
    assert requests.get(f"{second.url}/v1/keys", headers=bearer(key), timeout=10).status_code == 200


def test_https_with_an_admin_key_from_the_environment(
    tmp_path: Path, certificate: tuple[Path, Path], servers: list[Server]
) -> None:
    cert, keyfile = certificate
    _, admin = new_key()
    server = start_https(
        tmp_path / "home", cert, keyfile, tmp_path / "tls.log", env={"WHARF_ADMIN_KEY": admin}
    )
    servers.append(server)
    assert f"at {server.url}" in server.output()
    assert PRINTED_KEY.search(server.output()) is None, "the operator's key is the registry's admin key"

    response = requests.get(f"{server.url}/v1/keys", headers=bearer(admin), timeout=10, verify=str(cert))
    assert response.status_code == 200, response.text
    assert [k["name"] for k in response.json()["keys"]] == ["WHARF_ADMIN_KEY"]
    hsts = response.headers["Strict-Transport-Security"]
    assert int(re.search(r"max-age=(\d+)", hsts)[1]) >= 180 * 24 * 3600  # type: ignore[index]
    refused = requests.get(f"{server.url}/v1/keys", timeout=10, verify=str(cert))
    assert refused.status_code == 401
    assert "Strict-Transport-Security" in refused.headers
    health = requests.get(f"{server.url}/healthz", timeout=10, verify=str(cert))
    assert health.status_code == 200 and "Strict-Transport-Security" in health.headers

    with pytest.raises(requests.exceptions.SSLError):  # a client that does not trust the certificate
        requests.get(f"{server.url}/healthz", timeout=10)
    plain = server.url.replace("https://", "http://")
    with pytest.raises(requests.ConnectionError):
        requests.get(f"{plain}/healthz", timeout=10)
