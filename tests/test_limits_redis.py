"""The limits in Redis, against a real ``redis-server``: one Lua script checks and
counts, so concurrent checks from many clients admit exactly the limit; tokens and the
budget are shared; and when Redis is away the limiter fails open, with a warning."""

from __future__ import annotations

import asyncio
import logging
import secrets
import socket
import time
from typing import Any

import pytest

from chatgate.errors import RateLimitError
from chatgate.limits_redis import BATCH, RedisLimiter, redis_keys
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


class CountedCalls:
    """The limiter's script, counting its calls (each one is one script run in Redis)."""

    def __init__(self, limiter: RedisLimiter) -> None:
        self.script = limiter.script
        self.calls = 0
        self.checks: list[int] = []  # the checks each call carried
        limiter.script = self  # type: ignore[assignment]

    async def __call__(self, *, keys: Any, args: Any, client: Any = None) -> Any:
        self.calls += 1
        self.checks.append((len(args) - 4) // 4)
        return await self.script(keys=keys, args=args, client=client)


async def test_checks_of_one_loop_turn_share_one_script_call(redis_url: str) -> None:  # noqa: F811
    limiter = RedisLimiter(redis_url)
    counted = CountedCalls(limiter)
    caller = Caller(label(), rpm=25)
    try:
        results = await asyncio.gather(*(outcome(limiter, caller) for _ in range(40)))
        assert results.count(True) == 25
        assert results[:25] == [True] * 25  # in the order they were asked
        assert counted.calls == 1 and counted.checks == [40]
    finally:
        await limiter.aclose()


async def test_checks_queued_while_a_call_is_out_go_in_the_next_one(redis_url: str) -> None:  # noqa: F811
    limiter = RedisLimiter(redis_url)
    counted = CountedCalls(limiter)
    caller = Caller(label(), rpm=1000)
    try:
        first = asyncio.ensure_future(limiter.admit(caller))
        await asyncio.sleep(0)  # the first call is out
        later = [asyncio.ensure_future(limiter.admit(caller)) for _ in range(30)]
        await asyncio.gather(first, *later)
        assert counted.checks == [1, 30]
        remaining = [int(f.result()["x-ratelimit-remaining-requests"]) for f in later]
        assert sorted(remaining, reverse=True) == list(range(998, 968, -1))
    finally:
        await limiter.aclose()


async def test_more_checks_than_one_batch_are_exact(redis_url: str) -> None:  # noqa: F811
    limiter = RedisLimiter(redis_url)
    counted = CountedCalls(limiter)
    caller = Caller(label(), rpm=BATCH + 20)
    try:
        results = await asyncio.gather(*(outcome(limiter, caller) for _ in range(BATCH + 50)))
        assert results.count(True) == BATCH + 20
        assert counted.checks == [BATCH, 50]
    finally:
        await limiter.aclose()


async def test_keys_checked_in_one_turn_keep_their_own_limits(redis_url: str) -> None:  # noqa: F811
    limiter = RedisLimiter(redis_url)
    trips: list[int] = []
    send = limiter._send

    async def counted(calls: Any) -> None:
        trips.append(len(calls))
        await send(calls)

    limiter._send = counted  # type: ignore[method-assign]
    small, large = Caller(label(), rpm=2), Caller(label(), rpm=5)
    try:
        for _ in range(2):  # the second time, on a Redis that forgot the script
            asked = [outcome(limiter, small if i % 2 else large) for i in range(16)]
            results = await asyncio.gather(*asked)
            assert [r for i, r in enumerate(results) if i % 2].count(True) == 2
            assert [r for i, r in enumerate(results) if not i % 2].count(True) == 5
            assert trips == [2]  # one script call per key, both in one round trip
            trips.clear()
            small, large = Caller(label(), rpm=2), Caller(label(), rpm=5)
            await limiter.client.script_flush()
    finally:
        await limiter.aclose()


async def test_tokens_ride_along_with_the_next_check(redis_url: str) -> None:  # noqa: F811
    limiter = RedisLimiter(redis_url, linger=30.0)  # only a check (or close) sends them
    counted = CountedCalls(limiter)
    caller = Caller(label(), tpm=1000, budget_tokens=10_000)
    try:
        await limiter.admit(caller)
        limiter.spend(caller, 300)
        limiter.spend(caller, 100)
        await asyncio.sleep(0.05)
        assert counted.calls == 1  # the tokens wait
        headers = await limiter.admit(caller)
        assert headers["x-ratelimit-remaining-tokens"] == "600"  # counted before the check
        assert counted.calls == 2
        _, _, budget = redis_keys(caller.id, time.strftime("%Y-%m", time.gmtime()))
        assert await limiter.client.get(budget) == b"400"
    finally:
        await limiter.aclose()


async def test_tokens_without_a_check_are_sent_after_the_linger(redis_url: str) -> None:  # noqa: F811
    limiter = RedisLimiter(redis_url, linger=0.05)
    counted = CountedCalls(limiter)
    caller = Caller(label(), budget_tokens=10_000)
    _, _, budget = redis_keys(caller.id, time.strftime("%Y-%m", time.gmtime()))
    try:
        for _ in range(5):
            limiter.spend(caller, 7)
        assert await limiter.client.get(budget) is None
        await asyncio.sleep(0.3)
        assert await limiter.client.get(budget) == b"35"
        assert counted.calls == 1 and counted.checks == [0]
    finally:
        await limiter.aclose()


async def test_closing_sends_the_tokens_still_waiting(redis_url: str) -> None:  # noqa: F811
    limiter = RedisLimiter(redis_url, linger=30.0)
    caller = Caller(label(), budget_tokens=10_000)
    _, _, budget = redis_keys(caller.id, time.strftime("%Y-%m", time.gmtime()))
    limiter.spend(caller, 42)
    await limiter.aclose()
    reader = RedisLimiter(redis_url)
    try:
        assert await reader.client.get(budget) == b"42"
    finally:
        await reader.aclose()


async def test_a_stalled_redis_admits_every_queued_check_within_its_bound() -> None:
    # A server that accepts and never answers: the first call times out, and the checks
    # queued behind it are admitted at once instead of each waiting out a timeout.
    held: list[asyncio.StreamWriter] = []
    server = await asyncio.start_server(lambda r, w: held.append(w), "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    limiter = RedisLimiter(f"redis://127.0.0.1:{port}/0", timeout=0.2)
    caller = Caller(label(), rpm=1)
    try:
        started = time.monotonic()
        first = asyncio.ensure_future(limiter.admit(caller))
        await asyncio.sleep(0.01)
        later = await asyncio.gather(*(limiter.admit(caller) for _ in range(20)))
        assert await first == {} and later == [{}] * 20
        assert time.monotonic() - started < 0.6
    finally:
        await limiter.aclose()
        for writer in held:
            writer.close()
        server.close()
        await server.wait_closed()
