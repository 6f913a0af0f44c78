"""Routes of monitoring: Prometheus's ``/metrics``, a model's drift report and drift reference."""

from __future__ import annotations

from typing import Any

from flask import Response, request

from wharf.errors import BadRequest
from wharf.http import observe
from wharf.http.bodies import (
    CSV_TYPES,
    JSON_TYPES,
    int_arg,
    is_json,
    json_response,
    media_type,
    read_body,
    unsupported,
)
from wharf.http.context import services
from wharf.http.metrics import exposition
from wharf.http.openapi import documented
from wharf.http.schemas import DriftBody, PredictRequest, ReferenceSet
from wharf.http.security import METRICS

MAX_VERSION = 2**31 - 1


@documented(
    "Prometheus metrics of every worker of this server (text format, or OpenMetrics when asked). "
    "Needs a key with `read` unless WHARF_METRICS_PUBLIC is set.",
    tags=("monitoring",),
    responses={200: None},
)
def prometheus() -> Any:
    svc = services()
    body, content_type = exposition(svc, request.headers.get("Accept"))
    return Response(body, content_type=content_type)


@documented(
    "Drift of a model's inputs: each column of the live requests over the sliding window against "
    "the version's reference (PSI and Kolmogorov-Smirnov for numbers, PSI and chi-square for "
    "categories). `version` defaults to the latest active one.",
    tags=("monitoring",),
    responses={200: DriftBody},
    query={"version": "A version number (default: the latest active one)."},
)
def model_drift(name: str) -> Any:
    svc = services()
    svc.inference.check_served(name)
    version = int_arg("version", 0, 1, MAX_VERSION) or None
    if version is not None:
        svc.registry.get(name, version)  # 404 for an unknown version
    else:
        svc.registry.latest(name)  # 404 for an unknown model
    return json_response(svc.monitor.drift(name, version))


@documented(
    "Set a version's drift reference from a sample of the inputs it was made for: rows as in a "
    "prediction request (JSON or CSV). Replaces the one stored at registration.",
    tags=("monitoring",),
    responses={200: ReferenceSet},
    body=PredictRequest,
    body_media=("application/json", "text/csv"),
)
def set_reference(name: str, version: int) -> Any:
    svc = services()
    svc.inference.check_served(name)
    kind = media_type()
    if not is_json(kind) and kind not in CSV_TYPES:
        raise unsupported(JSON_TYPES[:1] + CSV_TYPES)
    data = read_body(svc.settings.max_body_bytes)
    batch = svc.inference.decode(name, version, data, csv=kind in CSV_TYPES)
    if batch.n_rows < 2:
        raise BadRequest(
            f"A drift reference needs a sample of rows (got {batch.n_rows}); send at least 2, ideally "
            "a few thousand drawn like the training data.",
            field="instances",
        )
    columns = {column: batch.column(i) for i, column in enumerate(batch.names)}
    reference = svc.monitor.set_reference(name, version, columns, source="upload")
    observe.served(name, version)
    return json_response(
        {
            "name": name,
            "version": version,
            "source": "upload",
            "rows": reference.rows,
            "columns": [c.name for c in reference.columns],
        }
    )


ROUTES: list[tuple[str, Any, list[str], str]] = [
    ("/metrics", prometheus, ["GET"], METRICS),
    ("/v1/models/<name>/drift", model_drift, ["GET"], "read"),
    ("/v1/models/<name>/versions/<int:version>/reference", set_reference, ["PUT"], "register"),
]
