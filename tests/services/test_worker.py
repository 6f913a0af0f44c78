"""Jobs run in real worker processes: what a training job registers, and how a job whose worker
dies, runs too long or outlives its server ends."""

from __future__ import annotations

import math
import os
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from sklearn.datasets import load_iris

from wharf import Settings
from wharf.services import Services, build_services
from wharf.services.jobs import pid_alive
from wharf.services.registry import LINEAGE, METRICS, TRAINING, sha256_of
from wharf.storage.jobs import JobRecord

WAIT_SECONDS = 60.0
TEST_SIZE = 0.25
SLOW = {"algorithm": "random_forest", "params": {"n_estimators": 3000}, "validation": {"cv": 5}}
"""A job that trains for far longer than the tests wait: they end it before it finishes."""


@pytest.fixture
def iris_csv(tmp_path: Path) -> Path:
    iris = load_iris(as_frame=True)
    frame = iris.data.set_axis(["sepal_length", "sepal_width", "petal_length", "petal_width"], axis=1)
    path = tmp_path / "flowers.csv"
    frame.assign(species=iris.target_names[iris.target]).to_csv(path, index=False)
    return path


@pytest.fixture
def make_services(tmp_path: Path) -> Iterator[Callable[..., Services]]:
    """``make_services(job_timeout_seconds=1)``: services over one home, closed after the test."""
    made: list[Services] = []

    def make(**changes: Any) -> Services:
        settings = Settings(home=tmp_path / "home", refresh_seconds=0, **{"job_workers": 1, **changes})
        made.append(build_services(settings))
        return made[-1]

    yield make
    for services in made:
        services.close()


def submit(services: Services, csv: Path, **spec: Any) -> JobRecord:
    dataset = services.datasets.add(csv, csv.name)
    return services.jobs.submit({"kind": "train", "dataset": dataset.id, "target": "species", **spec})


def running_worker(services: Services, job_id: int) -> int:
    """The pid of the job's worker process, once the dispatcher has started it."""
    deadline = time.monotonic() + WAIT_SECONDS
    while True:
        job = services.registry.metadata.jobs.get(job_id)
        assert job is not None
        assert not job.finished, job
        if job.state == "running" and job.worker_pid:
            return job.worker_pid
        assert time.monotonic() < deadline, f"no worker started for job {job_id}: {job}"
        time.sleep(0.05)


def test_a_training_job_registers_its_version_with_lineage(
    make_services: Callable[..., Services], iris_csv: Path
) -> None:
    services = make_services()
    job = submit(
        services, iris_csv, algorithm="logistic_regression", validation={"test_size": TEST_SIZE}, seed=3
    )
    assert job.state == "queued"
    done = services.jobs.wait(job.id, timeout=WAIT_SECONDS)
    assert done.state == "succeeded", done.error
    assert (done.progress, done.stage) == (1.0, "done")
    assert done.error is None and done.started_at is not None and done.finished_at is not None
    assert done.result is not None
    assert (done.result["model"], done.result["version"]) == ("flowers", 1)

    dataset = services.datasets.get(job.spec["dataset"])
    record = services.registry.get("flowers", 1)
    assert record.format == "joblib"
    lineage = record.extra[LINEAGE]
    assert lineage["dataset"] == {"id": dataset.id, "name": "flowers", "sha256": dataset.sha256}
    assert (lineage["job"], lineage["target"]) == (job.id, "species")

    test_rows = math.ceil(TEST_SIZE * 150)
    holdout = lineage["holdout"]
    path = services.registry.artifacts.local_path(holdout["artifact"])
    assert path.is_file()
    assert holdout["sha256"] == sha256_of(path)
    rows = pd.read_parquet(path)
    assert len(rows) == holdout["rows"] == test_rows
    assert list(rows.columns) == ["sepal_length", "sepal_width", "petal_length", "petal_width", "species"]
    assert sorted(rows.species.value_counts().tolist()) == [12, 13, 13]  # stratified

    assert record.extra[METRICS] == done.result["metrics"]
    assert set(record.extra[METRICS]) >= {"accuracy", "f1_macro", "log_loss", "confusion_matrix"}
    training = record.extra[TRAINING]
    assert training["algorithm"] == "logistic_regression"
    assert training["task"] == done.result["task"] == "classification"
    assert training["spec"] == job.spec
    assert training["validation"]["test_rows"] == test_rows
    assert training["features"] == ["sepal_length", "sepal_width", "petal_length", "petal_width"]
    assert training["explanation"]  # coefficients by input column
    assert record.tags == {"algorithm": "logistic_regression", "task": "classification"}


def test_a_worker_killed_fails_its_job(make_services: Callable[..., Services], iris_csv: Path) -> None:
    services = make_services()
    job = submit(services, iris_csv, **SLOW)
    os.kill(running_worker(services, job.id), signal.SIGKILL)
    failed = services.jobs.wait(job.id, timeout=WAIT_SECONDS)
    assert failed.state == "failed"
    assert "killed by SIGKILL" in (failed.error or ""), failed.error
    assert failed.result is None
    assert services.registry.names() == []


def test_a_job_past_its_time_limit_is_stopped(make_services: Callable[..., Services], iris_csv: Path) -> None:
    services = make_services(job_timeout_seconds=1)
    job = submit(services, iris_csv, **SLOW)
    pid = running_worker(services, job.id)
    failed = services.jobs.wait(job.id, timeout=WAIT_SECONDS)
    assert failed.state == "failed"
    assert "ran past the limit of 1 s (job_timeout_seconds)" in (failed.error or ""), failed.error
    assert not pid_alive(pid)


def test_closing_the_services_fails_a_running_job(
    make_services: Callable[..., Services], iris_csv: Path
) -> None:
    services = make_services()
    job = submit(services, iris_csv, **SLOW)
    pid = running_worker(services, job.id)
    services.close()
    assert services.jobs._thread is not None and not services.jobs._thread.is_alive()
    assert not pid_alive(pid)

    after = make_services(job_workers=0).jobs.get(job.id)
    assert after.state == "failed"
    assert "server stopped" in (after.error or ""), after.error
