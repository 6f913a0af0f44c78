"""Rate-limit counters in the Redis running on this machine: shared by every worker and replica."""

from __future__ import annotations

import secrets

import pytest

from wharf.errors import TooManyRequests
from wharf.services.ratelimit import Caller, RateLimiter

REDIS = "redis://127.0.0.1:6379"


def test_two_servers_sharing_redis_share_one_budget() -> None:
    """Two limiters stand for two replicas: the third request, wherever it lands, is refused."""
    first, second = (RateLimiter({"predictor": "2/minute"}, REDIS) for _ in range(2))
    caller = Caller(key_id=secrets.token_hex(4), role="predictor", address="10.0.0.1")  # fresh counters
    first.check(caller, "predict")
    second.check(caller, "predict")
    with pytest.raises(TooManyRequests) as refused:
        first.check(caller, "predict")
    assert 1 <= refused.value.retry_after <= 60
    other = Caller(key_id=secrets.token_hex(4), role="predictor", address="10.0.0.1")
    second.check(other, "predict")  # another key has its own budget


def test_in_memory_limiters_do_not_share() -> None:
    first, second = (RateLimiter({"predictor": "1/minute"}) for _ in range(2))
    caller = Caller(key_id="0123abcd", role="predictor", address="10.0.0.1")
    first.check(caller, "predict")
    second.check(caller, "predict")  # per process: each has its own counter
    with pytest.raises(TooManyRequests):
        first.check(caller, "predict")
