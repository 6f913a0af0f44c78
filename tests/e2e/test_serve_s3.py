"""``wharf serve`` with its artifacts in S3 (moto's server), configured by WHARF_* variables only: a
model uploaded over HTTP lands in the bucket, and a replica with nothing local serves it too."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import joblib
import pandas as pd
import pytest
import requests
from sklearn.pipeline import Pipeline
from test_serve import Server, rows, start, stopped

from objectstore import bucket_of, s3_client, wharf_env

pytestmark = pytest.mark.e2e


def test_a_model_uploaded_over_http_is_served_from_s3(
    tmp_path: Path, s3_settings: dict[str, Any], iris: tuple[Pipeline, pd.DataFrame]
) -> None:
    model, X = iris
    sample = X.iloc[::10]
    model_file = tmp_path / "iris.joblib"
    joblib.dump(model, model_file)
    home = Path(s3_settings["home"])
    env = {**wharf_env(s3_settings), "WHARF_AUTH": "false", "WHARF_ALLOW_PICKLE_UPLOADS": "true"}
    servers: list[Server] = []
    try:
        servers.append(start(home, log=tmp_path / "first.log", env=env))
        first = servers[0]
        with model_file.open("rb") as fh:
            uploaded = requests.post(
                f"{first.url}/v1/models/iris/versions", files={"file": ("iris.joblib", fh)}, timeout=60
            )
        assert uploaded.status_code == 201, uploaded.text
        assert uploaded.json()["version"] == 1

        bucket, prefix = bucket_of(s3_settings)
        listed = s3_client(s3_settings).list_objects_v2(Bucket=bucket, Prefix=f"{prefix}/")
        assert [o["Size"] for o in listed.get("Contents", [])] == [model_file.stat().st_size]

        # Another replica: the same registry database and bucket, its own empty home and cache.
        replica_home = tmp_path / "replica"
        replica_env = {**env, "WHARF_DATABASE_URL": f"sqlite:///{(home / 'wharf.db').resolve()}"}
        servers.append(start(replica_home, log=tmp_path / "replica.log", env=replica_env))

        expected = model.predict(sample).tolist()
        for server in servers:
            response = requests.post(
                f"{server.url}/v1/models/iris/predict", json={"instances": rows(sample)}, timeout=30
            )
            assert response.status_code == 200, response.text
            body = response.json()
            assert (body["model"], body["version"]) == ("iris", 1)
            assert body["predictions"] == expected
        cached = [p for p in (replica_home / "cache" / "artifacts").rglob("*") if p.is_file()]
        assert [p.read_bytes() for p in cached] == [model_file.read_bytes()]  # fetched from the bucket

        for server in servers:
            assert server.stop() == 0
        assert env["WHARF_S3_SECRET_ACCESS_KEY"] not in first.output()
    finally:
        for server in servers:
            stopped(server)
