"""The metadata database's schema revision: Alembic migrations shipped in ``migrations/``, checked at start.

A server (any :class:`~wharf.storage.metadata.MetadataStore`) starts only on a database at this wharf's
head revision, or on an empty one, which it brings to head itself (as MLflow does): a laptop or a test
needs no setup. Any other database is refused with :class:`~wharf.errors.SchemaMismatch`: one behind
head (or one made before wharf had migrations) is upgraded by ``wharf db upgrade``, never behind an
operator's back; one ahead of head was upgraded by a newer wharf, and needs that wharf.

Check and upgrade run in one transaction under one lock, so servers starting together on a fresh
database migrate it once: PostgreSQL takes ``pg_advisory_xact_lock``, SQLite the writer's
``BEGIN IMMEDIATE`` (see :func:`wharf.storage.engine.open_engine`). Both run DDL transactionally, so
a failed migration leaves the database as it was.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import Connection, MetaData, inspect, text
from sqlalchemy.engine import Engine, make_url

from wharf.errors import SchemaMismatch
from wharf.storage.engine import open_engine

if TYPE_CHECKING:
    from alembic.config import Config
    from alembic.script import ScriptDirectory

log = logging.getLogger(__name__)

MIGRATIONS = Path(__file__).with_name("migrations")
VERSION_TABLE = "alembic_version"
LOCK_KEY = 0x77686172_66646200
"""PostgreSQL advisory lock held while the schema is checked or upgraded ("wharfdb" in hex)."""
BASELINES: tuple[tuple[str, frozenset[str]], ...] = (
    ("0002", frozenset({"model_aliases", "registry_state"})),
    ("0001", frozenset()),
)
"""For a database made before migrations: the revision whose tables it has, newest first. Servers of
git 1991830 made 0001's; a development checkout between that and the first revision made 0002's."""


@dataclass(frozen=True)
class SchemaStatus:
    """What a database holds, compared with this wharf.

    :param current: the revision recorded in ``alembic_version``; None where there is none.
    :param head: this wharf's newest revision.
    :param tables: wharf's tables found in the database (other applications' tables are ignored).
    :param known: every revision this wharf ships.
    """

    current: str | None
    head: str
    tables: frozenset[str]
    known: frozenset[str]

    @property
    def empty(self) -> bool:
        """No revision and none of wharf's tables: a new database."""
        return self.current is None and not self.tables

    @property
    def unversioned(self) -> bool:
        """wharf's tables without a revision: made before wharf had migrations."""
        return self.current is None and bool(self.tables)

    @property
    def at_head(self) -> bool:
        return self.current == self.head

    @property
    def ahead(self) -> bool:
        """A revision this wharf does not know: a newer wharf upgraded the database."""
        return self.current is not None and self.current not in self.known

    @property
    def baseline(self) -> str:
        """The revision an unversioned database's tables are at."""
        return next(rev for rev, needs in BASELINES if needs <= self.tables)

    def describe(self) -> str:
        """The revision in words, with what to do about it."""
        if self.at_head:
            return f"{self.current} (head)"
        if self.empty:
            return (
                f"none: an empty database (head is {self.head}; wharf db upgrade, or any other wharf "
                "command, creates it at head)"
            )
        if self.unversioned:
            return (
                f"none: tables from before migrations, the schema of {self.baseline} "
                f"(head is {self.head}; run wharf db upgrade)"
            )
        if self.ahead:
            return f"{self.current}, newer than this wharf (head {self.head}); upgrade wharf"
        return f"{self.current}, behind head {self.head}; run wharf db upgrade"


def config(connection: Connection | None = None) -> Config:
    """Alembic's configuration for wharf's migrations, without an ini file."""
    _quiet_alembic()
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS).replace("%", "%%"))
    cfg.set_main_option("path_separator", "os")
    cfg.attributes["connection"] = connection
    return cfg


def _quiet_alembic() -> None:
    """Before alembic is imported: it says at INFO which plugins it set up, and that SQLite's DDL is
    "non-transactional" (not here: it runs in wharf's transaction); wharf logs each upgrade itself.
    An application that set alembic's log level keeps it."""
    alembic_log = logging.getLogger("alembic")
    if alembic_log.level == logging.NOTSET:
        alembic_log.setLevel(logging.WARNING)


@functools.cache
def _scripts() -> ScriptDirectory:
    _quiet_alembic()
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(config())


def head() -> str:
    """This wharf's newest revision."""
    found = _scripts().get_current_head()
    assert found is not None, f"no migrations in {MIGRATIONS}"
    return found


def target_metadata() -> MetaData:
    """The models' metadata, every table included: what head must equal."""
    from wharf.storage import (  # noqa: F401  they declare their tables on Base
        audit,
        datasets,
        jobs,
        keys,
        monitoring,
        predictions,
    )
    from wharf.storage.metadata import Base

    return Base.metadata


def _status(connection: Connection) -> SchemaStatus:
    names = set(inspect(connection).get_table_names())
    current = None
    if VERSION_TABLE in names:
        current = connection.scalar(text(f"SELECT version_num FROM {VERSION_TABLE}"))
    known = frozenset(script.revision for script in _scripts().walk_revisions())
    return SchemaStatus(current, head(), frozenset(names & set(target_metadata().tables)), known)


@contextmanager
def _locked(engine: Engine) -> Iterator[Connection]:
    """One transaction holding the schema lock: PostgreSQL's advisory lock, SQLite's write lock."""
    with engine.execution_options(sqlite_immediate=True).begin() as connection:
        if connection.dialect.name == "postgresql":
            connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": LOCK_KEY})
        yield connection


def _upgrade(connection: Connection, status: SchemaStatus) -> None:
    from alembic import command

    cfg = config(connection)
    if status.unversioned:
        command.stamp(cfg, status.baseline)
    command.upgrade(cfg, "head")
    before = status.current or (status.baseline if status.unversioned else "an empty database")
    log.info("Upgraded the schema of %s from %s to %s", _where(connection.engine), before, status.head)


def current(engine: Engine) -> str | None:
    """The database's revision; None where it has none (empty, or made before migrations)."""
    return status(engine).current


def status(engine: Engine) -> SchemaStatus:
    """The database's revision and tables, next to this wharf's head."""
    with engine.connect() as connection:
        return _status(connection)


def upgrade(engine: Engine) -> tuple[SchemaStatus, str]:
    """Bring the database to head: stamp a database from before migrations with its revision first.

    :returns: the status found, and the revision now recorded (head).
    :raises SchemaMismatch: the database is at a revision newer than this wharf knows.
    """
    with _locked(engine) as connection:
        found = _status(connection)
        if found.ahead:
            raise _mismatch(engine, found)
        if not found.at_head:
            _upgrade(connection, found)
        return found, found.head


def check(engine: Engine) -> None:
    """At start: upgrade an empty database to head; accept one at head; refuse any other.

    :raises SchemaMismatch: the database is behind head, from before migrations, or ahead of head.
    """
    with _locked(engine) as connection:
        found = _status(connection)
        if found.empty:
            _upgrade(connection, found)
        elif not found.at_head:
            raise _mismatch(engine, found)


def masked(url: str) -> str:
    """``url`` with its password shown as ``***``."""
    return make_url(url).render_as_string(hide_password=True)


@contextmanager
def connect(url: str) -> Iterator[Engine]:
    """An engine on ``url``, set up as a metadata store sets up its own, disposed of at the end."""
    engine = open_engine(url)
    try:
        yield engine
    finally:
        engine.dispose()


def _where(engine: Engine) -> str:
    return engine.url.render_as_string(hide_password=True)


def _mismatch(engine: Engine, found: SchemaStatus) -> SchemaMismatch:
    where = _where(engine)
    if found.ahead:
        return SchemaMismatch(
            f"The database {where} is at schema revision {found.current!r}, which this wharf does not "
            f"know: its newest is {found.head!r}. A newer wharf upgraded it; upgrade wharf to use it.",
            found=found.current,
            needed=found.head,
        )
    revision = f"{found.current!r}" if found.current else f"none (made before migrations: {found.baseline!r})"
    return SchemaMismatch(
        f"The database {where} is at schema revision {revision}; this wharf needs {found.head!r}. "
        f"Back it up, then run: wharf db upgrade (with the same --database-url or WHARF_DATABASE_URL).",
        found=found.current,
        needed=found.head,
    )
