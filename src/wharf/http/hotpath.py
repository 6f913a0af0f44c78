"""Predictions: the steps every prediction request takes, and the direct path that answers them
ahead of Flask's dispatch.

A prediction is the request a model server answers thousands of times a second, and Flask's own
work for one (request and application contexts, URL matching, hooks reached through context-local
proxies, a ``Response`` object) cost more than wharf's decoding, batching and encoding together
(bench/README.md, "Where the time goes"). :class:`DirectPredict` wraps the application's WSGI
callable, the middleware pattern Flask documents, and answers ``POST <prefix>/v1/models/<name>/predict``
and ``.../versions/<n>/predict`` itself with the functions the Flask view and hooks use: the same
admission (keys, roles, model limits, rate limits), body limits, prediction, problem+json errors,
security and CORS headers, request id, metrics and access log line.

It takes only the plain form of those requests, decided from the environ before anything is read
or counted: an ASCII path, a query of plain ``name=value`` pairs, a body the server ends or sizes,
no alias in a versioned URL. Every other request goes to Flask untouched, and Flask answers it as
it answers without this path.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import orjson
from werkzeug.http import HTTP_STATUS_CODES, parse_options_header
from werkzeug.wsgi import get_content_length

from wharf.errors import WharfError
from wharf.http import observe, problems, security
from wharf.http.bodies import CSV_TYPES, JSON_TYPES, is_json, nonempty, one_value, read_stream, unsupported
from wharf.http.context import NAME
from wharf.services.registry import parse_ref

if TYPE_CHECKING:
    from wharf.services import Services

log = logging.getLogger("wharf.http")

ROUTE = re.compile(r"/v1/models/([^/]+)/(?:versions/([1-9][0-9]{0,17})/)?predict")
"""The two prediction routes as Flask declares them (``<name>``, ``<int:version>``), less the
versions Flask's converter reads differently (``0``, leading zeros): those go to Flask."""
PLAIN_QUERY = re.compile(r"[A-Za-z0-9_.=&-]*")
"""A query string with nothing to decode: split on ``&`` and ``=``, it reads as werkzeug reads it."""
TRUE = frozenset({"1", "true", "yes", "on"})
PROBABILITIES = "probabilities"
JSON_MEDIA = "application/json"

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Any]


def predict(
    svc: Services,
    name: str,
    version: int | None,
    alias: str | None,
    kind: str,
    read: Callable[[int], bytes],
    probabilities: Callable[[], bool],
    call: observe.Call | None,
    key_id: str | None,
) -> dict[str, Any]:
    """Answer one prediction request, in the order the checks are promised: media type, body,
    query flags, the model, the rows.

    :param kind: the request's media type, lowercase, without parameters.
    :param read: the body, at most the given number of bytes.
    :param probabilities: whether the query asks for probabilities.
    :param call: this request's record, told which version answered.
    """
    if not is_json(kind) and kind not in CSV_TYPES:
        raise unsupported(JSON_TYPES[:1] + CSV_TYPES, kind)
    data = read(svc.settings.max_body_bytes)
    wanted = probabilities()
    target = svc.inference.model(name, version, alias)
    if call is not None:
        call.model, call.version = target.name, target.version
    csv = kind in CSV_TYPES
    result = svc.inference.answer(target, data, csv=csv, probabilities=wanted)
    if svc.predictions.sample:  # sampled inside offer(); the body is embedded as it came, unparsed
        svc.predictions.offer(
            target.name,
            target.version,
            inputs=data if csv else orjson.Fragment(data),  # CSV bytes are stored as text
            outputs=result,
            request_id=None if call is None else call.request_id,
            key_id=key_id,
        )
    return result


def wants_probabilities(values: list[str]) -> bool:
    """Whether the query's ``probabilities`` values (all of them) ask for probabilities."""
    return (one_value(PROBABILITIES, values) or "").lower() in TRUE


class DirectPredict:
    """WSGI middleware: prediction requests answered here, everything else by ``flask``.

    :param flask: the application's WSGI callable (``app.wsgi_app``).
    :param services: the services the application was built with.
    :param prefix: where wharf's routes are mounted.
    """

    def __init__(self, flask: WSGIApp, services: Services, prefix: str = "") -> None:
        self.flask = flask
        self.services = services
        self.prefix = prefix.rstrip("/")
        self._statuses = {code: f"{code} {text.upper()}" for code, text in HTTP_STATUS_CODES.items()}

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        if environ.get("REQUEST_METHOD") == "POST":
            path: str = environ.get("PATH_INFO", "")
            if path.startswith(self.prefix) and path.isascii():
                match = ROUTE.fullmatch(path, len(self.prefix))
                if match is not None:
                    taken = self._take(environ, match[1], match[2])
                    if taken is not None:
                        return self._answer(environ, start_response, path, *taken)
        return self.flask(environ, start_response)

    def _take(self, environ: dict[str, Any], name: str, version: str | None) -> tuple[Any, ...] | None:
        """What the request asks (name, version, query flag values, body length), if it is in the
        plain form this path answers; None to leave it to Flask."""
        if version is not None and "@" in name:
            return None  # a versioned URL with an alias: Flask's view words that error
        query: str = environ.get("QUERY_STRING", "")
        values: list[str] = []
        if query:
            if PLAIN_QUERY.fullmatch(query) is None:
                return None
            for pair in query.split("&"):
                key, _, value = pair.partition("=")
                if key == PROBABILITIES:
                    values.append(value)
        length = get_content_length(environ)
        if length is None and not environ.get("wsgi.input_terminated"):
            return None  # neither sized nor ended by the server: werkzeug reads such bodies
        return name, None if version is None else int(version), values, length

    def _answer(
        self,
        environ: dict[str, Any],
        start_response: Callable[..., Any],
        path: str,
        name: str,
        version: int | None,
        flags: list[str],
        length: int | None,
    ) -> list[bytes]:
        svc = self.services
        call = observe.Call.of(environ)
        endpoint = f"{NAME}.predict" if version is None else f"{NAME}.predict_version"
        address = environ.get("REMOTE_ADDR")
        caller = None
        extra: dict[str, str] | None = None
        media = JSON_MEDIA
        try:
            credential = environ.get("HTTP_AUTHORIZATION") or environ.get("HTTP_X_API_KEY")
            caller = security.identify(svc, endpoint, credential, address or "unknown")
            security.admit(svc, endpoint, caller, address or "unknown", name.partition("@")[0])
            model, alias = parse_ref(name) if "@" in name else (name, None)
            result = predict(
                svc,
                model,
                version,
                alias,
                parse_options_header(environ.get("CONTENT_TYPE", ""))[0].lower(),
                lambda limit: nonempty(read_stream(environ, limit, length) or b""),
                lambda: wants_probabilities(flags),
                call,
                None if caller is None else caller.key_id,
            )
            status = 200
            body = orjson.dumps(result, option=orjson.OPT_SERIALIZE_NUMPY)
        except WharfError as error:
            status, problem, extra = problems.render(error)
            body = self._problem(call, problem, path)
            media = problems.PROBLEM_MEDIA_TYPE
        except Exception:
            log.exception("unhandled error on POST %s", path)
            status, body = 500, self._problem(call, problems.internal(), path)
            media = problems.PROBLEM_MEDIA_TYPE
        headers = [("Content-Type", media), ("Content-Length", str(len(body)))]
        if extra:
            headers += extra.items()
        headers += security.security_headers(page=False, https=environ.get("wsgi.url_scheme") == "https")
        if status == 401:
            headers.append(("WWW-Authenticate", security.CHALLENGE))
        if svc.settings.cors_origins:
            headers += security.cors_headers(svc.settings.cors_origins, environ.get("HTTP_ORIGIN"), "POST")
        headers.append((observe.REQUEST_ID_HEADER, call.request_id))
        key_id = None if caller is None else caller.key_id
        observe.record(svc, call, endpoint.removeprefix(f"{NAME}."), "POST", status, path, address, key_id)
        start_response(self._statuses.get(status) or f"{status} UNKNOWN", headers)
        return [body]

    @staticmethod
    def _problem(call: observe.Call, problem: dict[str, Any], path: str) -> bytes:
        problem.setdefault("instance", path)
        call.problem = problems.slug(problem)
        return orjson.dumps(problem)
