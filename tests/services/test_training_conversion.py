"""Versions trained by jobs, converted to ONNX: parity is checked on the rows the job held out of
the fit, and on generated rows where a version has none (cross-validated, or uploaded)."""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import joblib
import pandas as pd
import pytest
from sklearn.datasets import load_breast_cancer, load_iris
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from wharf import Settings
from wharf.services import Services, build_services
from wharf.services.conversion import ConversionRequest
from wharf.services.parity import SAMPLE_ROWS
from wharf.services.registry import LINEAGE, PARITY, Registration, parse_signature
from wharf.storage import VersionRecord

WAIT_SECONDS = 90.0


@dataclass(frozen=True)
class Trained:
    """A version a job registered, and the rows its dataset has."""

    record: VersionRecord
    rows: int


def write_csv(folder: Path, name: str, frame: pd.DataFrame) -> Path:
    path = folder / f"{name}.csv"
    frame.to_csv(path, index=False)
    return path


@pytest.fixture(scope="module")
def services(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Services]:
    """Services of this module (shadowing the app's): three job workers, so the jobs run at once."""
    folder = tmp_path_factory.mktemp("training-conversion")
    services = build_services(Settings(home=folder / "home", refresh_seconds=0, job_workers=3))
    yield services
    services.close()


@pytest.fixture(scope="module")
def trained(services: Services, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Trained]:
    """iris (logistic regression, string classes), cancer (a random forest, two integer classes),
    both with a holdout of a quarter of the rows; iris-cv (cross-validated: no holdout)."""
    folder = tmp_path_factory.mktemp("tables")
    iris = load_iris(as_frame=True)
    iris_frame = iris.data.set_axis(["sepal_length", "sepal_width", "petal_length", "petal_width"], axis=1)
    iris_frame = iris_frame.assign(species=iris.target_names[iris.target])
    cancer = load_breast_cancer(as_frame=True).frame
    tables = {
        "iris": (iris_frame, "species", {"algorithm": "logistic_regression"}),
        "cancer": (cancer, "target", {"algorithm": "random_forest", "params": {"n_estimators": 8}}),
    }
    specs = {}
    for name, (frame, target, spec) in tables.items():
        dataset = services.datasets.add(write_csv(folder, name, frame), f"{name}.csv")
        base = {"kind": "train", "dataset": dataset.id, "target": target, **spec}
        specs[name] = ({**base, "validation": {"test_size": 0.25}}, len(frame))
    specs["iris-cv"] = ({**specs["iris"][0], "validation": {"cv": 3}, "register_as": "iris-cv"}, 150)
    jobs = {name: (services.jobs.submit(spec), rows) for name, (spec, rows) in specs.items()}
    out = {}
    for name, (job, rows) in jobs.items():
        done = services.jobs.wait(job.id, timeout=WAIT_SECONDS)
        assert done.state == "succeeded", (name, done.error)
        assert done.result is not None
        out[name] = Trained(services.registry.get(done.result["model"], done.result["version"]), rows)
    return out


@pytest.mark.parametrize("name", ["iris", "cancer"])
def test_a_trained_version_is_checked_on_its_holdout(
    services: Services, trained: dict[str, Trained], name: str
) -> None:
    source = trained[name]
    holdout = source.record.extra[LINEAGE]["holdout"]
    assert holdout["rows"] == math.ceil(0.25 * source.rows)

    record = services.converter.convert(name, source.record.version, ConversionRequest(target="onnx"))

    assert (record.format, record.version) == ("onnx", source.record.version + 1)
    report = record.extra[PARITY]
    assert report["sample"] == "holdout"
    assert report["seed"] is None
    assert report["rows"] == holdout["rows"] < SAMPLE_ROWS
    assert report["latency"]["source"]["batch_rows"] == holdout["rows"]
    assert report["passed"] is True and report["forced"] is False
    assert report["labels_equal"] == 1.0


def test_a_smaller_sample_takes_the_first_holdout_rows(
    services: Services, trained: dict[str, Trained]
) -> None:
    source = trained["iris"].record
    converter = services.converter
    runtime = services.registry.load(
        source.format,
        services.registry.artifacts.local_path(source.artifact),
        parse_signature(source.signature),
    )
    report = converter.report(runtime, runtime, source, ConversionRequest(target="onnx", sample_size=7))
    assert (report["sample"], report["rows"], report["passed"]) == ("holdout", 7, True)


def test_a_version_without_a_holdout_is_checked_on_generated_rows(
    services: Services, trained: dict[str, Trained]
) -> None:
    cross_validated = trained["iris-cv"].record
    assert cross_validated.extra[LINEAGE]["holdout"] is None
    record = services.converter.convert("iris-cv", cross_validated.version, ConversionRequest(target="onnx"))
    report = record.extra[PARITY]
    assert (report["sample"], report["seed"], report["rows"]) == ("generated", 0, SAMPLE_ROWS)
    assert report["passed"] is True


def test_an_uploaded_model_is_checked_on_generated_rows(services: Services, tmp_path: Path) -> None:
    """A model uploaded as a file has no lineage, hence no holdout."""
    iris = load_iris(as_frame=True)
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000)).fit(iris.data, iris.target)
    path = tmp_path / "uploaded.joblib"
    joblib.dump(model, path)
    uploaded = services.registry.register("uploaded", path, path.name, Registration())
    assert LINEAGE not in uploaded.extra

    record = services.converter.convert("uploaded", uploaded.version, ConversionRequest(target="onnx"))
    report = record.extra[PARITY]
    assert (report["sample"], report["seed"], report["rows"]) == ("generated", 0, SAMPLE_ROWS)
    assert report["passed"] is True
