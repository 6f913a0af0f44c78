"""Routes for admins: API keys (``/v1/keys``) and the audit log (``/v1/audit``)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from flask import url_for
from pydantic import BaseModel, ConfigDict, Field

from wharf.http.bodies import (
    PAGE_QUERY,
    json_body,
    json_response,
    page,
    query_arg,
    validated,
)
from wharf.http.context import NAME, services
from wharf.http.openapi import documented
from wharf.http.security import note, principal
from wharf.services.security import parse_expires
from wharf.storage.audit import AuditRecord
from wharf.storage.keys import KeyRecord

MAX_BODY = 64 * 1024


class Key(BaseModel):
    """An API key as stored: never its secret."""

    id: str = Field(description="Public id: the 8 hex characters after `wharf_`.")
    role: str
    models: list[str] | None = Field(None, description="The models it may use; null: all.")
    name: str
    created_by: str
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None
    last_used_at: datetime | None

    @classmethod
    def of(cls, record: KeyRecord) -> Key:
        return cls(
            id=record.id,
            role=record.role,
            models=None if record.models is None else list(record.models),
            name=record.name,
            created_by=record.created_by,
            created_at=record.created_at,
            expires_at=record.expires_at,
            revoked_at=record.revoked_at,
            last_used_at=record.last_used_at,
        )


class NewKey(Key):
    key: str = Field(description="The key itself, shown this once: wharf keeps only its hash.")


class KeyList(BaseModel):
    keys: list[Key]


class CreateKey(BaseModel):
    """A new key."""

    model_config = ConfigDict(extra="forbid")

    role: str = Field(description="reader, predictor, trainer or admin.")
    models: list[str] | None = Field(None, description="Limit the key to these models.")
    expires: str | None = Field(None, description="`30d`, `12h`, `2w`, or an ISO 8601 date or time.")
    name: str = Field("", max_length=256, description="What the key is for.")


class AuditEntry(BaseModel):
    id: int
    at: datetime
    key_id: str | None
    role: str | None
    action: str
    target: str
    status: int
    remote_addr: str | None
    detail: dict[str, Any]

    @classmethod
    def of(cls, record: AuditRecord) -> AuditEntry:
        return cls(**{field: getattr(record, field) for field in cls.model_fields})


class AuditLog(BaseModel):
    entries: list[AuditEntry]


@documented("List API keys (never their secrets).", tags=("keys",), responses={200: KeyList})
def list_keys() -> Any:
    keys = services().keys.list()
    return json_response({"keys": [Key.of(k).model_dump(mode="json") for k in keys]})


@documented(
    "Create an API key; the answer holds the key itself, shown this once.",
    tags=("keys",),
    responses={201: NewKey},
    body=CreateKey,
)
def create_key() -> Any:
    svc = services()
    example = '{"role": "predictor", "models": ["iris"], "expires": "90d"}'
    body = validated(CreateKey, json_body(MAX_BODY), "key request", "body", example)
    expires_at = None if body.expires is None else parse_expires(body.expires)
    record, secret = svc.keys.create(
        body.role, body.models, expires_at, body.name, created_by=principal().actor
    )
    note(target=f"key {record.id}", role=record.role)
    location = url_for(f"{NAME}.list_keys")
    answer = NewKey(**Key.of(record).model_dump(), key=secret)
    return json_response(answer.model_dump(mode="json"), status=201, headers={"Location": location})


@documented("Revoke an API key, on every server sharing this registry.", tags=("keys",), responses={200: Key})
def revoke_key(key_id: str) -> Any:
    record = services().keys.revoke(key_id)
    return json_response(Key.of(record).model_dump(mode="json"))


@documented(
    "The audit log: who did what, when, from where (newest first).",
    tags=("keys",),
    responses={200: AuditLog},
    query={
        **PAGE_QUERY,
        "key_id": "Only this key's actions.",
        "action": "Only this action (or its prefix).",
    },
)
def audit_log() -> Any:
    limit, offset = page()
    entries = services().audit.recent(limit, offset, key_id=query_arg("key_id"), action=query_arg("action"))
    return json_response({"entries": [AuditEntry.of(e).model_dump(mode="json") for e in entries]})


ROUTES: list[tuple[str, Any, list[str], str]] = [
    ("/v1/keys", list_keys, ["GET"], "admin"),
    ("/v1/keys", create_key, ["POST"], "admin"),
    ("/v1/keys/<key_id>", revoke_key, ["DELETE"], "admin"),
    ("/v1/audit", audit_log, ["GET"], "admin"),
]
