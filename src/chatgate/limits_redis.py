"""The per-key limits shared through Redis, so that N instances enforce one limit.

One Lua script checks every limit of a key and counts the request, atomically: Redis
runs a script alone, so two instances checking at once are put in order, and the limit
is exact to the request. The script reads Redis's own clock (``TIME``), so instances
whose clocks differ still share one window. The rules are `chatgate.limits`'s.

Each call is bounded by `TIMEOUT`. When Redis cannot be reached the limiter **fails
open**: the request is admitted, a warning is logged (once per `WARN_EVERY` seconds),
and Redis is not asked again for `PAUSE` seconds, so an outage costs no latency. An
unreachable limiter should not take the gateway down with it; the keys themselves
(authentication, revocation) do not depend on Redis.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import RedisError

from chatgate.limits import WINDOW, Counts, month_left, month_of, verdict
from chatgate.plan import Caller
from chatgate.urls import mask_userinfo

log = logging.getLogger("chatgate.limits")
TIMEOUT = 0.25  # seconds for one Redis call
PAUSE = 1.0  # seconds without asking Redis after it failed
WARN_EVERY = 30.0

# KEYS: the request log (sorted set), the token buckets (hash), the month's budget.
# ARGV: rpm, tpm, budget (0: none), a unique member for this request, the window (ms).
ADMIT = """
local rpm, tpm, budget = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local window = tonumber(ARGV[5])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local tokens, oldest_tokens = 0, -1
if tpm > 0 then
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
if budget > 0 then spent = tonumber(redis.call('GET', KEYS[3]) or '0') end
local count, oldest = 0, -1
if rpm > 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
  count = redis.call('ZCARD', KEYS[1])
  local first = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
  if #first > 0 then oldest = tonumber(first[2]) end
end
local refused = ''
if rpm > 0 and count >= rpm then refused = 'requests'
elseif tpm > 0 and tokens >= tpm then refused = 'tokens'
elseif budget > 0 and spent >= budget then refused = 'budget' end
if refused == '' and rpm > 0 then
  redis.call('ZADD', KEYS[1], now, ARGV[4])
  redis.call('PEXPIRE', KEYS[1], window)
  count = count + 1
  if oldest < 0 then oldest = now end
end
return {refused, count, oldest, tokens, oldest_tokens, spent, now}
"""

# KEYS: the token buckets, the month's budget. ARGV: tokens, window (ms), budget TTL (s),
# whether to count TPM, whether to count the budget.
SPEND = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
if ARGV[4] == '1' then
  redis.call('HINCRBY', KEYS[1], now - now % 1000, ARGV[1])
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
if ARGV[5] == '1' then
  redis.call('INCRBY', KEYS[2], ARGV[1])
  redis.call('EXPIRE', KEYS[2], ARGV[3])
end
return 1
"""


def redis_keys(label: str, month: str) -> tuple[str, str, str]:
    """The Redis keys of one gateway key's counts (one hash tag: one cluster slot)."""
    tag = f"chatgate:limits:{{{label}}}"
    return f"{tag}:requests", f"{tag}:tokens", f"{tag}:budget:{month}"


class RedisLimiter:
    """The limits, counted in Redis and shared by every instance that uses it."""

    def __init__(self, url: str, *, timeout: float = TIMEOUT) -> None:
        self.url = url
        self.timeout = timeout
        self.client: Redis = Redis.from_url(
            url, socket_timeout=timeout, socket_connect_timeout=timeout
        )
        self._admit = self.client.register_script(ADMIT)
        self._spend = self.client.register_script(SPEND)
        self._paused_until = 0.0
        self._warned_at = -WARN_EVERY
        self._pending: set[asyncio.Task[Any]] = set()

    async def admit(self, caller: Caller) -> dict[str, str]:
        """The rate-limit headers for an admitted request; `RateLimitError` if refused;
        no headers (admitted) when Redis cannot answer."""
        if time.monotonic() < self._paused_until:
            return {}
        keys = redis_keys(caller.id, month_of(time.time()))
        args: list[str | int] = [
            caller.rpm or 0,
            caller.tpm or 0,
            caller.budget_tokens or 0,
            f"{time.time_ns()}-{os.urandom(6).hex()}",
            int(WINDOW * 1000),
        ]
        try:
            async with asyncio.timeout(self.timeout):
                found = await self._admit(keys=keys, args=args)
        except (RedisError, OSError, TimeoutError) as exc:
            self._failed(exc)
            return {}
        refused, count, oldest, tokens, oldest_tokens, spent, now = found
        counts = Counts(
            refused.decode() if isinstance(refused, bytes) else str(refused),
            int(count),
            int(oldest) / 1000,
            int(tokens),
            int(oldest_tokens) / 1000,
            int(spent),
            int(now) / 1000,
        )
        return verdict(caller, counts)

    def spend(self, caller: Caller, tokens: int) -> None:
        """Count *tokens* in Redis, in the background (the answer does not wait)."""
        if tokens <= 0 or time.monotonic() < self._paused_until:
            return
        task = asyncio.get_running_loop().create_task(self.spend_now(caller, tokens))
        self._pending.add(task)  # held: the loop keeps only weak references to tasks
        task.add_done_callback(self._pending.discard)

    async def spend_now(self, caller: Caller, tokens: int) -> None:
        """Count *tokens* in Redis now."""
        _, bucket, budget = redis_keys(caller.id, month_of(time.time()))
        ttl = int(month_left(time.time())) + 86_400  # the month, and a day for late readers
        args: list[str | int] = [
            tokens,
            int(WINDOW * 1000),
            ttl,
            "1" if caller.tpm is not None else "0",
            "1" if caller.budget_tokens is not None else "0",
        ]
        try:
            async with asyncio.timeout(self.timeout):
                await self._spend(keys=[bucket, budget], args=args)
        except (RedisError, OSError, TimeoutError) as exc:
            self._failed(exc)

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
        """Wait for the counts still being sent, then close the connection."""
        if self._pending:
            await asyncio.gather(*self._pending, return_exceptions=True)
        await self.client.aclose()
