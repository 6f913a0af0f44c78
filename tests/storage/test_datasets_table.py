"""The datasets table on SQLite and PostgreSQL: records, the unique digest, deletes."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy.exc import IntegrityError

from concurrency import at_once
from wharf.storage import MetadataStore
from wharf.storage.datasets import DatasetTable

PROFILE = {"rows": 2, "columns": [{"name": "x", "kind": "numeric", "dtype": "float64", "missing": 0}]}


def fields(**changes: Any) -> dict[str, Any]:
    sha256 = changes.pop("sha256", "ab" * 32)
    base: dict[str, Any] = {
        "name": "houses",
        "filename": "houses.csv",
        "format": "csv",
        "sha256": sha256,
        "artifact": f"sha256/{sha256[:2]}/{sha256}",
        "size": 1234,
        "rows": 2,
        "columns": 1,
        "profile": PROFILE,
    }
    return {**base, **changes}


@pytest.fixture
def table(database_url: str) -> Any:
    store = MetadataStore(database_url)
    yield store.datasets
    store.close()


def test_a_dataset_round_trips(table: DatasetTable) -> None:
    before = datetime.now(UTC)
    added = table.add(**fields())
    assert added.created
    assert (added.id, added.name, added.format, added.rows, added.columns) == (1, "houses", "csv", 2, 1)
    assert added.profile == PROFILE
    found = table.get(added.id)
    assert found is not None
    assert found.created is False  # only the storing call says it stored
    assert found == replace(added, created=False)
    assert found.created_at.tzinfo is not None
    assert before <= found.created_at <= datetime.now(UTC)
    assert table.find_by_sha256("ab" * 32) == found
    assert table.find_by_sha256("cd" * 32) is None
    assert table.get(2) is None


def test_the_same_digest_is_one_dataset(table: DatasetTable) -> None:
    first = table.add(**fields())
    again = table.add(**fields(name="other name", filename="other.json", format="json"))
    assert (again.id, again.name, again.created) == (first.id, "houses", False)
    assert [r.id for r in table.list()] == [first.id]


def test_concurrent_adds_of_one_table_make_one_row(table: DatasetTable) -> None:
    records = at_once(lambda: table.add(**fields()), 4)
    assert len({r.id for r in records}) == 1
    assert sum(r.created for r in records) == 1
    assert len(table.list()) == 1


def test_list_and_delete(table: DatasetTable) -> None:
    ids = [table.add(**fields(sha256=digit * 64, name=f"d{digit}")).id for digit in "123"]
    assert [r.id for r in table.list()] == ids
    deleted = table.delete(ids[1])
    assert deleted is not None and deleted.name == "d2"
    assert table.delete(ids[1]) is None
    assert [r.id for r in table.list()] == [ids[0], ids[2]]
    assert table.add(**fields(sha256="4" * 64)).id == ids[2] + 1  # ids are not reused


def test_artifact_in_use(table: DatasetTable) -> None:
    record = table.add(**fields())
    assert table.artifact_in_use(record.artifact)
    assert not table.artifact_in_use("sha256/cd/" + "cd" * 32)
    table.delete(record.id)
    assert not table.artifact_in_use(record.artifact)


def test_a_failed_write_leaves_no_row(table: DatasetTable) -> None:
    with pytest.raises(IntegrityError):
        table.add(**fields(name=None))  # NOT NULL: fails inside the transaction
    assert table.list() == []
    assert table.add(**fields()).created
