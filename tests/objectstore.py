"""A real S3 API for tests: moto's standalone server on loopback, and settings that use it.

``s3_server`` starts one server per test session; ``s3_settings`` gives each test a fresh bucket
and the :class:`~wharf.settings.Settings` keyword arguments that store artifacts in it.
:func:`wharf_env` turns such arguments into the ``WHARF_*`` variables a ``wharf`` process reads.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
import requests
from pydantic import SecretStr

READY_SECONDS = 60
STOP_SECONDS = 10
REGION = "us-east-1"
ACCESS_KEY_ID = "testing-access-key"
SECRET_ACCESS_KEY = "testing-secret-key"
"""Dummy credentials: moto checks none, but the AWS SDK signs every request with some."""
PREFIX = "wharf"


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _start(log: Path) -> tuple[subprocess.Popen[bytes], str]:
    """moto's server on a free loopback port, returned once it answers; fails the test if it does not."""
    port = _free_port()
    endpoint = f"http://127.0.0.1:{port}"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "--host", "127.0.0.1", "--port", str(port)],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    deadline = time.monotonic() + READY_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"moto's server exited with {process.returncode}:\n{log.read_text(errors='replace')}")
        try:
            requests.get(f"{endpoint}/moto-api/", timeout=2)
            return process, endpoint
        except requests.ConnectionError:
            time.sleep(0.2)
    _stop(process)
    pytest.fail(f"moto's server did not answer within {READY_SECONDS}s:\n{log.read_text(errors='replace')}")


def _stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(timeout=STOP_SECONDS)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The endpoint URL of a moto S3 server running for the whole session."""
    process, endpoint = _start(tmp_path_factory.mktemp("moto") / "moto.log")
    yield endpoint
    _stop(process)


def s3_client(settings: Mapping[str, Any]) -> Any:
    """A boto3 S3 client for the store that ``settings`` (keyword arguments of Settings) name."""
    import boto3

    secret = settings["s3_secret_access_key"]
    return boto3.session.Session(
        aws_access_key_id=settings["s3_access_key_id"],
        aws_secret_access_key=secret.get_secret_value() if isinstance(secret, SecretStr) else secret,
        region_name=settings["s3_region"],
    ).client("s3", endpoint_url=settings["s3_endpoint_url"])


def bucket_of(settings: Mapping[str, Any]) -> tuple[str, str]:
    """``(bucket, prefix)`` of the ``s3://`` URL in ``settings["artifacts"]``."""
    bucket, _, prefix = str(settings["artifacts"]).removeprefix("s3://").partition("/")
    return bucket, prefix


@pytest.fixture
def s3_settings(tmp_path: Path, s3_server: str) -> dict[str, Any]:
    """Settings keyword arguments storing artifacts in a new, empty bucket of ``s3_server``, with a
    home in ``tmp_path``; nothing else, so other settings keep their defaults unless a test adds them."""
    settings: dict[str, Any] = {
        "home": tmp_path / "home",
        "artifacts": f"s3://wharf-test-{uuid.uuid4().hex[:20]}/{PREFIX}",
        "s3_endpoint_url": s3_server,
        "s3_region": REGION,
        "s3_access_key_id": ACCESS_KEY_ID,
        "s3_secret_access_key": SecretStr(SECRET_ACCESS_KEY),
    }
    s3_client(settings).create_bucket(Bucket=bucket_of(settings)[0])
    return settings


def wharf_env(settings: Mapping[str, Any]) -> dict[str, str]:
    """The ``WHARF_*`` environment variables that set ``settings`` (keyword arguments of Settings)
    in another process: secrets revealed, booleans as ``true``/``false``, lists and dicts as JSON."""
    env = {}
    for name, value in settings.items():
        if value is None:
            continue
        if isinstance(value, SecretStr):
            text = value.get_secret_value()
        elif isinstance(value, bool):
            text = "true" if value else "false"
        elif isinstance(value, list | tuple | dict):
            text = json.dumps(value)
        else:
            text = str(value)
        env[f"WHARF_{name.upper()}"] = text
    return env
