"""Shapes of the JSON the API takes and gives, as pydantic models.

They document the API (OpenAPI is generated from them) and render metadata responses. The
prediction hot path does not validate through them: the compiled decoder does that, faster.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictInt
from pydantic.json_schema import SkipJsonSchema

from wharf.services.registry import ANSWERED_BY, LINEAGE, METRICS, PARITY, RESERVED_METADATA, TRAINING
from wharf.signature import Signature
from wharf.storage import VersionRecord


def optional_part(schema: dict[str, Any]) -> None:
    """A form part that is sent or left out, never null: its schema states no (null) default."""
    schema.pop("default", None)


class Problem(BaseModel):
    """An RFC 9457 problem: what went wrong, and where."""

    type: str = Field(examples=["urn:wharf:problem:invalid-input"])
    title: str
    status: int
    detail: str
    instance: str | None = None
    field: str | None = Field(None, description="Where in the body, e.g. `instances[3].age`.")
    row: int | None = Field(None, description="Zero-based index of the row at fault.")
    column: str | None = Field(None, description="The input column at fault.")


class Version(BaseModel):
    """One registered version of a model."""

    name: str
    version: int
    format: str
    signature: Signature
    sha256: str
    size: int
    filename: str
    created_at: datetime
    description: str
    tags: dict[str, str]
    library_versions: dict[str, str] = Field(
        description="Versions of Python, numpy, scikit-learn and the model's framework it was made with."
    )
    warnings: list[str]
    metadata: dict[str, Any] = Field(description="Free-form metadata given at registration.")
    example: dict[str, Any] = Field(description="A request body this version accepts.")
    lineage: dict[str, Any] | None = Field(
        None,
        description="Where this version came from: the source version of a conversion, or the dataset "
        "and job that trained it.",
    )
    metrics: dict[str, Any] | None = Field(
        None, description="A trained version's scores on held-out data (or cross-validation)."
    )
    training: dict[str, Any] | None = Field(
        None,
        description="How a trained version was made: algorithm, parameters, preprocessing, feature "
        "importances or coefficients.",
    )
    parity: dict[str, Any] | None = Field(
        None, description="A conversion's parity report against its source (labels, differences, latency)."
    )
    answered_by: int | None = Field(
        None, description="The verified ONNX twin that answers predictions for this version (set-fast)."
    )
    status: Literal["active", "archived"] = Field(
        "active", description="Archived versions are kept but never latest, aliased or served."
    )
    aliases: list[str] = Field(default_factory=list, description="The aliases that point at this version.")

    @classmethod
    def of(cls, record: VersionRecord) -> Version:
        signature = Signature.model_validate(record.signature)
        example = record.extra.get("example")
        rows = [example] if isinstance(example, dict) else [signature.example_row()]
        return cls(
            name=record.name,
            version=record.version,
            format=record.format,
            signature=signature,
            sha256=record.sha256,
            size=record.size,
            filename=record.filename,
            created_at=record.created_at,
            description=record.description,
            tags=record.tags,
            library_versions=record.library_versions,
            warnings=record.warnings,
            metadata={k: v for k, v in record.extra.items() if k != "example" and k not in RESERVED_METADATA},
            example={"instances": rows},
            lineage=record.extra.get(LINEAGE),
            metrics=record.extra.get(METRICS),
            training=record.extra.get(TRAINING),
            parity=record.extra.get(PARITY),
            answered_by=record.extra.get(ANSWERED_BY),
            status=record.status,
            aliases=list(record.aliases),
        )


class Model(BaseModel):
    """A model: a name and its versions."""

    name: str
    latest_version: int | None = Field(description="The newest active version (null: all are archived).")
    versions: int = Field(description="How many versions it has, archived ones included.")
    latest: Version | None
    aliases: dict[str, int] = Field(default_factory=dict, description="Alias -> the version it points at.")


class ModelList(BaseModel):
    models: list[Model]
    total: int = Field(description="Models matching the query, on every page.")


class BatchingStats(BaseModel):
    calls: int = Field(description="Model calls made.")
    rows: int = Field(description="Rows predicted.")
    requests: int = Field(description="Requests answered by those calls.")
    mean_rows_per_call: float
    rows_per_call: dict[str, int] = Field(description="Histogram of rows per model call.")


class CacheStats(BaseModel):
    entries: int
    max_entries: int
    hits: int
    misses: int


class VersionStats(BaseModel):
    version: int
    batching: BatchingStats | None = None
    cache: CacheStats | None = None


class ModelStats(BaseModel):
    """Counters of the versions loaded in the worker that answered."""

    name: str
    versions: list[VersionStats]


class VersionList(BaseModel):
    name: str
    versions: list[Version]
    total: int = Field(description="Versions matching the query, on every page.")


class VersionEdit(BaseModel):
    """Changes to a version's description and tags; what is left out stays."""

    model_config = ConfigDict(extra="forbid")

    description: str | None = Field(None, max_length=10_000, description="Replaces the description.")
    tags: dict[str, str | None] | None = Field(
        None, description="Merged into the tags; a null value removes that tag."
    )


class AliasRequest(BaseModel):
    """Where an alias should point."""

    model_config = ConfigDict(extra="forbid")

    version: StrictInt = Field(ge=1, description="An active version of the model.")


class Alias(BaseModel):
    name: str
    alias: str
    version: int = Field(description="The version it points at now.")
    previous: int | None = Field(None, description="Where it pointed before (null: it is new).")


class AliasList(BaseModel):
    name: str
    aliases: dict[str, int] = Field(description="Alias -> the version it points at.")


class Deleted(BaseModel):
    name: str
    deleted: list[int] = Field(description="Version numbers removed.")


class Health(BaseModel):
    status: Literal["ok", "ready"]
    models: int | None = None


Value = float | int | str | bool | None


class InstancesRequest(BaseModel):
    """Rows: objects keyed by column, or lists in signature order."""

    model_config = ConfigDict(extra="forbid")
    instances: list[dict[str, Value] | list[Value]] = Field(min_length=1)
    return_: list[Literal["predictions", "probabilities"]] | None = Field(None, alias="return")


class InputsRequest(BaseModel):
    """Columns: each column's values, one per row."""

    model_config = ConfigDict(extra="forbid")
    inputs: dict[str, list[Value]]
    return_: list[Literal["predictions", "probabilities"]] | None = Field(None, alias="return")


class DataframeSplit(BaseModel):
    columns: list[str]
    data: list[list[Value]]
    index: list[Any] | None = None


class DataframeSplitRequest(BaseModel):
    """MLflow's ``dataframe_split`` format."""

    model_config = ConfigDict(extra="forbid")
    dataframe_split: DataframeSplit
    return_: list[Literal["predictions", "probabilities"]] | None = Field(None, alias="return")


class DataframeRecordsRequest(BaseModel):
    """MLflow's ``dataframe_records`` format."""

    model_config = ConfigDict(extra="forbid")
    dataframe_records: list[dict[str, Value]] = Field(min_length=1)
    return_: list[Literal["predictions", "probabilities"]] | None = Field(None, alias="return")


PredictRequest = InstancesRequest | InputsRequest | DataframeSplitRequest | DataframeRecordsRequest


class Prediction(BaseModel):
    """Predictions, one per input row, in order."""

    model: str
    version: int
    answered_by: int | None = Field(
        None, description="The verified twin version whose runtime made these predictions, when set."
    )
    predictions: list[Any]
    probabilities: list[list[float]] | None = Field(
        None, description="Per row, one probability per class in `classes` order (when asked)."
    )
    classes: list[Any] | None = None


class ToleranceBody(BaseModel):
    """When a conversion counts as faithful."""

    model_config = ConfigDict(extra="forbid")

    labels: float = Field(1.0, ge=0, le=1, description="Least share of rows whose label must be equal.")
    rtol: float = Field(
        1e-4, ge=0, description="Largest difference of a probability or value, relative to max(|source|, 1)."
    )


class ConvertRequest(BaseModel):
    """Convert a version to another format, with a parity check against it."""

    model_config = ConfigDict(extra="forbid")

    to: Literal["onnx", "pmml"]
    tolerance: ToleranceBody | None = Field(None, description="Default: the server's (labels 100%, 1e-4).")
    sample: list[Any] | None = Field(
        None, description="Rows to compare on (the training holdout, or real rows); default: generated rows."
    )
    sample_size: int = Field(500, ge=1, le=100_000, description="Generated rows, when no sample is sent.")
    seed: int = Field(0, ge=0, description="Seed of the generated rows.")
    force: bool = Field(False, description="Register even when parity falls outside the tolerance.")


class FastRequest(BaseModel):
    """Let a verified ONNX twin answer for this version."""

    model_config = ConfigDict(extra="forbid")

    twin: int | None = Field(None, description="The twin version; default: the newest verified one.")


class UploadMetadata(BaseModel):
    """The optional ``metadata`` part of a version upload (a JSON object)."""

    model_config = ConfigDict(extra="forbid")
    format: str | None = Field(
        None, description="joblib, pickle, skops, onnx, xgboost or lightgbm; else guessed."
    )
    signature: Signature | None = Field(None, description="Inputs and output, where the model cannot say.")
    description: str = Field("", max_length=10_000)
    tags: dict[str, str] = Field(default_factory=dict)
    metadata: dict[str, Any] = Field(
        default_factory=dict, description="Free-form; `example` is a row shown in docs."
    )


class UploadForm(BaseModel):
    """``multipart/form-data`` of a version upload."""

    file: bytes = Field(description="The model file.")
    metadata: UploadMetadata | SkipJsonSchema[None] = Field(
        None, description="A JSON object.", json_schema_extra=optional_part
    )


class ColumnDriftBody(BaseModel):
    """One input column compared with the reference over the window."""

    name: str
    kind: str = Field(description="numeric or categorical.")
    test: str = Field(description="ks (Kolmogorov-Smirnov, numeric) or chi2 (chi-square, categorical).")
    statistic: float | None
    p_value: float | None
    psi: float | None = Field(description="Population stability index.")
    drifting: bool
    rows: int = Field(description="Live rows with a value in this column.")
    missing: int
    reason: str | None = Field(description="Why it is (or cannot yet be) called drifting.")


class DriftReferenceBody(BaseModel):
    source: str = Field(description="training, upload or registration.")
    rows: int
    created_at: str


class DriftThresholds(BaseModel):
    psi: float
    p_value: float
    min_rows: int


class DriftBody(BaseModel):
    """A version's live inputs over the sliding window, compared column by column with its reference."""

    name: str
    version: int
    status: str = Field(description="ok, insufficient-data (fewer rows than min_rows) or no-reference.")
    window_minutes: int
    rows: int
    drifting: bool
    reference: DriftReferenceBody | None
    thresholds: DriftThresholds
    columns: list[ColumnDriftBody]


class ReferenceSet(BaseModel):
    name: str
    version: int
    source: str
    rows: int
    columns: list[str]
