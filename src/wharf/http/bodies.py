"""Reading requests: media types, size limits, JSON parsing, and query parameters."""

from __future__ import annotations

from typing import Any, TypeVar

import orjson
from flask import Response, request
from pydantic import BaseModel, ValidationError

from wharf.errors import ContentTooLarge, InvalidInput, MalformedBody, UnsupportedMediaType, suggest
from wharf.http.openapi import Query
from wharf.services.decoding import parse_json as parse_json

JSON_TYPES = ("application/json", "application/x-www-form-urlencoded")
CSV_TYPES = ("text/csv",)
MAX_PAGE = 1000
"""Most entries one listing answers (``limit``)."""
MAX_OFFSET = 2**31 - 1
"""Largest ``offset``: far past any listing, and within the database's integers."""
PAGE_QUERY = {
    "limit": Query("At most this many (100).", {"type": "integer", "minimum": 1, "maximum": MAX_PAGE}),
    "offset": Query("Skip this many.", {"type": "integer", "minimum": 0, "maximum": MAX_OFFSET}),
}
"""The paging parameters of the listings, as :func:`page` reads them."""


def media_type() -> str:
    return (request.mimetype or "").lower()


def is_json(mimetype: str) -> bool:
    # curl -d sends application/x-www-form-urlencoded unless told otherwise; accept it as JSON.
    return mimetype in JSON_TYPES or mimetype.endswith("+json")


def read_body(limit: int) -> bytes:
    """The raw body, at most ``limit`` bytes (413 above); :raises MalformedBody: when empty."""
    request.max_content_length = limit
    data = read_stream(request.environ, limit, request.content_length)
    return nonempty(data if data is not None else request.get_data(cache=False))


def read_stream(environ: dict[str, Any], limit: int, length: int | None) -> bytes | None:
    """The body read straight from the WSGI stream, at most ``limit`` bytes; None where the server
    neither ends the stream nor says the body's ``length`` (werkzeug must read it).

    :raises ContentTooLarge: the body is longer than ``limit``.
    """
    if length is not None and length > limit:
        raise _too_large(limit)
    if environ.get("wsgi.input_terminated"):
        # The server ends the stream at the body's end, chunked bodies included (Granian does):
        # one read of at most limit + 1 bytes instead of werkzeug's chunked LimitedStream, which
        # took a tenth of a large request's time.
        data: bytes = environ["wsgi.input"].read(limit + 1)
        if len(data) > limit:
            raise _too_large(limit)
        return data
    if length is not None:
        return environ["wsgi.input"].read(length)  # PEP 3333: reading CONTENT_LENGTH bytes is safe
    return None


def nonempty(data: bytes) -> bytes:
    """``data``; :raises MalformedBody: it is empty."""
    if not data:
        raise MalformedBody("The request body is empty; send a JSON object or CSV rows.", field="body")
    return data


def _too_large(limit: int) -> ContentTooLarge:
    return ContentTooLarge(
        f"The request body is larger than this route's limit of {limit} bytes.", field="body"
    )


def query_arg(name: str) -> str | None:
    """The query parameter ``name``; None when absent or empty (an empty value means the default).

    :raises InvalidInput: it is given more than once (which one would be meant?).
    """
    return one_value(name, request.args.getlist(name))


def one_value(name: str, values: list[str]) -> str | None:
    """The one value of query parameter ``name`` among ``values`` (None: absent or empty).

    :raises InvalidInput: it is given more than once.
    """
    if len(values) > 1:
        raise InvalidInput(
            f"Query parameter {name!r} is given {len(values)} times; give it once.", field=name
        )
    return values[0] if values and values[0] != "" else None


def page(default_limit: int = 100) -> tuple[int, int]:
    """``limit`` and ``offset`` of this request's query (empty or absent: the defaults).

    :raises InvalidInput: either is not a whole number within :data:`PAGE_QUERY`'s bounds.
    """
    return int_arg("limit", default_limit, 1, MAX_PAGE), int_arg("offset", 0, 0, MAX_OFFSET)


def int_arg(name: str, default: int, low: int, high: int) -> int:
    """The query parameter ``name`` as a whole number from ``low`` to ``high``, or ``default``."""
    raw = query_arg(name)
    if raw is None:
        return default
    # ASCII digits only: str.isdigit() takes "²", which int() refuses; and no more digits than
    # ``high`` has, so int() never parses a huge string.
    digits = raw.isascii() and raw.isdigit() and len(raw.lstrip("0")) <= len(str(high))
    if not digits or not low <= int(raw) <= high:
        raise InvalidInput(
            f"Query parameter {name!r} must be a whole number {low} to {high}; got {raw[:40]!r}.", field=name
        )
    return int(raw)


def json_body(limit: int) -> Any:
    """The request's JSON body, parsed; :raises UnsupportedMediaType: it is not sent as JSON."""
    if not is_json(media_type()):
        raise unsupported(JSON_TYPES[:1])
    return parse_json(read_body(limit))


def unsupported(accepted: tuple[str, ...], got: str | None = None) -> UnsupportedMediaType:
    """:param got: the request's media type (default: this request's)."""
    got = (request.mimetype if got is None else got) or "none"
    return UnsupportedMediaType(
        f"Content-Type {got!r} is not accepted here; send one of {', '.join(accepted)}.",
        field="Content-Type",
    )


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(
        orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY),
        status=status,
        headers=headers,
        mimetype="application/json",
    )


M = TypeVar("M", bound=BaseModel)


def check_depth(data: Any, limit: int, field: str = "body") -> Any:
    """``data`` itself; :raises MalformedBody: arrays and objects nest deeper than ``limit``.

    Prediction bodies are not walked: their decoder takes rows of values and nothing deeper.
    """
    level = [data]
    for depth in range(1, limit + 2):
        nested = [item for value in level for item in _children(value) if isinstance(item, dict | list)]
        if not nested:
            return data
        if depth >= limit:
            raise MalformedBody(
                f"The JSON nests arrays and objects more than {limit} levels deep; this route's "
                "bodies are flat (WHARF_MAX_JSON_DEPTH).",
                field=field,
            )
        level = nested
    return data


def _children(value: Any) -> Any:
    if isinstance(value, dict):
        return value.values()
    return value if isinstance(value, list) else ()


def validated(shape: type[M], data: Any, what: str, field: str, example: str) -> M:
    """``data`` as ``shape``; :raises InvalidInput: naming where and what was expected."""
    from wharf.http.context import services

    check_depth(data, services().settings.max_json_depth, field)
    try:
        return shape.model_validate(data)
    except ValidationError as exc:
        error = exc.errors()[0]
        where = ".".join(str(p) for p in error["loc"])
        hint = ""
        if error["type"] == "extra_forbidden":
            hint = suggest(str(error["loc"][-1]), list(shape.model_fields))
        raise InvalidInput(
            f"Invalid {what} at {where or 'top level'!r}: {error['msg']}; expected a JSON object "
            f"such as {example}." + hint,
            field=f"{field}.{where}" if where else field,
        ) from exc
