"""Alembic's environment for wharf: migrations run on the connection :mod:`wharf.storage.schema` hands
over, inside its transaction and under its lock, so a revision and the row that records it commit
together or not at all."""

from __future__ import annotations

from alembic import context

from wharf.storage import schema

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError(
        "wharf's migrations run on a connection wharf opens: use `wharf db upgrade`, or "
        "wharf.storage.schema.upgrade(engine) from Python, not the alembic command."
    )
context.configure(
    connection=connection,
    target_metadata=schema.target_metadata(),
    render_as_batch=True,  # SQLite alters a table by copying it; autogenerate writes batch operations
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
