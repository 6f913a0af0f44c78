"""The metadata database every storage test runs on: a SQLite file, and a fresh PostgreSQL database."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty database's URL, once for each backend wharf supports."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'wharf.db'}"
    return str(request.getfixturevalue("pg_url"))
