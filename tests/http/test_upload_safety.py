"""Files that run code when loaded reach the upload route only from admin keys (or, without keys,
where the operator allowed them)."""

from __future__ import annotations

import io
import os
import pickle
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import skops.io as sio
from flask import Flask

from auth import ADMIN_KEY
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
def strict_app(tmp_path: Path) -> Iterator[Flask]:
    app = create_app(Settings(home=tmp_path / "home", refresh_seconds=0, admin_key=ADMIN_KEY))
    yield app
    app.extensions["wharf"].close()


def upload(app: Flask, data: bytes, filename: str, key: str | None) -> Any:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return app.test_client().post(
        "/v1/models/evil/versions",
        data={"file": (io.BytesIO(data), filename)},
        content_type="multipart/form-data",
        headers=headers,
    )


@pytest.mark.parametrize("filename", ["model.joblib", "model.pkl", "model.bin"])
def test_a_trainer_key_cannot_upload_a_pickle_and_it_is_never_loaded(
    strict_app: Flask, tmp_path: Path, filename: str
) -> None:
    marker = tmp_path / "ran.txt"
    _, trainer = strict_app.extensions["wharf"].keys.create("trainer")
    response = upload(strict_app, pickle.dumps(Payload(marker)), filename, trainer)
    assert response.status_code == 422
    problem = response.get_json()
    assert problem["type"] == "urn:wharf:problem:unsafe-model"
    assert "only admin keys" in problem["detail"]
    assert not marker.exists()
    assert (
        strict_app.test_client().get("/v1/models/evil", headers={"X-API-Key": ADMIN_KEY}).status_code == 404
    )


def iris_pickle() -> bytes:
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    X, y = load_iris(return_X_y=True)
    return pickle.dumps(LogisticRegression(max_iter=500).fit(X, y))


def test_an_admin_key_may_upload_a_pickle(strict_app: Flask) -> None:
    assert upload(strict_app, iris_pickle(), "iris.pkl", ADMIN_KEY).status_code == 201


@pytest.mark.parametrize(("allowed", "status"), [(False, 422), (True, 201)])
def test_without_keys_pickle_uploads_follow_the_setting(tmp_path: Path, allowed: bool, status: int) -> None:
    settings = Settings(home=tmp_path / "home", auth=False, allow_pickle_uploads=allowed)
    app = create_app(settings)
    try:
        response = upload(app, iris_pickle(), "iris.pkl", None)
        assert response.status_code == status, response.get_json()
        if not allowed:
            assert "WHARF_ALLOW_PICKLE_UPLOADS" in response.get_json()["detail"]
    finally:
        app.extensions["wharf"].close()


def test_a_skops_file_naming_a_scikit_learn_function_is_refused(tmp_path: Path) -> None:
    """scikit-learn's classes are trusted; its functions are not (a function named in a skops file
    gets called)."""
    path = tmp_path / "fn.skops"
    sio.dump({"predict": os.path.join, "f": __import__("sklearn").utils.check_array}, path)
    with pytest.raises(UnsafeModel, match="check_array"):
        SklearnRuntime.load(path, fmt="skops")
