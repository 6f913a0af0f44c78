"""Every request's request id, access log line and metrics.

A request keeps the ``X-Request-ID`` its client (or proxy) sent when it is a sensible token, else
gets a new one; the response echoes it. When the response is ready, one JSON line goes to stdout
(the access log) and the request is counted in :class:`~wharf.services.telemetry.Telemetry`.

The lines go to :class:`~wharf.services.linewriter.LineWriter`, which writes them to stdout in
batches of whole lines, at most ``PIPE_BUF`` bytes a write: under several worker processes sharing
one stdout pipe, such a write is never interleaved with another's, so every line stays whole.
"""

from __future__ import annotations

import itertools
import os
import re
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import orjson
from flask import Blueprint, Flask, Response, g, request

from wharf.http.context import services
from wharf.services.linewriter import MAX_WRITE

if TYPE_CHECKING:
    from wharf.services import Services

REQUEST_ID_HEADER = "X-Request-ID"
REQUEST_ID_ENVIRON = "HTTP_X_REQUEST_ID"
REQUEST_ID = re.compile(r"[A-Za-z0-9._:@/+=-]{1,128}")
"""What a client's request id may look like (UUIDs, trace ids, ...); anything else is replaced."""
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
"""Methods named in metric labels; any other is counted as ``other`` (labels must stay bounded)."""
MAX_LINE = MAX_WRITE
"""Longest access log line (PIPE_BUF on Linux): a longer path is cut to fit."""


class _RequestIds:
    """New request ids: 12 random hex digits per process, then 12 of a counter.

    Unique across processes and restarts without a system call per request (``os.urandom`` is
    one, and it lets the interpreter hand the GIL to another thread). A request id names a
    request in logs; it is not a secret.
    """

    def __init__(self) -> None:
        self.reset()
        os.register_at_fork(after_in_child=self.reset)  # each worker its own prefix

    def reset(self) -> None:
        self._prefix = os.urandom(6).hex()
        self._count = itertools.count()

    def __call__(self) -> str:
        return f"{self._prefix}{next(self._count) & 0xFFFF_FFFF_FFFF:012x}"


new_request_id = _RequestIds()


class Call:
    """What the hooks learn of one request, kept in ``g`` as one object: each ``g`` or
    ``request`` lookup goes through a context-local proxy, and this runs on every prediction."""

    __slots__ = ("model", "problem", "request_id", "started", "version")

    def __init__(self, request_id: str) -> None:
        self.started = time.perf_counter()
        self.request_id = request_id
        self.model = ""
        self.version: int | None = None
        self.problem: str | None = None

    @classmethod
    def of(cls, environ: dict[str, Any]) -> Call:
        """A request's record, keeping the request id its client sent where it is a sane one."""
        sent = environ.get(REQUEST_ID_ENVIRON)
        return cls(sent if sent and REQUEST_ID.fullmatch(sent) else new_request_id())


def begin() -> None:
    g.wharf_call = Call.of(request.environ)


def current() -> Call | None:
    """This request's record (None outside a request these hooks began)."""
    call: Call | None = g.get("wharf_call")
    return call


def served(model: str, version: int) -> None:
    """Say which model version answered this request (for its labels and log line)."""
    call = current()
    if call is not None:
        call.model, call.version = model, version


def problem_type(slug: str) -> None:
    """Say which problem an error answer carries (called where errors become responses)."""
    call = current()
    if call is not None:
        call.problem = slug


def finish(response: Response) -> Response:
    call = current()
    if call is None:  # a request that began before these hooks were registered
        return response
    response.headers[REQUEST_ID_HEADER] = call.request_id
    req = request._get_current_object()  # type: ignore[attr-defined]
    endpoint = req.endpoint or ""
    principal = g.get("wharf_principal")
    record(
        services(),
        call,
        endpoint.removeprefix("wharf.") if endpoint else "unmatched",  # the dashboard's: wharf_ui.*
        req.method,
        response.status_code,
        req.path,
        req.remote_addr,
        getattr(principal, "key_id", None),
    )
    return response


def record(
    svc: Services,
    call: Call,
    route: str,
    method: str,
    status: int,
    path: str,
    remote_addr: str | None,
    key_id: str | None,
) -> None:
    """Count one answered request and write its access log line (Flask's hook above, and the
    direct predict path, :mod:`wharf.http.hotpath`)."""
    seconds = time.perf_counter() - call.started
    now = time.time()
    svc.telemetry.request(
        route,
        method if method in METHODS else "other",
        status,
        seconds,
        call.model,
        call.version,
        error=call.problem if status >= 400 else None,
        now=now,
    )
    if svc.settings.access_log:
        line = _line(
            {
                "time": datetime.fromtimestamp(now, UTC).isoformat(timespec="milliseconds"),
                "level": "info" if status < 500 else "error",
                "logger": "wharf.access",
                "request_id": call.request_id,
                "method": method,
                "path": path[:1024],
                "route": route,
                "status": status,
                "duration_ms": round(seconds * 1000, 3),
                "model": call.model or None,
                "version": call.version,
                "key_id": key_id,
                "remote_addr": remote_addr,
            }
        )
        svc.access_log.write(line)


def _line(line: dict[str, Any]) -> bytes:
    data = orjson.dumps(line) + b"\n"
    if len(data) > MAX_LINE:
        line["path"] = line["path"][:256]
        data = orjson.dumps(line)[: MAX_LINE - 1] + b"\n"
    return data


def register(target: Flask | Blueprint) -> None:
    """Hook every request of ``target`` (an application: all its routes, unknown paths included;
    a blueprint: its routes), before its other hooks."""
    target.before_request_funcs.setdefault(None, []).insert(0, begin)
    target.after_request(finish)
