"""The audit log table on SQLite and PostgreSQL: entries newest first, filtered by key and action family."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from wharf.storage import MetadataStore
from wharf.storage.audit import AuditTable


@pytest.fixture
def table(database_url: str) -> Iterator[AuditTable]:
    store = MetadataStore(database_url)
    yield store.audit
    store.close()


def test_an_entry_round_trips(table: AuditTable) -> None:
    added = table.add(
        "models.register",
        "iris:3",
        201,
        key_id="0a1b2c3d",
        role="trainer",
        remote_addr="10.0.0.7",
        detail={"format": "onnx", "size": 123},
    )
    assert table.recent() == [added]
    assert (added.action, added.target, added.status, added.key_id, added.role, added.remote_addr) == (
        "models.register",
        "iris:3",
        201,
        "0a1b2c3d",
        "trainer",
        "10.0.0.7",
    )
    assert added.detail == {"format": "onnx", "size": 123}
    assert added.at.tzinfo is not None


def test_an_entry_without_a_key_or_detail(table: AuditTable) -> None:
    added = table.add("jobs.cancel", "job 7", 200)
    assert (added.key_id, added.role, added.remote_addr, added.detail) == (None, None, None, {})


def test_text_longer_than_its_column_is_cut(table: AuditTable) -> None:
    added = table.add("a" * 100, "t" * 1000, 200, remote_addr="r" * 100)
    assert (len(added.action), len(added.target), len(added.remote_addr or "")) == (64, 256, 64)


def test_newest_first_by_key_and_action_family(table: AuditTable) -> None:
    table.add("models.register", "iris:1", 201, key_id="00000001")
    table.add("models.delete", "iris:1", 200, key_id="00000002")
    table.add("keys.create", "key 00000003", 201, key_id="00000001")
    table.add("modelsx.register", "x:1", 201, key_id="00000001")
    table.add("models", "odd", 200)
    table.add("axb.c", "no underscore", 200)
    table.add("a_b.c", "underscore", 200)
    assert [e.target for e in table.recent()] == [
        "underscore",
        "no underscore",
        "odd",
        "x:1",
        "key 00000003",
        "iris:1",
        "iris:1",
    ]
    assert [e.action for e in table.recent(action="models")] == ["models", "models.delete", "models.register"]
    assert [e.action for e in table.recent(action="models.delete")] == ["models.delete"]
    assert [e.action for e in table.recent(key_id="00000001", action="models")] == ["models.register"]
    assert table.recent(action="a%") == []
    assert [e.target for e in table.recent(action="a_b")] == ["underscore"]  # LIKE's wildcards are literal
    assert [e.target for e in table.recent(limit=2, offset=2)] == ["odd", "x:1"]
    assert table.count() == 7
    assert table.count(key_id="00000001") == 3
    assert table.count(action="models") == 3
