"""Telemetry: the counters and histograms behind ``/metrics``, kept cheap on the hot path.

A request costs one lock and a few dictionary updates here; nothing is formatted, parsed or
written while it is answered. What needs numpy (predicted classes, drift) is handed to
:class:`~wharf.services.monitor.Monitor` and counted off the request path.

Several worker processes: each writes a snapshot of its own values to ``<folder>/<pid>.json`` about
once a second (:meth:`Telemetry.write`), and ``/metrics`` in any worker adds every snapshot in the
folder to its own live values (:func:`merge`). Counters and histograms of a worker that has exited
stay in the sum, so totals never go down; its gauges are dropped.
"""

from __future__ import annotations

import logging
import os
import threading
from bisect import bisect_left
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import orjson

from wharf.services.batching import HISTOGRAM_BOUNDS

LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
"""Upper bounds of the latency histograms, in seconds (Prometheus ``le``; +Inf follows)."""
ROWS_BUCKETS = HISTOGRAM_BOUNDS
"""Upper bounds of the batch-size histogram, in rows per model call (as ``/stats`` shows them)."""
LOAD_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
"""Upper bounds of the model-load histogram, in seconds."""

Key = tuple[str, ...]
log = logging.getLogger("wharf.telemetry")


def minute_of(epoch_seconds: float) -> int:
    return int(epoch_seconds // 60)


class Histogram:
    """Counts per bucket (the last one unbounded) and the sum of the observed values."""

    __slots__ = ("bounds", "counts", "total")

    def __init__(
        self, bounds: tuple[float, ...], counts: list[int] | None = None, total: float = 0.0
    ) -> None:
        self.bounds = bounds
        self.counts = counts if counts is not None else [0] * (len(bounds) + 1)
        self.total = total

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1  # le: a value on a bound falls in it
        self.total += value

    def add(self, counts: list[int], total: float) -> None:
        for i, n in enumerate(counts):
            self.counts[i] += n
        self.total += total

    @property
    def count(self) -> int:
        return sum(self.counts)


class MinuteCounts:
    """One model version's requests in one minute, for the dashboard's charts."""

    __slots__ = ("errors", "latency", "requests", "rows")

    def __init__(self) -> None:
        self.requests = 0
        self.errors = 0
        self.rows = 0
        self.latency = [0] * (len(LATENCY_BUCKETS) + 1)


class Telemetry:
    """The metric values of this process.

    :param folder: where every worker of one server writes its snapshot; None in a single process.
    """

    COUNTERS = ("requests", "errors", "rows", "classes", "cache", "log_dropped")
    HISTOGRAMS = {"durations": LATENCY_BUCKETS, "model_time": LATENCY_BUCKETS, "batch_rows": ROWS_BUCKETS}

    def __init__(self, folder: Path | None = None) -> None:
        self.folder = folder
        self.loaded_versions: Callable[[], Iterable[tuple[str, int]]] = tuple
        """The versions this process holds loaded (set by the inference service's owner)."""
        self._lock = threading.Lock()
        self.requests: dict[Key, int] = {}
        """(route, method, status, model, version) -> requests answered."""
        self.errors: dict[Key, int] = {}
        """(problem type, status) -> error answers."""
        self.rows: dict[Key, int] = {}
        """(model, version) -> rows predicted."""
        self.classes: dict[Key, int] = {}
        """(model, version, class) -> rows predicted as that class."""
        self.cache: dict[Key, int] = {}
        """(model, version, "hit" | "miss") -> prediction cache lookups."""
        self.log_dropped: dict[Key, int] = {}
        """() -> access log lines lost (the writer's kept lines were full, or stdout failed)."""
        self.values: dict[Key, list[float]] = {}
        """(model, version) -> [count, sum] of a regressor's predicted values."""
        self.durations: dict[Key, Histogram] = {}
        """(route, model, version) -> request latency, end to end in the WSGI app."""
        self.model_time: dict[Key, Histogram] = {}
        """(model, version) -> time of each model call (one per batch)."""
        self.batch_rows: dict[Key, Histogram] = {}
        """(model, version) -> rows per model call."""
        self.loads: dict[Key, Histogram] = {}
        """(model, version) -> seconds to load and check a version."""
        self.minutes: dict[tuple[str, int, int], MinuteCounts] = {}
        """(model, version, minute) -> counts not yet written to the database."""
        self._changes = 0
        """Bumped by every change of a snapshot's values (writes are skipped while it stands)."""
        self._written: tuple[int, tuple[tuple[str, int], ...]] | None = None

    # -- recording (hot path) --------------------------------------------------------------------

    def request(
        self,
        route: str,
        method: str,
        status: int,
        seconds: float,
        model: str = "",
        version: int | None = None,
        *,
        error: str | None = None,
        now: float = 0.0,
    ) -> None:
        """Count one answered request.

        :param model: the model that answered (empty when none did: unknown names stay out of the
            labels, so a client cannot grow them without bound).
        :param error: the problem type of an error answer.
        :param now: epoch seconds, for the per-minute counts (only with ``model``).
        """
        label = "" if version is None else str(version)
        key = (route, method, str(status), model, label)
        with self._lock:
            self._changes += 1
            self.requests[key] = self.requests.get(key, 0) + 1
            hist = self.durations.get((route, model, label))
            if hist is None:
                hist = self.durations[(route, model, label)] = Histogram(LATENCY_BUCKETS)
            hist.observe(seconds)
            if error is not None:
                ekey = (error, str(status))
                self.errors[ekey] = self.errors.get(ekey, 0) + 1
            if model and version is not None:
                mkey = (model, version, minute_of(now))
                counts = self.minutes.get(mkey)
                if counts is None:
                    counts = self.minutes[mkey] = MinuteCounts()
                counts.requests += 1
                counts.errors += status >= 400
                counts.latency[bisect_left(LATENCY_BUCKETS, seconds)] += 1

    def model_call(
        self, model: str, version: int, rows: int, seconds: float, *, predicted: bool = True
    ) -> None:
        """Count one call of a model (a batch of ``rows`` rows) that took ``seconds``.

        :param predicted: count the rows as predicted (False for the probabilities asked for
            alongside the labels of the same rows).
        """
        key = (model, str(version))
        with self._lock:
            self._changes += 1
            if predicted:
                self.rows[key] = self.rows.get(key, 0) + rows
            hist = self.model_time.get(key)
            if hist is None:
                hist = self.model_time[key] = Histogram(LATENCY_BUCKETS)
                self.batch_rows[key] = Histogram(ROWS_BUCKETS)
            hist.observe(seconds)
            self.batch_rows[key].observe(rows)

    def cache_lookup(self, model: str, version: int, hit: bool) -> None:
        key = (model, str(version), "hit" if hit else "miss")
        with self._lock:
            self._changes += 1
            self.cache[key] = self.cache.get(key, 0) + 1

    def log_lines_dropped(self, lines: int) -> None:
        with self._lock:
            self._changes += 1
            self.log_dropped[()] = self.log_dropped.get((), 0) + lines

    # -- recording (off the hot path) ------------------------------------------------------------

    def loaded(self, model: str, version: int, seconds: float) -> None:
        with self._lock:
            self._changes += 1
            hist = self.loads.setdefault((model, str(version)), Histogram(LOAD_BUCKETS))
            hist.observe(seconds)

    def outputs(self, model: str, version: int, classes: Iterable[tuple[str, int]]) -> None:
        """Add predicted class counts of ``model:version``."""
        with self._lock:
            self._changes += 1
            for label, n in classes:
                key = (model, str(version), label)
                self.classes[key] = self.classes.get(key, 0) + n

    def values_summary(self, model: str, version: int, count: int, total: float) -> None:
        """Add ``count`` predicted values summing to ``total`` (regressors)."""
        with self._lock:
            self._changes += 1
            summary = self.values.setdefault((model, str(version)), [0.0, 0.0])
            summary[0] += count
            summary[1] += total

    def rows_in_minute(self, model: str, version: int, minute: int, rows: int) -> None:
        with self._lock:
            counts = self.minutes.get((model, version, minute))
            if counts is None:
                counts = self.minutes[(model, version, minute)] = MinuteCounts()
            counts.rows += rows

    def give_back(self, taken: dict[tuple[str, int, int], MinuteCounts]) -> None:
        """Add per-minute counts a failed write took back to those gathered since."""
        with self._lock:
            for key, old in taken.items():
                counts = self.minutes.get(key)
                if counts is None:
                    self.minutes[key] = old
                    continue
                counts.requests += old.requests
                counts.errors += old.errors
                counts.rows += old.rows
                counts.latency = [a + b for a, b in zip(counts.latency, old.latency, strict=True)]

    def take_minutes(self) -> dict[tuple[str, int, int], MinuteCounts]:
        """The per-minute counts gathered since the last call (the caller writes them)."""
        with self._lock:
            taken, self.minutes = self.minutes, {}
        return taken

    # -- snapshots -------------------------------------------------------------------------------

    def snapshot(self, *, loaded: bool = True) -> dict[str, Any]:
        """Every cumulative value, JSON-able: what a worker writes for the others to read.

        :param loaded: list the versions this process holds (see :meth:`write`).
        """
        with self._lock:
            data: dict[str, Any] = {
                name: [[*key, n] for key, n in getattr(self, name).items()] for name in self.COUNTERS
            }
            data["values"] = [[*key, *summary] for key, summary in self.values.items()]
            for name in ("durations", "model_time", "batch_rows", "loads"):
                data[name] = [[*key, h.counts, h.total] for key, h in getattr(self, name).items()]
        data["pid"] = os.getpid()
        held = self.loaded_versions() if loaded else ()
        data["loaded"] = [[model, str(version)] for model, version in held]
        return data

    def reset(self) -> None:
        """Start from zero (in a forked worker: what the parent counted is the parent's)."""
        with self._lock:
            for name in (
                *self.COUNTERS,
                "values",
                "durations",
                "model_time",
                "batch_rows",
                "loads",
                "minutes",
            ):
                getattr(self, name).clear()
            self._changes += 1

    def write(self, *, loaded: bool = True) -> None:
        """Write this process's snapshot to its file in ``folder`` (atomically), when it changed.

        :param loaded: report the versions this process holds (False in a server's main process:
            it loads them, but only its workers serve them).
        """
        if self.folder is None:
            return
        held = tuple(sorted(self.loaded_versions())) if loaded else ()
        stamp = (self._changes, held)
        if stamp == self._written:
            return
        target = self.folder / f"{os.getpid()}.json"
        scratch = target.with_suffix(".tmp")
        try:
            scratch.write_bytes(orjson.dumps(self.snapshot(loaded=loaded)))
            os.replace(scratch, target)
        except OSError:
            log.exception("could not write this worker's metrics to %s", self.folder)
            return
        self._written = stamp

    def others(self) -> list[dict[str, Any]]:
        """The snapshots the other workers of this server wrote (unreadable ones skipped)."""
        if self.folder is None or not self.folder.is_dir():
            return []
        own = f"{os.getpid()}.json"
        found = []
        for path in self.folder.glob("*.json"):
            if path.name == own:
                continue
            try:
                found.append(orjson.loads(path.read_bytes()))
            except (OSError, orjson.JSONDecodeError):
                continue  # written by a worker killed mid-write: the next one will be whole
        return found


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def merge(snapshots: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """One snapshot summing ``snapshots``: counters and histograms added key by key; the gauge
    ``loaded`` counts the live processes holding each version."""
    total: dict[str, dict[Key, Any]] = {"loaded": {}}
    for snap in snapshots:
        pid = snap.get("pid")
        if pid == os.getpid() or (isinstance(pid, int) and alive(pid)):
            for model, version in snap.get("loaded", []):
                total["loaded"][(model, version)] = total["loaded"].get((model, version), 0) + 1
        for name in Telemetry.COUNTERS:
            table = total.setdefault(name, {})
            for *key, n in snap.get(name, []):
                table[tuple(key)] = table.get(tuple(key), 0) + n
        table = total.setdefault("values", {})
        for *key, count, value_sum in snap.get("values", []):
            old = table.get(tuple(key), (0.0, 0.0))
            table[tuple(key)] = (old[0] + count, old[1] + value_sum)
        for name in ("durations", "model_time", "batch_rows", "loads"):
            table = total.setdefault(name, {})
            for *key, counts, value_sum in snap.get(name, []):
                old = table.get(tuple(key))
                if old is None:
                    table[tuple(key)] = (list(counts), value_sum)
                else:
                    table[tuple(key)] = (
                        [a + b for a, b in zip(old[0], counts, strict=True)],
                        old[1] + value_sum,
                    )
    return total
