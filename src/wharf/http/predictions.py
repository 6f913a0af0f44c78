"""The prediction log's route (``/v1/models/{name}/predictions``): sampled requests, for admins only,
since their inputs are the clients' data."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, Field

from wharf.errors import InvalidInput
from wharf.http.bodies import PAGE_QUERY, int_arg, json_response, page, query_arg
from wharf.http.context import services
from wharf.http.openapi import Query, documented
from wharf.services.predictionlog import MAX_VERSION
from wharf.storage.predictions import PredictionRecord

TIME_SCHEMA = {"type": "string", "format": "date-time"}
TIME_EXAMPLE = "2025-01-31T12:00:00Z"


class PredictionEntry(BaseModel):
    """One logged prediction request."""

    id: int
    at: datetime = Field(description="When it was answered (UTC).")
    model: str
    version: int = Field(description="The version that answered.")
    request_id: str | None = Field(None, description="The request's id, as the access log names it.")
    key_id: str | None = Field(
        None, description="The id of the key that sent it; null without authentication."
    )
    inputs: Any = Field(
        description="The body as sent, after JSON parsing (a CSV body: its text). Over 64 KiB: "
        '`{"truncated": true, "bytes": <size>, "head": "<its first 64 KiB as text>"}`.'
    )
    outputs: Any = Field(description="The answer (predictions, probabilities, ...), cut short the same way.")

    @classmethod
    def of(cls, record: PredictionRecord) -> PredictionEntry:
        return cls(**{field: getattr(record, field) for field in cls.model_fields})


class PredictionLogPage(BaseModel):
    name: str
    total: int = Field(description="Entries matching the filters, over all pages.")
    entries: list[PredictionEntry] = Field(description="Newest first.")


def time_arg(name: str) -> datetime | None:
    """The query parameter ``name`` as a moment: ISO 8601, with an offset or else taken as UTC.

    :raises InvalidInput: it is not such a date or time.
    """
    raw = query_arg(name)
    if raw is None:
        return None
    text = raw.strip().upper()  # RFC 3339 allows "t" and "z"; Python takes "T" and "Z"
    head, space, offset = text.rpartition(" ")
    if space and ":" in head and offset[:1].isdigit():
        text = f"{head}+{offset}"  # an unescaped "+" in a query string arrives as a space
    try:
        moment = datetime.fromisoformat(text)
        return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    except (ValueError, OverflowError) as exc:
        raise InvalidInput(
            f"Query parameter {name!r} must be an ISO 8601 date or time such as {TIME_EXAMPLE!r} (UTC "
            f"unless it has an offset); got {raw[:40]!r}.",
            field=name,
        ) from exc


@documented(
    "Logged prediction requests of a model, newest first: what was sent and what was answered. "
    "The server keeps a sample of them (WHARF_PREDICTION_LOG_SAMPLE) for a while "
    "(WHARF_PREDICTION_LOG_RETENTION_DAYS).",
    tags=("predict",),
    responses={200: PredictionLogPage},
    query={
        "version": Query("Only this version's.", {"type": "integer", "minimum": 1, "maximum": MAX_VERSION}),
        "since": Query(
            f"From this moment on (ISO 8601, e.g. {TIME_EXAMPLE}; UTC without an offset).", TIME_SCHEMA
        ),
        "until": Query("Before this moment (same form).", TIME_SCHEMA),
        **PAGE_QUERY,
    },
)
def list_predictions(name: str) -> Any:
    svc = services()
    svc.inference.check_served(name)
    svc.registry.versions(name)  # 404 for an unknown model
    version = None if query_arg("version") is None else int_arg("version", 0, 1, MAX_VERSION)
    since, until = time_arg("since"), time_arg("until")
    limit, offset = page()
    total, entries = svc.predictions.read(
        name, version=version, since=since, until=until, limit=limit, offset=offset
    )
    body = {
        "name": name,
        "total": total,
        "entries": [PredictionEntry.of(e).model_dump(mode="json") for e in entries],
    }
    return json_response(body)


ROUTES: list[tuple[str, Any, list[str], str]] = [
    ("/v1/models/<name>/predictions", list_predictions, ["GET"], "admin"),
]
