"""OpenAPI 3.1, generated from the routes and the pydantic shapes they declare.

Each view declares what it takes and gives with :func:`documented`; :func:`build_spec` walks the
Flask URL map, so a route cannot exist undocumented or be documented without existing.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from flask import Flask
from pydantic import BaseModel, TypeAdapter
from pydantic.json_schema import models_json_schema

from wharf.http.schemas import Problem
from wharf.http.security import PUBLIC, permission_of
from wharf.version import __version__

F = TypeVar("F", bound=Callable[..., Any])
REF = "#/components/schemas/{model}"
CONVERTER = re.compile(r"<(?:(?P<conv>[a-z]+):)?(?P<name>\w+)>")
PARAM_DOCS = {
    "name": "Model name.",
    "version": "Version number (1, 2, ...).",
    "dataset_id": "Dataset id (GET /v1/datasets).",
    "job_id": "Job id (GET /v1/jobs).",
    "key_id": "Key id (GET /v1/keys).",
}
SECURITY_SCHEMES = {
    "bearer": {"type": "http", "scheme": "bearer", "description": "Authorization: Bearer wharf_..."},
    "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
}
"""The two ways of sending a key (wharf.http.security); either one will do."""


@dataclass(frozen=True)
class Query:
    """A query parameter: what it means, and the JSON Schema of its values."""

    description: str
    schema: dict[str, Any] = field(default_factory=lambda: {"type": "string"})


@dataclass(frozen=True)
class Doc:
    summary: str
    tags: tuple[str, ...]
    responses: dict[int, type[BaseModel] | None]
    body: Any = None
    body_media: tuple[str, ...] = ("application/json",)
    query: dict[str, Query] = field(default_factory=dict)
    examples: Callable[[], dict[str, Any]] | None = None


def documented(
    summary: str,
    *,
    tags: tuple[str, ...],
    responses: dict[int, type[BaseModel] | None],
    body: Any = None,
    body_media: tuple[str, ...] = ("application/json",),
    query: Mapping[str, str | Query] | None = None,
) -> Callable[[F], F]:
    """Attach the OpenAPI description of a view.

    :param responses: status -> response model (None for no body); problem responses are added.
    :param body: request body type (a model or a union of models), or None.
    :param query: query parameter name -> description (a string parameter), or a :class:`Query`.
    """
    params = {name: q if isinstance(q, Query) else Query(q) for name, q in (query or {}).items()}

    def attach(view: F) -> F:
        view.__wharf_doc__ = Doc(summary, tags, responses, body, body_media, params)  # type: ignore[attr-defined]
        return view

    return attach


def _schemas(types: list[Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """JSON Schemas (2020-12, as OpenAPI 3.1 uses) for ``types``, and their shared components."""
    refs: dict[str, Any] = {}
    components: dict[str, Any] = {}
    models = [t for t in types if isinstance(t, type) and issubclass(t, BaseModel)]
    if models:
        mapping, definitions = models_json_schema([(m, "serialization") for m in models], ref_template=REF)
        components.update(definitions.get("$defs", {}))
        for (model, _), schema in mapping.items():
            refs[model.__name__] = schema
    for other in types:
        if other not in models:
            schema = TypeAdapter(other).json_schema(ref_template=REF)
            components.update(schema.pop("$defs", {}))
            refs[repr(other)] = schema
    return refs, components


def _key(t: Any) -> str:
    return t.__name__ if isinstance(t, type) and issubclass(t, BaseModel) else repr(t)


def build_spec(
    app: Flask, blueprint: str, examples: dict[str, Any] | None = None, *, auth: bool = True
) -> dict[str, Any]:
    """The OpenAPI document of ``blueprint``'s routes.

    :param examples: named request-body examples for the prediction routes.
    :param auth: keys are required (every route but the public ones says so).
    """
    docs: list[tuple[Any, Doc]] = []
    for rule in app.url_map.iter_rules():
        if not rule.endpoint.startswith(blueprint + "."):
            continue
        doc = getattr(app.view_functions[rule.endpoint], "__wharf_doc__", None)
        if doc is not None:
            docs.append((rule, doc))
    types: list[Any] = [Problem]
    for _, doc in docs:
        types.extend(t for t in doc.responses.values() if t is not None)
        if doc.body is not None:
            types.append(doc.body)
    refs, components = _schemas(list(dict.fromkeys(types)))

    paths: dict[str, Any] = {}
    for rule, doc in docs:
        path = CONVERTER.sub(lambda m: "{" + m["name"] + "}", rule.rule)
        parameters = [
            {
                "name": m["name"],
                "in": "path",
                "required": True,
                "description": PARAM_DOCS.get(m["name"], m["name"]),
                "schema": {"type": "integer", "minimum": 0} if m["conv"] == "int" else {"type": "string"},
            }
            for m in CONVERTER.finditer(rule.rule)
        ]
        parameters += [
            {
                "name": name,
                "in": "query",
                "required": False,
                "description": query.description,
                "schema": query.schema,
                "allowEmptyValue": True,  # an empty value means the default (bodies.query_arg)
            }
            for name, query in doc.query.items()
        ]
        for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
            operation: dict[str, Any] = {
                "operationId": rule.endpoint.split(".", 1)[1]
                + ("" if method == "GET" else f"_{method.lower()}"),
                "summary": doc.summary,
                "tags": list(doc.tags),
                "responses": _responses(doc, refs),
            }
            if auth and permission_of(rule.endpoint) == PUBLIC:
                operation["security"] = []  # health checks and the docs take no key
            if parameters:
                operation["parameters"] = parameters
            if doc.body is not None:
                operation["requestBody"] = _request_body(doc, refs, components, examples)
            paths.setdefault(path, {})[method.lower()] = operation
    spec: dict[str, Any] = {
        "openapi": "3.1.0",
        "info": {
            "title": "wharf",
            "version": __version__,
            "description": "Trained models behind a documented REST API. Errors are RFC 9457 problem+json.",
        },
        "paths": paths,
        "components": {"schemas": components},
    }
    if auth:
        spec["components"]["securitySchemes"] = SECURITY_SCHEMES
        spec["security"] = [{name: []} for name in SECURITY_SCHEMES]
    return spec


def _responses(doc: Doc, refs: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for status, model in doc.responses.items():
        entry: dict[str, Any] = {"description": "OK" if status < 300 else "Problem"}
        if model is not None:
            entry["content"] = {"application/json": {"schema": refs[_key(model)]}}
        out[str(status)] = entry
    problem = {"application/problem+json": {"schema": refs["Problem"]}}
    out.setdefault("4XX", {"description": "A problem with the request (RFC 9457).", "content": problem})
    out.setdefault("5XX", {"description": "A problem in the server (RFC 9457).", "content": problem})
    return out


def _request_body(
    doc: Doc, refs: dict[str, Any], components: dict[str, Any], examples: dict[str, Any] | None
) -> dict[str, Any]:
    content: dict[str, Any] = {}
    for media in doc.body_media:
        if media == "text/csv":
            # An empty body is refused (400): the schema says so, so generated bodies agree.
            content[media] = {
                "schema": {"type": "string", "minLength": 1, "description": "CSV with a header row."}
            }
        elif media == "multipart/form-data":
            schema = refs[_key(doc.body)]
            content[media] = {"schema": schema}
            encoding = _json_parts(schema, components)
            if encoding:
                content[media]["encoding"] = encoding
        else:
            entry: dict[str, Any] = {"schema": refs[_key(doc.body)]}
            if examples:
                entry["examples"] = examples
            content[media] = entry
    return {"required": True, "content": content}


def _json_parts(schema: dict[str, Any], components: dict[str, Any]) -> dict[str, Any]:
    """The encoding of a form's object-valued parts: each is a JSON document (``metadata``)."""
    name = schema.get("$ref", "").rpartition("/")[2]
    properties = components.get(name, schema).get("properties", {})
    return {
        part: {"contentType": "application/json"}
        for part, shape in properties.items()
        if "$ref" in shape or shape.get("type") == "object"
    }
