"""A registered version whose artifact no longer loads: the server says so without leaking paths."""

from __future__ import annotations

from pathlib import Path

import joblib
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression

from wharf import Settings, create_app
from wharf.services import build_services
from wharf.services.registry import Registration


def test_a_broken_artifact_is_a_server_problem_and_readyz_says_so(tmp_path: Path) -> None:
    X, y = load_iris(return_X_y=True)
    path = tmp_path / "iris.joblib"
    joblib.dump(LogisticRegression(max_iter=500).fit(X, y), path)
    settings = Settings(auth=False, home=tmp_path / "home", refresh_seconds=0)
    services = build_services(settings)
    record = services.registry.register("iris", path, path.name, Registration())
    stored = services.registry.artifacts.local_path(record.artifact)
    services.close()
    stored.write_bytes(b"not a pickle any more")  # the disk went bad under the registry

    app = create_app(settings)
    try:
        client = app.test_client()
        ready = client.get("/readyz")
        assert ready.status_code == 503
        assert "iris" in ready.get_json()["detail"]

        response = client.post("/v1/models/iris/predict", json={"instances": [X[0].tolist()]})
        assert response.status_code == 500
        problem = response.get_json()
        assert problem["type"] == "urn:wharf:problem:model-error"
        assert str(tmp_path) not in problem["detail"] and "sha256" not in problem["detail"]

        joblib.dump(LogisticRegression(max_iter=500).fit(X, y), stored)  # repaired
        assert client.get("/readyz").status_code == 200
        assert client.post("/v1/models/iris/predict", json={"instances": [X[0].tolist()]}).status_code == 200
    finally:
        app.extensions["wharf"].close()


def test_an_artifact_swapped_for_another_model_is_not_served(tmp_path: Path) -> None:
    """The file still loads, but it is not what was registered: its sha256 says so, and nothing runs it."""
    X, y = load_iris(return_X_y=True)
    path = tmp_path / "iris.joblib"
    joblib.dump(LogisticRegression(max_iter=500).fit(X, y), path)
    settings = Settings(auth=False, home=tmp_path / "home", refresh_seconds=0)
    services = build_services(settings)
    record = services.registry.register("iris", path, path.name, Registration())
    stored = services.registry.artifacts.local_path(record.artifact)
    services.close()
    joblib.dump(LogisticRegression(max_iter=500, C=0.01).fit(X, y), stored)  # a valid model, another one

    app = create_app(settings)
    try:
        client = app.test_client()
        assert client.get("/readyz").status_code == 503
        response = client.post("/v1/models/iris/predict", json={"instances": [X[0].tolist()]})
        assert response.status_code == 500
        assert "(artifact-mismatch)" in response.get_json()["detail"]
    finally:
        app.extensions["wharf"].close()
