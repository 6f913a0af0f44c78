"""The local artifact store: content-addressed, atomic, and never named by its caller."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from wharf.errors import WharfError
from wharf.storage import open_artifact_store
from wharf.storage.artifacts import LocalArtifactStore, key_for


def files_under(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file())


@pytest.fixture
def source(tmp_path: Path) -> tuple[Path, str]:
    path = tmp_path / "model.joblib"
    path.write_bytes(b"model bytes " * 1000)
    return path, hashlib.sha256(path.read_bytes()).hexdigest()


def test_put_stores_the_file_under_its_digest(tmp_path: Path, source: tuple[Path, str]) -> None:
    path, digest = source
    store = LocalArtifactStore(tmp_path / "artifacts")
    key, written = store.put(path, digest)
    assert key == f"sha256/{digest[:2]}/{digest}" == key_for(digest)
    assert written
    assert store.local_path(key).read_bytes() == path.read_bytes()
    assert files_under(tmp_path / "artifacts") == [store.local_path(key)]  # no temporary file left

    again, written = store.put(path, digest)
    assert (again, written) == (key, False)
    assert files_under(tmp_path / "artifacts") == [store.local_path(key)]


def test_delete(tmp_path: Path, source: tuple[Path, str]) -> None:
    path, digest = source
    store = LocalArtifactStore(tmp_path / "artifacts")
    key, _ = store.put(path, digest)
    store.delete(key)
    assert not store.local_path(key).exists()
    store.delete(key)  # a missing artifact is not an error
    assert files_under(tmp_path / "artifacts") == []


def test_a_failed_copy_leaves_nothing(tmp_path: Path) -> None:
    store = LocalArtifactStore(tmp_path / "artifacts")
    with pytest.raises(FileNotFoundError):
        store.put(tmp_path / "missing.joblib", "cd" * 32)
    assert files_under(tmp_path / "artifacts") == []


@pytest.mark.parametrize("form", ["path", "file-url"])
def test_open_a_folder(tmp_path: Path, source: tuple[Path, str], form: str) -> None:
    folder = tmp_path / "somewhere" / "artifacts"
    url = str(folder) if form == "path" else folder.as_uri()
    store = open_artifact_store(url)
    key, _ = store.put(*source)
    assert (folder / key).is_file()


def test_an_unknown_scheme_is_refused(tmp_path: Path) -> None:
    with pytest.raises(WharfError, match=r"scheme 'gs'.*local folder.*s3://"):
        open_artifact_store("gs://bucket/artifacts")
