"""Per-key limits: requests per minute, tokens per minute, tokens per calendar month.

The rules (docs/keys.md), the same in process and in Redis:

* **RPM** is a sliding-window log: a request is admitted when fewer than ``rpm``
  requests were admitted in the 60 seconds before it, so no 60-second window ever
  holds more than ``rpm``. (GCRA would keep less state, but with a burst of ``rpm`` it
  lets close to twice that through in one window.)
* **TPM** counts the tokens of answers already finished, in one-second buckets, over
  the last 60 seconds; a request is refused while they reach ``tpm``. A request's own
  tokens are not known before it runs, so one request may take the count past ``tpm``.
* **budget_tokens** counts the tokens of the calendar month (UTC); a request is refused
  once they reach it, until the month ends.

`LocalLimiter` holds the counts in this process. `chatgate.limits_redis.RedisLimiter`
holds them in Redis, checked and counted by one Lua script, so that many instances
enforce one limit. A `LocalLimiter` given a store query (`seed_from`) starts a key's
month from the usage log, so that a budget survives a restart without Redis.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol

from chatgate.errors import RateLimitError
from chatgate.plan import ANONYMOUS, Attempt, Caller, Finished, Plan

log = logging.getLogger("chatgate.limits")
WINDOW = 60.0  # seconds, for both RPM and TPM
# The longest a key's first requests wait, in all, for its month to be read from the
# usage log: a healthy store answers in milliseconds, and a slow one must not hold
# requests up (they are admitted on what is counted so far).
SEED_WAIT = 0.25

# The store query that seeds a budget: the tokens of a caller's usage rows in
# [since, until).
Seed = Callable[[str, datetime, datetime], Awaitable[int]]


@dataclass(frozen=True, slots=True)
class Counts:
    """A key's counts at the moment of a check, and which limit refused it ("" none).

    Times are seconds on the limiter's clock; ``oldest*`` is -1 when nothing is counted.
    """

    refused: str
    requests: int  # admitted in the window, this one included when admitted
    oldest_request: float
    tokens: int  # finished in the window
    oldest_tokens: float
    spent: int  # this month
    now: float


class Limiter(Protocol):
    """Checks a request against its caller's limits, and counts the tokens it used."""

    async def admit(self, caller: Caller) -> dict[str, str]:
        """The rate-limit headers for an admitted request; `RateLimitError` if refused."""
        ...

    def spend(self, caller: Caller, tokens: int) -> None:
        """Count *tokens* an answer used against the caller's TPM and budget."""
        ...


def month_of(moment: float) -> str:
    """The budget period a moment falls in: its calendar month, UTC (``2026-12``)."""
    # Asked on every limited request: the month last computed stands until it ends.
    global _MONTH
    start, end, name = _MONTH
    if start <= moment < end:
        return name
    day = datetime.fromtimestamp(moment, UTC)
    _MONTH = (month_start(moment), moment + month_left(moment), day.strftime("%Y-%m"))
    return _MONTH[2]


_MONTH: tuple[float, float, str] = (0.0, 0.0, "")


def month_start(moment: float) -> float:
    """The start of *moment*'s calendar month, UTC, in seconds since the epoch."""
    day = datetime.fromtimestamp(moment, UTC)
    return datetime(day.year, day.month, 1, tzinfo=UTC).timestamp()


def month_left(moment: float) -> float:
    """Seconds from *moment* to the start of the next calendar month, UTC."""
    day = datetime.fromtimestamp(moment, UTC)
    year, month = (day.year + 1, 1) if day.month == 12 else (day.year, day.month + 1)
    return datetime(year, month, 1, tzinfo=UTC).timestamp() - moment


def _reset(seconds: float) -> str:
    return f"{max(0.0, seconds):.3f}".rstrip("0").rstrip(".") + "s"


def verdict(caller: Caller, counts: Counts) -> dict[str, str]:
    """The ``x-ratelimit-*`` headers for *counts*; a `RateLimitError` (with them and
    ``Retry-After``) when a limit refused the request."""
    headers: dict[str, str] = {}
    now = counts.now
    request_reset = counts.oldest_request + WINDOW - now if counts.oldest_request >= 0 else 0.0
    token_reset = counts.oldest_tokens + WINDOW - now if counts.oldest_tokens >= 0 else 0.0
    if caller.rpm is not None:
        headers["x-ratelimit-limit-requests"] = str(caller.rpm)
        headers["x-ratelimit-remaining-requests"] = str(max(0, caller.rpm - counts.requests))
        headers["x-ratelimit-reset-requests"] = _reset(request_reset)
    if caller.tpm is not None:
        headers["x-ratelimit-limit-tokens"] = str(caller.tpm)
        headers["x-ratelimit-remaining-tokens"] = str(max(0, caller.tpm - counts.tokens))
        headers["x-ratelimit-reset-tokens"] = _reset(token_reset)
    if not counts.refused:
        return headers
    if counts.refused == "requests":
        wait = request_reset
        message = f"rate limit reached for '{caller.id}': {caller.rpm} requests per minute"
    elif counts.refused == "tokens":
        wait = token_reset
        message = f"rate limit reached for '{caller.id}': {caller.tpm} tokens per minute"
    else:
        wait = month_left(time.time())
        message = (
            f"token budget spent for '{caller.id}': {counts.spent} of {caller.budget_tokens} "
            "tokens this month (UTC)"
        )
    headers["retry-after"] = str(max(1, math.ceil(wait)))
    raise RateLimitError(f"{message}; retry in {headers['retry-after']} s", headers=headers)


@dataclass(slots=True)
class _Key:
    """One caller's counts in this process."""

    requests: deque[float]
    # One-second buckets [second, tokens] and their running total: a check costs the
    # same at 10 answers a minute as at 100,000.
    tokens: deque[list[int]]
    token_total: int = 0
    month: str = ""
    spent: int = 0
    # Reading the month's spend from the usage log: None until it begins.
    seeding: asyncio.Task[None] | None = None
    wait_until: float = 0.0  # on the loop's clock: later requests no longer wait for it


class LocalLimiter:
    """The limits of this process alone (each instance counts its own); with *seed*,
    a key's month begins with what the usage log holds of it."""

    def __init__(
        self,
        clock: Callable[[], float] = time.monotonic,
        *,
        seed: Seed | None = None,
        seed_wait: float = SEED_WAIT,
    ) -> None:
        self._keys: dict[str, _Key] = {}
        self._now = clock
        self.seed = seed
        self.seed_wait = seed_wait
        self._seed_warned = False

    def _key(self, caller: Caller) -> _Key:
        found = self._keys.get(caller.id)
        if found is None:
            found = self._keys[caller.id] = _Key(deque(), deque())
        return found

    def counts(self, caller: Caller, *, take: bool) -> Counts:
        """Check *caller* now; with *take*, count the request when it is admitted."""
        now = self._now()
        key = self._key(caller)
        start = now - WINDOW
        while key.requests and key.requests[0] <= start:
            key.requests.popleft()
        while key.tokens and key.tokens[0][0] <= start:
            key.token_total -= key.tokens.popleft()[1]
        month = month_of(time.time())
        if key.month != month:
            key.month, key.spent = month, 0
        tokens = key.token_total
        refused = ""
        if caller.rpm is not None and len(key.requests) >= caller.rpm:
            refused = "requests"
        elif caller.tpm is not None and tokens >= caller.tpm:
            refused = "tokens"
        elif caller.budget_tokens is not None and key.spent >= caller.budget_tokens:
            refused = "budget"
        if take and not refused and caller.rpm is not None:
            key.requests.append(now)
        return Counts(
            refused,
            len(key.requests),
            key.requests[0] if key.requests else -1.0,
            tokens,
            key.tokens[0][0] if key.tokens else -1.0,
            key.spent,
            now,
        )

    async def admit(self, caller: Caller) -> dict[str, str]:
        """The rate-limit headers for an admitted request; `RateLimitError` if refused."""
        if self.seed is not None and caller.budget_tokens is not None:
            key = self._key(caller)
            if key.seeding is None or not key.seeding.done():
                await self._seeded(caller, key)
        return verdict(caller, self.counts(caller, take=True))

    async def _seeded(self, caller: Caller, key: _Key) -> None:
        """Begin reading *caller*'s month from the usage log (once per key), and wait
        for it while the key's `seed_wait` lasts."""
        loop = asyncio.get_running_loop()
        if key.seeding is None:
            assert self.seed is not None
            now = time.time()
            # From here on this process counts the key itself; the log is read up to
            # here, so that nothing is counted twice.
            key.month, key.spent = month_of(now), 0
            until = datetime.fromtimestamp(now, UTC)
            since = datetime.fromtimestamp(month_start(now), UTC)
            key.seeding = loop.create_task(self._seed_key(caller.id, key, since, until))
            key.wait_until = loop.time() + self.seed_wait
        left = key.wait_until - loop.time()
        if left > 0:
            await asyncio.wait((key.seeding,), timeout=left)  # never cancels the read

    async def _seed_key(self, caller_id: str, key: _Key, since: datetime, until: datetime) -> None:
        assert self.seed is not None
        try:
            spent = await self.seed(caller_id, since, until)
        except Exception as exc:  # any failure: the month counts from zero, as without a store
            if not self._seed_warned:
                self._seed_warned = True
                log.warning(
                    "limits: the month's tokens of the gateway key '%s' could not be read "
                    "from the usage log (%s); in-process budgets count from zero",
                    caller_id,
                    type(exc).__name__,
                )
            return
        if key.month == month_of(until.timestamp()):  # not a month that has since ended
            key.spent += spent

    def spend(self, caller: Caller, tokens: int) -> None:
        """Count *tokens* an answer used against the caller's TPM and budget."""
        if tokens <= 0:
            return
        key = self._key(caller)
        now = self._now()
        if caller.tpm is not None:
            second = math.floor(now)
            if key.tokens and key.tokens[-1][0] == second:
                key.tokens[-1][1] += tokens
            else:
                key.tokens.append([second, tokens])
            key.token_total += tokens
        month = month_of(time.time())
        if key.month != month:
            key.month, key.spent = month, 0
        key.spent += tokens


def seed_from(observers: Iterable[object], seed: Seed | None) -> None:
    """Hand *seed* (a store query, or None to stop) to each in-process limiter whose
    `TokenCounter` is among *observers* (a gateway's): the server's limiter, which is
    made before its store is opened."""
    for observer in observers:
        if isinstance(observer, TokenCounter) and isinstance(observer.limiter, LocalLimiter):
            observer.limiter.seed = seed


class TokenCounter:
    """The observer that tells the limiter how many tokens each answer used."""

    def __init__(self, limiter: Limiter) -> None:
        self.limiter = limiter

    def started(self, plan: Plan, attempt: Attempt) -> None:
        """Nothing is known until the attempt ends."""

    def finished(self, plan: Plan, attempt: Attempt, result: Finished) -> None:
        """Count the answer's tokens, when its caller has a token limit."""
        caller = plan.caller
        if caller is ANONYMOUS or result.usage is None:
            return
        if caller.tpm is None and caller.budget_tokens is None:
            return
        self.limiter.spend(caller, result.usage.total_tokens)
