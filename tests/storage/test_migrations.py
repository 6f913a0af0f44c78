"""Schema migrations on SQLite and PostgreSQL: new databases at head, old ones upgraded with their rows,
databases at another revision refused at start, and servers starting together on one new database."""

from __future__ import annotations

import multiprocessing
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from click.testing import CliRunner
from sqlalchemy import MetaData, Table, insert, inspect, text
from sqlalchemy.engine import Engine, make_url

from wharf.cli import cli
from wharf.errors import SchemaMismatch
from wharf.storage import MetadataStore, schema

NOW = datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)
HEAD = "0004"
SINCE_0002 = frozenset({"prediction_log", "monitor_minutes", "drift_minutes", "drift_references"})
"""Tables added by the revisions after 0002."""
SIGNATURE = {
    "inputs": [{"name": "x", "dtype": "float64", "nullable": False}],
    "output": {"kind": "regression"},
}
ADD_FIELDS = ("format", "signature", "sha256", "size", "artifact", "filename")


def migrate(url: str, revision: str) -> None:
    """Run the migrations up to ``revision`` alone, as an older wharf would have."""
    with schema.connect(url) as engine, engine.begin() as connection:
        command.upgrade(schema.config(connection), revision)


def sql(url: str, *statements: str) -> None:
    with schema.connect(url) as engine, engine.begin() as connection:
        for statement in statements:
            connection.execute(text(statement))


def columns(engine: Engine) -> dict[str, dict[str, bool]]:
    """Every table's columns and whether each is nullable, as the database has them."""
    found = inspect(engine)
    return {
        table: {column["name"]: column["nullable"] for column in found.get_columns(table)}
        for table in found.get_table_names()
        if table != schema.VERSION_TABLE
    }


def wharf_db(url: str, *args: str) -> Any:
    """``wharf db ARGS...`` on the database at ``url``, with a home that does not exist: none is needed."""
    return CliRunner().invoke(cli, ["--home", "/nonexistent/wharf-home", "--database-url", url, "db", *args])


def test_the_head_is_the_newest_revision() -> None:
    assert schema.head() == HEAD
    assert (schema.MIGRATIONS / "script.py.mako").is_file()  # `alembic revision` needs it, and the wheel


def test_an_empty_database_is_created_at_head_with_the_models_tables(database_url: str) -> None:
    assert f"none: an empty database (head is {HEAD}" in wharf_db(database_url, "current").output
    store = MetadataStore(database_url)
    try:
        assert schema.current(store.engine) == schema.head()
        models = schema.target_metadata()
        assert columns(store.engine) == {
            table.name: {column.name: bool(column.nullable) for column in table.columns}
            for table in models.sorted_tables
        }
        # What autogenerate would write: types, indexes, unique and foreign keys as well. Empty unless
        # a model changed without a migration.
        with store.engine.connect() as connection:
            assert compare_metadata(MigrationContext.configure(connection), models) == []
        assert store.generation() == 0
    finally:
        store.close()


def test_a_database_at_0001_upgrades_keeping_its_rows(database_url: str) -> None:
    migrate(database_url, "0001")
    with schema.connect(database_url) as engine, engine.begin() as connection:
        tables = MetaData()
        tables.reflect(connection)
        model_id = connection.execute(
            insert(tables.tables["models"]).values(name="iris", created_at=NOW, last_version=2)
        ).inserted_primary_key[0]
        connection.execute(
            insert(tables.tables["model_versions"]),
            [
                {
                    "model_id": model_id,
                    "version": number,
                    "format": "joblib",
                    "signature": SIGNATURE,
                    "sha256": str(number) * 64,
                    "size": 10 * number,
                    "artifact": f"sha256/{number}",
                    "filename": "iris.joblib",
                    "description": f"number {number}",
                    "tags": {"team": "ml"},
                    "library_versions": {},
                    "warnings": [],
                    "extra": {},
                    "created_at": NOW,
                }
                for number in (1, 2)
            ],
        )
        keys: Table = tables.tables["api_keys"]
        connection.execute(
            insert(keys).values(
                id="0a1b2c3d", digest="ab" * 32, role="admin", name="ci", created_by="cli", created_at=NOW
            )
        )
        job_id = connection.execute(
            insert(tables.tables["jobs"]).values(
                kind="train",
                state="queued",
                spec={"dataset": 1},
                progress=0.0,
                stage="queued",
                cancel_requested=False,
                created_at=NOW,
            )
        ).inserted_primary_key[0]

    with pytest.raises(SchemaMismatch, match=f"'0001'; this wharf needs '{HEAD}'"):
        MetadataStore(database_url)
    with schema.connect(database_url) as engine:
        found, now = schema.upgrade(engine)
    assert (found.current, now) == ("0001", HEAD)

    store = MetadataStore(database_url)
    try:
        versions = store.versions("iris")
        assert [(v.version, v.status, v.description, v.tags) for v in versions] == [
            (1, "active", "number 1", {"team": "ml"}),
            (2, "active", "number 2", {"team": "ml"}),
        ]
        assert versions[0].signature == SIGNATURE and versions[0].created_at == NOW
        assert store.routes() == ({"iris": 2}, {})
        assert store.generation() == 0
        key = store.keys.get("0a1b2c3d")
        assert key is not None and (key.role, key.name) == ("admin", "ci")
        job = store.jobs.get(job_id)
        assert job is not None and (job.state, job.spec) == ("queued", {"dataset": 1})
        assert store.add_version("iris", **{k: getattr(versions[1], k) for k in ADD_FIELDS}).version == 3
        assert store.generation() == 1
    finally:
        store.close()


def test_a_database_from_before_migrations_is_refused_until_wharf_db_upgrade(
    database_url: str, tmp_path: Path
) -> None:
    migrate(database_url, "0001")
    sql(database_url, f"DROP TABLE {schema.VERSION_TABLE}")  # what create_all made at git 1991830

    with pytest.raises(SchemaMismatch) as refused:
        MetadataStore(database_url)
    message = str(refused.value)
    assert "none (made before migrations: '0001')" in message
    assert f"needs '{HEAD}'" in message and "wharf db upgrade" in message
    assert refused.value.exit_code == 9

    result = CliRunner().invoke(
        cli, ["--home", str(tmp_path), "--database-url", database_url, "models", "list"]
    )
    assert result.exit_code == 9 and "wharf db upgrade" in result.output  # every command refuses it

    current = wharf_db(database_url, "current")
    assert current.exit_code == 0, current.output
    assert "tables from before migrations, the schema of 0001" in current.output

    upgraded = wharf_db(database_url, "upgrade")
    assert upgraded.exit_code == 0, (upgraded.output, upgraded.exception)
    assert f"none (before migrations: 0001) -> {HEAD} (head)" in upgraded.output
    assert f"already at {HEAD} (head)" in wharf_db(database_url, "upgrade").output
    assert wharf_db(database_url, "current").output.strip().endswith(f": {HEAD} (head)")

    store = MetadataStore(database_url)
    store.close()


def test_a_database_made_by_the_models_before_migrations_is_stamped_at_their_revision(
    database_url: str,
) -> None:
    with schema.connect(database_url) as engine, engine.begin() as connection:
        metadata = schema.target_metadata()
        at_0002 = [table for name, table in metadata.tables.items() if name not in SINCE_0002]
        metadata.create_all(connection, tables=at_0002)
        connection.execute(text("INSERT INTO registry_state (id, generation) VALUES (1, 7)"))
    with pytest.raises(SchemaMismatch, match="made before migrations: '0002'"):
        MetadataStore(database_url)
    with schema.connect(database_url) as engine:
        found, now = schema.upgrade(engine)
    assert (found.unversioned, found.baseline, now) == (True, "0002", HEAD)
    store = MetadataStore(database_url)
    assert store.generation() == 7
    store.close()


def test_a_database_of_a_newer_wharf_is_refused(database_url: str) -> None:
    MetadataStore(database_url).close()
    sql(database_url, f"UPDATE {schema.VERSION_TABLE} SET version_num = '9999'")

    with pytest.raises(SchemaMismatch, match="'9999', which this wharf does not know") as refused:
        MetadataStore(database_url)
    assert "upgrade wharf" in str(refused.value)
    upgraded = wharf_db(database_url, "upgrade")
    assert upgraded.exit_code == 9 and "upgrade wharf" in upgraded.output
    assert f"9999, newer than this wharf (head {HEAD})" in wharf_db(database_url, "current").output


def test_the_message_hides_the_password(pg_url: str) -> None:
    url = make_url(pg_url).set(password="hunter2").render_as_string(hide_password=False)
    migrate(url, "0001")  # the server trusts 127.0.0.1: any password is taken
    with pytest.raises(SchemaMismatch) as refused:
        MetadataStore(url)
    assert "hunter2" not in str(refused.value) and "postgres:***@127.0.0.1" in str(refused.value)
    upgraded = wharf_db(url, "upgrade")
    assert upgraded.exit_code == 0 and "hunter2" not in upgraded.output and "***" in upgraded.output


def test_downgrades_undo_each_revision(database_url: str) -> None:
    MetadataStore(database_url).close()
    with schema.connect(database_url) as engine:
        with engine.begin() as connection:
            command.downgrade(schema.config(connection), "0001")
        assert schema.current(engine) == "0001"
        assert "status" not in columns(engine)["model_versions"]
        assert {"model_aliases", "registry_state"}.isdisjoint(columns(engine))
        with engine.begin() as connection:
            command.downgrade(schema.config(connection), "base")
        assert columns(engine) == {}
        schema.upgrade(engine)
        assert schema.current(engine) == HEAD


def start_server(url: str, barrier: Any, answers: Any) -> None:
    """In a child process: open the store once every child is ready, and say what it found."""
    barrier.wait()
    store = MetadataStore(url)
    answers.put((schema.current(store.engine), store.generation()))
    store.close()


def test_servers_starting_together_on_a_new_database_both_start(database_url: str) -> None:
    # Forked children: the same moment to within a millisecond, without importing wharf again.
    context = multiprocessing.get_context("fork")
    barrier, answers = context.Barrier(2), context.Queue()
    servers = [context.Process(target=start_server, args=(database_url, barrier, answers)) for _ in range(2)]
    for server in servers:
        server.start()
    for server in servers:
        server.join(60)
    assert [server.exitcode for server in servers] == [0, 0]
    assert [answers.get(timeout=5) for _ in servers] == [(HEAD, 0), (HEAD, 0)]
    with schema.connect(database_url) as engine, engine.connect() as connection:
        assert connection.scalar(text("SELECT count(*) FROM registry_state")) == 1
