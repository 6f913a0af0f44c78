"""Shared fixtures: settings in a temporary home, the app, its client, the CLI runner."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from flask import Flask
from flask.testing import FlaskClient

from wharf import Settings, create_app
from wharf.services import Services


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No WHARF_* variable of the developer's shell leaks into a test."""
    for key in list(os.environ):
        if key.startswith("WHARF_"):
            monkeypatch.delenv(key)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    # Most tests upload joblib files over HTTP; tests/http/test_upload_safety.py checks the default.
    return Settings(home=tmp_path / "home", refresh_seconds=0, allow_pickle_uploads=True)


@pytest.fixture
def app(settings: Settings) -> Iterator[Flask]:
    app = create_app(settings)
    app.config["TESTING"] = True
    yield app
    app.extensions["wharf"].close()


@pytest.fixture
def services(app: Flask) -> Services:
    return app.extensions["wharf"]  # type: ignore[no-any-return]


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()
