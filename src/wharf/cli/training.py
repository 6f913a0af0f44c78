"""``wharf train``, ``wharf datasets ...`` and ``wharf jobs ...``: data to a registered version.

``wharf train`` works on the local registry (the job runs in a worker process of this command) or,
with ``--server URL``, on a running server through its HTTP API; the output is the same.
"""

from __future__ import annotations

import io
import json
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any, Protocol

import click

from wharf.cli.base import State, WharfGroup, cli, echo_json, pass_state
from wharf.cli.remote import Remote
from wharf.errors import InvalidInput

POLL_SECONDS = 0.2
STEPS = 1000
"""Resolution of the progress bar."""


class Backend(Protocol):
    """Where ``wharf train`` sends its work: this machine's registry, or a server."""

    def add_dataset(self, path: Path, name: str | None) -> dict[str, Any]: ...
    def submit(self, spec: dict[str, Any]) -> dict[str, Any]: ...
    def job(self, job_id: int) -> dict[str, Any]: ...
    def cancel(self, job_id: int) -> dict[str, Any]: ...


def _plain(record: Any) -> dict[str, Any]:
    """A stored record (job, dataset) as the JSON the server answers with: times as ISO strings."""
    data = asdict(record)
    return {k: v.isoformat() if hasattr(v, "isoformat") else v for k, v in data.items()}


class Local:
    def __init__(self, state: State) -> None:
        self.services = state.services

    def add_dataset(self, path: Path, name: str | None) -> dict[str, Any]:
        return _plain(self.services.datasets.add(path, path.name, name))

    def submit(self, spec: dict[str, Any]) -> dict[str, Any]:
        return _plain(self.services.jobs.submit(spec))

    def job(self, job_id: int) -> dict[str, Any]:
        return _plain(self.services.jobs.get(job_id))

    def cancel(self, job_id: int) -> dict[str, Any]:
        return _plain(self.services.jobs.cancel(job_id))


class Server:
    def __init__(self, remote: Remote) -> None:
        self.remote = remote

    def add_dataset(self, path: Path, name: str | None) -> dict[str, Any]:
        return dict(self.remote.upload(path, name))

    def submit(self, spec: dict[str, Any]) -> dict[str, Any]:
        return dict(self.remote.post_json("/v1/jobs", spec))

    def job(self, job_id: int) -> dict[str, Any]:
        return dict(self.remote.get(f"/v1/jobs/{job_id}"))

    def cancel(self, job_id: int) -> dict[str, Any]:
        return dict(self.remote.post_json(f"/v1/jobs/{job_id}/cancel", {}))


def _param(text: str) -> tuple[str, Any]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise InvalidInput(f"--param takes KEY=VALUE, as in n_estimators=200; got {text!r}.", field="--param")
    try:
        return key, json.loads(value)
    except ValueError:
        return key, value  # a bare word: a string parameter such as criterion=entropy


def follow(backend: Backend, job_id: int, quiet: bool) -> dict[str, Any]:
    """Poll a job to its end, drawing a progress bar; Ctrl-C cancels it."""
    job = backend.job(job_id)
    try:
        with click.progressbar(length=STEPS, label="queued", file=io.StringIO() if quiet else None) as bar:
            done = 0
            while job["state"] in ("queued", "running"):
                time.sleep(POLL_SECONDS)
                job = backend.job(job_id)
                bar.label = f"{job['stage']:<12}"
                target = int(job["progress"] * STEPS)
                if target > done:
                    bar.update(target - done)
                    done = target
            if job["state"] == "succeeded" and done < STEPS:
                bar.update(STEPS - done)
    except KeyboardInterrupt:
        click.echo(f"\ncancelling job {job_id}", err=True)
        backend.cancel(job_id)
        raise click.exceptions.Exit(130) from None
    return job


def metrics_table(metrics: dict[str, Any]) -> str:
    """The scalar metrics as aligned lines, then the confusion matrix where there is one."""
    lines = []
    scalars = {k: v for k, v in metrics.items() if isinstance(v, int | float) and not isinstance(v, bool)}
    width = max((len(k) for k in scalars), default=0)
    for key, value in scalars.items():
        lines.append(f"  {key:<{width}}  {value:.6g}")
    confusion = metrics.get("confusion_matrix")
    if isinstance(confusion, dict) and confusion.get("labels"):
        labels = [str(label) for label in confusion["labels"]]
        cell = max(len(label) for label in labels + [str(v) for row in confusion["matrix"] for v in row])
        lines.append("  confusion matrix (rows: true, columns: predicted)")
        lines.append("  " + " " * cell + " " + " ".join(f"{label:>{cell}}" for label in labels))
        for label, row in zip(labels, confusion["matrix"], strict=False):
            lines.append(f"  {label:>{cell}} " + " ".join(f"{v:>{cell}}" for v in row))
    for key, value in metrics.items():
        if key not in scalars and key != "confusion_matrix" and not isinstance(value, dict | list):
            lines.append(f"  {key}: {value}")
    return "\n".join(lines)


@cli.command()
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--target", required=True, help="The column to predict.")
@click.option("--algorithm", default="random_forest", show_default=True, help="See the README's catalogue.")
@click.option(
    "--task",
    type=click.Choice(["auto", "classification", "regression"]),
    default="auto",
    show_default=True,
    help="auto: decided from the target column (classes or numbers).",
)
@click.option("--features", help="Comma-separated input columns [all but the target].")
@click.option("--param", "params", multiple=True, metavar="KEY=VALUE", help="An estimator parameter; repeat.")
@click.option("--test-size", type=float, help="Share of rows held out for evaluation [0.2].")
@click.option("--cv", type=int, help="Evaluate by k-fold cross-validation instead of a holdout.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the split and the estimator.")
@click.option("--name", help="Model name to register as [the file's name].")
@click.option("--server", help="Train on the wharf server at this URL instead of the local registry.")
@click.option("--api-key", help="API key for --server.")
@click.option("--json", "as_json", is_flag=True, help="Print the finished job as JSON.")
@pass_state
def train(
    state: State,
    file: Path,
    target: str,
    algorithm: str,
    task: str,
    features: str | None,
    params: tuple[str, ...],
    test_size: float | None,
    cv: int | None,
    seed: int,
    name: str | None,
    server: str | None,
    api_key: str | None,
    as_json: bool,
) -> None:
    """Upload FILE (CSV, JSON, Excel or Parquet), train a model on it, evaluate and register it."""
    if test_size is not None and cv is not None:
        raise InvalidInput("Give --test-size or --cv, not both.", field="--cv")
    backend: Backend = Server(Remote(server, api_key)) if server else Local(state)
    dataset = backend.add_dataset(file, None)
    spec: dict[str, Any] = {
        "kind": "train",
        "dataset": dataset["id"],
        "target": target,
        "task": task,
        "algorithm": algorithm,
        "params": dict(_param(p) for p in params),
        "seed": seed,
        "validation": {"cv": cv} if cv is not None else {"test_size": test_size or 0.2},
    }
    if features:
        spec["features"] = [f.strip() for f in features.split(",") if f.strip()]
    if name:
        spec["register_as"] = name
    job = backend.submit(spec)
    if not as_json:
        click.echo(f"dataset {dataset['id']} ({dataset['rows']} rows), job {job['id']}", err=True)
    job = follow(backend, job["id"], quiet=as_json)
    if as_json:
        echo_json(job)
    if job["state"] != "succeeded":
        raise JobEnded(f"Job {job['id']} {job['state']}: {job.get('error') or 'no reason given'}")
    if not as_json:
        result = job["result"]
        click.echo(f"registered {result['model']}:{result['version']} ({result['task']})")
        click.echo(metrics_table(result.get("metrics") or {}))


class JobEnded(click.ClickException):
    """A job that failed or was cancelled: exit code 6."""

    exit_code = 6


# -- datasets and jobs -------------------------------------------------------------------------


@cli.group(cls=WharfGroup)
def datasets() -> None:
    """Uploaded tables (CSV, JSON, Excel, Parquet), stored as Parquet and profiled."""


@datasets.command("add")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--name", help="The dataset's name [the file's name].")
@pass_state
def datasets_add(state: State, file: Path, name: str | None) -> None:
    """Store FILE as a dataset and print its profile."""
    echo_json(_plain(state.services.datasets.add(file, file.name, name)))


@datasets.command("list")
@pass_state
def datasets_list(state: State) -> None:
    """Every dataset: id, name, rows, columns."""
    for record in state.services.datasets.list():
        click.echo(f"{record.id:>5}  {record.name}  {record.rows} rows  {record.columns} columns")


@datasets.command("show")
@click.argument("dataset_id", type=int)
@pass_state
def datasets_show(state: State, dataset_id: int) -> None:
    """One dataset with its profile, as JSON."""
    echo_json(_plain(state.services.datasets.get(dataset_id)))


@datasets.command("delete")
@click.argument("dataset_id", type=int)
@pass_state
def datasets_delete(state: State, dataset_id: int) -> None:
    """Delete a dataset (versions trained on it stay)."""
    state.services.datasets.delete(dataset_id)
    click.echo(f"deleted dataset {dataset_id}")


@cli.group(cls=WharfGroup)
def jobs() -> None:
    """Background jobs (training runs)."""


@jobs.command("list")
@click.option("--state", "job_state", help="Only jobs in this state.")
@pass_state
def jobs_list(state: State, job_state: str | None) -> None:
    """Recent jobs, newest first: id, kind, state, progress, stage."""
    for job in state.services.jobs.recent(job_state):
        click.echo(f"{job.id:>5}  {job.kind}  {job.state:<9}  {job.progress:>4.0%}  {job.stage}")


@jobs.command("show")
@click.argument("job_id", type=int)
@pass_state
def jobs_show(state: State, job_id: int) -> None:
    """One job as JSON: spec, state, progress, timings, error, result."""
    echo_json(_plain(state.services.jobs.get(job_id)))


@jobs.command("cancel")
@click.argument("job_id", type=int)
@pass_state
def jobs_cancel(state: State, job_id: int) -> None:
    """Cancel a job: a queued one at once, a running one by the server that runs it."""
    job = state.services.jobs.cancel(job_id)
    click.echo(f"job {job.id}: {job.state}{' (stopping)' if job.cancel_requested else ''}")
