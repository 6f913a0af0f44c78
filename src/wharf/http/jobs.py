"""Routes for background jobs (``/v1/jobs``) and the synchronous quick fit (``/v1/fit``)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from flask import url_for
from pydantic import BaseModel, ConfigDict, Field, StrictFloat

from wharf.errors import ContentTooLarge
from wharf.http.bodies import (
    PAGE_QUERY,
    check_depth,
    json_body,
    json_response,
    page,
    query_arg,
    validated,
)
from wharf.http.context import NAME, services
from wharf.http.openapi import Query, documented
from wharf.http.security import note, principal
from wharf.services.training.spec import TrainSpec
from wharf.storage.jobs import STATES, JobRecord


class Job(BaseModel):
    """A background job: its spec, where it stands, and what it made."""

    id: int
    kind: str
    state: str = Field(description="queued, running, succeeded, failed or cancelled.")
    progress: float = Field(description="Fraction done, 0 to 1.")
    stage: str = Field(description="What it is doing: loading data, splitting, fitting, evaluating, ...")
    spec: dict[str, Any]
    error: str | None = Field(None, description="Why it failed, or how it was cancelled.")
    result: dict[str, Any] | None = Field(
        None, description="For a finished training job: the registered model and version, and its metrics."
    )
    cancel_requested: bool
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    queued_seconds: float | None = Field(None, description="From submission to start.")
    run_seconds: float | None = Field(None, description="From start to finish (or to now, while it runs).")
    links: dict[str, str]

    @classmethod
    def of(cls, job: JobRecord) -> Job:
        queued = run = None
        if job.started_at is not None:
            queued = (job.started_at - job.created_at).total_seconds()
            end = job.finished_at or datetime.now(job.started_at.tzinfo)
            run = (end - job.started_at).total_seconds()
        links = {"self": url_for(f"{NAME}.get_job", job_id=job.id)}
        if not job.finished:
            links["cancel"] = url_for(f"{NAME}.cancel_job", job_id=job.id)
        result = job.result or {}
        if job.state == "succeeded" and "model" in result and "version" in result:
            links["version"] = url_for(f"{NAME}.get_version", name=result["model"], version=result["version"])
        return cls(
            id=job.id,
            kind=job.kind,
            state=job.state,
            progress=job.progress,
            stage=job.stage,
            spec=job.spec,
            error=job.error,
            result=job.result,
            cancel_requested=job.cancel_requested,
            created_at=job.created_at,
            started_at=job.started_at,
            finished_at=job.finished_at,
            queued_seconds=queued,
            run_seconds=run,
            links=links,
        )


class JobList(BaseModel):
    jobs: list[Job]


class FitRequest(BaseModel):
    """A small fit answered at once: rows of numbers and their targets."""

    model_config = ConfigDict(extra="forbid")

    # Strict: pydantic would read "1.5" and true as numbers, which quick_fit refuses by design.
    X: list[list[StrictFloat]] = Field(min_length=1, description="Rows of numeric features.")
    y: list[Any] = Field(min_length=1, description="One target per row (numbers, or class labels).")
    algorithm: str = Field("linear_regression", description="Any algorithm of the training catalogue.")
    params: dict[str, Any] = Field(default_factory=dict)
    seed: int = Field(0, ge=0, le=2**32 - 1, description="Seeds the estimator (as a job's 'seed').")


class FitResult(BaseModel):
    model_config = ConfigDict(extra="allow")

    algorithm: str
    task: str
    metrics: dict[str, Any] = Field(description="Scores on the rows fitted on (no holdout at this size).")
    weights: list[Any] | None = Field(None, description="Coefficients, for linear models.")
    bias: Any = Field(None, description="Intercept, for linear models.")


@documented(
    "Queue a job (a training run); answered at once with the job to poll.",
    tags=("jobs",),
    responses={202: Job},
    body=TrainSpec,
)
def submit_job() -> Any:
    caller = principal()
    settings = services().settings
    body = check_depth(json_body(settings.max_body_bytes), settings.max_json_depth)  # not validated here
    job = services().jobs.submit(body, allow=lambda spec: caller.require("train", spec.get("register_as")))
    note(target=f"job {job.id}")
    location = url_for(f"{NAME}.get_job", job_id=job.id)
    return json_response(Job.of(job).model_dump(mode="json"), status=202, headers={"Location": location})


def visible(jobs: list[JobRecord]) -> list[JobRecord]:
    """The jobs the caller may see: a key limited to some models sees the jobs that train them."""
    caller = principal()
    if caller.models is None:
        return jobs
    return [job for job in jobs if caller.sees(str(job.spec.get("register_as")))]


@documented(
    "List jobs, newest first.",
    tags=("jobs",),
    responses={200: JobList},
    query={
        "state": Query("Only jobs in this state.", {"type": "string", "enum": list(STATES)}),
        **PAGE_QUERY,
    },
)
def list_jobs() -> Any:
    state = query_arg("state")
    limit, offset = page()
    jobs = visible(services().jobs.recent(state, limit=limit, offset=offset))
    return json_response({"jobs": [Job.of(job).model_dump(mode="json") for job in jobs]})


@documented("A job: state, progress, timings, error, result.", tags=("jobs",), responses={200: Job})
def get_job(job_id: int) -> Any:
    job = services().jobs.get(job_id)
    principal().require("read", str(job.spec.get("register_as")))
    return json_response(Job.of(job).model_dump(mode="json"))


@documented(
    "Cancel a job: a queued one at once, a running one within a moment.",
    tags=("jobs",),
    responses={202: Job},
)
def cancel_job(job_id: int) -> Any:
    jobs = services().jobs
    principal().require("train", str(jobs.get(job_id).spec.get("register_as")))
    job = jobs.cancel(job_id)
    return json_response(Job.of(job).model_dump(mode="json"), status=202)


@documented(
    "Fit a model on a small table sent in the body and return its weights and metrics at once.",
    tags=("jobs",),
    responses={200: FitResult},
    body=FitRequest,
)
def fit() -> Any:
    svc = services()
    example = '{"X": [[1, 2], [2, 3], [3, 5]], "y": [3, 5, 8], "algorithm": "linear_regression"}'
    body = validated(FitRequest, json_body(svc.settings.max_body_bytes), "fit request", "body", example)
    cells = len(body.X) * max(len(row) for row in body.X)
    limit = svc.settings.fit_max_cells
    if cells > limit:
        raise ContentTooLarge(
            f"POST /v1/fit takes at most {limit} cells (rows x columns); this has {cells}. Upload the "
            "table with POST /v1/datasets and train it with POST /v1/jobs instead.",
            field="X",
        )
    from wharf.services.training.trainer import quick_fit

    result = quick_fit(body.X, body.y, body.algorithm, body.params, body.seed)
    return json_response(result)


ROUTES: list[tuple[str, Any, list[str], str]] = [
    ("/v1/jobs", submit_job, ["POST"], "train"),
    ("/v1/jobs", list_jobs, ["GET"], "read"),
    ("/v1/jobs/<int:job_id>", get_job, ["GET"], "read"),
    ("/v1/jobs/<int:job_id>/cancel", cancel_job, ["POST"], "train"),
    ("/v1/fit", fit, ["POST"], "train"),
]
