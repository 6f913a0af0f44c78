"""The one place errors become HTTP responses: RFC 9457 ``application/problem+json``."""

from __future__ import annotations

import logging
from typing import Any

import orjson
from flask import Blueprint, Flask, Response, request
from werkzeug.exceptions import HTTPException

from wharf.errors import PROBLEM_BASE, TooManyRequests, WharfError
from wharf.http import observe
from wharf.http.security import secure

PROBLEM_MEDIA_TYPE = "application/problem+json"
log = logging.getLogger("wharf.http")

HTTP_SLUGS = {
    400: "bad-request",
    404: "not-found",
    405: "method-not-allowed",
    413: "content-too-large",
    415: "unsupported-media-type",
}
HTTP_TITLES = {413: "Content Too Large"}
"""Titles that must match those of wharf's own errors of the same type (RFC 9110 renamed 413)."""


def problem(status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> Response:
    body.setdefault("instance", request.path)
    observe.problem_type(slug(body))
    response = Response(orjson.dumps(body), status=status, headers=headers, mimetype=PROBLEM_MEDIA_TYPE)
    # Errors answered outside wharf's routes (unknown paths, wrong methods) skip its after-request hook.
    return secure(response)


def slug(body: dict[str, Any]) -> str:
    """A problem's type without the common prefix (``invalid-input``): its metrics label."""
    return str(body.get("type", "")).removeprefix(PROBLEM_BASE)


def from_wharf_error(error: WharfError) -> Response:
    status, body, headers = render(error)
    return problem(status, body, headers)


def render(error: WharfError) -> tuple[int, dict[str, Any], dict[str, str] | None]:
    """``error`` as a problem: its status, body (without ``instance``) and extra headers."""
    headers = None
    if isinstance(error, TooManyRequests):  # RFC 9110: a 429 (or 503) says when to come back
        headers = {"Retry-After": str(error.retry_after)}
    return int(error.status), error.to_problem(), headers


def from_http_exception(error: HTTPException) -> Response:
    status = error.code or 500
    detail = error.description or ""
    if status == 413:
        limit = request.max_content_length
        detail = f"The request body is larger than this route's limit of {limit} bytes."
    elif status == 405:
        allowed = ", ".join(sorted(getattr(error, "valid_methods", None) or []))
        detail = f"{request.method} is not allowed on {request.path}; allowed: {allowed}."
    body = {
        "type": PROBLEM_BASE + HTTP_SLUGS.get(status, "http-error"),
        "title": HTTP_TITLES.get(status, error.name),
        "status": status,
        "detail": detail,
    }
    headers = {k: v for k, v in error.get_headers() if k.lower() == "allow"}
    return problem(status, body, headers)


def from_unexpected(error: Exception) -> Response:
    if isinstance(error, HTTPException):
        return from_http_exception(error)
    log.exception("unhandled error on %s %s", request.method, request.path)
    return problem(500, internal())


def internal() -> dict[str, Any]:
    """The body of a 500: what failed is in the server's log, never in the answer."""
    return {
        "type": PROBLEM_BASE + "internal",
        "title": "Internal Server Error",
        "status": 500,
        "detail": "wharf failed while answering this request; the server log has the details.",
    }


def register(target: Flask | Blueprint) -> None:
    """Render wharf errors, HTTP errors and unexpected errors raised under ``target``."""
    target.register_error_handler(WharfError, from_wharf_error)
    target.register_error_handler(HTTPException, from_http_exception)
    target.register_error_handler(Exception, from_unexpected)
