"""The registry's lifecycle below HTTP: the generation counter, the routing tables, aliases moved by
many threads at once, and how the inference service follows the registry (load and warm first,
then switch; keep what answers when a new target fails; unload what no route names)."""

from __future__ import annotations

import json
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pandas as pd
import pytest
from sklearn.dummy import DummyClassifier
from sklearn.pipeline import Pipeline
from sqlalchemy import select

from concurrency import at_once
from wharf import Settings
from wharf.errors import AliasNotFound, ArtifactMismatch, Conflict, ModelError, VersionNotFound
from wharf.services import Services, build_services
from wharf.services.conversion import ConversionRequest
from wharf.services.inference import InferenceService
from wharf.services.registry import Registration, Registry
from wharf.storage import VersionRecord
from wharf.storage.metadata import AliasRow

ROWS = [0, 50, 100]
"""One iris row of each class: the logistic regression tells them apart, the constant model does not."""


@pytest.fixture
def svc(tmp_path: Path) -> Iterator[Services]:
    services = build_services(Settings(auth=False, home=tmp_path / "home", refresh_seconds=0))
    yield services
    services.close()


@pytest.fixture
def files(tmp_path: Path, iris: tuple[Pipeline, pd.DataFrame]) -> dict[str, tuple[Path, Any]]:
    """``fitted`` (the iris pipeline) and ``constant`` (always "virginica"), saved with joblib."""
    pipeline, X = iris
    constant = DummyClassifier(strategy="constant", constant="virginica").fit(X, pipeline.predict(X))
    saved = {}
    for name, model in (("fitted", pipeline), ("constant", constant)):
        path = tmp_path / f"{name}.joblib"
        joblib.dump(model, path)
        saved[name] = (path, model)
    return saved


@pytest.fixture
def add(svc: Services, files: dict[str, tuple[Path, Any]]) -> Callable[..., int]:
    """``add("constant", name="iris")``: register that file as the next version; its number."""

    def register(kind: str = "fitted", name: str = "iris") -> int:
        path = files[kind][0]
        return svc.registry.register(name, path, path.name, Registration()).version

    return register


@pytest.fixture
def rows(iris: tuple[Pipeline, pd.DataFrame]) -> pd.DataFrame:
    return iris[1].iloc[ROWS]


def body(rows: pd.DataFrame) -> bytes:
    return json.dumps({"instances": rows.to_dict(orient="records")}).encode()


def answer(svc: Services, rows: pd.DataFrame, alias: str | None = None) -> tuple[int, list[Any]]:
    result = svc.inference.predict("iris", None, body(rows), alias=alias)
    return result["version"], np.asarray(result["predictions"]).tolist()


def labels(files: dict[str, tuple[Path, Any]], kind: str, rows: pd.DataFrame) -> list[Any]:
    return np.asarray(files[kind][1].predict(rows)).tolist()


def loaded(svc: Services) -> list[int]:
    """The versions of iris the inference service holds loaded."""
    return [entry["version"] for entry in svc.inference.stats("iris")]


# -- the generation --------------------------------------------------------------------------


def test_generation_counts_every_change_of_what_is_served(
    svc: Services, add: Callable[..., int], iris: tuple[Pipeline, pd.DataFrame]
) -> None:
    registry, metadata = svc.registry, svc.registry.metadata
    seen = [metadata.generation()]

    def moved() -> bool:
        seen.append(metadata.generation())
        return seen[-1] > seen[-2]

    add()
    assert moved()
    add("constant")
    assert moved()
    registry.set_alias("iris", "production", 1)
    assert moved()
    registry.set_alias("iris", "production", 2)
    assert moved()
    registry.delete_alias("iris", "production")
    assert moved()
    registry.set_status("iris", 2, "archived")
    assert moved()
    registry.set_status("iris", 2, "active")
    assert moved()
    registry.delete("iris", 2)
    assert moved()

    sample = iris[1].head(30).to_dict(orient="records")
    twin = svc.converter.convert("iris", 1, ConversionRequest("onnx", sample=sample)).version
    assert moved()
    svc.converter.set_fast("iris", 1, twin)
    assert moved()
    svc.converter.unset_fast("iris", 1)
    assert moved()


def test_generation_stays_when_nothing_served_changes(svc: Services, add: Callable[..., int]) -> None:
    registry, metadata = svc.registry, svc.registry.metadata
    add()
    add("constant")
    registry.set_alias("iris", "production", 1)
    before = metadata.generation()

    registry.edit("iris", 1, description="the first", tags={"team": "ml"})
    registry.edit("iris", 1, description=None, tags={"team": None})
    registry.set_status("iris", 2, "active")  # already active
    with pytest.raises(Conflict):
        registry.set_status("iris", 1, "archived")  # aliased
    with pytest.raises(Conflict):
        registry.delete("iris", 1)
    with pytest.raises(Conflict):
        registry.delete("iris")
    with pytest.raises(VersionNotFound):
        registry.set_alias("iris", "staging", 9)
    with pytest.raises(AliasNotFound):
        registry.delete_alias("iris", "staging")
    registry.aliases("iris")
    metadata.routes()

    assert metadata.generation() == before
    assert svc.inference.sync() is True  # its first read
    assert svc.inference.sync() is False  # nothing moved since
    registry.edit("iris", 2, description="edited", tags=None)
    assert svc.inference.sync() is False
    assert registry.get("iris", 2).description == "edited"


# -- the routing tables ----------------------------------------------------------------------


def test_routes_name_the_newest_active_version_and_every_alias(
    svc: Services, add: Callable[..., int]
) -> None:
    metadata, registry = svc.registry.metadata, svc.registry
    assert metadata.routes() == ({}, {})
    assert [add(), add("constant"), add(), add(name="other")] == [1, 2, 3, 1]
    registry.set_alias("iris", "production", 1)
    registry.set_alias("iris", "staging", 2)
    registry.set_alias("other", "production", 1)
    assert metadata.routes() == (
        {"iris": 3, "other": 1},
        {("iris", "production"): 1, ("iris", "staging"): 2, ("other", "production"): 1},
    )

    registry.set_status("iris", 3, "archived")
    registry.delete_alias("other", "production")
    registry.set_status("other", 1, "archived")
    assert metadata.routes() == ({"iris": 2}, {("iris", "production"): 1, ("iris", "staging"): 2})
    registry.set_alias("iris", "staging", 1)
    registry.delete_alias("iris", "production")
    registry.delete("iris", 2)
    assert metadata.routes() == ({"iris": 1}, {("iris", "staging"): 1})


# -- aliases under concurrency ---------------------------------------------------------------


@pytest.fixture(params=["sqlite", "postgresql"])
def shared(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Services]:
    """Services on each database wharf supports."""
    url = None if request.param == "sqlite" else str(request.getfixturevalue("pg_url"))
    services = build_services(Settings(auth=False, home=tmp_path / "shared", database_url=url))
    yield services
    services.close()


@pytest.mark.parametrize("initial", [None, 1], ids=["created", "moved"])
def test_concurrent_moves_of_one_alias_leave_one_row(
    shared: Services, files: dict[str, tuple[Path, Any]], initial: int | None
) -> None:
    """20 threads point one alias at once: the one that exists at first (``moved``), or none yet
    (``created``: every thread may be the one that creates it)."""
    registry, path = shared.registry, files["fitted"][0]
    numbers = [registry.register("iris", path, path.name, Registration()).version for _ in range(3)]
    if initial is not None:
        registry.set_alias("iris", "production", initial)
    targets = iter(numbers * 7)
    lock = threading.Lock()
    before = registry.metadata.generation()

    def move() -> tuple[int, int | None]:
        with lock:
            target = next(targets)
        return target, registry.set_alias("iris", "production", target)

    moves = at_once(move, 20)

    with registry.metadata.reading() as session:
        stored = session.execute(select(AliasRow.alias, AliasRow.version)).all()
    assert len(stored) == 1
    final = stored[0][1]
    assert final in numbers
    assert registry.aliases("iris") == {"production": final}
    # Taken in the order they committed, each move's ``previous`` is where the one before it
    # pointed: the previous values are the first value and every target but the last.
    previous = Counter(p for _, p in moves)
    assert previous == Counter([initial]) + Counter(t for t, _ in moves) - Counter([final])
    assert registry.metadata.generation() == before + 20


# -- the inference service following the registry --------------------------------------------


def test_sync_loads_and_warms_a_new_target_before_the_tables_switch(
    svc: Services,
    add: Callable[..., int],
    files: dict[str, tuple[Path, Any]],
    rows: pd.DataFrame,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    inference = svc.inference
    add()
    add("constant")
    svc.registry.set_alias("iris", "production", 1)
    assert inference.sync()
    assert answer(svc, rows) == (2, labels(files, "constant", rows))
    events: list[tuple[str, int, dict[str, int], dict[tuple[str, str], int]]] = []

    def tables(event: str, version: int) -> None:
        events.append((event, version, dict(inference._latest), dict(inference._aliases)))

    real_load, real_warm = InferenceService._load, InferenceService._warm

    def load(self: InferenceService, record: VersionRecord) -> Any:
        tables("load", record.version)
        return real_load(self, record)

    def warm(served: Any) -> None:
        real_warm(served)
        tables("warmed", served.version)

    monkeypatch.setattr(InferenceService, "_load", load)
    monkeypatch.setattr(InferenceService, "_warm", staticmethod(warm))
    assert add() == 3
    svc.registry.set_alias("iris", "production", 3)
    assert inference.sync()

    before = ({"iris": 2}, {("iris", "production"): 1})
    assert events == [("load", 3, *before), ("warmed", 3, *before)]  # loaded once, for both routes
    assert answer(svc, rows) == (3, labels(files, "fitted", rows))
    assert answer(svc, rows, alias="production") == (3, labels(files, "fitted", rows))
    assert len(events) == 2  # the requests found it loaded


def broken(monkeypatch: pytest.MonkeyPatch, *keys: tuple[str, int]) -> Callable[[], None]:
    """Make ``Registry.open`` fail for the versions ``keys``; returns what mends it."""
    real_open = Registry.open

    def open_unless_broken(self: Registry, record: VersionRecord) -> Any:
        if (record.name, record.version) in keys:
            raise ArtifactMismatch(f"{record.name}:{record.version} is broken for this test", field="version")
        return real_open(self, record)

    monkeypatch.setattr(Registry, "open", open_unless_broken)
    return lambda: monkeypatch.setattr(Registry, "open", real_open)


def test_a_target_that_fails_to_load_leaves_the_version_that_answered(
    svc: Services,
    add: Callable[..., int],
    files: dict[str, tuple[Path, Any]],
    rows: pd.DataFrame,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    inference = svc.inference
    fitted, constant = labels(files, "fitted", rows), labels(files, "constant", rows)
    add()
    svc.registry.set_alias("iris", "production", 1)
    assert answer(svc, rows) == (1, fitted)

    mend = broken(monkeypatch, ("iris", 2), ("other", 1))
    add("constant")
    svc.registry.set_alias("iris", "production", 2)
    add(name="other")  # a new model with nothing loaded to fall back on
    assert inference.sync()
    assert answer(svc, rows) == (1, fitted)
    assert answer(svc, rows, alias="production") == (1, fitted)
    assert "other" in inference.failed
    with pytest.raises(ModelError):
        inference.model("iris", 2)
    with pytest.raises(ModelError):
        inference.model("other")

    mend()
    assert inference.retry_failed() == []  # what /readyz calls
    assert answer(svc, rows) == (2, constant)
    assert answer(svc, rows, alias="production") == (2, constant)


def test_a_failed_target_is_tried_again_once_it_loads(
    svc: Services,
    add: Callable[..., int],
    files: dict[str, tuple[Path, Any]],
    rows: pd.DataFrame,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """v2 fails to load (the artifact store was away a moment) while v1 still answers: /readyz's
    retry must load v2 once it can, or this replica answers with v1 until the registry next moves,
    while every other replica answers with v2."""
    add()
    assert answer(svc, rows)[0] == 1
    mend = broken(monkeypatch, ("iris", 2))
    add("constant")
    assert answer(svc, rows)[0] == 1
    mend()
    svc.inference.retry_failed()
    assert answer(svc, rows) == (2, labels(files, "constant", rows))


def test_the_version_kept_after_a_failed_load_is_dropped_once_archived(
    svc: Services, add: Callable[..., int], rows: pd.DataFrame, monkeypatch: pytest.MonkeyPatch
) -> None:
    """v2 fails to load, so latest keeps answering with v1; then v1 is archived. Latest must not
    keep pointing at an archived version (answering 409 "iris:1 is archived" to a request that
    named no version): it is v2's, and v2's load failure is what the caller should get."""
    add()
    assert answer(svc, rows)[0] == 1
    broken(monkeypatch, ("iris", 2))
    add("constant")
    assert answer(svc, rows)[0] == 1
    svc.registry.set_status("iris", 1, "archived")
    with pytest.raises(ModelError):
        svc.inference.model("iris")


def test_a_retired_version_is_unloaded(
    svc: Services, add: Callable[..., int], files: dict[str, tuple[Path, Any]], rows: pd.DataFrame
) -> None:
    add()
    svc.registry.set_alias("iris", "production", 1)
    svc.inference.sync()
    assert loaded(svc) == [1]
    add("constant")
    svc.inference.sync()
    assert loaded(svc) == [1, 2]  # v1 is still where production points
    svc.registry.set_alias("iris", "production", 2)
    svc.inference.sync()
    assert loaded(svc) == [2]
    assert answer(svc, rows, alias="production") == (2, labels(files, "constant", rows))

    assert svc.inference.model("iris", 1).version == 1  # named: loaded on demand
    assert loaded(svc) == [1, 2]
    svc.registry.set_status("iris", 1, "archived")
    svc.inference.sync()
    assert loaded(svc) == [2]
    with pytest.raises(Conflict):
        svc.inference.model("iris", 1)
    add()
    svc.registry.delete_alias("iris", "production")
    svc.inference.sync()
    assert loaded(svc) == [3]
