"""Every request's request id, access log line and metrics.

A request keeps the ``X-Request-ID`` its client (or proxy) sent when it is a sensible token, else
gets a new one; the response echoes it. When the response is ready, one JSON line goes to stdout
(the access log) and the request is counted in :class:`~wharf.services.telemetry.Telemetry`.

The line is written with one ``os.write`` on file descriptor 1: under several worker processes
sharing one stdout pipe, a write of up to ``PIPE_BUF`` bytes is never interleaved with another's,
so every line stays whole (a buffered ``print`` may split one).
"""

from __future__ import annotations

import os
import re
import time
from datetime import UTC, datetime
from typing import Any

import orjson
from flask import Blueprint, Flask, Response, g, request

from wharf.http.context import services

REQUEST_ID_HEADER = "X-Request-ID"
REQUEST_ID = re.compile(r"[A-Za-z0-9._:@/+=-]{1,128}")
"""What a client's request id may look like (UUIDs, trace ids, ...); anything else is replaced."""
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
"""Methods named in metric labels; any other is counted as ``other`` (labels must stay bounded)."""
MAX_LINE = 4096
"""Longest access log line (PIPE_BUF on Linux): a longer path is cut to fit."""


def begin() -> None:
    g.wharf_started = time.perf_counter()
    sent = request.headers.get(REQUEST_ID_HEADER)
    g.wharf_request_id = sent if sent and REQUEST_ID.fullmatch(sent) else os.urandom(12).hex()


def served(model: str, version: int) -> None:
    """Say which model version answered this request (for its labels and log line)."""
    g.wharf_served = (model, version)


def problem_type(slug: str) -> None:
    """Say which problem an error answer carries (called where errors become responses)."""
    g.wharf_problem = slug


def request_id() -> str | None:
    return g.get("wharf_request_id")


def finish(response: Response) -> Response:
    started = g.get("wharf_started")
    if started is None:  # a request that began before these hooks were registered
        return response
    seconds = time.perf_counter() - started
    rid = g.wharf_request_id
    response.headers[REQUEST_ID_HEADER] = rid
    svc = services()
    model, version = g.get("wharf_served", ("", None))
    status = response.status_code
    endpoint = request.endpoint or ""
    route = endpoint.removeprefix("wharf.") if endpoint else "unmatched"  # the dashboard's: wharf_ui.*
    now = time.time()
    svc.telemetry.request(
        route,
        request.method if request.method in METHODS else "other",
        status,
        seconds,
        model,
        version,
        error=g.get("wharf_problem") if status >= 400 else None,
        now=now,
    )
    if svc.settings.access_log:
        principal = g.get("wharf_principal")
        _write(
            {
                "time": datetime.fromtimestamp(now, UTC).isoformat(timespec="milliseconds"),
                "level": "info" if status < 500 else "error",
                "logger": "wharf.access",
                "request_id": rid,
                "method": request.method,
                "path": request.path[:1024],
                "route": route,
                "status": status,
                "duration_ms": round(seconds * 1000, 3),
                "model": model or None,
                "version": version,
                "key_id": getattr(principal, "key_id", None),
                "remote_addr": request.remote_addr,
            }
        )
    return response


def _write(line: dict[str, Any]) -> None:
    data = orjson.dumps(line) + b"\n"
    if len(data) > MAX_LINE:
        line["path"] = line["path"][:256]
        data = orjson.dumps(line)[: MAX_LINE - 1] + b"\n"
    try:
        os.write(1, data)
    except OSError:
        pass  # stdout closed or full: a lost log line must not fail the request


def register(target: Blueprint) -> None:
    """Hook every request of ``target``'s routes, before its other hooks."""
    target.before_request_funcs.setdefault(None, []).insert(0, begin)
    target.after_request(finish)


def register_unmatched(app: Flask) -> None:
    """Hook the requests of ``app`` that match no blueprint's route (unknown paths, wrong
    methods): they are counted and logged too, where wharf is the whole application."""

    def begin_unmatched() -> None:
        if request.blueprint is None:
            begin()

    def finish_unmatched(response: Response) -> Response:
        return finish(response) if request.blueprint is None else response

    app.before_request(begin_unmatched)
    app.after_request(finish_unmatched)
