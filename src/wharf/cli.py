"""The ``wharf`` command line: parse, call a service, print. Errors exit with their own code."""

from __future__ import annotations

import io
import json
import logging
import shlex
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
import orjson

from wharf.errors import InvalidInput, MalformedBody, ParityFailed, WharfError
from wharf.services import Services, build_services
from wharf.services.registry import Registration, check_name, known_formats, parse_signature, sha256_of
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


# -- serve -----------------------------------------------------------------------------------


@cli.command()
@click.argument("models", nargs=-1, metavar="[FILE|NAME]...")
@click.option("--host", help="Address to bind [WHARF_HOST; 127.0.0.1].")
@click.option("--port", type=int, help="Port to bind [WHARF_PORT; 8000].")
@click.option("--workers", type=int, help="Worker processes [WHARF_WORKERS; 1].")
@click.option("--threads", type=int, help="Threads per worker, requests served at once [WHARF_THREADS; 64].")
@pass_state
def serve(
    state: State,
    models: tuple[str, ...],
    host: str | None,
    port: int | None,
    workers: int | None,
    threads: int | None,
) -> None:
    """Serve models over HTTP with a production server (Granian: Rust HTTP, threaded WSGI workers).

    Each FILE (a model file) is registered under its file name without the extension, unless that
    exact file is already its latest version; each NAME is a registered model. With no argument,
    every registered model is served. API docs are at /docs.
    """
    from wharf.server import serve as run_server

    services = state.services
    names = [_model_argument(services, arg) for arg in models]
    settings = state.settings(
        host=host, port=port, workers=workers, threads=threads, models=tuple(names) or None
    )
    banner = _banner(services, settings)
    services.close()
    state._services = None
    run_server(settings, on_ready=lambda url: click.echo(banner(url), err=True))


def _model_argument(services: Services, arg: str) -> str:
    path = Path(arg)
    if path.is_file():
        name = path.stem
        try:
            check_name(name)
        except InvalidInput as exc:
            raise InvalidInput(
                f"{exc.detail} The name comes from the file {arg!r}; rename the file, or register it "
                f"with: wharf models register NAME {shlex.quote(arg)} and serve NAME.",
                field="FILE",
            ) from exc
        latest = services.registry.metadata.version(name)
        if latest is not None and latest.sha256 == sha256_of(path):
            return name
        record = services.registry.register(name, path, path.name, Registration())
        click.echo(f"registered {path} as {name}:{record.version}", err=True)
        return name
    services.registry.get(arg)  # raises ModelNotFound with a suggestion
    return arg


def _banner(services: Services, settings: Settings) -> Callable[[str], str]:
    """What to print once the server listens, given the URL it listens at (known only then)."""
    names = list(settings.models) or services.registry.names()
    example: tuple[str, str] | None = None
    if names:
        from wharf.http.schemas import Version

        # The example uses the model with the fewest columns: the shortest command to copy.
        records = [services.registry.get(name) for name in names]
        record = min(records, key=lambda r: len(r.signature["inputs"]))
        example = (record.name, json.dumps(Version.of(record).example).replace("'", "'\\''"))

    def render(base: str) -> str:
        lines = [f"wharf {__version__} serving {len(names)} model(s) at {base}", f"  API docs: {base}/docs"]
        if example is not None:
            name, body = example
            lines.append("  try it:")
            url = f"{base}/v1/models/{name}/predict"
            lines.append(f"    curl -s -H 'Content-Type: application/json' -d '{body}' {url}")
        return "\n".join(lines)

    return render


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
        latest = versions[-1] if versions else None
        rows.append(
            {
                "name": name,
                "versions": len(versions),
                "latest": latest.version if latest else None,
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


# -- predict ---------------------------------------------------------------------------------


@cli.command()
@click.argument("ref", metavar="NAME[:VERSION]")
@click.option(
    "--input",
    "input_file",
    required=True,
    type=click.File("rb"),
    help="Rows as .csv (with a header), .json (a request body or a list of rows) or - for stdin.",
)
@click.option("--probabilities", is_flag=True, help="Add class probabilities (classifiers).")
@pass_state
def predict(state: State, ref: str, input_file: io.BufferedReader, probabilities: bool) -> None:
    """Predict with a registered model, in process, and print the response as JSON."""
    name, version = parse_ref(ref)
    data = input_file.read()
    source = str(getattr(input_file, "name", "<stdin>"))  # a stream stood in for stdin has no name
    inference = state.services.inference
    if source.endswith(".csv") or not data.lstrip().startswith((b"{", b"[")):
        result = inference.predict(name, version, data, csv=True, probabilities=probabilities)
    else:
        if data.lstrip().startswith(b"["):  # a plain list of rows
            data = b'{"instances": ' + data + b"}"
        try:
            result = inference.predict(name, version, data, probabilities=probabilities)
        except MalformedBody as exc:
            if exc.field == "body":
                raise MalformedBody(exc.detail.replace("The body", source, 1), field="--input") from exc
            raise
    echo_json(result)


# -- demo ------------------------------------------------------------------------------------


@cli.command()
@click.option("--force", is_flag=True, help="Register new versions even where the demo models exist.")
@pass_state
def demo(state: State, force: bool) -> None:
    """Train demo models from datasets inside scikit-learn and register them.

    iris (logistic regression pipeline), diabetes (random forest, skops), digits (MLP as ONNX) and
    breast-cancer (gradient boosting). Models already registered are kept.
    """
    from wharf.services.demo import install_demos

    added = install_demos(state.services.registry, force=force)
    for record in added:
        click.echo(f"registered demo model {record.name}:{record.version} ({record.format})")
    if not added:
        click.echo("demo models already registered")


def main() -> None:
    cli(prog_name="wharf")


if __name__ == "__main__":
    main()
