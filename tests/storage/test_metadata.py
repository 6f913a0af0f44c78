"""The metadata store on SQLite and PostgreSQL: version numbering, transactions, deletes."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import inspect
from sqlalchemy.exc import IntegrityError

from concurrency import at_once
from wharf.storage import MetadataStore

SIGNATURE = {
    "inputs": [{"name": "x", "dtype": "float64", "nullable": False}],
    "output": {"kind": "regression"},
}


def fields(**changes: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "format": "joblib",
        "signature": SIGNATURE,
        "sha256": "ab" * 32,
        "size": 123,
        "artifact": "sha256/ab/" + "ab" * 32,
        "filename": "model.joblib",
        "description": "a model",
        "tags": {"team": "ml"},
        "library_versions": {"python": "3.11.9"},
        "warnings": [],
        "extra": {"owner": "ana"},
    }
    return {**base, **changes}


@pytest.fixture
def store(database_url: str) -> Any:
    store = MetadataStore(database_url)
    yield store
    store.close()


def test_creates_its_tables(store: MetadataStore) -> None:
    assert set(inspect(store.engine).get_table_names()) == {
        "models",
        "model_versions",
        "datasets",
        "jobs",
        "api_keys",
        "audit_log",
        "prediction_log",
        "monitor_minutes",
        "drift_minutes",
        "drift_references",
        "model_aliases",
        "registry_state",
        "alembic_version",
    }


def test_a_version_round_trips(store: MetadataStore) -> None:
    before = datetime.now(UTC)
    added = store.add_version("iris", **fields())
    found = store.version("iris", 1)
    assert found == added
    assert found is not None
    assert (found.name, found.version, found.format) == ("iris", 1, "joblib")
    assert found.signature == SIGNATURE
    assert found.tags == {"team": "ml"}
    assert found.extra == {"owner": "ana"}
    assert found.created_at.tzinfo is not None
    assert before <= found.created_at <= datetime.now(UTC)


def test_versions_are_contiguous_and_never_reused(store: MetadataStore) -> None:
    numbers = [store.add_version("iris", **fields()).version for _ in range(3)]
    assert numbers == [1, 2, 3]
    assert store.add_version("other", **fields()).version == 1  # counters are per model

    deleted = store.delete_version("iris", 2)
    assert deleted is not None and deleted.version == 2
    assert store.add_version("iris", **fields()).version == 4
    store.delete_version("iris", 4)  # even the newest number is not handed out again
    assert store.add_version("iris", **fields()).version == 5
    assert [v.version for v in store.versions("iris")] == [1, 3, 5]
    assert store.version("iris").version == 5  # type: ignore[union-attr]
    assert store.model_names() == ["iris", "other"]


def test_a_failed_write_leaves_no_row_and_no_gap(store: MetadataStore) -> None:
    with pytest.raises(IntegrityError):
        store.add_version("iris", **fields(format=None))  # NOT NULL: fails inside the transaction
    assert not store.model_exists("iris")
    assert store.model_names() == []
    assert store.add_version("iris", **fields()).version == 1
    with pytest.raises(IntegrityError):
        store.add_version("iris", **fields(sha256=None))
    assert store.add_version("iris", **fields()).version == 2


def test_delete_missing_version(store: MetadataStore) -> None:
    assert store.delete_version("iris", 1) is None
    store.add_version("iris", **fields())
    assert store.delete_version("iris", 2) is None
    assert [v.version for v in store.versions("iris")] == [1]


def test_delete_model(store: MetadataStore) -> None:
    for _ in range(2):
        store.add_version("iris", **fields())
    store.add_version("other", **fields())
    deleted = store.delete_model("iris")
    assert [r.version for r in deleted] == [1, 2]
    assert not store.model_exists("iris")
    assert store.versions("iris") == []
    assert store.model_names() == ["other"]
    assert store.delete_model("iris") == []


def test_a_model_lives_while_it_has_versions_but_its_numbers_are_never_reused(
    store: MetadataStore,
) -> None:
    store.add_version("iris", **fields())
    store.delete_version("iris", 1)
    assert not store.model_exists("iris")
    assert store.model_names() == []
    assert store.version("iris") is None
    assert store.add_version("iris", **fields()).version == 2
    store.delete_model("iris")
    assert store.add_version("iris", **fields()).version == 3


def test_warnings_and_artifact_use(store: MetadataStore) -> None:
    store.add_version("iris", **fields(artifact="sha256/aa/one"))
    store.add_version("iris", **fields(artifact="sha256/bb/two"))
    store.set_warnings("iris", 2, ["made with another version"])
    assert store.version("iris", 2).warnings == ["made with another version"]  # type: ignore[union-attr]
    assert store.version("iris", 1).warnings == []  # type: ignore[union-attr]
    assert store.artifact_in_use("sha256/aa/one")
    store.delete_version("iris", 1)
    assert not store.artifact_in_use("sha256/aa/one")
    assert store.artifact_in_use("sha256/bb/two")


def test_two_stores_share_one_database(database_url: str) -> None:
    first, second = MetadataStore(database_url), MetadataStore(database_url)
    try:
        first.add_version("iris", **fields())
        assert second.add_version("iris", **fields()).version == 2
        assert [v.version for v in first.versions("iris")] == [1, 2]
    finally:
        first.close()
        second.close()


def test_concurrent_writers_get_distinct_contiguous_numbers(store: MetadataStore) -> None:
    count = 20
    numbers = at_once(lambda: store.add_version("iris", **fields()).version, count)
    assert sorted(numbers) == list(range(1, count + 1))
