"""The deployment files held to the code: every WHARF_* name is a setting, every probe a route, the
ports agree, and every command line parses with the real ``wharf`` CLI (a renamed option fails here).

Nothing is built or started: the Dockerfile and the Kubernetes manifest are read as text and YAML.
"""

from __future__ import annotations

import json
import re
import shlex
import tomllib
from pathlib import Path
from typing import Any

import click
import pytest
import yaml
from click.testing import CliRunner
from pydantic import SecretStr

from wharf import Settings, create_app
from wharf.cli import cli
from wharf.server import GRACEFUL_SECONDS
from wharf.settings import CONFIG_ENV, ENV_PREFIX

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
DOCKERFILE = DEPLOY / "Dockerfile"
MANIFEST = DEPLOY / "kubernetes" / "wharf.yaml"
DOCKERIGNORE = ROOT / ".dockerignore"

PLACEHOLDER = "REPLACE_ME"
"""Every value of the example Secret carries this, so that nothing real is ever committed there."""

NOT_SETTINGS = {
    CONFIG_ENV: "names the config file the settings are read from",
    "WHARF_KEY": "the client's API key in examples, the name `wharf serve` prints it under",
}
"""WHARF_* names the deploy files may use that are not Settings fields."""

CREDENTIALS = {"WHARF_DATABASE_URL"}
"""Settings that carry a password without being typed as secrets (the URL's user:password)."""

VARIABLE = re.compile(r"\bWHARF_[A-Z0-9_]+\b")


# -- reading the files -----------------------------------------------------------------------


def dockerfile() -> list[tuple[str, str]]:
    """The Dockerfile's instructions as (KEYWORD, arguments): continuations joined, comments dropped."""
    instructions = []
    pending: list[str] = []
    for raw in DOCKERFILE.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):  # Docker drops comment lines, inside continuations too
            continue
        if line.endswith("\\"):
            pending.append(line[:-1].strip())
            continue
        keyword, _, arguments = " ".join([*pending, line]).partition(" ")
        instructions.append((keyword.upper(), arguments.strip()))
        pending = []
    assert not pending, "the Dockerfile ends inside a continued line"
    return instructions


def instruction(keyword: str) -> str:
    """The arguments of the last ``keyword`` instruction (the one in force in the final image)."""
    found = [arguments for name, arguments in dockerfile() if name == keyword]
    assert found, f"the Dockerfile has no {keyword}"
    return found[-1]


def image_env() -> dict[str, str]:
    """The variables the final stage's ENV instructions set."""
    stages: list[list[tuple[str, str]]] = [[]]
    for keyword, arguments in dockerfile():
        if keyword == "FROM":
            stages.append([])
        stages[-1].append((keyword, arguments))
    env = {}
    for keyword, arguments in stages[-1]:
        if keyword == "ENV":
            for token in shlex.split(arguments):
                name, sep, value = token.partition("=")
                assert sep, f"write ENV as NAME=value, got {token!r}"
                env[name] = value
    return env


def manifest() -> dict[str, dict[str, Any]]:
    """The manifest's documents by kind (one of each)."""
    documents = [doc for doc in yaml.safe_load_all(MANIFEST.read_text()) if doc]
    kinds = [doc["kind"] for doc in documents]
    assert len(kinds) == len(set(kinds)), f"one document of each kind expected, got {kinds}"
    return {doc["kind"]: doc for doc in documents}


def pod() -> dict[str, Any]:
    return manifest()["Deployment"]["spec"]["template"]["spec"]  # type: ignore[no-any-return]


def containers() -> list[dict[str, Any]]:
    spec = pod()
    return [*spec.get("initContainers", []), *spec["containers"]]


def container(name: str) -> dict[str, Any]:
    found = [c for c in containers() if c["name"] == name]
    assert len(found) == 1, f"one container named {name!r} expected"
    return found[0]


def setting_names() -> set[str]:
    return {ENV_PREFIX + field.upper() for field in Settings.model_fields}


def secret_settings() -> set[str]:
    typed = {
        ENV_PREFIX + name.upper()
        for name, field in Settings.model_fields.items()
        if SecretStr in getattr(field.annotation, "__args__", (field.annotation,))
    }
    return typed | CREDENTIALS


def container_port() -> int:
    ports = container("wharf")["ports"]
    assert len(ports) == 1
    return int(ports[0]["containerPort"])


def resolve_port(port: int | str) -> int:
    """A port number, or the name of one of the wharf container's ports."""
    if isinstance(port, int):
        return port
    named = {p.get("name"): p["containerPort"] for p in container("wharf")["ports"]}
    assert port in named, f"no container port named {port!r}; named: {sorted(named)}"
    return int(named[port])


def parse_cli(argv: list[str]) -> None:
    """Parse ``argv`` with the real ``wharf`` command; ``--help`` stops it before anything runs."""
    assert argv[:1] == ["wharf"], f"the command should be wharf, got {argv!r}"
    result = CliRunner().invoke(cli, [*argv[1:], "--help"], prog_name="wharf")
    assert result.exit_code == 0, f"{shlex.join(argv)!r} does not parse: {result.output}"
    # the help is the named command's, not a group's that stopped before it
    command: click.Command = cli
    path = ["wharf"]
    for word in argv[1:]:
        if not isinstance(command, click.Group) or word not in command.commands:
            break
        command = command.commands[word]
        path.append(word)
    assert result.output.startswith(f"Usage: {' '.join(path)} "), result.output


# -- settings --------------------------------------------------------------------------------


def test_every_wharf_variable_named_is_a_setting() -> None:
    known = setting_names() | set(NOT_SETTINGS)
    named = {
        "ConfigMap": set(manifest()["ConfigMap"]["data"]),
        "Secret": set(manifest()["Secret"].get("stringData", {})),
        "container env": {var["name"] for c in containers() for var in c.get("env", [])},
        "Dockerfile ENV": {name for name in image_env() if name.startswith(ENV_PREFIX)},
    }
    for path in (DOCKERFILE, MANIFEST, DEPLOY / "README.md"):  # comments and docs too
        named[str(path.relative_to(ROOT))] = set(VARIABLE.findall(path.read_text()))
    for where, names in named.items():
        unknown = {name for name in names if name.startswith(ENV_PREFIX)} - known
        assert not unknown, f"{where} names variables that are no setting: {sorted(unknown)}"


def test_the_configured_values_are_valid_settings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)  # no wharf.toml
    env = {**image_env(), **manifest()["ConfigMap"]["data"], **manifest()["Secret"]["stringData"]}
    for name, value in env.items():
        if name.startswith(ENV_PREFIX):
            monkeypatch.setenv(name, str(value))
    settings = Settings()  # raises InvalidSettings naming any bad value
    assert settings.host == "0.0.0.0"
    assert str(settings.home) == image_env()["WHARF_HOME"]


def test_secrets_stay_out_of_the_image_and_the_config_map() -> None:
    secret = secret_settings()
    assert "WHARF_ADMIN_KEY" in secret and "WHARF_S3_SECRET_ACCESS_KEY" in secret
    assert not secret & set(image_env()), "a secret is baked into the image"
    assert not secret & set(manifest()["ConfigMap"]["data"]), "a secret is in the ConfigMap"
    for c in containers():
        literal = {var["name"] for var in c.get("env", []) if "value" in var}
        assert not secret & literal, f"container {c['name']!r} has a secret written in its env"


def test_the_example_secret_holds_only_placeholders() -> None:
    secret = manifest()["Secret"]
    assert "data" not in secret, "use stringData, so that a reader sees every value is a placeholder"
    values = secret["stringData"]
    assert values
    for name, value in values.items():
        assert PLACEHOLDER in str(value), f"{name} in the example Secret is not a {PLACEHOLDER} placeholder"


# -- routes and ports ------------------------------------------------------------------------


def probes() -> dict[str, dict[str, Any]]:
    wharf = container("wharf")
    kinds = ("startupProbe", "readinessProbe", "livenessProbe")
    assert all(kind in wharf for kind in kinds), f"the wharf container needs {kinds}"
    return {kind: wharf[kind]["httpGet"] for kind in kinds}


def healthcheck_paths() -> list[str]:
    return re.findall(r"http://[^/'\"]+(/[\w/]*)", instruction("HEALTHCHECK"))


def test_probes_ask_the_routes_that_mean_alive_and_ready() -> None:
    paths = {kind: get["path"] for kind, get in probes().items()}
    # a liveness probe on /readyz would restart pods while they load their models
    assert paths == {"startupProbe": "/healthz", "readinessProbe": "/readyz", "livenessProbe": "/healthz"}
    assert healthcheck_paths() == ["/healthz"]


def test_probe_paths_are_public_routes_answering_200(tmp_path: Path) -> None:
    # Auth on, as in production: kubelet and Docker send no key.
    app = create_app(Settings(home=tmp_path, refresh_seconds=0))
    try:
        routes = {rule.rule for rule in app.url_map.iter_rules()}
        paths = {get["path"] for get in probes().values()} | set(healthcheck_paths())
        assert paths <= routes, f"not routes of the app: {sorted(paths - routes)}"
        client = app.test_client()
        for path in sorted(paths):
            response = client.get(path)
            assert response.status_code == 200, (path, response.get_data(as_text=True))
    finally:
        app.extensions["wharf"].close()


def test_ports_agree() -> None:
    exposed = instruction("EXPOSE").split()
    assert len(exposed) == 1
    port = int(exposed[0].removesuffix("/tcp"))
    assert container_port() == port
    assert int(image_env()["WHARF_PORT"]) == port
    assert int(manifest()["ConfigMap"]["data"]["WHARF_PORT"]) == port
    for kind, get in probes().items():
        assert resolve_port(get["port"]) == port, kind
    healthcheck = instruction("HEALTHCHECK")
    assert "WHARF_PORT" in healthcheck and f"'{port}'" in healthcheck  # follows the variable, same default
    (service_port,) = manifest()["Service"]["spec"]["ports"]
    assert service_port["port"] == 80
    assert resolve_port(service_port["targetPort"]) == port


def test_service_selects_the_pods() -> None:
    service = manifest()["Service"]["spec"]
    assert service.get("type", "ClusterIP") == "ClusterIP"
    labels = manifest()["Deployment"]["spec"]["template"]["metadata"]["labels"]
    assert service["selector"].items() <= labels.items()
    assert manifest()["Deployment"]["spec"]["selector"]["matchLabels"].items() <= labels.items()


# -- commands --------------------------------------------------------------------------------


def test_the_image_serves_under_tini() -> None:
    assert json.loads(instruction("ENTRYPOINT")) == ["tini", "--"]
    command = json.loads(instruction("CMD"))
    assert command[:2] == ["wharf", "serve"]
    parse_cli(command)


def test_the_server_container_runs_wharf_serve() -> None:
    wharf = container("wharf")
    assert "command" not in wharf, "set args, not command: the image's tini must stay PID 1"
    assert wharf["args"][:2] == ["wharf", "serve"]
    parse_cli(wharf["args"])


def test_migrations_run_before_the_server() -> None:
    (migrate,) = pod()["initContainers"]
    assert "command" not in migrate
    assert migrate["args"][:3] == ["wharf", "db", "upgrade"]
    assert migrate["image"] == container("wharf")["image"]
    assert migrate["envFrom"] == container("wharf")["envFrom"], "migrations need the same database"
    parse_cli(migrate["args"])  # fails until `wharf db upgrade` exists


# -- the Deployment's promises -----------------------------------------------------------------


def test_rolling_updates_keep_every_replica_serving() -> None:
    spec = manifest()["Deployment"]["spec"]
    assert spec["replicas"] >= 2
    assert spec["strategy"]["type"] == "RollingUpdate"
    assert spec["strategy"]["rollingUpdate"] == {"maxUnavailable": 0, "maxSurge": 1}


def test_stopping_drains_before_the_kill() -> None:
    wharf = container("wharf")
    sleep = wharf["lifecycle"]["preStop"]["exec"]["command"]
    assert sleep[0] == "sleep"
    # the grace period counts from the start of preStop: it must cover the sleep and Granian's drain
    assert pod()["terminationGracePeriodSeconds"] > int(sleep[1]) + GRACEFUL_SECONDS


def test_startup_allows_time_to_load_models() -> None:
    startup = container("wharf")["startupProbe"]
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 120


def test_runs_locked_down_with_a_writable_home() -> None:
    spec = pod()
    user = instruction("USER").partition(":")[0]
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert str(spec["securityContext"]["runAsUser"]) == user != "0"
    volumes = {volume["name"]: volume for volume in spec["volumes"]}
    home = manifest()["ConfigMap"]["data"]["WHARF_HOME"]
    for c in containers():
        assert c["securityContext"]["readOnlyRootFilesystem"] is True, c["name"]
        assert c["securityContext"]["allowPrivilegeEscalation"] is False, c["name"]
        assert "resources" in c, c["name"]
        mounts = {mount["mountPath"]: mount["name"] for mount in c["volumeMounts"]}
        for path in (home, "/tmp"):
            assert path in mounts, f"{c['name']!r}: {path} must be writable"
            assert "emptyDir" in volumes[mounts[path]]


def test_env_comes_from_the_config_map_and_the_secret() -> None:
    refs = container("wharf")["envFrom"]
    names = {kind: ref[kind]["name"] for ref in refs for kind in ref}
    assert names == {
        "configMapRef": manifest()["ConfigMap"]["metadata"]["name"],
        "secretRef": manifest()["Secret"]["metadata"]["name"],
    }


# -- building the image ----------------------------------------------------------------------


def dockerignore() -> set[str]:
    lines = (line.strip() for line in DOCKERIGNORE.read_text().splitlines())
    return {line.rstrip("/") for line in lines if line and not line.startswith("#")}


def test_the_build_context_leaves_local_state_out() -> None:
    assert {".git", ".venv", ".wharf", "bench/results"} <= dockerignore()


def test_what_the_image_copies_is_in_the_build_context() -> None:
    ignored = dockerignore()
    for keyword, arguments in dockerfile():
        if keyword != "COPY" or arguments.startswith("--from"):
            continue
        *sources, _ = arguments.split()
        for source in sources:
            assert (ROOT / source).exists(), f"COPY {source}: no such file in the repository"
            assert source.rstrip("/") not in ignored, f"COPY {source}: excluded by .dockerignore"


def extra_requirements(extras: dict[str, list[str]], name: str) -> set[str]:
    """The projects an extra installs, following ``wharf[a,b]`` to the extras it names."""
    found = set()
    for requirement in extras[name]:
        project = re.split(r"[\[<>=!~; ]", requirement, maxsplit=1)[0]
        if project.lower() == "wharf":
            inner = requirement[requirement.index("[") + 1 : requirement.index("]")]
            for other in inner.split(","):
                found |= extra_requirements(extras, other.strip())
        else:
            found.add(project.lower())
    return found


def test_the_image_installs_an_extra_with_the_drivers_the_deployment_names() -> None:
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    runs = " ".join(arguments for keyword, arguments in dockerfile() if keyword == "RUN")
    (extra,) = re.findall(r"\.whl\)\[(\w+)\]", runs)  # pip install "$(ls /wheels/wharf-*.whl)[all]"
    assert extra in extras, f"the image installs wharf[{extra}], which pyproject.toml does not declare"
    installed = extra_requirements(extras, extra)
    assert "boto3" in installed, f"WHARF_ARTIFACTS=s3://... needs boto3 in wharf[{extra}]"
    url = manifest()["Secret"]["stringData"]["WHARF_DATABASE_URL"]
    driver = url.partition("://")[0].partition("+")[2]  # postgresql+psycopg -> psycopg
    assert driver in installed, f"WHARF_DATABASE_URL uses the {driver!r} driver, which wharf[{extra}] lacks"


# -- the Grafana dashboard -------------------------------------------------------------------

DASHBOARD = DEPLOY / "grafana" / "wharf-dashboard.json"
SERIES = {
    "counter": ("_total",),
    "histogram": ("_bucket", "_sum", "_count"),
    "summary": ("_sum", "_count"),
    "gauge": ("",),
}
"""The series each Prometheus metric type is scraped as."""


def exported_series(tmp_path: Path) -> set[str]:
    """Every series name ``/metrics`` declares (families are declared with or without samples)."""
    from prometheus_client.parser import text_string_to_metric_families

    app = create_app(Settings(home=tmp_path, refresh_seconds=0, metrics_public=True))
    try:
        text = app.test_client().get("/metrics").get_data(as_text=True)
    finally:
        app.extensions["wharf"].close()
    return {
        family.name + suffix
        for family in text_string_to_metric_families(text)
        for suffix in SERIES[family.type]
    }


def test_the_dashboard_queries_only_metrics_wharf_exports(tmp_path: Path) -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]
    variables = [v["query"]["query"] for v in dashboard["templating"]["list"] if v["type"] == "query"]
    used = {name for text in exprs + variables for name in re.findall(r"\bwharf_[a-z_]+\b", text)}
    assert used, "the dashboard queries nothing"
    unknown = used - exported_series(tmp_path)
    assert not unknown, f"the dashboard queries series /metrics does not export: {sorted(unknown)}"
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    assert all(t["datasource"]["uid"] == "${datasource}" for p in dashboard["panels"] for t in p["targets"])
