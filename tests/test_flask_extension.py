"""wharf inside someone else's Flask application: ``Wharf(app, ...)`` and ``init_app``."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import joblib
import pandas as pd
import pytest
from flask import Flask, jsonify
from sklearn.pipeline import Pipeline

from auth import ADMIN_KEY
from wharf import Settings
from wharf.flask import Wharf
from wharf.services import Services, build_services
from wharf.services.registry import Registration


@pytest.fixture
def model_file(tmp_path: Path, iris: tuple[Pipeline, pd.DataFrame]) -> Path:
    path = tmp_path / "iris.joblib"
    joblib.dump(iris[0], path)
    return path


def home_with_iris(home: Path, model_file: Path) -> Settings:
    settings = Settings(auth=False, home=home, refresh_seconds=0, allow_pickle_uploads=True)
    services = build_services(settings)
    try:
        services.registry.register("iris", model_file, model_file.name, Registration())
    finally:
        services.close()
    return settings


def user_app() -> Flask:
    """An application with its own routes and its own error handling."""
    app = Flask(__name__)
    app.config["TESTING"] = True

    @app.get("/hello")
    def hello() -> Any:
        return jsonify(greeting="hello")

    @app.get("/boom")
    def boom() -> Any:
        raise LookupError("the user's own failure")

    @app.errorhandler(404)
    def not_found(error: Exception) -> Any:
        return "user's not found page", 404

    @app.errorhandler(LookupError)
    def lookup(error: LookupError) -> Any:
        return f"user handled: {error}", 500

    return app


@pytest.fixture
def mounted(tmp_path: Path, model_file: Path) -> Iterator[tuple[Flask, Wharf]]:
    app = user_app()
    wharf = Wharf(app, home_with_iris(tmp_path / "home", model_file), url_prefix="/ml")
    yield app, wharf
    app.extensions["wharf"].close()


def rows(X: pd.DataFrame) -> list[dict[str, float]]:
    return [{str(k): float(v) for k, v in row.items()} for _, row in X.iterrows()]


def test_the_api_is_served_under_the_prefix(
    mounted: tuple[Flask, Wharf], iris: tuple[Pipeline, pd.DataFrame]
) -> None:
    app, _wharf = mounted
    model, X = iris
    client = app.test_client()
    listed = client.get("/ml/v1/models").get_json()
    assert [m["name"] for m in listed["models"]] == ["iris"]
    assert client.get("/ml/v1/models/iris").get_json()["latest_version"] == 1
    assert client.get("/ml/readyz").status_code == 200

    sample = X.iloc[::25]
    response = client.post("/ml/v1/models/iris/predict", json={"instances": rows(sample)})
    assert response.status_code == 200
    assert response.get_json()["predictions"] == model.predict(sample).tolist()

    assert client.get("/v1/models").status_code == 404  # nothing at the root
    assert isinstance(app.extensions["wharf"], Services)


def test_docs_and_spec_carry_the_prefix(mounted: tuple[Flask, Wharf]) -> None:
    app, _ = mounted
    client = app.test_client()
    spec = client.get("/ml/openapi.json").get_json()
    assert spec["paths"]
    assert all(path.startswith("/ml/") for path in spec["paths"])
    page = client.get("/ml/docs").get_data(as_text=True)
    assert 'data-spec-url="/ml/openapi.json"' in page
    assert "/ml/docs/assets/swagger-ui-bundle.js" in page
    with client.get("/ml/docs/assets/swagger-ui-bundle.js") as asset:
        assert asset.status_code == 200
        assert asset.mimetype == "text/javascript"


def test_uploads_point_at_the_prefixed_location(mounted: tuple[Flask, Wharf], model_file: Path) -> None:
    app, _ = mounted
    response = app.test_client().post(
        "/ml/v1/models/iris/versions",
        data={"file": (io.BytesIO(model_file.read_bytes()), "iris.joblib")},
        content_type="multipart/form-data",
    )
    assert response.status_code == 201
    assert response.headers["Location"] == "/ml/v1/models/iris/versions/2"


def test_the_users_routes_and_error_handling_are_untouched(mounted: tuple[Flask, Wharf]) -> None:
    app, _ = mounted
    client = app.test_client()
    assert client.get("/hello").get_json() == {"greeting": "hello"}

    # Errors outside wharf's routes are the application's: its own pages, not problem+json.
    for path in ("/nowhere", "/ml/nowhere"):
        response = client.get(path)
        assert (response.status_code, response.get_data(as_text=True)) == (404, "user's not found page")
        assert response.mimetype != "application/problem+json"
    response = client.get("/boom")
    assert (response.status_code, response.get_data(as_text=True)) == (
        500,
        "user handled: the user's own failure",
    )

    # Errors inside wharf's routes are wharf's: problem+json, even with the user's handlers around.
    response = client.get("/ml/v1/models/nope")
    assert response.status_code == 404
    assert response.mimetype == "application/problem+json"
    assert response.get_json()["type"] == "urn:wharf:problem:model-not-found"
    assert response.get_json()["instance"] == "/ml/v1/models/nope"


def test_a_users_catch_all_handler_does_not_swallow_wharf_errors(tmp_path: Path, model_file: Path) -> None:
    app = user_app()

    @app.errorhandler(Exception)
    def everything(error: Exception) -> Any:
        return "user's catch-all", 500

    Wharf(app, home_with_iris(tmp_path / "home", model_file), url_prefix="/ml")
    try:
        response = app.test_client().post(
            "/ml/v1/models/iris/predict", json={"instances": [{"petal size": 1}]}
        )
        assert response.status_code == 422
        assert response.get_json()["column"] == "petal size"
    finally:
        app.extensions["wharf"].close()


def test_init_app_for_several_applications(tmp_path: Path, model_file: Path) -> None:
    wharf = Wharf(url_prefix="/api")
    first, second = user_app(), user_app()
    wharf.init_app(first, home_with_iris(tmp_path / "one", model_file))
    wharf.init_app(second, Settings(auth=False, home=tmp_path / "two"))
    try:
        assert [m["name"] for m in first.test_client().get("/api/v1/models").get_json()["models"]] == ["iris"]
        assert second.test_client().get("/api/v1/models").get_json()["models"] == []
        assert first.extensions["wharf"] is not second.extensions["wharf"]
        assert first.test_client().get("/hello").status_code == 200
    finally:
        first.extensions["wharf"].close()
        second.extensions["wharf"].close()


def test_settings_default_to_the_environment(
    tmp_path: Path, model_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home_with_iris(tmp_path / "env-home", model_file)
    monkeypatch.setenv("WHARF_HOME", str(tmp_path / "env-home"))
    monkeypatch.setenv("WHARF_ADMIN_KEY", ADMIN_KEY)
    app = Flask(__name__)
    Wharf(app)
    try:
        assert app.extensions["wharf"].settings.home == tmp_path / "env-home"
        assert app.test_client().get("/v1/models/iris").status_code == 401  # auth is on by default
        answer = app.test_client().get("/v1/models/iris", headers={"X-API-Key": ADMIN_KEY})
        assert answer.get_json()["latest_version"] == 1
    finally:
        app.extensions["wharf"].close()
