"""Every error wharf raises on purpose, defined once.

Each class carries the HTTP status it maps to, a stable problem ``type`` slug (RFC 9457) and a CLI
exit code; :mod:`wharf.http.problems` and :mod:`wharf.cli` are the only places that turn them into
responses. Instances say *where* the fault is (``field``, ``row``, ``column``) when it has a place::

    WharfError                      500  internal
    ├── BadRequest                  400  bad-request
    │   ├── MalformedBody           400  malformed-body       the body does not parse
    │   └── UnsupportedMediaType    415  unsupported-media-type
    ├── Unauthorized                401  unauthorized         no API key, or not a valid and current one
    ├── Forbidden                   403  forbidden            the key's role or model limit does not allow it
    ├── NotFound                    404  not-found
    │   ├── ModelNotFound           404  model-not-found
    │   ├── VersionNotFound         404  version-not-found
    │   ├── DatasetNotFound         404  dataset-not-found
    │   ├── JobNotFound             404  job-not-found
    │   ├── KeyNotFound             404  key-not-found
    │   └── AliasNotFound           404  alias-not-found
    ├── Conflict                    409  conflict
    │   └── IncompatibleVersion     409  incompatible-version  framework major.minor differs (strict)
    ├── ContentTooLarge             413  content-too-large    body, upload or row count over a limit
    ├── InvalidInput                422  invalid-input        rows that do not fit the signature
    ├── InvalidModel                422  invalid-model        an upload that is not a model of its format
    │   └── UnsafeModel             422  unsafe-model         types not on the trusted list
    ├── InvalidDataset              422  invalid-dataset      an upload that is not a table wharf reads
    ├── UnsupportedConversion       422  unsupported-conversion  a step or model the exporter cannot convert
    ├── ParityFailed                422  parity-failed        the converted model answers differently
    ├── TooManyRequests             429  too-many-requests    over a rate limit; carries ``retry_after``
    │   └── Overloaded              503  overloaded           waited past queue_timeout_seconds for its model
    ├── InvalidSettings             500  invalid-settings     a setting's value is wrong (exit code 2)
    ├── ArtifactMismatch            500  artifact-mismatch    a stored file's sha256 is not its version's
    ├── MissingDependency           501  missing-dependency   a format's extra is not installed
    ├── SchemaMismatch              503  schema-mismatch      the database needs `wharf db upgrade`
    └── ModelError                  500  model-error          the model failed on valid input
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Sequence
from http import HTTPStatus
from typing import Any, ClassVar

PROBLEM_BASE = "urn:wharf:problem:"


def suggest(name: str, candidates: Sequence[str]) -> str:
    """`` Did you mean 'x'?`` for a near miss, else an empty string."""
    close = difflib.get_close_matches(name, list(candidates), n=1, cutoff=0.6)
    return f" Did you mean {close[0]!r}?" if close else ""


class WharfError(Exception):
    """Base of every deliberate wharf error.

    :param detail: what was wrong, what was expected, what was got, and the fix.
    :param field: location in the request body, e.g. ``instances[3].age``.
    :param row: zero-based row index of the offending input row.
    :param column: the input column at fault.
    """

    status: ClassVar[HTTPStatus] = HTTPStatus.INTERNAL_SERVER_ERROR
    slug: ClassVar[str] = "internal"
    exit_code: ClassVar[int] = 1

    def __init__(
        self,
        detail: str,
        *,
        field: str | None = None,
        row: int | None = None,
        column: str | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(detail)
        self.detail = detail
        self.field = field
        self.row = row
        self.column = column
        self.extra = extra

    @property
    def title(self) -> str:
        return self.status.phrase

    @property
    def type(self) -> str:
        return PROBLEM_BASE + self.slug

    def to_problem(self) -> dict[str, Any]:
        """Render as an RFC 9457 problem object (without ``instance``)."""
        problem: dict[str, Any] = {
            "type": self.type,
            "title": self.title,
            "status": int(self.status),
            "detail": self.detail,
        }
        for key in ("field", "row", "column"):
            value = getattr(self, key)
            if value is not None:
                problem[key] = value
        problem.update(self.extra)
        return problem


class BadRequest(WharfError):
    status = HTTPStatus.BAD_REQUEST
    slug = "bad-request"
    exit_code = 2


class MalformedBody(BadRequest):
    slug = "malformed-body"


class UnsupportedMediaType(BadRequest):
    status = HTTPStatus.UNSUPPORTED_MEDIA_TYPE
    slug = "unsupported-media-type"


class Unauthorized(WharfError):
    """No API key, or one that is malformed, unknown, wrong, revoked or expired (all alike)."""

    status = HTTPStatus.UNAUTHORIZED
    slug = "unauthorized"
    exit_code = 7


class Forbidden(WharfError):
    """A valid key whose role lacks the permission, or whose model limit leaves the model out.

    A model outside the limit gets the same answer whether it exists or not.
    """

    status = HTTPStatus.FORBIDDEN
    slug = "forbidden"
    exit_code = 7


class NotFound(WharfError):
    status = HTTPStatus.NOT_FOUND
    slug = "not-found"
    exit_code = 3


class ModelNotFound(NotFound):
    slug = "model-not-found"


class VersionNotFound(NotFound):
    slug = "version-not-found"


class DatasetNotFound(NotFound):
    slug = "dataset-not-found"


class JobNotFound(NotFound):
    slug = "job-not-found"


class KeyNotFound(NotFound):
    slug = "key-not-found"


class AliasNotFound(NotFound):
    slug = "alias-not-found"


class Conflict(WharfError):
    status = HTTPStatus.CONFLICT
    slug = "conflict"
    exit_code = 4


class IncompatibleVersion(Conflict):
    slug = "incompatible-version"


class ContentTooLarge(WharfError):
    status = HTTPStatus.REQUEST_ENTITY_TOO_LARGE
    slug = "content-too-large"
    exit_code = 2

    @property
    def title(self) -> str:
        return "Content Too Large"


class InvalidInput(WharfError):
    status = HTTPStatus.UNPROCESSABLE_ENTITY
    slug = "invalid-input"
    exit_code = 2

    @property
    def title(self) -> str:
        return "Invalid Input"


class InvalidModel(WharfError):
    status = HTTPStatus.UNPROCESSABLE_ENTITY
    slug = "invalid-model"
    exit_code = 2

    @property
    def title(self) -> str:
        return "Invalid Model"


class UnsafeModel(InvalidModel):
    slug = "unsafe-model"

    @property
    def title(self) -> str:
        return "Unsafe Model"


class InvalidDataset(WharfError):
    """An uploaded file that is not a table wharf can read, or not one it can train on.

    The detail names the file; ``field`` is ``file``, and where the parser can say, ``line`` (1-based,
    in text files), ``cell`` (Excel), ``row`` (zero-based data row) or ``column`` (a column's name).
    """

    status = HTTPStatus.UNPROCESSABLE_ENTITY
    slug = "invalid-dataset"
    exit_code = 2

    @property
    def title(self) -> str:
        return "Invalid Dataset"


class UnsupportedConversion(WharfError):
    """A model, or one step of a pipeline, that an exporter cannot write in the target format.

    The detail names the step (its class and, in a pipeline, its path) and the format.
    """

    status = HTTPStatus.UNPROCESSABLE_ENTITY
    slug = "unsupported-conversion"
    exit_code = 2

    @property
    def title(self) -> str:
        return "Unsupported Conversion"


class ParityFailed(WharfError):
    """A conversion whose predictions fall outside the tolerance; carries ``parity``, the report."""

    status = HTTPStatus.UNPROCESSABLE_ENTITY
    slug = "parity-failed"
    exit_code = 2

    @property
    def parity(self) -> dict[str, Any]:
        return dict(self.extra.get("parity") or {})

    @property
    def title(self) -> str:
        return "Parity Failed"


class TooManyRequests(WharfError):
    """Over a rate limit; ``retry_after`` (whole seconds, also in the problem body) says when to retry.

    :param retry_after: seconds until the limit lets the caller through again (rounded up).
    """

    status = HTTPStatus.TOO_MANY_REQUESTS
    slug = "too-many-requests"
    exit_code = 8

    def __init__(self, detail: str, *, retry_after: float, **extra: Any) -> None:
        super().__init__(detail, retry_after=max(math.ceil(retry_after), 1), **extra)

    @property
    def retry_after(self) -> int:
        return int(self.extra["retry_after"])


class Overloaded(TooManyRequests):
    """A request that waited for its model longer than ``queue_timeout_seconds``: the server is
    behind. 503 with ``Retry-After``; the request was never run."""

    status = HTTPStatus.SERVICE_UNAVAILABLE
    slug = "overloaded"
    exit_code = 1

    @property
    def title(self) -> str:
        return "Service Unavailable"


class InvalidSettings(WharfError):
    slug = "invalid-settings"
    exit_code = 2

    @property
    def title(self) -> str:
        return "Invalid Settings"


class ArtifactMismatch(WharfError):
    """A version's artifact whose bytes no longer hash to the sha256 recorded at registration."""

    slug = "artifact-mismatch"

    @property
    def title(self) -> str:
        return "Artifact Mismatch"


class MissingDependency(WharfError):
    status = HTTPStatus.NOT_IMPLEMENTED
    slug = "missing-dependency"
    exit_code = 5

    @property
    def title(self) -> str:
        return "Missing Dependency"


class ModelError(WharfError):
    slug = "model-error"

    @property
    def title(self) -> str:
        return "Model Error"


class SchemaMismatch(WharfError):
    """The metadata database is at another schema revision than this wharf's (exit code 9).

    Behind, or made before migrations: ``wharf db upgrade`` brings it to this wharf's. Ahead: a newer
    wharf upgraded it. ``found`` and ``needed`` (in ``extra``) are the two revisions.
    """

    status = HTTPStatus.SERVICE_UNAVAILABLE
    slug = "schema-mismatch"
    exit_code = 9

    @property
    def title(self) -> str:
        return "Schema Mismatch"
