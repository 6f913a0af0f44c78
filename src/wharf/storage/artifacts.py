"""Artifact stores: immutable files addressed by their sha256.

An artifact's URI is ``sha256/<first two hex digits>/<digest>`` relative to the store's root, so a
file is stored once however many versions point at it, and a name never depends on user input.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Protocol
from urllib.parse import urlparse

from wharf.errors import WharfError


class ArtifactStore(Protocol):
    """Where version artifacts live."""

    def put(self, source: Path, sha256: str) -> tuple[str, bool]:
        """Store ``source`` under its digest; returns the key and whether it was newly written."""
        ...

    def local_path(self, key: str) -> Path:
        """A local file with the artifact's bytes (the store's own file, or a cached copy)."""
        ...

    def delete(self, key: str) -> None:
        """Remove the artifact; a missing one is not an error."""
        ...


def key_for(sha256: str) -> str:
    return f"sha256/{sha256[:2]}/{sha256}"


class LocalArtifactStore:
    """A folder on the local file system."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.root.mkdir(parents=True, exist_ok=True)

    def put(self, source: Path, sha256: str) -> tuple[str, bool]:
        key = key_for(sha256)
        target = self.root / key
        if target.exists():
            return key, False
        target.parent.mkdir(parents=True, exist_ok=True)
        # Copy beside the target, then rename: readers never see a half-written file.
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".incoming-")
        os.close(fd)
        try:
            shutil.copyfile(source, tmp)
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return key, True

    def local_path(self, key: str) -> Path:
        return self.root / key

    def delete(self, key: str) -> None:
        (self.root / key).unlink(missing_ok=True)


def open_artifact_store(url: str) -> ArtifactStore:
    """The store for ``url``: a folder path or a ``file://`` URL.

    :raises WharfError: the URL's scheme has no store.
    """
    parsed = urlparse(url)
    if parsed.scheme in ("", "file") or len(parsed.scheme) == 1:  # one letter: a Windows drive
        path = Path(parsed.path if parsed.scheme == "file" else url)
        return LocalArtifactStore(path)
    raise WharfError(
        f"Artifact store URL {url!r} has the scheme {parsed.scheme!r}; this wharf stores artifacts "
        "in a local folder (give a path or a file:// URL)."
    )
