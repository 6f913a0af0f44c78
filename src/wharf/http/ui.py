"""The web dashboard: models, versions, charts, jobs, datasets and a prediction form, at ``/ui``.

Pages are rendered here with their data (:mod:`wharf.http.ui_pages`); ``static/ui/ui.js`` draws
the charts, polls running jobs and sends the prediction form. Nothing comes from another origin,
and the page CSP (:data:`wharf.http.security.PAGE_CSP`) runs wharf's own script only. Each route
states the permission it needs, as the API's do (:data:`ROUTES`); who the caller is, and the
login, are :mod:`wharf.http.ui_session`'s.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import orjson
from flask import Blueprint, Response, g, render_template, request
from werkzeug.wrappers import Response as BaseResponse

from wharf.errors import WharfError
from wharf.http import hotpath, problems
from wharf.http.bodies import (
    JSON_TYPES,
    int_arg,
    is_json,
    json_response,
    media_type,
    query_arg,
    read_body,
    unsupported,
)
from wharf.http.context import services
from wharf.http.security import secure
from wharf.http.ui_pages import (
    dataset_page,
    datasets_page,
    jobs_json,
    jobs_page,
    model_page,
    models_page,
)
from wharf.http.ui_session import NAME, check_request, login, logout, view, wants_html

MAX_ID = 2**31 - 1
"""Version numbers in a query are at most this (the database's integers)."""


def make_ui_blueprint() -> Blueprint:
    """A fresh dashboard blueprint; mount it with ``url_prefix=<api prefix>/ui``."""
    bp = Blueprint(
        NAME, __name__, static_folder="static/ui", static_url_path="/static", template_folder="templates"
    )
    problems.register(bp)
    bp.before_request(_check_request)
    bp.after_request(_finish_response)
    bp.context_processor(_page_context)
    for rule, function, methods, _permission in ROUTES:
        bp.add_url_rule(rule, view_func=function, methods=methods)
    return bp


def _check_request() -> BaseResponse | None:
    if view() not in PERMISSIONS and view() != "static":  # a view added without a permission: refuse
        raise WharfError(f"The dashboard view {view()!r} declares no permission.")
    return check_request(PERMISSIONS.get(view()))


def _finish_response(response: Response) -> Response:
    """After each dashboard response: security headers, no caching of what a key may see, and the
    refusals of pages (4xx) as HTML pages for browsers; a 5xx stays problem+json, rendered by
    nothing that could fail again."""
    if response.mimetype == problems.PROBLEM_MEDIA_TYPE and response.status_code < 500 and wants_html():
        problem = orjson.loads(response.get_data())
        page = render_template("ui/error.html", problem=problem)
        response = Response(page, status=response.status_code, mimetype="text/html")
    secure(response)
    if response.status_code == 401:
        response.headers.setdefault("WWW-Authenticate", 'Bearer realm="wharf"')
    if request.endpoint != f"{NAME}.static":
        response.headers["Cache-Control"] = "no-store"
    return response


def _page_context() -> dict[str, Any]:
    caller = g.get("wharf_principal")
    return {
        "ui_auth": services().settings.auth,
        "ui_caller": caller if caller is not None and caller.key_id else None,
    }


# -- pages -----------------------------------------------------------------------------------


def index() -> Any:
    return render_template("ui/models.html", **models_page(query_arg("search")))


def model(name: str) -> Any:
    version = int_arg("version", 0, 1, MAX_ID) or None
    return render_template("ui/model.html", **model_page(name, version))


def jobs() -> Any:
    return render_template("ui/jobs.html", **jobs_page(query_arg("state")))


def datasets() -> Any:
    return render_template("ui/datasets.html", **datasets_page())


def dataset(dataset_id: int) -> Any:
    return render_template("ui/dataset.html", **dataset_page(dataset_id))


# -- JSON for the page's script --------------------------------------------------------------


def predict(name: str) -> Any:
    """The prediction form's request: ``{"instances": [{...}]}`` to a version (``?version=``) or the
    latest, with ``?probabilities=true`` for classifiers."""
    svc = services()
    if not is_json(media_type()):
        raise unsupported(JSON_TYPES[:1])
    data = read_body(svc.settings.max_body_bytes)
    version = int_arg("version", 0, 1, MAX_ID) or None
    probabilities = hotpath.wants_probabilities(request.args.getlist(hotpath.PROBABILITIES))
    return json_response(svc.inference.predict(name, version, data, probabilities=probabilities))


def api_jobs() -> Any:
    return json_response(jobs_json(query_arg("state"), datetime.now(UTC)))


def history(name: str) -> Any:
    svc = services()
    svc.inference.check_served(name)
    svc.registry.versions(name)  # 404 for an unknown model, as the other routes answer
    minutes = int_arg("minutes", 60, 5, 24 * 60)
    return json_response(svc.monitor.history(name, minutes=minutes))


def drift(name: str) -> Any:
    svc = services()
    svc.inference.check_served(name)
    version = int_arg("version", 0, 1, MAX_ID) or None
    if version is not None:
        svc.registry.get(name, version)  # 404 for an unknown version, as the API answers
    return json_response(svc.monitor.drift(name, version))


def drift_history(name: str) -> Any:
    svc = services()
    svc.inference.check_served(name)
    hours = int_arg("hours", 24, 1, 24 * 14)
    version = int_arg("version", 0, 1, MAX_ID) or None
    if version is not None:
        svc.registry.get(name, version)  # 404 for an unknown version
    return json_response(svc.monitor.drift_history(name, hours=hours, version=version))


ROUTES: list[tuple[str, Any, list[str], str | None]] = [
    ("/login", login, ["GET", "POST"], None),
    ("/logout", logout, ["POST"], "logout"),
    ("/", index, ["GET"], "read"),
    ("/models/<name>", model, ["GET"], "read"),
    ("/models/<name>/predict", predict, ["POST"], "predict"),
    ("/jobs", jobs, ["GET"], "read"),
    ("/datasets", datasets, ["GET"], "read"),
    ("/datasets/<int:dataset_id>", dataset, ["GET"], "read"),
    ("/api/jobs", api_jobs, ["GET"], "read"),
    ("/api/models/<name>/history", history, ["GET"], "read"),
    ("/api/models/<name>/drift", drift, ["GET"], "read"),
    ("/api/models/<name>/drift/history", drift_history, ["GET"], "read"),
]
"""``(rule, view, methods, permission)``: ``read`` and ``predict`` are the API's permissions;
``logout`` needs a same-origin POST and no key; None is open (the login page; static files)."""
PERMISSIONS: dict[str, str | None] = {function.__name__: permission for _, function, _, permission in ROUTES}
