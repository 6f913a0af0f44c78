"""The S3 artifact store against a real S3 API (moto's server): content-addressed objects, a local
cache that never holds half a file or changed bytes, all-or-nothing registration, clear refusals."""

from __future__ import annotations

import hashlib
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pandas as pd
import pytest
from pydantic import SecretStr
from sklearn.pipeline import Pipeline
from sklearn.tree import DecisionTreeClassifier

from objectstore import bucket_of, s3_client
from wharf import Settings
from wharf.batch import Batch
from wharf.errors import ArtifactMismatch, InvalidSettings, MissingDependency, ModelNotFound, WharfError
from wharf.services import Services, build_services
from wharf.services.registry import Registration
from wharf.storage import MetadataStore, open_artifact_store
from wharf.storage.artifacts import S3ArtifactStore, key_for

CONTENT = b"model bytes " * 1000


def objects(settings: dict[str, Any]) -> dict[str, bytes]:
    """Every object in the settings' bucket, by name, with its bytes."""
    client = s3_client(settings)
    bucket, _ = bucket_of(settings)
    listed = client.list_objects_v2(Bucket=bucket).get("Contents", [])
    return {o["Key"]: client.get_object(Bucket=bucket, Key=o["Key"])["Body"].read() for o in listed}


def replace_object(settings: dict[str, Any], key: str, data: bytes) -> None:
    """Overwrite the artifact ``key`` in the bucket behind wharf's back."""
    bucket, prefix = bucket_of(settings)
    s3_client(settings).put_object(Bucket=bucket, Key=f"{prefix}/{key}", Body=data)


def files_under(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file())


def open_store(settings: dict[str, Any]) -> S3ArtifactStore:
    store = open_artifact_store(
        settings["artifacts"],
        cache=settings["home"] / "cache" / "artifacts",
        s3_endpoint_url=settings["s3_endpoint_url"],
        s3_region=settings["s3_region"],
        s3_access_key_id=settings["s3_access_key_id"],
        s3_secret_access_key=settings["s3_secret_access_key"],
    )
    assert isinstance(store, S3ArtifactStore)
    return store


@pytest.fixture
def source(tmp_path: Path) -> tuple[Path, str]:
    path = tmp_path / "model.joblib"
    path.write_bytes(CONTENT)
    return path, hashlib.sha256(CONTENT).hexdigest()


@pytest.fixture
def cache(s3_settings: dict[str, Any]) -> Path:
    return Path(s3_settings["home"]) / "cache" / "artifacts"


# -- the store -------------------------------------------------------------------------------


def test_put_local_path_delete(s3_settings: dict[str, Any], source: tuple[Path, str], cache: Path) -> None:
    path, digest = source
    store = open_store(s3_settings)
    key, written = store.put(path, digest)
    assert (key, written) == (key_for(digest), True)
    assert objects(s3_settings) == {f"wharf/sha256/{digest[:2]}/{digest}": CONTENT}

    local = store.local_path(key)
    assert local == cache.resolve() / key
    assert local.read_bytes() == CONTENT
    assert files_under(cache) == [local]  # no temporary file left beside it

    store.delete(key)
    assert objects(s3_settings) == {}
    assert files_under(cache) == []
    store.delete(key)  # a missing artifact is not an error
    assert not store.local_path(key).exists()  # a missing object is a path to no file


def test_a_second_put_writes_nothing(s3_settings: dict[str, Any], source: tuple[Path, str]) -> None:
    path, digest = source
    store = open_store(s3_settings)
    key, _ = store.put(path, digest)
    replace_object(s3_settings, key, b"marker")  # an upload would overwrite this
    assert store.put(path, digest) == (key, False)
    assert list(objects(s3_settings).values()) == [b"marker"]


def test_local_path_reuses_its_cached_copy(s3_settings: dict[str, Any], source: tuple[Path, str]) -> None:
    path, digest = source
    store = open_store(s3_settings)
    key, _ = store.put(path, digest)
    first = store.local_path(key)
    replace_object(s3_settings, key, b"changed")  # a second download would be refused
    assert store.local_path(key) == first
    assert first.read_bytes() == CONTENT


def test_changed_bytes_are_never_cached(
    s3_settings: dict[str, Any], source: tuple[Path, str], cache: Path
) -> None:
    path, digest = source
    store = open_store(s3_settings)
    key, _ = store.put(path, digest)
    replace_object(s3_settings, key, b"tampered")
    with pytest.raises(ArtifactMismatch, match=rf"s3://.*/wharf/{key} hashes to .*changed in the bucket"):
        store.local_path(key)
    assert files_under(cache) == []


def test_a_large_file_goes_up_in_parts_and_comes_back_whole(
    s3_settings: dict[str, Any], tmp_path: Path
) -> None:
    data = np.random.default_rng(0).bytes(9 * 1024 * 1024)  # past boto3's 8 MiB multipart threshold
    path = tmp_path / "big.bin"
    path.write_bytes(data)
    digest = hashlib.sha256(data).hexdigest()
    store = open_store(s3_settings)
    key, written = store.put(path, digest)
    assert written
    head = s3_client(s3_settings).head_object(Bucket=bucket_of(s3_settings)[0], Key=store.object_name(key))
    assert head["ETag"].strip('"').endswith("-2")  # a multipart upload's ETag counts its parts
    assert hashlib.sha256(store.local_path(key).read_bytes()).hexdigest() == digest


# -- the registry and datasets on S3 ---------------------------------------------------------


@pytest.fixture
def svc(s3_settings: dict[str, Any]) -> Iterator[Services]:
    services = build_services(Settings(**s3_settings, auth=False, refresh_seconds=0))
    yield services
    services.close()


@pytest.fixture
def model_file(tmp_path: Path, iris: tuple[Pipeline, pd.DataFrame]) -> Path:
    path = tmp_path / "upload" / "iris.joblib"
    path.parent.mkdir()
    joblib.dump(iris[0], path)
    return path


def register(svc: Services, path: Path) -> int:
    return svc.registry.register("iris", path, path.name, Registration()).version


def test_a_registered_model_predicts_as_in_process(
    svc: Services,
    s3_settings: dict[str, Any],
    model_file: Path,
    iris: tuple[Pipeline, pd.DataFrame],
    cache: Path,
) -> None:
    model, X = iris
    assert isinstance(svc.registry.artifacts, S3ArtifactStore)
    assert register(svc, model_file) == 1
    record = svc.registry.get("iris", 1)
    assert objects(s3_settings) == {f"wharf/{record.artifact}": model_file.read_bytes()}
    shutil.rmtree(cache, ignore_errors=True)  # what a fresh replica has: nothing local

    runtime = svc.registry.open(record)
    batch = Batch(list(X.columns), array=X.to_numpy())
    assert runtime.predict(batch).tolist() == model.predict(X).tolist()
    proba = runtime.predict_proba(batch)
    assert proba is not None
    np.testing.assert_allclose(proba, model.predict_proba(X), rtol=1e-12)
    assert (cache / record.artifact).is_file()


def test_an_object_replaced_in_s3_is_refused(
    svc: Services,
    s3_settings: dict[str, Any],
    model_file: Path,
    tmp_path: Path,
    cache: Path,
    iris: tuple[Pipeline, pd.DataFrame],
) -> None:
    register(svc, model_file)
    record = svc.registry.get("iris", 1)
    other = tmp_path / "other.joblib"
    joblib.dump(DecisionTreeClassifier(max_depth=1).fit(iris[1], iris[0].predict(iris[1])), other)
    replace_object(s3_settings, record.artifact, other.read_bytes())  # a real model, other bytes
    shutil.rmtree(cache, ignore_errors=True)
    with pytest.raises(ArtifactMismatch):
        svc.registry.open(record)
    assert not (cache / record.artifact).exists()


def test_a_failed_put_records_no_version(
    svc: Services, s3_settings: dict[str, Any], model_file: Path
) -> None:
    s3_client(s3_settings).delete_bucket(Bucket=bucket_of(s3_settings)[0])
    with pytest.raises(WharfError, match=r"could not store s3://.*NoSuchBucket") as caught:
        register(svc, model_file)
    assert s3_settings["s3_secret_access_key"].get_secret_value() not in caught.value.detail
    assert svc.registry.names() == []
    with pytest.raises(ModelNotFound):
        svc.registry.get("iris")


def test_a_failed_metadata_write_removes_the_uploaded_object(
    svc: Services, s3_settings: dict[str, Any], model_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(self: MetadataStore, name: str, **fields: Any) -> Any:
        raise RuntimeError("the database went away")

    monkeypatch.setattr(MetadataStore, "add_version", refuse)
    with pytest.raises(RuntimeError, match="database went away"):
        register(svc, model_file)
    assert objects(s3_settings) == {}
    assert svc.registry.names() == []

    monkeypatch.undo()
    assert register(svc, model_file) == 1
    assert len(objects(s3_settings)) == 1


def test_a_dataset_is_stored_in_s3_and_read_back(
    svc: Services,
    s3_settings: dict[str, Any],
    iris: tuple[Pipeline, pd.DataFrame],
    tmp_path: Path,
    cache: Path,
) -> None:
    X = iris[1]
    upload = tmp_path / "iris.csv"
    X.to_csv(upload, index=False)
    record = svc.datasets.add(upload, "iris.csv")
    assert record.created
    assert list(objects(s3_settings)) == [f"wharf/{record.artifact}"]
    shutil.rmtree(cache, ignore_errors=True)
    pd.testing.assert_frame_equal(svc.datasets.frame(record.id), X, check_dtype=False)
    assert svc.datasets.path(record.id) == cache.resolve() / record.artifact

    svc.datasets.delete(record.id)
    assert objects(s3_settings) == {}


# -- refusals at startup ---------------------------------------------------------------------


def test_a_missing_bucket_is_refused_at_startup(s3_settings: dict[str, Any], s3_server: str) -> None:
    settings = Settings(**{**s3_settings, "artifacts": "s3://no-such-bucket-here/models"})
    with pytest.raises(InvalidSettings) as caught:
        build_services(settings)
    detail = caught.value.detail
    assert "'no-such-bucket-here', which does not exist" in detail
    assert s3_server in detail
    assert "create it" in detail and "WHARF_ARTIFACTS" in detail
    assert s3_settings["s3_secret_access_key"].get_secret_value() not in detail
    assert caught.value.field == "artifacts"


def test_an_endpoint_that_does_not_answer_is_named(s3_settings: dict[str, Any]) -> None:
    import socket

    with socket.socket() as sock:  # a port that was free a moment ago and has no server
        sock.bind(("127.0.0.1", 0))
        endpoint = f"http://127.0.0.1:{sock.getsockname()[1]}"
    with pytest.raises(WharfError, match=rf"could not be reached at {endpoint}.*WHARF_S3_ENDPOINT_URL"):
        open_store({**s3_settings, "s3_endpoint_url": endpoint})


def test_half_the_credentials_is_refused(s3_settings: dict[str, Any]) -> None:
    with pytest.raises(InvalidSettings, match="WHARF_S3_ACCESS_KEY_ID is set but WHARF_S3_SECRET_ACCESS_KEY"):
        open_store({**s3_settings, "s3_secret_access_key": None})
    with pytest.raises(InvalidSettings, match="WHARF_S3_SECRET_ACCESS_KEY is set but WHARF_S3_ACCESS_KEY_ID"):
        open_store({**s3_settings, "s3_access_key_id": None, "s3_secret_access_key": SecretStr("x")})


def test_an_unknown_scheme_names_both_stores() -> None:
    with pytest.raises(InvalidSettings, match=r"scheme 'gs'.*local folder.*s3://bucket/prefix"):
        open_artifact_store("gs://bucket/artifacts")
    with pytest.raises(InvalidSettings, match="names no bucket"):
        open_artifact_store("s3:///artifacts")


def test_without_boto3_the_error_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "boto3", None)  # what an install without the extra has
    with pytest.raises(MissingDependency, match=r"pip install 'wharf\[s3\]'"):
        open_artifact_store("s3://bucket/artifacts")
