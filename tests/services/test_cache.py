"""The prediction cache: its LRU bookkeeping, and what the served app caches and never caches."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pytest
from flask import Flask
from flask.testing import FlaskClient
from sklearn import datasets
from sklearn.dummy import DummyClassifier
from sklearn.linear_model import LogisticRegression

from wharf import Settings, create_app
from wharf.services.cache import PredictionCache
from wharf.services.registry import Registration

# -- the LRU map -----------------------------------------------------------------------------


def response(n: int) -> dict[str, Any]:
    return {"predictions": [n]}


def test_a_new_cache_is_empty() -> None:
    cache = PredictionCache(3)
    assert cache.as_dict() == {"entries": 0, "max_entries": 3, "hits": 0, "misses": 0}
    assert cache.get("a") is None
    assert cache.as_dict()["misses"] == 1


def test_hits_and_misses_are_counted() -> None:
    cache = PredictionCache(3)
    cache.put("a", response(1))
    assert cache.get("a") == response(1)
    assert cache.get("a") == response(1)
    assert cache.get("b") is None
    assert cache.as_dict() == {"entries": 1, "max_entries": 3, "hits": 2, "misses": 1}


def test_the_least_recently_used_entry_goes_first() -> None:
    cache = PredictionCache(2)
    cache.put("a", response(1))
    cache.put("b", response(2))
    assert cache.get("a") == response(1)  # now "b" is the least recently used
    cache.put("c", response(3))
    assert cache.get("b") is None
    assert cache.get("a") == response(1)
    assert cache.get("c") == response(3)

    cache.put("a", response(4))  # replacing an entry uses it: "c" goes next
    cache.put("d", response(5))
    assert cache.get("c") is None
    assert (cache.get("a"), cache.get("d")) == (response(4), response(5))
    assert cache.as_dict()["entries"] == 2


def test_the_bound_holds_under_concurrent_use() -> None:
    cache = PredictionCache(16)
    start = threading.Barrier(8)

    def use(seed: int) -> None:
        start.wait()
        for i in range(500):
            key = (seed * 7 + i) % 40
            if cache.get(key) is None:
                cache.put(key, response(key))

    threads = [threading.Thread(target=use, args=(seed,)) for seed in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    stats = cache.as_dict()
    assert stats["entries"] == 16
    assert stats["hits"] + stats["misses"] == 8 * 500
    assert all(cache.get(key) in (None, response(key)) for key in range(40))


# -- through the served app ------------------------------------------------------------------

X, Y = datasets.load_iris(return_X_y=True, as_frame=True)
X.columns = ["sepal_length", "sepal_width", "petal_length", "petal_width"]


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Any, Path]]:
    """A logistic regression, and a constant classifier with the same inputs (a second version)."""
    folder = tmp_path_factory.mktemp("cache")
    labels = datasets.load_iris().target_names[Y]
    out = {}
    for name, model in (
        ("logistic", LogisticRegression(max_iter=1000).fit(X, labels)),
        ("constant", DummyClassifier(strategy="constant", constant="virginica").fit(X, labels)),
    ):
        path = folder / f"{name}.joblib"
        joblib.dump(model, path)
        out[name] = (model, path)
    return out


@pytest.fixture
def serve(tmp_path: Path, models: dict[str, tuple[Any, Path]]) -> Iterator[Callable[..., FlaskClient]]:
    """``serve(**settings)``: a client of an app serving the logistic model as "iris" and "other"."""
    apps: list[Flask] = []

    def make(**changes: Any) -> FlaskClient:
        changes.setdefault("allow_pickle_uploads", True)
        settings = Settings(auth=False, home=tmp_path / f"home-{len(apps)}", refresh_seconds=0, **changes)
        app = create_app(settings)
        apps.append(app)
        for name in ("iris", "other"):
            register(app, name, models["logistic"][1])
        return app.test_client()

    yield make
    for app in apps:
        app.extensions["wharf"].close()


def register(app: Flask, name: str, path: Path) -> int:
    return app.extensions["wharf"].registry.register(name, path, path.name, Registration()).version  # type: ignore[no-any-return]


def body(*indices: int) -> dict[str, Any]:
    return {"instances": X.iloc[list(indices)].to_dict(orient="records")}


def predict(client: FlaskClient, data: Any, name: str = "iris", query: str = "") -> Any:
    response = client.post(f"/v1/models/{name}/predict{query}", json=data)
    assert response.status_code == 200, response.get_data(as_text=True)
    return response.get_json()


def stats(client: FlaskClient, name: str = "iris") -> list[dict[str, Any]]:
    response = client.get(f"/v1/models/{name}/stats")
    assert response.status_code == 200
    return response.get_json()["versions"]  # type: ignore[no-any-return]


def cache_of(client: FlaskClient, name: str = "iris", version: int = 1) -> dict[str, Any]:
    (entry,) = [v for v in stats(client, name) if v["version"] == version]
    return entry["cache"]  # type: ignore[no-any-return]


def model_calls(client: FlaskClient, name: str = "iris") -> int:
    return sum(v["batching"]["calls"] for v in stats(client, name))


def test_a_repeated_body_is_answered_from_the_cache(
    serve: Callable[..., FlaskClient], models: dict[str, tuple[Any, Path]]
) -> None:
    client = serve(cache_entries=2)
    first = predict(client, body(0, 60, 120))
    assert first["predictions"] == models["logistic"][0].predict(X.iloc[[0, 60, 120]]).tolist()
    calls = model_calls(client)
    assert predict(client, body(0, 60, 120)) == first
    assert model_calls(client) == calls  # the model was not asked again
    assert cache_of(client) == {"entries": 1, "max_entries": 2, "hits": 1, "misses": 1}


def test_another_body_or_probabilities_is_another_entry(
    serve: Callable[..., FlaskClient], models: dict[str, tuple[Any, Path]]
) -> None:
    client = serve(cache_entries=2)
    model = models["logistic"][0]
    plain = predict(client, body(0))
    other = predict(client, body(100))
    assert (plain["predictions"], other["predictions"]) == (["setosa"], ["virginica"])
    assert cache_of(client) == {"entries": 2, "max_entries": 2, "hits": 0, "misses": 2}

    with_proba = predict(client, body(0), query="?probabilities=true")
    assert "probabilities" in with_proba and "probabilities" not in plain
    np.testing.assert_allclose(with_proba["probabilities"], model.predict_proba(X.iloc[[0]]), rtol=1e-12)
    asked = predict(client, {**body(0), "return": "probabilities"})  # asked in the body: its own bytes
    assert asked == with_proba
    assert cache_of(client) == {"entries": 2, "max_entries": 2, "hits": 0, "misses": 4}

    assert predict(client, body(0), query="?probabilities=true") == with_proba
    assert predict(client, body(0)) == plain  # evicted by the bound: computed again, same answer
    assert cache_of(client) == {"entries": 2, "max_entries": 2, "hits": 1, "misses": 5}


def test_csv_and_json_bodies_are_separate_entries(serve: Callable[..., FlaskClient]) -> None:
    client = serve(cache_entries=4)
    csv = X.iloc[[0, 100]].to_csv(index=False).encode()
    answers = []
    for _ in range(2):
        response = client.post("/v1/models/iris/predict", data=csv, content_type="text/csv")
        assert response.status_code == 200
        answers.append(response.get_json())
    assert answers[0] == answers[1]
    assert answers[0]["predictions"] == ["setosa", "virginica"]
    assert predict(client, body(0, 100)) == answers[0]
    assert cache_of(client) == {"entries": 2, "max_entries": 4, "hits": 1, "misses": 2}


def test_a_new_version_is_not_served_from_an_old_versions_entry(
    serve: Callable[..., FlaskClient], models: dict[str, tuple[Any, Path]]
) -> None:
    client = serve(cache_entries=2)
    app = client.application
    assert predict(client, body(0)) == {"model": "iris", "version": 1, "predictions": ["setosa"]}
    # An alias keeps v1 a target, so it stays loaded (with its cache) when v2 becomes the latest;
    # a version no name points at any more is unloaded, its cache with it.
    app.extensions["wharf"].registry.set_alias("iris", "stable", 1)
    assert register(app, "iris", models["constant"][1]) == 2

    assert predict(client, body(0)) == {"model": "iris", "version": 2, "predictions": ["virginica"]}
    assert cache_of(client, version=2) == {"entries": 1, "max_entries": 2, "hits": 0, "misses": 1}
    response = client.post("/v1/models/iris/versions/1/predict", json=body(0))
    assert response.get_json()["predictions"] == ["setosa"]
    assert cache_of(client, version=1)["hits"] == 1  # the old version's entry serves the old version


def test_errors_are_never_cached(serve: Callable[..., FlaskClient]) -> None:
    client = serve(cache_entries=2)
    bad = {"instances": [{"sepal_length": 1.0, "sepal_width": 1.0, "petal_length": 1.0, "petal_size": 1}]}
    for _ in range(2):
        response = client.post("/v1/models/iris/predict", json=bad)
        assert response.status_code == 422
        assert response.mimetype == "application/problem+json"
    for _ in range(2):
        response = client.post(
            "/v1/models/iris/predict", data=b'{"instances": [', content_type="application/json"
        )
        assert response.status_code == 400
    assert cache_of(client) == {"entries": 0, "max_entries": 2, "hits": 0, "misses": 4}


def test_model_options_turn_the_cache_on_for_one_model(serve: Callable[..., FlaskClient]) -> None:
    client = serve(model_options={"iris": {"cache_entries": 2}})
    for name in ("iris", "other"):
        for _ in range(2):
            predict(client, body(7), name=name)
    assert cache_of(client, "iris") == {"entries": 1, "max_entries": 2, "hits": 1, "misses": 1}
    (other,) = stats(client, "other")
    assert "cache" not in other
    assert "batching" in other

    client = serve(cache_entries=5, model_options={"other": {"cache_entries": 0}})
    predict(client, body(7), name="other")
    predict(client, body(7))
    assert "cache" not in stats(client, "other")[0]
    assert cache_of(client, "iris")["max_entries"] == 5


def test_without_a_cache_every_request_calls_the_model(serve: Callable[..., FlaskClient]) -> None:
    client = serve()
    predict(client, body(3))
    calls = model_calls(client)
    predict(client, body(3))
    assert model_calls(client) == calls + 1
    assert "cache" not in stats(client)[0]


def test_the_stats_of_an_unknown_model_are_a_404(serve: Callable[..., FlaskClient]) -> None:
    client = serve(cache_entries=2)
    response = client.get("/v1/models/nothing/stats")
    assert response.status_code == 404
    assert response.mimetype == "application/problem+json"


def test_a_hit_answers_the_same_bytes(serve: Callable[..., FlaskClient]) -> None:
    client = serve(cache_entries=2)
    first = client.post("/v1/models/iris/predict?probabilities=true", json=body(5, 55))
    second = client.post("/v1/models/iris/predict?probabilities=true", json=body(5, 55))
    assert first.get_data() == second.get_data()
    assert np.asarray(second.get_json()["probabilities"]).shape == (2, 3)
    assert cache_of(client)["hits"] == 1
