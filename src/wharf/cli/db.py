"""``wharf db upgrade|current``: the schema revision of the registry database.

These commands open the database themselves, not through the services: a server (and every other
command) refuses a database that is not at this wharf's revision, and these are how it gets there.
"""

from __future__ import annotations

import click

from wharf.cli.base import State, WharfGroup, cli, pass_state
from wharf.storage import schema


@cli.group(cls=WharfGroup)
def db() -> None:
    """The registry database's schema: upgrade it, show its revision."""


def _url(state: State) -> str:
    settings = state.settings()
    if settings.database_url is None:  # the SQLite file in home; nothing is written for another URL
        settings.home.mkdir(parents=True, exist_ok=True)
    return settings.resolved_database_url


@db.command("upgrade")
@pass_state
def db_upgrade(state: State) -> None:
    """Migrate the database to this wharf's schema revision (back it up first).

    One from before migrations is recognised and stamped with its revision first. Several upgrades
    at once are safe (they take a database lock), and servers starting meanwhile wait for it.
    """
    url = _url(state)
    with schema.connect(url) as engine:
        found, now = schema.upgrade(engine)
    where = schema.masked(url)
    if found.at_head:
        click.echo(f"{where}: already at {now} (head)")
        return
    if found.current is not None:
        before = found.current
    else:
        before = "none (empty)" if found.empty else f"none (before migrations: {found.baseline})"
    click.echo(f"{where}: {before} -> {now} (head)")


@db.command("current")
@pass_state
def db_current(state: State) -> None:
    """Print the database's schema revision and whether it is this wharf's (head)."""
    url = _url(state)
    with schema.connect(url) as engine:
        found = schema.status(engine)
    click.echo(f"{schema.masked(url)}: {found.describe()}")
