"""``/metrics``: this server's telemetry, every worker's summed, in Prometheus's formats.

prometheus_client only formats here (text 0.0.4, or OpenMetrics when the scraper asks for it); the
values come from :mod:`wharf.services.telemetry`, whose snapshots sum correctly across worker
processes. Job counts and drift are read from the database at scrape time, so every replica
reports the same, whole-registry values for those.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

from prometheus_client.exposition import choose_encoder
from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
    SummaryMetricFamily,
)

from wharf.services import Services
from wharf.services.telemetry import LATENCY_BUCKETS, LOAD_BUCKETS, ROWS_BUCKETS, merge
from wharf.version import __version__

log = logging.getLogger("wharf.metrics")
MODEL = ("model", "version")


def _histogram(
    name: str, doc: str, labels: tuple[str, ...], bounds: tuple[float, ...], values: dict[Any, Any]
) -> HistogramMetricFamily:
    family = HistogramMetricFamily(name, doc, labels=list(labels))
    for key, (counts, total) in sorted(values.items()):
        cumulative, buckets = 0, []
        for bound, n in zip((*bounds, float("inf")), counts, strict=True):
            cumulative += n
            buckets.append(("+Inf" if bound == float("inf") else repr(float(bound)), cumulative))
        family.add_metric(list(key), buckets, total)
    return family


def _counter(name: str, doc: str, labels: tuple[str, ...], values: dict[Any, Any]) -> CounterMetricFamily:
    family = CounterMetricFamily(name, doc, labels=list(labels))
    for key, n in sorted(values.items()):
        family.add_metric(list(key), n)
    return family


class _Collector:
    def __init__(self, svc: Services) -> None:
        self.svc = svc

    def collect(self) -> Iterator[Metric]:
        telemetry = self.svc.telemetry
        total = merge([telemetry.snapshot(), *telemetry.others()])
        info = GaugeMetricFamily("wharf_info", "The wharf version serving.", labels=["version"])
        info.add_metric([__version__], 1)
        yield info
        yield _counter(
            "wharf_http_requests",
            "HTTP requests answered, by route, method, status and the model version that answered.",
            ("route", "method", "status", *MODEL),
            total["requests"],
        )
        yield _histogram(
            "wharf_http_request_duration_seconds",
            "Time to answer a request inside the server, from the first hook to the response.",
            ("route", *MODEL),
            LATENCY_BUCKETS,
            total["durations"],
        )
        yield _counter(
            "wharf_errors", "Error answers by problem type and status.", ("type", "status"), total["errors"]
        )
        yield _histogram(
            "wharf_model_predict_duration_seconds",
            "Time of each model call (one call predicts a whole batch).",
            MODEL,
            LATENCY_BUCKETS,
            total["model_time"],
        )
        yield _histogram(
            "wharf_model_batch_rows",
            "Rows per model call (batch sizes).",
            MODEL,
            ROWS_BUCKETS,
            total["batch_rows"],
        )
        yield _counter("wharf_predicted_rows", "Rows predicted.", MODEL, total["rows"])
        yield _counter(
            "wharf_predicted_classes", "Rows predicted as each class.", (*MODEL, "class"), total["classes"]
        )
        values = SummaryMetricFamily(
            "wharf_predicted_value", "Values predicted by regressors.", labels=list(MODEL)
        )
        for key, (count, value_sum) in sorted(total["values"].items()):
            values.add_metric(list(key), count_value=count, sum_value=value_sum)
        yield values
        yield _counter(
            "wharf_prediction_cache_lookups",
            "Prediction cache lookups, by result (hit or miss).",
            (*MODEL, "result"),
            total["cache"],
        )
        yield _counter(
            "wharf_access_log_dropped_lines",
            "Access log lines lost: more were waiting than the log writer keeps, or stdout failed.",
            (),
            total["log_dropped"] or {(): 0},  # shown from the start, so that an alert can watch it
        )
        yield _histogram(
            "wharf_model_load_duration_seconds",
            "Time to load, check and wrap a version.",
            MODEL,
            LOAD_BUCKETS,
            total["loads"],
        )
        loaded = GaugeMetricFamily(
            "wharf_model_loaded", "Worker processes holding the version loaded.", labels=list(MODEL)
        )
        for key, n in sorted(total["loaded"].items()):
            loaded.add_metric(list(key), n)
        yield loaded
        yield from self._jobs()
        yield from self._drift()

    def _jobs(self) -> Iterator[Metric]:
        jobs = GaugeMetricFamily("wharf_jobs", "Background jobs in the registry, by state.", labels=["state"])
        try:
            for state, n in self.svc.jobs.counts().items():
                jobs.add_metric([state], n)
        except Exception:  # the database is away: the serving metrics still answer
            log.exception("could not count jobs for /metrics")
        yield jobs

    def _drift(self) -> Iterator[Metric]:
        psi = GaugeMetricFamily(
            "wharf_drift_psi", "Population stability index of an input column.", labels=[*MODEL, "column"]
        )
        p_value = GaugeMetricFamily(
            "wharf_drift_p_value",
            "p-value of a column's drift test (KS or chi-square).",
            labels=[*MODEL, "column"],
        )
        drifting = GaugeMetricFamily(
            "wharf_drift_drifting", "1 when an input column is drifting.", labels=[*MODEL, "column"]
        )
        rows = GaugeMetricFamily(
            "wharf_drift_window_rows", "Live rows in the drift window.", labels=list(MODEL)
        )
        for report in self._reports():
            model = [report["name"], str(report["version"])]
            rows.add_metric(model, report["rows"])
            for column in report["columns"]:
                labels = [*model, column["name"]]
                drifting.add_metric(labels, 1 if column["drifting"] else 0)
                if column["psi"] is not None:
                    psi.add_metric(labels, column["psi"])
                if column["p_value"] is not None:
                    p_value.add_metric(labels, column["p_value"])
        yield from (psi, p_value, drifting, rows)

    def _reports(self) -> list[dict[str, Any]]:
        try:
            return self.svc.monitor.drift_gauges(self.svc.inference.served_names())
        except Exception:  # the database is away: the serving metrics still answer
            log.exception("could not read drift for /metrics")
            return []


def exposition(svc: Services, accept: str | None) -> tuple[bytes, str]:
    """The metrics as the scraper asked (``Accept``): body and content type."""
    encoder, content_type = choose_encoder(accept or "")
    return encoder(_Collector(svc)), content_type
