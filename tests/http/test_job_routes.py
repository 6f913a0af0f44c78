"""The job routes (/v1/jobs) and the quick fit (/v1/fit) through the Flask test client.

Refusals are problems naming the field and queue nothing; a job submitted to the app is run by its
own dispatcher in a real worker process and ends in a registered version; /v1/fit answers what
scikit-learn's estimators give on the same rows.
"""

from __future__ import annotations

import io
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from flask import Flask
from flask.testing import FlaskClient
from httpcases import check_problem
from sklearn.datasets import load_iris
from sklearn.linear_model import LinearRegression, LogisticRegression, Ridge

from wharf import Settings, create_app

IRIS = load_iris(as_frame=True)
IRIS_FRAME = IRIS.data.set_axis(
    ["sepal_length", "sepal_width", "petal_length", "petal_width"], axis=1
).assign(species=IRIS.target_names[IRIS.target])
IRIS_CSV = IRIS_FRAME.to_csv(index=False).encode()
DATASET = object()
"""Stands for the id of the uploaded iris dataset in a parametrized body."""
JOB_SECONDS = 60.0
"""How long a test waits for a job run by the app's dispatcher (a real worker process)."""


def upload_iris(client: FlaskClient) -> int:
    response = client.post(
        "/v1/datasets",
        data={"file": (io.BytesIO(IRIS_CSV), "iris.csv")},
        content_type="multipart/form-data",
    )
    assert response.status_code == 201, response.get_json()
    return int(response.get_json()["id"])


def with_dataset(body: Any, dataset: int) -> Any:
    if not isinstance(body, dict):
        return body
    return {key: dataset if value is DATASET else value for key, value in body.items()}


def wait_for(client: FlaskClient, job_id: int, timeout: float = JOB_SECONDS) -> dict[str, Any]:
    """The job as GET answers it once it has finished; fails the test past ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        response = client.get(f"/v1/jobs/{job_id}")
        assert response.status_code == 200, response.get_json()
        job: dict[str, Any] = response.get_json()
        if job["state"] in ("succeeded", "failed", "cancelled"):
            return job
        assert time.monotonic() < deadline, f"job {job_id} still {job['state']} after {timeout} s: {job}"
        time.sleep(0.1)


@pytest.fixture
def queue_app(tmp_path: Path) -> Iterator[Flask]:
    """An app that only queues jobs (job_workers=0): nothing it is sent ever runs."""
    app = create_app(Settings(auth=False, home=tmp_path / "queue-only", refresh_seconds=0, job_workers=0))
    app.config["TESTING"] = True
    yield app
    app.extensions["wharf"].close()


@pytest.fixture
def queue_client(queue_app: Flask) -> FlaskClient:
    return queue_app.test_client()


# -- POST /v1/jobs refusals ------------------------------------------------------------------


TRAIN = {"kind": "train", "dataset": DATASET, "target": "species"}


@pytest.mark.parametrize(
    ("body", "status", "field", "fragment"),
    [
        pytest.param(["train"], 422, "body", "JSON object", id="not-an-object"),
        pytest.param({**TRAIN, "kind": "score"}, 422, "kind", "Unknown job kind 'score'", id="unknown-kind"),
        pytest.param({"dataset": DATASET}, 422, "target", "target", id="missing-target"),
        pytest.param(
            {**TRAIN, "dataset": 999}, 422, "dataset", "No dataset with id 999", id="unknown-dataset"
        ),
        pytest.param({**TRAIN, "dataset": "iris"}, 422, "dataset", "dataset", id="dataset-not-an-id"),
        pytest.param(
            {**TRAIN, "target": "specis"}, 422, "target", "Did you mean 'species'?", id="unknown-target"
        ),
        pytest.param(
            {**TRAIN, "features": ["sepal_length", "species"]},
            422,
            "features[1]",
            "also listed as a feature",
            id="target-among-features",
        ),
        pytest.param(
            {**TRAIN, "features": ["petal_lenght"]},
            422,
            "features[0]",
            "Did you mean 'petal_length'?",
            id="unknown-feature",
        ),
        pytest.param(
            {**TRAIN, "algorithm": "random_forrest"},
            422,
            "algorithm",
            "Did you mean 'random_forest'?",
            id="unknown-algorithm",
        ),
        pytest.param(
            {**TRAIN, "algorithm": "linear_regression"},
            422,
            "algorithm",
            "not classification",
            id="algorithm-without-the-task",
        ),
        pytest.param(
            {**TRAIN, "algorithm": "random_forest", "params": {"n_estimator": 10}},
            422,
            "params.n_estimator",
            "Did you mean 'n_estimators'?",
            id="unknown-param",
        ),
        pytest.param(
            {**TRAIN, "algorithm": "random_forest", "params": {"n_estimators": "ten"}},
            422,
            "params.n_estimators",
            "'ten'",
            id="param-of-the-wrong-type",
        ),
        pytest.param(
            {**TRAIN, "algorithm": "random_forest", "params": {"random_state": 1}},
            422,
            "params.random_state",
            "'seed'",
            id="random-state-param",
        ),
        pytest.param(
            {**TRAIN, "validation": {"test_size": 1.5}},
            422,
            "validation.test_size",
            "less than 1",
            id="test-size-over-1",
        ),
        pytest.param({**TRAIN, "validation": {"cv": 1}}, 422, "validation.cv", "greater than", id="one-fold"),
        pytest.param(
            {**TRAIN, "validation": {"test_size": 0.2, "cv": 3}},
            422,
            ("validation", "validation.test_size", "validation.cv"),
            "",
            id="test-size-and-cv",
        ),
        pytest.param(
            {**TRAIN, "task": "regression"}, 422, "task", "numeric target", id="regression-on-labels"
        ),
        pytest.param(
            {**TRAIN, "register_as": "bad name!"}, 422, "register_as", "register_as", id="invalid-model-name"
        ),
        pytest.param({**TRAIN, "seed": -1}, 422, "seed", "seed", id="negative-seed"),
        pytest.param(
            {**TRAIN, "algoritm": "knn"}, 422, "algoritm", "Did you mean 'algorithm'?", id="misspelled-key"
        ),
    ],
)
def test_submit_refusals_name_the_field_and_queue_nothing(
    client: FlaskClient, body: Any, status: int, field: str | tuple[str, ...], fragment: str
) -> None:
    body = with_dataset(body, upload_iris(client))
    problem = check_problem(client.post("/v1/jobs", json=body), status, detail=fragment)
    fields = field if isinstance(field, tuple) else (field,)
    assert problem.get("field") in fields, problem
    assert client.get("/v1/jobs").get_json() == {"jobs": []}


@pytest.mark.parametrize(
    ("data", "content_type", "status", "field"),
    [
        (b'{"dataset": 1, "target": "species"}', "text/plain", 415, "Content-Type"),
        (b"dataset=1&target=species", "multipart/form-data; boundary=x", 415, "Content-Type"),
        (b'{"dataset": 1, "target": ', "application/json", 400, "body"),
        (b"", "application/json", 400, "body"),
    ],
)
def test_submit_takes_a_json_body(
    client: FlaskClient, data: bytes, content_type: str, status: int, field: str
) -> None:
    upload_iris(client)
    check_problem(client.post("/v1/jobs", data=data, content_type=content_type), status, field=field)
    assert client.get("/v1/jobs").get_json() == {"jobs": []}


# -- a job run by the app --------------------------------------------------------------------


def test_a_job_runs_to_a_registered_version(client: FlaskClient) -> None:
    dataset = upload_iris(client)
    response = client.post("/v1/jobs", json={**TRAIN, "dataset": dataset, "algorithm": "logistic_regression"})
    assert response.status_code == 202, response.get_json()
    job = response.get_json()
    assert response.headers["Location"] == f"/v1/jobs/{job['id']}" == job["links"]["self"]
    assert job["state"] in ("queued", "running")
    assert job["kind"] == "train" and job["error"] is None and job["result"] is None
    assert job["links"]["cancel"] == f"/v1/jobs/{job['id']}/cancel"
    assert job["spec"]["register_as"] == "iris"  # named after the dataset

    done = wait_for(client, job["id"])
    assert done["state"] == "succeeded", done
    assert (done["progress"], done["stage"]) == (1.0, "done")
    assert done["result"]["model"] == "iris" and done["result"]["version"] == 1
    assert done["result"]["task"] == "classification"
    assert 0.8 <= done["result"]["metrics"]["accuracy"] <= 1.0
    assert done["queued_seconds"] >= 0 and done["run_seconds"] > 0
    assert "cancel" not in done["links"]
    version = client.get(done["links"]["version"])
    assert version.status_code == 200, version.get_json()
    assert (version.get_json()["name"], version.get_json()["version"]) == ("iris", 1)

    listed = client.get("/v1/jobs?state=succeeded").get_json()["jobs"]
    assert [j["id"] for j in listed] == [job["id"]]
    assert listed[0] == client.get(f"/v1/jobs/{job['id']}").get_json()
    assert client.get("/v1/jobs?state=queued").get_json() == {"jobs": []}
    check_problem(
        client.post(f"/v1/jobs/{job['id']}/cancel"), 409, field="job_id", detail="already succeeded"
    )


def test_listing_pages_newest_first(queue_client: FlaskClient) -> None:
    dataset = upload_iris(queue_client)
    ids = [
        queue_client.post("/v1/jobs", json={**TRAIN, "dataset": dataset}).get_json()["id"] for _ in range(3)
    ]

    def listed(query: str) -> list[int]:
        response = queue_client.get(f"/v1/jobs{query}")
        assert response.status_code == 200, response.get_json()
        return [job["id"] for job in response.get_json()["jobs"]]

    assert listed("") == ids[::-1]
    assert listed("?limit=1") == [ids[2]]
    assert listed("?limit=1&offset=2") == [ids[0]]
    assert listed("?state=queued&limit=2") == [ids[2], ids[1]]
    assert listed("?state=running") == []
    assert listed("?limit=") == ids[::-1]  # empty: the default


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("limit=0", "limit"),
        ("limit=-1", "limit"),
        ("limit=abc", "limit"),
        ("limit=1.5", "limit"),
        ("limit=1001", "limit"),
        ("limit=99999999999999999999999", "limit"),
        ("offset=-1", "offset"),
        ("offset=x", "offset"),
        ("state=done", "state"),
    ],
)
def test_listing_refuses_bad_queries(client: FlaskClient, query: str, field: str) -> None:
    check_problem(client.get(f"/v1/jobs?{query}"), 422, field=field)


@pytest.mark.parametrize("job_id", [999, 2**31, 10**20])
def test_unknown_jobs(client: FlaskClient, job_id: int) -> None:
    problem = check_problem(client.get(f"/v1/jobs/{job_id}"), 404, field="job_id")
    assert problem["type"] == "urn:wharf:problem:job-not-found"
    check_problem(client.post(f"/v1/jobs/{job_id}/cancel"), 404, field="job_id")


def test_cancel_a_queued_job(queue_client: FlaskClient) -> None:
    dataset = upload_iris(queue_client)
    job = queue_client.post("/v1/jobs", json={**TRAIN, "dataset": dataset}).get_json()
    assert job["state"] == "queued"

    response = queue_client.post(f"/v1/jobs/{job['id']}/cancel")
    assert response.status_code == 202, response.get_json()
    cancelled = response.get_json()
    assert cancelled["state"] == "cancelled" and cancelled["finished_at"] is not None
    assert "before it started" in cancelled["error"]
    assert "cancel" not in cancelled["links"]
    assert queue_client.get(f"/v1/jobs/{job['id']}").get_json() == cancelled

    check_problem(queue_client.post(f"/v1/jobs/{job['id']}/cancel"), 409, field="job_id", detail="cancelled")
    assert queue_client.get("/v1/jobs?state=cancelled").get_json()["jobs"] == [cancelled]


# -- POST /v1/fit ------------------------------------------------------------------------------


def regression_rows(n: int = 40, width: int = 3) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(7)
    X = rng.normal(size=(n, width)) * [1.0, 10.0, 0.1][:width]
    y = X @ np.array([2.0, -0.5, 30.0][:width]) + 4.0 + rng.normal(scale=0.3, size=n)
    return X, y


def fit(client: FlaskClient, body: Any) -> dict[str, Any]:
    response = client.post("/v1/fit", json=body)
    assert response.status_code == 200, response.get_json()
    result: dict[str, Any] = response.get_json()
    return result


@pytest.mark.parametrize(
    ("algorithm", "params", "estimator"),
    [
        ("linear_regression", {}, LinearRegression()),
        ("ridge", {"alpha": 2.5}, Ridge(alpha=2.5)),
        ("ridge", {"alpha": 0.1, "fit_intercept": False}, Ridge(alpha=0.1, fit_intercept=False)),
    ],
)
def test_fit_weights_equal_scikit_learns(
    client: FlaskClient, algorithm: str, params: dict[str, Any], estimator: Any
) -> None:
    X, y = regression_rows()
    result = fit(client, {"X": X.tolist(), "y": y.tolist(), "algorithm": algorithm, "params": params})
    model = estimator.fit(X, y)
    assert (result["algorithm"], result["task"], result["rows"]) == (algorithm, "regression", len(X))
    np.testing.assert_allclose(result["weights"], model.coef_, rtol=1e-9)
    assert result["bias"] == pytest.approx(float(model.intercept_), rel=1e-9, abs=1e-12)
    assert result["metrics"]["r2"] == pytest.approx(model.score(X, y), rel=1e-12)


def test_fit_the_tutorial_line(client: FlaskClient) -> None:
    result = fit(client, {"X": [[1], [2], [3], [4]], "y": [3, 5, 7, 9]})
    assert result["weights"] == pytest.approx([2.0]) and result["bias"] == pytest.approx(1.0)


@pytest.mark.parametrize("n_classes", [2, 3])
def test_fit_logistic_regression_gives_weights_per_class(client: FlaskClient, n_classes: int) -> None:
    rows = IRIS_FRAME[IRIS_FRAME.species.isin(IRIS.target_names[:n_classes])].iloc[::4]
    X, y = rows.iloc[:, :4].to_numpy(), rows.species.to_numpy()
    result = fit(
        client, {"X": X.tolist(), "y": y.tolist(), "algorithm": "logistic_regression", "params": {"C": 0.5}}
    )
    model = LogisticRegression(C=0.5, max_iter=1000, random_state=0).fit(X, y)
    assert result["task"] == "classification"
    assert result["classes"] == model.classes_.tolist()
    # one row of weights and one bias per class; a single row (of the second class) for two classes
    rows_of_weights = 1 if n_classes == 2 else n_classes
    assert np.shape(result["weights"]) == (rows_of_weights, 4)
    assert np.shape(result["bias"]) == (rows_of_weights,)
    np.testing.assert_allclose(result["weights"], model.coef_, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(result["bias"], model.intercept_, rtol=1e-9, atol=1e-12)
    assert result["metrics"]["accuracy"] == pytest.approx(model.score(X, y))


@pytest.fixture
def small_fit_client(tmp_path: Path) -> Iterator[FlaskClient]:
    app = create_app(Settings(auth=False, home=tmp_path / "small-fit", refresh_seconds=0, fit_max_cells=6))
    yield app.test_client()
    app.extensions["wharf"].close()


def test_fit_over_its_size_limit_points_to_jobs(small_fit_client: FlaskClient) -> None:
    at_limit = {"X": [[1, 2], [2, 3.5], [3, 5]], "y": [3, 5, 8.5]}
    assert small_fit_client.post("/v1/fit", json=at_limit).status_code == 200
    over = {"X": [[1, 2], [2, 3.5], [3, 5], [4, 7]], "y": [3, 5, 8.5, 11]}
    problem = check_problem(small_fit_client.post("/v1/fit", json=over), 413, field="X", detail="8")
    assert "POST /v1/jobs" in problem["detail"] and "6" in problem["detail"]


@pytest.mark.parametrize(
    ("body", "status", "fields"),
    [
        pytest.param({"X": [[1], [2, 3]], "y": [1, 2]}, 422, ["X[1]"], id="ragged"),
        pytest.param({"X": [[]], "y": [1]}, 422, ["X[0]"], id="empty-row"),
        pytest.param({"X": [], "y": []}, 422, ["body.X", "X"], id="no-rows"),
        pytest.param({"X": [1, 2], "y": [1, 2]}, 422, ["body.X.0", "X[0]"], id="flat-X"),
        pytest.param({"X": "1,2", "y": [1, 2]}, 422, ["body.X", "X"], id="X-a-string"),
        pytest.param({"X": [[1], ["a"]], "y": [1, 2]}, 422, ["body.X.1.0", "X[1][0]"], id="word"),
        pytest.param({"X": [[1], ["1.5"]], "y": [1, 2]}, 422, ["body.X.1.0", "X[1][0]"], id="number-as-text"),
        pytest.param({"X": [[1], [True]], "y": [1, 2]}, 422, ["body.X.1.0", "X[1][0]"], id="boolean"),
        pytest.param({"X": [[1], [None]], "y": [1, 2]}, 422, ["body.X.1.0", "X[1][0]"], id="null"),
        pytest.param({"X": [[1], [[2]]], "y": [1, 2]}, 422, ["body.X.1.0", "X[1][0]"], id="nested"),
        pytest.param({"X": [[1], [2]], "y": [1]}, 422, ["y"], id="y-too-short"),
        pytest.param({"X": [[1], [2]], "y": [1, 2, 3]}, 422, ["y"], id="y-too-long"),
        pytest.param({"X": [[1], [2]]}, 422, ["body.y", "y"], id="no-y"),
        pytest.param({"X": [[1], [2]], "y": [1, None]}, 422, ["y[1]"], id="y-null"),
        pytest.param({"X": [[1], [2]], "y": [1, "b"], "algorithm": "knn"}, 422, ["y"], id="mixed-labels"),
        pytest.param({"X": [[1], [2]], "y": [1, 2], "algorithm": "nope"}, 422, ["algorithm"], id="algorithm"),
        pytest.param(
            {"X": [[1], [2]], "y": [1.5, 2.5], "params": {"fit_intrcept": False}},
            422,
            ["params.fit_intrcept"],
            id="unknown-param",
        ),
        pytest.param(
            {"X": [[1], [2]], "y": [1.5, 2.5], "params": {"fit_intercept": "no"}},
            422,
            ["params.fit_intercept"],
            id="param-type",
        ),
        pytest.param(
            {"X": [[1], [2]], "y": [1.5, 2.5], "algorithm": "random_forest", "seed": -1},
            422,
            ["body.seed", "seed"],
            id="negative-seed",
        ),
        pytest.param(
            {"X": [[1], [2]], "y": [1.5, 2.5], "algorithm": "random_forest", "seed": 2**40},
            422,
            ["body.seed", "seed"],
            id="seed-too-large",
        ),
        pytest.param({"X": [[1], [2]], "y": [1, 2], "extra": 1}, 422, ["body.extra"], id="unknown-key"),
        pytest.param([[1], [2]], 422, ["body"], id="not-an-object"),
        pytest.param(
            {"X": [[1], [2], [3]], "y": [1.5, 2.5, 3.5], "algorithm": "knn"}, 422, [None], id="fit-fails"
        ),
        pytest.param(
            {"X": [[1], [2]], "y": [0.5, 1.5], "algorithm": "logistic_regression"},
            422,
            [None],
            id="continuous-labels",
        ),
    ],
)
def test_fit_refusals_are_4xx_naming_the_place(
    client: FlaskClient, body: Any, status: int, fields: list[str | None]
) -> None:
    problem = check_problem(client.post("/v1/fit", json=body), status)
    assert problem.get("field") in fields, problem


def test_fit_names_the_algorithm_meant(client: FlaskClient) -> None:
    body = {"X": [[1], [2]], "y": [1.5, 2.5], "algorithm": "linear_regresion"}
    check_problem(client.post("/v1/fit", json=body), 422, field="algorithm", detail="'linear_regression'?")


@pytest.mark.parametrize(
    ("data", "content_type", "status"),
    [
        (b'{"X": [[1]], "y": [1]}', "text/csv", 415),
        (b'{"X": [[1]], "y": [1', "application/json", 400),
        (b'{"X": [[1e400]], "y": [1]}', "application/json", 400),
        (b"", "application/json", 400),
    ],
)
def test_fit_takes_a_json_body(client: FlaskClient, data: bytes, content_type: str, status: int) -> None:
    check_problem(client.post("/v1/fit", data=data, content_type=content_type), status)
