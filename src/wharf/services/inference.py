"""Inference: the cache of loaded versions, and predict from a request body to a response.

Versions are loaded once, checked against the framework version they were made with, and kept
with their compiled :class:`~wharf.services.decoding.Decoder`.

What each name serves (its latest active version, and each alias's version) is held in two routing
tables, read from the registry when its generation counter moves: a watcher thread polls it every
``refresh_seconds`` in a server (or, without one, the first request after that long does). A new
target is loaded and warmed before the tables switch to it, so a rollout across replicas (moving
``production`` from v1 to v2) never sends a request to a model that is still loading, and the
requests in flight finish on the version they started with.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from wharf import runtimes
from wharf.errors import (
    Conflict,
    IncompatibleVersion,
    ModelError,
    ModelNotFound,
    WharfError,
)
from wharf.runtimes.base import Predictor, Runtime
from wharf.services.batching import BatchingRuntime, BatchPolicy
from wharf.services.cache import PredictionCache
from wharf.services.decoding import Decoder, parse_json
from wharf.services.metering import MeteredRuntime
from wharf.services.monitor import Monitor
from wharf.services.registry import ANSWERED_BY, Registry
from wharf.services.results import asks_probabilities, finite, jsonable
from wharf.services.telemetry import Telemetry
from wharf.settings import ModelOptions
from wharf.storage import VersionRecord

log = logging.getLogger("wharf.inference")
RETRY_SECONDS = 5.0
"""How often a target that failed to load (its artifact store away, say) is tried again."""
Ref = TypeVar("Ref", str, tuple[str, str])
"""A routing table's key: a model's name, or ``(name, alias)``."""


def major_minor(version: str) -> tuple[str, ...]:
    return tuple(version.split(".")[:2])


@dataclass
class ServedModel:
    """A loaded version, ready to predict: its runtime (wrapped by batching) and decoder."""

    record: VersionRecord
    runtime: Predictor
    decoder: Decoder
    cache: PredictionCache | None = None
    bare: Predictor | None = None
    """The loaded runtime without wrappers: warm-ups call it, so they are not counted as traffic."""
    answered_by: int | None = None
    """The verified twin whose runtime answers for this version (``wharf models set-fast``)."""

    @property
    def name(self) -> str:
        return self.record.name

    @property
    def version(self) -> int:
        return self.record.version


def _targets(latest: dict[str, int], aliases: dict[tuple[str, str], int]) -> set[tuple[str, int]]:
    """The versions the routing tables point at."""
    return {*latest.items(), *((name, version) for (name, _), version in aliases.items())}


class InferenceService:
    """Loads versions on first use and answers predictions.

    :param registry: where versions come from.
    :param max_rows: rows allowed in one request.
    :param strict_versions: refuse versions made with another framework major.minor.
    :param refresh_seconds: how long a "latest version" answer is trusted.
    :param models: names served; empty serves all.
    :param options: a model name's batching and cache options.
    :param telemetry: where model calls, loads and cache lookups are counted.
    :param monitor: what is handed each request's rows and predictions (class counts, drift).
    """

    def __init__(
        self,
        registry: Registry,
        *,
        max_rows: int,
        strict_versions: bool = False,
        refresh_seconds: float = 0.5,
        models: tuple[str, ...] = (),
        options: Callable[[str], ModelOptions],
        queue_timeout: float = 0.0,
        telemetry: Telemetry | None = None,
        monitor: Monitor | None = None,
    ) -> None:
        self.registry = registry
        self.telemetry = telemetry or Telemetry()
        self.telemetry.loaded_versions = lambda: list(self._loaded)
        self.monitor = monitor
        self.queue_timeout = queue_timeout
        self.options = options
        self.max_rows = max_rows
        self.strict_versions = strict_versions
        self.refresh_seconds = refresh_seconds
        self.models = frozenset(models)
        self._loaded: dict[tuple[str, int], ServedModel] = {}
        self._latest: dict[str, int] = {}
        self._aliases: dict[tuple[str, str], int] = {}
        """The routing tables: replaced whole (never changed in place) when the registry moves."""
        self._generation: int | None = None
        self._failed_targets: set[tuple[str, int]] = set()
        """Targets that failed to load at the last sync: tried again every RETRY_SECONDS."""
        self._retry_at = 0.0
        self._next_sync = 0.0
        self._sync_lock = threading.Lock()
        self._lock = threading.Lock()
        self._key_locks: dict[tuple[str, int], threading.Lock] = {}
        self._watcher: threading.Thread | None = None
        self._stop = threading.Event()
        self.ready = threading.Event()
        self.warm_on_load = True
        """Predict once on the example row when a version loads (off in a server's master process,
        where no model may start its thread pools before the workers fork)."""
        self.failed: list[str] = []

    # -- lookup ------------------------------------------------------------------------------

    def served_names(self, search: str | None = None) -> list[str]:
        names = self.registry.names(search)
        return [n for n in names if n in self.models] if self.models else names

    def check_served(self, name: str) -> None:
        """:raises ModelNotFound: this server does not serve ``name``."""
        if self.models and name not in self.models:
            raise ModelNotFound(f"No model named {name!r} is served here.", field="name")

    def model(self, name: str, version: int | None = None, alias: str | None = None) -> ServedModel:
        """The loaded version that answers for ``name``: version ``version``, or where ``alias``
        points, or the latest active one; loaded on first use.

        :raises ModelNotFound, VersionNotFound, AliasNotFound: nothing by that name.
        :raises Conflict: ``version`` is archived.
        """
        self.check_served(name)
        if self._watcher is None and time.monotonic() >= self._next_sync:
            self.sync(wait=False)  # one request reads the registry; the others go on meanwhile
        if alias is not None:
            version = self._aliases.get((name, alias))
            if version is None:  # not in the tables: unknown, or made since the last sync
                version = self.registry.resolve_alias(name, alias).version
        elif version is None:
            version = self._latest.get(name)
            if version is None:
                version = self.registry.latest(name).version
        served = self._loaded.get((name, version))
        return served if served is not None else self._load_version(name, version)

    def _load_version(self, name: str, version: int) -> ServedModel:
        record = self.registry.get(name, version)  # unknown names and versions stop here
        if record.archived:
            raise Conflict(
                f"{name}:{version} is archived: it answers no predictions. Restore it (POST "
                f"/v1/models/{name}/versions/{version}/restore) or predict with another version.",
                field="version",
            )
        key = (name, version)
        with self._lock:
            key_lock = self._key_locks.setdefault(key, threading.Lock())
        with key_lock:
            served = self._loaded.get(key)
            if served is None:
                served = self._load(record)
                with self._lock:
                    self._loaded[key] = served
        return served

    # -- following the registry ----------------------------------------------------------------

    def sync(self, *, wait: bool = True) -> bool:
        """Read the registry's routes again if its generation moved; returns whether it had.

        New targets are loaded (and warmed) first; then both tables switch in one assignment each.
        Loaded versions that were deleted, archived or changed are dropped (a changed one is loaded
        again), as are those no route points at any more. A target that fails to load is logged; its
        name (or alias) keeps answering with the version it answered with before, or, with none, is
        listed in ``failed`` (``/readyz`` reports those); it is tried again every RETRY_SECONDS.

        :param wait: when another thread is already reading the registry, wait for it (else return).
        """
        if not self._sync_lock.acquire(blocking=wait):
            return False
        try:
            return self._sync()
        finally:
            self._sync_lock.release()

    def _sync(self) -> bool:
        now = time.monotonic()
        self._next_sync = now + self.refresh_seconds
        generation = self.registry.metadata.generation()
        if generation == self._generation and not (self._failed_targets and now >= self._retry_at):
            return False
        latest, aliases = self.registry.metadata.routes()
        if self.models:
            latest = {n: v for n, v in latest.items() if n in self.models}
            aliases = {k: v for k, v in aliases.items() if k[0] in self.models}
        for key in self._stale():
            self._drop(key)
        failed = set()
        for key in sorted(_targets(latest, aliases) - self._loaded.keys()):
            try:
                self._load_version(*key)
            except Exception:
                log.exception("could not load %s:%s", *key)
                failed.add(key)
        unanswered = {
            *self._fall_back(latest, self._latest, failed, lambda name: name),
            *self._fall_back(aliases, self._aliases, failed, lambda ref: ref[0]),
        }
        retired = _targets(self._latest, self._aliases)
        self._latest, self._aliases = latest, aliases
        for key in retired - _targets(latest, aliases):
            self._drop(key)  # requests in flight keep their reference; the next load is fresh
        self.failed = sorted(unanswered)
        self._failed_targets, self._retry_at = failed, now + RETRY_SECONDS
        self._generation = generation
        return True

    def _fall_back(
        self,
        table: dict[Ref, int],
        previous: dict[Ref, int],
        failed: set[tuple[str, int]],
        name_of: Callable[[Ref], str],
    ) -> set[str]:
        """Point each entry of ``table`` whose target failed to load back at the version it had, if
        that one is loaded; returns the names left with nothing to answer with."""
        unanswered = set()
        for ref, number in list(table.items()):
            name = name_of(ref)
            if (name, number) not in failed:
                continue
            if ref in previous and (name, previous[ref]) in self._loaded:
                table[ref] = previous[ref]
                log.warning("%s keeps answering with v%s", ref, previous[ref])
            else:
                unanswered.add(name)
        return unanswered

    def _stale(self) -> list[tuple[str, int]]:
        """Loaded versions whose record was deleted, archived or changed since they were loaded."""
        stale = []
        for key, served in list(self._loaded.items()):
            record = self.registry.metadata.version(*key)
            changed = (
                record is None
                or record.archived
                or record.sha256 != served.record.sha256
                or record.extra.get(ANSWERED_BY) != served.record.extra.get(ANSWERED_BY)
            )
            if changed:
                stale.append(key)
        return stale

    def _drop(self, key: tuple[str, int]) -> None:
        with self._lock:
            self._loaded.pop(key, None)
            self._key_locks.pop(key, None)

    def watch(self) -> None:
        """Follow the registry from a daemon thread (in each server worker, after the fork)."""
        if self._watcher is not None or self.refresh_seconds <= 0:
            return
        self._stop.clear()
        self._watcher = threading.Thread(target=self._watch, name="wharf-registry-watcher", daemon=True)
        self._watcher.start()

    def _watch(self) -> None:
        while not self._stop.wait(self.refresh_seconds):
            try:
                self.sync()
            except Exception:  # the database is away: keep serving what is loaded, try again
                log.exception("could not read the registry")

    def stop(self) -> None:
        self._stop.set()
        watcher, self._watcher = self._watcher, None
        if watcher is not None:
            watcher.join(timeout=5)

    def _load(self, record: VersionRecord) -> ServedModel:
        started = time.perf_counter()
        answering = self._answering(record)
        path: Path = self.registry.artifacts.local_path(answering.artifact)
        try:
            loaded = self.registry.open(answering)
        except WharfError as exc:
            # A stored version that no longer loads is the server's fault, not the request's:
            # the details (paths included) go to the log, the client gets what and where.
            log.error("cannot load %s:%s from %s: %s", record.name, record.version, path, exc.detail)
            raise ModelError(
                f"Version {record.version} of {record.name!r} is registered but cannot be loaded "
                f"({exc.slug}); the server log says why.",
                field="version",
            ) from exc
        self._check_versions(answering, loaded)
        runtime: Predictor = MeteredRuntime(loaded, self.telemetry, record.name, record.version, self.monitor)
        options = self.options(record.name)
        assert options.batch_max_rows is not None and options.batch_max_wait_ms is not None
        if options.batch_max_rows > 1:
            policy = BatchPolicy(options.batch_max_rows, options.batch_max_wait_ms / 1000, self.queue_timeout)
            runtime = BatchingRuntime(runtime, policy)  # type: ignore[arg-type]
        cache = PredictionCache(options.cache_entries) if options.cache_entries else None
        served = ServedModel(
            record,
            runtime,
            Decoder(runtime.signature, self.max_rows),
            cache,
            answered_by=answering.version if answering is not record else None,
            bare=loaded,
        )
        self.telemetry.loaded(record.name, record.version, time.perf_counter() - started)
        if self.warm_on_load:
            self._warm(served)
        via = f" (answered by v{served.answered_by}, {answering.format})" if served.answered_by else ""
        log.info("loaded %s:%s%s in %.2fs", record.name, record.version, via, time.perf_counter() - started)
        return served

    def _answering(self, record: VersionRecord) -> VersionRecord:
        """The record whose artifact answers for ``record``: its fast twin, if set and still there."""
        twin = record.extra.get(ANSWERED_BY)
        if not isinstance(twin, int):
            return record
        try:
            return self.registry.get(record.name, twin)
        except WharfError:
            log.warning(
                "%s:%s: its fast twin v%s is gone; answering itself", record.name, record.version, twin
            )
            return record

    @staticmethod
    def _warm(served: ServedModel) -> None:
        """One prediction on the example row, so first requests pay no lazy start-up."""
        try:
            runtime = served.bare or served.runtime
            example = served.decoder.decode({"instances": [runtime.signature.example_row()]})
            runtime.predict(example)
            runtime.predict_proba(example)
        except WharfError as exc:  # an example the model refuses (unknown category): warm nothing
            log.info("no warm-up for %s:%s: %s", served.name, served.version, exc.detail)

    def stats(self, name: str) -> list[dict[str, Any]]:
        """Batching and cache counters of each loaded version of ``name``."""
        self.check_served(name)
        out = []
        for (model, version), served in sorted(self._loaded.items()):
            if model != name:
                continue
            entry: dict[str, Any] = {"version": version}
            if isinstance(served.runtime, BatchingRuntime):
                entry["batching"] = served.runtime.stats.as_dict()
            if served.cache is not None:
                entry["cache"] = served.cache.as_dict()
            out.append(entry)
        return out

    def _check_versions(self, record: VersionRecord, runtime: Runtime) -> None:
        framework = runtime.framework
        made = record.library_versions.get(framework)
        here = runtimes.installed_version(framework)
        if not made or not here or major_minor(made) == major_minor(here):
            if record.warnings:
                self.registry.metadata.set_warnings(record.name, record.version, [])
            return
        message = (
            f"{record.name}:{record.version} was made with {framework} {made} and is loaded with "
            f"{framework} {here}; predictions may differ. Re-export it with {framework} {here}."
        )
        if self.strict_versions:
            raise IncompatibleVersion(
                message + " Refused because WHARF_STRICT_VERSIONS is on.", field="version"
            )
        log.warning(message)
        if message not in record.warnings:
            self.registry.metadata.set_warnings(record.name, record.version, [message])

    def warm_loaded(self) -> None:
        """Warm every loaded version, and those loaded from now on."""
        self.warm_on_load = True
        for served in list(self._loaded.values()):
            self._warm(served)

    def preload(self) -> None:
        """Load what every served name answers with (latest and aliases), then mark ready.

        A model that fails to load is logged and listed in ``failed``; ``/readyz`` reports it.
        """
        self._generation = None
        self.sync()
        self.ready.set()

    def retry_failed(self) -> list[str]:
        """Read the registry again and load what failed; returns the names left answering nothing."""
        if self.failed or self._failed_targets:
            with self._sync_lock:
                self._generation = None
            self.sync()
        return list(self.failed)

    # -- predict -----------------------------------------------------------------------------

    def decode(self, name: str, version: int, data: bytes, *, csv: bool = False) -> Any:
        """Rows of a request body decoded against ``name:version``'s signature, as a
        :class:`~wharf.batch.Batch` (for a drift reference sample, say).

        :raises InvalidInput: as a prediction request with these rows would be.
        """
        served = self.model(name, version)
        return served.decoder.decode_csv(data) if csv else served.decoder.decode(parse_json(data))

    def predict(
        self,
        name: str,
        version: int | None,
        data: bytes,
        *,
        csv: bool = False,
        probabilities: bool = False,
        alias: str | None = None,
    ) -> dict[str, Any]:
        """Decode ``data``, predict and shape the response.

        :param data: a JSON body (one of the accepted envelopes), or CSV rows with ``csv``.
        :param probabilities: add class probabilities (classifiers only).
        :returns: ``{"model", "version", "predictions"}`` plus ``"probabilities"`` and ``"classes"``.
        """
        return self.answer(self.model(name, version, alias), data, csv=csv, probabilities=probabilities)

    def answer(
        self, served: ServedModel, data: bytes, *, csv: bool = False, probabilities: bool = False
    ) -> dict[str, Any]:
        """:meth:`predict` with the version already chosen (by :meth:`model`)."""
        # A 16-byte digest, not the body: a cache of large bodies would hold every one of them.
        key = (csv, probabilities, hashlib.blake2b(data, digest_size=16).digest()) if served.cache else None
        if served.cache is not None:
            hit = served.cache.get(key)
            self.telemetry.cache_lookup(served.name, served.version, hit is not None)
            if hit is not None:
                return hit
        if csv:
            batch = served.decoder.decode_csv(data)
        elif (plain := served.decoder.decode_plain(data)) is not None:
            batch = plain
        else:
            body = parse_json(data)
            batch = served.decoder.decode(body)
            probabilities = probabilities or asks_probabilities(body)
        result: dict[str, Any] = {"model": served.name, "version": served.version}
        if served.answered_by is not None:
            result["answered_by"] = served.answered_by
        proba = served.runtime.predict_proba(batch) if probabilities else None
        predictions = finite(served.runtime.predict(batch))
        result["predictions"] = jsonable(predictions)
        if proba is not None:
            result["probabilities"] = jsonable(finite(proba))
            result["classes"] = served.runtime.signature.output.classes
        if served.cache is not None:
            served.cache.put(key, result)
        return result
