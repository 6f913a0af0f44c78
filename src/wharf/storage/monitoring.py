"""Monitoring data in the metadata database: per-minute serving counts, live input counts for drift,
and each version's drift reference.

Every server process adds its own rows (one per model version and minute it saw traffic in, each
flush); readers sum them. Nothing is updated in place, so many workers and replicas write without
contending, and a chart or a drift window is one indexed range read.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import orjson
from sqlalchemy import JSON, BigInteger, DateTime, ForeignKey, Index, Integer, String, delete, select
from sqlalchemy.orm import Mapped, mapped_column

from wharf.storage.metadata import Base, ModelRow, VersionRow

if TYPE_CHECKING:
    from wharf.storage.metadata import MetadataStore


class MinuteRow(Base):
    """What one process served for one version in one minute."""

    __tablename__ = "monitor_minutes"
    __table_args__ = (Index("ix_monitor_minutes_model_minute", "model", "minute"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    model: Mapped[str] = mapped_column(String(256))
    version: Mapped[int] = mapped_column(Integer)
    minute: Mapped[int] = mapped_column(BigInteger)
    """Minutes since the Unix epoch (UTC)."""
    requests: Mapped[int] = mapped_column(Integer)
    errors: Mapped[int] = mapped_column(Integer)
    rows: Mapped[int] = mapped_column(Integer)
    latency: Mapped[list[int]] = mapped_column(JSON)
    """Request counts per latency bucket (:data:`wharf.services.telemetry.LATENCY_BUCKETS`)."""


class DriftCountRow(Base):
    """Live input counts per reference bin, of one process, version and minute."""

    __tablename__ = "drift_minutes"
    __table_args__ = (Index("ix_drift_minutes_model_version_minute", "model", "version", "minute"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    model: Mapped[str] = mapped_column(String(256))
    version: Mapped[int] = mapped_column(Integer)
    minute: Mapped[int] = mapped_column(BigInteger)
    reference: Mapped[str] = mapped_column(String(64))
    """Digest of the reference whose bins the counts are in (a replaced reference has others)."""
    rows: Mapped[int] = mapped_column(Integer)
    counts: Mapped[dict[str, list[int]]] = mapped_column(JSON)
    """Column -> counts per bin, the last one counting missing values."""


class ReferenceRow(Base):
    """A version's drift reference: the statistics of the inputs it was made for."""

    __tablename__ = "drift_references"

    version_id: Mapped[int] = mapped_column(
        ForeignKey("model_versions.id", ondelete="CASCADE"), primary_key=True
    )
    source: Mapped[str] = mapped_column(String(64))
    """Where the rows came from: ``training`` (a job's dataset), ``upload``, ``registration``."""
    rows: Mapped[int] = mapped_column(Integer)
    profile: Mapped[dict[str, Any]] = mapped_column(JSON)
    digest: Mapped[str] = mapped_column(String(64))
    """sha256 of the profile: live counts are stored with it, and read back only under it."""
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


@dataclass(frozen=True)
class Minute:
    model: str
    version: int
    minute: int
    requests: int
    errors: int
    rows: int
    latency: list[int]


@dataclass(frozen=True)
class StoredReference:
    name: str
    version: int
    source: str
    rows: int
    profile: dict[str, Any]
    digest: str
    created_at: datetime


@dataclass(frozen=True)
class DriftCounts:
    """Live input counts of one version and minute, in the bins of the reference ``reference``."""

    model: str
    version: int
    minute: int
    reference: str
    rows: int
    counts: dict[str, list[int]]


def profile_digest(profile: dict[str, Any]) -> str:
    """sha256 of a reference profile's canonical JSON."""
    return hashlib.sha256(orjson.dumps(profile, option=orjson.OPT_SORT_KEYS)).hexdigest()


class MonitoringTables:
    """The monitoring tables of one :class:`~wharf.storage.metadata.MetadataStore`."""

    def __init__(self, metadata: MetadataStore) -> None:
        self.metadata = metadata

    def add(self, minutes: Iterable[Minute], drift: Iterable[DriftCounts]) -> None:
        """Append serving minutes and drift counts, in one transaction."""
        rows: list[Base] = [
            MinuteRow(
                model=m.model,
                version=m.version,
                minute=m.minute,
                requests=m.requests,
                errors=m.errors,
                rows=m.rows,
                latency=m.latency,
            )
            for m in minutes
        ]
        rows += [
            DriftCountRow(
                model=d.model,
                version=d.version,
                minute=d.minute,
                reference=d.reference,
                rows=d.rows,
                counts=d.counts,
            )
            for d in drift
        ]
        if not rows:
            return
        with self.metadata.writing() as session:
            session.add_all(rows)

    def minutes(self, model: str, since: int) -> list[Minute]:
        """Every row of ``model`` from minute ``since`` on, oldest first."""
        query = (
            select(MinuteRow)
            .where(MinuteRow.model == model, MinuteRow.minute >= since)
            .order_by(MinuteRow.minute)
        )
        with self.metadata.reading() as session:
            return [
                Minute(r.model, r.version, r.minute, r.requests, r.errors, r.rows, list(r.latency))
                for r in session.scalars(query)
            ]

    def drift_counts(
        self, model: str, version: int, since: int, reference: str
    ) -> list[tuple[int, int, dict[str, list[int]]]]:
        """``(minute, rows, counts)`` of ``model:version`` from minute ``since`` on, oldest first,
        counted in the bins of the reference with digest ``reference``."""
        query = (
            select(DriftCountRow.minute, DriftCountRow.rows, DriftCountRow.counts)
            .where(
                DriftCountRow.model == model,
                DriftCountRow.version == version,
                DriftCountRow.minute >= since,
                DriftCountRow.reference == reference,
            )
            .order_by(DriftCountRow.minute)
        )
        with self.metadata.reading() as session:
            return [(int(m), int(n), dict(c)) for m, n, c in session.execute(query)]

    def prune(self, before: int) -> int:
        """Delete the minutes before minute ``before``; returns the rows deleted."""
        with self.metadata.writing() as session:
            gone = session.execute(delete(MinuteRow).where(MinuteRow.minute < before)).rowcount  # type: ignore[attr-defined]
            gone += session.execute(delete(DriftCountRow).where(DriftCountRow.minute < before)).rowcount  # type: ignore[attr-defined]
        return int(gone or 0)

    def set_reference(
        self, model: str, version: int, *, source: str, rows: int, profile: dict[str, Any]
    ) -> str:
        """Store (or replace) the drift reference of ``model:version``; returns its digest.

        :raises LookupError: no such version.
        """
        with self.metadata.writing() as session:
            version_id = session.scalar(
                select(VersionRow.id)
                .join(ModelRow, ModelRow.id == VersionRow.model_id)
                .where(ModelRow.name == model, VersionRow.version == version)
            )
            if version_id is None:
                raise LookupError(f"{model}:{version}")
            row = session.get(ReferenceRow, version_id)
            if row is None:
                row = ReferenceRow(version_id=version_id)
                session.add(row)
            digest = profile_digest(profile)
            row.source, row.rows, row.profile, row.digest = source, rows, profile, digest
            row.created_at = datetime.now(UTC)
        return digest

    def reference(self, model: str, version: int) -> StoredReference | None:
        query = (
            select(ReferenceRow)
            .join(VersionRow, VersionRow.id == ReferenceRow.version_id)
            .join(ModelRow, ModelRow.id == VersionRow.model_id)
            .where(ModelRow.name == model, VersionRow.version == version)
        )
        with self.metadata.reading() as session:
            row = session.scalar(query)
            if row is None:
                return None
            created = row.created_at if row.created_at.tzinfo else row.created_at.replace(tzinfo=UTC)
            return StoredReference(
                model, version, row.source, row.rows, dict(row.profile), row.digest, created
            )
