"""Which Redis client for the shared limiter: CPU per script call, one at a time.

    python -m bench.redis_clients redis://127.0.0.1:6379/0 [--calls 3000]

Each client calls one small Lua script by hash (``EVALSHA``, as the limiter does) from
one uvloop loop, one call after another, and the process's CPU time is divided by the
calls: the cost a limited request pays in the gateway's own process. Measured: redis-py
(chatgate's), coredis if installed (``pip install coredis``; not a dependency), and the
floor, a bare asyncio stream writing the same command in RESP by hand.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import json
import time
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlsplit

SCRIPT = "return redis.call('INCR', KEYS[1])"
KEY = "chatgate:bench:redis-clients"
WARM_UP = 200


async def _timed(call: Callable[[], Awaitable[Any]], calls: int) -> dict[str, float]:
    for _ in range(WARM_UP):
        await call()
    cpu, wall = time.process_time(), time.perf_counter()
    for _ in range(calls):
        await call()
    return {
        "cpu_us": round((time.process_time() - cpu) / calls * 1e6, 1),
        "wall_us": round((time.perf_counter() - wall) / calls * 1e6, 1),
    }


async def redis_py(url: str, calls: int) -> dict[str, float]:
    """redis-py's asyncio client and its `Script`."""
    import redis.asyncio

    client = redis.asyncio.from_url(url)
    try:
        script = client.register_script(SCRIPT)
        return await _timed(lambda: script(keys=[KEY]), calls)
    finally:
        await client.aclose()


async def coredis(url: str, calls: int) -> dict[str, float]:
    """coredis's client and its `Script`."""
    module: Any = importlib.import_module("coredis")
    client = module.Redis.from_url(url)
    async with client:
        script = client.register_script(SCRIPT)
        return await _timed(lambda: script(keys=[KEY]), calls)


def resp(*parts: str | bytes | int) -> bytes:
    """One command in RESP, the Redis wire protocol."""
    out = b"*%d\r\n" % len(parts)
    for part in parts:
        raw = part if isinstance(part, bytes) else str(part).encode()
        out += b"$%d\r\n%s\r\n" % (len(raw), raw)
    return out


async def bare(url: str, calls: int) -> dict[str, float]:
    """The floor: one asyncio stream, the command written and its one-line reply read."""
    where = urlsplit(url)
    reader, writer = await asyncio.open_connection(where.hostname, where.port or 6379)
    try:
        if where.password:
            writer.write(resp("AUTH", where.password))
            if not (await reader.readline()).startswith(b"+OK"):
                raise RuntimeError("redis refused the password")
        writer.write(resp("SCRIPT", "LOAD", SCRIPT))
        await reader.readline()  # the bulk string's length
        sha = (await reader.readline()).strip()
        command = resp("EVALSHA", sha, 1, KEY)

        async def call() -> bytes:
            writer.write(command)
            reply = await reader.readline()
            if not reply.startswith(b":"):
                raise RuntimeError(f"unexpected reply {reply!r}")
            return reply

        return await _timed(call, calls)
    finally:
        writer.close()


CLIENTS = {"redis-py": redis_py, "coredis": coredis, "bare asyncio (floor)": bare}


def measure(url: str, calls: int) -> dict[str, Any]:
    """Each client's CPU and wall time per call; a client not installed is skipped."""
    import uvloop

    out: dict[str, Any] = {}
    for name, run in CLIENTS.items():
        try:
            out[name] = uvloop.run(run(url, calls))
        except ModuleNotFoundError as exc:
            out[name] = {"skipped": f"not installed ({exc.name})"}
    return out


def main(argv: list[str] | None = None) -> None:
    """Print each client's figures as JSON."""
    parser = argparse.ArgumentParser(prog="bench.redis_clients")
    parser.add_argument("url")
    parser.add_argument("--calls", type=int, default=3000)
    args = parser.parse_args(argv)
    print(json.dumps(measure(args.url, args.calls), indent=1))


if __name__ == "__main__":
    main()
