"""Adaptive batching: concurrent requests to one model merged into one predict call.

:class:`BatchingRuntime` wraps a runtime and keeps its protocol. When the model is idle a request
runs at once, alone: batching adds no wait. Requests that arrive while the model is busy queue up;
when the running call ends, the oldest queued request becomes the leader of the next batch (all
queued requests of the same method, up to ``max_rows`` rows), optionally waits up to ``max_wait``
for more, runs one predict call in its own thread and hands every request its slice of the result.

Rows are validated before they join (by the decoder), so a batch holds only well-formed rows. If
the merged call still fails, each request of the batch is retried alone, so one request's rows
never fail another request.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Any

import numpy as np

from wharf.batch import Batch
from wharf.errors import Overloaded
from wharf.runtimes.base import Runtime

HISTOGRAM_BOUNDS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096, 16384)
"""Upper bounds of the batch-size histogram buckets, in rows (the last bucket is unbounded)."""


@dataclass(frozen=True)
class BatchPolicy:
    """How far one model's requests may be merged.

    :param max_rows: most rows in one merged call; 1 turns batching off.
    :param max_wait: seconds a batch leader waits for more requests before calling the model;
        0 (the default) calls as soon as the model is free.
    :param max_queue: see below.
    """

    max_rows: int = 1024
    max_wait: float = 0.0
    max_queue: float = 0.0
    """Seconds a request may wait for the model before it is refused (``Overloaded``); 0: no limit.
    A request already taken into a batch is answered, however long the batch takes."""


class _Job:
    __slots__ = ("batch", "done", "error", "group", "method", "result")

    def __init__(self, batch: Batch, method: str) -> None:
        self.batch = batch
        self.method = method
        # A bare lock, taken now and released by whoever finishes the job: one acquire to wait,
        # one release to wake, where an Event would build a Condition and a waiter lock per wait.
        self.done = threading.Lock()
        self.done.acquire()
        self.result: np.ndarray | None = None
        self.error: BaseException | None = None
        self.group: list[_Job] | None = None


class BatchStats:
    """Counts of model calls and of the rows they carried, with a histogram of batch sizes."""

    def __init__(self) -> None:
        self.calls = 0
        self.rows = 0
        self.merged_requests = 0
        self.buckets = [0] * (len(HISTOGRAM_BOUNDS) + 1)

    def record(self, rows: int, requests: int) -> None:
        self.calls += 1
        self.rows += rows
        self.merged_requests += requests
        index = next((i for i, bound in enumerate(HISTOGRAM_BOUNDS) if rows <= bound), len(HISTOGRAM_BOUNDS))
        self.buckets[index] += 1

    def as_dict(self) -> dict[str, Any]:
        labels = [f"<={b}" for b in HISTOGRAM_BOUNDS] + [f">{HISTOGRAM_BOUNDS[-1]}"]
        return {
            "calls": self.calls,
            "rows": self.rows,
            "requests": self.merged_requests,
            "mean_rows_per_call": self.rows / self.calls if self.calls else 0.0,
            "rows_per_call": dict(zip(labels, self.buckets, strict=True)),
        }


class BatchingRuntime:
    """A runtime whose ``predict`` and ``predict_proba`` merge concurrent calls."""

    def __init__(self, runtime: Runtime, policy: BatchPolicy) -> None:
        self.runtime = runtime
        self.policy = policy
        self.format = runtime.format
        self.framework = runtime.framework
        self.signature = runtime.signature
        self.made_with = runtime.made_with
        self.stats = BatchStats()
        self._busy = False
        self._waiting: deque[_Job] = deque()
        self._lock = threading.Lock()
        self._arrived = threading.Condition(self._lock)

    def predict(self, batch: Batch) -> np.ndarray:
        result = self._submit("predict", batch)
        assert result is not None
        return result

    def predict_proba(self, batch: Batch) -> np.ndarray | None:
        return self._submit("predict_proba", batch)

    def _submit(self, method: str, batch: Batch) -> np.ndarray | None:
        job = _Job(batch, method)
        with self._lock:
            if self._busy:
                self._waiting.append(job)
                self._arrived.notify()
                leader = False
            else:
                self._busy = True
                leader = True
        if leader:  # the model was idle: run alone, now
            try:
                self.stats.record(batch.n_rows, 1)
                return getattr(self.runtime, method)(batch)
            finally:
                self._hand_over()
        self._wait(job)
        if job.group is not None:  # made leader of the next batch
            try:
                self._run(job.group)
            finally:
                self._hand_over()
        if job.error is not None:
            raise job.error
        return job.result

    def _wait(self, job: _Job) -> None:
        """Wait for the job's turn. :raises Overloaded: it waited ``max_queue`` and was still queued."""
        limit = self.policy.max_queue
        if limit <= 0:
            job.done.acquire()
            return
        if job.done.acquire(timeout=limit):
            return
        with self._lock:
            try:
                self._waiting.remove(job)  # still queued: it leaves, and nothing ever runs it
            except ValueError:
                pass  # taken into a batch (or made its leader) meanwhile: see it through
            else:
                raise Overloaded(
                    f"The model was busy for {limit:g} s (queue_timeout_seconds) before this request's "
                    "turn came; it was not run. Retry, or add workers or replicas.",
                    retry_after=1,
                )
        job.done.acquire()

    def _hand_over(self) -> None:
        """Give the model to the oldest queued request, or mark it idle."""
        with self._lock:
            if not self._waiting:
                self._busy = False
                return
            group = self._take([], 0)
        head = group[0]
        head.group = group
        head.done.release()

    def _take(self, group: list[_Job], rows: int) -> list[_Job]:
        """Move queued jobs of the group's method into ``group``, up to ``max_rows`` (lock held)."""
        method = group[0].method if group else self._waiting[0].method
        kept: deque[_Job] = deque()
        while self._waiting:
            job = self._waiting.popleft()
            fits = not group or rows + job.batch.n_rows <= self.policy.max_rows
            if job.method == method and fits:
                group.append(job)
                rows += job.batch.n_rows
            else:
                kept.append(job)
        self._waiting = kept
        return group

    def _run(self, group: list[_Job]) -> None:
        """Run ``group`` as one call (its first job's thread), then wake the others."""
        rows = sum(job.batch.n_rows for job in group)
        if self.policy.max_wait > 0:
            deadline = time.monotonic() + self.policy.max_wait
            with self._lock:
                # Take what queued since the hand-over before waiting: its notify has already
                # gone, and waiting for the next one would hold a full batch for max_wait.
                while True:
                    before = len(group)
                    self._take(group, rows)
                    rows += sum(job.batch.n_rows for job in group[before:])
                    left = deadline - time.monotonic()
                    if rows >= self.policy.max_rows or left <= 0:
                        break
                    self._arrived.wait(left)
        method = group[0].method
        try:
            try:
                merged = Batch.concat([job.batch for job in group])
                self.stats.record(merged.n_rows, len(group))
                out = getattr(self.runtime, method)(merged)
                if out is not None and len(out) != merged.n_rows:
                    # Slicing would hand one request another's rows: run each alone instead.
                    raise ValueError(f"{len(out)} results for {merged.n_rows} rows")
            except Exception:
                self._run_alone(group)
            else:
                start = 0
                for job in group:
                    end = start + job.batch.n_rows
                    job.result = None if out is None else out[start:end]
                    start = end
        except BaseException as exc:  # never leave the batch's other requests waiting
            for job in group[1:]:
                job.error = job.error or exc
            raise
        finally:
            for job in group[1:]:
                job.done.release()

    def _run_alone(self, group: list[_Job]) -> None:
        """After a merged call failed: each request on its own, so only bad rows fail."""
        for job in group:
            try:
                self.stats.record(job.batch.n_rows, 1)
                job.result = getattr(self.runtime, job.method)(job.batch)
            except Exception as exc:
                job.error = exc
