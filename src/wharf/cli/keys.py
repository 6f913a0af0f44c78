"""``wharf keys create|list|revoke`` and ``wharf audit``: API keys and the audit log, on the local
registry (whoever can run these commands can read the registry database anyway)."""

from __future__ import annotations

import click

from wharf.cli.base import State, WharfGroup, cli, echo_json, pass_state
from wharf.services.security import ROLES, parse_expires


@cli.group(cls=WharfGroup)
def keys() -> None:
    """API keys: create, list, revoke."""


@keys.command("create")
@click.option("--role", required=True, type=click.Choice(ROLES), help="What the key may do.")
@click.option("--models", help="Comma-separated model names the key is limited to [all].")
@click.option("--expires", help="When it stops working: 30d, 12h, 2w, or an ISO 8601 date or time.")
@click.option("--name", default="", help="What the key is for.")
@pass_state
def keys_create(state: State, role: str, models: str | None, expires: str | None, name: str) -> None:
    """Create a key and print it; it is shown this once (wharf keeps only its hash)."""
    limited = [m.strip() for m in models.split(",") if m.strip()] if models is not None else None
    expires_at = parse_expires(expires) if expires else None
    record, secret = state.services.keys.create(role, limited, expires_at, name, created_by="cli")
    click.echo(secret)
    scope = ", ".join(record.models) if record.models else "all models"
    until = f", until {record.expires_at.isoformat()}" if record.expires_at else ""
    click.echo(f"key {record.id}: {record.role} on {scope}{until}. Keep it: it is not shown again.", err=True)


@keys.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@pass_state
def keys_list(state: State, as_json: bool) -> None:
    """Every key: id, role, models, state, last use."""
    records = state.services.keys.list()
    if as_json:
        echo_json([{**record.__dict__, "models": record.models} for record in records])
        return
    for record in records:
        state_text = "revoked" if record.revoked else "expired" if record.expired() else "active"
        models = ",".join(record.models) if record.models else "*"
        used = record.last_used_at.isoformat(timespec="seconds") if record.last_used_at else "never"
        click.echo(
            f"{record.id}  {record.role:<9}  {state_text:<7}  {models}  last used {used}  {record.name}"
        )


@keys.command("revoke")
@click.argument("key_id")
@pass_state
def keys_revoke(state: State, key_id: str) -> None:
    """Revoke a key by its id (the 8 hex characters after wharf_).

    Every server sharing the registry stops taking it within seconds (WHARF_KEY_CACHE_SECONDS).
    """
    record = state.services.keys.revoke(key_id)
    click.echo(f"revoked key {record.id} ({record.role})")


@cli.command()
@click.option("--limit", type=int, default=50, show_default=True, help="Most entries to print.")
@click.option("--key", "key_id", help="Only this key's actions.")
@pass_state
def audit(state: State, limit: int, key_id: str | None) -> None:
    """The audit log, newest first: when, who, what, target, status, from where."""
    for entry in state.services.audit.recent(limit, key_id=key_id):
        who = f"{entry.key_id} ({entry.role})" if entry.key_id else "anonymous"
        click.echo(
            f"{entry.at.isoformat(timespec='seconds')}  {who}  {entry.action}  {entry.target}  "
            f"{entry.status}  {entry.remote_addr or ''}"
        )
