"""Model and version metadata in SQLAlchemy 2 (SQLite by default).

Version numbers come from a per-model counter bumped with one ``UPDATE ... RETURNING`` inside the
registering transaction, so concurrent registrations of one name get distinct, contiguous numbers and
a failed registration leaves no gap and no row.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    DateTime,
    ForeignKey,
    Integer,
    String,
    Text,
    UniqueConstraint,
    create_engine,
    delete,
    event,
    insert,
    select,
    update,
)
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, sessionmaker

SQLITE_BUSY_MS = 30_000


class Base(DeclarativeBase):
    pass


class ModelRow(Base):
    __tablename__ = "models"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(128), unique=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    last_version: Mapped[int] = mapped_column(BigInteger, default=0)


class VersionRow(Base):
    __tablename__ = "model_versions"
    __table_args__ = (UniqueConstraint("model_id", "version"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    model_id: Mapped[int] = mapped_column(ForeignKey("models.id", ondelete="CASCADE"), index=True)
    version: Mapped[int] = mapped_column(BigInteger)
    format: Mapped[str] = mapped_column(String(32))
    signature: Mapped[dict[str, Any]] = mapped_column(JSON)
    sha256: Mapped[str] = mapped_column(String(64))
    size: Mapped[int] = mapped_column(BigInteger)
    artifact: Mapped[str] = mapped_column(String(512))
    filename: Mapped[str] = mapped_column(String(256))
    description: Mapped[str] = mapped_column(Text, default="")
    tags: Mapped[dict[str, str]] = mapped_column(JSON, default=dict)
    library_versions: Mapped[dict[str, str]] = mapped_column(JSON, default=dict)
    warnings: Mapped[list[str]] = mapped_column(JSON, default=list)
    extra: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


@dataclass(frozen=True)
class VersionRecord:
    """One stored version, detached from the database session."""

    name: str
    version: int
    format: str
    signature: dict[str, Any]
    sha256: str
    size: int
    artifact: str
    filename: str
    created_at: datetime
    description: str = ""
    tags: dict[str, str] = field(default_factory=dict)
    library_versions: dict[str, str] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)


def _record(name: str, row: VersionRow) -> VersionRecord:
    created = row.created_at if row.created_at.tzinfo else row.created_at.replace(tzinfo=UTC)
    return VersionRecord(
        name=name,
        version=row.version,
        format=row.format,
        signature=row.signature,
        sha256=row.sha256,
        size=row.size,
        artifact=row.artifact,
        filename=row.filename,
        created_at=created,
        description=row.description,
        tags=dict(row.tags or {}),
        library_versions=dict(row.library_versions or {}),
        warnings=list(row.warnings or []),
        extra=dict(row.extra or {}),
    )


def _sqlite_engine(url: str) -> Engine:
    engine = create_engine(url, connect_args={"timeout": SQLITE_BUSY_MS / 1000, "check_same_thread": False})

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy, not the driver, decide when transactions begin (SQLAlchemy's pysqlite recipe).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_MS}")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        # Writers take the lock up front so two registrations never deadlock upgrading a read lock.
        immediate = connection.get_execution_options().get("sqlite_immediate", False)
        connection.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

    return engine


class MetadataStore:
    """Models and versions in one relational database.

    :param url: a SQLAlchemy URL; ``sqlite:///path`` or ``postgresql+psycopg://...``.
    """

    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = (
            _sqlite_engine(url) if url.startswith("sqlite") else create_engine(url, pool_pre_ping=True)
        )
        writer = self.engine.execution_options(sqlite_immediate=True)
        self._read = sessionmaker(self.engine, expire_on_commit=False)
        self._write = sessionmaker(writer, expire_on_commit=False)
        # In one write transaction: servers starting together on a fresh SQLite file queue here,
        # where checking for tables in a read transaction and then creating them fails with
        # "database is locked" in all but one of them.
        from wharf.storage.audit import AuditTable
        from wharf.storage.datasets import DatasetTable
        from wharf.storage.jobs import JobTable
        from wharf.storage.keys import KeyTable

        self.datasets = DatasetTable(self)
        self.jobs = JobTable(self)
        self.keys = KeyTable(self)
        self.audit = AuditTable(self)
        with writer.begin() as connection:
            Base.metadata.create_all(connection)

    def reading(self) -> Session:
        """A session for reads: ``with metadata.reading() as session``."""
        return self._read()

    def writing(self) -> AbstractContextManager[Session]:
        """A begun write transaction, committed at the end: ``with metadata.writing() as session``."""
        return self._write.begin()

    def close(self) -> None:
        self.engine.dispose()

    # -- writes ------------------------------------------------------------------------------

    def add_version(self, name: str, **fields: Any) -> VersionRecord:
        """Create the next version of ``name`` (creating the model on its first version)."""
        now = datetime.now(UTC)
        with self._write.begin() as session:
            model_id, number = self._next_version(session, name, now)
            row = VersionRow(model_id=model_id, version=number, created_at=now, **fields)
            session.add(row)
            session.flush()
            return _record(name, row)

    def _next_version(self, session: Session, name: str, now: datetime) -> tuple[int, int]:
        bump = (
            update(ModelRow)
            .where(ModelRow.name == name)
            .values(last_version=ModelRow.last_version + 1)
            .returning(ModelRow.id, ModelRow.last_version)
        )
        found = session.execute(bump).first()
        if found is None:
            try:
                with session.begin_nested():
                    session.execute(insert(ModelRow).values(name=name, created_at=now, last_version=0))
            except IntegrityError:
                pass  # another registration created the model first; bump its counter below
            found = session.execute(bump).one()
        return found[0], found[1]

    def set_warnings(self, name: str, version: int, warnings: list[str]) -> None:
        with self._write.begin() as session:
            model_id = select(ModelRow.id).where(ModelRow.name == name).scalar_subquery()
            session.execute(
                update(VersionRow)
                .where(VersionRow.model_id == model_id, VersionRow.version == version)
                .values(warnings=warnings)
            )

    def update_extra(self, name: str, version: int, changes: dict[str, Any]) -> None:
        """Merge ``changes`` into a version's ``extra``; a None value removes its key."""
        with self._write.begin() as session:
            row = session.scalar(self._version_query(name).where(VersionRow.version == version))
            if row is None:
                return
            merged = {**(row.extra or {}), **changes}
            row.extra = {k: v for k, v in merged.items() if v is not None}

    def delete_version(self, name: str, version: int) -> VersionRecord | None:
        """Delete one version; returns it, or None when there was none."""
        with self._write.begin() as session:
            row = session.scalar(self._version_query(name).where(VersionRow.version == version))
            if row is None:
                return None
            record = _record(name, row)
            session.delete(row)
            return record

    def delete_model(self, name: str) -> list[VersionRecord]:
        """Delete all versions of a model; returns them.

        The model's row stays, holding its version counter: a name registered again continues at
        the next number, so ``name:version`` never means two different artifacts (caches in other
        workers and replicas are keyed by it).
        """
        with self._write.begin() as session:
            rows = session.scalars(self._version_query(name)).all()
            records = [_record(name, row) for row in rows]
            session.execute(delete(VersionRow).where(VersionRow.id.in_([r.id for r in rows])))
            return records

    # -- reads -------------------------------------------------------------------------------

    @staticmethod
    def _version_query(name: str) -> Any:
        return select(VersionRow).join(ModelRow).where(ModelRow.name == name)

    def model_names(self) -> list[str]:
        """Names of the models that have at least one version."""
        query = (
            select(ModelRow.name).where(ModelRow.id.in_(select(VersionRow.model_id))).order_by(ModelRow.name)
        )
        with self._read() as session:
            return list(session.scalars(query))

    def model_exists(self, name: str) -> bool:
        """Whether ``name`` has at least one version (a model lives while it has versions)."""
        with self._read() as session:
            return session.scalar(self._version_query(name).limit(1)) is not None

    def versions(self, name: str) -> list[VersionRecord]:
        with self._read() as session:
            rows = session.scalars(self._version_query(name).order_by(VersionRow.version))
            return [_record(name, row) for row in rows]

    def version(self, name: str, version: int | None = None) -> VersionRecord | None:
        """Version ``version`` of ``name``, or its latest when ``version`` is None."""
        query = self._version_query(name)
        if version is None:
            query = query.order_by(VersionRow.version.desc()).limit(1)
        else:
            query = query.where(VersionRow.version == version)
        with self._read() as session:
            row = session.scalar(query)
            return None if row is None else _record(name, row)

    def artifact_in_use(self, artifact: str) -> bool:
        with self._read() as session:
            return (
                session.scalar(select(VersionRow.id).where(VersionRow.artifact == artifact).limit(1))
                is not None
            )
