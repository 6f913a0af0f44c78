"""ONNX conversion through the Converter: real models of every kind, converted, checked for parity,
registered as the next version, and served by the converted file exactly as the source answers."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pytest
from sklearn import datasets
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.ensemble import GradientBoostingClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer, StandardScaler

from models import Case, CaseBook, column, records, spread
from wharf import Settings
from wharf.errors import Conflict, InvalidInput, ModelNotFound, ParityFailed, UnsupportedConversion
from wharf.services import Services, build_services
from wharf.services.conversion import ConversionRequest
from wharf.services.decoding import Decoder
from wharf.services.parity import SAMPLE_ROWS, Tolerance
from wharf.services.registry import Registration, parse_signature
from wharf.storage import VersionRecord

RTOL = 1e-4
"""The default tolerance: what a passed report and the converted answers must keep within."""
CONVERTED = [
    "joblib-iris",
    "pickle-ridge",
    "mixed-columns",
    "text-tfidf",
    "gradient-boosting",
    "xgboost-binary",
    "xgboost-multiclass",
    "xgboost-regressor",
    "lightgbm-binary",
    "lightgbm-regressor",
]


def gradient_boosting(folder: Path) -> Case:
    """A GradientBoostingClassifier (scikit-learn's own trees, one per class and stage) on wine."""
    X, y = datasets.load_wine(return_X_y=True, as_frame=True)
    model = GradientBoostingClassifier(n_estimators=10, max_depth=2, random_state=0).fit(X, y)
    path = folder / "boosting.joblib"
    joblib.dump(model, path)
    sample = X.iloc[spread(8, len(X))]
    return Case(
        name="gradient-boosting",
        path=path,
        fmt="joblib",
        rows=records(sample),
        expected=model.predict(sample),
        expected_proba=model.predict_proba(sample),
        classes=model.classes_.tolist(),
        columns=[column(str(name)) for name in X.columns],
        kind="classification",
        model=model,
    )


class Doubler(TransformerMixin, BaseEstimator):
    """A custom transformer no converter knows: doubles every value."""

    def fit(self, X: Any, y: Any = None) -> Doubler:
        self.n_features_in_ = np.asarray(X).shape[1]
        return self

    def transform(self, X: Any) -> np.ndarray:
        return np.asarray(X, dtype=np.float64) * 2


@pytest.fixture(scope="module")
def cases(tmp_path_factory: pytest.TempPathFactory) -> CaseBook:
    return CaseBook(tmp_path_factory.mktemp("models"))


@pytest.fixture(scope="module")
def boosting(tmp_path_factory: pytest.TempPathFactory) -> Case:
    return gradient_boosting(tmp_path_factory.mktemp("boosting"))


@pytest.fixture
def svc(tmp_path: Path) -> Iterator[Services]:
    services = build_services(Settings(home=tmp_path / "home", refresh_seconds=0))
    yield services
    services.close()


def register(svc: Services, case: Case, name: str | None = None) -> VersionRecord:
    signature = parse_signature(case.signature) if case.signature else None
    return svc.registry.register(
        name or case.name, case.path, case.path.name, Registration(signature=signature)
    )


def converted_runtime(svc: Services, record: VersionRecord) -> Any:
    path = svc.registry.artifacts.local_path(record.artifact)
    return svc.registry.load("onnx", path, parse_signature(record.signature))


def batch_of(runtime: Any, rows: list[dict[str, Any]]) -> Any:
    return Decoder(runtime.signature, 1000).decode({"instances": rows})


def versions(svc: Services, name: str) -> list[int]:
    return [r.version for r in svc.registry.versions(name)]


def artifact_files(svc: Services) -> list[Path]:
    return sorted(p for p in Path(svc.settings.resolved_artifacts).rglob("*") if p.is_file())


# -- conversions that pass -------------------------------------------------------------------


@pytest.mark.parametrize("name", CONVERTED)
def test_conversion_answers_as_its_source(
    svc: Services, cases: CaseBook, request: pytest.FixtureRequest, name: str
) -> None:
    case = request.getfixturevalue("boosting") if name == "gradient-boosting" else cases[name]
    source = register(svc, case)

    record = svc.converter.convert(name, 1, ConversionRequest("onnx"))

    assert (record.name, record.version, record.format) == (name, 2, "onnx")
    assert versions(svc, name) == [1, 2]
    assert record.filename == f"{name}-v1.onnx"
    assert record.description.startswith("ONNX conversion of version 1")
    assert record.signature == source.signature
    assert record.extra["lineage"] == {
        "source_version": 1,
        "source_sha256": source.sha256,
        "conversion": "onnx",
    }
    assert "answered_by" not in record.extra
    report = record.extra["parity"]
    assert report["passed"] is True
    assert report["forced"] is False
    assert report["rows"] == SAMPLE_ROWS == 500
    assert (report["sample"], report["seed"]) == ("generated", 0)
    assert report["tolerance"] == {"labels": 1.0, "rtol": RTOL}
    if case.classes is not None:
        assert report["labels_equal"] == 1.0
        assert report["rows_differing"] == 0
    else:
        assert "labels_equal" not in report
    assert 0 <= report["max_rel_diff"] <= RTOL
    assert 0 <= report["mean_abs_diff"] <= report["max_abs_diff"]
    for side, fmt in (("source", case.fmt), ("converted", "onnx")):
        timing = report["latency"][side]
        assert timing["format"] == fmt
        assert timing["batch_rows"] == 500
        assert timing["one_row_ms"] > 0 and timing["batch_ms"] > 0

    # The stored file is a graph ONNX Runtime loads, and it answers the case's rows as the model does.
    runtime = converted_runtime(svc, record)
    assert runtime.format == "onnx"
    batch = batch_of(runtime, case.rows)
    got = runtime.predict(batch)
    if case.classes is None:
        np.testing.assert_allclose(np.asarray(got, dtype=np.float64), case.expected, rtol=RTOL)
    else:
        assert np.asarray(got).tolist() == case.expected.tolist()
        assert runtime.signature.output.classes == case.classes
        proba = runtime.predict_proba(batch)
        assert proba is not None and proba.shape == case.expected_proba.shape
        np.testing.assert_allclose(proba, case.expected_proba, rtol=0, atol=RTOL)


def test_lineage_and_report_survive_a_fresh_registry(svc: Services, cases: CaseBook) -> None:
    """What a conversion records is stored, not held in memory: another process reads it."""
    register(svc, cases["joblib-iris"], "iris")
    made = svc.converter.convert("iris", 1, ConversionRequest("onnx", seed=7, sample_size=40))
    other = build_services(svc.settings)
    try:
        stored = other.registry.get("iris", 2)
    finally:
        other.close()
    assert stored.extra == made.extra
    assert (stored.extra["parity"]["rows"], stored.extra["parity"]["seed"]) == (40, 7)


# -- parity refused, forced, and passed with real rows ---------------------------------------


def test_missing_values_routed_differently_are_refused(svc: Services, cases: CaseBook) -> None:
    """skl2onnx routes a forest's missing values another way than scikit-learn: refused, nothing kept."""
    register(svc, cases["skops-forest"], "forest")
    files = artifact_files(svc)

    with pytest.raises(ParityFailed) as info:
        svc.converter.convert("forest", 1, ConversionRequest("onnx"))

    report = info.value.extra["parity"]
    assert report["passed"] is False
    assert report["forced"] is False
    assert report["labels_equal"] < 1.0
    assert report["rows_differing"] > 0
    assert report["rows_differing"] == report["rows_differing_with_missing"]
    assert report["latency"]["source"]["format"] == "skops"
    assert info.value.field == "tolerance"
    assert "forest:1" in info.value.detail
    assert "missing value" in info.value.detail
    assert "Nothing was registered" in info.value.detail
    assert versions(svc, "forest") == [1]
    assert artifact_files(svc) == files


def test_forced_conversion_is_marked_and_never_answers(svc: Services, cases: CaseBook) -> None:
    register(svc, cases["skops-forest"], "forest")

    record = svc.converter.convert("forest", 1, ConversionRequest("onnx", force=True))

    assert (record.version, record.format) == (2, "onnx")
    assert versions(svc, "forest") == [1, 2]
    assert record.extra["parity"]["passed"] is False
    assert record.extra["parity"]["forced"] is True
    with pytest.raises(Conflict) as info:
        svc.converter.set_fast("forest", 1)
    assert "v2 (onnx, forced past its parity check)" in info.value.detail
    assert "wharf convert forest:1 --to onnx" in info.value.detail
    assert "answered_by" not in svc.registry.get("forest", 1).extra


def test_a_sample_without_missing_values_passes(svc: Services, cases: CaseBook) -> None:
    case = cases["skops-forest"]
    register(svc, case, "forest")
    X, _ = datasets.load_wine(return_X_y=True, as_frame=True)

    record = svc.converter.convert("forest", 1, ConversionRequest("onnx", sample=records(X)))

    report = record.extra["parity"]
    assert report["passed"] is True
    assert (report["sample"], report["seed"], report["rows"]) == ("given", None, len(X))
    assert report["labels_equal"] == 1.0
    assert report["rows_with_missing"] == 0
    assert report["latency"]["source"]["batch_rows"] == len(X)
    runtime = converted_runtime(svc, record)
    assert np.asarray(runtime.predict(batch_of(runtime, case.rows))).tolist() == case.expected.tolist()


def test_a_sample_as_csv_bytes(svc: Services, cases: CaseBook) -> None:
    register(svc, cases["joblib-iris"], "iris")
    X, _ = datasets.load_iris(return_X_y=True, as_frame=True)
    csv = X.iloc[::5].to_csv(index=False).encode()

    record = svc.converter.convert("iris", 1, ConversionRequest("onnx", sample=csv))

    assert (record.extra["parity"]["sample"], record.extra["parity"]["rows"]) == ("given", 30)


def test_sample_rows_that_do_not_fit_are_refused(svc: Services, cases: CaseBook) -> None:
    register(svc, cases["joblib-iris"], "iris")
    rows = records(datasets.load_iris(as_frame=True).data.head(3))
    rows[2]["petal width (cm)"] = "wide"
    with pytest.raises(InvalidInput) as info:
        svc.converter.convert("iris", 1, ConversionRequest("onnx", sample=rows))
    assert info.value.row == 2
    assert info.value.column == "petal width (cm)"
    assert "'wide'" in info.value.detail
    assert versions(svc, "iris") == [1]


def test_a_tolerance_widened_lets_a_conversion_through(svc: Services, cases: CaseBook) -> None:
    register(svc, cases["skops-forest"], "forest")
    record = svc.converter.convert("forest", 1, ConversionRequest("onnx", tolerance=Tolerance(0.5, 1.0)))
    report = record.extra["parity"]
    assert report["passed"] is True and report["forced"] is False
    assert report["labels_equal"] < 1.0
    assert report["tolerance"] == {"labels": 0.5, "rtol": 1.0}


def test_a_tolerance_of_zero_refuses_float32_rounding(svc: Services, cases: CaseBook) -> None:
    register(svc, cases["pickle-ridge"], "ridge")
    with pytest.raises(ParityFailed) as info:
        svc.converter.convert("ridge", 1, ConversionRequest("onnx", tolerance=Tolerance(rtol=0.0)))
    report = info.value.extra["parity"]
    assert report["passed"] is False
    assert report["max_rel_diff"] > 0
    assert "largest relative difference" in info.value.detail
    assert versions(svc, "ridge") == [1]


# -- what cannot be converted ----------------------------------------------------------------


def _fitted(steps: list[tuple[str, Any]]) -> Pipeline:
    X, y = datasets.load_iris(return_X_y=True, as_frame=True)
    return Pipeline(steps).fit(X, y)


@pytest.mark.parametrize(
    ("steps", "named"),
    [
        pytest.param(
            [("log", FunctionTransformer(np.log1p)), ("clf", LogisticRegression(max_iter=500))],
            ["FunctionTransformer"],
            id="function-transformer",
        ),
        pytest.param(
            [("scale", StandardScaler()), ("double", Doubler()), ("clf", LogisticRegression(max_iter=500))],
            ["the step 'double' (", ".Doubler)"],
            id="custom-class",
        ),
    ],
)
def test_an_unsupported_step_is_named(
    svc: Services, tmp_path: Path, steps: list[tuple[str, Any]], named: list[str]
) -> None:
    path = tmp_path / "model.joblib"
    joblib.dump(_fitted(steps), path)
    svc.registry.register("custom", path, path.name, Registration())
    files = artifact_files(svc)

    with pytest.raises(UnsupportedConversion) as info:
        svc.converter.convert("custom", 1, ConversionRequest("onnx"))

    for fragment in named:
        assert fragment in info.value.detail
    assert "ONNX" in info.value.detail
    assert info.value.field == "to"
    assert versions(svc, "custom") == [1]
    assert artifact_files(svc) == files


def test_an_onnx_version_is_not_converted_again(svc: Services, cases: CaseBook) -> None:
    register(svc, cases["onnx-mlp"], "mlp")
    with pytest.raises(UnsupportedConversion) as info:
        svc.converter.convert("mlp", 1, ConversionRequest("onnx"))
    assert info.value.detail == "This version is already in the 'onnx' format."
    assert versions(svc, "mlp") == [1]


def test_an_unknown_target(svc: Services, cases: CaseBook) -> None:
    register(svc, cases["joblib-iris"], "iris")
    with pytest.raises(UnsupportedConversion) as info:
        svc.converter.convert("iris", 1, ConversionRequest("nope"))
    assert info.value.detail == "Cannot convert to 'nope'; wharf converts to onnx, pmml."
    assert info.value.field == "to"
    assert versions(svc, "iris") == [1]


@pytest.mark.parametrize("key", ["parity", "lineage", "answered_by"])
def test_reserved_metadata_cannot_be_registered(svc: Services, cases: CaseBook, key: str) -> None:
    """An upload claiming a parity report (or a lineage, or a twin) could pass for a verified twin."""
    case = cases["joblib-iris"]
    claim = {"parity": {"passed": True, "forced": False}, "lineage": {"source_version": 1}, "answered_by": 1}
    with pytest.raises(InvalidInput) as info:
        svc.registry.register("iris", case.path, case.path.name, Registration(extra={key: claim[key]}))
    assert info.value.field == f"metadata.{key}"
    assert f"{key!r} is written by wharf itself" in info.value.detail
    with pytest.raises(ModelNotFound):
        svc.registry.versions("iris")


# -- the answering version -------------------------------------------------------------------


def test_set_fast_picks_the_newest_verified_twin(svc: Services, cases: CaseBook) -> None:
    case = cases["skops-forest"]
    register(svc, case, "forest")
    X, _ = datasets.load_wine(return_X_y=True, as_frame=True)
    real = records(X)
    svc.converter.convert("forest", 1, ConversionRequest("onnx", sample=real))  # v2, verified
    svc.converter.convert("forest", 1, ConversionRequest("onnx", force=True))  # v3, forced
    svc.converter.convert("forest", 1, ConversionRequest("onnx", sample=real[::2]))  # v4, verified

    assert svc.converter.set_fast("forest", 1).extra["answered_by"] == 4
    assert svc.converter.set_fast("forest", 1, twin=2).extra["answered_by"] == 2
    with pytest.raises(Conflict):
        svc.converter.set_fast("forest", 1, twin=3)
    with pytest.raises(Conflict):
        svc.converter.set_fast("forest", 2)  # a twin has no twin of its own
    assert svc.registry.get("forest", 1).extra["answered_by"] == 2  # the refusals changed nothing

    assert "answered_by" not in svc.converter.unset_fast("forest", 1).extra
    assert "answered_by" not in svc.registry.get("forest", 1).extra


def test_inference_follows_the_answering_version(svc: Services, cases: CaseBook) -> None:
    """With refresh_seconds=0 the inference service checks the registry's generation on every call,
    so a twin set (or unset) elsewhere, without telling this service, is seen at once."""
    case = cases["joblib-iris"]
    register(svc, case, "iris")
    svc.converter.convert("iris", 1, ConversionRequest("onnx"))
    body = json.dumps({"instances": case.rows}).encode()

    itself = svc.inference.predict("iris", 1, body, probabilities=True)
    assert "answered_by" not in itself
    svc.converter.set_fast("iris", 1)
    fast = svc.inference.predict("iris", 1, body, probabilities=True)
    assert (fast["version"], fast["answered_by"]) == (1, 2)
    assert fast["predictions"] == case.expected.tolist()
    np.testing.assert_allclose(fast["probabilities"], case.expected_proba, rtol=0, atol=RTOL)
    # Not the same arrays: the ONNX graph computes in float32.
    assert not np.array_equal(fast["probabilities"], itself["probabilities"])
    svc.converter.unset_fast("iris", 1)
    assert "answered_by" not in svc.inference.predict("iris", 1, body)


def test_a_deleted_twin_stops_answering(svc: Services, cases: CaseBook) -> None:
    case = cases["joblib-iris"]
    register(svc, case, "iris")
    svc.converter.convert("iris", 1, ConversionRequest("onnx"))
    svc.converter.set_fast("iris", 1)
    body = json.dumps({"instances": case.rows}).encode()
    assert svc.inference.predict("iris", 1, body)["answered_by"] == 2

    svc.registry.delete("iris", 2)  # seen at the next call: refresh_seconds is 0

    fresh = build_services(svc.settings)  # another worker, or this one restarted
    try:
        assert "answered_by" not in fresh.inference.predict("iris", 1, body)
    finally:
        fresh.close()
    assert "answered_by" not in svc.inference.predict("iris", 1, body)
