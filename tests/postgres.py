"""PostgreSQL for the tests: a fresh, uniquely named database for each test that asks for one.

The server is the one at 127.0.0.1:5432 with trust authentication for the user ``postgres`` (``make
services`` starts it when it is down). Each database is dropped with ``FORCE`` afterwards, so a test
that leaves connections open does not leave its database behind.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
import pytest

HOST, PORT, USER = "127.0.0.1", 5432, "postgres"
PREFIX = "wharf_test_"


def _admin() -> psycopg.Connection:
    try:
        return psycopg.connect(host=HOST, port=PORT, user=USER, dbname="postgres", autocommit=True)
    except psycopg.OperationalError as exc:
        raise RuntimeError(
            f"No PostgreSQL at {HOST}:{PORT} taking user {USER!r} without a password ({exc}); "
            "`make services` starts the one the tests use."
        ) from exc


def create_database() -> str:
    """Create an empty database; returns its SQLAlchemy URL (psycopg 3 driver)."""
    name = PREFIX + uuid.uuid4().hex[:12]
    with _admin() as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    return f"postgresql+psycopg://{USER}@{HOST}:{PORT}/{name}"


def drop_database(url: str) -> None:
    """Drop a database made by :func:`create_database`, closing whatever connections it still has."""
    name = url.rsplit("/", 1)[1]
    assert name.startswith(PREFIX), url
    with _admin() as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextmanager
def fresh_database() -> Iterator[str]:
    """A new database's URL for the block, dropped at its end."""
    url = create_database()
    try:
        yield url
    finally:
        drop_database(url)


@pytest.fixture
def pg_url() -> Iterator[str]:
    """``postgresql+psycopg://postgres@127.0.0.1:5432/<fresh database>``, dropped after the test."""
    with fresh_database() as url:
        yield url
