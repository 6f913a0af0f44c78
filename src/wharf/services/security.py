"""API keys, roles and the audit log: who may call wharf, what each caller may do, and what was done.

Roles nest, ``reader < predictor < trainer < admin``, each holding the permissions of the roles below
it (:data:`ROLE_PERMISSIONS`); a route names the one permission it needs. A key may be limited to
some models: asking about any other model is refused before anything is looked up, so the answer is
the same whether that model exists or not.

A key is ``wharf_<id>_<secret>``: ``id`` is 8 lowercase hex characters, public (shown in lists, logs
and the audit log); ``secret`` is 256 random bits from :func:`secrets.token_urlsafe`. Only the sha256
of the whole string is stored, compared with :func:`hmac.compare_digest`. A plain digest is enough
(no slow password hash): the secret is random, not chosen by a person. A malformed, unknown, wrong,
revoked or expired key all get one and the same :class:`~wharf.errors.Unauthorized`.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import re
import secrets
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from wharf.errors import Conflict, Forbidden, InvalidInput, KeyNotFound, Unauthorized, WharfError, suggest
from wharf.runtimes import CODE_FORMATS
from wharf.services.registry import NAME_PATTERN
from wharf.storage.audit import AuditRecord, AuditTable
from wharf.storage.keys import KeyRecord, KeyTable, Records

log = logging.getLogger(__name__)

ROLES: tuple[str, ...] = ("reader", "predictor", "trainer", "admin")
"""Weakest first; each role has every permission of the roles before it."""
PERMISSIONS: tuple[str, ...] = ("read", "predict", "train", "register", "register_code", "delete", "admin")
_GRANTS = {
    "reader": {"read"},  # list and read metadata: models, versions, datasets, jobs, stats
    "predictor": {"predict"},
    "trainer": {"train", "register"},  # datasets, jobs, fit; register data formats, convert, set fast
    "admin": {"register_code", "delete", "admin"},  # pickles and joblib files; deletes; keys, audit log
}
ROLE_PERMISSIONS: dict[str, frozenset[str]] = {
    role: frozenset().union(*(_GRANTS[r] for r in ROLES[: i + 1])) for i, role in enumerate(ROLES)
}
UNLIMITED_ONLY: frozenset[str] = frozenset({"admin"})
"""Permissions a key limited to some models never has: keys and the audit log span every model."""

KEY_PATTERN = re.compile(r"wharf_(?P<id>[0-9a-f]{8})_(?P<secret>[A-Za-z0-9_-]{32,256})")
MIN_SECRET_SYMBOLS = 8
"""A secret an operator chose must use at least this many distinct characters."""
CACHE_ENTRIES = 10_000
"""Most keys (and unknown ids) a process keeps in its key cache."""
TOUCH_SECONDS = 60.0
"""A key's ``last_used_at`` is written at most this often."""
MAX_NAME = 256
MAX_AUDIT_PAGE = 1000
MAX_DETAIL_CHARS = 2000
"""An audit entry's ``detail``, as JSON, longer than this is stored cut short."""

HOW = "send it as 'Authorization: Bearer <key>' or 'X-API-Key: <key>'"
MISSING = f"This route needs an API key: {HOW}. An admin creates keys with 'wharf keys create'."
INVALID = (
    f"Invalid or expired API key: {HOW} with a current key. An admin creates keys with 'wharf keys create'."
)
_DECOY = hashlib.sha256(b"wharf: no such key").hexdigest()
_UNITS = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
_DURATION = re.compile(r"(\d{1,6})\s*([mhdw])")


def digest(key: str) -> str:
    """The stored form of a key: sha256 hex of the whole key string."""
    return hashlib.sha256(key.encode()).hexdigest()


def new_key() -> tuple[str, str]:
    """A fresh ``(id, key)``; the key is ``wharf_<id>_<secret>``."""
    key_id = secrets.token_hex(4)
    return key_id, f"wharf_{key_id}_{secrets.token_urlsafe(32)}"


def permission_to_register(format: str) -> str:
    """``register_code`` for formats whose files run code when loaded (joblib, pickle), else ``register``."""
    return "register_code" if format in CODE_FORMATS else "register"


def parse_expires(value: str, now: datetime | None = None) -> datetime:
    """When a key expires, from ``30d``, ``12h``, ``90m``, ``2w`` (from ``now``) or an ISO 8601 date or time.

    A date or time without a zone is UTC. :raises InvalidInput: neither form.
    """
    now = now or datetime.now(UTC)
    text = value.strip()
    try:
        if match := _DURATION.fullmatch(text.lower()):
            return now + timedelta(**{_UNITS[match[2]]: int(match[1])})
        when = datetime.fromisoformat(text)
    except (ValueError, OverflowError) as exc:
        raise InvalidInput(
            f"Invalid expiry {value!r}: give a duration such as '30d', '12h', '90m' or '2w', or an ISO 8601 "
            "date or time such as '2030-01-31' or '2030-01-31T12:00:00+00:00'.",
            field="expires",
        ) from exc
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def _roles_with(permission: str) -> str:
    return ", ".join(role for role in ROLES if permission in ROLE_PERMISSIONS[role])


@dataclass(frozen=True)
class Principal:
    """Who is calling: an authenticated key, or :data:`ANONYMOUS_ADMIN` where auth is off.

    :param key_id: the key's public id; None for the anonymous principal.
    :param models: the model names the key is limited to; None for every model.
    """

    key_id: str | None
    role: str
    models: frozenset[str] | None = None
    name: str = ""

    @classmethod
    def of(cls, record: KeyRecord) -> Principal:
        models = None if record.models is None else frozenset(record.models)
        return cls(key_id=record.id, role=record.role, models=models, name=record.name)

    @property
    def actor(self) -> str:
        """The key's id, or ``anonymous``: what ``created_by`` and logs call this caller."""
        return self.key_id or "anonymous"

    def can(self, permission: str) -> bool:
        """Whether this caller's role has ``permission`` (and, for key and audit routes, no model limit)."""
        if permission not in PERMISSIONS:
            raise ValueError(f"unknown permission {permission!r}; wharf's are {PERMISSIONS}")
        if self.models is not None and permission in UNLIMITED_ONLY:
            return False
        return permission in ROLE_PERMISSIONS.get(self.role, frozenset())

    def sees(self, model: str) -> bool:
        """Whether the key's model limit includes ``model`` (whether or not such a model exists)."""
        return self.models is None or model in self.models

    def visible(self, models: Iterable[str]) -> list[str]:
        """Of ``models``, those this caller may see, in their order: what listing routes show."""
        return [name for name in models if self.sees(name)]

    def require(self, permission: str, model: str | None = None) -> None:
        """:raises Forbidden: this caller may not use ``permission`` (on ``model``, when given)."""
        if not self.can(permission):
            if self.models is not None and permission in UNLIMITED_ONLY:
                detail = (
                    "This key is limited to some models; managing keys and reading the audit log need "
                    "an admin key without a model limit."
                )
            else:
                detail = (
                    f"A {self.role} key may not do this: it needs the {permission!r} permission, which "
                    f"{_roles_with(permission)} keys have. Ask an admin for a key of such a role."
                )
            raise Forbidden(detail)
        if model is not None and not self.sees(model):
            raise Forbidden(
                f"This key may not use model {model!r}: it is limited to other models. Ask an admin for "
                "a key that includes it.",
                field="name",
            )


ANONYMOUS_ADMIN = Principal(key_id=None, role="admin", models=None, name="anonymous")
"""The caller of every request on a server whose operator turned authentication off."""


def _check_role(role: str) -> str:
    if role not in ROLES:
        raise InvalidInput(
            f"Unknown role {role!r}; use one of {', '.join(ROLES)}.{suggest(role, ROLES)}", field="role"
        )
    return role


def _check_models(models: Iterable[str] | None) -> list[str] | None:
    if models is None:
        return None
    names = sorted(set(models))
    if not names:
        raise InvalidInput(
            "A key limited to no models can use none; leave 'models' out for a key that reaches every model.",
            field="models",
        )
    for name in names:
        if not isinstance(name, str) or not NAME_PATTERN.match(name):
            raise InvalidInput(
                f"Invalid model name {name!r} in 'models': use 1-128 letters, digits, '.', '_' or '-', "
                "starting with a letter or digit.",
                field="models",
            )
    return names


class Keys:
    """Creates, lists, revokes and checks API keys.

    :param table: the keys table.
    :param touch_seconds: how often, at most, a key's ``last_used_at`` is written.
    :param cache_seconds: how long a key read from the database is trusted before it is read again:
        a revocation reaches every process (and replica) within this time, and a request costs no
        database read in between. 0 reads it on every request.
    """

    def __init__(
        self, table: KeyTable, touch_seconds: float = TOUCH_SECONDS, cache_seconds: float = 0.0
    ) -> None:
        self.table = table
        self.touch_seconds = touch_seconds
        self.cache_seconds = cache_seconds
        self._cache: dict[str, tuple[float, tuple[KeyRecord, str] | None]] = {}
        self._touched: dict[str, float] = {}
        """Key id -> ``time.monotonic()`` of this process's last write of its ``last_used_at``."""
        self._lock = threading.Lock()

    # -- managing keys ---------------------------------------------------------------------

    def create(
        self,
        role: str,
        models: Iterable[str] | None = None,
        expires_at: datetime | None = None,
        name: str = "",
        created_by: str = "cli",
    ) -> tuple[KeyRecord, str]:
        """A new key and its full string, which is shown this once and stored only as a digest.

        :param models: the model names it may use; None for every model.
        :param expires_at: when it stops working (a time without a zone is UTC); None: never.
        :param created_by: the creating key's id, or ``cli``.
        :raises InvalidInput: an unknown role, a bad model name, an empty model list, an expiry in the
            past, a name over 256 characters.
        """
        _check_role(role)
        names = _check_models(models)
        if expires_at is not None:
            expires_at = expires_at if expires_at.tzinfo else expires_at.replace(tzinfo=UTC)
            if expires_at <= datetime.now(UTC):
                raise InvalidInput(
                    f"The expiry {expires_at.isoformat()} is in the past; give a later time.", field="expires"
                )
        if len(name) > MAX_NAME:
            raise InvalidInput(
                f"A key's name has at most {MAX_NAME} characters; got {len(name)}.", field="name"
            )
        for _ in range(8):  # ids are 32 random bits: a clash is rare, and a second one rarer still
            key_id, key = new_key()
            record = self.table.add(
                key_id,
                digest(key),
                role,
                models=names,
                name=name,
                created_by=created_by,
                expires_at=expires_at,
            )
            if record is not None:
                return record, key
        raise WharfError("Could not find a free key id; try again.")

    def list(self, include_revoked: bool = True) -> Records:
        """Every key, oldest first (none holds its secret)."""
        return self.table.list(include_revoked)

    def get(self, key_id: str) -> KeyRecord:
        """:raises KeyNotFound: no key has this id."""
        record = self.table.get(key_id) if re.fullmatch(r"[0-9a-f]{8}", key_id) else None
        if record is None:
            raise KeyNotFound(f"No API key with id {key_id!r}; 'wharf keys list' shows them.", field="key_id")
        return record

    def revoke(self, key_id: str) -> KeyRecord:
        """Revoke a key at once, on every server sharing the database; revoking it again changes nothing.

        :raises KeyNotFound: no key has this id.
        """
        self.get(key_id)
        record = self.table.revoke(key_id)
        assert record is not None
        self.forget(key_id)
        return record

    def ensure_admin(self) -> str | None:
        """On a database without any key, create an admin key named ``bootstrap`` and return its full
        string (to be printed once); else None. Of several servers starting together, one creates it."""
        if self.table.count():
            return None
        key_id, key = new_key()
        record = self.table.add_if_none(
            key_id, digest(key), "admin", name="bootstrap", created_by="bootstrap"
        )
        return None if record is None else key

    def from_secret(
        self, key: str, role: str = "admin", name: str = "settings", created_by: str = "settings"
    ) -> KeyRecord:
        """Register a key whose full string the operator chose (``WHARF_ADMIN_KEY``); the same string
        again returns the key already stored, as it is (a revoked one stays revoked).

        :raises InvalidInput: not ``wharf_<8 lowercase hex>_<secret>`` with a secret of at least 32
            characters from ``A-Z a-z 0-9 _ -`` using at least 8 distinct ones; or an unknown role.
        :raises Conflict: another key already has this id.
        """
        _check_role(role)
        match = KEY_PATTERN.fullmatch(key)
        if match is None or len(set(match["secret"])) < MIN_SECRET_SYMBOLS:
            raise InvalidInput(
                f"An API key must look like wharf_<8 lowercase hex characters>_<secret>, the secret at least "
                f"32 random characters from A-Z a-z 0-9 _ - (at least {MIN_SECRET_SYMBOLS} different ones); "
                f'the key given ({len(key)} characters) does not. Make one with: python -c "import secrets; '
                "print(f'wharf_{secrets.token_hex(4)}_{secrets.token_urlsafe(32)}')\"",
                field="key",
            )
        key_id = match["id"]
        for _ in range(2):  # a second pass finds the key a concurrent caller stored first
            found = self.table.credential(key_id)
            if found is not None:
                record, stored = found
                if not hmac.compare_digest(stored, digest(key)):
                    raise Conflict(
                        f"Another key already has the id {key_id!r}; choose a key with a different id.",
                        field="key",
                    )
                return record
            added = self.table.add(key_id, digest(key), role, name=name, created_by=created_by)
            if added is not None:
                return added
        raise Conflict(f"Another key already has the id {key_id!r}.", field="key")

    # -- checking callers ------------------------------------------------------------------

    def authenticate(self, credential: str | None) -> Principal:
        """The caller holding ``credential``: a key, or an ``Authorization`` value ``Bearer <key>``.

        :raises Unauthorized: no credential; or a malformed, unknown, wrong, revoked or expired key,
            all with the same detail.
        """
        key = (credential or "").strip()
        scheme, _, rest = key.partition(" ")
        if scheme.lower() == "bearer":
            key = rest.strip()
        if not key:
            raise Unauthorized(MISSING)
        match = KEY_PATTERN.fullmatch(key)
        if match is None:
            raise Unauthorized(INVALID)
        found = self._credential(match["id"])
        # An unknown id still costs one comparison, so its answer takes as long as a wrong secret's.
        record, stored = found if found is not None else (None, _DECOY)
        matches = hmac.compare_digest(stored, digest(key))
        now = datetime.now(UTC)
        if record is None or not matches or not record.active(now):
            raise Unauthorized(INVALID)
        self._touch(record, now)
        return Principal.of(record)

    def _credential(self, key_id: str) -> tuple[KeyRecord, str] | None:
        if self.cache_seconds <= 0:
            return self.table.credential(key_id)
        now = time.monotonic()
        cached = self._cache.get(key_id)
        if cached is not None and now - cached[0] < self.cache_seconds:
            return cached[1]
        found = self.table.credential(key_id)
        if len(self._cache) >= CACHE_ENTRIES:  # ids guessed at random must not grow it without end
            self._cache.clear()
        self._cache[key_id] = (now, found)
        return found

    def forget(self, key_id: str) -> None:
        """Drop a cached key (this process revoked it: no need to wait for the cache to expire)."""
        self._cache.pop(key_id, None)

    @staticmethod
    def authorize(principal: Principal, permission: str, model: str | None = None) -> None:
        """:raises Forbidden: ``principal`` may not use ``permission`` (on ``model``, when given)."""
        principal.require(permission, model)

    def _touch(self, record: KeyRecord, now: datetime) -> None:
        if record.last_used_at is not None and now - record.last_used_at < timedelta(
            seconds=self.touch_seconds
        ):
            return
        with self._lock:
            last = self._touched.get(record.id)
            if last is not None and time.monotonic() - last < self.touch_seconds:
                return
            self._touched[record.id] = time.monotonic()
        try:
            self.table.touch(record.id, now, self.touch_seconds)
        except Exception:  # a busy database delays the bookkeeping; it never fails the request
            log.warning("could not record the use of key %s", record.id, exc_info=True)


class Audit:
    """Records admin and trainer actions, and reads them back.

    :param table: the audit log table.
    """

    def __init__(self, table: AuditTable) -> None:
        self.table = table

    def record(
        self,
        action: str,
        target: str = "",
        *,
        principal: Principal | None = None,
        status: int = 200,
        remote_addr: str | None = None,
        detail: dict[str, Any] | None = None,
    ) -> AuditRecord | None:
        """Append one entry; None when it could not be written (logged: the request it describes goes on).

        :param action: ``noun.verb``, e.g. ``models.register``.
        :param target: what it was done to, e.g. ``iris:3``.
        :param detail: small JSON; values JSON lacks are written as text, and past
            :data:`MAX_DETAIL_CHARS` it is cut short (``{"truncated": "<the JSON's start>"}``).
        """
        try:
            encoded = json.dumps(detail or {}, default=str, sort_keys=True)
            small = (
                json.loads(encoded)
                if len(encoded) <= MAX_DETAIL_CHARS
                else {"truncated": encoded[:MAX_DETAIL_CHARS]}
            )
            return self.table.add(
                action,
                target,
                status,
                key_id=None if principal is None else principal.key_id,
                role=None if principal is None else principal.role,
                remote_addr=remote_addr,
                detail=small,
            )
        except Exception:  # the audit log must never turn a done action into a failed request
            log.exception("could not write the audit entry %s %s (status %s)", action, target, status)
            return None

    def recent(
        self, limit: int = 100, offset: int = 0, *, key_id: str | None = None, action: str | None = None
    ) -> list[AuditRecord]:
        """Entries newest first; ``action`` ``models`` also matches ``models.register`` and the like.

        :raises InvalidInput: ``limit`` outside 1-1000 or a negative ``offset``.
        """
        if not 1 <= limit <= MAX_AUDIT_PAGE:
            raise InvalidInput(f"limit must be between 1 and {MAX_AUDIT_PAGE}; got {limit}.", field="limit")
        if offset < 0:
            raise InvalidInput(f"offset must be 0 or more; got {offset}.", field="offset")
        return self.table.recent(limit, offset, key_id=key_id, action=action)

    def count(self, *, key_id: str | None = None, action: str | None = None) -> int:
        return self.table.count(key_id=key_id, action=action)
