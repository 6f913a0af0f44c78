"""Background jobs in the metadata database: their spec, state, progress and result.

A job moves ``queued -> running -> succeeded | failed | cancelled`` (or ``queued -> cancelled``).
Every change of state is one conditional ``UPDATE``, so two servers never both claim a job, and a
finished job is never reopened: a late heartbeat or a worker finishing after a cancel changes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal

from sqlalchemy import JSON, Boolean, DateTime, Float, Integer, String, Text, func, select, update
from sqlalchemy.orm import Mapped, mapped_column

from wharf.storage.metadata import Base

if TYPE_CHECKING:
    from wharf.storage.metadata import MetadataStore

JobState = Literal["queued", "running", "succeeded", "failed", "cancelled"]
STATES: tuple[JobState, ...] = ("queued", "running", "succeeded", "failed", "cancelled")
FINISHED: frozenset[str] = frozenset({"succeeded", "failed", "cancelled"})


class JobRow(Base):
    __tablename__ = "jobs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    kind: Mapped[str] = mapped_column(String(32))
    state: Mapped[str] = mapped_column(String(16), index=True)
    spec: Mapped[dict[str, Any]] = mapped_column(JSON)
    progress: Mapped[float] = mapped_column(Float, default=0.0)
    stage: Mapped[str] = mapped_column(String(64), default="queued")
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    result: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    owner: Mapped[str | None] = mapped_column(String(256), nullable=True)
    """``host:pid`` of the server process that runs the job."""
    worker_pid: Mapped[int | None] = mapped_column(Integer, nullable=True)
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    heartbeat_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


def _aware(value: datetime | None) -> datetime | None:
    """SQLite hands datetimes back without their zone; they were written in UTC."""
    return value if value is None or value.tzinfo else value.replace(tzinfo=UTC)


@dataclass(frozen=True)
class JobRecord:
    """One job, detached from the database session."""

    id: int
    kind: str
    state: JobState
    spec: dict[str, Any]
    progress: float
    stage: str
    created_at: datetime
    error: str | None = None
    result: dict[str, Any] | None = None
    owner: str | None = None
    worker_pid: int | None = None
    cancel_requested: bool = False
    started_at: datetime | None = None
    finished_at: datetime | None = None
    heartbeat_at: datetime | None = None

    @property
    def finished(self) -> bool:
        return self.state in FINISHED

    @classmethod
    def of(cls, row: JobRow) -> JobRecord:
        return cls(
            id=row.id,
            kind=row.kind,
            state=row.state,  # type: ignore[arg-type]
            spec=dict(row.spec or {}),
            progress=row.progress,
            stage=row.stage,
            created_at=_aware(row.created_at) or row.created_at,
            error=row.error,
            result=None if row.result is None else dict(row.result),
            owner=row.owner,
            worker_pid=row.worker_pid,
            cancel_requested=row.cancel_requested,
            started_at=_aware(row.started_at),
            finished_at=_aware(row.finished_at),
            heartbeat_at=_aware(row.heartbeat_at),
        )


class JobTable:
    """The ``jobs`` table of one :class:`~wharf.storage.metadata.MetadataStore`."""

    def __init__(self, metadata: MetadataStore) -> None:
        self.metadata = metadata

    def add(self, kind: str, spec: dict[str, Any]) -> JobRecord:
        """A new queued job."""
        with self.metadata.writing() as session:
            row = JobRow(
                kind=kind,
                state="queued",
                spec=spec,
                progress=0.0,
                stage="queued",
                cancel_requested=False,
                created_at=datetime.now(UTC),
            )
            session.add(row)
            session.flush()
            return JobRecord.of(row)

    def get(self, job_id: int) -> JobRecord | None:
        with self.metadata.reading() as session:
            row = session.get(JobRow, job_id)
            return None if row is None else JobRecord.of(row)

    def recent(self, state: str | None = None, limit: int = 100, offset: int = 0) -> list[JobRecord]:
        """Jobs, newest first."""
        query = select(JobRow).order_by(JobRow.id.desc()).limit(limit).offset(offset)
        if state is not None:
            query = query.where(JobRow.state == state)
        with self.metadata.reading() as session:
            return [JobRecord.of(row) for row in session.scalars(query)]

    def count(self, state: str | None = None) -> int:
        query = select(func.count(JobRow.id))
        if state is not None:
            query = query.where(JobRow.state == state)
        with self.metadata.reading() as session:
            return int(session.scalar(query) or 0)

    def counts(self) -> dict[str, int]:
        """Jobs per state (every state, zeros included)."""
        query = select(JobRow.state, func.count(JobRow.id)).group_by(JobRow.state)
        with self.metadata.reading() as session:
            found = {state: int(n) for state, n in session.execute(query)}
        return {state: found.get(state, 0) for state in STATES}

    def running(self) -> list[JobRecord]:
        with self.metadata.reading() as session:
            rows = session.scalars(select(JobRow).where(JobRow.state == "running").order_by(JobRow.id))
            return [JobRecord.of(row) for row in rows]

    def claim_next(self, owner: str) -> JobRecord | None:
        """Mark the oldest queued job running for ``owner`` and return it; None when none is queued."""
        with self.metadata.writing() as session:
            for job_id in session.scalars(
                select(JobRow.id).where(JobRow.state == "queued").order_by(JobRow.id).limit(5)
            ).all():
                now = datetime.now(UTC)
                claimed = session.execute(
                    update(JobRow)
                    .where(JobRow.id == job_id, JobRow.state == "queued")
                    .values(state="running", owner=owner, started_at=now, heartbeat_at=now, stage="starting")
                )
                if claimed.rowcount == 1:  # type: ignore[attr-defined]
                    row = session.get(JobRow, job_id)
                    assert row is not None
                    session.refresh(row)
                    return JobRecord.of(row)
        return None

    def set_worker(self, job_id: int, pid: int) -> None:
        self._update(job_id, ("running",), worker_pid=pid)

    def report(self, job_id: int, progress: float, stage: str) -> bool:
        """Record progress (and a heartbeat); returns whether the job is still running."""
        return self._update(
            job_id,
            ("running",),
            progress=min(max(progress, 0.0), 1.0),
            stage=stage[:64],
            heartbeat_at=datetime.now(UTC),
        )

    def heartbeat(self, job_id: int) -> bool:
        """Returns whether the job is still running."""
        return self._update(job_id, ("running",), heartbeat_at=datetime.now(UTC))

    def finish(
        self,
        job_id: int,
        state: JobState,
        *,
        error: str | None = None,
        result: dict[str, Any] | None = None,
        from_states: tuple[str, ...] = ("running",),
    ) -> bool:
        """Move a job to a finished ``state``; False when it was not in ``from_states`` (nothing changes)."""
        values: dict[str, Any] = {"state": state, "finished_at": datetime.now(UTC), "error": error}
        if state == "succeeded":
            values.update(progress=1.0, stage="done")
        if result is not None:
            values["result"] = result
        return self._update(job_id, from_states, **values)

    def request_cancel(self, job_id: int) -> JobRecord | None:
        """Cancel a queued job at once; mark a running one for its server to stop. None: no such job."""
        self.finish(job_id, "cancelled", error="Cancelled before it started.", from_states=("queued",))
        self._update(job_id, ("running",), cancel_requested=True)
        return self.get(job_id)

    def _update(self, job_id: int, from_states: tuple[str, ...], **values: Any) -> bool:
        with self.metadata.writing() as session:
            changed = session.execute(
                update(JobRow).where(JobRow.id == job_id, JobRow.state.in_(from_states)).values(**values)
            )
            return bool(changed.rowcount == 1)  # type: ignore[attr-defined]
