"""``wharf keys`` and ``wharf audit`` on a local registry: keys shown once, stored as hashes, revocable."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import text

from wharf import Settings
from wharf.cli import cli
from wharf.errors import Unauthorized
from wharf.services import build_services


def run(runner: CliRunner, home: Path, *args: str) -> str:
    result = runner.invoke(cli, ["--home", str(home), *args])
    assert result.exit_code == 0, result.output
    return result.stdout


def test_a_created_key_is_printed_once_and_works(runner: CliRunner, tmp_path: Path) -> None:
    home = tmp_path / "home"
    key = run(
        runner, home, "keys", "create", "--role", "predictor", "--models", "iris,wine", "--expires", "7d"
    )
    key = key.strip()
    listing = run(runner, home, "keys", "list")
    key_id = key.split("_")[1]
    assert key_id in listing and "predictor" in listing and "iris,wine" in listing and "active" in listing
    assert key not in listing and key.split("_")[2] not in run(runner, home, "keys", "list", "--json")
    # A server trusts a key it has read for key_cache_seconds; 0 here, so the revocation shows at once.
    services = build_services(Settings(home=home, key_cache_seconds=0))
    try:
        caller = services.keys.authenticate(f"Bearer {key}")
        assert (caller.role, caller.models) == ("predictor", frozenset({"iris", "wine"}))
        with services.registry.metadata.engine.connect() as connection:
            stored = " ".join(
                str(v) for row in connection.execute(text("SELECT * FROM api_keys")) for v in row
            )
        assert key.split("_")[2] not in stored  # only the hash of the key is kept
        run(runner, home, "keys", "revoke", key_id)
        with pytest.raises(Unauthorized):
            services.keys.authenticate(key)
    finally:
        services.close()
    assert "revoked" in run(runner, home, "keys", "list")


def test_bad_key_requests_are_messages(runner: CliRunner, tmp_path: Path) -> None:
    home = str(tmp_path / "home")
    result = runner.invoke(
        cli, ["--home", home, "keys", "create", "--role", "admin", "--expires", "yesterday"]
    )
    assert result.exit_code == 2 and "Invalid expiry" in result.output
    result = runner.invoke(cli, ["--home", home, "keys", "revoke", "0123abcd"])
    assert result.exit_code == 3 and "0123abcd" in result.output


def test_the_audit_log_lists_recorded_actions(runner: CliRunner, tmp_path: Path) -> None:
    home = tmp_path / "home"
    services = build_services(Settings(home=home))
    try:
        services.audit.record("models.delete", "iris:2", status=200, remote_addr="10.0.0.7")
    finally:
        services.close()
    output = run(runner, home, "audit")
    assert "models.delete" in output and "iris:2" in output and "10.0.0.7" in output
