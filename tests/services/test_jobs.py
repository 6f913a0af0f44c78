"""The jobs service without a worker: submission checks, cancel rules, and recovery of orphaned jobs."""

from __future__ import annotations

import socket
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import update

from wharf.errors import Conflict, InvalidInput, JobNotFound
from wharf.services.jobs import STALE_SECONDS, Jobs, model_name_for
from wharf.settings import Settings
from wharf.storage import MetadataStore
from wharf.storage.jobs import JobRow


@pytest.fixture
def store(tmp_path: Path) -> Iterator[MetadataStore]:
    store = MetadataStore(f"sqlite:///{tmp_path / 'wharf.db'}")
    yield store
    store.close()


@pytest.fixture
def jobs(store: MetadataStore, tmp_path: Path) -> Jobs:
    # job_workers=0: this process only queues, so no worker starts in these tests.
    settings = Settings(home=tmp_path, job_workers=0)
    return Jobs(store.jobs, settings, validate={"train": lambda body: {**body, "checked": True}})


def dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def test_submit_stores_what_the_validator_returns(jobs: Jobs) -> None:
    job = jobs.submit({"kind": "train", "dataset": 1})
    assert job.spec == {"kind": "train", "dataset": 1, "checked": True}
    assert jobs.get(job.id) == job


@pytest.mark.parametrize(
    ("body", "field"),
    [([1, 2], "body"), ("train", "body"), ({"kind": "score"}, "kind"), ({"kind": None}, "kind")],
)
def test_submit_refuses_what_no_validator_takes(jobs: Jobs, body: Any, field: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        jobs.submit(body)
    assert caught.value.field == field
    assert jobs.recent() == []


@pytest.mark.parametrize("job_id", [0, -1, 5, 2**31, 10**30])
def test_unknown_jobs_are_not_found(jobs: Jobs, job_id: int) -> None:
    with pytest.raises(JobNotFound):
        jobs.get(job_id)


def test_a_finished_job_cannot_be_cancelled(jobs: Jobs) -> None:
    job = jobs.submit({"kind": "train"})
    assert jobs.cancel(job.id).state == "cancelled"
    with pytest.raises(Conflict, match="already cancelled"):
        jobs.cancel(job.id)


def test_list_refuses_an_unknown_state(jobs: Jobs) -> None:
    with pytest.raises(InvalidInput, match="done"):
        jobs.recent("done")


def test_recover_fails_orphans_and_leaves_live_jobs_alone(jobs: Jobs, store: MetadataStore) -> None:
    host = socket.gethostname()
    orphan, live, elsewhere, silent = (jobs.submit({"kind": "train"}).id for _ in range(4))
    for job_id, owner in [
        (orphan, f"{host}:{dead_pid()}"),  # this host, server and worker gone
        (live, f"{host}:{jobs.owner.rpartition(':')[2]}"),  # this very process: alive
        (elsewhere, "another-host:1"),  # another replica, heartbeating
        (silent, "another-host:2"),  # another replica, silent for too long
    ]:
        claimed = store.jobs.claim_next(owner)
        assert claimed is not None and claimed.id == job_id
    store.jobs.set_worker(orphan, dead_pid())
    long_ago = datetime.now(UTC) - timedelta(seconds=STALE_SECONDS + 5)
    with store.writing() as session:
        session.execute(update(JobRow).where(JobRow.id == silent).values(heartbeat_at=long_ago))

    assert sorted(jobs.recover()) == sorted([orphan, silent])
    states = {job.id: (job.state, job.error) for job in jobs.recent()}
    assert states[live][0] == states[elsewhere][0] == "running"
    assert states[orphan][0] == states[silent][0] == "failed"
    assert "stopped before it finished" in (states[orphan][1] or "")


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("houses.csv", "houses"),
        ("My data (v2).xlsx", "My-data-v2"),
        ("...", "dataset-7"),
        ("x" * 300, "x" * 128),
    ],
)
def test_model_names_from_dataset_names(name: str, expected: str) -> None:
    assert model_name_for(name, 7) == expected
