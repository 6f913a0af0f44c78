"""What every command shares: the ``wharf`` group, the state of one invocation, errors and refs."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import click
import orjson

from wharf.errors import InvalidInput, WharfError
from wharf.services import Services, build_services
from wharf.settings import Settings
from wharf.version import __version__


class CliError(click.ClickException):
    """A :class:`WharfError` on its way out: printed, with the error's exit code."""

    def __init__(self, error: WharfError) -> None:
        super().__init__(error.detail)
        # click declares exit_code a ClassVar but reads it from the instance; each error has its own.
        self.exit_code = error.exit_code  # type: ignore[misc]


class WharfGroup(click.Group):
    """The one place the CLI turns wharf errors into messages and exit codes."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except WharfError as error:
            raise CliError(error) from error


class State:
    """Lazily built services for one CLI invocation."""

    def __init__(self, overrides: dict[str, Any]) -> None:
        self.overrides = {k: v for k, v in overrides.items() if v is not None}
        self._services: Services | None = None

    def settings(self, **more: Any) -> Settings:
        return Settings(**{**self.overrides, **{k: v for k, v in more.items() if v is not None}})

    @property
    def services(self) -> Services:
        if self._services is None:
            self._services = build_services(self.settings())
        return self._services


pass_state = click.make_pass_decorator(State)


def parse_ref(ref: str, *, exact: bool = False) -> tuple[str, int | None]:
    """``NAME`` or ``NAME:VERSION``; with ``exact``, the version is required."""
    name, sep, version = ref.partition(":")
    if not sep and exact:
        raise InvalidInput(f"Name the version, as in {name}:3.", field="ref")
    if not sep:
        return name, None
    if not version.isdigit():
        raise InvalidInput(f"Version in {ref!r} must be a whole number, as in {name}:3.", field="ref")
    return name, int(version)


def _exact(ref: str) -> tuple[str, int]:
    name, version = parse_ref(ref, exact=True)
    assert version is not None
    return name, version


def echo_json(value: Any) -> None:
    click.echo(orjson.dumps(value, option=orjson.OPT_INDENT_2 | orjson.OPT_SERIALIZE_NUMPY).decode())


@click.group(cls=WharfGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", prog_name="wharf")
@click.option(
    "--home", type=click.Path(path_type=Path), help="Folder of the embedded registry [WHARF_HOME; ./.wharf]."
)
@click.option("--database-url", help="SQLAlchemy URL of the registry database [WHARF_DATABASE_URL].")
@click.option(
    "--log-level",
    type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"], case_sensitive=False),
    help="Log level [WHARF_LOG_LEVEL; INFO].",
)
@click.pass_context
def cli(ctx: click.Context, home: Path | None, database_url: str | None, log_level: str | None) -> None:
    """wharf: serve trained machine-learning models over a documented REST API.

    Settings come from these options, WHARF_* environment variables, and wharf.toml.
    """
    ctx.obj = State({"home": home, "database_url": database_url, "log_level": log_level})
    ctx.call_on_close(lambda: ctx.obj._services and ctx.obj._services.close())
    logging.basicConfig(
        level=ctx.obj.settings().log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
