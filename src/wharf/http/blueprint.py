"""The routes of the wharf API, as one blueprint."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from flask import Blueprint, current_app, render_template, request, send_from_directory, url_for

from wharf.errors import (
    BadRequest,
    InvalidInput,
    InvalidModel,
    ModelNotFound,
    WharfError,
)
from wharf.http import hotpath, observe, problems, security
from wharf.http.bodies import (
    json_body,
    json_response,
    media_type,
    page,
    parse_json,
    query_arg,
    read_body,
    unsupported,
    validated,
)
from wharf.http.context import NAME, services
from wharf.http.openapi import build_spec, documented
from wharf.http.schemas import (
    ConvertRequest,
    Deleted,
    FastRequest,
    Health,
    Model,
    ModelList,
    ModelStats,
    Prediction,
    PredictRequest,
    ToleranceBody,
    UploadForm,
    UploadMetadata,
    Version,
    VersionList,
)
from wharf.http.security import PUBLIC, note, principal
from wharf.services.conversion import ConversionRequest
from wharf.services.parity import Tolerance
from wharf.services.registry import Registration, newest_active, parse_ref
from wharf.storage import VersionRecord


def make_blueprint() -> Blueprint:
    """A fresh blueprint (one per application, so tests can build many apps)."""
    bp = Blueprint(NAME, __name__, template_folder="templates")
    problems.register(bp)
    security.register(bp)
    # Imported here: their views use this module's helpers.
    from wharf.http import datasets, jobs, keys, lifecycle, monitoring, predictions

    routes = [
        *ROUTES,
        *lifecycle.ROUTES,
        *datasets.ROUTES,
        *jobs.ROUTES,
        *keys.ROUTES,
        *predictions.ROUTES,
        *monitoring.ROUTES,
    ]
    security.add_routes(bp, routes)
    return bp


def _version_json(record: VersionRecord) -> dict[str, Any]:
    return Version.of(record).model_dump(mode="json")


# -- health ----------------------------------------------------------------------------------


@documented("Liveness: the process answers.", tags=("health",), responses={200: Health})
def healthz() -> Any:
    return json_response({"status": "ok"})


@documented("Readiness: the served models are loaded.", tags=("health",), responses={200: Health, 503: None})
def readyz() -> Any:
    inference = services().inference
    if not inference.ready.is_set():
        return problems.problem(
            503,
            {
                "type": "urn:wharf:problem:not-ready",
                "title": "Service Unavailable",
                "status": 503,
                "detail": "Models are still loading.",
            },
        )
    failed = inference.retry_failed()
    if failed:
        return problems.problem(
            503,
            {
                "type": "urn:wharf:problem:not-ready",
                "title": "Service Unavailable",
                "status": 503,
                "detail": f"These models could not be loaded: {', '.join(failed)}; the server log says why.",
            },
        )
    return json_response({"status": "ready", "models": len(inference.served_names())})


# -- models ----------------------------------------------------------------------------------


@documented(
    "List the served models with their latest version, sorted by name; `search` keeps the names "
    "containing it.",
    tags=("models",),
    responses={200: ModelList},
    query={
        "search": "Part of the name, any case.",
        "limit": "Most models in the answer (default 100).",
        "offset": "Models to skip.",
    },
)
def list_models() -> Any:
    svc = services()
    search = query_arg("search")
    limit, offset = page()
    names = principal().visible(svc.inference.served_names(search))
    models = []
    for name in names[offset : offset + limit]:
        try:
            models.append(_model_json(name, svc.registry.versions(name), svc.registry.aliases_of(name)))
        except ModelNotFound:
            continue  # deleted since the names were read
    return json_response({"models": models, "total": len(names)})


def _model_json(name: str, versions: list[VersionRecord], aliases: dict[str, int]) -> dict[str, Any]:
    """A model as the API shows it, from its versions (oldest first, at least one)."""
    latest = newest_active(versions)
    body = Model(
        name=name,
        latest_version=latest.version if latest else None,
        versions=len(versions),
        latest=Version.of(latest) if latest else None,
        aliases=aliases,
    )
    return body.model_dump(mode="json")


@documented(
    "One model: its latest version, signature and an example request.",
    tags=("models",),
    responses={200: Model},
)
def get_model(name: str) -> Any:
    svc = services()
    svc.inference.check_served(name)
    return json_response(_model_json(name, svc.registry.versions(name), svc.registry.aliases_of(name)))


@documented("Delete a model and all its versions.", tags=("models",), responses={200: Deleted})
def delete_model(name: str) -> Any:
    svc = services()
    svc.inference.check_served(name)
    deleted = svc.registry.delete(name)
    svc.inference.sync()
    return json_response({"name": name, "deleted": [r.version for r in deleted]})


@documented(
    "Serving counters of a model's loaded versions: batch sizes, prediction cache hits.",
    tags=("models",),
    responses={200: ModelStats},
)
def model_stats(name: str) -> Any:
    svc = services()
    svc.registry.versions(name)  # 404 for an unknown model
    return json_response({"name": name, "versions": svc.inference.stats(name)})


@documented(
    "A model's versions, oldest first; `status` and `tag` keep those that match.",
    tags=("versions",),
    responses={200: VersionList},
    query={
        "status": "active or archived.",
        "tag": "`key:value` (that tag with that value) or `key` (has that tag).",
        "limit": "Most versions in the answer (default 100).",
        "offset": "Versions to skip.",
    },
)
def list_versions(name: str) -> Any:
    svc = services()
    svc.inference.check_served(name)
    limit, offset = page()
    versions = svc.registry.versions(name, status=query_arg("status"), tag=query_arg("tag"))
    body = {"name": name, "versions": [_version_json(r) for r in versions[offset : offset + limit]]}
    return json_response({**body, "total": len(versions)})


@documented(
    "One version: metadata, signature and an example request.", tags=("versions",), responses={200: Version}
)
def get_version(name: str, version: int) -> Any:
    svc = services()
    svc.inference.check_served(name)
    return json_response(_version_json(svc.registry.get(name, version)))


@documented("Delete one version.", tags=("versions",), responses={200: Deleted})
def delete_version(name: str, version: int) -> Any:
    svc = services()
    svc.inference.check_served(name)
    deleted = svc.registry.delete(name, version)
    svc.inference.sync()
    return json_response({"name": name, "deleted": [r.version for r in deleted]})


@documented(
    "Register a new version from an uploaded model file.",
    tags=("versions",),
    responses={201: Version},
    body=UploadForm,
    body_media=("multipart/form-data",),
)
def upload_version(name: str) -> Any:
    svc = services()
    svc.inference.check_served(name)
    request.max_content_length = svc.settings.max_upload_bytes
    if media_type() != "multipart/form-data":
        raise unsupported(("multipart/form-data",))
    upload = request.files.get("file")
    if upload is None:
        raise BadRequest("Send the model file as the multipart field 'file'.", field="file")
    options = _upload_options(request.form.get("metadata"))
    filename = upload.filename or name
    with tempfile.TemporaryDirectory(dir=svc.settings.home) as tmp:
        path = Path(tmp) / "upload"  # never the client's file name: no path reaches the disk
        upload.save(path)
        try:
            settings = svc.settings
            allow_code = principal().can("register_code") if settings.auth else settings.allow_pickle_uploads
            record = svc.registry.register(name, path, filename, options, allow_code=allow_code)
            note(version=record.version, format=record.format)
        except InvalidModel as exc:
            exc.field = exc.field or "file"  # the part of this request at fault
            # A loader's message may quote the file it read; clients see their own file name,
            # not where this server keeps its temporary files.
            exc.detail = exc.detail.replace(str(path), filename).replace(tmp, "")
            raise
        except InvalidInput as exc:
            if exc.field and exc.field.startswith("signature"):
                exc.field = f"metadata.{exc.field}"  # the signature came in the metadata part
            raise
    svc.inference.sync()  # this worker answers with it from now on; the others within refresh_seconds
    location = url_for(f"{NAME}.get_version", name=name, version=record.version)
    return json_response(_version_json(record), status=201, headers={"Location": location})


def _upload_options(raw: str | None) -> Registration:
    if not raw:
        return Registration()
    data = parse_json(raw.encode(), field="metadata")
    example = '{"format": "joblib", "description": "...", "tags": {"team": "ml"}}'
    meta = validated(UploadMetadata, data, "upload metadata", "metadata", example)
    return Registration(
        format=meta.format,
        signature=meta.signature,
        description=meta.description,
        tags=meta.tags,
        extra=meta.metadata,
    )


# -- conversions -----------------------------------------------------------------------------


@documented(
    "Convert a version to ONNX or PMML as a new version, refused when it answers differently.",
    tags=("versions",),
    responses={201: Version},
    body=ConvertRequest,
)
def convert_version(name: str, version: int) -> Any:
    svc = services()
    svc.inference.check_served(name)
    data = json_body(svc.settings.max_body_bytes)
    body = validated(ConvertRequest, data, "conversion request", "body", '{"to": "onnx"}')
    settings = svc.settings
    tolerance = body.tolerance or ToleranceBody(labels=settings.parity_labels, rtol=settings.parity_rtol)
    record = svc.converter.convert(
        name,
        version,
        ConversionRequest(
            target=body.to,
            tolerance=Tolerance(labels=tolerance.labels, rtol=tolerance.rtol),
            sample=body.sample,
            sample_size=body.sample_size,
            seed=body.seed,
            force=body.force,
        ),
    )
    svc.inference.sync()
    location = url_for(f"{NAME}.get_version", name=name, version=record.version)
    return json_response(_version_json(record), status=201, headers={"Location": location})


@documented(
    "Let a verified ONNX twin answer predictions for this version.",
    tags=("versions",),
    responses={200: Version},
    body=FastRequest,
)
def set_fast(name: str, version: int) -> Any:
    svc = services()
    svc.inference.check_served(name)
    twin = None
    if request.content_length or request.headers.get("Transfer-Encoding"):
        data = parse_json(read_body(svc.settings.max_body_bytes))
        twin = validated(FastRequest, data, "request", "body", '{"twin": 3}').twin
    record = svc.converter.set_fast(name, version, twin)
    svc.inference.sync()
    return json_response(_version_json(record))


@documented("Let this version answer for itself again.", tags=("versions",), responses={200: Version})
def unset_fast(name: str, version: int) -> Any:
    svc = services()
    svc.inference.check_served(name)
    record = svc.converter.unset_fast(name, version)
    svc.inference.sync()
    return json_response(_version_json(record))


# -- predict ---------------------------------------------------------------------------------

PREDICT_QUERY = {"probabilities": "true to add class probabilities and labels (classifiers)."}
PREDICT_MEDIA = ("application/json", "text/csv")


@documented(
    "Predict with the latest active version, or with where an alias points: `{name}@{alias}` "
    "(`iris@production`). The answer names the version that made it.",
    tags=("predict",),
    responses={200: Prediction},
    body=PredictRequest,
    body_media=PREDICT_MEDIA,
    query=PREDICT_QUERY,
)
def predict(name: str) -> Any:
    model, alias = parse_ref(name) if "@" in name else (name, None)
    return _predict(model, None, alias)


@documented(
    "Predict with one version.",
    tags=("predict",),
    responses={200: Prediction},
    body=PredictRequest,
    body_media=PREDICT_MEDIA,
    query=PREDICT_QUERY,
)
def predict_version(name: str, version: int) -> Any:
    if "@" in name:
        raise InvalidInput(
            f"{name[:140]!r} names an alias and the URL a version: use /v1/models/{{name}}@{{alias}}/predict "
            "or /v1/models/{name}/versions/{version}/predict.",
            field="name",
        )
    return _predict(name, version, None)


def _predict(name: str, version: int | None, alias: str | None) -> Any:
    result = hotpath.predict(
        services(),
        name,
        version,
        alias,
        media_type(),
        read_body,
        _wants_probabilities,
        observe.current(),
        principal().key_id,
    )
    return json_response(result)


def _wants_probabilities() -> bool:
    values = request.args.getlist(hotpath.PROBABILITIES) if request.query_string else []
    return hotpath.wants_probabilities(values)


# -- docs ------------------------------------------------------------------------------------


def openapi() -> Any:
    svc = services()
    examples: dict[str, Any] = {}
    for name in security.visible_to_caller(svc.inference.served_names()):
        try:
            record = svc.registry.get(name)
        except WharfError:
            continue
        examples[name] = {"summary": f"{name} v{record.version}", "value": Version.of(record).example}
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    return json_response(build_spec(app, NAME, examples, auth=svc.settings.auth))


def docs() -> Any:
    return render_template("wharf_docs.html", spec_url=url_for(f"{NAME}.openapi"))


def docs_asset(filename: str) -> Any:
    if filename == "wharf-docs.js":
        return send_from_directory(Path(__file__).parent / "static", filename)
    import swagger_ui  # assets only; the package's framework handlers are not used

    return send_from_directory(Path(swagger_ui.__file__).parent / "static", filename)


ROUTES: list[tuple[str, Any, list[str], str]] = [
    ("/healthz", healthz, ["GET"], PUBLIC),
    ("/readyz", readyz, ["GET"], PUBLIC),
    ("/openapi.json", openapi, ["GET"], PUBLIC),
    ("/docs", docs, ["GET"], PUBLIC),
    ("/docs/assets/<path:filename>", docs_asset, ["GET"], PUBLIC),
    ("/v1/models", list_models, ["GET"], "read"),
    ("/v1/models/<name>", get_model, ["GET"], "read"),
    ("/v1/models/<name>", delete_model, ["DELETE"], "delete"),
    ("/v1/models/<name>/stats", model_stats, ["GET"], "read"),
    ("/v1/models/<name>/versions", list_versions, ["GET"], "read"),
    ("/v1/models/<name>/versions", upload_version, ["POST"], "register"),
    ("/v1/models/<name>/versions/<int:version>", get_version, ["GET"], "read"),
    ("/v1/models/<name>/versions/<int:version>", delete_version, ["DELETE"], "delete"),
    ("/v1/models/<name>/versions/<int:version>/convert", convert_version, ["POST"], "register"),
    ("/v1/models/<name>/versions/<int:version>/fast", set_fast, ["PUT"], "register"),
    ("/v1/models/<name>/versions/<int:version>/fast", unset_fast, ["DELETE"], "register"),
    ("/v1/models/<name>/predict", predict, ["POST"], "predict"),
    ("/v1/models/<name>/versions/<int:version>/predict", predict_version, ["POST"], "predict"),
]
