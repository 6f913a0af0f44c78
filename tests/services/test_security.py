"""API keys, roles and the audit log as services, on a real SQLite file and without Flask."""

from __future__ import annotations

import hmac
import logging
import re
import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import update

from concurrency import at_once
from wharf.errors import (
    Conflict,
    Forbidden,
    InvalidInput,
    KeyNotFound,
    TooManyRequests,
    Unauthorized,
)
from wharf.services import security
from wharf.services.security import (
    ANONYMOUS_ADMIN,
    INVALID,
    MISSING,
    PERMISSIONS,
    ROLES,
    Audit,
    Keys,
    Principal,
    parse_expires,
    permission_to_register,
)
from wharf.storage import MetadataStore
from wharf.storage.keys import KeyRow

# The table of issue 6, written out here rather than derived from the code under test.
ALLOWED = {
    "reader": {"read"},
    "predictor": {"read", "predict"},
    "trainer": {"read", "predict", "train", "register"},
    "admin": {"read", "predict", "train", "register", "register_code", "delete", "admin"},
}
KEY = re.compile(r"wharf_[0-9a-f]{8}_[A-Za-z0-9_-]{43}")
CHOSEN = "wharf_0123abcd_" + "Zq7-Kx_93mPvR2tLw8YbN4cHj6sDf1GgUe5Aa0Oo"


@pytest.fixture
def store(tmp_path: Path) -> Iterator[MetadataStore]:
    store = MetadataStore(f"sqlite:///{tmp_path / 'wharf.db'}")
    yield store
    store.close()


@pytest.fixture
def keys(store: MetadataStore) -> Keys:
    return Keys(store.keys)


@pytest.fixture
def audit(store: MetadataStore) -> Audit:
    return Audit(store.audit)


def set_row(store: MetadataStore, key_id: str, **values: Any) -> None:
    with store.writing() as session:
        session.execute(update(KeyRow).where(KeyRow.id == key_id).values(**values))


# -- keys: their form, their storage, their check ---------------------------------------------


def test_keys_are_random_and_shown_once(keys: Keys) -> None:
    made = [keys.create("reader") for _ in range(50)]
    for record, key in made:
        assert KEY.fullmatch(key), key
        assert key.split("_")[1] == record.id
        assert key not in repr(record)
    assert len({key for _, key in made}) == 50
    assert len({record.id for record, _ in made}) == 50
    assert len({key[15:] for _, key in made}) == 50  # 43 urlsafe characters: 256 bits each


def test_only_a_digest_is_stored(keys: Keys, store: MetadataStore, tmp_path: Path) -> None:
    _, key = keys.create("admin", name="ops")
    secret = key.split("_", 2)[2]
    store.close()  # let SQLite fold its write-ahead log into the file
    with sqlite3.connect(tmp_path / "wharf.db") as connection:
        rows = connection.execute("SELECT * FROM api_keys").fetchall()
    assert len(rows) == 1
    assert security.digest(key) in rows[0]
    assert not any(secret in str(value) for value in rows[0])
    for path in tmp_path.iterdir():
        assert secret.encode() not in path.read_bytes(), path.name


def test_keys_are_compared_in_constant_time(keys: Keys, monkeypatch: pytest.MonkeyPatch) -> None:
    _, key = keys.create("reader")
    calls: list[tuple[str, str]] = []
    real = hmac.compare_digest

    def spy(a: Any, b: Any) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", spy)
    assert keys.authenticate(key).role == "reader"
    with pytest.raises(Unauthorized):
        keys.authenticate(key[:-4] + "AAAA")  # wrong secret
    with pytest.raises(Unauthorized):
        keys.authenticate("wharf_ffffffff_" + key[15:])  # unknown id: compared all the same
    assert len(calls) == 3
    assert all(len(a) == len(b) == 64 for a, b in calls)


@pytest.mark.parametrize("scheme", ["", "Bearer ", "bearer ", "BEARER  "])
def test_a_key_is_accepted_bare_or_as_a_bearer_token(keys: Keys, scheme: str) -> None:
    record, key = keys.create("trainer", models=["iris"], name="ci")
    principal = keys.authenticate(scheme + key)
    assert principal == Principal(key_id=record.id, role="trainer", models=frozenset({"iris"}), name="ci")


@pytest.mark.parametrize("credential", [None, "", "   ", "Bearer", "Bearer   "])
def test_no_key_says_how_to_send_one(keys: Keys, credential: str | None) -> None:
    with pytest.raises(Unauthorized) as caught:
        keys.authenticate(credential)
    assert caught.value.detail == MISSING
    assert "Authorization: Bearer" in MISSING and "X-API-Key" in MISSING


BAD_KEYS = {
    "not-a-key": lambda key: "hunter2",
    "basic-scheme": lambda key: "Basic " + key,
    "truncated": lambda key: key[:-20],
    "upper-case-id": lambda key: key[:6] + key[6:14].upper() + key[14:],
    "unknown-id": lambda key: "wharf_ffffffff_" + key[15:],
    "wrong-secret": lambda key: key[:-1] + ("A" if key[-1] != "A" else "B"),
    "extra-text": lambda key: key + " trailing",
    "revoked": lambda key: key,
    "expired": lambda key: key,
}


@pytest.mark.parametrize("how", BAD_KEYS)
def test_every_bad_key_gets_the_same_answer(keys: Keys, store: MetadataStore, how: str) -> None:
    record, key = keys.create("admin")
    while how == "upper-case-id" and record.id.isdigit():  # all digits: upper() changes nothing
        record, key = keys.create("admin")
    if how == "revoked":
        keys.revoke(record.id)
    if how == "expired":
        set_row(store, record.id, expires_at=datetime.now(UTC) - timedelta(seconds=1))
    with pytest.raises(Unauthorized) as caught:
        keys.authenticate(BAD_KEYS[how](key))
    assert caught.value.detail == INVALID
    assert caught.value.to_problem() == {
        "type": "urn:wharf:problem:unauthorized",
        "title": "Unauthorized",
        "status": 401,
        "detail": INVALID,
    }


def test_a_key_works_until_it_expires(keys: Keys, store: MetadataStore) -> None:
    record, key = keys.create("reader", expires_at=datetime.now(UTC) + timedelta(hours=1))
    assert keys.authenticate(key).key_id == record.id
    set_row(store, record.id, expires_at=datetime.now(UTC) - timedelta(seconds=1))
    with pytest.raises(Unauthorized):
        keys.authenticate(key)


def test_revoking_is_immediate_and_idempotent(keys: Keys) -> None:
    record, key = keys.create("reader")
    first = keys.revoke(record.id)
    assert first.revoked and keys.revoke(record.id) == first
    assert keys.get(record.id) == first
    with pytest.raises(Unauthorized):
        keys.authenticate(key)
    assert [k.id for k in keys.list()] == [record.id]
    assert keys.list(include_revoked=False) == []


@pytest.mark.parametrize("key_id", ["ffffffff", "FFFFFFFF", "x", "' OR 1=1 --"])
def test_an_unknown_key_id_is_not_found(keys: Keys, key_id: str) -> None:
    with pytest.raises(KeyNotFound, match="No API key with id"):
        keys.get(key_id)
    with pytest.raises(KeyNotFound):
        keys.revoke(key_id)


def test_last_used_is_written_at_most_once_a_minute(keys: Keys, monkeypatch: pytest.MonkeyPatch) -> None:
    record, key = keys.create("reader")
    assert record.last_used_at is None
    touches: list[str] = []
    real = keys.table.touch

    def touch(key_id: str, *args: Any) -> bool:
        touches.append(key_id)
        return real(key_id, *args)

    monkeypatch.setattr(keys.table, "touch", touch)
    for _ in range(5):
        keys.authenticate(key)
    assert touches == [record.id]
    used = keys.get(record.id).last_used_at
    assert used is not None and datetime.now(UTC) - used < timedelta(seconds=5)

    fresh = Keys(keys.table)  # another process: it reads the recent time and writes nothing either
    fresh.authenticate(key)
    assert touches == [record.id]


def test_a_failed_touch_does_not_fail_the_request(
    keys: Keys, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    _, key = keys.create("reader")

    def locked(*args: Any) -> bool:
        raise RuntimeError("database is locked")

    monkeypatch.setattr(keys.table, "touch", locked)
    with caplog.at_level(logging.WARNING, logger="wharf.services.security"):
        assert keys.authenticate(key).role == "reader"
    assert "could not record the use of key" in caplog.text


# -- creating keys --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "field", "message"),
    [
        ({"role": "admn"}, "role", "Unknown role 'admn'; use one of reader, predictor, trainer, admin. Did"),
        ({"models": []}, "models", "leave 'models' out"),
        ({"models": ["iris", "bad name!"]}, "models", "Invalid model name 'bad name!'"),
        ({"expires_at": datetime.now(UTC) - timedelta(days=1)}, "expires", "is in the past"),
        ({"name": "n" * 257}, "name", "at most 256 characters"),
    ],
)
def test_create_refuses_bad_fields(keys: Keys, changes: dict[str, Any], field: str, message: str) -> None:
    fields = {"role": "reader", **changes}
    with pytest.raises(InvalidInput, match=re.escape(message)) as caught:
        keys.create(**fields)
    assert caught.value.field == field
    assert keys.list() == []


def test_create_keeps_what_it_was_given(keys: Keys) -> None:
    naive = datetime.now(UTC).replace(tzinfo=None) + timedelta(days=1)
    record, _ = keys.create(
        "trainer", models=("b", "a", "a"), expires_at=naive, name="ci", created_by="0a1b2c3d"
    )
    assert (record.models, record.name, record.created_by) == (("a", "b"), "ci", "0a1b2c3d")
    assert record.expires_at == naive.replace(tzinfo=UTC)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("30d", timedelta(days=30)),
        (" 12h ", timedelta(hours=12)),
        ("90m", timedelta(minutes=90)),
        ("2W", timedelta(weeks=2)),
    ],
)
def test_expiry_as_a_duration(text: str, expected: timedelta) -> None:
    now = datetime(2030, 1, 1, tzinfo=UTC)
    assert parse_expires(text, now) == now + expected


def test_expiry_as_a_date_or_time() -> None:
    assert parse_expires("2030-01-31") == datetime(2030, 1, 31, tzinfo=UTC)
    assert parse_expires("2030-01-31T12:00:00+02:00") == datetime(2030, 1, 31, 10, tzinfo=UTC)


@pytest.mark.parametrize("text", ["", "soon", "30", "-5d", "999999w", "2030-13-01"])
def test_expiry_refuses_the_rest(text: str) -> None:
    with pytest.raises(InvalidInput, match="'30d'") as caught:
        parse_expires(text)
    assert caught.value.field == "expires"


# -- the bootstrap key and keys chosen by the operator ----------------------------------------


def test_the_first_start_creates_one_admin_key(keys: Keys) -> None:
    key = keys.ensure_admin()
    assert key is not None and KEY.fullmatch(key)
    principal = keys.authenticate(key)
    assert (principal.role, principal.models, principal.name) == ("admin", None, "bootstrap")
    assert keys.ensure_admin() is None
    assert len(keys.list()) == 1


def test_no_bootstrap_key_once_any_key_exists(keys: Keys) -> None:
    record, _ = keys.create("reader")
    keys.revoke(record.id)
    assert keys.ensure_admin() is None


def test_servers_starting_together_create_one_admin_key(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'wharf.db'}"
    stores = [MetadataStore(url) for _ in range(6)]
    try:
        services = iter([Keys(store.keys) for store in stores])
        printed = [key for key in at_once(lambda: next(services).ensure_admin(), 6) if key is not None]
        assert len(printed) == 1
        assert Keys(stores[0].keys).authenticate(printed[0]).role == "admin"
        assert stores[0].keys.count() == 1
    finally:
        for store in stores:
            store.close()


def test_a_chosen_key_is_registered_once(keys: Keys) -> None:
    first = keys.from_secret(CHOSEN)
    assert (first.id, first.role, first.name, first.created_by) == (
        "0123abcd",
        "admin",
        "settings",
        "settings",
    )
    assert keys.from_secret(CHOSEN) == first
    assert len(keys.list()) == 1
    assert keys.authenticate(CHOSEN).role == "admin"
    assert keys.ensure_admin() is None


def test_a_chosen_key_registered_by_servers_together(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'wharf.db'}"
    stores = [MetadataStore(url) for _ in range(4)]
    try:
        services = iter([Keys(store.keys) for store in stores])
        records = at_once(lambda: next(services).from_secret(CHOSEN, role="trainer"), 4)
        assert len(set(records)) == 1 and records[0].role == "trainer"
        assert stores[0].keys.count() == 1
    finally:
        for store in stores:
            store.close()


@pytest.mark.parametrize(
    "key",
    [
        "wharf_0123abcd_" + "short-secret",
        "wharf_0123abcd_" + "ab" * 15 + "a",  # 31 characters
        "wharf_0123abcd_" + "a" * 40,  # one symbol
        "wharf_0123abcd_" + "abcdefg" * 6,  # seven symbols
        "wharf_0123ABCD_" + CHOSEN[15:],
        "wharf_0123abc_" + CHOSEN[15:],
        "wharf-0123abcd-" + CHOSEN[15:],
        CHOSEN + "!",
        CHOSEN[15:],
    ],
)
def test_a_weak_or_malformed_chosen_key_is_refused(keys: Keys, key: str) -> None:
    with pytest.raises(InvalidInput, match="at least 32") as caught:
        keys.from_secret(key)
    assert caught.value.field == "key"
    assert key not in caught.value.detail and key[15:] not in caught.value.detail  # never echo a secret
    assert keys.list() == []


def test_a_chosen_key_whose_id_is_taken(keys: Keys) -> None:
    keys.from_secret(CHOSEN)
    other = CHOSEN[:15] + CHOSEN[15:][::-1]
    with pytest.raises(Conflict, match="Another key already has the id '0123abcd'"):
        keys.from_secret(other)
    with pytest.raises(Unauthorized):
        keys.authenticate(other)


# -- roles, permissions and model limits ------------------------------------------------------


def test_the_permission_table_is_the_issues() -> None:
    assert security.ROLE_PERMISSIONS == {role: frozenset(perms) for role, perms in ALLOWED.items()}
    assert set(PERMISSIONS) == ALLOWED["admin"]
    assert ROLES == ("reader", "predictor", "trainer", "admin")


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("permission", PERMISSIONS)
def test_each_role_has_exactly_its_permissions(role: str, permission: str) -> None:
    principal = Principal(key_id="0a1b2c3d", role=role)
    allowed = permission in ALLOWED[role]
    assert principal.can(permission) is allowed
    if allowed:
        Keys.authorize(principal, permission)
        return
    with pytest.raises(Forbidden) as caught:
        Keys.authorize(principal, permission)
    assert caught.value.detail.startswith(
        f"A {role} key may not do this: it needs the {permission!r} permission"
    )
    assert caught.value.to_problem()["status"] == 403


def test_a_model_limit_gives_one_answer_for_models_that_exist_or_not() -> None:
    principal = Principal(key_id="0a1b2c3d", role="trainer", models=frozenset({"iris", "houses"}))
    principal.require("predict", "iris")
    answers = []
    for model in ("secret-model", "no-such-model"):
        with pytest.raises(Forbidden) as caught:
            principal.require("read", model)
        answers.append(caught.value.to_problem() | {"detail": caught.value.detail.replace(model, "M")})
    assert answers[0] == answers[1]
    assert principal.sees("iris") and not principal.sees("secret-model")
    assert principal.visible(["a", "houses", "iris", "z"]) == ["houses", "iris"]
    with pytest.raises(Forbidden, match="needs the 'register_code' permission"):
        principal.require("register_code", "secret-model")  # the role is checked first


def test_a_model_limited_admin_cannot_manage_keys() -> None:
    limited = Principal(key_id="0a1b2c3d", role="admin", models=frozenset({"iris"}))
    limited.require("delete", "iris")
    assert not limited.can("admin")
    with pytest.raises(Forbidden, match="without a model limit"):
        limited.require("admin")


def test_the_anonymous_admin_may_do_anything() -> None:
    for permission in PERMISSIONS:
        ANONYMOUS_ADMIN.require(permission, "any-model")
    assert (ANONYMOUS_ADMIN.key_id, ANONYMOUS_ADMIN.actor) == (None, "anonymous")


def test_an_unknown_permission_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="unknown permission 'write'"):
        ANONYMOUS_ADMIN.can("write")


@pytest.mark.parametrize(
    ("format", "permission"),
    [
        ("joblib", "register_code"),
        ("pickle", "register_code"),
        ("skops", "register"),
        ("onnx", "register"),
        ("pmml", "register"),
        ("xgboost", "register"),
        ("lightgbm", "register"),
    ],
)
def test_code_bearing_formats_need_an_admin(format: str, permission: str) -> None:
    assert permission_to_register(format) == permission
    assert Principal(key_id=None, role="trainer").can(permission) is (permission == "register")


def test_auth_errors_carry_their_statuses() -> None:
    assert (Unauthorized.status, Unauthorized.slug) == (401, "unauthorized")
    assert (Forbidden.status, Forbidden.slug) == (403, "forbidden")
    limited = TooManyRequests("Slow down: 10 per minute for reader keys.", retry_after=1.2)
    assert limited.retry_after == 2  # rounded up: retrying sooner would be refused again
    assert limited.to_problem() == {
        "type": "urn:wharf:problem:too-many-requests",
        "title": "Too Many Requests",
        "status": 429,
        "detail": "Slow down: 10 per minute for reader keys.",
        "retry_after": 2,
    }


# -- the audit log ----------------------------------------------------------------------------


def test_an_action_is_recorded_with_who_and_where(audit: Audit) -> None:
    who = Principal(key_id="0a1b2c3d", role="trainer", name="ci")
    entry = audit.record(
        "models.register",
        "iris:3",
        principal=who,
        status=201,
        remote_addr="10.0.0.7",
        detail={"format": "onnx"},
    )
    assert entry is not None
    assert audit.recent() == [entry]
    assert (entry.key_id, entry.role, entry.action, entry.target, entry.status, entry.remote_addr) == (
        "0a1b2c3d",
        "trainer",
        "models.register",
        "iris:3",
        201,
        "10.0.0.7",
    )
    anonymous = audit.record("jobs.cancel", "job 7", principal=ANONYMOUS_ADMIN)
    assert anonymous is not None and (anonymous.key_id, anonymous.role, anonymous.status) == (
        None,
        "admin",
        200,
    )
    assert [e.action for e in audit.recent(key_id="0a1b2c3d")] == ["models.register"]
    assert [e.action for e in audit.recent(action="jobs")] == ["jobs.cancel"]
    assert audit.count() == 2 and audit.count(action="models") == 1


def test_detail_is_kept_small_and_json(audit: Audit) -> None:
    when = datetime(2030, 1, 1, tzinfo=UTC)
    entry = audit.record("datasets.add", "dataset 4", detail={"at": when, "path": Path("a")})
    assert entry is not None and entry.detail == {"at": str(when), "path": "a"}
    big = audit.record("datasets.add", "dataset 5", detail={"columns": ["c" * 100] * 100})
    assert big is not None and list(big.detail) == ["truncated"]
    assert len(big.detail["truncated"]) == security.MAX_DETAIL_CHARS


def test_a_failed_audit_write_never_fails_the_request(
    audit: Audit, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("disk full")

    monkeypatch.setattr(audit.table, "add", broken)
    with caplog.at_level(logging.ERROR, logger="wharf.services.security"):
        assert audit.record("models.delete", "iris:1") is None
    assert "could not write the audit entry models.delete iris:1" in caplog.text


@pytest.mark.parametrize(
    ("limit", "offset", "field"),
    [(0, 0, "limit"), (1001, 0, "limit"), (10, -1, "offset")],
)
def test_audit_pages_are_bounded(audit: Audit, limit: int, offset: int, field: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        audit.recent(limit, offset)
    assert caught.value.field == field
