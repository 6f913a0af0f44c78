"""The audit log in the metadata database: who did what to which thing, when, from where, and how it went.

Rows are only ever added; they are read newest first, by key and by action (``models`` matches
``models.register`` and ``models.delete``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import JSON, DateTime, Integer, Select, String, func, or_, select
from sqlalchemy.orm import Mapped, mapped_column

from wharf.storage.metadata import Base

if TYPE_CHECKING:
    from wharf.storage.metadata import MetadataStore

ACTION_LENGTH = 64
TARGET_LENGTH = 256
ADDRESS_LENGTH = 64


class AuditRow(Base):
    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    key_id: Mapped[str | None] = mapped_column(String(8), nullable=True, index=True)
    """None where the server runs without authentication."""
    role: Mapped[str | None] = mapped_column(String(16), nullable=True)
    action: Mapped[str] = mapped_column(String(ACTION_LENGTH), index=True)
    target: Mapped[str] = mapped_column(String(TARGET_LENGTH), default="")
    status: Mapped[int] = mapped_column(Integer)
    remote_addr: Mapped[str | None] = mapped_column(String(ADDRESS_LENGTH), nullable=True)
    detail: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


@dataclass(frozen=True)
class AuditRecord:
    """One audit entry, detached from the database session.

    :param action: ``noun.verb``, e.g. ``models.register``, ``keys.revoke``, ``jobs.submit``.
    :param target: what it was done to, e.g. ``iris:3``, ``dataset 4``, ``key ab12cd34``.
    :param status: the HTTP status the request was answered with.
    """

    id: int
    at: datetime
    key_id: str | None
    role: str | None
    action: str
    target: str
    status: int
    remote_addr: str | None = None
    detail: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def of(cls, row: AuditRow) -> AuditRecord:
        return cls(
            id=row.id,
            at=row.at if row.at.tzinfo else row.at.replace(tzinfo=UTC),
            key_id=row.key_id,
            role=row.role,
            action=row.action,
            target=row.target,
            status=row.status,
            remote_addr=row.remote_addr,
            detail=dict(row.detail or {}),
        )


def _filtered(query: Select[Any], key_id: str | None, action: str | None) -> Select[Any]:
    if key_id is not None:
        query = query.where(AuditRow.key_id == key_id)
    if action is not None:
        query = query.where(
            or_(AuditRow.action == action, AuditRow.action.startswith(f"{action}.", autoescape=True))
        )
    return query


class AuditTable:
    """The ``audit_log`` table of one :class:`~wharf.storage.metadata.MetadataStore`."""

    def __init__(self, metadata: MetadataStore) -> None:
        self.metadata = metadata

    def add(
        self,
        action: str,
        target: str,
        status: int,
        *,
        key_id: str | None = None,
        role: str | None = None,
        remote_addr: str | None = None,
        detail: dict[str, Any] | None = None,
    ) -> AuditRecord:
        """Append one entry (text longer than its column is cut to fit)."""
        row = AuditRow(
            at=datetime.now(UTC),
            key_id=key_id,
            role=role,
            action=action[:ACTION_LENGTH],
            target=target[:TARGET_LENGTH],
            status=status,
            remote_addr=None if remote_addr is None else remote_addr[:ADDRESS_LENGTH],
            detail=detail or {},
        )
        with self.metadata.writing() as session:
            session.add(row)
            session.flush()
            return AuditRecord.of(row)

    def recent(
        self,
        limit: int = 100,
        offset: int = 0,
        *,
        key_id: str | None = None,
        action: str | None = None,
    ) -> list[AuditRecord]:
        """Entries newest first, of one key and one action (or action family) when given."""
        query = _filtered(select(AuditRow), key_id, action)
        query = query.order_by(AuditRow.id.desc()).limit(limit).offset(offset)
        with self.metadata.reading() as session:
            return [AuditRecord.of(row) for row in session.scalars(query)]

    def count(self, *, key_id: str | None = None, action: str | None = None) -> int:
        query = _filtered(select(func.count(AuditRow.id)), key_id, action)
        with self.metadata.reading() as session:
            return int(session.scalar(query) or 0)
