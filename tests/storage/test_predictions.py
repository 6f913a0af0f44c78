"""The prediction log table on SQLite and PostgreSQL: entries newest first per model, filtered by
version and time, counted, pruned by age, and deleted with their model."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from wharf.storage import MetadataStore
from wharf.storage import predictions as module
from wharf.storage.predictions import PredictionRecord, PredictionTable

T0 = datetime(2025, 1, 2, 3, 4, 5, 123456, tzinfo=UTC)


@pytest.fixture
def table(database_url: str) -> Iterator[PredictionTable]:
    store = MetadataStore(database_url)
    yield store.predictions
    store.close()


def entry(minutes: float, model: str = "iris", version: int = 1, **changes: Any) -> dict[str, Any]:
    return {
        "at": T0 + timedelta(minutes=minutes),
        "model": model,
        "version": version,
        "request_id": f"req-{minutes}",
        "key_id": "0a1b2c3d",
        "inputs": {"instances": [[5.1, 3.5, 1.4, 0.2]], "n": minutes},
        "outputs": {"predictions": ["setosa"], "model": model, "version": version},
        **changes,
    }


def ns(records: list[PredictionRecord]) -> list[Any]:
    """Which of :func:`entry`'s entries ``records`` are (their minute)."""
    return [record.inputs["n"] for record in records]


def test_entries_round_trip(table: PredictionTable) -> None:
    assert table.add_many([entry(0)]) == 1
    [found] = table.recent("iris")
    assert found.at == T0 and found.at.tzinfo is not None
    assert (found.model, found.version, found.request_id, found.key_id) == ("iris", 1, "req-0", "0a1b2c3d")
    assert found.inputs == {"instances": [[5.1, 3.5, 1.4, 0.2]], "n": 0}
    assert found.outputs == {"predictions": ["setosa"], "model": "iris", "version": 1}
    assert table.recent("iris", limit=1) == [found]


def test_json_of_every_shape_and_no_key(table: PredictionTable) -> None:
    table.add_many(
        [
            entry(0, inputs="a,b\n1,2\n", request_id=None, key_id=None),
            entry(
                1, inputs=[1, None, "é", {"x": [True]}], outputs={"truncated": True, "bytes": 9, "head": "{"}
            ),
        ]
    )
    second, first = table.recent("iris")
    assert (first.inputs, first.request_id, first.key_id) == ("a,b\n1,2\n", None, None)
    assert second.inputs == [1, None, "é", {"x": [True]}]
    assert second.outputs == {"truncated": True, "bytes": 9, "head": "{"}


def test_nothing_to_add(table: PredictionTable) -> None:
    assert table.add_many([]) == 0
    assert table.count("iris") == 0


def test_text_longer_than_its_column_is_cut(table: PredictionTable) -> None:
    table.add_many([entry(0, model="m" * 300, request_id="r" * 300, key_id="k" * 20)])
    [found] = table.recent("m" * 256)
    assert (len(found.model), len(found.request_id or ""), len(found.key_id or "")) == (256, 128, 8)


def test_naive_times_are_utc_and_others_are_converted(table: PredictionTable) -> None:
    paris = timezone(timedelta(hours=1))
    table.add_many(
        [entry(0, at=T0.replace(tzinfo=None)), entry(1, at=(T0 + timedelta(minutes=1)).astimezone(paris))]
    )
    assert [e.at for e in table.recent("iris")] == [T0 + timedelta(minutes=1), T0]
    since = (T0 + timedelta(seconds=30)).astimezone(paris)
    assert [e.at for e in table.recent("iris", since=since)] == [T0 + timedelta(minutes=1)]
    assert [e.at for e in table.recent("iris", until=since.replace(tzinfo=None) - timedelta(hours=1))] == [T0]


def test_newest_first_filtered_and_paged(table: PredictionTable) -> None:
    # Written out of time order, as several workers' batches are: read back by time, not by id.
    table.add_many([entry(3), entry(1, version=2), entry(0), entry(2, version=2)])
    table.add_many([entry(5, model="houses"), entry(4)])
    assert ns(table.recent("iris")) == [4, 3, 2, 1, 0]
    assert ns(table.recent("iris", version=2)) == [2, 1]
    assert ns(table.recent("iris", version=3)) == []
    assert ns(table.recent("houses")) == [5]
    assert table.recent("nothing") == []

    start, end = T0 + timedelta(minutes=1), T0 + timedelta(minutes=3)
    assert ns(table.recent("iris", since=start)) == [4, 3, 2, 1]  # since: inclusive
    assert ns(table.recent("iris", until=end)) == [2, 1, 0]  # until: exclusive
    assert ns(table.recent("iris", since=start, until=end, version=2)) == [2, 1]
    assert ns(table.recent("iris", limit=2, offset=1)) == [3, 2]
    assert table.recent("iris", offset=5) == []

    assert table.count("iris") == 5
    assert table.count("iris", version=2) == 2
    assert table.count("iris", since=start, until=end) == 2
    assert table.count("houses") == 1
    assert table.count("nothing") == 0


def test_entries_of_one_time_come_newest_id_first(table: PredictionTable) -> None:
    table.add_many([entry(0, request_id="first"), entry(0, request_id="second")])
    assert [e.request_id for e in table.recent("iris")] == ["second", "first"]


def test_prune_deletes_what_is_older_in_chunks(
    table: PredictionTable, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(module, "PRUNE_CHUNK", 3)
    table.add_many([entry(n) for n in range(10)] + [entry(n, model="houses") for n in range(3)])
    assert table.prune(T0 + timedelta(minutes=7)) == 10  # 7 of iris, 3 of houses: four chunks
    assert ns(table.recent("iris")) == [9, 8, 7]
    assert table.count("houses") == 0
    assert table.prune(T0 + timedelta(minutes=7)) == 0
    assert table.prune(T0 + timedelta(days=1)) == 3
    assert table.count("iris") == 0
