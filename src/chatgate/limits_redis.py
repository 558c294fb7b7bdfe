"""The per-key limits shared through Redis, so that N instances enforce one limit.

One Lua script checks every limit of a key and counts the requests, atomically: Redis
runs a script alone, so two instances checking at once are put in order, and the limit
is exact to the request. The script reads Redis's own clock (``TIME``), so instances
whose clocks differ still share one window. The rules are `chatgate.limits`'s.

Calls are batched, because a Redis call costs this process far more CPU (redis-py and
the event loop, some 150 µs) than Redis spends on the script:

* the checks made in one turn of the event loop go in one script call per key (and one
  round trip for all keys), and while a call is out the next checks queue for the one
  after it;
* a finished answer's tokens wait up to `LINGER` seconds and ride along with the key's
  next check, in the same script call, counted before that check; only a key with no
  check in that time costs a call of its own.

Each call is bounded by `TIMEOUT`. When Redis cannot be reached the limiter **fails
open**: the request is admitted, a warning is logged (once per `WARN_EVERY` seconds),
and Redis is not asked again for `PAUSE` seconds, so an outage costs no latency. An
unreachable limiter should not take the gateway down with it; the keys themselves
(authentication, revocation) do not depend on Redis.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import time
from dataclasses import dataclass, field
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import NoScriptError

from chatgate.limits import WINDOW, Counts, month_left, month_of, verdict
from chatgate.plan import Caller
from chatgate.urls import mask_userinfo

log = logging.getLogger("chatgate.limits")
TIMEOUT = 0.25  # seconds for one Redis call
PAUSE = 1.0  # seconds without asking Redis after it failed
WARN_EVERY = 30.0
LINGER = 0.05  # seconds an answer's tokens wait for a check to ride along with
BATCH = 256  # checks of one key in one script call at most

# KEYS: the request log (sorted set), the token buckets (hash), the month's budget.
# ARGV: the window (ms), the budget's TTL (s), tokens to count towards TPM and towards
# the budget (0: none), then four per check: rpm, tpm, budget (0: none), a unique member.
# Returns seven numbers per check, in order: refused, requests, oldest request, tokens,
# oldest tokens, spent, now.
SCRIPT = """
local window, ttl = tonumber(ARGV[1]), tonumber(ARGV[2])
local add_tpm, add_budget = tonumber(ARGV[3]), tonumber(ARGV[4])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
if add_tpm > 0 then
  redis.call('HINCRBY', KEYS[2], now - now % 1000, add_tpm)
  redis.call('PEXPIRE', KEYS[2], window)
end
if add_budget > 0 then
  redis.call('INCRBY', KEYS[3], add_budget)
  redis.call('EXPIRE', KEYS[3], ttl)
end
local out = {}
if #ARGV < 8 then return out end
local any_rpm, any_tpm, any_budget = false, false, false
for i = 5, #ARGV, 4 do
  if tonumber(ARGV[i]) > 0 then any_rpm = true end
  if tonumber(ARGV[i + 1]) > 0 then any_tpm = true end
  if tonumber(ARGV[i + 2]) > 0 then any_budget = true end
end
local tokens, oldest_tokens = 0, -1
if any_tpm then
  local buckets = redis.call('HGETALL', KEYS[2])
  for i = 1, #buckets, 2 do
    local at = tonumber(buckets[i])
    if at <= now - window then
      redis.call('HDEL', KEYS[2], buckets[i])
    else
      tokens = tokens + tonumber(buckets[i + 1])
      if oldest_tokens < 0 or at < oldest_tokens then oldest_tokens = at end
    end
  end
end
local spent = 0
if any_budget then spent = tonumber(redis.call('GET', KEYS[3]) or '0') end
local count, oldest = 0, -1
if any_rpm then
  redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
  count = redis.call('ZCARD', KEYS[1])
  local first = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
  if #first > 0 then oldest = tonumber(first[2]) end
end
local added = false
for i = 5, #ARGV, 4 do
  local rpm, tpm, budget = tonumber(ARGV[i]), tonumber(ARGV[i + 1]), tonumber(ARGV[i + 2])
  local refused = ''
  if rpm > 0 and count >= rpm then refused = 'requests'
  elseif tpm > 0 and tokens >= tpm then refused = 'tokens'
  elseif budget > 0 and spent >= budget then refused = 'budget' end
  if refused == '' and rpm > 0 then
    redis.call('ZADD', KEYS[1], now, ARGV[i + 3])
    added = true
    count = count + 1
    if oldest < 0 then oldest = now end
  end
  local n = #out
  out[n + 1], out[n + 2], out[n + 3], out[n + 4] = refused, count, oldest, tokens
  out[n + 5], out[n + 6], out[n + 7] = oldest_tokens, spent, now
end
if added then redis.call('PEXPIRE', KEYS[1], window) end
return out
"""

Check = tuple[Caller, "asyncio.Future[Counts | None]"]


def redis_keys(label: str, month: str) -> tuple[str, str, str]:
    """The Redis keys of one gateway key's counts (one hash tag: one cluster slot)."""
    tag = f"chatgate:limits:{{{label}}}"
    return f"{tag}:requests", f"{tag}:tokens", f"{tag}:budget:{month}"


@dataclass(slots=True)
class _Queued:
    """One key's checks waiting for a script call, and its tokens not yet counted."""

    checks: list[Check] = field(default_factory=list)
    tpm_tokens: int = 0
    budget_tokens: int = 0


@dataclass(frozen=True, slots=True)
class _Call:
    """One script call: a key's Redis keys, its arguments, and the checks it answers."""

    keys: tuple[str, str, str]
    args: list[str | int]
    checks: list[Check]


class RedisLimiter:
    """The limits, counted in Redis and shared by every instance that uses it."""

    def __init__(self, url: str, *, timeout: float = TIMEOUT, linger: float = LINGER) -> None:
        self.url = url
        self.timeout = timeout
        self.linger = linger
        self.client: Redis = Redis.from_url(
            url, socket_timeout=timeout, socket_connect_timeout=timeout
        )
        self.script = self.client.register_script(SCRIPT)
        self._queued: dict[str, _Queued] = {}
        self._sender: asyncio.Task[None] | None = None
        self._linger: asyncio.TimerHandle | None = None
        self._tokens_due = False  # the lingering tokens go in the next call, with or without checks
        self._paused_until = 0.0
        self._warned_at = -WARN_EVERY
        # A request's member in the request log: this limiter's random prefix and a
        # serial, unique across instances without a random read per check.
        self._member_prefix = f"{os.urandom(8).hex()}-"
        self._members = itertools.count()

    async def admit(self, caller: Caller) -> dict[str, str]:
        """The rate-limit headers for an admitted request; `RateLimitError` if refused;
        no headers (admitted) when Redis cannot answer."""
        if time.monotonic() < self._paused_until:
            return {}
        loop = asyncio.get_running_loop()
        answer: asyncio.Future[Counts | None] = loop.create_future()
        self._queue(caller.id).checks.append((caller, answer))
        self._send_soon()
        counts = await answer  # the sender bounds its calls and resolves every check
        return {} if counts is None else verdict(caller, counts)

    def spend(self, caller: Caller, tokens: int) -> None:
        """Count *tokens* towards the caller's TPM and budget, with its next check or
        within `linger` seconds (the answer does not wait)."""
        if tokens <= 0 or time.monotonic() < self._paused_until:
            return
        queued = self._queue(caller.id)
        if caller.tpm is not None:
            queued.tpm_tokens += tokens
        if caller.budget_tokens is not None:
            queued.budget_tokens += tokens
        if self._linger is None:
            self._linger = asyncio.get_running_loop().call_later(self.linger, self._tokens_now)

    async def spend_now(self, caller: Caller, tokens: int) -> None:
        """Count *tokens* in Redis now, and everything else waiting."""
        self.spend(caller, tokens)
        await self.flush()

    async def flush(self) -> None:
        """Send every queued check and count, and wait until they are answered."""
        self._tokens_now()
        while self._sender is not None:
            await asyncio.shield(self._sender)

    def _queue(self, label: str) -> _Queued:
        queued = self._queued.get(label)
        if queued is None:
            queued = self._queued[label] = _Queued()
        return queued

    def _tokens_now(self) -> None:
        if self._linger is not None:
            self._linger.cancel()
            self._linger = None
        self._tokens_due = True
        self._send_soon()

    def _send_soon(self) -> None:
        # One sender at a time: the checks that queue while its call is out go in its
        # next call, which is what batches them under load.
        if self._sender is None:
            self._sender = asyncio.get_running_loop().create_task(self._send_all())

    async def _send_all(self) -> None:
        try:
            while calls := self._take():
                await self._send(calls)
                if time.monotonic() < self._paused_until:
                    self._drop_all()  # Redis just failed: what waits is admitted at once
        finally:
            self._sender = None

    def _drop_all(self) -> None:
        for queued in self._queued.values():
            for _, answer in queued.checks:
                if not answer.done():
                    answer.set_result(None)
        self._queued.clear()

    def _take(self) -> list[_Call]:
        """The calls to make now: every key with checks (up to `BATCH` each) and its
        tokens; and every key's tokens when they are due."""
        due, self._tokens_due = self._tokens_due, False
        now = time.time()
        month = month_of(now)
        ttl = int(month_left(now)) + 86_400  # the month, and a day for late readers
        calls: list[_Call] = []
        for label, queued in list(self._queued.items()):
            counted = queued.tpm_tokens or queued.budget_tokens
            if not queued.checks and not (due and counted):
                if not counted:
                    del self._queued[label]
                continue
            checks, queued.checks = queued.checks[:BATCH], queued.checks[BATCH:]
            args: list[str | int] = [int(WINDOW * 1000), ttl]
            args += [queued.tpm_tokens, queued.budget_tokens]
            queued.tpm_tokens = queued.budget_tokens = 0
            for caller, _ in checks:
                args += [caller.rpm or 0, caller.tpm or 0, caller.budget_tokens or 0]
                args.append(f"{self._member_prefix}{next(self._members)}")
            calls.append(_Call(redis_keys(label, month), args, checks))
            if not queued.checks:
                del self._queued[label]
        return calls

    async def _send(self, calls: list[_Call]) -> None:
        """Make *calls* in one round trip and answer their checks; None to each (admit)
        when Redis fails."""
        answers: list[Any] | None = None
        try:
            async with asyncio.timeout(self.timeout):
                if len(calls) == 1:
                    answers = [await self.script(keys=calls[0].keys, args=calls[0].args)]
                else:
                    answers = await self._pipelined(calls)
        except Exception as exc:  # Redis errors, and anything else: fail open, said once
            self._failed(exc)
        finally:  # any way out, even cancelled: no check is left waiting
            for index, call in enumerate(calls):
                found = answers[index] if answers is not None else None
                for position, (_, answer) in enumerate(call.checks):
                    if not answer.done():
                        answer.set_result(_counts(found, position))

    async def _pipelined(self, calls: list[_Call]) -> list[Any]:
        """*calls* in one pipeline. By the script's hash alone: a pipeline given the
        script object asks Redis whether it knows it on every run, a round trip more; a
        Redis that does not (restarted, flushed) is given it and asked again once."""
        try:
            return await self._by_hash(calls)
        except NoScriptError:
            await self.client.script_load(SCRIPT)
            return await self._by_hash(calls)

    async def _by_hash(self, calls: list[_Call]) -> list[Any]:
        async with self.client.pipeline(transaction=False) as pipe:
            for call in calls:
                pipe.evalsha(self.script.sha, len(call.keys), *call.keys, *call.args)
            return list(await pipe.execute())

    def _failed(self, exc: BaseException) -> None:
        self._paused_until = time.monotonic() + PAUSE
        now = time.monotonic()
        if now - self._warned_at >= WARN_EVERY:
            self._warned_at = now
            log.warning(
                "limits: Redis at %s did not answer (%s): requests are admitted without "
                "their limits until it does",
                mask_userinfo(self.url),
                type(exc).__name__,
            )

    async def aclose(self) -> None:
        """Send the counts still waiting, then close the connection."""
        await self.flush()
        await self.client.aclose()


def _counts(found: Any, position: int) -> Counts | None:
    """The counts of the check at *position* in a script's answer (None: no answer)."""
    if not isinstance(found, list) or len(found) < 7 * (position + 1):
        return None
    start = 7 * position
    refused, count, oldest, tokens, oldest_tokens, spent, now = found[start : start + 7]
    return Counts(
        refused.decode() if isinstance(refused, bytes) else str(refused),
        int(count),
        int(oldest) / 1000,
        int(tokens),
        int(oldest_tokens) / 1000,
        int(spent),
        int(now) / 1000,
    )
