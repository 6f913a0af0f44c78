"""Services: plain objects holding wharf's behaviour, shared by the HTTP layer and the CLI.

Rule of this layer: no Flask. Services are built once from :class:`~wharf.settings.Settings` by
:func:`build_services` and passed their collaborators.
"""

from __future__ import annotations

from dataclasses import dataclass

from wharf.services.conversion import Converter
from wharf.services.datasets import Datasets
from wharf.services.inference import InferenceService
from wharf.services.jobs import Jobs, train_validator
from wharf.services.linewriter import LineWriter
from wharf.services.monitor import Monitor
from wharf.services.predictionlog import PredictionLog
from wharf.services.ratelimit import RateLimiter
from wharf.services.registry import Registry
from wharf.services.security import Audit, Keys
from wharf.services.telemetry import Telemetry
from wharf.settings import Settings
from wharf.storage import MetadataStore, open_artifact_store


@dataclass
class Services:
    """Everything a request or a CLI command needs."""

    settings: Settings
    registry: Registry
    inference: InferenceService
    converter: Converter
    datasets: Datasets
    jobs: Jobs
    keys: Keys
    audit: Audit
    limiter: RateLimiter
    telemetry: Telemetry
    monitor: Monitor
    predictions: PredictionLog
    access_log: LineWriter
    """Where the access log lines go (stdout), written in batches."""

    def close(self) -> None:
        self.inference.stop()
        self.monitor.stop()
        self.jobs.stop()
        self.predictions.stop()
        self.access_log.close()
        self.registry.metadata.close()

    def after_fork(self) -> None:
        """In a forked worker: drop database connections inherited from the parent, and the
        parent's counts (its snapshot reports them)."""
        self.registry.metadata.engine.dispose(close=False)
        self.telemetry.reset()
        self.access_log.after_fork()


def build_services(settings: Settings) -> Services:
    """Open the stores named by ``settings`` and wire the services."""
    settings.home.mkdir(parents=True, exist_ok=True)
    metadata = MetadataStore(settings.resolved_database_url)
    artifacts = open_artifact_store(
        settings.resolved_artifacts,
        cache=settings.home / "cache" / "artifacts",
        s3_endpoint_url=settings.s3_endpoint_url,
        s3_region=settings.s3_region,
        s3_access_key_id=settings.s3_access_key_id,
        s3_secret_access_key=settings.s3_secret_access_key,
    )
    registry = Registry(metadata, artifacts, trusted=settings.skops_trusted_types)
    telemetry = Telemetry()
    monitor = Monitor(
        telemetry,
        metadata.monitoring,
        latest=lambda name: registry.latest(name).version,
        flush_seconds=settings.monitor_flush_seconds,
        retention_days=settings.monitor_retention_days,
        window_minutes=settings.drift_window_minutes,
        min_rows=settings.drift_min_rows,
        psi_threshold=settings.drift_psi_threshold,
        p_value=settings.drift_p_value,
    )
    inference = InferenceService(
        registry,
        max_rows=settings.max_rows,
        strict_versions=settings.strict_versions,
        refresh_seconds=settings.refresh_seconds,
        models=settings.models,
        options=settings.options_for,
        queue_timeout=settings.queue_timeout_seconds,
        telemetry=telemetry,
        monitor=monitor,
    )
    converter = Converter(registry, max_rows=settings.max_rows)
    datasets = Datasets(metadata, artifacts, max_bytes=settings.max_dataset_bytes, scratch=settings.home)
    jobs = Jobs(metadata.jobs, settings, validate={"train": train_validator(datasets)})
    keys = Keys(metadata.keys, cache_seconds=settings.key_cache_seconds)
    if settings.admin_key is not None:
        keys.from_secret(settings.admin_key.get_secret_value(), name="WHARF_ADMIN_KEY")
    return Services(
        settings=settings,
        registry=registry,
        inference=inference,
        converter=converter,
        datasets=datasets,
        jobs=jobs,
        keys=keys,
        audit=Audit(metadata.audit),
        limiter=RateLimiter(settings.rate_limits, settings.resolved_rate_limit_storage),
        telemetry=telemetry,
        access_log=LineWriter(on_drop=telemetry.log_lines_dropped),
        monitor=monitor,
        predictions=PredictionLog(
            metadata.predictions,
            sample=settings.prediction_log_sample,
            retention_days=settings.prediction_log_retention_days,
        ),
    )
