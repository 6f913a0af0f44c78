"""Settings: keyword arguments over WHARF_* variables over the config file over defaults."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from wharf import Settings
from wharf.errors import InvalidSettings


def test_defaults(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # no wharf.toml here
    settings = Settings()
    assert settings.home == Path(".wharf")
    assert (settings.host, settings.port, settings.workers, settings.threads) == ("127.0.0.1", 8000, 1, 32)
    assert settings.models == ()
    assert settings.strict_versions is False
    assert settings.resolved_database_url == f"sqlite:///{(tmp_path / '.wharf' / 'wharf.db')}"
    assert settings.resolved_artifacts == str(tmp_path / ".wharf" / "artifacts")


def test_environment_variables(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WHARF_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("WHARF_PORT", "9001")
    monkeypatch.setenv("WHARF_STRICT_VERSIONS", "true")
    monkeypatch.setenv("WHARF_LOG_LEVEL", "debug")
    monkeypatch.setenv("WHARF_DATABASE_URL", "postgresql+psycopg://wharf@db/wharf")
    monkeypatch.setenv("WHARF_REFRESH_SECONDS", "0.5")
    settings = Settings()
    assert settings.home == tmp_path / "home"
    assert settings.port == 9001
    assert settings.strict_versions is True
    assert settings.log_level == "DEBUG"
    assert settings.resolved_database_url == "postgresql+psycopg://wharf@db/wharf"
    assert settings.refresh_seconds == 0.5


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("iris", ("iris",)),
        ("iris, digits", ("iris", "digits")),
        ('["iris", "digits"]', ("iris", "digits")),
        ("", ()),
    ],
)
def test_lists_from_a_variable(
    monkeypatch: pytest.MonkeyPatch, value: str, expected: tuple[str, ...]
) -> None:
    monkeypatch.setenv("WHARF_MODELS", value)
    monkeypatch.setenv("WHARF_SKOPS_TRUSTED_TYPES", value)
    settings = Settings()
    assert settings.models == expected
    assert settings.skops_trusted_types == expected


def test_config_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "conf" / "wharf.toml"
    config.parent.mkdir()
    config.write_text('port = 9100\nworkers = 3\nmodels = ["iris", "digits"]\nhome = "/srv/wharf"\n')
    monkeypatch.setenv("WHARF_CONFIG", str(config))
    settings = Settings()
    assert (settings.port, settings.workers) == (9100, 3)
    assert settings.models == ("iris", "digits")
    assert settings.home == Path("/srv/wharf")


def test_wharf_toml_in_the_working_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "wharf.toml").write_text("threads = 16\n")
    monkeypatch.chdir(tmp_path)
    assert Settings().threads == 16


def test_priority(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "wharf.toml"
    config.write_text("port = 9100\nworkers = 3\nthreads = 4\n")
    monkeypatch.setenv("WHARF_CONFIG", str(config))
    monkeypatch.setenv("WHARF_PORT", "9200")
    monkeypatch.setenv("WHARF_WORKERS", "5")
    settings = Settings(port=9300)
    assert settings.port == 9300  # keyword over variable over file
    assert settings.workers == 5  # variable over file
    assert settings.threads == 4  # file over default


def test_replace_validates(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path)
    assert settings.replace(port=1234, host=None).port == 1234
    assert settings.replace(port=1234).host == settings.host
    with pytest.raises(InvalidSettings, match=r"'port' \(WHARF_PORT\)"):
        settings.replace(port=-1)


def test_settings_are_frozen(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path)
    with pytest.raises(ValidationError):
        settings.port = 1  # type: ignore[misc]


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("WHARF_PORT", "eighty", r"'port' \(WHARF_PORT\): Input should be a valid integer.*got 'eighty'"),
        ("WHARF_PORT", "70000", r"'port' \(WHARF_PORT\): Input should be less than or equal to 65535"),
        ("WHARF_WORKERS", "0", r"'workers' \(WHARF_WORKERS\): Input should be greater than or equal to 1"),
        ("WHARF_LOG_LEVEL", "LOUD", r"'log_level' \(WHARF_LOG_LEVEL\): .*got 'LOUD'"),
        ("WHARF_STRICT_VERSIONS", "maybe", r"'strict_versions' \(WHARF_STRICT_VERSIONS\)"),
        ("WHARF_MODELS", "[not json", r"'models' \(WHARF_MODELS\)"),
    ],
)
def test_invalid_variables(monkeypatch: pytest.MonkeyPatch, variable: str, value: str, message: str) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(InvalidSettings, match=message) as caught:
        Settings()
    assert isinstance(caught.value.__cause__, ValidationError)


def test_invalid_keywords() -> None:
    with pytest.raises(InvalidSettings, match=r"'threads' \(WHARF_THREADS\).*got 0"):
        Settings(threads=0)
    with pytest.raises(InvalidSettings, match=r"unknown setting 'prot' \(did you mean 'port'\?\)"):
        Settings(prot=8000)


def test_invalid_config_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "wharf.toml"
    monkeypatch.setenv("WHARF_CONFIG", str(config))
    with pytest.raises(InvalidSettings, match=r"WHARF_CONFIG names '.*wharf\.toml', which is not a file"):
        Settings()
    config.write_text("port = \n")
    with pytest.raises(InvalidSettings, match=r"is not valid TOML"):
        Settings()
    config.write_text("worker = 2\n")
    with pytest.raises(InvalidSettings, match=r"unknown setting 'worker' \(did you mean 'workers'\?\)"):
        Settings()
    config.write_text('port = "high"\n')
    with pytest.raises(InvalidSettings, match=r"'port' \(WHARF_PORT\).*got 'high'"):
        Settings()
