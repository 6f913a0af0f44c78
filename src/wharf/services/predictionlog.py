"""The prediction log: a configurable sample of prediction requests, kept for audit and read back by admins.

:meth:`PredictionLog.offer` runs on every prediction. Unsampled, it costs one comparison (none at all
when the sample is 0); sampled, it encodes the request's inputs and outputs to JSON bytes and appends
them to an in-memory queue, never touching the database and never blocking: a full queue drops the
entry and counts it. A daemon writer thread inserts the queue in batches every ``flush_seconds`` and
deletes entries older than the retention once an hour. Each server worker runs its own writer,
started after the fork (:meth:`PredictionLog.start`).

What is kept of a request (each part at most :data:`MAX_INPUT_BYTES` / :data:`MAX_OUTPUT_BYTES`)::

    inputs    the body as the client sent it, after JSON parsing (a CSV body: its text, one string)
    outputs   the response (numpy arrays and scalars become lists and numbers)

A part whose JSON encoding is larger than its limit (for a string: whose UTF-8 text is) is kept as
``{"truncated": true, "bytes": <its full size>, "head": "<its first bytes, as text>"}``: the start
of its JSON text, or of the string itself, cut at a character boundary. A request body that is one
of the prediction envelopes never has that shape, so the marker is unambiguous.
"""

from __future__ import annotations

import logging
import os
import random as _random
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from wharf.errors import InvalidInput
from wharf.storage.predictions import PredictionRecord, PredictionTable, utc

log = logging.getLogger(__name__)

MAX_INPUT_BYTES = 64 * 1024
"""Most bytes of a request's inputs kept whole (see the module's docstring for what a larger one keeps)."""
MAX_OUTPUT_BYTES = 64 * 1024
"""Most bytes of a response kept whole."""
BATCH_ROWS = 1000
"""Rows per insert (one transaction each)."""
PRUNE_SECONDS = 3600.0
"""How often the writer deletes entries past the retention."""
MAX_READ = 1000
"""Most entries one :meth:`PredictionLog.read` answers."""
MAX_OFFSET = 2**31 - 1
MAX_VERSION = 2**31 - 1
"""The ``version`` column's largest value."""
_OPTIONS = orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS


@dataclass(frozen=True, slots=True)
class _Entry:
    """One sampled request, waiting for the writer: its parts already encoded (detached from the request)."""

    at: datetime
    model: str
    version: int
    request_id: str | None
    key_id: str | None
    inputs: bytes
    outputs: bytes

    def row(self) -> dict[str, Any]:
        return {
            "at": self.at,
            "model": self.model,
            "version": self.version,
            "request_id": self.request_id,
            "key_id": self.key_id,
            "inputs": orjson.loads(self.inputs),
            "outputs": orjson.loads(self.outputs),
        }


def _plain(value: Any) -> Any:
    """orjson's fallback: arrays and frames as lists (``tolist``), anything else as its text."""
    tolist = getattr(value, "tolist", None)
    return tolist() if callable(tolist) else str(value)


def encode(value: Any, limit: int) -> bytes:
    """``value`` as JSON bytes, or past ``limit`` bytes the ``truncated`` marker of the module's docstring.

    :param value: a JSON-able value, numpy arrays included; bytes are taken as UTF-8 text.
    """
    if isinstance(value, bytes | bytearray | memoryview):
        value = bytes(value).decode("utf-8", "replace")
    if isinstance(value, str):
        text = value.encode()
        if len(text) <= limit:
            return orjson.dumps(value)
    else:
        text = orjson.dumps(value, default=_plain, option=_OPTIONS)
        if len(text) <= limit:
            return text
    head = text[:limit].decode("utf-8", "ignore")  # "ignore": a character cut in two is left out
    return orjson.dumps({"truncated": True, "bytes": len(text), "head": head})


class PredictionLog:
    """Samples prediction requests into a queue, and writes the queue to the prediction log table.

    :param table: where entries are written and read.
    :param sample: the share of requests logged, 0 to 1 (0: none, and :meth:`offer` returns at once).
    :param retention_days: entries older than this are deleted (at start, then hourly).
    :param flush_seconds: how often the writer inserts what is queued.
    :param max_queue: most entries waiting; past it, new ones are dropped and counted in ``dropped``.
    :param random: a draw in ``[0, 1)`` per request (tests pass their own).
    :raises ValueError: a parameter out of its range.
    """

    def __init__(
        self,
        table: PredictionTable,
        *,
        sample: float,
        retention_days: float,
        flush_seconds: float = 1.0,
        max_queue: int = 10_000,
        random: Callable[[], float] = _random.random,
    ) -> None:
        if not 0.0 <= sample <= 1.0:
            raise ValueError(f"sample must be from 0 to 1; got {sample!r}")
        if retention_days <= 0 or flush_seconds <= 0 or max_queue < 1:
            raise ValueError("retention_days and flush_seconds must be positive, max_queue at least 1")
        self.table = table
        self.sample = float(sample)
        self.retention = timedelta(days=retention_days)
        self.flush_seconds = flush_seconds
        self.max_queue = max_queue
        self._random = random
        self.logged = 0
        """Entries written to the database."""
        self.dropped = 0
        """Sampled entries lost: the queue was full, they did not encode, or writing them failed twice."""
        self.errors = 0
        """Database errors met by the writer (each logged)."""
        self._queue: deque[_Entry] = deque()
        self._retry: list[dict[str, Any]] = []
        """Rows whose insert failed once: tried again at the next flush, then dropped."""
        self._pid = os.getpid()
        self._lock = threading.Lock()
        self._write_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def enabled(self) -> bool:
        return self.sample > 0.0

    # -- the request path --------------------------------------------------------------------

    def offer(
        self,
        model: str,
        version: int,
        *,
        inputs: Any,
        outputs: Any,
        request_id: str | None,
        key_id: str | None,
    ) -> bool:
        """Queue this prediction for the log if it is sampled; True when it was queued.

        Never raises and never blocks: an entry that finds the queue full, or that cannot be
        encoded, is dropped and counted.

        :param inputs: the parsed JSON body, or a CSV body's text.
        :param outputs: the response (numpy arrays in it are written as lists).
        """
        sample = self.sample
        if sample <= 0.0 or (sample < 1.0 and self._random() >= sample):
            return False
        try:
            entry = _Entry(
                datetime.now(UTC),
                model,
                version,
                request_id,
                key_id,
                encode(inputs, MAX_INPUT_BYTES),
                encode(outputs, MAX_OUTPUT_BYTES),
            )
        except Exception:  # a value JSON cannot carry: the prediction itself must not fail for it
            log.warning("A prediction of %s:%s could not be logged", model, version, exc_info=True)
            with self._lock:
                self.dropped += 1
            return False
        with self._lock:
            if len(self._queue) >= self.max_queue:
                self.dropped += 1
                return False
            self._queue.append(entry)
        if self._thread is None or self._pid != os.getpid():
            self.start()  # the first entry of this process (embedded apps; a worker after the fork)
        return True

    # -- the writer --------------------------------------------------------------------------

    def start(self) -> None:
        """Start this process's writer thread (once; again in a forked worker, whose copy of the
        parent's thread does not run). It prunes first. A no-op while the sample is 0."""
        if not self.enabled:
            return
        if self._pid != os.getpid():
            self._forked()
        with self._lock:
            if self._thread is not None and self._thread.is_alive():
                return
            self._stop.clear()
            self._thread = threading.Thread(target=self._loop, name="wharf-prediction-log", daemon=True)
            self._thread.start()

    def _forked(self) -> None:
        """In a forked worker: start empty. The parent writes what it had queued; its locks may have
        been held by one of its threads at the fork, so this process takes new ones."""
        self._pid = os.getpid()
        self._lock = threading.Lock()
        self._write_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = None
        self._queue = deque()
        self._retry = []
        self.logged = self.dropped = self.errors = 0

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the writer and write what is still queued."""
        self._stop.set()
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.join(timeout)
        if self._queue or self._retry:
            self.flush()

    def flush(self) -> int:
        """Write what is queued now, in batches of :data:`BATCH_ROWS`; returns the rows written.

        Never raises: a database error is logged, and the rows it failed are tried once more at the
        next flush, then dropped.
        """
        with self._write_lock:
            with self._lock:
                taken, self._queue = self._queue, deque()
            retried, self._retry = self._retry, []
            fresh = [entry.row() for entry in taken]
            written = 0
            for rows, again in ((retried, True), (fresh, False)):
                for start in range(0, len(rows), BATCH_ROWS):
                    batch = rows[start : start + BATCH_ROWS]
                    try:
                        written += self.table.add_many(batch)
                    except Exception:
                        self._failed(batch, again)
            with self._lock:
                self.logged += written
            return written

    def _failed(self, batch: list[dict[str, Any]], again: bool) -> None:
        with self._lock:
            self.errors += 1
            if again or len(self._retry) + len(batch) > self.max_queue:
                self.dropped += len(batch)
                lost = True
            else:
                self._retry.extend(batch)
                lost = False
        if lost:
            log.exception("Could not write %d prediction log entries; they are dropped", len(batch))
        else:
            log.exception("Could not write %d prediction log entries; trying again", len(batch))

    def prune(self) -> int:
        """Delete the entries older than the retention; returns how many (0 after a logged error)."""
        try:
            return self.table.prune(datetime.now(UTC) - self.retention)
        except Exception:
            with self._lock:
                self.errors += 1
            log.exception("Could not prune the prediction log")
            return 0

    def _loop(self) -> None:
        next_prune = time.monotonic()
        while True:
            if time.monotonic() >= next_prune:
                self.prune()
                next_prune = time.monotonic() + PRUNE_SECONDS
            stopping = self._stop.wait(self.flush_seconds)
            try:
                self.flush()
            except Exception:  # flush logs its own; this keeps the thread alive whatever else happens
                log.exception("The prediction log writer failed; it goes on")
            if stopping:
                return

    # -- reading -----------------------------------------------------------------------------

    def read(
        self,
        model: str,
        *,
        version: int | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> tuple[int, list[PredictionRecord]]:
        """``model``'s entries newest first, and how many match in all.

        :param since: from this moment (inclusive); naive means UTC.
        :param until: before this moment (exclusive); naive means UTC.
        :raises InvalidInput: a parameter out of range, or ``since`` not before ``until``, naming it.
        """
        if version is not None and not 1 <= version <= MAX_VERSION:
            raise InvalidInput(f"'version' must be 1 to {MAX_VERSION}; got {version}.", field="version")
        if not 1 <= limit <= MAX_READ:
            raise InvalidInput(f"'limit' must be 1 to {MAX_READ}; got {limit}.", field="limit")
        if not 0 <= offset <= MAX_OFFSET:
            raise InvalidInput(f"'offset' must be 0 to {MAX_OFFSET}; got {offset}.", field="offset")
        if since is not None and until is not None and utc(since) >= utc(until):
            raise InvalidInput(
                f"'since' ({utc(since).isoformat()}) must be before 'until' ({utc(until).isoformat()}).",
                field="since",
            )
        where: dict[str, Any] = {"version": version, "since": since, "until": until}
        entries = self.table.recent(model, **where, limit=limit, offset=offset)
        total = self.table.count(model, **where)
        return total, entries

    def as_dict(self) -> dict[str, Any]:
        """The counters, and what is waiting to be written."""
        return {
            "sample": self.sample,
            "logged": self.logged,
            "dropped": self.dropped,
            "errors": self.errors,
            "queued": len(self._queue) + len(self._retry),
        }
