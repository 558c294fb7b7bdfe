"""An in-process budget seeded from the usage log: read once per key, from the start of
the month (UTC) to the moment its counting began; a slow store holds the first requests
up for `seed_wait` at most, and a failing one is logged once and counted from zero."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime

import pytest

from chatgate.errors import RateLimitError
from chatgate.limits import LocalLimiter, TokenCounter, month_start, seed_from
from chatgate.plan import Caller
from chatgate.store.errors import StoreError

TEAM = Caller("team", budget_tokens=100)


class Log:
    """A seed query that answers *spent* after *delay* (or raises *fails*), and keeps
    what it was asked."""

    def __init__(self, spent: int = 0, delay: float = 0.0, fails: bool = False) -> None:
        self.spent, self.delay, self.fails = spent, delay, fails
        self.asked: list[tuple[str, datetime, datetime]] = []

    async def __call__(self, caller: str, since: datetime, until: datetime) -> int:
        self.asked.append((caller, since, until))
        await asyncio.sleep(self.delay)
        if self.fails:
            raise StoreError("the database is locked")
        return self.spent


async def refused(limiter: LocalLimiter, caller: Caller = TEAM) -> bool:
    try:
        await limiter.admit(caller)
    except RateLimitError:
        return True
    return False


async def test_the_month_so_far_is_read_once_per_key() -> None:
    query = Log(spent=100)
    limiter = LocalLimiter(seed=query)
    before = datetime.now(UTC)
    assert await refused(limiter)  # the first request after a restart is refused
    assert await refused(limiter)
    ((caller, since, until),) = query.asked
    assert caller == "team" and before <= until <= datetime.now(UTC)
    assert since == datetime.fromtimestamp(month_start(until.timestamp()), UTC)
    assert (since.day, since.hour, since.minute, since.second) == (1, 0, 0, 0)
    assert not await refused(limiter, Caller("another", budget_tokens=200))
    assert len(query.asked) == 2


async def test_tokens_spent_while_reading_add_up() -> None:
    query = Log(spent=50, delay=0.05)
    limiter = LocalLimiter(seed=query, seed_wait=0.0)
    assert not await refused(limiter)  # not waited for: admitted on what is counted
    limiter.spend(TEAM, 40)
    await asyncio.sleep(0.1)
    assert limiter.counts(TEAM, take=False).spent == 90
    limiter.spend(TEAM, 10)
    assert await refused(limiter)


async def test_a_slow_store_holds_the_first_requests_up_briefly() -> None:
    query = Log(spent=100, delay=0.4)
    limiter = LocalLimiter(seed=query, seed_wait=0.1)
    loop = asyncio.get_running_loop()
    began = loop.time()
    answers = await asyncio.gather(*(refused(limiter) for _ in range(3)))
    assert answers == [False, False, False]
    assert 0.08 <= loop.time() - began < 0.3  # the wait is the key's, not each request's
    assert not await refused(limiter)  # past it: no request waits
    assert loop.time() - began < 0.3
    await asyncio.sleep(0.4)
    assert await refused(limiter)  # the seed landed
    assert len(query.asked) == 1


async def test_a_failing_store_is_logged_once_and_counts_from_zero(
    caplog: pytest.LogCaptureFixture,
) -> None:
    limiter = LocalLimiter(seed=Log(fails=True))
    with caplog.at_level(logging.WARNING, "chatgate.limits"):
        assert not await refused(limiter)
        assert not await refused(limiter, Caller("b", budget_tokens=5))
    warnings = [r for r in caplog.records if r.name == "chatgate.limits"]
    assert len(warnings) == 1
    assert "'team'" in warnings[0].getMessage() and "StoreError" in warnings[0].getMessage()
    assert "locked" not in caplog.text  # the store's own words may name its URL
    limiter.spend(TEAM, 100)
    assert await refused(limiter)


async def test_only_budgets_are_seeded() -> None:
    query = Log(spent=10)
    limiter = LocalLimiter(seed=query)
    await limiter.admit(Caller("rpm-only", rpm=10, tpm=1000))
    assert query.asked == []


async def test_the_store_query_reaches_the_in_process_limiter_only() -> None:
    local, other = LocalLimiter(), LocalLimiter()
    query = Log()
    seed_from([object(), TokenCounter(local)], query)
    assert local.seed is query and other.seed is None
    seed_from([TokenCounter(local)], None)
    assert local.seed is None


async def test_a_seed_that_lands_in_the_next_month_is_dropped() -> None:
    limiter = LocalLimiter(seed=Log(spent=100, delay=0.05), seed_wait=0.0)
    assert not await refused(limiter)
    key = limiter._keys["team"]
    key.month, key.spent = "2999-01", 0  # as `counts` leaves a key when a month begins
    await asyncio.sleep(0.1)
    assert key.spent == 0
