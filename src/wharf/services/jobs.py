"""Background jobs: queued in the registry database, each run in its own worker process.

A server process runs a dispatcher thread (started with the server's workers, or by the first job a
process submits). It claims queued jobs (one conditional UPDATE, so replicas sharing a database
never run a job twice), starts ``python -m wharf.services.worker JOB`` for each, and watches it:

- a worker that exits without finishing its job (killed by the kernel for memory, crashed in C)
  fails the job with its exit status;
- a cancel (from any replica) is seen in the database and stops the worker;
- a job running past ``job_timeout_seconds`` is stopped and failed;
- a job whose server died is failed, never left running: its worker notices its parent is gone
  and fails it; and on this host, a running job whose server process and worker are both gone is
  failed at the next start of any server (or a replica elsewhere fails it once its heartbeats are
  :data:`STALE_SECONDS` old).
"""

from __future__ import annotations

import json
import logging
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import ValidationError

from wharf.errors import Conflict, InvalidInput, JobNotFound, suggest
from wharf.settings import Settings
from wharf.storage.jobs import STATES, JobRecord, JobTable

log = logging.getLogger(__name__)

TICK_SECONDS = 0.25
"""How often the dispatcher looks for queued jobs, cancels and finished workers."""
HEARTBEAT_SECONDS = 1.0
"""How often a worker tells the database it is alive."""
STALE_SECONDS = 30.0
"""A running job without a heartbeat for this long has lost its worker."""
MAX_ID = 2**31 - 1
"""Job ids are 32-bit integers in every database."""


def owner_id() -> str:
    """``host:pid`` of this process, written on the jobs it runs."""
    return f"{socket.gethostname()}:{os.getpid()}"


def pid_alive(pid: int | None) -> bool:
    """Whether process ``pid`` runs (a zombie, dead but not yet reaped, does not)."""
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rpartition(")")[2].split()[0] != "Z"
    except OSError:
        return True  # no /proc (macOS): kill's answer stands


def _describe_exit(code: int) -> str:
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        hint = " (how the kernel stops a process when memory runs out)" if code == -9 else ""
        return f"The worker process was killed by {name}{hint}."
    return f"The worker process exited with status {code} without finishing the job."


@dataclass
class _Running:
    job_id: int
    process: subprocess.Popen[bytes]
    started: float = field(default_factory=time.monotonic)


def worker_settings(settings: Settings) -> bytes:
    """The settings a job's worker process reads on its stdin, as JSON.

    The worker needs no key of its own (the admin key stays out), but it reads and writes the
    artifact store, so the store's secret goes in revealed: a pipe to a child, never a file or a log.
    """
    data = settings.model_dump(mode="json", exclude={"admin_key"})
    if settings.s3_secret_access_key is not None:
        data["s3_secret_access_key"] = settings.s3_secret_access_key.get_secret_value()
    return json.dumps(data).encode()


class Jobs:
    """Submits, lists, cancels and runs jobs.

    :param table: the jobs table.
    :param settings: passed to each worker process whole (so it opens the same stores), and read for
        ``job_workers`` and ``job_timeout_seconds``.
    :param validate: by kind, the check of a job's spec before it is queued (a 4xx wharf error when
        it fails), returning the spec to store; a kind without one is refused.
    """

    def __init__(
        self,
        table: JobTable,
        settings: Settings,
        validate: dict[str, Any] | None = None,
    ) -> None:
        self.table = table
        self.settings = settings
        self.validate = validate or {}
        self.owner = owner_id()
        self._running: dict[int, _Running] = {}
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()

    # -- the API ---------------------------------------------------------------------------

    def submit(self, body: Any, allow: Callable[[dict[str, Any]], None] | None = None) -> JobRecord:
        """Queue a job from its JSON body (``{"kind": "train", ...}``).

        :param allow: called with the checked spec before it is queued; raises to refuse it (the
            caller may not register the model it names).
        :raises InvalidInput: no known kind, or a spec its kind's validator refuses.
        """
        if not isinstance(body, dict):
            raise InvalidInput(
                f'A job is a JSON object such as {{"kind": "train", ...}}; got {type(body).__name__}.',
                field="body",
            )
        kind = body.get("kind", "train")
        if not isinstance(kind, str) or kind not in self.validate:
            known = ", ".join(map(repr, self.validate)) or "none"
            raise InvalidInput(f"Unknown job kind {kind!r}; this server runs {known}.", field="kind")
        spec = self.validate[kind](body)
        if allow is not None:
            allow(spec)
        job = self.table.add(kind, spec)
        self.start()
        return job

    def get(self, job_id: int) -> JobRecord:
        job = self.table.get(job_id) if 0 < job_id <= MAX_ID else None
        if job is None:
            raise JobNotFound(f"No job {job_id}.", field="job_id")
        return job

    def counts(self) -> dict[str, int]:
        """Jobs per state, every state included."""
        return self.table.counts()

    def recent(self, state: str | None = None, limit: int = 100, offset: int = 0) -> list[JobRecord]:
        if state is not None and state not in STATES:
            raise InvalidInput(f"Unknown job state {state!r}; use one of {', '.join(STATES)}.", field="state")
        return self.table.recent(state, limit=limit, offset=offset)

    def cancel(self, job_id: int) -> JobRecord:
        """Cancel a queued job now, or stop a running one (within a dispatcher tick).

        :raises Conflict: the job has already finished.
        """
        job = self.get(job_id)
        if job.finished:
            raise Conflict(f"Job {job_id} has already {job.state}; nothing to cancel.", field="job_id")
        cancelled = self.table.request_cancel(job_id)
        assert cancelled is not None
        return cancelled

    def wait(self, job_id: int, timeout: float | None = None, poll: float = 0.1) -> JobRecord:
        """Block until the job finishes (or ``timeout`` passes); returns it as it then is."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            job = self.get(job_id)
            if job.finished or (deadline is not None and time.monotonic() >= deadline):
                return job
            time.sleep(poll)

    # -- the dispatcher --------------------------------------------------------------------

    def start(self) -> None:
        """Start this process's dispatcher (once); a no-op where ``job_workers`` is 0."""
        if self.settings.job_workers == 0:
            return
        with self._lock:
            if self._thread is not None and self._thread.is_alive() and self.owner == owner_id():
                return
            self.owner = owner_id()  # a forked server worker is its own owner
            self._running.clear()
            self._stop.clear()
            self.recover()
            self._thread = threading.Thread(target=self._loop, name="wharf-jobs", daemon=True)
            self._thread.start()

    def stop(self, kill: bool = True) -> None:
        """Stop the dispatcher; with ``kill``, stop its workers and fail their jobs."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        if kill:
            for running in list(self._running.values()):
                self._end(running, "failed", "The server stopped while the job ran.")

    def recover(self) -> list[int]:
        """Fail running jobs whose server is gone: on this host, owner and worker both dead; anywhere,
        no heartbeat for :data:`STALE_SECONDS`. Returns the failed job ids."""
        host = socket.gethostname()
        stale_before = datetime.now(UTC) - timedelta(seconds=STALE_SECONDS)
        failed = []
        for job in self.table.running():
            if job.id in self._running:
                continue
            owner_host, _, owner_pid = (job.owner or "").rpartition(":")
            local_and_dead = (
                owner_host == host
                and not pid_alive(int(owner_pid) if owner_pid.isdigit() else None)
                and not pid_alive(job.worker_pid)
            )
            stale = job.heartbeat_at is not None and job.heartbeat_at < stale_before
            if local_and_dead or stale:
                reason = "The server running this job stopped before it finished; submit it again."
                if self.table.finish(job.id, "failed", error=reason):
                    log.warning("job %s failed: its server %s is gone", job.id, job.owner)
                    failed.append(job.id)
        return failed

    def _loop(self) -> None:
        last_recover = time.monotonic()
        while not self._stop.wait(TICK_SECONDS):
            try:
                self._tick()
                if time.monotonic() - last_recover > STALE_SECONDS / 2:
                    self.recover()
                    last_recover = time.monotonic()
            except Exception:  # the dispatcher outlives a database hiccup; the next tick retries
                log.exception("job dispatcher tick failed")

    def _tick(self) -> None:
        for running in list(self._running.values()):
            code = running.process.poll()
            job = self.table.get(running.job_id)
            if code is not None:
                del self._running[running.job_id]
                if job is not None and not job.finished:
                    self.table.finish(running.job_id, "failed", error=_describe_exit(code))
            elif job is None or job.finished:
                self._end(running, None, "")
            elif job.cancel_requested:
                self._end(running, "cancelled", "Cancelled while it ran.")
            elif time.monotonic() - running.started > self.settings.job_timeout_seconds:
                limit = self.settings.job_timeout_seconds
                self._end(running, "failed", f"It ran past the limit of {limit:g} s (job_timeout_seconds).")
        while len(self._running) < self.settings.job_workers:
            job = self.table.claim_next(self.owner)
            if job is None:
                break
            self._launch(job)

    def _launch(self, job: JobRecord) -> None:
        try:
            process = subprocess.Popen(
                [sys.executable, "-m", "wharf.services.worker", str(job.id), str(os.getpid())],
                stdin=subprocess.PIPE,
                start_new_session=True,  # a Ctrl-C meant for the server does not cut a registration short;
                # the worker sees its server gone within a heartbeat and fails the job itself
            )
            assert process.stdin is not None
            process.stdin.write(worker_settings(self.settings))
            process.stdin.close()
        except OSError as exc:
            self.table.finish(job.id, "failed", error=f"The worker process did not start: {exc}.")
            return
        self.table.set_worker(job.id, process.pid)
        self._running[job.id] = _Running(job.id, process)
        log.info("job %s (%s) started in worker process %s", job.id, job.kind, process.pid)

    def _end(self, running: _Running, state: str | None, error: str) -> None:
        """Stop a worker; with ``state``, record how its job ended."""
        running.process.kill()
        running.process.wait()
        self._running.pop(running.job_id, None)
        if state is not None:
            self.table.finish(running.job_id, state, error=error)  # type: ignore[arg-type]


def parse_spec(model: Any, body: dict[str, Any]) -> dict[str, Any]:
    """``body`` validated by the pydantic ``model``, as JSON; :raises InvalidInput: naming the field."""
    from wharf.services.training.spec import VALIDATION_TAGS

    try:
        return dict(model.model_validate(body).model_dump(mode="json"))
    except ValidationError as exc:
        error = exc.errors()[0]
        loc = [str(part) for part in error["loc"]]
        if len(loc) > 1 and loc[0] == "validation" and loc[1] in VALIDATION_TAGS:
            del loc[1]  # the shape pydantic chose, not a place in the body
        where = ".".join(loc)
        hint = ""
        if error["type"] == "extra_forbidden" and len(loc) == 1:
            hint = suggest(loc[0], list(model.model_fields))
        message = f"Invalid job at {where or 'top level'!r}: {error['msg']}.{hint}"
        raise InvalidInput(message, field=where or "body") from exc


def model_name_for(dataset_name: str, dataset_id: int) -> str:
    """A valid model name from a dataset's (file) name: ``houses.csv`` -> ``houses``."""
    stem = re.sub(r"\.(csv|tsv|json|jsonl|ndjson|xlsx|parquet)$", "", dataset_name, flags=re.IGNORECASE)
    cleaned = re.sub(r"[^A-Za-z0-9._-]+", "-", stem).lstrip("._-")[:128].rstrip("._-")
    return cleaned or f"dataset-{dataset_id}"


def train_validator(datasets: Any) -> Any:
    """The check of a ``train`` job before it is queued: the spec's shape, then its dataset's columns.

    :param datasets: the :class:`~wharf.services.datasets.Datasets` service.
    """

    def validate(body: dict[str, Any]) -> dict[str, Any]:
        from wharf.errors import NotFound
        from wharf.services.registry import check_name
        from wharf.services.training.spec import TrainSpec, check

        spec = TrainSpec.model_validate(parse_spec(TrainSpec, body))
        try:
            dataset = datasets.get(spec.dataset)
        except NotFound as exc:
            raise InvalidInput(exc.detail, field="dataset") from exc
        check(spec, dataset.profile)
        if spec.register_as is None:
            spec = spec.model_copy(update={"register_as": model_name_for(dataset.name, dataset.id)})
        check_name(spec.register_as or "")
        return dict(spec.model_dump(mode="json"))

    return validate
