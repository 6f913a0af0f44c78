"""Hostile input: schemathesis generates requests from wharf's own ``/openapi.json`` for every
operation and checks every answer: never a 5xx, and status, content type, headers and body as
the document says. Invalid requests must be refused with a 4xx.

The app runs as in production (auth on, every request with the admin key) with a model, a dataset
and a queued job, so ids and names in generated paths can hit real things. Rate limits are off (a
burst of generated requests is not what they guard against), and no job worker runs: a generated
training job is queued, never fitted.

``WHARF_FUZZ_EXAMPLES`` sets how many cases the fuzzing phase draws per operation (on top of the
examples and coverage phases); ``make test`` runs few, the same ones every time, and ``make fuzz``
many, new ones each time (``WHARF_FUZZ_RANDOM=1``). The summary at the end of the run counts the
cases sent and those that failed (see conftest.py).
"""

from __future__ import annotations

import os
import tempfile
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import joblib
import pytest
import schemathesis
from flask import Flask
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from schemathesis.checks import positive_data_acceptance
from schemathesis.config import SchemathesisConfig
from sklearn import datasets
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from auth import ADMIN_KEY
from wharf import Settings, create_app
from wharf.services.registry import Registration

EXAMPLES = int(os.environ.get("WHARF_FUZZ_EXAMPLES", "10"))
"""Read at import: the suite's autouse fixture clears WHARF_* variables before each test."""
MIN_CASES = int(os.environ.get("WHARF_FUZZ_MIN_CASES", "0"))
"""The session fails when fewer cases ran (see conftest.py)."""
RANDOM = os.environ.get("WHARF_FUZZ_RANDOM", "") not in ("", "0")
"""Draw new cases each run (make fuzz); by default the same ones every run, as CI needs."""
MODEL_NAME = "iris"
CASES: Counter[str] = Counter()
"""Cases sent, by operation (schemathesis's probes of the auth check come on top)."""
FAILED: Counter[str] = Counter()
"""Cases whose answer failed a check, by operation (hypothesis replays a failing case)."""
# Accepted answers to a request the schema finds valid: those of schemathesis's own default, and
# 422, wharf's answer to a well-formed body that does not hold up against what the server has (a
# file in no model format, a target column the dataset lacks, an expiry that is no date): a JSON
# Schema cannot say those. 400 (a malformed request) stays a failure: the schema must say it.
POSITIVE_STATUSES = ["2xx", "3xx", "401", "403", "404", "409", "422", "429", "5xx"]

pytestmark = pytest.mark.fuzz

# The schema is loaded at import, as schemathesis's pytest integration needs to parametrize, from an
# app like those the tests run against; each test gets a fresh one (see fuzz_app). (Its lazy loader,
# schemathesis.pytest.from_fixture, fails on pytest 9.2, which has no Function._nodeid.)
_FILES = tempfile.TemporaryDirectory(prefix="wharf-fuzz-")


def _files(folder: Path) -> tuple[Path, Path]:
    """A fitted iris pipeline (joblib) and the iris table (CSV) it was fitted on."""
    frame = datasets.load_iris(as_frame=True).frame
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))
    model.fit(frame.drop(columns="target"), frame["target"])
    joblib.dump(model, folder / "iris.joblib")
    frame.to_csv(folder / "iris.csv", index=False)
    return folder / "iris.joblib", folder / "iris.csv"


MODEL, TABLE = _files(Path(_FILES.name))


def build_app(home: Path) -> Flask:
    """An app serving model 'iris' v1, with dataset 1 and job 1 (queued), in ``home``."""
    settings = Settings(
        home=home,
        refresh_seconds=0,
        admin_key=ADMIN_KEY,
        key_cache_seconds=0,
        rate_limits={},
        job_workers=0,
    )
    app = create_app(settings)
    services = app.extensions["wharf"]
    services.registry.register(MODEL_NAME, MODEL, MODEL.name, Registration())
    dataset = services.datasets.add(TABLE, TABLE.name)
    services.jobs.submit({"kind": "train", "dataset": dataset.id, "target": "target"})
    return app


CONFIG = SchemathesisConfig.from_dict(
    {
        # Both ways of sending a key, so that schemathesis also checks that a request without one,
        # or with a wrong one, is refused.
        "auth": {"openapi": {"bearer": {"bearer": ADMIN_KEY}, "apiKey": {"api_key": ADMIN_KEY}}},
        "generation": {"max-examples": EXAMPLES, "database": "none", "deterministic": not RANDOM},
        **({} if RANDOM else {"seed": 0}),
        "checks": {"positive_data_acceptance": {"expected-statuses": POSITIVE_STATUSES}},
    }
)
_SPEC_APP = build_app(Path(_FILES.name) / "spec-home")
schema = schemathesis.openapi.from_wsgi("/openapi.json", _SPEC_APP, config=CONFIG)


@schema.hook
def flatmap_path_parameters(context: Any, path_parameters: dict[str, Any] | None) -> st.SearchStrategy[Any]:
    """Half the generated model names are the served model's, so its routes get past the 404."""
    if not path_parameters or not isinstance(path_parameters.get("name"), str):
        return st.just(path_parameters)
    return st.sampled_from([path_parameters, {**path_parameters, "name": MODEL_NAME}])


@pytest.fixture(scope="module", autouse=True)
def _spec_app_closed() -> Iterator[None]:
    yield
    _SPEC_APP.extensions["wharf"].close()
    _FILES.cleanup()


@pytest.fixture
def fuzz_app(tmp_path: Path) -> Iterator[Flask]:
    """A fresh app per operation: one operation's deletions leave the next one's data alone."""
    app = build_app(tmp_path / "home")
    yield app
    app.extensions["wharf"].close()


@schema.parametrize()
# The app is shared by one operation's cases on purpose: they run against the state earlier cases
# left (a model deleted, a key created), as a server's clients would.
@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_operation(case: schemathesis.Case, fuzz_app: Flask) -> None:
    label = case.operation.label
    CASES[label] += 1
    # CSV has a grammar that JSON Schema cannot state: a CSV body that does not parse is refused
    # as malformed (400) however schema-valid the string is. JSON bodies are held to the check.
    excluded = [positive_data_acceptance] if case.media_type == "text/csv" else None
    try:
        case.call_and_validate(app=fuzz_app, excluded_checks=excluded)
    except BaseException:
        FAILED[label] += 1
        raise
