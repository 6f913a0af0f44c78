"""The prediction log in the metadata database: a sample of prediction requests, their inputs and
outputs, kept for audit until they are older than the retention.

Rows are added in batches by :class:`~wharf.services.predictionlog.PredictionLog`'s writer, read
newest first per model (the ``(model, at)`` index answers that), and pruned by age in chunks, so a
large prune never holds one long lock.

Times are stored and compared in UTC: SQLite keeps no offset, so bounds given in another zone are
converted before they reach a query.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import JSON, DateTime, Index, Integer, Select, String, delete, func, insert, select
from sqlalchemy.orm import Mapped, mapped_column

from wharf.storage.metadata import Base

if TYPE_CHECKING:
    from wharf.storage.metadata import MetadataStore

MODEL_LENGTH = 256
REQUEST_ID_LENGTH = 128
KEY_ID_LENGTH = 8
PRUNE_CHUNK = 5000
"""Rows deleted per transaction by :meth:`PredictionTable.prune`."""


class PredictionRow(Base):
    __tablename__ = "prediction_log"
    __table_args__ = (Index("ix_prediction_log_model_at", "model", "at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    model: Mapped[str] = mapped_column(String(MODEL_LENGTH))
    version: Mapped[int] = mapped_column(Integer)
    request_id: Mapped[str | None] = mapped_column(String(REQUEST_ID_LENGTH), nullable=True)
    key_id: Mapped[str | None] = mapped_column(String(KEY_ID_LENGTH), nullable=True)
    """None where the server runs without authentication."""
    inputs: Mapped[Any] = mapped_column(JSON, nullable=False)
    outputs: Mapped[Any] = mapped_column(JSON, nullable=False)


def utc(moment: datetime) -> datetime:
    """``moment`` in UTC; a naive one is taken to be UTC already."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


@dataclass(frozen=True)
class PredictionRecord:
    """One logged prediction, detached from the database session.

    :param at: when the prediction was answered (UTC).
    :param inputs: what the client sent, as JSON (see :mod:`wharf.services.predictionlog` for how a
        large body is cut short).
    :param outputs: what the server answered, as JSON.
    """

    id: int
    at: datetime
    model: str
    version: int
    request_id: str | None
    key_id: str | None
    inputs: Any
    outputs: Any

    @classmethod
    def of(cls, row: PredictionRow) -> PredictionRecord:
        return cls(
            id=row.id,
            at=utc(row.at),
            model=row.model,
            version=row.version,
            request_id=row.request_id,
            key_id=row.key_id,
            inputs=row.inputs,
            outputs=row.outputs,
        )


def _filtered(
    query: Select[Any], model: str, version: int | None, since: datetime | None, until: datetime | None
) -> Select[Any]:
    """``query`` kept to ``model`` (and ``version``), from ``since`` (inclusive) to ``until`` (exclusive)."""
    query = query.where(PredictionRow.model == model)
    if version is not None:
        query = query.where(PredictionRow.version == version)
    if since is not None:
        query = query.where(PredictionRow.at >= utc(since))
    if until is not None:
        query = query.where(PredictionRow.at < utc(until))
    return query


def _cut(text: str | None, length: int) -> str | None:
    return None if text is None else text[:length]


class PredictionTable:
    """The ``prediction_log`` table of one :class:`~wharf.storage.metadata.MetadataStore`."""

    def __init__(self, metadata: MetadataStore) -> None:
        self.metadata = metadata

    def add_many(self, records: list[dict[str, Any]]) -> int:
        """Insert ``records`` in one transaction; returns how many.

        Each is a dict of ``at`` (a datetime; naive means UTC), ``model``, ``version``, ``inputs``,
        ``outputs`` and optionally ``request_id`` and ``key_id``; text longer than its column is cut
        to fit.
        """
        if not records:
            return 0
        rows = [
            {
                "at": utc(record["at"]),
                "model": record["model"][:MODEL_LENGTH],
                "version": record["version"],
                "request_id": _cut(record.get("request_id"), REQUEST_ID_LENGTH),
                "key_id": _cut(record.get("key_id"), KEY_ID_LENGTH),
                "inputs": record["inputs"],
                "outputs": record["outputs"],
            }
            for record in records
        ]
        with self.metadata.writing() as session:
            session.execute(insert(PredictionRow), rows)
        return len(rows)

    def recent(
        self,
        model: str,
        *,
        version: int | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> list[PredictionRecord]:
        """``model``'s entries newest first, of one version and within ``[since, until)`` when given."""
        query = _filtered(select(PredictionRow), model, version, since, until)
        query = query.order_by(PredictionRow.at.desc(), PredictionRow.id.desc()).limit(limit).offset(offset)
        with self.metadata.reading() as session:
            return [PredictionRecord.of(row) for row in session.scalars(query)]

    def count(
        self,
        model: str,
        *,
        version: int | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> int:
        """How many entries :meth:`recent` would page through."""
        query = _filtered(select(func.count(PredictionRow.id)), model, version, since, until)
        with self.metadata.reading() as session:
            return int(session.scalar(query) or 0)

    def prune(self, before: datetime) -> int:
        """Delete the entries older than ``before``, :data:`PRUNE_CHUNK` rows per transaction;
        returns how many."""
        old = select(PredictionRow.id).where(PredictionRow.at < utc(before)).limit(PRUNE_CHUNK)
        deleted = 0
        while True:
            with self.metadata.writing() as session:
                result = session.execute(delete(PredictionRow).where(PredictionRow.id.in_(old)))
                count = int(getattr(result, "rowcount", 0) or 0)
            deleted += count
            if count < PRUNE_CHUNK:
                return deleted
