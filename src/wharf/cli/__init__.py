"""The ``wharf`` command line: parse, call a service, print. Errors exit with their own code."""

from __future__ import annotations

import io
import json
import shlex
from collections.abc import Callable
from pathlib import Path

import click

from wharf.cli.base import State, cli, echo_json, parse_ref, pass_state
from wharf.errors import InvalidInput, MalformedBody
from wharf.services import Services
from wharf.services.registry import Registration, check_name, sha256_of
from wharf.settings import Settings
from wharf.version import __version__

# -- serve -----------------------------------------------------------------------------------


@cli.command()
@click.argument("models", nargs=-1, metavar="[FILE|NAME]...")
@click.option("--host", help="Address to bind [WHARF_HOST; 127.0.0.1].")
@click.option("--port", type=int, help="Port to bind [WHARF_PORT; 8000].")
@click.option("--workers", type=int, help="Worker processes [WHARF_WORKERS; 1].")
@click.option("--threads", type=int, help="Threads per worker, requests served at once [WHARF_THREADS; 32].")
@click.option(
    "--certfile", type=click.Path(exists=True, dir_okay=False, path_type=Path), help="TLS certificate (PEM)."
)
@click.option(
    "--keyfile", type=click.Path(exists=True, dir_okay=False, path_type=Path), help="TLS private key (PEM)."
)
@pass_state
def serve(
    state: State,
    models: tuple[str, ...],
    host: str | None,
    port: int | None,
    workers: int | None,
    threads: int | None,
    certfile: Path | None,
    keyfile: Path | None,
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
        host=host,
        port=port,
        workers=workers,
        threads=threads,
        models=tuple(names) or None,
        certfile=certfile,
        keyfile=keyfile,
    )
    if (settings.certfile is None) != (settings.keyfile is None):
        raise InvalidInput("HTTPS needs both --certfile and --keyfile.", field="--keyfile")
    new_admin = services.keys.ensure_admin() if settings.auth else None
    banner = _banner(services, settings, new_admin)
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


def _banner(services: Services, settings: Settings, new_admin: str | None) -> Callable[[str], str]:
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
        lines = [
            f"wharf {__version__} serving {len(names)} model(s) at {base}",
            f"  API docs: {base}/docs",
            f"  dashboard: {base}/ui/",
        ]
        auth = ""
        if new_admin is not None:
            lines += [
                "  An admin API key was created for this registry. It is shown this once; keep it:",
                f"    export WHARF_KEY={new_admin}",
            ]
        elif settings.auth:
            lines.append("  every route but /healthz and /docs needs an API key (new one: wharf keys create)")
        if settings.auth:
            auth = '-H "Authorization: Bearer $WHARF_KEY" '
        else:
            lines.append("  auth is OFF (WHARF_AUTH=false): whoever reaches this port may call every route")
        if example is not None:
            name, body = example
            lines.append("  try it:")
            url = f"{base}/v1/models/{name}/predict"
            lines.append(f"    curl -s {auth}-H 'Content-Type: application/json' -d '{body}' {url}")
        return "\n".join(lines)

    return render


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


from wharf.cli import db as db  # noqa: E402  registers `wharf db upgrade` and `wharf db current`
from wharf.cli import keys as keys  # noqa: E402  registers `wharf keys` and `wharf audit`
from wharf.cli import models as models  # noqa: E402  registers `wharf models` and `wharf convert`
from wharf.cli import training as training  # noqa: E402  registers `wharf train`, `datasets`, `jobs`


def main() -> None:
    cli(prog_name="wharf")


if __name__ == "__main__":
    main()
