"""``wharf models alias`` and ``wharf models archive``: a version's life from the command line, against
a real registry in tmp_path, and what a server on that registry answers afterwards."""

from __future__ import annotations

import json
from pathlib import Path

import joblib
import pandas as pd
import pytest
from click.testing import CliRunner, Result
from sklearn.dummy import DummyClassifier
from sklearn.pipeline import Pipeline

from wharf import Settings
from wharf.cli import cli
from wharf.services import build_services
from wharf.services.jobs import worker_settings


@pytest.fixture
def home(tmp_path: Path, iris: tuple[Pipeline, pd.DataFrame], runner: CliRunner) -> Path:
    """A registry with iris v1 (the logistic pipeline) and v2 (always the third class)."""
    model, X = iris
    home = tmp_path / "home"
    constant = DummyClassifier(strategy="constant", constant=model.classes_[2]).fit(X, model.predict(X))
    for number, estimator in enumerate((model, constant), start=1):
        path = tmp_path / f"v{number}.joblib"
        joblib.dump(estimator, path)
        ok(runner.invoke(cli, ["--home", str(home), "models", "register", "iris", str(path)]))
    return home


def ok(result: Result) -> Result:
    assert result.exit_code == 0, (result.output, result.exception)
    return result


def wharf(runner: CliRunner, home: Path, *args: str) -> Result:
    return runner.invoke(cli, ["--home", str(home), *args])


def test_an_alias_set_from_the_command_line_decides_what_the_server_answers(
    runner: CliRunner, home: Path, iris: tuple[Pipeline, pd.DataFrame]
) -> None:
    model, X = iris
    assert ok(wharf(runner, home, "models", "alias", "iris", "production", "1")).output.strip() == (
        "iris@production -> v1 (created)"
    )
    assert ok(wharf(runner, home, "models", "alias", "iris", "production")).output.strip() == "1"
    services = build_services(Settings(home=home, auth=False, refresh_seconds=0))
    try:
        body = json.dumps({"instances": X.iloc[:5].to_dict(orient="records")}).encode()
        answer = services.inference.predict("iris", None, body, alias="production")
        assert (answer["version"], answer["predictions"]) == (1, model.predict(X.iloc[:5]).tolist())

        moved = ok(wharf(runner, home, "models", "alias", "iris", "production", "2")).output.strip()
        assert moved == "iris@production -> v2 (moved from v1)"
        answer = services.inference.predict("iris", None, body, alias="production")
        assert (answer["version"], answer["predictions"]) == (2, [model.classes_[2]] * 5)
    finally:
        services.close()

    listed = json.loads(ok(wharf(runner, home, "models", "list", "--json")).output)
    assert listed[0]["aliases"] == {"production": 2}
    removed = ok(wharf(runner, home, "models", "alias", "iris", "production", "--delete")).output.strip()
    assert removed == "iris@production removed (it pointed at v2)"
    missing = wharf(runner, home, "models", "alias", "iris", "production")
    assert missing.exit_code != 0
    assert "has no alias 'production'" in missing.output


def test_archive_refused_while_aliased_then_archived_and_restored(runner: CliRunner, home: Path) -> None:
    ok(wharf(runner, home, "models", "alias", "iris", "staging", "2"))
    refused = wharf(runner, home, "models", "archive", "iris:2")
    assert refused.exit_code != 0
    assert "alias 'staging'" in refused.output

    ok(wharf(runner, home, "models", "alias", "iris", "staging", "--delete"))
    assert ok(wharf(runner, home, "models", "archive", "iris:2")).output.strip() == "iris:2 is archived"
    listed = json.loads(ok(wharf(runner, home, "models", "list", "--json")).output)
    assert (listed[0]["latest"], listed[0]["versions"]) == (1, 2)  # kept, but no longer the latest
    restored = ok(wharf(runner, home, "models", "archive", "iris:2", "--restore")).output.strip()
    assert restored == "iris:2 is active"
    assert json.loads(ok(wharf(runner, home, "models", "list", "--json")).output)[0]["latest"] == 2


def test_a_job_worker_gets_the_object_stores_secret_but_not_the_admin_key(tmp_path: Path) -> None:
    settings = Settings(
        home=tmp_path,
        admin_key="wharf_abcdefgh_" + "s" * 43,
        artifacts="s3://bucket/prefix",
        s3_access_key_id="id",
        s3_secret_access_key="the-store-secret",
    )
    sent = json.loads(worker_settings(settings))
    assert sent["s3_secret_access_key"] == "the-store-secret"  # the worker reads and writes the store
    assert "admin_key" not in sent
    assert Settings(**sent).s3_secret_access_key.get_secret_value() == "the-store-secret"  # type: ignore[union-attr]
