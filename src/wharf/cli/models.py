"""``wharf models ...`` and ``wharf convert``: the registry from the command line."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import click

from wharf.cli.base import State, WharfGroup, _exact, cli, echo_json, parse_ref, pass_state
from wharf.errors import InvalidInput, MalformedBody, ParityFailed
from wharf.services.registry import Registration, known_formats, newest_active, parse_signature

# -- models ----------------------------------------------------------------------------------


@cli.group(cls=WharfGroup)
def models() -> None:
    """List, show, register and delete model versions."""


@models.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@pass_state
def models_list(state: State, as_json: bool) -> None:
    """List registered models with their latest version."""
    registry = state.services.registry
    rows = []
    for name in registry.names():
        versions = registry.versions(name)
        latest = newest_active(versions)
        rows.append(
            {
                "name": name,
                "versions": len(versions),
                "latest": latest.version if latest else None,
                "aliases": registry.aliases_of(name),
                "format": latest.format if latest else "",
                "description": latest.description if latest else "",
            }
        )
    if as_json:
        echo_json(rows)
        return
    if not rows:
        click.echo("no models registered; add one with: wharf models register NAME FILE")
        return
    click.echo(f"{'NAME':<24} {'LATEST':>6} {'VERSIONS':>8}  {'FORMAT':<9} DESCRIPTION")
    for r in rows:
        number, description = str(r["latest"] or "-"), str(r["description"])[:60]
        click.echo(f"{r['name']:<24} {number:>6} {r['versions']:>8}  {r['format']:<9} {description}")


@models.command("show")
@click.argument("ref", metavar="NAME[:VERSION]")
@pass_state
def models_show(state: State, ref: str) -> None:
    """Print one version's metadata, signature and an example request as JSON (latest by default)."""
    from wharf.http.schemas import Version

    name, version = parse_ref(ref)
    echo_json(Version.of(state.services.registry.get(name, version)).model_dump(mode="json"))


@models.command("register")
@click.argument("name")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--format",
    "fmt",
    type=click.Choice(known_formats()),
    help="The file's format; guessed from its name and content when omitted.",
)
@click.option(
    "--signature", help="Inputs and output as JSON, or @FILE holding it (for models that cannot say)."
)
@click.option("--description", default="", help="What the version is.")
@click.option("--tag", "tags", multiple=True, metavar="KEY=VALUE", help="A tag; repeat for more.")
@click.option(
    "--metadata", help="Free-form JSON object stored with the version ('example' is shown in docs)."
)
@pass_state
def models_register(
    state: State,
    name: str,
    file: Path,
    fmt: str | None,
    signature: str | None,
    description: str,
    tags: tuple[str, ...],
    metadata: str | None,
) -> None:
    """Register FILE as the next version of model NAME."""
    options = Registration(
        format=fmt,
        signature=parse_signature(_json_option(signature, "--signature")),
        description=description,
        tags=dict(_tag(t) for t in tags),
        extra=_metadata_option(metadata),
    )
    record = state.services.registry.register(name, file, file.name, options)
    click.echo(
        f"registered {file} as {record.name}:{record.version} ({record.format}, sha256 {record.sha256[:12]})"
    )


def _json_option(value: str | None, option: str) -> Any:
    """JSON given inline or, as ``@FILE``, in a file."""
    if value is None:
        return None
    if value.startswith("@"):
        try:
            text = Path(value[1:]).read_text()
        except OSError as exc:
            raise InvalidInput(
                f"{option} {value!r} names a file that cannot be read: {exc.strerror}; give JSON inline "
                "or @ and the path of a JSON file.",
                field=option,
            ) from exc
    else:
        text = value
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise MalformedBody(f"{option} is not valid JSON: {exc}.", field=option) from exc


def _metadata_option(value: str | None) -> dict[str, Any]:
    metadata = _json_option(value, "--metadata")
    if metadata is None:
        return {}
    if not isinstance(metadata, dict):
        raise InvalidInput(
            f"--metadata must be a JSON object, got {type(metadata).__name__} {value!r:.80}; "
            'for example --metadata \'{"owner": "ana"}\'.',
            field="--metadata",
        )
    return metadata


def _tag(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise InvalidInput(f"--tag takes KEY=VALUE, got {text!r}.", field="--tag")
    return key, value


@models.command("delete")
@click.argument("ref", metavar="NAME[:VERSION]")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@pass_state
def models_delete(state: State, ref: str, yes: bool) -> None:
    """Delete one version (NAME:VERSION) or a whole model (NAME)."""
    name, version = parse_ref(ref)
    what = f"{name}:{version}" if version is not None else f"model {name} and all its versions"
    if not yes:
        click.confirm(f"Delete {what}?", abort=True)
    deleted = state.services.registry.delete(name, version)
    click.echo(f"deleted {name} version(s) {', '.join(str(r.version) for r in deleted) or 'none'}")


@models.command("set-fast")
@click.argument("ref", metavar="NAME:VERSION")
@click.option("--twin", type=int, help="The twin version to answer with [the newest verified ONNX one].")
@click.option("--off", is_flag=True, help="Let the version answer for itself again.")
@pass_state
def models_set_fast(state: State, ref: str, twin: int | None, off: bool) -> None:
    """Let a verified ONNX twin (made by wharf convert) answer predictions for NAME:VERSION."""
    from wharf.http.schemas import Version

    name, version = _exact(ref)
    converter = state.services.converter
    record = converter.unset_fast(name, version) if off else converter.set_fast(name, version, twin)
    answered = Version.of(record).answered_by
    click.echo(
        f"{name}:{version} is answered by v{answered} (onnx)"
        if answered
        else f"{name}:{version} answers itself"
    )


@models.command("alias")
@click.argument("name")
@click.argument("alias")
@click.argument("version", type=int, required=False)
@click.option("--delete", is_flag=True, help="Remove the alias.")
@pass_state
def models_alias(state: State, name: str, alias: str, version: int | None, delete: bool) -> None:
    """Point ALIAS of NAME at VERSION (atomically; every server follows within a second), remove it
    with --delete, or print where it points."""
    registry = state.services.registry
    if delete:
        click.echo(f"{name}@{alias} removed (it pointed at v{registry.delete_alias(name, alias)})")
    elif version is None:
        click.echo(str(registry.resolve_alias(name, alias).version))
    else:
        previous = registry.set_alias(name, alias, version)
        moved = f"moved from v{previous}" if previous is not None else "created"
        click.echo(f"{name}@{alias} -> v{version} ({moved})")


@models.command("archive")
@click.argument("ref", metavar="NAME:VERSION")
@click.option("--restore", is_flag=True, help="Make an archived version active again.")
@pass_state
def models_archive(state: State, ref: str, restore: bool) -> None:
    """Archive a version (kept, never latest, answers nothing), or restore it."""
    from wharf.services.registry import ACTIVE, ARCHIVED

    name, version = _exact(ref)
    record = state.services.registry.set_status(name, version, ACTIVE if restore else ARCHIVED)
    click.echo(f"{name}:{version} is {record.status}")


# -- convert ---------------------------------------------------------------------------------


@cli.command()
@click.argument("ref", metavar="NAME:VERSION")
@click.option("--to", "target", required=True, type=click.Choice(["onnx", "pmml"]), help="The format.")
@click.option(
    "--sample",
    type=click.File("rb"),
    help="Rows to compare on: .csv with a header, or .json rows [rows generated from the signature].",
)
@click.option("--labels", type=float, help="Least share of equal labels [WHARF_PARITY_LABELS; 1.0].")
@click.option("--rtol", type=float, help="Largest relative difference [WHARF_PARITY_RTOL; 1e-4].")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of generated rows.")
@click.option("--force", is_flag=True, help="Register even when parity falls outside the tolerance.")
@click.option("--json", "as_json", is_flag=True, help="Print the new version as JSON.")
@pass_state
def convert(
    state: State,
    ref: str,
    target: str,
    sample: io.BufferedReader | None,
    labels: float | None,
    rtol: float | None,
    seed: int,
    force: bool,
    as_json: bool,
) -> None:
    """Convert a version to ONNX or PMML as a new version, checked for parity against it."""
    from wharf.http.schemas import Version
    from wharf.services.conversion import ConversionRequest
    from wharf.services.parity import Tolerance, parity_text

    name, version = _exact(ref)
    settings = state.services.settings
    tolerance = Tolerance(
        labels=settings.parity_labels if labels is None else labels,
        rtol=settings.parity_rtol if rtol is None else rtol,
    )
    rows: list[Any] | dict[str, Any] | bytes | None = None
    if sample is not None:
        data = sample.read()
        # JSON: a list of rows or a request body in any format predict takes; else CSV.
        rows = _json_option(data.decode(), "--sample") if data.lstrip().startswith((b"{", b"[")) else data
    request = ConversionRequest(target, tolerance, rows, seed=seed, force=force)
    try:
        record = state.services.converter.convert(name, version, request)
    except ParityFailed as exc:
        click.echo(parity_text(exc.parity), err=True)
        raise
    if as_json:
        echo_json(Version.of(record).model_dump(mode="json"))
        return
    click.echo(f"registered {name}:{record.version} ({target}), converted from {name}:{version}")
    click.echo(parity_text(Version.of(record).parity or {}))
