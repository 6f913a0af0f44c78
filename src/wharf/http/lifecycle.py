"""Routes of a version's life after registration: description and tags, archive and restore, and
the aliases (``production``, ``staging``) that say which version answers."""

from __future__ import annotations

from typing import Any

from wharf.http.blueprint import _version_json
from wharf.http.bodies import json_body, json_response, validated
from wharf.http.context import services
from wharf.http.openapi import documented
from wharf.http.schemas import Alias, AliasList, AliasRequest, Version, VersionEdit
from wharf.http.security import note
from wharf.services.registry import ACTIVE, ARCHIVED, check_alias


@documented(
    "Change a version's description or tags (a null tag value removes the tag).",
    tags=("versions",),
    responses={200: Version},
    body=VersionEdit,
)
def edit_version(name: str, version: int) -> Any:
    svc = services()
    svc.inference.check_served(name)
    data = json_body(svc.settings.max_body_bytes)
    example = '{"description": "...", "tags": {"team": "ml", "old": null}}'
    body = validated(VersionEdit, data, "version changes", "body", example)
    record = svc.registry.edit(name, version, description=body.description, tags=body.tags)
    return json_response(_version_json(record))


@documented(
    "Archive a version: kept with its lineage, never latest, no alias, no predictions. Refused while "
    "an alias points at it.",
    tags=("versions",),
    responses={200: Version},
)
def archive_version(name: str, version: int) -> Any:
    return _set_status(name, version, ARCHIVED)


@documented("Restore an archived version.", tags=("versions",), responses={200: Version})
def restore_version(name: str, version: int) -> Any:
    return _set_status(name, version, ACTIVE)


def _set_status(name: str, version: int, status: str) -> Any:
    svc = services()
    svc.inference.check_served(name)
    record = svc.registry.set_status(name, version, status)
    svc.inference.sync()
    return json_response(_version_json(record))


# -- aliases ---------------------------------------------------------------------------------


@documented(
    "A model's aliases and the versions they point at.", tags=("aliases",), responses={200: AliasList}
)
def list_aliases(name: str) -> Any:
    svc = services()
    svc.inference.check_served(name)
    return json_response({"name": name, "aliases": svc.registry.aliases(name)})


@documented(
    "Point an alias (production, staging, any name) at a version, atomically. Every replica answers "
    "`/v1/models/{name}@{alias}/predict` with the new version once it has loaded and warmed it.",
    tags=("aliases",),
    responses={200: Alias},
    body=AliasRequest,
)
def set_alias(name: str, alias: str) -> Any:
    svc = services()
    svc.inference.check_served(name)
    check_alias(alias)
    data = json_body(svc.settings.max_body_bytes)
    version = validated(AliasRequest, data, "alias", "body", '{"version": 2}').version
    previous = svc.registry.set_alias(name, alias, version)
    note(alias=alias, version=version)
    svc.inference.sync()
    return json_response({"name": name, "alias": alias, "version": version, "previous": previous})


@documented("Remove an alias.", tags=("aliases",), responses={200: Alias})
def delete_alias(name: str, alias: str) -> Any:
    svc = services()
    svc.inference.check_served(name)
    previous = svc.registry.delete_alias(name, alias)
    note(alias=alias)
    svc.inference.sync()
    return json_response({"name": name, "alias": alias, "version": previous, "previous": previous})


ROUTES: list[tuple[str, Any, list[str], str]] = [
    ("/v1/models/<name>/versions/<int:version>", edit_version, ["PATCH"], "register"),
    ("/v1/models/<name>/versions/<int:version>/archive", archive_version, ["POST"], "register"),
    ("/v1/models/<name>/versions/<int:version>/restore", restore_version, ["POST"], "register"),
    ("/v1/models/<name>/aliases", list_aliases, ["GET"], "read"),
    ("/v1/models/<name>/aliases/<alias>", set_alias, ["POST", "PUT"], "register"),
    ("/v1/models/<name>/aliases/<alias>", delete_alias, ["DELETE"], "register"),
]
