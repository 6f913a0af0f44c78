"""Uploaded datasets in the metadata database: one row per distinct stored table.

A dataset's bytes are a Parquet file in the artifact store, addressed by its sha256; the row holds
its name, where it came from, its shape and its profile. The digest is unique: the same table
uploaded twice is one row, and two uploads racing with the same bytes both end up with it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import JSON, BigInteger, DateTime, Integer, String, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Mapped, Session, mapped_column

from wharf.storage.metadata import Base

if TYPE_CHECKING:
    from wharf.storage.metadata import MetadataStore


class DatasetRow(Base):
    __tablename__ = "datasets"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(256))
    filename: Mapped[str] = mapped_column(String(256))
    format: Mapped[str] = mapped_column(String(16))
    sha256: Mapped[str] = mapped_column(String(64), unique=True)
    artifact: Mapped[str] = mapped_column(String(512), index=True)
    size: Mapped[int] = mapped_column(BigInteger)
    rows: Mapped[int] = mapped_column(BigInteger)
    columns: Mapped[int] = mapped_column(Integer)
    profile: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


@dataclass(frozen=True)
class DatasetRecord:
    """One stored dataset, detached from the database session.

    :param format: what was uploaded: ``csv``, ``json``, ``jsonl``, ``xlsx`` or ``parquet``.
    :param sha256: digest of the stored Parquet bytes (not of the upload).
    :param artifact: the Parquet file's key in the artifact store.
    :param size: bytes of the stored Parquet file.
    :param profile: :func:`wharf.services.profiling.profile_frame` of the stored table.
    :param created: True only on the record returned by the call that stored it; False when that
        call found the same table already stored, and on every record read back later.
    """

    id: int
    name: str
    filename: str
    format: str
    sha256: str
    artifact: str
    size: int
    rows: int
    columns: int
    profile: dict[str, Any]
    created_at: datetime
    created: bool = False


Records = list[DatasetRecord]
"""(``list`` is also a method name of the classes that return these.)"""


def _record(row: DatasetRow, created: bool = False) -> DatasetRecord:
    # SQLite keeps no time zone; every time wharf writes is UTC.
    created_at = row.created_at if row.created_at.tzinfo else row.created_at.replace(tzinfo=UTC)
    return DatasetRecord(
        id=row.id,
        name=row.name,
        filename=row.filename,
        format=row.format,
        sha256=row.sha256,
        artifact=row.artifact,
        size=row.size,
        rows=row.rows,
        columns=row.columns,
        profile=dict(row.profile or {}),
        created_at=created_at,
        created=created,
    )


class DatasetTable:
    """The ``datasets`` table of a :class:`~wharf.storage.metadata.MetadataStore`."""

    def __init__(self, metadata: MetadataStore) -> None:
        self.metadata = metadata

    def add(
        self,
        *,
        name: str,
        filename: str,
        format: str,
        sha256: str,
        artifact: str,
        size: int,
        rows: int,
        columns: int,
        profile: dict[str, Any],
    ) -> DatasetRecord:
        """Record a stored table; returns it with ``created=True``.

        When a dataset with ``sha256`` exists already (stored before, or by a concurrent call that
        committed first) nothing is written and that dataset is returned, with ``created=False``.
        """
        with self.metadata.writing() as session:
            existing = self._by_sha256(session, sha256)
            if existing is not None:
                return _record(existing)
            row = DatasetRow(
                name=name,
                filename=filename,
                format=format,
                sha256=sha256,
                artifact=artifact,
                size=size,
                rows=rows,
                columns=columns,
                profile=profile,
                created_at=datetime.now(UTC),
            )
            try:
                with session.begin_nested():
                    session.add(row)
            except IntegrityError:
                existing = self._by_sha256(session, sha256)
                if existing is None:  # another constraint failed: not a race on the digest
                    raise
                return _record(existing)
            return _record(row, created=True)

    @staticmethod
    def _by_sha256(session: Session, sha256: str) -> DatasetRow | None:
        return session.scalar(select(DatasetRow).where(DatasetRow.sha256 == sha256))

    def get(self, dataset_id: int) -> DatasetRecord | None:
        with self.metadata.reading() as session:
            row = session.get(DatasetRow, dataset_id)
            return None if row is None else _record(row)

    def find_by_sha256(self, sha256: str) -> DatasetRecord | None:
        with self.metadata.reading() as session:
            row = self._by_sha256(session, sha256)
            return None if row is None else _record(row)

    def list(self) -> Records:
        """Every dataset, oldest first."""
        with self.metadata.reading() as session:
            return [_record(row) for row in session.scalars(select(DatasetRow).order_by(DatasetRow.id))]

    def delete(self, dataset_id: int) -> DatasetRecord | None:
        """Delete one dataset's row; returns it, or None when there was none."""
        with self.metadata.writing() as session:
            row = session.get(DatasetRow, dataset_id)
            if row is None:
                return None
            record = _record(row)
            session.delete(row)
            return record

    def artifact_in_use(self, artifact: str) -> bool:
        with self.metadata.reading() as session:
            query = select(DatasetRow.id).where(DatasetRow.artifact == artifact).limit(1)
            return session.scalar(query) is not None
