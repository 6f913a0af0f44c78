"""Model and version metadata in SQLAlchemy 2 (SQLite by default).

Version numbers come from a per-model counter bumped with one ``UPDATE ... RETURNING`` inside the
registering transaction, so concurrent registrations of one name get distinct, contiguous numbers and
a failed registration leaves no gap and no row.

Every write that changes what a server would answer (a version added, archived or deleted, an alias
moved, a fast twin set) bumps one ``generation`` counter in the same transaction: servers and
replicas poll that one number to learn when to read the registry again.
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
    delete,
    func,
    insert,
    select,
    update,
)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, sessionmaker

from wharf.errors import Conflict, VersionNotFound
from wharf.storage import schema
from wharf.storage.engine import open_engine

ACTIVE = "active"
ARCHIVED = "archived"
STATUSES = (ACTIVE, ARCHIVED)


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
    status: Mapped[str] = mapped_column(String(16), default=ACTIVE, server_default=ACTIVE)


class AliasRow(Base):
    """A name (``production``, ``staging``) pointing at one version of a model."""

    __tablename__ = "model_aliases"
    __table_args__ = (UniqueConstraint("model_id", "alias"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    model_id: Mapped[int] = mapped_column(ForeignKey("models.id", ondelete="CASCADE"), index=True)
    alias: Mapped[str] = mapped_column(String(64))
    version: Mapped[int] = mapped_column(BigInteger)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class StateRow(Base):
    """One row: the registry's generation, bumped by every write that changes what is served."""

    __tablename__ = "registry_state"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    generation: Mapped[int] = mapped_column(BigInteger, default=0)


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
    status: str = ACTIVE
    aliases: tuple[str, ...] = ()

    @property
    def archived(self) -> bool:
        return self.status == ARCHIVED


def _record(name: str, row: VersionRow, aliases: tuple[str, ...] = ()) -> VersionRecord:
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
        status=row.status or ACTIVE,
        aliases=aliases,
    )


class MetadataStore:
    """Models and versions in one relational database.

    :param url: a SQLAlchemy URL; ``sqlite:///path`` or ``postgresql+psycopg://...``. An empty
        database is given wharf's tables (see :mod:`wharf.storage.schema`).
    :raises SchemaMismatch: the database is at another schema revision than this wharf's.
    """

    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = open_engine(url)
        writer = self.engine.execution_options(sqlite_immediate=True)
        self._read = sessionmaker(self.engine, expire_on_commit=False)
        self._write = sessionmaker(writer, expire_on_commit=False)
        from wharf.storage.audit import AuditTable
        from wharf.storage.datasets import DatasetTable
        from wharf.storage.jobs import JobTable
        from wharf.storage.keys import KeyTable
        from wharf.storage.monitoring import MonitoringTables
        from wharf.storage.predictions import PredictionTable

        self.datasets = DatasetTable(self)
        self.jobs = JobTable(self)
        self.keys = KeyTable(self)
        self.audit = AuditTable(self)
        self.predictions = PredictionTable(self)
        self.monitoring = MonitoringTables(self)
        try:
            schema.check(self.engine)  # an empty database is migrated to head; any other not at head refused
        except BaseException:
            self.engine.dispose()
            raise

    def reading(self) -> Session:
        """A session for reads: ``with metadata.reading() as session``."""
        return self._read()

    def writing(self) -> AbstractContextManager[Session]:
        """A begun write transaction, committed at the end: ``with metadata.writing() as session``."""
        return self._write.begin()

    def close(self) -> None:
        self.engine.dispose()

    # -- writes ------------------------------------------------------------------------------

    @staticmethod
    def _lock_model(session: Session, name: str) -> None:
        """Lock ``name``'s row until the transaction ends, so alias moves, archives and deletes of one
        model take turns (PostgreSQL's ``FOR UPDATE``; SQLite's writers already do)."""
        session.execute(select(ModelRow.id).where(ModelRow.name == name).with_for_update())

    @staticmethod
    def _bump(session: Session) -> None:
        """Count one change of what is served, in the caller's transaction."""
        session.execute(update(StateRow).values(generation=StateRow.generation + 1))

    def add_version(self, name: str, **fields: Any) -> VersionRecord:
        """Create the next version of ``name`` (creating the model on its first version)."""
        now = datetime.now(UTC)
        with self._write.begin() as session:
            model_id, number = self._next_version(session, name, now)
            row = VersionRow(model_id=model_id, version=number, created_at=now, status=ACTIVE, **fields)
            session.add(row)
            session.flush()
            self._bump(session)
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
            self._bump(session)

    def edit_version(
        self,
        name: str,
        version: int,
        *,
        description: str | None = None,
        tags: dict[str, str | None] | None = None,
    ) -> VersionRecord | None:
        """Replace the description and merge ``tags`` (a None value removes its tag); None: no version."""
        with self._write.begin() as session:
            row = session.scalar(self._version_query(name).where(VersionRow.version == version))
            if row is None:
                return None
            if description is not None:
                row.description = description
            if tags is not None:
                merged = {**(row.tags or {}), **tags}
                row.tags = {k: v for k, v in merged.items() if v is not None}
            return _record(name, row, self._aliases_of(session, row.model_id).get(version, ()))

    def set_status(self, name: str, version: int, status: str) -> VersionRecord | None:
        """Archive (``archived``) or restore (``active``) a version; None: no such version.

        :raises Conflict: archiving a version an alias points at.
        """
        with self._write.begin() as session:
            self._lock_model(session, name)
            row = session.scalar(self._version_query(name).where(VersionRow.version == version))
            if row is None:
                return None
            aliases = self._aliases_of(session, row.model_id).get(version, ())
            if status == ARCHIVED and aliases:
                raise Conflict(
                    f"{name}:{version} is the target of {_names(aliases)}; move or delete "
                    f"{'them' if len(aliases) > 1 else 'it'} before archiving it.",
                    field="version",
                )
            if row.status != status:
                row.status = status
                self._bump(session)
            return _record(name, row, aliases)

    def delete_version(self, name: str, version: int) -> VersionRecord | None:
        """Delete one version; returns it, or None when there was none.

        :raises Conflict: an alias points at it.
        """
        with self._write.begin() as session:
            self._lock_model(session, name)
            row = session.scalar(self._version_query(name).where(VersionRow.version == version))
            if row is None:
                return None
            aliases = self._aliases_of(session, row.model_id).get(version, ())
            if aliases:
                raise Conflict(
                    f"{name}:{version} is the target of {_names(aliases)}; move or delete "
                    f"{'them' if len(aliases) > 1 else 'it'} before deleting it.",
                    field="version",
                )
            record = _record(name, row)
            session.delete(row)
            self._bump(session)
            return record

    def delete_model(self, name: str) -> list[VersionRecord]:
        """Delete all versions of a model; returns them.

        The model's row stays, holding its version counter: a name registered again continues at
        the next number, so ``name:version`` never means two different artifacts (caches in other
        workers and replicas are keyed by it).

        :raises Conflict: an alias points at one of its versions.
        """
        with self._write.begin() as session:
            self._lock_model(session, name)
            rows = session.scalars(self._version_query(name)).all()
            if rows:
                aliases = sorted(
                    a for names in self._aliases_of(session, rows[0].model_id).values() for a in names
                )
                if aliases:
                    raise Conflict(
                        f"Model {name!r} has the {_names(aliases)}; delete "
                        f"{'them' if len(aliases) > 1 else 'it'} before deleting the model.",
                        field="name",
                    )
            records = [_record(name, row) for row in rows]
            session.execute(delete(VersionRow).where(VersionRow.id.in_([r.id for r in rows])))
            self._bump(session)
            return records

    def set_alias(self, name: str, alias: str, version: int) -> int | None:
        """Point ``alias`` of ``name`` at ``version``, in one transaction; returns where it pointed.

        :raises VersionNotFound: no such version.
        :raises Conflict: the version is archived.
        """
        now = datetime.now(UTC)
        with self._write.begin() as session:
            self._lock_model(session, name)
            row = session.scalar(self._version_query(name).where(VersionRow.version == version))
            if row is None:
                raise VersionNotFound(f"Model {name!r} has no version {version}.", field="version")
            if row.status == ARCHIVED:
                raise Conflict(
                    f"{name}:{version} is archived; restore it before an alias points at it.", field="version"
                )
            current = session.scalar(
                select(AliasRow).where(AliasRow.model_id == row.model_id, AliasRow.alias == alias)
            )
            if current is None:
                session.add(AliasRow(model_id=row.model_id, alias=alias, version=version, updated_at=now))
                previous = None
            else:
                previous, current.version, current.updated_at = current.version, version, now
            self._bump(session)
            return previous

    def delete_alias(self, name: str, alias: str) -> int | None:
        """Remove ``alias`` of ``name``; returns the version it pointed at, or None if it did not exist."""
        with self._write.begin() as session:
            self._lock_model(session, name)
            model_id = select(ModelRow.id).where(ModelRow.name == name).scalar_subquery()
            found = session.execute(
                delete(AliasRow)
                .where(AliasRow.model_id == model_id, AliasRow.alias == alias)
                .returning(AliasRow.version)
            ).first()
            if found is None:
                return None
            self._bump(session)
            return int(found[0])

    # -- reads -------------------------------------------------------------------------------

    @staticmethod
    def _version_query(name: str) -> Any:
        return select(VersionRow).join(ModelRow).where(ModelRow.name == name)

    @staticmethod
    def _aliases_of(session: Session, model_id: int) -> dict[int, tuple[str, ...]]:
        """A model's aliases by the version they point at."""
        found: dict[int, list[str]] = {}
        query = select(AliasRow.version, AliasRow.alias).where(AliasRow.model_id == model_id)
        for version, alias in session.execute(query.order_by(AliasRow.alias)):
            found.setdefault(version, []).append(alias)
        return {version: tuple(names) for version, names in found.items()}

    def generation(self) -> int:
        """The registry's change counter (see the module's docstring)."""
        with self._read() as session:
            return int(session.scalar(select(StateRow.generation)) or 0)

    def model_names(self, search: str | None = None) -> list[str]:
        """Names of the models that have at least one version, containing ``search`` if given."""
        query = select(ModelRow.name).where(ModelRow.id.in_(select(VersionRow.model_id)))
        if search:
            escaped = search.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            query = query.where(ModelRow.name.ilike(f"%{escaped}%", escape="\\"))
        with self._read() as session:
            return list(session.scalars(query.order_by(ModelRow.name)))

    def model_exists(self, name: str) -> bool:
        """Whether ``name`` has at least one version (a model lives while it has versions)."""
        with self._read() as session:
            return session.scalar(self._version_query(name).limit(1)) is not None

    def versions(self, name: str) -> list[VersionRecord]:
        """Versions of ``name``, oldest first."""
        query = self._version_query(name).order_by(VersionRow.version)
        with self._read() as session:
            rows = session.scalars(query).all()
            aliases = self._aliases_of(session, rows[0].model_id) if rows else {}
            return [_record(name, row, aliases.get(row.version, ())) for row in rows]

    def version(self, name: str, version: int | None = None) -> VersionRecord | None:
        """Version ``version`` of ``name``, or its latest active one when ``version`` is None."""
        query = self._version_query(name)
        if version is None:
            query = query.where(VersionRow.status == ACTIVE).order_by(VersionRow.version.desc()).limit(1)
        else:
            query = query.where(VersionRow.version == version)
        with self._read() as session:
            row = session.scalar(query)
            if row is None:
                return None
            return _record(name, row, self._aliases_of(session, row.model_id).get(row.version, ()))

    def aliases(self, name: str) -> dict[str, int]:
        """``name``'s aliases and the versions they point at."""
        query = select(AliasRow.alias, AliasRow.version).join(ModelRow).where(ModelRow.name == name)
        with self._read() as session:
            return {alias: int(version) for alias, version in session.execute(query.order_by(AliasRow.alias))}

    def routes(self) -> tuple[dict[str, int], dict[tuple[str, str], int]]:
        """What every name serves: each model's latest active version, and every alias's version."""
        latest = (
            select(ModelRow.name, func.max(VersionRow.version))
            .join(VersionRow)
            .where(VersionRow.status == ACTIVE)
            .group_by(ModelRow.name)
        )
        aliases = select(ModelRow.name, AliasRow.alias, AliasRow.version).join(AliasRow)
        with self._read() as session:
            return (
                {name: int(number) for name, number in session.execute(latest)},
                {(name, alias): int(number) for name, alias, number in session.execute(aliases)},
            )

    def artifact_in_use(self, artifact: str) -> bool:
        with self._read() as session:
            return (
                session.scalar(select(VersionRow.id).where(VersionRow.artifact == artifact).limit(1))
                is not None
            )


def _names(aliases: tuple[str, ...] | list[str]) -> str:
    quoted = ", ".join(repr(alias) for alias in aliases)
    return f"alias{'es' if len(aliases) > 1 else ''} {quoted}"
