"""Fixtures of the HTTP tests: models trained once per session, apps that serve them."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from httpcases import Trained, register, train_all

from auth import ADMIN_KEY
from wharf import Settings, create_app
from wharf.services import Services


@pytest.fixture(scope="session")
def trained(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Trained]:
    """iris (numeric classifier), iris_imputed (nullable), iris_constant (a second version),
    reviews (text) and houses (float, int and string columns, a regressor)."""
    return train_all(tmp_path_factory.mktemp("trained"))


@pytest.fixture
def served(services: Services, trained: dict[str, Trained]) -> dict[str, Trained]:
    """Every trained model but iris_constant registered once, as version 1 of its own name."""
    for model in trained.values():
        if model.name != "iris_constant":
            register(services, model)
    return trained


@pytest.fixture
def make_client(tmp_path: Path, trained: dict[str, Trained]) -> Iterator[Callable[..., FlaskClient]]:
    """``make_client(max_rows=3)``: a client of a fresh app with those settings, serving iris."""
    apps: list[Flask] = []

    def make(**changes: Any) -> FlaskClient:
        changes.setdefault("rate_limits", {})
        settings = Settings(
            home=tmp_path / f"home-{len(apps)}", refresh_seconds=0, admin_key=ADMIN_KEY, **changes
        )
        app = create_app(settings)
        apps.append(app)
        register(app.extensions["wharf"], trained["iris"])
        client = app.test_client()
        client.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {ADMIN_KEY}"
        return client

    yield make
    for app in apps:
        app.extensions["wharf"].close()
