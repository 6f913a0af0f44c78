"""Shapes of the JSON the dataset routes take and give, as pydantic models (they document the API)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field
from pydantic.json_schema import SkipJsonSchema

from wharf.http.schemas import optional_part
from wharf.storage.datasets import DatasetRecord

Kind = Literal["numeric", "boolean", "categorical", "text", "datetime"]
"""As :data:`wharf.services.profiling.ColumnKind` (not imported: this layer loads no pandas)."""


class ColumnProfile(BaseModel):
    """One column of a dataset: its inferred kind, missing values and statistics."""

    name: str
    kind: Kind = Field(description="How training treats it: scaled, 0/1, one-hot, TF-IDF or date parts.")
    dtype: str = Field(description="The pandas dtype it is stored with.")
    missing: int = Field(description="Rows without a value.")
    unique: int = Field(description="Distinct values among the others.")
    stats: dict[str, Any] | None = Field(
        None,
        description="numeric: mean, std, min, q25, median, q75, max; boolean: true, false; "
        "categorical: top (value, count); text: mean_length, max_length; datetime: min, max.",
    )


class DatasetProfile(BaseModel):
    """A table's profile, as :func:`wharf.services.profiling.profile_frame` makes it."""

    rows: int
    columns: list[ColumnProfile]


class DatasetSummary(BaseModel):
    """A stored dataset, without its profile."""

    id: int
    name: str
    filename: str = Field(description="The uploaded file's name.")
    format: Literal["csv", "json", "jsonl", "xlsx", "parquet"] = Field(description="The uploaded format.")
    sha256: str = Field(description="Digest of the stored Parquet file: equal tables, equal digests.")
    size: int = Field(description="Bytes of the stored Parquet file.")
    rows: int
    columns: int
    created_at: datetime

    @classmethod
    def of(cls, record: DatasetRecord) -> DatasetSummary:
        return cls(**{name: getattr(record, name) for name in cls.model_fields})


class Dataset(DatasetSummary):
    """A stored dataset with the profile of each column."""

    created: bool = Field(
        False, description="On upload: true when stored now, false when the same table was stored before."
    )
    profile: DatasetProfile

    @classmethod
    def of(cls, record: DatasetRecord) -> Dataset:
        fields = {name: getattr(record, name) for name in DatasetSummary.model_fields}
        return cls(**fields, created=record.created, profile=DatasetProfile.model_validate(record.profile))


class DatasetList(BaseModel):
    datasets: list[DatasetSummary] = Field(description="Oldest first.")


class DatasetDeleted(BaseModel):
    id: int
    name: str
    deleted: Literal[True] = True


class DatasetUploadForm(BaseModel):
    """``multipart/form-data`` of a dataset upload."""

    file: bytes = Field(
        description="CSV (comma, semicolon or tab separated, with a header row), JSON (records, "
        '{"columns", "data"}, or column arrays), JSON lines, Excel .xlsx (first sheet, header in '
        "the first row) or Parquet; the format comes from the file name and its content."
    )
    name: str | SkipJsonSchema[None] = Field(
        None,
        description="The dataset's name; default: the file name without extension.",
        json_schema_extra=optional_part,
    )
