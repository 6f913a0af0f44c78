"""Monitoring: what each model predicted, its inputs against its drift reference, and the history
the dashboard draws.

The request path only hands over references to the rows and predictions it already has
(:meth:`Monitor.observe`, one list append). A background thread in each process (started on the
first observation, so after a server's fork) counts them about once a second: predicted classes
or value sums into :class:`~wharf.services.telemetry.Telemetry`, and inputs into the bins of the
version's drift reference, per minute. Every ``flush_seconds`` it appends its per-minute counts
(requests, errors, latency buckets, rows, input bins) to the database, where every worker and
replica adds its own rows and readers sum them: the charts and the drift window span them all.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from wharf.batch import Batch
from wharf.errors import WharfError
from wharf.runtimes.base import Predictor
from wharf.services import drift as stats
from wharf.services.telemetry import LATENCY_BUCKETS, MinuteCounts, Telemetry, minute_of
from wharf.storage.monitoring import DriftCounts, Minute, MonitoringTables, StoredReference

log = logging.getLogger("wharf.monitor")

TICK_SECONDS = 1.0
MAX_PENDING_CELLS = 4_000_000
"""Values (rows times columns) held for counting at most, about 32 MB of numbers; beyond,
observations are dropped (and counted as dropped)."""
DRIFT_ROWS_PER_TICK = 20_000
"""Rows binned for drift per tick at most: a sample is as good as all rows for a distribution."""
REFERENCE_SECONDS = 10.0
"""How long a process trusts what it read of a version's drift reference (one set elsewhere
counts here from then on)."""
PRUNE_SECONDS = 3600.0
HISTORY_STEP_MINUTES = 60


@dataclass
class _Seen:
    model: str
    version: int
    at: float
    batch: Batch
    predictions: np.ndarray
    classifier: bool


def quantile(counts: list[int], q: float) -> float | None:
    """The ``q`` quantile (seconds) of a latency histogram, interpolated linearly inside its bucket
    as Prometheus's ``histogram_quantile`` does; None without observations."""
    total = sum(counts)
    if total == 0:
        return None
    rank = q * total
    seen = 0
    for i, n in enumerate(counts):
        if seen + n >= rank and n > 0:
            if i == len(LATENCY_BUCKETS):
                return LATENCY_BUCKETS[-1]  # above the last bound: that bound is all one knows
            lower = LATENCY_BUCKETS[i - 1] if i else 0.0
            return lower + (LATENCY_BUCKETS[i] - lower) * (rank - seen) / n
        seen += n
    return LATENCY_BUCKETS[-1]


class Monitor:
    """Counts outputs and inputs off the request path and answers history and drift questions.

    :param telemetry: this process's metric values.
    :param tables: where per-minute counts and references are stored.
    :param latest: a model name's latest active version (for drift questions without a version).
    """

    def __init__(
        self,
        telemetry: Telemetry,
        tables: MonitoringTables,
        *,
        latest: Callable[[str], int],
        flush_seconds: float = 10.0,
        retention_days: float = 14.0,
        window_minutes: int = 60,
        min_rows: int = 1000,
        psi_threshold: float = 0.2,
        p_value: float = 0.001,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.telemetry = telemetry
        self.tables = tables
        self.latest = latest
        self.flush_seconds = flush_seconds
        self.retention_days = retention_days
        self.window_minutes = window_minutes
        self.min_rows = min_rows
        self.psi_threshold = psi_threshold
        self.p_value = p_value
        self.clock = clock
        self.dropped = 0
        self._pending: list[_Seen] = []
        self._pending_cells = 0
        self._drift: dict[tuple[str, int, int, str], tuple[int, dict[str, list[int]]]] = {}
        """(model, version, minute, reference digest) -> rows and counts not yet written."""
        self._references: dict[tuple[str, int], tuple[float, tuple[stats.Reference, str] | None]] = {}
        self._gauges: tuple[float, list[dict[str, Any]]] = (0.0, [])
        self._lock = threading.Lock()
        self._flush_lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._owner = 0
        self._stop = threading.Event()

    # -- the request path ------------------------------------------------------------------------

    def observe(
        self, model: str, version: int, batch: Batch, predictions: np.ndarray, runtime: Predictor
    ) -> None:
        """Hand over one request's rows and predictions for counting (no copy, no numpy work)."""
        if self._owner != os.getpid():
            self.start()
        classifier = runtime.signature.output.classes is not None or predictions.dtype.kind in "OUSb"
        with self._lock:
            cells = batch.n_rows * max(len(batch.names), 1)
            if self._pending_cells + cells > MAX_PENDING_CELLS:
                self.dropped += 1
                return
            self._pending.append(_Seen(model, version, self.clock(), batch, predictions, classifier))
            self._pending_cells += cells

    # -- the background thread -------------------------------------------------------------------

    def start(self) -> None:
        """Start this process's counting thread (again after a fork: threads do not survive one)."""
        with self._lock:
            if self._owner == os.getpid():
                return
            if self._owner:  # forked: what the parent held is the parent's to count
                self._pending, self._pending_cells, self._drift = [], 0, {}
                self._flush_lock = threading.Lock()
            self._owner = os.getpid()
            self._stop = threading.Event()
            self._thread = threading.Thread(target=self._run, name="wharf-monitor", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        """Stop the thread and write what it holds."""
        thread, self._thread = self._thread, None
        self._stop.set()
        if thread is not None and self._owner == os.getpid():
            thread.join(timeout=10)
            self._owner = 0
        try:
            self.flush()
        except Exception:
            log.exception("could not write the last monitoring counts")

    def _run(self) -> None:
        next_flush = time.monotonic() + self.flush_seconds
        next_prune = time.monotonic()
        while not self._stop.wait(TICK_SECONDS):
            try:
                self.tick()
                now = time.monotonic()
                if now >= next_flush:
                    next_flush = now + self.flush_seconds
                    self.flush()
                if now >= next_prune:
                    next_prune = now + PRUNE_SECONDS
                    self.prune()
            except Exception:  # the database is away: keep counting, write later
                log.exception("monitoring could not write its counts")

    def tick(self) -> None:
        """Count what was observed, and write this process's metric snapshot.

        Observations are grouped by version and minute first, so a tick costs one ``np.unique``
        and one binning per group, not per request (at a few thousand one-row requests a second,
        per-request numpy calls here would take a tenth of the core the requests run on).
        """
        with self._lock:
            pending, self._pending, self._pending_cells = self._pending, [], 0
        groups: dict[tuple[str, int, int], list[_Seen]] = {}
        for seen in pending:
            groups.setdefault((seen.model, seen.version, minute_of(seen.at)), []).append(seen)
        binned = 0
        for (model, version, minute), group in groups.items():
            self.telemetry.rows_in_minute(model, version, minute, sum(s.batch.n_rows for s in group))
            self._count_outputs(model, version, group)
            if binned < DRIFT_ROWS_PER_TICK:
                binned += self._count_inputs(model, version, minute, group, DRIFT_ROWS_PER_TICK - binned)
        self.telemetry.write()

    def _count_outputs(self, model: str, version: int, group: list[_Seen]) -> None:
        arrays = [s.predictions for s in group if s.predictions.ndim == 1 and len(s.predictions)]
        if not arrays:
            return
        values = np.concatenate(arrays) if len(arrays) > 1 else arrays[0]
        if group[0].classifier:
            labels, counts = np.unique(
                values.astype(str) if values.dtype.kind == "O" else values, return_counts=True
            )
            self.telemetry.outputs(
                model, version, ((str(label), int(n)) for label, n in zip(labels, counts, strict=True))
            )
        elif values.dtype.kind in "fiu":
            finite = values[np.isfinite(values)] if values.dtype.kind == "f" else values
            self.telemetry.values_summary(model, version, len(finite), float(finite.sum()))

    def _count_inputs(self, model: str, version: int, minute: int, group: list[_Seen], budget: int) -> int:
        """Bin up to ``budget`` rows of ``group`` against the version's reference; returns the rows."""
        found = self._reference(model, version)
        if found is None:
            return 0
        reference, digest = found
        taken, rows = [], 0
        for seen in group:
            if rows >= budget:
                break
            taken.append(seen.batch)
            rows += seen.batch.n_rows
        batch = Batch.concat(taken)
        columns = {name: batch.column(i) for i, name in enumerate(batch.names)}
        counts = stats.bin_counts(reference, columns)
        key = (model, version, minute, digest)
        old_rows, total = self._drift.get(key, (0, {}))
        self._drift[key] = (old_rows + batch.n_rows, stats.add_counts(total, counts))
        return batch.n_rows

    def flush(self) -> None:
        """Count what is pending and append the per-minute counts to the database."""
        with self._flush_lock:
            self.tick()
            minutes = self.telemetry.take_minutes()
            counted, self._drift = self._drift, {}
            try:
                self.tables.add(
                    [
                        Minute(model, version, minute, c.requests, c.errors, c.rows, c.latency)
                        for (model, version, minute), c in minutes.items()
                    ],
                    [
                        DriftCounts(model, version, minute, digest, rows, counts)
                        for (model, version, minute, digest), (rows, counts) in counted.items()
                    ],
                )
            except Exception:
                self._put_back(minutes, counted)
                raise

    def _put_back(
        self, minutes: dict[Any, MinuteCounts], counted: dict[tuple[str, int, int, str], Any]
    ) -> None:
        """Keep counts a failed write could not store, added to those gathered since, for the next
        flush."""
        self.telemetry.give_back(minutes)
        for key, (rows, counts) in counted.items():
            old_rows, old_counts = self._drift.get(key, (0, {}))
            self._drift[key] = (old_rows + rows, stats.add_counts(old_counts, counts))

    def prune(self) -> int:
        before = minute_of(self.clock()) - int(self.retention_days * 24 * 60)
        return self.tables.prune(before)

    # -- references ------------------------------------------------------------------------------

    def set_reference(
        self, model: str, version: int, columns: Mapping[str, np.ndarray], *, source: str
    ) -> stats.Reference:
        """Build and store the drift reference of ``model:version`` from its columns' values."""
        reference = stats.build_reference(columns)
        digest = self.tables.set_reference(
            model, version, source=source, rows=reference.rows, profile=reference.to_json()
        )
        self._references[(model, version)] = (time.monotonic() + REFERENCE_SECONDS, (reference, digest))
        return reference

    def reference(self, model: str, version: int) -> stats.Reference | None:
        """The drift reference of ``model:version`` as this process last read it (at most
        REFERENCE_SECONDS ago), or None."""
        found = self._reference(model, version)
        return None if found is None else found[0]

    def _reference(self, model: str, version: int) -> tuple[stats.Reference, str] | None:
        key = (model, version)
        cached = self._references.get(key)
        if cached is not None and cached[0] > time.monotonic():
            return cached[1]
        try:
            stored = self.tables.reference(model, version)
        except Exception:  # the database is away: count with what was read last, if anything
            log.warning("could not read the drift reference of %s:%s", model, version, exc_info=True)
            return None if cached is None else cached[1]
        found = None
        if stored is not None:
            try:
                found = (stats.Reference.from_json(stored.profile), stored.digest)
            except ValueError:
                log.error("the drift reference of %s:%s is malformed; it is ignored", model, version)
        self._references[key] = (time.monotonic() + REFERENCE_SECONDS, found)
        return found

    # -- questions -------------------------------------------------------------------------------

    def history(self, name: str, *, minutes: int = 60) -> dict[str, Any]:
        """Requests, errors, rows and latency percentiles of ``name`` per minute, oldest first."""
        now = minute_of(self.clock())
        first = now - minutes + 1
        axis = list(range(first, now + 1))
        requests, errors, rows = [0] * minutes, [0] * minutes, [0] * minutes
        latency = [[0] * (len(LATENCY_BUCKETS) + 1) for _ in axis]
        for m in self.tables.minutes(name, first):
            i = m.minute - first
            if not 0 <= i < minutes:
                continue
            requests[i] += m.requests
            errors[i] += m.errors
            rows[i] += m.rows
            latency[i] = [a + b for a, b in zip(latency[i], m.latency, strict=False)]

        def ms(q: float) -> list[float | None]:
            out = []
            for counts in latency:
                value = quantile(counts, q)
                out.append(None if value is None else round(value * 1000, 3))
            return out

        return {
            "name": name,
            "minutes": axis,
            "requests": requests,
            "errors": errors,
            "rows": rows,
            "latency_ms": {"p50": ms(0.5), "p95": ms(0.95), "p99": ms(0.99)},
        }

    def drift(self, name: str, version: int | None = None) -> dict[str, Any]:
        """The drift report of ``name:version`` (default: its latest active version) over the window."""
        version = self.latest(name) if version is None else version
        body: dict[str, Any] = {
            "name": name,
            "version": version,
            "window_minutes": self.window_minutes,
            "thresholds": {"psi": self.psi_threshold, "p_value": self.p_value, "min_rows": self.min_rows},
        }
        found = self._stored(name, version)
        if found is None:
            return {
                **body,
                "status": "no-reference",
                "rows": 0,
                "drifting": False,
                "reference": None,
                "columns": [],
            }
        stored, reference = found
        since = minute_of(self.clock()) - self.window_minutes + 1
        total: dict[str, list[int]] = {}
        for _, _, counts in self.tables.drift_counts(name, version, since, stored.digest):
            total = stats.add_counts(total, counts)
        report = self._compare(reference, total)
        status = "ok" if report.rows >= self.min_rows else "insufficient-data"
        return {
            **body,
            "status": status,
            **report.to_json(),
            "reference": {
                "source": stored.source,
                "rows": stored.rows,
                "created_at": stored.created_at.isoformat(),
            },
        }

    def _stored(self, name: str, version: int) -> tuple[StoredReference, stats.Reference] | None:
        """The stored reference of ``name:version``, read now; None without one (or with one that
        no longer parses: logged, and reported as none, so it can be uploaded again)."""
        stored = self.tables.reference(name, version)
        if stored is None:
            return None
        try:
            return stored, stats.Reference.from_json(stored.profile)
        except ValueError:
            log.error("the drift reference of %s:%s is malformed; upload a new one", name, version)
            return None

    def _compare(self, reference: stats.Reference, live: Mapping[str, list[int]]) -> stats.DriftReport:
        return stats.compare(
            reference, live, psi_threshold=self.psi_threshold, p_value=self.p_value, min_rows=self.min_rows
        )

    def drift_history(self, name: str, *, hours: int = 24, version: int | None = None) -> dict[str, Any]:
        """Each column's PSI per hour over the last ``hours`` (None for hours without rows), of
        ``version`` (default: the latest active one)."""
        version = self.latest(name) if version is None else version
        found = self._stored(name, version)
        now = minute_of(self.clock())
        first = (now // HISTORY_STEP_MINUTES - hours + 1) * HISTORY_STEP_MINUTES
        times = [first + i * HISTORY_STEP_MINUTES for i in range(hours)]
        if found is None:
            return {"name": name, "version": version, "times": times, "columns": {}}
        stored, reference = found
        hourly: list[dict[str, list[int]]] = [{} for _ in times]
        for minute, _, counts in self.tables.drift_counts(name, version, first, stored.digest):
            i = (minute - first) // HISTORY_STEP_MINUTES
            if 0 <= i < hours:
                hourly[i] = stats.add_counts(hourly[i], counts)
        columns: dict[str, list[float | None]] = {c.name: [] for c in reference.columns}
        for live in hourly:
            report = self._compare(reference, live)
            for column in report.columns:
                columns[column.name].append(None if column.rows == 0 else column.psi)
        return {"name": name, "version": version, "times": times, "columns": columns}

    def drift_gauges(self, names: list[str], seconds: float = 15.0) -> list[dict[str, Any]]:
        """The drift reports (with a reference) of ``names``' latest versions, for ``/metrics``:
        reused for ``seconds``, as each costs database reads."""
        expires, reports = self._gauges
        if expires > time.monotonic():
            return reports
        reports = []
        for name in names:
            try:
                report = self.drift(name)
            except WharfError:
                continue  # deleted, or nothing active
            if report["status"] != "no-reference":
                reports.append(report)
        self._gauges = (time.monotonic() + seconds, reports)
        return reports
