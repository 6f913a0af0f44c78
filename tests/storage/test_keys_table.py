"""The API keys table on SQLite and PostgreSQL: no secrets, conditional writes, one bootstrap key."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from concurrency import at_once
from wharf.storage import MetadataStore
from wharf.storage.keys import KeyRecord, KeyTable

DIGEST = "ab" * 32


@pytest.fixture
def table(database_url: str) -> Iterator[KeyTable]:
    store = MetadataStore(database_url)
    yield store.keys
    store.close()


def test_a_key_round_trips_without_its_digest(table: KeyTable) -> None:
    expires = datetime.now(UTC) + timedelta(days=1)
    added = table.add(
        "0a1b2c3d", DIGEST, "trainer", models=["b", "a", "b"], name="ci", created_by="cli", expires_at=expires
    )
    assert added is not None
    assert table.get("0a1b2c3d") == added
    assert (added.id, added.role, added.models, added.name, added.created_by) == (
        "0a1b2c3d",
        "trainer",
        ("a", "b"),
        "ci",
        "cli",
    )
    assert added.expires_at == expires and added.created_at.tzinfo is not None
    assert (added.revoked_at, added.last_used_at) == (None, None)
    assert not hasattr(added, "digest")
    assert table.credential("0a1b2c3d") == (added, DIGEST)
    assert table.get("ffffffff") is None and table.credential("ffffffff") is None


def test_a_taken_id_is_refused_and_the_first_key_kept(table: KeyTable) -> None:
    assert table.add("0a1b2c3d", DIGEST, "admin") is not None
    assert table.add("0a1b2c3d", "cd" * 32, "reader") is None
    found = table.credential("0a1b2c3d")
    assert found is not None and found[0].role == "admin" and found[1] == DIGEST
    assert table.count() == 1


def test_states_and_listing(table: KeyTable) -> None:
    now = datetime.now(UTC)
    for key_id in ("00000001", "00000002", "00000003"):
        table.add(key_id, DIGEST, "reader")
    first = table.revoke("00000002")
    assert first is not None and first.revoked and first.revoked_at is not None
    again = table.revoke("00000002")
    assert again is not None and again.revoked_at == first.revoked_at  # revoking twice keeps the first time
    assert table.revoke("ffffffff") is None
    assert [key.id for key in table.list()] == ["00000001", "00000002", "00000003"]
    assert [key.id for key in table.list(include_revoked=False)] == ["00000001", "00000003"]
    assert table.count() == 3

    expired = KeyRecord("x", "reader", None, "", "cli", now, expires_at=now - timedelta(seconds=1))
    assert expired.expired() and not expired.active() and not expired.revoked
    assert not again.active() and table.get("00000001").active()  # type: ignore[union-attr]


def test_touch_writes_at_most_once_per_interval(table: KeyTable) -> None:
    table.add("0a1b2c3d", DIGEST, "reader")
    now = datetime.now(UTC)
    assert table.touch("0a1b2c3d", now, 60)
    assert not table.touch("0a1b2c3d", now + timedelta(seconds=30), 60)
    assert table.get("0a1b2c3d").last_used_at == now  # type: ignore[union-attr]
    later = now + timedelta(seconds=61)
    assert table.touch("0a1b2c3d", later, 60)
    assert table.get("0a1b2c3d").last_used_at == later  # type: ignore[union-attr]
    assert not table.touch("ffffffff", later, 60)


def test_add_if_none_adds_only_the_first_key(table: KeyTable) -> None:
    first = table.add_if_none("0a1b2c3d", DIGEST, "admin", name="bootstrap")
    assert first is not None and (first.role, first.name, first.created_by) == (
        "admin",
        "bootstrap",
        "bootstrap",
    )
    assert table.add_if_none("11111111", DIGEST, "admin") is None
    table.revoke("0a1b2c3d")
    assert table.add_if_none("22222222", DIGEST, "admin") is None  # a revoked key still counts
    assert table.count() == 1


def test_servers_starting_together_add_one_first_key(database_url: str) -> None:
    stores = [MetadataStore(database_url) for _ in range(6)]
    try:
        pairs = iter([(store, f"{i:08x}") for i, store in enumerate(stores)])

        def bootstrap() -> KeyRecord | None:
            store, key_id = next(pairs)
            return store.keys.add_if_none(key_id, DIGEST, "admin")

        added = [record for record in at_once(bootstrap, 6) if record is not None]
        assert len(added) == 1
        assert stores[0].keys.list() == added
    finally:
        for store in stores:
            store.close()
