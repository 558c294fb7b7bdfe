"""The limits in Redis, against a real ``redis-server``: one Lua script checks and
counts, so concurrent checks from many clients admit exactly the limit; tokens and the
budget are shared; and when Redis is away the limiter fails open, with a warning."""

from __future__ import annotations

import asyncio
import logging
import secrets
import socket
import time

import pytest

from chatgate.errors import RateLimitError
from chatgate.limits_redis import RedisLimiter, redis_keys
from chatgate.plan import Caller
from tests.redis_server import redis_url  # noqa: F401  (the fixture)


def label() -> str:
    return f"key-{secrets.token_hex(4)}"  # each test its own counts, on a shared Redis too


async def outcome(limiter: RedisLimiter, caller: Caller) -> bool:
    try:
        await limiter.admit(caller)
    except RateLimitError:
        return False
    return True


async def test_concurrent_checks_from_many_clients_admit_exactly_rpm(redis_url: str) -> None:  # noqa: F811
    limiters = [RedisLimiter(redis_url) for _ in range(4)]  # four "instances"
    caller = Caller(label(), rpm=7)
    try:
        results = await asyncio.gather(*(outcome(limiters[i % 4], caller) for i in range(30)))
        assert results.count(True) == 7
    finally:
        for limiter in limiters:
            await limiter.aclose()


async def test_headers_and_the_refusal(redis_url: str) -> None:  # noqa: F811
    limiter = RedisLimiter(redis_url)
    caller = Caller(label(), rpm=2, tpm=1000)
    try:
        first = await limiter.admit(caller)
        assert first["x-ratelimit-limit-requests"] == "2"
        assert first["x-ratelimit-remaining-requests"] == "1"
        assert first["x-ratelimit-remaining-tokens"] == "1000"
        await limiter.admit(caller)
        with pytest.raises(RateLimitError) as caught:
            await limiter.admit(caller)
        headers = caught.value.headers
        assert headers["x-ratelimit-remaining-requests"] == "0"
        assert 59 <= int(headers["retry-after"]) <= 60
        assert headers["x-ratelimit-reset-requests"].endswith("s")
    finally:
        await limiter.aclose()


async def test_tokens_and_budget_are_shared(redis_url: str) -> None:  # noqa: F811
    one, two = RedisLimiter(redis_url), RedisLimiter(redis_url)
    tpm = Caller(label(), tpm=100)
    budget = Caller(label(), budget_tokens=50)
    try:
        await one.admit(tpm)
        await one.spend_now(tpm, 120)
        with pytest.raises(RateLimitError, match="100 tokens per minute"):
            await two.admit(tpm)
        await two.spend_now(budget, 30)
        await two.admit(budget)
        one.spend(budget, 30)  # in the background, as the observer does
        await asyncio.sleep(0.1)
        with pytest.raises(RateLimitError, match="60 of 50 tokens this month"):
            await one.admit(budget)
        client = one.client
        _, tokens, spent = redis_keys(budget.id, time.strftime("%Y-%m", time.gmtime()))
        assert await client.get(spent) == b"60"
        assert await client.ttl(spent) > 86_400
        assert not await client.exists(tokens)  # no TPM on this key: no buckets kept
    finally:
        await one.aclose()
        await two.aclose()


def _dead_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"redis://127.0.0.1:{sock.getsockname()[1]}/0"


async def test_redis_down_fails_open_with_one_warning(caplog: pytest.LogCaptureFixture) -> None:
    limiter = RedisLimiter(_dead_url())
    caller = Caller(label(), rpm=1)
    try:
        with caplog.at_level(logging.WARNING, "chatgate.limits"):
            started = time.monotonic()
            for _ in range(5):
                assert await limiter.admit(caller) == {}
            limiter.spend(caller, 10)
            assert time.monotonic() - started < 1.0
        warnings = [r for r in caplog.records if r.name == "chatgate.limits"]
        assert len(warnings) == 1
        assert "admitted without their limits" in warnings[0].getMessage()
    finally:
        await limiter.aclose()


async def test_a_password_in_the_url_is_not_logged(caplog: pytest.LogCaptureFixture) -> None:
    url = _dead_url().replace("redis://", "redis://:hunter2-secret-pw@")
    limiter = RedisLimiter(url)
    try:
        with caplog.at_level(logging.WARNING, "chatgate.limits"):
            await limiter.admit(Caller(label(), rpm=1))
        assert "hunter2-secret-pw" not in caplog.text
    finally:
        await limiter.aclose()
