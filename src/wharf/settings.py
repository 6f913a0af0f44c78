"""The one place wharf reads its configuration.

Values come, highest priority first, from keyword arguments (CLI flags), ``WHARF_*`` environment
variables, a TOML config file (``WHARF_CONFIG``, else ``wharf.toml`` in the working directory when it
exists), and the defaults below. Nothing else in wharf reads ``os.environ``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from pydantic import Field, field_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

CONFIG_ENV = "WHARF_CONFIG"
DEFAULT_CONFIG_FILE = "wharf.toml"


def _config_file() -> Path | None:
    explicit = os.environ.get(CONFIG_ENV)
    if explicit:
        return Path(explicit)
    default = Path(DEFAULT_CONFIG_FILE)
    return default if default.is_file() else None


class Settings(BaseSettings):
    """Typed settings of a wharf server or CLI invocation."""

    model_config = SettingsConfigDict(env_prefix="WHARF_", extra="forbid", frozen=True)

    home: Path = Path(".wharf")
    """Folder for the embedded defaults: the SQLite registry and the artifact folder."""

    database_url: str | None = None
    """SQLAlchemy URL of the metadata store; default ``sqlite:///<home>/wharf.db``."""

    artifacts: str | None = None
    """Where artifacts live, as a folder path or ``file://`` URL; default ``<home>/artifacts``."""

    host: str = "127.0.0.1"
    """Address ``wharf serve`` binds to."""

    port: int = Field(8000, ge=0, le=65535)
    """Port ``wharf serve`` binds to (0 picks a free one)."""

    workers: int = Field(1, ge=1, le=64)
    """Worker processes of the WSGI server."""

    threads: int = Field(8, ge=1, le=256)
    """Threads per worker process."""

    timeout: int = Field(60, ge=1)
    """Seconds a worker may spend on one request before it is restarted."""

    models: tuple[str, ...] = ()
    """Names of the models this server serves; empty serves every registered model."""

    max_body_bytes: int = Field(16 * 1024 * 1024, ge=1024)
    """Largest request body accepted on prediction routes, in bytes (413 above)."""

    max_upload_bytes: int = Field(1024 * 1024 * 1024, ge=1024)
    """Largest model file accepted by an upload, in bytes (413 above)."""

    max_rows: int = Field(10_000, ge=1)
    """Most rows one prediction request may carry (413 above)."""

    strict_versions: bool = False
    """Refuse to load a version made with another major.minor of its framework (else warn)."""

    refresh_seconds: float = Field(2.0, ge=0)
    """How long the server trusts its view of which version is latest before asking the registry."""

    skops_trusted_types: tuple[str, ...] = ()
    """Extra type names trusted when loading skops files, beyond scikit-learn's own."""

    log_level: str = "INFO"
    """Level of wharf's log (DEBUG, INFO, WARNING, ERROR)."""

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
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=config_file))
        return tuple(sources)

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.home / 'wharf.db').resolve()}"

    @property
    def resolved_artifacts(self) -> str:
        return self.artifacts or str((self.home / "artifacts").resolve())

    def replace(self, **changes: Any) -> Settings:
        """A copy with ``changes`` applied and validated (settings are frozen)."""
        data = self.model_dump()
        data.update({key: value for key, value in changes.items() if value is not None})
        return type(self).model_validate(data)
