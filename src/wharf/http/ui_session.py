"""The dashboard's session: who the person is (the key kept in a cookie at login), what each route
lets them do, and which POSTs are the dashboard's own.

The key is kept in an HttpOnly, SameSite=Strict session cookie scoped to the dashboard's path; every
other route authenticates with it (or with the API's ``Authorization`` / ``X-API-Key`` headers, for
scripts). Pages without a valid key redirect (303) to the login page and back; the JSON routes
answer 401. A POST other than the login must come from the dashboard's own pages: the
``X-Wharf-UI: 1`` header its script sends (a form of another site cannot send it), or a same-origin
``Origin`` or ``Sec-Fetch-Site`` (a browser's own form). The API's rate limits count here too, by
view name (``route:predict`` holds for the API's and the dashboard's predictions alike).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from flask import Response, g, redirect, render_template, request, url_for
from werkzeug.wrappers import Response as BaseResponse

from wharf.errors import Forbidden, InvalidInput, Unauthorized, WharfError
from wharf.http.bodies import query_arg
from wharf.http.context import services
from wharf.services.ratelimit import Caller
from wharf.services.security import ANONYMOUS_ADMIN

NAME = "wharf_ui"
"""The dashboard blueprint's name."""
COOKIE = "wharf_ui_key"
"""The cookie holding the API key a person logged in with."""
UI_HEADER = "X-Wharf-UI"
"""Sent as ``1`` by the dashboard's script on every POST: a cross-site form cannot set it."""
JSON_VIEWS = frozenset({"predict", "logout"})
"""Views outside ``/api/`` that answer the page's script, in JSON."""
MAX_FORM_BYTES = 16 * 1024
"""Largest login form read (a key is under 300 characters)."""
MAX_NEXT = 2000
LOGIN_INVALID = "That API key is not valid: it is mistyped, revoked or expired. Paste a current key."
LOGIN_AGAIN = "Your dashboard session has no valid API key (it expired or was revoked): log in again."


def _credential() -> str | None:
    key = request.cookies.get(COOKIE)
    if key:
        return f"Bearer {key}"
    return request.headers.get("Authorization") or request.headers.get("X-API-Key")


def view() -> str:
    """The name of this request's view (``predict``), without the blueprint's."""
    return (request.endpoint or "").rpartition(".")[2]


def json_route() -> bool:
    """Routes whose answers (and errors) are JSON: the script's data, the prediction, the logout."""
    return view() in JSON_VIEWS or request.path.startswith(url_for(f"{NAME}.index") + "api/")


def wants_html() -> bool:
    """A browser opening a page: its errors are shown as pages."""
    best = request.accept_mimetypes.best_match(["application/json", "text/html"])
    return not json_route() and best == "text/html"


def _limit(caller: Caller) -> None:
    """Count this request against the API's rate limits (``route:<view>`` names this module's views)."""
    limiter = services().limiter
    if limiter.enabled:
        limiter.check(caller, view())


def check_request(permission: str | None) -> BaseResponse | None:
    """Before each dashboard view: authenticate, authorize ``permission`` (an API permission;
    ``logout``: a same-origin POST and no key; None: open), count against the rate limits, and hold
    POSTs to the same origin. A page without a valid key is answered with the redirect returned."""
    address = request.remote_addr or "unknown"
    if permission is None or permission == "logout":  # the login page, static files, the logout
        _limit(Caller(None, None, address))
        if request.method == "POST":  # another site's form must not log a browser in with its key
            _require_same_origin()
        return None
    svc = services()
    caller = ANONYMOUS_ADMIN
    if svc.settings.auth:
        try:
            caller = svc.keys.authenticate(_credential())
        except Unauthorized:
            _limit(Caller(None, None, address, anonymous=True))
            if json_route():
                raise Unauthorized(LOGIN_AGAIN) from None
            return _to_login()
    g.wharf_principal = caller
    _limit(Caller(caller.key_id, caller.role if svc.settings.auth else None, address))
    if request.method == "POST":
        _require_same_origin()
    model = (request.view_args or {}).get("name")
    caller.require(permission, model if isinstance(model, str) else None)
    return None


def _require_same_origin() -> None:
    headers = request.headers
    if (
        headers.get(UI_HEADER) == "1"
        or headers.get("Sec-Fetch-Site") == "same-origin"
        or headers.get("Origin") == request.host_url.rstrip("/")
    ):
        return
    raise Forbidden(
        f"The dashboard takes POSTs from its own pages only: its script sends the header '{UI_HEADER}: 1'.",
        field=UI_HEADER,
    )


def _to_login() -> BaseResponse:
    here = request.script_root + request.full_path.rstrip("?")
    response = redirect(url_for(f"{NAME}.login", next=here), code=303)
    if COOKIE in request.cookies:  # a revoked or expired key: forget it
        response.delete_cookie(COOKIE, path=_cookie_path())
    return response


def _cookie_path() -> str:
    return url_for(f"{NAME}.index").rstrip("/")


def _safe_next(value: str | None) -> str:
    """Where to go after logging in: a path under the dashboard, else its front page."""
    root = url_for(f"{NAME}.index")
    if not value or len(value) > MAX_NEXT or "\\" in value or not value.isprintable():
        return root
    parts = urlsplit(value)
    inside = parts.path == root.rstrip("/") or parts.path.startswith(root)
    dotted = any(segment in (".", "..") for segment in parts.path.split("/"))
    own = parts.path.rstrip("/") in (url_for(f"{NAME}.login"), url_for(f"{NAME}.logout"))
    if parts.scheme or parts.netloc or not inside or dotted or own:
        return root
    return value


def login() -> Any:
    """The login form (GET), and the key it sends (POST) kept in the session cookie."""
    svc = services()
    if request.method == "POST":
        request.max_content_length = MAX_FORM_BYTES
    target = _safe_next(request.form.get("next") if request.method == "POST" else query_arg("next"))
    if not svc.settings.auth:
        return redirect(target, code=303)
    if request.method == "GET":
        return render_template("ui/login.html", next=target, error=None)
    key = (request.form.get("key") or "").strip()
    error: WharfError | None = None
    if not key:
        error = InvalidInput("Paste an API key into the form field 'key'.", field="key")
    else:
        try:
            svc.keys.authenticate(f"Bearer {key}")
        except Unauthorized:
            _limit(Caller(None, None, request.remote_addr or "unknown", anonymous=True))  # guesses
            error = Unauthorized(LOGIN_INVALID, field="key")
    if error is not None:
        if not wants_html():
            raise error
        page = render_template("ui/login.html", next=target, error=error.detail)
        return Response(page, status=int(error.status), mimetype="text/html")
    response = redirect(target, code=303)
    response.set_cookie(
        COOKIE, key, httponly=True, samesite="Strict", secure=request.is_secure, path=_cookie_path()
    )
    return response


def logout() -> Any:
    """Forget the key: 204 to the page's script (which then opens the login page), else a redirect."""
    response: BaseResponse = Response(status=204)
    if request.headers.get(UI_HEADER) != "1":
        response = redirect(
            url_for(f"{NAME}.login" if services().settings.auth else f"{NAME}.index"), code=303
        )
    response.delete_cookie(
        COOKIE, path=_cookie_path(), httponly=True, samesite="Strict", secure=request.is_secure
    )
    return response
