"""Adaptive batching in a real ``wharf serve``: concurrent clients, merged calls, right answers."""

from __future__ import annotations

import random
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pytest
import requests
from sklearn import datasets
from sklearn.ensemble import RandomForestClassifier
from test_serve import start, stopped

pytestmark = pytest.mark.e2e

REQUESTS = 200
CLIENTS = 32


def test_concurrent_single_row_requests_are_merged_and_answered_right(tmp_path: Path) -> None:
    X, y = datasets.load_iris(return_X_y=True, as_frame=True)
    labels = datasets.load_iris().target_names[y]
    model = RandomForestClassifier(n_estimators=100, random_state=0).fit(X, labels)
    path = tmp_path / "forest.joblib"
    joblib.dump(model, path)
    predictions = model.predict(X)
    probabilities = model.predict_proba(X)

    server = start(tmp_path / "home", str(path), "--threads", "16", log=tmp_path / "serve.log")
    try:
        url = f"{server.url}/v1/models/forest"
        before = _batching(url)  # the warm-up's calls at load
        rng = random.Random(0)
        plan = [(rng.randrange(len(X)), rng.random() < 0.25) for _ in range(REQUESTS)]

        def ask(job: tuple[int, bool]) -> tuple[int, bool, Any]:
            row, proba = job
            record = {str(k): float(v) for k, v in X.iloc[row].items()}
            query = "?probabilities=true" if proba else ""
            response = requests.post(f"{url}/predict{query}", json={"instances": [record]}, timeout=30)
            assert response.status_code == 200, response.text
            return row, proba, response.json()

        with ThreadPoolExecutor(CLIENTS) as pool:
            answers = list(pool.map(ask, plan))

        for row, proba, answer in answers:
            assert answer["predictions"] == [predictions[row]], (row, answer)
            if proba:
                assert answer["classes"] == model.classes_.tolist()
                np.testing.assert_allclose(answer["probabilities"], probabilities[[row]], rtol=1e-12, atol=0)
            else:
                assert "probabilities" not in answer
        after = _batching(url)
        asked_proba = sum(proba for _, proba in plan)
        assert after["requests"] - before["requests"] == REQUESTS + asked_proba
        assert after["rows"] - before["rows"] == REQUESTS + asked_proba
        assert after["calls"] - before["calls"] < REQUESTS  # requests were merged
        assert sum(after["rows_per_call"].values()) == after["calls"]
        assert server.stop() == 0
    finally:
        stopped(server)


def _batching(url: str) -> dict[str, Any]:
    response = requests.get(f"{url}/stats", timeout=10)
    assert response.status_code == 200
    (version,) = response.json()["versions"]
    assert version["version"] == 1
    return version["batching"]  # type: ignore[no-any-return]
