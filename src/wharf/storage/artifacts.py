"""Artifact stores: immutable files addressed by their sha256.

An artifact's URI is ``sha256/<first two hex digits>/<digest>`` relative to the store's root, so a
file is stored once however many versions point at it, and a name never depends on user input.

Two stores: a local folder (the default) and an S3 bucket (AWS, or any S3-compatible store), which
keeps a read-through cache of the files it hands out. boto3 is imported only when an ``s3://`` URL
is opened; it comes with ``pip install 'wharf[s3]'``.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlparse

from pydantic import SecretStr

from wharf.errors import ArtifactMismatch, InvalidSettings, MissingDependency, WharfError

DEFAULT_CACHE = Path(".wharf") / "cache" / "artifacts"
"""Where an S3 store caches the files it downloads, unless told otherwise."""
DIGEST = re.compile(r"^[0-9a-f]{64}$")
NO_OBJECT = frozenset({"404", "NoSuchKey", "NotFound"})
NO_BUCKET = frozenset({"404", "NoSuchBucket", "NotFound"})
"""S3 error codes for an absent object, an absent bucket (HEAD answers carry only the status)."""
REFUSED_CODES = frozenset(
    {"403", "AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "InvalidToken", "ExpiredToken"}
)


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


def file_sha256(path: Path) -> str:
    """The hex sha256 of the file at ``path``, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


class S3ArtifactStore:
    """A bucket of an S3-compatible object store, with a local read-through cache.

    The artifact ``key`` is the object ``<prefix>/<key>``. :meth:`local_path` downloads an object
    once into ``<cache>/<key>`` (to a temporary file beside it, checked against the digest its key
    names, then renamed: readers never see half a file, nor bytes that are not the key's) and reuses
    that copy afterwards; nothing else removes cached files than :meth:`delete`. Safe to share
    between threads; a forked process makes its own connections on first use.

    :param bucket: the bucket's name.
    :param prefix: folder inside the bucket, without surrounding slashes; ``""`` for its root.
    :param cache: the local cache folder (created when missing).
    :param endpoint_url: the S3 API's URL (MinIO, Ceph, moto); default: AWS's, from ``region``.
        With an endpoint, requests name the bucket in the path, which every S3-compatible store reads.
    :param region: the bucket's region; default: the AWS SDK's (``AWS_REGION``, its config file).
    :param access_key_id: with ``secret_access_key``, the credentials; both unset: the AWS SDK's own
        chain decides (its variables, profiles, instance and task roles).
    :raises MissingDependency: boto3 is not installed.
    :raises InvalidSettings: only one half of the credentials is given; the bucket does not exist;
        the store refuses the credentials.
    :raises WharfError: the endpoint does not answer.
    """

    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        *,
        cache: Path = DEFAULT_CACHE,
        endpoint_url: str | None = None,
        region: str | None = None,
        access_key_id: str | None = None,
        secret_access_key: SecretStr | None = None,
    ) -> None:
        if (access_key_id is None) != (secret_access_key is None):
            given, missing = (
                ("WHARF_S3_ACCESS_KEY_ID", "WHARF_S3_SECRET_ACCESS_KEY")
                if access_key_id is not None
                else ("WHARF_S3_SECRET_ACCESS_KEY", "WHARF_S3_ACCESS_KEY_ID")
            )
            raise InvalidSettings(
                f"{given} is set but {missing} is not; set both, or neither to let the AWS SDK find "
                "credentials itself (its variables, profiles or an instance role).",
                field=missing.removeprefix("WHARF_").lower(),
            )
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.url = f"s3://{bucket}/{self.prefix}" if self.prefix else f"s3://{bucket}"
        self.cache = cache.resolve()
        self.endpoint_url = endpoint_url
        self.region = region
        self._access_key_id = access_key_id
        self._secret_access_key = secret_access_key
        self._boto = _import_boto(self.url)
        self._client: Any = None
        self._pid: int | None = None
        self._check_bucket()

    def __repr__(self) -> str:
        return f"S3ArtifactStore({self.url!r}, endpoint_url={self.endpoint_url!r})"

    @property
    def client(self) -> Any:
        """This process's boto3 S3 client (boto3 clients are thread-safe, not fork-safe)."""
        pid = os.getpid()
        if self._pid != pid:
            self._client, self._pid = self._new_client(), pid
        return self._client

    def object_name(self, key: str) -> str:
        """The object's name in the bucket for the artifact ``key``."""
        return f"{self.prefix}/{key}" if self.prefix else key

    def put(self, source: Path, sha256: str) -> tuple[str, bool]:
        key = key_for(sha256)
        name = self.object_name(key)
        try:
            self.client.head_object(Bucket=self.bucket, Key=name)
            return key, False
        except self._boto.ClientError as exc:
            if _code(exc) not in NO_OBJECT:
                raise self._failed("look up", key, exc) from exc
        except self._boto.errors as exc:
            raise self._failed("look up", key, exc) from exc
        try:
            self.client.upload_file(str(source), self.bucket, name)  # multipart past 8 MiB
        except self._boto.errors as exc:
            raise self._failed("store", key, exc) from exc
        return key, True

    def local_path(self, key: str) -> Path:
        """The cached copy of ``key``, downloaded first when not cached; a path to no file when the
        object is missing from the bucket.

        :raises ArtifactMismatch: the object's bytes do not hash to the digest its key names.
        """
        target = self.cache / key
        if target.is_file():
            return target
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".incoming-")
        os.close(fd)
        try:
            try:
                self.client.download_file(self.bucket, self.object_name(key), tmp)
            except self._boto.ClientError as exc:
                if _code(exc) in NO_OBJECT:
                    return target
                raise self._failed("read", key, exc) from exc
            except self._boto.errors as exc:
                raise self._failed("read", key, exc) from exc
            expected = key.rsplit("/", 1)[-1]
            if DIGEST.match(expected):
                actual = file_sha256(Path(tmp))
                if actual != expected:
                    raise ArtifactMismatch(
                        f"The object {self.url}/{key} hashes to {actual[:12]}..., not to the digest "
                        "its name records: it was changed in the bucket after wharf wrote it, and it "
                        "is not used. Delete the versions or datasets that use it and add their files "
                        "again."
                    )
            os.replace(tmp, target)
        finally:
            Path(tmp).unlink(missing_ok=True)
        return target

    def delete(self, key: str) -> None:
        try:
            self.client.delete_object(Bucket=self.bucket, Key=self.object_name(key))
        except self._boto.errors as exc:
            raise self._failed("delete", key, exc) from exc
        (self.cache / key).unlink(missing_ok=True)

    def _new_client(self) -> Any:
        credentials = {}
        if self._access_key_id is not None and self._secret_access_key is not None:
            credentials = {
                "aws_access_key_id": self._access_key_id,
                "aws_secret_access_key": self._secret_access_key.get_secret_value(),
            }
        config = self._boto.Config(
            connect_timeout=10,
            read_timeout=60,
            retries={"max_attempts": 3, "mode": "standard"},
            s3={"addressing_style": "path" if self.endpoint_url else "auto"},
        )
        session = self._boto.boto3.session.Session(region_name=self.region, **credentials)
        return session.client("s3", endpoint_url=self.endpoint_url, config=config)

    def _where(self) -> str:
        return self.endpoint_url or f"AWS S3 ({self.region or 'the AWS SDK default region'})"

    def _check_bucket(self) -> None:
        where = self._where()
        try:
            self.client.head_bucket(Bucket=self.bucket)
        except self._boto.ClientError as exc:
            code = _code(exc)
            if code in NO_BUCKET:
                raise InvalidSettings(
                    f"The artifact store {self.url} names the bucket {self.bucket!r}, which does not "
                    f"exist at {where}; create it (aws s3 mb s3://{self.bucket}), or point "
                    "WHARF_ARTIFACTS at an existing bucket (and WHARF_S3_ENDPOINT_URL at its store).",
                    field="artifacts",
                ) from exc
            if code in REFUSED_CODES:
                whose = (
                    "the key WHARF_S3_ACCESS_KEY_ID names"
                    if self._access_key_id is not None
                    else "the credentials the AWS SDK found (WHARF_S3_ACCESS_KEY_ID is not set)"
                )
                raise InvalidSettings(
                    f"{where} refused {whose} access to the bucket {self.bucket!r} ({code}); check "
                    "WHARF_S3_ACCESS_KEY_ID and WHARF_S3_SECRET_ACCESS_KEY, and that the key may "
                    "list, read and write the bucket.",
                    field="s3_access_key_id",
                ) from exc
            raise self._failed("reach", "", exc) from exc
        except self._boto.NoCredentialsError as exc:
            raise InvalidSettings(
                f"No credentials for the artifact store {self.url}: set WHARF_S3_ACCESS_KEY_ID and "
                "WHARF_S3_SECRET_ACCESS_KEY, or give the AWS SDK its own (AWS_ACCESS_KEY_ID and "
                "AWS_SECRET_ACCESS_KEY, a profile, an instance role).",
                field="s3_access_key_id",
            ) from exc
        except self._boto.errors as exc:
            raise WharfError(
                f"The artifact store {self.url} could not be reached at {where}: {exc}. Check "
                "WHARF_S3_ENDPOINT_URL and WHARF_S3_REGION, and that the store is running."
            ) from exc

    def _failed(self, action: str, key: str, exc: Exception) -> WharfError:
        reason = f"{_code(exc)}: {_message(exc)}" if isinstance(exc, self._boto.ClientError) else str(exc)
        target = f"{self.url}/{key}" if key else self.url
        return WharfError(
            f"The artifact store could not {action} {target} at {self._where()} ({reason}). Check "
            "that the bucket exists, that the store answers, and that the credentials may list, read "
            "and write the bucket."
        )


class _Boto:
    """The parts of boto3 the S3 store uses, imported on first use."""

    def __init__(self) -> None:
        import boto3
        import boto3.session
        from boto3.exceptions import Boto3Error
        from botocore.config import Config
        from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

        self.boto3 = boto3
        self.Config = Config
        self.ClientError = ClientError
        self.NoCredentialsError = NoCredentialsError
        self.errors: tuple[type[Exception], ...] = (ClientError, BotoCoreError, Boto3Error)


def _import_boto(url: str) -> _Boto:
    """:raises MissingDependency: boto3 is not installed."""
    try:
        return _Boto()
    except ImportError as exc:
        raise MissingDependency(
            f"Artifacts in an S3 bucket ({url}) need boto3, which is not installed; run: "
            "pip install 'wharf[s3]'."
        ) from exc


def _code(exc: Exception) -> str:
    return str(getattr(exc, "response", {}).get("Error", {}).get("Code", ""))


def _message(exc: Exception) -> str:
    return str(getattr(exc, "response", {}).get("Error", {}).get("Message", "")) or str(exc)


def open_artifact_store(
    url: str,
    *,
    cache: Path = DEFAULT_CACHE,
    s3_endpoint_url: str | None = None,
    s3_region: str | None = None,
    s3_access_key_id: str | None = None,
    s3_secret_access_key: SecretStr | None = None,
) -> ArtifactStore:
    """The store for ``url``: a folder path or a ``file://`` URL, or ``s3://bucket/prefix``.

    :param cache: where an S3 store caches the files it hands out.
    :param s3_endpoint_url: see :class:`S3ArtifactStore` (``endpoint_url``); also ``s3_region``,
        ``s3_access_key_id`` and ``s3_secret_access_key``. A folder store ignores them all.
    :raises InvalidSettings: the URL's scheme has no store, or it names no bucket.
    :raises WharfError: the bucket cannot be used (see :class:`S3ArtifactStore`).
    """
    parsed = urlparse(url)
    if parsed.scheme in ("", "file") or len(parsed.scheme) == 1:  # one letter: a Windows drive
        path = Path(parsed.path if parsed.scheme == "file" else url)
        return LocalArtifactStore(path)
    if parsed.scheme == "s3":
        if not parsed.netloc:
            raise InvalidSettings(
                f"Artifact store URL {url!r} names no bucket; write it as s3://bucket/prefix.",
                field="artifacts",
            )
        return S3ArtifactStore(
            parsed.netloc,
            parsed.path,
            cache=cache,
            endpoint_url=s3_endpoint_url,
            region=s3_region,
            access_key_id=s3_access_key_id,
            secret_access_key=s3_secret_access_key,
        )
    raise InvalidSettings(
        f"Artifact store URL {url!r} has the scheme {parsed.scheme!r}; wharf stores artifacts in a "
        "local folder (a path or a file:// URL) or an S3 bucket (s3://bucket/prefix).",
        field="artifacts",
    )
