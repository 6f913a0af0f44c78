"""Shared fixtures: settings in a temporary home, the app, its client, the CLI runner."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner
from flask import Flask
from flask.testing import FlaskClient
from sklearn import datasets
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler

from auth import ADMIN_KEY
from objectstore import s3_server, s3_settings  # noqa: F401
from postgres import pg_url  # noqa: F401
from wharf import Settings, create_app
from wharf.services import Services


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No WHARF_* variable of the developer's shell leaks into a test."""
    for key in list(os.environ):
        if key.startswith("WHARF_"):
            monkeypatch.delenv(key)


@pytest.fixture(scope="session")
def iris() -> tuple[Pipeline, pd.DataFrame]:
    """A scaler + logistic regression pipeline fitted on a DataFrame, labels as species names."""
    X, y = datasets.load_iris(return_X_y=True, as_frame=True)
    labels = datasets.load_iris().target_names[y]
    return make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000)).fit(X, labels), X


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    # Auth is on, as in production, with this run's admin key (admins may upload joblib files);
    # no rate limits: tests/http/test_security_routes.py checks keys, roles and limits.
    return Settings(
        home=tmp_path / "home", refresh_seconds=0, admin_key=ADMIN_KEY, key_cache_seconds=0, rate_limits={}
    )


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
    client = app.test_client()
    client.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {ADMIN_KEY}"
    return client


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()
