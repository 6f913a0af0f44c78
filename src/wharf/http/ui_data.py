"""What the dashboard's pages show, shaped from service records: plain dicts of display-ready values.

Templates only place these values; nothing here reads a request or calls a service, so each shape
is tested on its own. Times are UTC, numbers are rounded to what a person reads (4 significant
digits), and a value that cannot be shown is ``""`` or ``None``, never an exception.
"""

from __future__ import annotations

import math
from datetime import datetime
from typing import Any

import orjson

from wharf.http.schemas import Version
from wharf.services.registry import newest_active
from wharf.storage import VersionRecord
from wharf.storage.datasets import DatasetRecord
from wharf.storage.jobs import FINISHED, JobRecord

KEY_METRICS = ("accuracy", "f1_macro", "roc_auc", "r2", "rmse", "mae")
"""Metrics shown first in the models table, where a version has them."""
MODEL_TABLE_METRICS = 3
MAX_ERROR_CHARS = 300
"""A failed job's error is cut to this many characters in the jobs table."""
NUMERIC_STATS = ("mean", "std", "min", "q25", "median", "q75", "max")


def when(value: datetime | None) -> str:
    """``2025-06-01 14:03 UTC``; ``""`` for no time."""
    return "" if value is None else value.strftime("%Y-%m-%d %H:%M UTC")


def number(value: Any) -> str:
    """A number as a person reads it: integers whole, others to 4 significant digits."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return "" if value is None else str(value)
    if isinstance(value, int):
        return str(value)
    return f"{value:.4g}" if math.isfinite(value) else str(value)


def size(count: int) -> str:
    """Bytes as ``12.3 KiB``."""
    amount = float(count)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if amount < 1024 or unit == "GiB":
            return f"{amount:.0f} {unit}" if unit == "B" else f"{amount:.1f} {unit}"
        amount /= 1024
    return f"{count} B"  # not reached


def duration(seconds: float | None) -> str:
    """``4.2 s``, ``3 min 5 s``; ``""`` for none."""
    if seconds is None:
        return ""
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, rest = divmod(int(seconds), 60)
    return f"{minutes} min {rest} s"


def scalar_metrics(metrics: dict[str, Any] | None) -> list[tuple[str, str]]:
    """``(name, shown value)`` of the plain-number metrics, the key ones first (no confusion matrix)."""
    if not metrics:
        return []
    scalars = {k: v for k, v in metrics.items() if isinstance(v, int | float) and not isinstance(v, bool)}
    order = [k for k in KEY_METRICS if k in scalars] + sorted(k for k in scalars if k not in KEY_METRICS)
    return [(k, number(scalars[k])) for k in order]


def lineage(record: Version) -> dict[str, Any]:
    """Where a version came from: ``dataset`` (id, name), ``job`` (id), ``source`` (a version number)."""
    found = record.lineage or {}
    dataset = found.get("dataset")
    return {
        "dataset": dataset if isinstance(dataset, dict) and isinstance(dataset.get("id"), int) else None,
        "job": found.get("job") if isinstance(found.get("job"), int) else None,
        "source": found.get("source_version") if isinstance(found.get("source_version"), int) else None,
        "conversion": found.get("conversion"),
    }


def model_row(name: str, versions: list[VersionRecord], aliases: dict[str, int]) -> dict[str, Any]:
    """One line of the models table, from a model's versions (oldest first, at least one)."""
    latest = newest_active(versions)
    shown = Version.of(latest) if latest is not None else None
    return {
        "name": name,
        "latest": latest.version if latest is not None else None,
        "versions": len(versions),
        "aliases": sorted(aliases.items()),
        "format": shown.format if shown else "",
        "description": shown.description if shown else "",
        "created": when(shown.created_at) if shown else "",
        "metrics": scalar_metrics(shown.metrics if shown else None)[:MODEL_TABLE_METRICS],
    }


def version_row(record: VersionRecord) -> dict[str, Any]:
    """One line of a model's versions table."""
    version = Version.of(record)
    return {
        "version": version.version,
        "status": version.status,
        "format": version.format,
        "created": when(version.created_at),
        "description": version.description,
        "tags": sorted(version.tags.items()),
        "metrics": scalar_metrics(version.metrics),
        "lineage": lineage(version),
        "aliases": version.aliases,
        "answered_by": version.answered_by,
    }


def form_fields(version: Version) -> list[dict[str, Any]]:
    """One input per signature column, prefilled from the version's example row.

    ``input`` is ``number`` (``step`` 1 for integers), ``select`` (``options`` hold each allowed
    value as JSON, which the page's script parses back) or ``text``.
    """
    rows = version.example.get("instances") or [{}]
    example = rows[0] if isinstance(rows[0], dict) else {}
    fields = []
    for index, column in enumerate(version.signature.inputs):
        value = example.get(column.name)
        field: dict[str, Any] = {
            "id": f"field-{index}",
            "name": column.name,
            "dtype": column.dtype,
            "nullable": column.nullable,
        }
        choices = column.categories or ([True, False] if column.dtype == "bool" else None)
        if choices:
            options = [{"json": "null", "label": "(missing)", "selected": value is None}]
            options = options if column.nullable else []
            options += [
                {"json": orjson.dumps(c).decode(), "label": str(c).lower() if isinstance(c, bool) else str(c)}
                | {"selected": c == value and type(c) is type(value)}
                for c in choices
            ]
            field.update(input="select", options=options)
        elif column.numeric:
            shown = "" if not isinstance(value, int | float) or isinstance(value, bool) else repr(value)
            step = "1" if column.dtype.startswith("int") else "any"
            field.update(input="number", step=step, value=shown)
        else:
            field.update(input="text", value="" if value is None else str(value))
        fields.append(field)
    return fields


def job_row(job: JobRecord, now: datetime) -> dict[str, Any]:
    """A job as the jobs table shows it, and as ``/ui/api/jobs`` gives it to the page's script."""
    run = None
    if job.started_at is not None:
        run = ((job.finished_at or now) - job.started_at).total_seconds()
    result = job.result or {}
    made = None
    if job.state == "succeeded" and isinstance(result.get("model"), str) and "version" in result:
        made = {"model": result["model"], "version": result["version"]}
    error = job.error or ""
    return {
        "id": job.id,
        "kind": job.kind,
        "state": job.state,
        "stage": job.stage,
        "progress": max(0.0, min(1.0, job.progress)),
        "percent": round(100 * max(0.0, min(1.0, job.progress))),
        "finished": job.state in FINISHED,
        "model": job.spec.get("register_as"),
        "dataset": job.spec.get("dataset"),
        "created": when(job.created_at),
        "run": duration(run),
        "made": made,
        "error": error if len(error) <= MAX_ERROR_CHARS else error[: MAX_ERROR_CHARS - 1] + "…",
    }


def dataset_row(record: DatasetRecord) -> dict[str, Any]:
    return {
        "id": record.id,
        "name": record.name,
        "filename": record.filename,
        "format": record.format,
        "rows": record.rows,
        "columns": record.columns,
        "size": size(record.size),
        "created": when(record.created_at),
    }


def profile_columns(profile: dict[str, Any]) -> list[dict[str, Any]]:
    """Each column of a dataset profile (see :func:`wharf.services.profiling.profile_frame`) with its
    statistics as ``(label, value)`` pairs, and its top values with their share of the rows."""
    rows = max(int(profile.get("rows") or 0), 1)
    shaped = []
    for column in profile.get("columns") or []:
        stats = column.get("stats") or {}
        pairs: list[tuple[str, str]] = []
        top: list[dict[str, Any]] = []
        if column.get("kind") == "numeric":
            pairs = [(k, number(stats[k])) for k in NUMERIC_STATS if stats.get(k) is not None]
        elif column.get("kind") == "categorical":
            top = [
                {"value": t["value"], "count": t["count"], "percent": round(100 * t["count"] / rows, 1)}
                for t in stats.get("top", [])
            ]
        else:
            pairs = [(k.replace("_", " "), number(v)) for k, v in stats.items() if v is not None]
        missing = int(column.get("missing") or 0)
        shaped.append(
            {
                "name": column.get("name"),
                "kind": column.get("kind"),
                "dtype": column.get("dtype"),
                "missing": missing,
                "missing_percent": round(100 * missing / rows, 1),
                "unique": column.get("unique"),
                "stats": pairs,
                "top": top,
            }
        )
    return shaped
