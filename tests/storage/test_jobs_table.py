"""The jobs table on SQLite and PostgreSQL: claiming, finishing and cancelling are conditional."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from concurrency import at_once
from wharf.storage import MetadataStore
from wharf.storage.jobs import JobTable


@pytest.fixture
def table(database_url: str) -> Iterator[JobTable]:
    store = MetadataStore(database_url)
    yield store.jobs
    store.close()


def test_a_job_round_trips(table: JobTable) -> None:
    job = table.add("train", {"dataset": 1, "target": "y"})
    again = table.get(job.id)
    assert again == job
    assert (job.state, job.progress, job.stage, job.spec) == (
        "queued",
        0.0,
        "queued",
        {"dataset": 1, "target": "y"},
    )
    assert job.created_at.tzinfo is not None
    assert table.get(job.id + 1) is None


def test_claims_oldest_first_and_each_job_once(database_url: str) -> None:
    stores = [MetadataStore(database_url) for _ in range(4)]
    try:
        ids = [stores[0].jobs.add("train", {"n": i}).id for i in range(20)]
        claimed: list[int] = []

        def claim_all(store: MetadataStore) -> list[int]:
            mine = []
            while (job := store.jobs.claim_next(f"host:{id(store)}")) is not None:
                mine.append(job.id)
            return mine

        counter = iter(stores)
        for got in at_once(lambda: claim_all(next(counter)), 4):
            assert got == sorted(got)  # each claimer takes the oldest queued job
            claimed += got
        assert sorted(claimed) == ids  # every job claimed, none twice
        running = stores[0].jobs.running()
        assert len(running) == 20
        assert all(job.owner and job.started_at and job.heartbeat_at for job in running)
    finally:
        for store in stores:
            store.close()


def test_a_finished_job_stays_finished(table: JobTable) -> None:
    job = table.add("train", {})
    assert not table.report(job.id, 0.5, "fitting")  # not running yet: no progress recorded
    assert table.claim_next("host:1") is not None
    assert table.report(job.id, 1.7, "fitting")
    assert table.get(job.id).progress == 1.0  # type: ignore[union-attr]  # clamped
    assert table.finish(job.id, "failed", error="boom")
    assert not table.finish(job.id, "succeeded", result={"version": 1})
    assert not table.heartbeat(job.id)
    final = table.get(job.id)
    assert final is not None
    assert (final.state, final.error, final.result, final.finished) == ("failed", "boom", None, True)


def test_cancel_stops_a_queued_job_at_once_and_flags_a_running_one(table: JobTable) -> None:
    queued = table.add("train", {})
    running = table.add("train", {})
    cancelled = table.request_cancel(queued.id)
    assert cancelled is not None and cancelled.state == "cancelled" and cancelled.finished_at is not None
    claimed = table.claim_next("host:1")
    assert claimed is not None and claimed.id == running.id  # the cancelled job is never claimed
    flagged = table.request_cancel(running.id)
    assert flagged is not None and (flagged.state, flagged.cancel_requested) == ("running", True)
    assert table.request_cancel(999) is None


def test_lists_newest_first_by_state(table: JobTable) -> None:
    ids = [table.add("train", {}).id for _ in range(5)]
    table.claim_next("host:1")
    assert [job.id for job in table.recent()] == ids[::-1]
    assert [job.id for job in table.recent("running")] == ids[:1]
    assert [job.id for job in table.recent(limit=2, offset=1)] == ids[::-1][1:3]
    assert table.count("queued") == 4
