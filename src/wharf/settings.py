"""The one place wharf reads its configuration.

Values come, highest priority first, from keyword arguments (CLI flags), ``WHARF_*`` environment
variables, a TOML config file (``WHARF_CONFIG``, else ``wharf.toml`` in the working directory when it
exists), and the defaults below. Nothing else in wharf reads ``os.environ``.
"""

from __future__ import annotations

import difflib
import json
import os
import tomllib
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from wharf.errors import InvalidSettings

ENV_PREFIX = "WHARF_"
CONFIG_ENV = "WHARF_CONFIG"
DEFAULT_CONFIG_FILE = "wharf.toml"

DEFAULT_RATE_LIMITS = {
    "address": "2000/second",
    "anonymous": "60/minute",
    "reader": "100/second",
    "trainer": "100/second",
    "route:submit_job": "60/minute",
    "route:upload_dataset": "60/minute",
    "route:upload_version": "60/minute",
    "route:fit": "10/second",
    "route:create_key": "30/minute",
}
"""Predictor and admin keys are limited only by their address's share, so a busy client is not cut
off; the routes that cost a worker or a disk write are limited per key."""

Names = Annotated[tuple[str, ...], NoDecode]
"""A list of names: a TOML array, or in a variable either ``a,b,c`` or a JSON array."""


def _config_file() -> Path | None:
    """:raises InvalidSettings: ``WHARF_CONFIG`` names no file (a typo must not go unnoticed)."""
    explicit = os.environ.get(CONFIG_ENV)
    if explicit:
        path = Path(explicit)
        if not path.is_file():
            raise InvalidSettings(
                f"{CONFIG_ENV} names {explicit!r}, which is not a file; point it at a TOML file "
                "of settings or unset it.",
                field=CONFIG_ENV,
            )
        return path
    default = Path(DEFAULT_CONFIG_FILE)
    return default if default.is_file() else None


def _invalid(exc: ValidationError, fields: dict[str, Any]) -> InvalidSettings:
    """One message naming every bad setting, where it may be set, and what it got."""
    problems = []
    for error in exc.errors():
        name = ".".join(str(part) for part in error["loc"]) or "settings"
        top = str(error["loc"][0]) if error["loc"] else ""
        if error["type"] == "extra_forbidden":
            close = difflib.get_close_matches(top, list(fields), n=1)
            hint = f"did you mean {close[0]!r}?" if close else f"known settings: {', '.join(fields)}"
            problems.append(f"unknown setting {name!r} ({hint})")
        else:
            where = f"{name!r} ({ENV_PREFIX}{top.upper()})" if top in fields else repr(name)
            problems.append(f"{where}: {error['msg']}, got {error.get('input')!r}")
    first = str(exc.errors()[0]["loc"][0]) if exc.errors() and exc.errors()[0]["loc"] else None
    return InvalidSettings(
        "Invalid settings: " + "; ".join(problems) + ". Fix the option, the WHARF_* variable or "
        "the config file that sets it.",
        field=first,
    )


class ModelOptions(BaseModel):
    """Per-model serving options; unset ones fall back to the server-wide settings."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    batch_max_rows: int | None = Field(None, ge=1, le=100_000)
    batch_max_wait_ms: float | None = Field(None, ge=0, le=1000)
    cache_entries: int | None = Field(None, ge=0)


class Settings(BaseSettings):
    """Typed settings of a wharf server or CLI invocation."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="forbid", frozen=True)

    home: Path = Path(".wharf")
    """Folder for the embedded defaults: the SQLite registry and the artifact folder."""

    database_url: str | None = None
    """SQLAlchemy URL of the metadata store; default ``sqlite:///<home>/wharf.db``."""

    artifacts: str | None = None
    """Where artifacts live: a folder path or ``file://`` URL, or ``s3://bucket/prefix`` for an
    S3-compatible object store; default ``<home>/artifacts``."""

    s3_endpoint_url: str | None = None
    """Endpoint of the S3 API (MinIO, Ceph, moto, another region's URL); default: AWS's own."""

    s3_region: str | None = None
    """Region of the S3 bucket."""

    s3_access_key_id: str | None = None
    """Access key of the S3 store; unset: the AWS SDK's own chain (its variables, profiles, roles)."""

    s3_secret_access_key: SecretStr | None = None
    """Secret key matching ``s3_access_key_id``."""

    redis_url: str | None = None
    """Redis shared by every worker and replica (``redis://host:6379/0``): rate-limit counters live
    there unless ``rate_limit_storage`` names another store."""

    host: str = "127.0.0.1"
    """Address ``wharf serve`` binds to."""

    port: int = Field(8000, ge=0, le=65535)
    """Port ``wharf serve`` binds to (0 picks a free one)."""

    workers: int = Field(1, ge=1, le=64)
    """Worker processes of the WSGI server."""

    threads: int = Field(32, ge=1, le=1024)
    """Threads per worker process: requests answered at once, and so the largest batches."""

    models: Names = ()
    """Names of the models this server serves; empty serves every registered model."""

    max_body_bytes: int = Field(16 * 1024 * 1024, ge=1024)
    """Largest request body accepted on prediction routes, in bytes (413 above)."""

    max_upload_bytes: int = Field(1024 * 1024 * 1024, ge=1024)
    """Largest model file accepted by an upload, in bytes (413 above)."""

    max_dataset_bytes: int = Field(256 * 1024 * 1024, ge=1024)
    """Largest dataset file accepted by an upload, in bytes (413 above)."""

    max_rows: int = Field(10_000, ge=1)
    """Most rows one prediction request may carry (413 above)."""

    parity_labels: float = Field(1.0, ge=0, le=1)
    """Default least share of equal labels for a conversion to be registered."""

    parity_rtol: float = Field(1e-4, ge=0)
    """Default largest difference of a converted probability or value, relative to max(|value|, 1)."""

    job_workers: int = Field(1, ge=0, le=64)
    """Training jobs one server process runs at once, each in its own worker process; 0 runs none
    (the process only queues them, for another replica to run)."""

    job_timeout_seconds: float = Field(6 * 3600, gt=0)
    """A job running longer is stopped and failed."""

    job_memory_mb: int | None = Field(None, ge=256)
    """Address-space limit of a job's worker process, in MiB; past it the job fails as out of memory.
    Unset: no limit beyond the machine's (a worker the kernel kills also fails its job)."""

    fit_max_cells: int = Field(100_000, ge=1)
    """Largest ``POST /v1/fit`` input, in rows times columns; larger work goes to a training job."""

    auth: bool = True
    """Require an API key on every route but health checks and docs. Turn it off only where
    something in front of wharf authenticates every caller."""

    admin_key: SecretStr | None = None
    """An admin key chosen by the operator (``wharf_<8 hex>_<32+ characters>``), registered at start;
    for automation. Without it, the first start on an empty registry makes one and prints it once."""

    key_cache_seconds: float = Field(2.0, ge=0)
    """How long a process trusts a key it has read; a revocation takes effect within this time."""

    rate_limits: dict[str, str] = Field(default_factory=lambda: dict(DEFAULT_RATE_LIMITS))
    """Request rates, as ``limits`` strings (``"100/second;5000/hour"``), by scope: a role name (per
    key of that role, all routes), ``route:<endpoint>`` (per key or, without one, per address, on that
    route), ``address`` (per client address, all routes), ``anonymous`` (per address, requests
    without a valid key). Setting it replaces the defaults; ``{}`` turns limiting off."""

    rate_limit_storage: str | None = None
    """Where rate-limit counters live: ``memory://`` (per process) or ``redis://host:6379`` (shared
    by every worker and replica); default ``redis_url`` when set, else ``memory://``."""

    cors_origins: Names = ()
    """Origins allowed to call the API from a browser (``https://app.example.com``, or ``*``);
    empty: CORS off."""

    certfile: Path | None = None
    """TLS certificate (PEM) for ``wharf serve``: with ``keyfile``, it serves HTTPS."""

    keyfile: Path | None = None
    """TLS private key (PEM) matching ``certfile``."""

    queue_timeout_seconds: float = Field(30.0, ge=0)
    """Longest a prediction waits for its model before it is refused with 503 and Retry-After
    (the server is behind); 0 waits without limit. The request time limit wharf can keep: a
    running model call cannot be interrupted, so a limit on the whole request belongs in the proxy."""

    max_json_depth: int = Field(32, ge=2, le=1000)
    """Deepest nesting of arrays and objects accepted in a JSON body (400 deeper)."""

    allow_pickle_uploads: bool = False
    """With ``auth`` off: accept joblib and pickle files over HTTP. They run code when loaded: only
    where every client that can reach the upload route is trusted. With ``auth`` on, admin keys may
    upload them and no other key may. The CLI always accepts them."""

    strict_versions: bool = False
    """Refuse to load a version made with another major.minor of its framework (else warn)."""

    refresh_seconds: float = Field(0.5, ge=0)
    """How often a server asks the registry whether anything it serves changed (a new version, an
    alias moved, a version archived or deleted, in any replica); 0 asks on every request."""

    batch_max_rows: int = Field(1024, ge=1, le=100_000)
    """Most rows merged into one model call by adaptive batching; 1 turns batching off."""

    batch_max_wait_ms: float = Field(0.0, ge=0, le=1000)
    """How long a batch waits for more requests once the model is free; 0 calls at once."""

    cache_entries: int = Field(0, ge=0)
    """Prediction cache per model version, in responses (LRU, keyed by the request body); 0 is off."""

    model_options: dict[str, ModelOptions] = Field(default_factory=dict)
    """Per-model overrides of the three above, e.g. ``{"forest": {"cache_entries": 1000}}``."""

    skops_trusted_types: Names = ()
    """Extra type names trusted when loading skops files, beyond scikit-learn's own."""

    log_level: str = "INFO"
    """Level of wharf's log (DEBUG, INFO, WARNING, ERROR)."""

    access_log: bool = True
    """Write one JSON line per request to stdout (request id, route, model, version, status,
    duration, key id)."""

    metrics_public: bool = False
    """Let ``/metrics`` answer without a key (for a Prometheus that cannot send one); else it needs
    a key with the ``read`` permission, sent as Prometheus's ``authorization`` credentials."""

    monitor_flush_seconds: float = Field(10.0, gt=0, le=300)
    """How often each process adds its per-minute request, latency and input counts to the
    database, where the dashboard's charts and the drift report read them (across all replicas)."""

    monitor_retention_days: float = Field(14.0, gt=0)
    """How long those per-minute counts are kept."""

    prediction_log_sample: float = Field(0.0, ge=0, le=1)
    """Share of prediction requests (0 to 1) whose inputs and outputs are kept in the prediction
    log, readable by admins at ``/v1/models/{name}/predictions``; 0 keeps none."""

    prediction_log_retention_days: float = Field(30.0, gt=0)
    """How long prediction log entries are kept."""

    drift_window_minutes: int = Field(60, ge=1, le=7 * 24 * 60)
    """The sliding window of live inputs compared with a version's reference, in minutes."""

    drift_min_rows: int = Field(1000, ge=1)
    """Fewest live rows in the window before a column can be called drifting. Fewer rows make
    PSI noisy: with no drift at all, a column of 50 categories averages a PSI near 0.9 over 100
    rows and near 0.05 over 1000."""

    drift_psi_threshold: float = Field(0.2, gt=0)
    """A column whose population stability index reaches this is drifting (0.2: a major shift)."""

    drift_p_value: float = Field(0.001, gt=0, lt=1)
    """A column whose test (Kolmogorov-Smirnov for numbers, chi-square for categories) rejects
    "same distribution" below this p-value is drifting too."""

    def __init__(self, **values: Any) -> None:
        """:raises InvalidSettings: a value, from any source, is invalid (naming it and its variable)."""
        try:
            super().__init__(**values)
        except ValidationError as exc:
            raise _invalid(exc, type(self).model_fields) from exc

    @field_validator("models", "skops_trusted_types", "cors_origins", mode="before")
    @classmethod
    def _names(cls, value: Any) -> Any:
        if isinstance(value, str):
            text = value.strip()
            if text.startswith("["):
                return json.loads(text)
            return tuple(part.strip() for part in text.split(",") if part.strip())
        return value

    @field_validator("log_level")
    @classmethod
    def _known_level(cls, value: str) -> str:
        upper = value.upper()
        if upper not in {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}:
            raise ValueError(f"log_level must be DEBUG, INFO, WARNING or ERROR, got {value!r}")
        return upper

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        config_file = _config_file()
        if config_file is not None:
            try:
                sources.append(TomlConfigSettingsSource(settings_cls, toml_file=config_file))
            except tomllib.TOMLDecodeError as exc:
                raise InvalidSettings(
                    f"The config file {str(config_file)!r} is not valid TOML: {exc}.", field=CONFIG_ENV
                ) from exc
        return tuple(sources)

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.home / 'wharf.db').resolve()}"

    @property
    def resolved_rate_limit_storage(self) -> str:
        return self.rate_limit_storage or self.redis_url or "memory://"

    @property
    def resolved_artifacts(self) -> str:
        return self.artifacts or str((self.home / "artifacts").resolve())

    def options_for(self, name: str) -> ModelOptions:
        """``name``'s serving options, every field resolved."""
        own = self.model_options.get(name, ModelOptions())
        return ModelOptions(
            batch_max_rows=own.batch_max_rows or self.batch_max_rows,
            batch_max_wait_ms=self.batch_max_wait_ms
            if own.batch_max_wait_ms is None
            else own.batch_max_wait_ms,
            cache_entries=self.cache_entries if own.cache_entries is None else own.cache_entries,
        )

    def replace(self, **changes: Any) -> Settings:
        """A copy with ``changes`` applied and validated (settings are frozen)."""
        data = self.model_dump()
        data.update({key: value for key, value in changes.items() if value is not None})
        try:
            return type(self).model_validate(data)
        except ValidationError as exc:
            raise _invalid(exc, type(self).model_fields) from exc
