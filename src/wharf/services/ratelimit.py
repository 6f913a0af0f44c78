"""Rate limits per key, per role, per route and per client address, on the ``limits`` library.

Counters are fixed windows (one counter per scope and caller: a couple of microseconds a check), in
process memory by default or in Redis, where every worker and replica shares them. Scopes, from
``Settings.rate_limits``:

    <role>            per key of that role, on every route
    route:<endpoint>  per key (or per address, for a caller without one) on that route
    address           per client address, on every route
    anonymous         per client address, for requests without a valid key
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

from wharf.errors import InvalidSettings, TooManyRequests
from wharf.services.security import ROLES

SCOPES = ("address", "anonymous")


@dataclass(frozen=True)
class Caller:
    """Who is asking: a key id and role (None without a key), the client address, and whether the
    request failed authentication (``anonymous``: it needed a key and had no valid one)."""

    key_id: str | None
    role: str | None
    address: str
    anonymous: bool = False


class RateLimiter:
    """Checks and counts requests against the configured limits.

    :param limits: scope -> limit string (``"100/second;5000/hour"``).
    :param storage: ``memory://`` or ``redis://host:port``.
    :raises InvalidSettings: a scope or a limit string that does not parse, or a storage URL the
        ``limits`` library does not know (naming the setting).
    """

    def __init__(self, limits: dict[str, str], storage: str = "memory://") -> None:
        from limits import parse_many, strategies
        from limits import storage as storages

        self._parsed: dict[str, list[Any]] = {}
        for scope, text in limits.items():
            kind, _, route = scope.partition(":")
            if not (scope in SCOPES or scope in ROLES or (kind == "route" and route)):
                raise InvalidSettings(
                    f"Rate limit scope {scope!r} is unknown; use a role ({', '.join(ROLES)}), "
                    "'address', 'anonymous' or 'route:<endpoint>' (WHARF_RATE_LIMITS).",
                    field="rate_limits",
                )
            if not text.strip():
                continue
            try:
                self._parsed[scope] = list(parse_many(text))
            except ValueError as exc:
                raise InvalidSettings(
                    f"Rate limit {text!r} of {scope!r} does not parse: {exc}; write it as "
                    "'100/second' or '10/minute;1000/day' (WHARF_RATE_LIMITS).",
                    field="rate_limits",
                ) from exc
        try:
            self._storage = storages.storage_from_string(storage)
        except Exception as exc:  # the limits library raises plain errors for unknown schemes
            raise InvalidSettings(
                f"Rate limit storage {storage!r} is not usable: {exc} (WHARF_RATE_LIMIT_STORAGE).",
                field="rate_limit_storage",
            ) from exc
        self._limiter = strategies.FixedWindowRateLimiter(self._storage)

    @property
    def enabled(self) -> bool:
        return bool(self._parsed)

    def check(self, caller: Caller, endpoint: str) -> None:
        """Count this request in every scope that applies.

        :raises TooManyRequests: a limit is used up, with the seconds until its window resets.
        """
        if not self._parsed:
            return
        who = f"key:{caller.key_id}" if caller.key_id else f"address:{caller.address}"
        checks: list[tuple[str, str]] = [("address", caller.address)]
        if caller.anonymous:
            checks.append(("anonymous", caller.address))
        elif caller.role is not None and caller.key_id is not None:
            checks.append((caller.role, caller.key_id))
        checks.append((f"route:{endpoint}", who))
        for scope, identity in checks:
            for limit in self._parsed.get(scope, ()):
                if not self._limiter.hit(limit, scope, identity):
                    reset = self._limiter.get_window_stats(limit, scope, identity).reset_time
                    wait = max(1, math.ceil(reset - time.time()))
                    raise TooManyRequests(
                        f"Too many requests: the limit {limit} for {_described(scope)} is used up; "
                        f"retry in {wait} s.",
                        retry_after=wait,
                    )


def _described(scope: str) -> str:
    if scope == "address":
        return "this client address"
    if scope == "anonymous":
        return "requests without a valid API key from this address"
    if scope.startswith("route:"):
        return f"this route ({scope[6:]})"
    return f"{scope} keys"
