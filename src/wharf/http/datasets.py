"""Routes for datasets: upload a table, list, show its profile, delete."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from flask import request, url_for

from wharf.errors import BadRequest, WharfError
from wharf.http.bodies import json_response, media_type, unsupported
from wharf.http.context import NAME, services
from wharf.http.dataset_schemas import Dataset, DatasetDeleted, DatasetList, DatasetSummary, DatasetUploadForm
from wharf.http.openapi import documented
from wharf.http.security import note

MULTIPART = ("multipart/form-data",)


@documented(
    "Upload a table (CSV, JSON, JSON lines, Excel .xlsx or Parquet) as a dataset, stored once and profiled.",
    tags=("datasets",),
    responses={201: Dataset, 200: Dataset},
    body=DatasetUploadForm,
    body_media=MULTIPART,
)
def upload_dataset() -> Any:
    svc = services()
    request.max_content_length = svc.settings.max_dataset_bytes
    if media_type() != MULTIPART[0]:
        raise unsupported(MULTIPART)
    upload = request.files.get("file")
    if upload is None:
        raise BadRequest(
            "Send the table as the multipart field 'file' (curl -F file=@houses.csv).", field="file"
        )
    name = request.form.get("name") or None
    filename = upload.filename or "upload"
    with tempfile.TemporaryDirectory(dir=svc.settings.home) as tmp:
        path = Path(tmp) / "upload"  # never the client's file name: no path reaches the disk
        upload.save(path)
        try:
            record = svc.datasets.add(path, filename, name)
        except WharfError as exc:
            # A reader's message may quote the file it read: clients see their own file name.
            exc.detail = exc.detail.replace(str(path), filename).replace(tmp, "")
            raise
    note(target=f"dataset {record.id}", created=record.created)
    body = Dataset.of(record).model_dump(mode="json")
    if not record.created:
        return json_response(body)
    location = url_for(f"{NAME}.get_dataset", dataset_id=record.id)
    return json_response(body, status=201, headers={"Location": location})


@documented("List the datasets, oldest first.", tags=("datasets",), responses={200: DatasetList})
def list_datasets() -> Any:
    records = services().datasets.list()
    return json_response({"datasets": [DatasetSummary.of(r).model_dump(mode="json") for r in records]})


@documented(
    "One dataset with its profile: each column's kind, missing values and statistics.",
    tags=("datasets",),
    responses={200: Dataset},
)
def get_dataset(dataset_id: int) -> Any:
    return json_response(Dataset.of(services().datasets.get(dataset_id)).model_dump(mode="json"))


@documented("Delete a dataset and its stored table.", tags=("datasets",), responses={200: DatasetDeleted})
def delete_dataset(dataset_id: int) -> Any:
    record = services().datasets.delete(dataset_id)
    return json_response({"id": record.id, "name": record.name, "deleted": True})


ROUTES: list[tuple[str, Any, list[str], str]] = [
    ("/v1/datasets", upload_dataset, ["POST"], "train"),
    ("/v1/datasets", list_datasets, ["GET"], "read"),
    ("/v1/datasets/<int:dataset_id>", get_dataset, ["GET"], "read"),
    ("/v1/datasets/<int:dataset_id>", delete_dataset, ["DELETE"], "delete"),
]
