"""A runtime wrapper that times each model call and counts its rows, for ``/metrics``.

It sits directly around the loaded runtime, under batching, so one call is one batch: its time is
the model's own, without queueing, decoding or encoding, and its rows are the batch's size.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import numpy as np

from wharf.batch import Batch
from wharf.runtimes.base import Runtime
from wharf.services.telemetry import Telemetry

if TYPE_CHECKING:
    from wharf.services.monitor import Monitor


class MeteredRuntime:
    """``runtime`` with each ``predict`` and ``predict_proba`` call recorded in ``telemetry``.

    Rows count once per request: ``predict`` counts them, ``predict_proba`` (asked for alongside)
    is timed only. Each ``predict`` call's rows and labels are handed to ``monitor`` (class counts,
    drift): once per merged batch, however many requests it answers.
    """

    def __init__(
        self, runtime: Runtime, telemetry: Telemetry, model: str, version: int, monitor: Monitor | None = None
    ) -> None:
        self.runtime = runtime
        self.telemetry = telemetry
        self.monitor = monitor
        self.model = model
        self.version = version
        self.format = runtime.format
        self.framework = runtime.framework
        self.signature = runtime.signature
        self.made_with = runtime.made_with

    def predict(self, batch: Batch) -> np.ndarray:
        started = time.perf_counter()
        try:
            out = self.runtime.predict(batch)
        finally:
            self.telemetry.model_call(self.model, self.version, batch.n_rows, time.perf_counter() - started)
        if self.monitor is not None:  # one hand-over per batch, not per request
            self.monitor.observe(self.model, self.version, batch, out, self)
        return out

    def predict_proba(self, batch: Batch) -> np.ndarray | None:
        started = time.perf_counter()
        try:
            return self.runtime.predict_proba(batch)
        finally:
            self.telemetry.model_call(
                self.model, self.version, batch.n_rows, time.perf_counter() - started, predicted=False
            )
