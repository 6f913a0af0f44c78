"""Inference: the cache of loaded versions, and predict from a request body to a response.

Versions are loaded once, checked against the framework version they were made with, and kept
with their compiled :class:`~wharf.services.decoding.Decoder`. Which version is "latest" is
looked up in the registry at most every ``refresh_seconds``.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from wharf import runtimes
from wharf.errors import IncompatibleVersion, InvalidInput, ModelError, ModelNotFound, WharfError
from wharf.runtimes.base import Predictor, Runtime
from wharf.services.batching import BatchingRuntime, BatchPolicy
from wharf.services.cache import PredictionCache
from wharf.services.decoding import Decoder, parse_json
from wharf.services.registry import ANSWERED_BY, Registry
from wharf.settings import ModelOptions
from wharf.storage import VersionRecord

log = logging.getLogger("wharf.inference")


def major_minor(version: str) -> tuple[str, ...]:
    return tuple(version.split(".")[:2])


@dataclass
class ServedModel:
    """A loaded version, ready to predict: its runtime (wrapped by batching) and decoder."""

    record: VersionRecord
    runtime: Predictor
    decoder: Decoder
    cache: PredictionCache | None = None
    answered_by: int | None = None
    """The verified twin whose runtime answers for this version (``wharf models set-fast``)."""
    fresh_until: float = 0.0
    """Until when (monotonic) the record is trusted; then it is read again, so a delete or a new
    answering twin made by another worker or replica is seen."""

    @property
    def name(self) -> str:
        return self.record.name

    @property
    def version(self) -> int:
        return self.record.version


def _jsonable(values: np.ndarray) -> Any:
    """Numeric arrays stay arrays (orjson writes them natively); labels become lists."""
    if values.dtype.kind in "fiub":
        return np.ascontiguousarray(values)
    return values.tolist()


def _asks_probabilities(body: Any) -> bool:
    """Whether a body's ``"return"`` (already checked by the decoder) asks for probabilities."""
    wanted = body.get("return") if isinstance(body, dict) else None
    return wanted == "probabilities" or (isinstance(wanted, list) and "probabilities" in wanted)


def _finite(values: np.ndarray) -> np.ndarray:
    """``values``, unless a float result is NaN or infinite: then the input was out of range.

    :raises InvalidInput: naming the first row with a non-finite result.
    """
    if values.dtype.kind == "f" and not np.isfinite(values).all():
        row = int(np.flatnonzero(~np.isfinite(values.reshape(len(values), -1)).all(axis=1))[0])
        raise InvalidInput(
            f"The model's result for row {row} is not a finite number; an input value of that row "
            "is probably out of the range the model can take.",
            row=row,
        )
    return values


class InferenceService:
    """Loads versions on first use and answers predictions.

    :param registry: where versions come from.
    :param max_rows: rows allowed in one request.
    :param strict_versions: refuse versions made with another framework major.minor.
    :param refresh_seconds: how long a "latest version" answer is trusted.
    :param models: names served; empty serves all.
    :param options: a model name's batching and cache options.
    """

    def __init__(
        self,
        registry: Registry,
        *,
        max_rows: int,
        strict_versions: bool = False,
        refresh_seconds: float = 2.0,
        models: tuple[str, ...] = (),
        options: Callable[[str], ModelOptions],
        queue_timeout: float = 0.0,
    ) -> None:
        self.registry = registry
        self.queue_timeout = queue_timeout
        self.options = options
        self.max_rows = max_rows
        self.strict_versions = strict_versions
        self.refresh_seconds = refresh_seconds
        self.models = frozenset(models)
        self._loaded: dict[tuple[str, int], ServedModel] = {}
        self._latest: dict[str, tuple[int, float]] = {}
        self._lock = threading.Lock()
        self._key_locks: dict[tuple[str, int], threading.Lock] = {}
        self.ready = threading.Event()
        self.warm_on_load = True
        self.failed: list[str] = []
        """Predict once on the example row when a version loads (off in a server's master process,
        where no model may start its thread pools before the workers fork)."""

    # -- lookup ------------------------------------------------------------------------------

    def served_names(self) -> list[str]:
        names = self.registry.names()
        return [n for n in names if n in self.models] if self.models else names

    def check_served(self, name: str) -> None:
        """:raises ModelNotFound: this server does not serve ``name``."""
        if self.models and name not in self.models:
            raise ModelNotFound(f"No model named {name!r} is served here.", field="name")

    def model(self, name: str, version: int | None = None) -> ServedModel:
        """The loaded version (latest when ``version`` is None), loading it on first use."""
        self.check_served(name)
        if version is None:
            version = self._latest_version(name)
        key = (name, version)
        served = self._loaded.get(key)
        if served is not None:
            if served.fresh_until > time.monotonic():
                return served
            served = self._recheck(served)
            if served is not None:
                return served
        record = self.registry.get(name, version)  # unknown names and versions stop here
        with self._lock:
            key_lock = self._key_locks.setdefault(key, threading.Lock())
        with key_lock:
            served = self._loaded.get(key)
            if served is None:
                served = self._load(record)
                with self._lock:
                    self._loaded[key] = served
        return served

    def _recheck(self, served: ServedModel) -> ServedModel | None:
        """``served`` if its record still says the same, else None (dropped from the cache).

        :raises VersionNotFound: the version was deleted meanwhile.
        """
        key = (served.name, served.version)
        try:
            record = self.registry.get(*key)
        except WharfError:
            self.forget(*key)
            raise
        if record.extra.get(ANSWERED_BY) != served.answered_by or record.sha256 != served.record.sha256:
            self.forget(*key)
            return None
        served.fresh_until = time.monotonic() + self.refresh_seconds
        return served

    def _latest_version(self, name: str) -> int:
        cached = self._latest.get(name)
        now = time.monotonic()
        if cached is not None and cached[1] > now:
            return cached[0]
        number = self.registry.get(name).version
        self._latest[name] = (number, now + self.refresh_seconds)
        return number

    def forget_latest(self, name: str) -> None:
        """Ask the registry again which version of ``name`` is latest (after a registration)."""
        self._latest.pop(name, None)

    def forget(self, name: str, version: int | None = None) -> None:
        """Drop cached state of ``name`` (after a delete or a new registration)."""
        with self._lock:
            self._latest.pop(name, None)
            for key in [k for k in self._loaded if k[0] == name and version in (None, k[1])]:
                del self._loaded[key]
                self._key_locks.pop(key, None)

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
        runtime: Predictor = loaded
        options = self.options(record.name)
        assert options.batch_max_rows is not None and options.batch_max_wait_ms is not None
        if options.batch_max_rows > 1:
            policy = BatchPolicy(options.batch_max_rows, options.batch_max_wait_ms / 1000, self.queue_timeout)
            runtime = BatchingRuntime(loaded, policy)
        cache = PredictionCache(options.cache_entries) if options.cache_entries else None
        served = ServedModel(
            record,
            runtime,
            Decoder(runtime.signature, self.max_rows),
            cache,
            answered_by=answering.version if answering is not record else None,
            fresh_until=time.monotonic() + self.refresh_seconds,
        )
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
            example = served.decoder.decode({"instances": [served.runtime.signature.example_row()]})
            served.runtime.predict(example)
            served.runtime.predict_proba(example)
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
        """Load the latest version of every served model, then mark the service ready.

        A model that fails to load is logged and listed in ``failed``; ``/readyz`` reports it.
        """
        for name in self.served_names():
            try:
                self.model(name)
            except Exception:
                log.exception("could not load model %s", name)
                self.failed.append(name)
        self.ready.set()

    def retry_failed(self) -> list[str]:
        """Try again to load the models that failed at preload; returns those still failing."""
        for name in list(self.failed):
            try:
                self.model(name)
            except WharfError:
                continue
            self.failed.remove(name)
        return list(self.failed)

    # -- predict -----------------------------------------------------------------------------

    def predict(
        self,
        name: str,
        version: int | None,
        data: bytes,
        *,
        csv: bool = False,
        probabilities: bool = False,
    ) -> dict[str, Any]:
        """Decode ``data``, predict and shape the response.

        :param data: a JSON body (one of the accepted envelopes), or CSV rows with ``csv``.
        :param probabilities: add class probabilities (classifiers only).
        :returns: ``{"model", "version", "predictions"}`` plus ``"probabilities"`` and ``"classes"``.
        """
        served = self.model(name, version)
        # A 16-byte digest, not the body: a cache of large bodies would hold every one of them.
        key = (csv, probabilities, hashlib.blake2b(data, digest_size=16).digest()) if served.cache else None
        if served.cache is not None and (hit := served.cache.get(key)) is not None:
            return hit
        if csv:
            batch = served.decoder.decode_csv(data)
        else:
            body = parse_json(data)
            batch = served.decoder.decode(body)
            probabilities = probabilities or _asks_probabilities(body)
        result: dict[str, Any] = {"model": served.name, "version": served.version}
        if served.answered_by is not None:
            result["answered_by"] = served.answered_by
        proba = served.runtime.predict_proba(batch) if probabilities else None
        result["predictions"] = _jsonable(_finite(served.runtime.predict(batch)))
        if proba is not None:
            result["probabilities"] = _jsonable(_finite(proba))
            result["classes"] = served.runtime.signature.output.classes
        if served.cache is not None:
            served.cache.put(key, result)
        return result
