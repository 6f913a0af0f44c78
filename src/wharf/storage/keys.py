"""API keys in the metadata database: who they are, never what their secret is.

A key's row holds its public id, the sha256 of the whole key string, its role, the models it is
limited to, and its life: created, expires, revoked, last used. The secret itself is never written.
Creating the first key of a database (:meth:`KeyTable.add_if_none`) is one write transaction that
counts and inserts, so servers starting together on one database create one bootstrap key.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import JSON, DateTime, String, func, select, text, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Mapped, Session, mapped_column

from wharf.storage.metadata import Base

if TYPE_CHECKING:
    from wharf.storage.metadata import MetadataStore


class KeyRow(Base):
    __tablename__ = "api_keys"

    id: Mapped[str] = mapped_column(String(8), primary_key=True)
    """Eight lowercase hex characters: the public part of ``wharf_<id>_<secret>``."""
    digest: Mapped[str] = mapped_column(String(64))
    """sha256 hex of the whole key string."""
    role: Mapped[str] = mapped_column(String(16))
    models: Mapped[list[str] | None] = mapped_column(JSON, nullable=True)
    """The model names the key may use; None for every model."""
    name: Mapped[str] = mapped_column(String(256), default="")
    created_by: Mapped[str] = mapped_column(String(64))
    """The id of the key that created it, or ``cli``, ``settings``, ``bootstrap``, ``anonymous``."""
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    last_used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


def _aware(value: datetime | None) -> datetime | None:
    """SQLite hands datetimes back without their zone; they were written in UTC."""
    return value if value is None or value.tzinfo else value.replace(tzinfo=UTC)


@dataclass(frozen=True)
class KeyRecord:
    """One API key, detached from the database session; it holds neither the secret nor its digest.

    :param models: the model names the key is limited to (sorted), or None for every model.
    """

    id: str
    role: str
    models: tuple[str, ...] | None
    name: str
    created_by: str
    created_at: datetime
    expires_at: datetime | None = None
    revoked_at: datetime | None = None
    last_used_at: datetime | None = None

    @property
    def revoked(self) -> bool:
        return self.revoked_at is not None

    def expired(self, now: datetime | None = None) -> bool:
        return self.expires_at is not None and self.expires_at <= (now or datetime.now(UTC))

    def active(self, now: datetime | None = None) -> bool:
        """Neither revoked nor expired: the key authenticates."""
        return not self.revoked and not self.expired(now)

    @classmethod
    def of(cls, row: KeyRow) -> KeyRecord:
        return cls(
            id=row.id,
            role=row.role,
            models=None if row.models is None else tuple(row.models),
            name=row.name,
            created_by=row.created_by,
            created_at=_aware(row.created_at) or row.created_at,
            expires_at=_aware(row.expires_at),
            revoked_at=_aware(row.revoked_at),
            last_used_at=_aware(row.last_used_at),
        )


Records = list[KeyRecord]
"""(``list`` is also a method name of the classes that return these.)"""
Names = list[str]


class KeyTable:
    """The ``api_keys`` table of one :class:`~wharf.storage.metadata.MetadataStore`."""

    def __init__(self, metadata: MetadataStore) -> None:
        self.metadata = metadata

    @staticmethod
    def _row(
        key_id: str,
        digest: str,
        role: str,
        models: Names | None,
        name: str,
        created_by: str,
        expires_at: datetime | None,
    ) -> KeyRow:
        return KeyRow(
            id=key_id,
            digest=digest,
            role=role,
            models=None if models is None else sorted(set(models)),
            name=name,
            created_by=created_by,
            created_at=datetime.now(UTC),
            expires_at=expires_at,
        )

    def add(
        self,
        key_id: str,
        digest: str,
        role: str,
        *,
        models: Names | None = None,
        name: str = "",
        created_by: str = "cli",
        expires_at: datetime | None = None,
    ) -> KeyRecord | None:
        """Store a new key; None when ``key_id`` is already taken (nothing is written)."""
        row = self._row(key_id, digest, role, models, name, created_by, expires_at)
        try:
            with self.metadata.writing() as session:
                session.add(row)
                session.flush()
                return KeyRecord.of(row)
        except IntegrityError:
            return None

    def add_if_none(
        self,
        key_id: str,
        digest: str,
        role: str,
        *,
        name: str = "",
        created_by: str = "bootstrap",
    ) -> KeyRecord | None:
        """Store a key only when the table holds none at all (revoked ones count); else None.

        Count and insert share one write transaction: SQLite's ``BEGIN IMMEDIATE`` (see
        :meth:`MetadataStore.writing`) queues concurrent callers, and PostgreSQL is told to lock the
        table, so of several servers starting together exactly one creates the key.
        """
        row = self._row(key_id, digest, role, None, name, created_by, None)
        with self.metadata.writing() as session:
            self._lock(session)
            if session.scalar(select(func.count(KeyRow.id))):
                return None
            session.add(row)
            session.flush()
            return KeyRecord.of(row)

    @staticmethod
    def _lock(session: Session) -> None:
        if session.get_bind().dialect.name == "postgresql":
            session.execute(text(f"LOCK TABLE {KeyRow.__tablename__} IN SHARE ROW EXCLUSIVE MODE"))

    def get(self, key_id: str) -> KeyRecord | None:
        with self.metadata.reading() as session:
            row = session.get(KeyRow, key_id)
            return None if row is None else KeyRecord.of(row)

    def credential(self, key_id: str) -> tuple[KeyRecord, str] | None:
        """The key and its stored digest, for verifying a presented key; None when there is none."""
        with self.metadata.reading() as session:
            row = session.get(KeyRow, key_id)
            return None if row is None else (KeyRecord.of(row), row.digest)

    def list(self, include_revoked: bool = True) -> Records:
        """Keys, oldest first."""
        query = select(KeyRow).order_by(KeyRow.created_at, KeyRow.id)
        if not include_revoked:
            query = query.where(KeyRow.revoked_at.is_(None))
        with self.metadata.reading() as session:
            return [KeyRecord.of(row) for row in session.scalars(query)]

    def count(self) -> int:
        """Keys of every state, revoked and expired included."""
        with self.metadata.reading() as session:
            return int(session.scalar(select(func.count(KeyRow.id))) or 0)

    def revoke(self, key_id: str) -> KeyRecord | None:
        """Revoke a key (a revoked key keeps its first ``revoked_at``); None when there is none."""
        self._update(KeyRow.id == key_id, KeyRow.revoked_at.is_(None), revoked_at=datetime.now(UTC))
        return self.get(key_id)

    def touch(self, key_id: str, now: datetime, every_seconds: float) -> bool:
        """Set ``last_used_at`` to ``now`` unless it is already within ``every_seconds`` of it.

        Returns whether it changed. The condition is in the ``UPDATE``, so replicas touching one key
        together write it once.
        """
        stale = now - timedelta(seconds=every_seconds)
        return self._update(
            KeyRow.id == key_id,
            (KeyRow.last_used_at.is_(None)) | (KeyRow.last_used_at < stale),
            last_used_at=now,
        )

    def _update(self, *where: Any, **values: Any) -> bool:
        with self.metadata.writing() as session:
            changed = session.execute(update(KeyRow).where(*where).values(**values))
            return bool(changed.rowcount == 1)  # type: ignore[attr-defined]
