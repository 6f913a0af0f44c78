"""Files that run code when loaded never get to run through the upload route by default."""

from __future__ import annotations

import io
import os
import pickle
from pathlib import Path

import pytest
import skops.io as sio
from flask import Flask

from wharf import Settings, create_app
from wharf.errors import UnsafeModel
from wharf.runtimes.sklearn import SklearnRuntime


class Payload:
    """Unpickling this writes a marker file: proof that the pickle ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str, str]]:
        return (Path.write_text, (str(self.marker), "ran"))  # type: ignore[return-value]


@pytest.fixture
def strict_app(tmp_path: Path) -> Flask:
    app = create_app(Settings(home=tmp_path / "home", refresh_seconds=0))  # the defaults
    yield app
    app.extensions["wharf"].close()


@pytest.mark.parametrize("filename", ["model.joblib", "model.pkl", "model.bin"])
def test_a_pickle_upload_is_refused_before_it_is_loaded(
    strict_app: Flask, tmp_path: Path, filename: str
) -> None:
    marker = tmp_path / "ran.txt"
    data = pickle.dumps(Payload(marker))
    response = strict_app.test_client().post(
        "/v1/models/evil/versions",
        data={"file": (io.BytesIO(data), filename)},
        content_type="multipart/form-data",
    )
    assert response.status_code == 422
    problem = response.get_json()
    assert problem["type"] == "urn:wharf:problem:unsafe-model"
    assert "WHARF_ALLOW_PICKLE_UPLOADS" in problem["detail"]
    assert not marker.exists()
    assert strict_app.test_client().get("/v1/models/evil").status_code == 404


def test_pickle_uploads_can_be_allowed(tmp_path: Path) -> None:
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    X, y = load_iris(return_X_y=True)
    model = LogisticRegression(max_iter=500).fit(X, y)
    app = create_app(Settings(home=tmp_path / "home", allow_pickle_uploads=True))
    try:
        response = app.test_client().post(
            "/v1/models/iris/versions",
            data={"file": (io.BytesIO(pickle.dumps(model)), "iris.pkl")},
            content_type="multipart/form-data",
        )
        assert response.status_code == 201, response.get_json()
    finally:
        app.extensions["wharf"].close()


def test_a_skops_file_naming_a_scikit_learn_function_is_refused(tmp_path: Path) -> None:
    """scikit-learn's classes are trusted; its functions are not (a function named in a skops file
    gets called)."""
    path = tmp_path / "fn.skops"
    sio.dump({"predict": os.path.join, "f": __import__("sklearn").utils.check_array}, path)
    with pytest.raises(UnsafeModel, match="check_array"):
        SklearnRuntime.load(path, fmt="skops")
