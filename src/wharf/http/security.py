"""Who may call what: API keys checked before every view, rate limits, the audit trail, and the
security headers and CORS answers on every response.

Each route states the permission it needs where it is declared (the ``ROUTES`` tables); a route
without one is refused at startup, so none is reachable by accident. Routes under a model name
are checked against the key's model limit before anything is looked up, so a key that may not see
a model gets the same 403 whether the model exists or not.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from flask import Blueprint, Flask, Response, g, request

from wharf.errors import Forbidden, Unauthorized, WharfError
from wharf.http.context import NAME, services
from wharf.services.ratelimit import Caller
from wharf.services.security import ANONYMOUS_ADMIN, PERMISSIONS, Principal

if TYPE_CHECKING:
    from wharf.services import Services

PUBLIC = "public"
"""The permission of routes anyone may call: health checks and the API docs."""
METRICS = "metrics"
"""The permission of ``/metrics``: ``read``, or public where ``metrics_public`` is set (for a
Prometheus that sends no credentials)."""
KEY_HEADERS = ("Authorization", "X-API-Key")
AUDITED = frozenset({"train", "register", "register_code", "delete", "admin"})
"""Actions of trainers and admins: recorded in the audit log (predictions and reads are not)."""
API_CSP = "default-src 'none'; frame-ancestors 'none'"
PAGE_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
    "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
)
"""Web pages run only wharf's own scripts; Swagger UI sets inline styles on its elements."""
HSTS = "max-age=31536000; includeSubDomains"
_COMMON = [
    ("X-Content-Type-Options", "nosniff"),
    ("X-Frame-Options", "DENY"),
    ("Referrer-Policy", "no-referrer"),
]
API_HEADERS = [*_COMMON, ("Content-Security-Policy", API_CSP)]
PAGE_HEADERS = [*_COMMON, ("Content-Security-Policy", PAGE_CSP)]
CORS_MAX_AGE = "600"
CHALLENGE = 'Bearer realm="wharf"'
"""The ``WWW-Authenticate`` value of a 401 (RFC 6750)."""

_permissions: dict[str, str] = {}
"""Endpoint -> permission, filled as routes are registered."""


def add_routes(bp: Blueprint, routes: list[tuple[str, Any, list[str], str]]) -> None:
    """Register ``(rule, view, methods, permission)`` routes, each with its permission."""
    for rule, view, methods, permission in routes:
        if permission not in (PUBLIC, METRICS) and permission not in PERMISSIONS:
            raise ValueError(f"route {rule} needs an unknown permission {permission!r}")
        bp.add_url_rule(rule, view_func=view, methods=methods)
        _permissions[f"{NAME}.{view.__name__}"] = permission


def permission_of(endpoint: str | None) -> str | None:
    return _permissions.get(endpoint or "")


def principal() -> Principal:
    """The caller of this request (an anonymous admin where auth is off)."""
    found: Principal | None = g.get("wharf_principal")
    return found if found is not None else ANONYMOUS_ADMIN


def visible_to_caller(names: list[str]) -> list[str]:
    """On a public route: the names the caller's key (if it sent a valid one) may see; none without.

    The docs are public, but the served models' names and columns are not: the spec's examples
    list only what the caller's key may see.
    """
    svc = services()
    if not svc.settings.auth:
        return names
    try:
        return svc.keys.authenticate(_credential()).visible(names)
    except Unauthorized:
        return []


def _credential() -> str | None:
    header = request.headers.get("Authorization")
    if header:
        return header
    return request.headers.get("X-API-Key")


def check_request() -> None:
    """Before each wharf view: authenticate, authorize, count against the rate limits."""
    if request.method == "OPTIONS":
        return  # a CORS preflight carries no key; Flask answers it without running the view
    svc = services()
    endpoint = request.endpoint or ""
    address = request.remote_addr or "unknown"
    caller = identify(svc, endpoint, _credential(), address)
    if caller is not None:
        g.wharf_principal = caller  # known from here on: a refused request's log names its key
    model = (request.view_args or {}).get("name")
    admit(svc, endpoint, caller, address, model.partition("@")[0] if isinstance(model, str) else None)


# Flask's hook above and the direct predict path (wharf.http.hotpath) both admit requests with the
# two functions below, so a request meets the same rules whichever of them answers it.


def identify(svc: Services, endpoint: str, credential: str | None, address: str) -> Principal | None:
    """The key calling ``endpoint`` (``wharf.<view>``): None on a public route or where auth is off.

    :raises Unauthorized: the route needs a key and ``credential`` is none, or not a valid one;
        counted against the anonymous rate limit first.
    """
    if not svc.settings.auth or _permission(svc, endpoint) == PUBLIC:
        return None
    try:
        return svc.keys.authenticate(credential)
    except Unauthorized:
        if svc.limiter.enabled:
            svc.limiter.check(Caller(None, None, address, anonymous=True), endpoint.rpartition(".")[2])
        raise


def admit(svc: Services, endpoint: str, caller: Principal | None, address: str, model: str | None) -> None:
    """Count the request against the rate limits and check that ``caller`` (from :func:`identify`)
    may call ``endpoint``.

    :param model: the model named in the URL (alias removed), for the key's model limit.
    :raises TooManyRequests, Forbidden: as the request deserves.
    """
    permission = _permission(svc, endpoint)
    if svc.limiter.enabled:
        role = caller.role if caller is not None else None
        key_id = caller.key_id if caller is not None else None
        svc.limiter.check(Caller(key_id, role, address), endpoint.rpartition(".")[2])
    if permission == PUBLIC:
        return
    if permission is None:  # a route registered without add_routes: refuse rather than guess
        raise WharfError(f"The route {endpoint!r} declares no permission.")
    found = caller if caller is not None else ANONYMOUS_ADMIN
    found.require(permission, model)
    if _permissions.get(endpoint) == METRICS and found.models is not None:
        raise Forbidden(
            "/metrics names every served model; a key limited to some models may not read it. Use a "
            "reader key without a model limit for Prometheus.",
            field="key",
        )


def _permission(svc: Services, endpoint: str) -> str | None:
    permission = _permissions.get(endpoint)
    if permission == METRICS:
        return PUBLIC if svc.settings.metrics_public else "read"
    return permission


def secure(response: Response) -> Response:
    """Add the security headers every response carries.

    Called on every response under wharf, and by :func:`wharf.http.problems.problem` for the errors
    answered outside wharf's routes (an unknown path, a method a path does not take). wharf's views
    set none of these headers themselves, so they are added in one step: this runs on every
    prediction.
    """
    headers = response.headers
    if "X-Content-Type-Options" in headers:  # an error response, secured where it was made
        return response
    page = headers.get("Content-Type", "").startswith("text/html")
    headers.extend(security_headers(page=page, https=request.scheme == "https"))
    return response


def security_headers(*, page: bool, https: bool) -> list[tuple[str, str]]:
    """The security headers of a response: a web page's or an API answer's, HSTS over HTTPS."""
    found = PAGE_HEADERS if page else API_HEADERS
    return [*found, ("Strict-Transport-Security", HSTS)] if https else found


def finish_response(response: Response) -> Response:
    """After each response under wharf: security headers, CORS, and the audit record."""
    headers = secure(response).headers
    if response.status_code == 401:
        headers.setdefault("WWW-Authenticate", CHALLENGE)
    allowed = services().settings.cors_origins
    if allowed:
        for name, value in cors_headers(allowed, request.headers.get("Origin"), request.method):
            if name == "Vary":
                headers.add(name, value)
            else:
                headers[name] = value
    if request.method not in ("GET", "HEAD", "OPTIONS") and permission_of(request.endpoint) in AUDITED:
        _audit(response.status_code)
    return response


def cors_headers(allowed: Sequence[str], origin: str | None, method: str) -> list[tuple[str, str]]:
    """The CORS headers answering a request from ``origin`` (none for an origin not allowed)."""
    if not allowed or not origin or ("*" not in allowed and origin not in allowed):
        return []
    found = [
        ("Access-Control-Allow-Origin", "*" if "*" in allowed else origin),
        ("Vary", "Origin"),
        ("Access-Control-Expose-Headers", "Location, Retry-After"),
    ]
    if method == "OPTIONS":
        found += [
            ("Access-Control-Allow-Headers", "Authorization, X-API-Key, Content-Type"),
            ("Access-Control-Allow-Methods", "GET, POST, PUT, PATCH, DELETE"),
            ("Access-Control-Max-Age", CORS_MAX_AGE),
        ]
    return found


def _audit(status: int) -> None:
    """One audit record for this request; a request that failed authentication is not an action."""
    if status == 401:
        return
    args = request.view_args or {}
    target = args.get("name") or ""
    if "version" in args:
        target = f"{target}:{args['version']}"
    for key in ("dataset_id", "job_id", "key_id"):
        if key in args:
            target = f"{key.removesuffix('_id')} {args[key]}"
    noted = dict(g.get("wharf_audit", {}))
    target = noted.pop("target", target)  # what a creating route made: "job 7", "key 1a2b3c4d"
    action = (request.endpoint or "").rpartition(".")[2]
    services().audit.record(
        action,
        str(target),
        principal=g.get("wharf_principal"),
        status=status,
        remote_addr=request.remote_addr,
        detail={"method": request.method, "path": request.path, **noted},
    )


def note(**detail: Any) -> None:
    """Add to this request's audit record (a registered version's number, a created key's id)."""
    g.wharf_audit = {**g.get("wharf_audit", {}), **detail}


def register(target: Flask | Blueprint) -> None:
    target.before_request(check_request)
    target.after_request(finish_response)
