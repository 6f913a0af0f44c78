"""The model registry: validated registration, lookup and deletion of versions.

Registration is all-or-nothing: the file is loaded by its runtime (so only real models of the
declared format get in, and the signature is inferred), stored under its digest, then recorded; a
failure at the database removes an artifact this registration wrote.
"""

from __future__ import annotations

import logging
import platform
import re
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import ValidationError

from wharf import runtimes
from wharf.errors import (
    AliasNotFound,
    ArtifactMismatch,
    InvalidInput,
    ModelNotFound,
    UnsafeModel,
    VersionNotFound,
    suggest,
)
from wharf.runtimes.base import Runtime
from wharf.signature import Signature
from wharf.storage import ArtifactStore, MetadataStore, VersionRecord
from wharf.storage.artifacts import file_sha256 as sha256_of  # the one digest of a stored file
from wharf.storage.metadata import ACTIVE as ACTIVE  # a version's states, for the layers above
from wharf.storage.metadata import ARCHIVED as ARCHIVED
from wharf.storage.metadata import STATUSES as STATUSES

log = logging.getLogger("wharf.registry")

NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
ALIAS_PATTERN = re.compile(r"^[a-z][a-z0-9_-]{0,63}$")
RESERVED_ALIASES = frozenset({"latest"})
"""``latest`` always means the newest active version; no alias may hide it."""
HEAD_BYTES = 4096
MAX_VERSION = 2**63 - 1
"""Version numbers are 64-bit integers in every database."""


def check_name(name: str) -> str:
    """:raises InvalidInput: ``name`` is not a valid model name."""
    if not NAME_PATTERN.match(name):
        raise InvalidInput(
            f"Invalid model name {name!r}: use 1-128 letters, digits, '.', '_' or '-', starting "
            "with a letter or digit.",
            field="name",
        )
    return name


def check_alias(alias: str) -> str:
    """:raises InvalidInput: ``alias`` is not a valid alias name."""
    if not ALIAS_PATTERN.match(alias) or alias in RESERVED_ALIASES:
        reason = "is reserved" if alias in RESERVED_ALIASES else "is not a valid alias"
        raise InvalidInput(
            f"{alias[:70]!r} {reason}: use 1-64 lowercase letters, digits, '_' or '-', starting with a "
            "letter (production, staging, canary).",
            field="alias",
        )
    return alias


def parse_ref(ref: str) -> tuple[str, str | None]:
    """``name`` or ``name@alias`` (how a predict URL names what answers) as ``(name, alias)``."""
    name, at, alias = ref.partition("@")
    check_name(name)
    return name, (check_alias(alias) if at else None)


def newest_active(versions: list[VersionRecord]) -> VersionRecord | None:
    """The latest of ``versions`` (oldest first): the newest not archived."""
    return next((v for v in reversed(versions) if not v.archived), None)


def parse_signature(value: Any, field: str = "signature") -> Signature | None:
    """A :class:`Signature` from its JSON form; :raises InvalidInput: naming the bad part."""
    if value is None or isinstance(value, Signature):
        return value
    try:
        return Signature.model_validate(value)
    except ValidationError as exc:
        error = exc.errors()[0]
        where = ".".join(str(part) for part in error["loc"])
        raise InvalidInput(
            f"Invalid signature at {where or 'top level'!r}: {error['msg']}; expected "
            '{"inputs": [{"name": ..., "dtype": "float64"|"int64"|"string"|"bool", '
            '"nullable": false}, ...], "output": {"kind": ..., "classes": [...]}}.',
            field=f"{field}.{where}" if where else field,
        ) from exc


def known_formats() -> list[str]:
    """Every format a runtime is installed for (built in, or registered by another package)."""
    return runtimes.formats()


def environment_versions() -> dict[str, str]:
    """Versions of Python, numpy and scikit-learn here (read from metadata: nothing imported)."""
    return {
        "python": platform.python_version(),
        "numpy": metadata.version("numpy"),
        "scikit-learn": metadata.version("scikit-learn"),
    }


LINEAGE = "lineage"
PARITY = "parity"
ANSWERED_BY = "answered_by"
METRICS = "metrics"
TRAINING = "training"
"""Keys in a version's ``extra``: where it came from, how faithful it is, which version answers for it,
how well it scored on held-out data and how it was trained."""
RESERVED_METADATA = frozenset({LINEAGE, PARITY, ANSWERED_BY, METRICS, TRAINING})
"""Keys of a version's ``extra`` that wharf writes itself (conversions, training jobs): no caller may
set them, or an upload could claim to be a verified twin of another version, or a trained one."""


@dataclass(frozen=True)
class Registration:
    """What a caller may say about a file it registers.

    :param extra: free-form metadata; keys in :data:`RESERVED_METADATA` are refused.
    :param provenance: what wharf itself records (a conversion's lineage and parity report).
    """

    format: str | None = None
    signature: Signature | None = None
    description: str = ""
    tags: dict[str, str] | None = None
    extra: dict[str, Any] | None = None
    provenance: dict[str, Any] | None = None
    reference: Mapping[str, Any] | None = None
    """Input column -> the values it had in the data the model was made from (1-D arrays): kept as
    the version's drift reference (bins and counts, not the rows)."""
    reference_source: str = "registration"


class Registry:
    """Registers, finds and deletes model versions.

    :param metadata: where version records live.
    :param artifacts: where artifact files live.
    :param trusted: type names trusted when loading skops files.
    """

    def __init__(
        self, metadata: MetadataStore, artifacts: ArtifactStore, trusted: tuple[str, ...] = ()
    ) -> None:
        self.metadata = metadata
        self.artifacts = artifacts
        self.trusted = trusted

    def register(
        self, name: str, source: Path, filename: str, options: Registration, *, allow_code: bool = True
    ) -> VersionRecord:
        """Validate ``source`` as a model and add it as the next version of ``name``.

        :param allow_code: accept formats that run code when loaded (joblib, pickle); the HTTP
            upload route passes the ``allow_pickle_uploads`` setting.
        :raises InvalidInput: bad name or signature.
        :raises InvalidModel: the file is not a model of its format.
        :raises UnsafeModel: a code-bearing format where ``allow_code`` is off.
        """
        check_name(name)
        reserved = sorted(RESERVED_METADATA & set(options.extra or {}))
        if reserved:
            raise InvalidInput(
                f"Metadata key {reserved[0]!r} is written by wharf itself (conversions); choose "
                "another name.",
                field=f"metadata.{reserved[0]}",
            )
        with source.open("rb") as fh:
            head = fh.read(HEAD_BYTES)
        fmt = options.format or runtimes.detect_format(filename, head)
        if fmt in runtimes.CODE_FORMATS and not allow_code:
            raise UnsafeModel(
                f"{fmt} files run code when they are loaded, so only admin keys may upload them "
                "(and, on a server without keys, only with WHARF_ALLOW_PICKLE_UPLOADS=true); the "
                "command line (wharf models register) always may. Upload an skops, ONNX, PMML, "
                "XGBoost or LightGBM file instead.",
                field="file",
            )
        runtime = self.load(fmt, source, options.signature)
        sha256 = sha256_of(source)
        library_versions = {**environment_versions(), **runtime.made_with}
        key, written = self.artifacts.put(source, sha256)
        try:
            record = self.metadata.add_version(
                name,
                format=fmt,
                signature=runtime.signature.model_dump(mode="json"),
                sha256=sha256,
                size=source.stat().st_size,
                artifact=key,
                filename=Path(filename).name[:256],
                description=options.description,
                tags=dict(options.tags or {}),
                library_versions=library_versions,
                warnings=[],
                extra={**(options.extra or {}), **(options.provenance or {})},
            )
        except BaseException:
            if written and not self.metadata.artifact_in_use(key):
                self.artifacts.delete(key)
            raise
        # A delete of another version with the same bytes may have removed the file between our
        # put and our commit (it saw no version using it); put it back now that one does.
        self.artifacts.put(source, sha256)
        if options.reference is not None:
            self._keep_reference(record, options.reference, options.reference_source)
        return record

    def _keep_reference(self, record: VersionRecord, columns: Mapping[str, Any], source: str) -> None:
        """Store a new version's drift reference; a failure is logged, not raised: the version is
        registered, and a reference can be uploaded for it later."""
        from wharf.services import drift

        try:
            reference = drift.build_reference({k: np.asarray(v) for k, v in columns.items()})
            self.metadata.monitoring.set_reference(
                record.name, record.version, source=source, rows=reference.rows, profile=reference.to_json()
            )
        except Exception:
            log.exception("could not keep the drift reference of %s:%s", record.name, record.version)

    def open(self, record: VersionRecord) -> Runtime:
        """Load a registered version, once its artifact is checked against its sha256.

        :raises ArtifactMismatch: the file is missing or its bytes changed since registration.
        """
        path = self.artifacts.local_path(record.artifact)
        actual = sha256_of(path) if path.is_file() else None
        if actual != record.sha256:
            found = "is missing" if actual is None else f"hashes to {actual[:12]}..."
            raise ArtifactMismatch(
                f"The artifact of {record.name}:{record.version} {found}, not to the sha256 recorded at "
                f"registration ({record.sha256[:12]}...); it is not loaded. Register the model again.",
                field="version",
            )
        return self.load(record.format, path, parse_signature(record.signature))

    def load(self, fmt: str, path: Path, signature: Signature | None) -> Runtime:
        """Load ``path`` with the runtime of ``fmt``."""
        cls = runtimes.runtime_class(fmt)
        return cls.load(path, fmt=fmt, signature=signature, trusted=self.trusted)

    def names(self, search: str | None = None) -> list[str]:
        """Names of the models (containing ``search``, any case, when given), sorted."""
        return self.metadata.model_names(search)

    def versions(
        self, name: str, *, status: str | None = None, tag: str | None = None
    ) -> list[VersionRecord]:
        """Versions of ``name``, oldest first; :raises ModelNotFound:.

        :param status: only those ``active`` or ``archived``.
        :param tag: only those with the tag ``key:value``, or with a tag ``key``.
        :raises InvalidInput: ``status`` is neither.
        """
        if status is not None and status not in STATUSES:
            raise InvalidInput(
                f"Status must be one of {list(STATUSES)}; got {status[:40]!r}.", field="status"
            )
        versions = self.metadata.versions(name)
        if not versions:
            raise ModelNotFound(self._unknown(name), field="name")
        if status is not None:
            versions = [v for v in versions if v.status == status]
        if tag is not None:
            key, has_value, value = tag.partition(":")
            versions = [v for v in versions if key in v.tags and (not has_value or v.tags[key] == value)]
        return versions

    def get(self, name: str, version: int | None = None) -> VersionRecord:
        """One version (the latest active one when ``version`` is None).

        :raises ModelNotFound: no such model, or it has no versions.
        :raises VersionNotFound: the model has no version ``version``.
        """
        if version is None:
            return self.latest(name)
        if not 0 <= version <= MAX_VERSION:
            raise VersionNotFound(f"Model {name!r} has no version {version}.", field="version")
        record = self.metadata.version(name, version)
        if record is not None:
            return record
        if not self.metadata.model_exists(name):
            raise ModelNotFound(self._unknown(name), field="name")
        numbers = [v.version for v in self.metadata.versions(name)]
        raise VersionNotFound(
            f"Model {name!r} has no version {version}; it has {numbers or 'none'}.", field="version"
        )

    def latest(self, name: str) -> VersionRecord:
        """The newest active version; :raises ModelNotFound: or VersionNotFound when all are archived."""
        record = self.metadata.version(name)
        if record is not None:
            return record
        archived = [v.version for v in self.metadata.versions(name)]
        if not archived:
            raise ModelNotFound(self._unknown(name), field="name")
        raise VersionNotFound(
            f"Every version of {name!r} is archived ({archived}); restore one (POST "
            f"/v1/models/{name}/versions/{archived[-1]}/restore) or name a version.",
            field="version",
        )

    def edit(
        self, name: str, version: int, *, description: str | None, tags: dict[str, str | None] | None
    ) -> VersionRecord:
        """Change a version's description and tags (a None tag value removes the tag)."""
        self.get(name, version)
        record = self.metadata.edit_version(name, version, description=description, tags=tags)
        if record is None:  # deleted between the two
            raise VersionNotFound(f"Model {name!r} has no version {version}.", field="version")
        return record

    def set_status(self, name: str, version: int, status: str) -> VersionRecord:
        """Archive (``archived``) or restore (``active``) a version.

        An archived version stays registered (its lineage, metrics and artifact are kept) but is
        never ``latest``, no alias may point at it, and it answers no predictions.

        :raises Conflict: archiving a version an alias points at.
        """
        assert status in (ACTIVE, ARCHIVED)
        self.get(name, version)
        record = self.metadata.set_status(name, version, status)
        if record is None:
            raise VersionNotFound(f"Model {name!r} has no version {version}.", field="version")
        return record

    def aliases(self, name: str) -> dict[str, int]:
        """``name``'s aliases; :raises ModelNotFound:."""
        self.versions(name)
        return self.metadata.aliases(name)

    def aliases_of(self, name: str) -> dict[str, int]:
        """``name``'s aliases, with no check that the model exists (none for an unknown name)."""
        return self.metadata.aliases(name)

    def set_alias(self, name: str, alias: str, version: int) -> int | None:
        """Point ``alias`` at ``version`` (atomically); returns where it pointed before."""
        check_alias(alias)
        self.get(name, version)
        return self.metadata.set_alias(name, alias, version)

    def delete_alias(self, name: str, alias: str) -> int:
        """Remove ``alias``; returns the version it pointed at.  :raises AliasNotFound:."""
        check_alias(alias)
        self.versions(name)
        previous = self.metadata.delete_alias(name, alias)
        if previous is None:
            raise AliasNotFound(self._unknown_alias(name, alias), field="alias")
        return previous

    def resolve_alias(self, name: str, alias: str) -> VersionRecord:
        """The version ``alias`` of ``name`` points at; :raises AliasNotFound:."""
        aliases = self.aliases(name)
        if alias not in aliases:
            raise AliasNotFound(self._unknown_alias(name, alias, aliases), field="alias")
        return self.get(name, aliases[alias])

    def _unknown_alias(self, name: str, alias: str, aliases: dict[str, int] | None = None) -> str:
        known = sorted(self.metadata.aliases(name) if aliases is None else aliases)
        listed = f" Its aliases: {', '.join(known)}." if known else " It has no aliases."
        return f"Model {name!r} has no alias {alias!r}." + (suggest(alias, known) or listed)

    def delete(self, name: str, version: int | None = None) -> list[VersionRecord]:
        """Delete one version, or the whole model when ``version`` is None."""
        if version is None:
            self.versions(name)
            deleted = self.metadata.delete_model(name)
        else:
            self.get(name, version)  # the precise not-found errors
            record = self.metadata.delete_version(name, version)
            deleted = [] if record is None else [record]
        gone = {record.version for record in deleted}
        for record in self.metadata.versions(name):
            if record.extra.get(ANSWERED_BY) in gone:  # its fast twin was deleted: answer itself
                self.metadata.update_extra(name, record.version, {ANSWERED_BY: None})
        for record in deleted:
            if not self.metadata.artifact_in_use(record.artifact):
                self.artifacts.delete(record.artifact)
        return deleted

    def _unknown(self, name: str) -> str:
        return f"No model named {name!r}." + suggest(name, self.names())
