"""The data of each dashboard page, read from the services for the caller of this request.

Each function returns the context of one template (or the JSON of one of the script's routes);
:mod:`wharf.http.ui` routes, authenticates and renders. A key limited to some models sees those
models only, and the jobs that train them, as the API's listings do.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from flask import url_for

from wharf.errors import ModelNotFound, WharfError
from wharf.http.context import services
from wharf.http.jobs import visible
from wharf.http.schemas import Version
from wharf.http.security import principal
from wharf.http.ui_data import (
    dataset_row,
    form_fields,
    job_row,
    model_row,
    number,
    profile_columns,
    version_row,
)
from wharf.services.registry import newest_active
from wharf.storage.jobs import STATES

MAX_MODELS = 200
"""Most models the models table lists; a search narrows the rest."""
MAX_JOBS = 100
"""The newest jobs the jobs table lists."""


def models_page(search: str | None) -> dict[str, Any]:
    svc = services()
    names = principal().visible(svc.inference.served_names(search))
    models = []
    for name in names[:MAX_MODELS]:
        try:
            models.append(model_row(name, svc.registry.versions(name), svc.registry.aliases_of(name)))
        except ModelNotFound:
            continue  # deleted since the names were read
    return {"models": models, "total": len(names), "search": search or "", "limit": MAX_MODELS}


def model_page(name: str, version: int | None) -> dict[str, Any]:
    """A model's versions and aliases, its charts' data routes, the drift report and the prediction
    form of ``version`` (default: the latest active one).

    :raises ModelNotFound, VersionNotFound: no such model or version.
    """
    svc = services()
    svc.inference.check_served(name)
    records = svc.registry.versions(name)
    chosen = newest_active(records) if version is None else svc.registry.get(name, version)
    shown = Version.of(chosen) if chosen is not None else None
    urls = {
        "history": url_for("wharf_ui.history", name=name),
        "drift_history": url_for("wharf_ui.drift_history", name=name),
        "predict": url_for("wharf_ui.predict", name=name),
        "page": url_for("wharf_ui.model", name=name),
    }
    return {
        "name": name,
        "versions": [version_row(r) for r in reversed(records)],
        "aliases": sorted(svc.registry.aliases_of(name).items()),
        "active": [r.version for r in reversed(records) if r.status == "active"],
        "chosen": shown,
        "fields": form_fields(shown) if shown else [],
        "classifier": shown is not None and shown.signature.output.kind == "classification",
        "can_predict": principal().can("predict") and shown is not None and shown.status == "active",
        "drift": drift_report(name, version),
        "psi_threshold": svc.settings.drift_psi_threshold,
        "urls": urls,
    }


def drift_report(name: str, version: int | None) -> dict[str, Any]:
    """The monitor's drift report with its numbers shown, or ``{"error": why}`` when there is none:
    the rest of the page stands without it."""
    try:
        report = dict(services().monitor.drift(name, version))
    except WharfError as exc:
        return {"error": exc.detail}
    report["columns"] = [
        {
            **column,
            "psi_shown": number(column.get("psi")),
            "statistic_shown": number(column.get("statistic")),
            "p_value_shown": number(column.get("p_value")),
        }
        for column in report.get("columns") or []
    ]
    return report


def jobs_json(state: str | None, now: datetime) -> dict[str, Any]:
    """The newest jobs the caller may see (``state``: only those), and whether any is unfinished."""
    records = visible(services().jobs.recent(state, limit=MAX_JOBS))
    rows = [job_row(job, now) for job in records]
    return {"jobs": rows, "active": any(not row["finished"] for row in rows)}


def jobs_page(state: str | None) -> dict[str, Any]:
    return {
        **jobs_json(state, datetime.now(UTC)),
        "state": state or "",
        "states": STATES,
        "jobs_url": url_for("wharf_ui.api_jobs", state=state),
    }


def datasets_page() -> dict[str, Any]:
    return {"datasets": [dataset_row(r) for r in reversed(services().datasets.list())]}


def dataset_page(dataset_id: int) -> dict[str, Any]:
    """:raises DatasetNotFound:."""
    record = services().datasets.get(dataset_id)
    return {"dataset": dataset_row(record), "columns": profile_columns(record.profile)}
