"""Conversion routes: convert a version to ONNX, let its verified twin answer, and every refusal."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pandas as pd
import pytest
from flask.testing import FlaskClient
from httpcases import PROBLEM, check_problem
from sklearn.pipeline import Pipeline

from models import Case, CaseBook, records
from wharf.services import Services
from wharf.services.registry import Registration

CONVERT = "/v1/models/iris/versions/1/convert"
FAST = "/v1/models/iris/versions/1/fast"
PREDICT = "/v1/models/iris/versions/1/predict"


@pytest.fixture(scope="module")
def iris_file(tmp_path_factory: pytest.TempPathFactory, iris: tuple[Pipeline, pd.DataFrame]) -> Path:
    path = tmp_path_factory.mktemp("iris") / "iris.joblib"
    joblib.dump(iris[0], path)
    return path


@pytest.fixture(scope="module")
def forest(tmp_path_factory: pytest.TempPathFactory) -> Case:
    """A random forest whose missing values skl2onnx routes another way: its parity fails."""
    return CaseBook(tmp_path_factory.mktemp("models"))["skops-forest"]


@pytest.fixture
def registered(services: Services, iris_file: Path) -> Path:
    """iris:1 registered from the joblib file."""
    services.registry.register("iris", iris_file, iris_file.name, Registration())
    return iris_file


@pytest.fixture
def sample(iris: tuple[Pipeline, pd.DataFrame]) -> pd.DataFrame:
    """15 rows across the three species."""
    return iris[1].iloc[::10]


def versions(client: FlaskClient, name: str = "iris") -> list[int]:
    response = client.get(f"/v1/models/{name}/versions")
    assert response.status_code == 200
    return [v["version"] for v in response.get_json()["versions"]]


def predict(client: FlaskClient, rows: pd.DataFrame, url: str = PREDICT) -> dict[str, Any]:
    response = client.post(f"{url}?probabilities=true", json={"instances": records(rows)})
    assert response.status_code == 200, response.get_json()
    body: dict[str, Any] = response.get_json()
    return body


# -- convert, set fast, predict, unset -------------------------------------------------------


def test_convert_then_answer_through_the_twin(
    client: FlaskClient, registered: Path, iris: tuple[Pipeline, pd.DataFrame], sample: pd.DataFrame
) -> None:
    model = iris[0]
    itself = predict(client, sample)
    assert "answered_by" not in itself

    response = client.post(CONVERT, json={"to": "onnx"})
    assert response.status_code == 201, response.get_json()
    assert response.headers["Location"] == "/v1/models/iris/versions/2"
    made = response.get_json()
    assert (made["name"], made["version"], made["format"]) == ("iris", 2, "onnx")
    assert made["lineage"]["source_version"] == 1
    assert made["lineage"]["conversion"] == "onnx"
    parity = made["parity"]
    assert parity["passed"] is True and parity["forced"] is False
    assert (parity["rows"], parity["sample"], parity["labels_equal"]) == (500, "generated", 1.0)
    assert parity["tolerance"] == {"labels": 1.0, "rtol": 1e-4}  # the server's defaults
    assert parity["latency"]["source"]["format"] == "joblib"
    assert parity["latency"]["converted"]["format"] == "onnx"
    assert made["answered_by"] is None
    assert made["metadata"] == {}  # wharf's own keys are shown in their fields, not as metadata
    assert client.get(response.headers["Location"]).get_json() == made
    assert versions(client) == [1, 2]

    response = client.put(FAST)
    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    assert (body["version"], body["format"], body["answered_by"]) == (1, "joblib", 2)
    assert client.get("/v1/models/iris/versions/1").get_json()["answered_by"] == 2

    fast = predict(client, sample)
    assert (fast["model"], fast["version"], fast["answered_by"]) == ("iris", 1, 2)
    assert fast["predictions"] == model.predict(sample).tolist()
    assert fast["classes"] == model.classes_.tolist()
    np.testing.assert_allclose(fast["probabilities"], model.predict_proba(sample), rtol=0, atol=1e-4)
    assert not np.array_equal(fast["probabilities"], itself["probabilities"])  # float32: the twin answered

    # The twin itself is the latest version, and answers for itself.
    latest = predict(client, sample, "/v1/models/iris/predict")
    assert latest["version"] == 2 and "answered_by" not in latest
    assert latest["predictions"] == fast["predictions"]

    response = client.delete(FAST)
    assert response.status_code == 200, response.get_json()
    assert response.get_json()["answered_by"] is None
    again = predict(client, sample)
    assert "answered_by" not in again
    assert again["predictions"] == model.predict(sample).tolist()
    np.testing.assert_allclose(again["probabilities"], model.predict_proba(sample), rtol=1e-12)


def test_set_fast_names_its_twin(client: FlaskClient, registered: Path) -> None:
    for _ in range(2):
        assert client.post(CONVERT, json={"to": "onnx"}).status_code == 201
    assert client.put(FAST).get_json()["answered_by"] == 3  # the newest verified one
    assert client.put(FAST, json={"twin": 2}).get_json()["answered_by"] == 2
    check_problem(client.put(FAST, json={"twin": 1}), 409, field="version", detail="no ONNX conversion")
    assert client.get("/v1/models/iris/versions/1").get_json()["answered_by"] == 2


def test_a_given_sample_and_tolerance(client: FlaskClient, registered: Path, sample: pd.DataFrame) -> None:
    body = {"to": "onnx", "sample": records(sample), "tolerance": {"labels": 0.9, "rtol": 0.01}}
    response = client.post(CONVERT, json=body)
    assert response.status_code == 201, response.get_json()
    parity = response.get_json()["parity"]
    assert (parity["sample"], parity["rows"], parity["seed"]) == ("given", len(sample), None)
    assert parity["tolerance"] == {"labels": 0.9, "rtol": 0.01}

    lists = sample.to_numpy().tolist()
    response = client.post(CONVERT, json={"to": "onnx", "sample": lists})
    assert response.status_code == 201, response.get_json()
    assert response.get_json()["parity"]["rows"] == len(sample)


# -- refusals --------------------------------------------------------------------------------


def test_parity_failure_is_a_problem_with_the_report(
    client: FlaskClient, services: Services, forest: Case
) -> None:
    services.registry.register("forest", forest.path, forest.path.name, Registration())

    response = client.post("/v1/models/forest/versions/1/convert", json={"to": "onnx"})

    problem = check_problem(response, 422, field="tolerance", detail="Nothing was registered")
    assert problem["type"] == "urn:wharf:problem:parity-failed"
    assert problem["title"] == "Parity Failed"
    assert problem["instance"] == "/v1/models/forest/versions/1/convert"
    assert problem["parity"]["passed"] is False
    assert problem["parity"]["labels_equal"] < 1.0
    assert problem["parity"]["rows_differing"] == problem["parity"]["rows_differing_with_missing"] > 0
    assert versions(client, "forest") == [1]

    forced = client.post("/v1/models/forest/versions/1/convert", json={"to": "onnx", "force": True})
    assert forced.status_code == 201, forced.get_json()
    assert forced.get_json()["parity"]["forced"] is True
    problem = check_problem(client.put("/v1/models/forest/versions/1/fast"), 409, field="version")
    assert problem["type"] == "urn:wharf:problem:conflict"
    assert "forced past its parity check" in problem["detail"]


def test_set_fast_without_a_twin(client: FlaskClient, registered: Path) -> None:
    response = client.put(FAST)
    assert response.mimetype == PROBLEM
    problem = check_problem(response, 409, field="version")
    assert problem["detail"] == (
        "iris:1 has no ONNX conversion that passed its parity check (conversions: none); "
        "run: wharf convert iris:1 --to onnx"
    )
    assert client.get("/v1/models/iris/versions/1").get_json()["answered_by"] is None


GOOD_ROW = {
    "sepal length (cm)": 5.1,
    "sepal width (cm)": 3.5,
    "petal length (cm)": 1.4,
    "petal width (cm)": 0.2,
}


@pytest.mark.parametrize(
    ("body", "field", "detail"),
    [
        pytest.param({"to": "onnxx"}, "body.to", "Input should be 'onnx' or 'pmml'", id="unknown-target"),
        pytest.param({}, "body.to", "Field required", id="no-target"),
        pytest.param(
            {"to": "onnx", "tolerence": {"labels": 0.9}},
            "body.tolerence",
            "Did you mean 'tolerance'?",
            id="unknown-field",
        ),
        pytest.param(
            {"to": "onnx", "tolerance": {"labels": 1.5}},
            "body.tolerance.labels",
            "less than or equal to 1",
            id="labels-over-1",
        ),
        pytest.param(
            {"to": "onnx", "tolerance": {"rtol": -1}},
            "body.tolerance.rtol",
            "greater than",
            id="negative-rtol",
        ),
        pytest.param(
            {"to": "onnx", "tolerance": {"lables": 1}},
            "body.tolerance.lables",
            "Extra inputs are not permitted",
            id="unknown-tolerance-field",
        ),
        pytest.param(
            {"to": "onnx", "sample_size": 0}, "body.sample_size", "greater than", id="sample-size-0"
        ),
        pytest.param({"to": "onnx", "seed": -1}, "body.seed", "greater than", id="negative-seed"),
        pytest.param({"to": "onnx", "force": "maybe"}, "body.force", "boolean", id="force-not-bool"),
        pytest.param(
            {"to": "onnx", "sample": "rows"},
            "body.sample",
            "at 'sample': Input should be a valid list",
            id="sample-not-a-list",
        ),
        pytest.param(["onnx"], "body", "expected a JSON object", id="body-a-list"),
        pytest.param("onnx", "body", "expected a JSON object", id="body-a-string"),
    ],
)
def test_bad_conversion_requests(
    client: FlaskClient, registered: Path, body: Any, field: str, detail: str
) -> None:
    problem = check_problem(client.post(CONVERT, json=body), 422, field=field, detail=detail)
    assert problem["type"] == "urn:wharf:problem:invalid-input"
    assert versions(client) == [1]


@pytest.mark.parametrize(
    ("rows", "row", "column", "detail"),
    [
        pytest.param(
            [GOOD_ROW, {**GOOD_ROW, "petal width (cm)": "wide"}], 1, "petal width (cm)", "'wide'", id="text"
        ),
        pytest.param(
            [GOOD_ROW, {**GOOD_ROW, "petal size": 2.0}], 1, None, "'petal size'", id="unknown-column"
        ),
        pytest.param(
            [{k: v for k, v in GOOD_ROW.items() if k != "sepal width (cm)"}],
            0,
            None,
            "'sepal width (cm)'",
            id="missing-column",
        ),
    ],
)
def test_sample_rows_that_do_not_fit(
    client: FlaskClient, registered: Path, rows: list[Any], row: int, column: str | None, detail: str
) -> None:
    response = client.post(CONVERT, json={"to": "onnx", "sample": rows})
    problem = check_problem(response, 422, row=row, column=column, detail=detail)
    assert problem["type"] == "urn:wharf:problem:invalid-input"
    assert problem["field"].startswith(f"sample[{row}]"), problem
    assert versions(client) == [1]


def test_an_empty_sample_is_refused(client: FlaskClient, registered: Path) -> None:
    response = client.post(CONVERT, json={"to": "onnx", "sample": []})
    check_problem(response, 422, field="sample", detail="holds no rows")
    assert versions(client) == [1]


def test_a_body_that_is_not_json(client: FlaskClient, registered: Path) -> None:
    response = client.post(CONVERT, data=b'{"to": "onnx"', content_type="application/json")
    problem = check_problem(response, 400, field="body")
    assert problem["type"] == "urn:wharf:problem:malformed-body"
    response = client.post(CONVERT, data='{"to": "onnx"}', content_type="text/plain")
    assert check_problem(response, 415)["type"] == "urn:wharf:problem:unsupported-media-type"
    assert versions(client) == [1]


def test_bad_set_fast_bodies(client: FlaskClient, registered: Path) -> None:
    check_problem(client.put(FAST, json={"twim": 2}), 422, field="body.twim", detail="Did you mean 'twin'?")
    check_problem(client.put(FAST, json={"twin": "two"}), 422, field="body.twin")
    check_problem(client.put(FAST, data=b"{", content_type="application/json"), 400, field="body")


@pytest.mark.parametrize(
    ("method", "url", "slug"),
    [
        ("post", "/v1/models/iris/versions/7/convert", "version-not-found"),
        ("put", "/v1/models/iris/versions/7/fast", "version-not-found"),
        ("delete", "/v1/models/iris/versions/7/fast", "version-not-found"),
        ("post", "/v1/models/irsi/versions/1/convert", "model-not-found"),
        ("put", "/v1/models/irsi/versions/1/fast", "model-not-found"),
    ],
)
def test_unknown_versions_and_models(
    client: FlaskClient, registered: Path, method: str, url: str, slug: str
) -> None:
    call = getattr(client, method)
    response = call(url, json={"to": "onnx"}) if method == "post" else call(url)
    problem = check_problem(response, 404)
    assert problem["type"] == f"urn:wharf:problem:{slug}"
    if slug == "model-not-found":
        assert "Did you mean 'iris'?" in problem["detail"]
    else:
        assert "has no version 7; it has [1]" in problem["detail"]
    assert versions(client) == [1]
