"""The registry: validated, all-or-nothing registration of real model files, and version checks."""

from __future__ import annotations

import hashlib
import multiprocessing
import platform
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import joblib
import numpy
import pandas as pd
import pytest
import sklearn
from flask import Flask
from sklearn.pipeline import Pipeline
from sqlalchemy import select, update

from concurrency import at_once
from wharf import Settings, create_app
from wharf.errors import IncompatibleVersion, InvalidInput, InvalidModel, ModelNotFound, VersionNotFound
from wharf.services import Services, build_services
from wharf.services.registry import Registration, Registry, check_name
from wharf.storage import MetadataStore
from wharf.storage.metadata import ModelRow, VersionRow

PROCESSES = 8
PER_PROCESS = 3


@pytest.fixture
def model_file(tmp_path: Path, iris: tuple[Pipeline, pd.DataFrame]) -> Path:
    path = tmp_path / "upload" / "model.joblib"
    path.parent.mkdir()
    joblib.dump(iris[0], path)
    return path


@pytest.fixture
def svc(tmp_path: Path) -> Iterator[Services]:
    services = build_services(Settings(auth=False, home=tmp_path / "home", refresh_seconds=0))
    yield services
    services.close()


@pytest.fixture
def registry(svc: Services) -> Registry:
    return svc.registry


def artifact_files(svc: Services) -> list[Path]:
    root = Path(svc.settings.resolved_artifacts)
    return sorted(p for p in root.rglob("*") if p.is_file())


def register(registry: Registry, path: Path, name: str = "iris", **options: Any) -> int:
    return registry.register(name, path, path.name, Registration(**options)).version


# -- numbering -------------------------------------------------------------------------------


def test_versions_are_contiguous(registry: Registry, model_file: Path) -> None:
    assert [register(registry, model_file) for _ in range(3)] == [1, 2, 3]
    assert [r.version for r in registry.versions("iris")] == [1, 2, 3]


def test_version_numbers_are_never_reused(registry: Registry, model_file: Path) -> None:
    for _ in range(3):
        register(registry, model_file)
    assert [r.version for r in registry.delete("iris", 2)] == [2]
    assert register(registry, model_file) == 4
    registry.delete("iris", 4)
    assert register(registry, model_file) == 5
    assert [r.version for r in registry.versions("iris")] == [1, 3, 5]


def test_concurrent_registrations_in_threads(registry: Registry, model_file: Path) -> None:
    count = 20
    numbers = at_once(lambda: register(registry, model_file), count)
    assert sorted(numbers) == list(range(1, count + 1))
    assert [r.version for r in registry.versions("iris")] == list(range(1, count + 1))


def register_in_process(home: Path, model: Path, barrier: Any, results: Any) -> None:
    """A separate process: its own settings, services and database connections on ``home``."""
    try:
        barrier.wait(timeout=300)  # imports done; slow on a busy machine
        services = build_services(Settings(auth=False, home=home))  # all at once, on a fresh home
        try:
            results.put([register(services.registry, model) for _ in range(PER_PROCESS)])
        finally:
            services.close()
    except BaseException as exc:
        results.put(repr(exc))


def test_concurrent_registrations_in_processes(tmp_path: Path, model_file: Path) -> None:
    home = tmp_path / "shared-home"
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(PROCESSES)
    results = context.Queue()
    processes = [
        context.Process(target=register_in_process, args=(home, model_file, barrier, results))
        for _ in range(PROCESSES)
    ]
    for process in processes:
        process.start()
    answers = [results.get(timeout=400) for _ in processes]
    for process in processes:
        process.join(timeout=60)
    assert [p.exitcode for p in processes] == [0] * PROCESSES
    assert all(isinstance(a, list) for a in answers), answers
    numbers = sorted(n for answer in answers for n in answer)
    assert numbers == list(range(1, PROCESSES * PER_PROCESS + 1))

    services = build_services(Settings(auth=False, home=home))
    try:
        assert [r.version for r in services.registry.versions("iris")] == numbers
        assert len(artifact_files(services)) == 1  # one file, however many versions point at it
    finally:
        services.close()


# -- all or nothing --------------------------------------------------------------------------


def test_a_failed_metadata_write_leaves_no_artifact(
    svc: Services, model_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(self: MetadataStore, name: str, **fields: Any) -> Any:
        raise RuntimeError("the database went away")

    monkeypatch.setattr(MetadataStore, "add_version", refuse)
    with pytest.raises(RuntimeError, match="database went away"):
        register(svc.registry, model_file)
    assert artifact_files(svc) == []
    assert svc.registry.names() == []
    with pytest.raises(ModelNotFound):
        svc.registry.get("iris")

    monkeypatch.undo()
    assert register(svc.registry, model_file) == 1  # no number was used up


def test_a_failed_write_keeps_an_artifact_other_versions_use(
    svc: Services, model_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    register(svc.registry, model_file)
    stored = artifact_files(svc)

    def refuse(self: MetadataStore, name: str, **fields: Any) -> Any:
        raise RuntimeError("the database went away")

    monkeypatch.setattr(MetadataStore, "add_version", refuse)
    with pytest.raises(RuntimeError):
        register(svc.registry, model_file)
    monkeypatch.undo()
    assert artifact_files(svc) == stored
    assert [r.version for r in svc.registry.versions("iris")] == [1]
    assert svc.inference.predict("iris", 1, b'{"instances": [[5.1, 3.5, 1.4, 0.2]]}')["predictions"] == [
        "setosa"
    ]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"definitely not a model", "not a loadable joblib file"),
        (b"", "not a loadable joblib file"),
        (None, "has no predict method"),  # a real joblib file holding a plain dict
    ],
)
def test_an_invalid_model_leaves_nothing(
    svc: Services, tmp_path: Path, content: bytes | None, message: str
) -> None:
    path = tmp_path / "model.joblib"
    if content is None:
        joblib.dump({"weights": [1, 2, 3]}, path)
    else:
        path.write_bytes(content)
    with pytest.raises(InvalidModel, match=message):
        register(svc.registry, path)
    assert artifact_files(svc) == []
    assert svc.registry.names() == []


@pytest.mark.parametrize("name", ["", "../evil", "a/b", ".hidden", "x" * 129, "space name"])
def test_invalid_names(registry: Registry, model_file: Path, name: str) -> None:
    with pytest.raises(InvalidInput, match="Invalid model name"):
        register(registry, model_file, name=name)
    assert registry.names() == []


@pytest.mark.parametrize("name", ["iris", "iris-v2", "Iris_2.1", "x" * 128])
def test_valid_names(name: str) -> None:
    assert check_name(name) == name


@pytest.mark.parametrize(
    "filename", ["../../evil.joblib", "/tmp/evil.joblib", "a/../../../evil.joblib", "..\\..\\evil.joblib"]
)
def test_the_artifact_path_never_comes_from_the_file_name(
    svc: Services, tmp_path: Path, model_file: Path, filename: str
) -> None:
    record = svc.registry.register("iris", model_file, filename, Registration())
    digest = hashlib.sha256(model_file.read_bytes()).hexdigest()
    assert record.artifact == f"sha256/{digest[:2]}/{digest}"
    assert "/" not in record.filename
    assert ".." not in Path(record.filename).parts
    assert artifact_files(svc) == [Path(svc.settings.resolved_artifacts) / record.artifact]
    assert list(tmp_path.parent.rglob("evil.joblib")) == []


# -- what is recorded ------------------------------------------------------------------------


def test_digest_size_and_environment_are_recorded(svc: Services, model_file: Path) -> None:
    record = svc.registry.register(
        "iris", model_file, "model.joblib", Registration(description="d", tags={"a": "b"})
    )
    data = model_file.read_bytes()
    assert record.sha256 == hashlib.sha256(data).hexdigest()
    assert record.size == len(data) == model_file.stat().st_size
    assert record.filename == "model.joblib"
    assert record.format == "joblib"
    assert (record.description, record.tags) == ("d", {"a": "b"})
    assert record.library_versions["python"] == platform.python_version()
    assert record.library_versions["numpy"] == numpy.__version__
    assert record.library_versions["scikit-learn"] == sklearn.__version__
    stored = Path(svc.settings.resolved_artifacts) / record.artifact
    assert hashlib.sha256(stored.read_bytes()).hexdigest() == record.sha256


def test_lookup_errors_say_what_exists(registry: Registry, model_file: Path) -> None:
    register(registry, model_file)
    register(registry, model_file)
    with pytest.raises(ModelNotFound, match=r"No model named 'irsi'\. Did you mean 'iris'\?"):
        registry.get("irsi")
    with pytest.raises(VersionNotFound, match=r"Model 'iris' has no version 9; it has \[1, 2\]\."):
        registry.get("iris", 9)
    with pytest.raises(ModelNotFound):
        registry.delete("nope")
    with pytest.raises(VersionNotFound):
        registry.delete("iris", 9)
    assert registry.get("iris").version == 2


def test_deleting_the_last_version_that_uses_an_artifact_removes_it(svc: Services, model_file: Path) -> None:
    register(svc.registry, model_file)
    register(svc.registry, model_file)
    (stored,) = artifact_files(svc)
    svc.registry.delete("iris", 1)
    assert artifact_files(svc) == [stored]  # version 2 still uses it
    svc.registry.delete("iris")
    assert artifact_files(svc) == []
    assert svc.registry.names() == []


# -- framework version check -----------------------------------------------------------------


def record_made_with(settings: Settings, version: str) -> None:
    """Pretend version 1 of iris was made with scikit-learn ``version``, as its record says."""
    store = MetadataStore(settings.resolved_database_url)
    try:
        with store.engine.begin() as connection:
            model_id = connection.execute(select(ModelRow.id).where(ModelRow.name == "iris")).scalar_one()
            row = connection.execute(
                select(VersionRow.library_versions).where(
                    VersionRow.model_id == model_id, VersionRow.version == 1
                )
            ).scalar_one()
            connection.execute(
                update(VersionRow)
                .where(VersionRow.model_id == model_id, VersionRow.version == 1)
                .values(library_versions={**row, "scikit-learn": version})
            )
    finally:
        store.close()


def other_minor() -> str:
    major, minor = sklearn.__version__.split(".")[:2]
    return f"{major}.{int(minor) + 1}.0"


@pytest.fixture
def old_version_home(tmp_path: Path, model_file: Path) -> Settings:
    settings = Settings(auth=False, home=tmp_path / "old-home", refresh_seconds=0)
    services = build_services(settings)
    try:
        register(services.registry, model_file)
    finally:
        services.close()
    record_made_with(settings, other_minor())
    return settings


def serving(settings: Settings) -> Flask:
    app = create_app(settings)
    app.config["TESTING"] = True
    return app


def test_another_minor_version_loads_with_a_warning(old_version_home: Settings) -> None:
    app = serving(old_version_home)
    try:
        client = app.test_client()
        version = client.get("/v1/models/iris/versions/1").get_json()
        (warning,) = version["warnings"]
        assert f"made with scikit-learn {other_minor()}" in warning
        assert f"loaded with scikit-learn {sklearn.__version__}" in warning
        response = client.post("/v1/models/iris/predict", json={"instances": [[5.1, 3.5, 1.4, 0.2]]})
        assert response.status_code == 200
        assert response.get_json()["predictions"] == ["setosa"]
    finally:
        app.extensions["wharf"].close()


def test_the_same_minor_version_clears_the_warning(old_version_home: Settings) -> None:
    serving(old_version_home).extensions["wharf"].close()  # loads once: the warning is stored
    record_made_with(old_version_home, sklearn.__version__)
    app = serving(old_version_home)
    try:
        assert app.test_client().get("/v1/models/iris/versions/1").get_json()["warnings"] == []
    finally:
        app.extensions["wharf"].close()


def test_strict_versions_refuse_another_minor_version(old_version_home: Settings) -> None:
    app = serving(old_version_home.replace(strict_versions=True))
    try:
        client = app.test_client()
        response = client.post("/v1/models/iris/predict", json={"instances": [[5.1, 3.5, 1.4, 0.2]]})
        assert response.status_code == 409
        assert response.mimetype == "application/problem+json"
        problem = response.get_json()
        assert problem["type"] == IncompatibleVersion("").type
        assert problem["status"] == 409
        assert other_minor() in problem["detail"]
        assert "WHARF_STRICT_VERSIONS" in problem["detail"]
    finally:
        app.extensions["wharf"].close()
