"""The measurements behind two dependency choices: the upstream HTTP client and JSON.

Both clients make the same requests to the nginx mock from one event loop: one at a
time (cost per request) and 64 at once (throughput). JSON: encoding the answer and a
stream chunk, decoding the upstream's answer, with the standard library and orjson.
"""

from __future__ import annotations

import asyncio
import json
import time
import timeit
from collections.abc import Awaitable, Callable
from typing import Any

import orjson

from bench.mock import COMPLETION

BODY = json.dumps({"model": "mock-model", "messages": [{"role": "user", "content": "Hi"}]})
HEADERS = {"Content-Type": "application/json"}


async def _timed(
    send: Callable[[], Awaitable[None]], sequential: int, concurrent: int
) -> dict[str, float]:
    for _ in range(20):
        await send()
    started = time.perf_counter()
    for _ in range(sequential):
        await send()
    per_request = (time.perf_counter() - started) / sequential
    started = time.perf_counter()
    for _ in range(max(1, sequential // concurrent)):
        await asyncio.gather(*(send() for _ in range(concurrent)))
    rounds = max(1, sequential // concurrent)
    return {
        "us_per_request": per_request * 1e6,
        "rps_64": rounds * concurrent / (time.perf_counter() - started),
    }


async def _httpx(url: str, sequential: int) -> dict[str, float]:
    import httpx

    async with httpx.AsyncClient(limits=httpx.Limits(max_connections=100)) as client:

        async def send() -> None:
            response = await client.post(url, content=BODY, headers=HEADERS)
            response.read()

        return await _timed(send, sequential, 64)


async def _aiohttp(url: str, sequential: int) -> dict[str, float]:
    import aiohttp

    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=100)) as session:

        async def send() -> None:
            async with session.post(url, data=BODY, headers=HEADERS) as response:
                await response.read()

        return await _timed(send, sequential, 64)


async def _pyreqwest(url: str, sequential: int) -> dict[str, float]:
    from pyreqwest.client import ClientBuilder

    body = BODY.encode()
    async with ClientBuilder().http1_only().build() as client:

        async def send() -> None:
            request = client.post(url).header("Content-Type", "application/json")
            response = await request.body_bytes(body).build().send()
            await response.bytes()

        return await _timed(send, sequential, 64)


async def _aiosonic(url: str, sequential: int) -> dict[str, float]:
    import aiosonic

    client = aiosonic.HTTPClient()
    body = BODY.encode()

    async def send() -> None:
        response = await client.post(url, data=body, headers=HEADERS)
        await response.content()

    return await _timed(send, sequential, 64)


CLIENTS = (
    ("httpx", _httpx),
    ("aiohttp", _aiohttp),
    ("pyreqwest (Rust)", _pyreqwest),
    ("aiosonic", _aiosonic),
)


def http_clients(url: str, sequential: int) -> dict[str, dict[str, float]]:
    """The candidate clients, same loop (uvloop, as the server uses), same requests."""
    import uvloop

    return {name: uvloop.run(run(url, sequential)) for name, run in CLIENTS}


def json_libraries(rounds: int) -> dict[str, dict[str, float]]:
    """Microseconds to encode an answer and a chunk, and to decode an answer."""
    chunk = {
        "id": "chatcmpl-x",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "m",
        "choices": [
            {"index": 0, "delta": {"content": " word"}, "logprobs": None, "finish_reason": None}
        ],
    }
    raw = json.dumps(COMPLETION).encode()
    cases: dict[str, dict[str, Callable[[], Any]]] = {
        "json": {
            "encode answer": lambda: json.dumps(COMPLETION).encode(),
            "encode chunk": lambda: json.dumps(chunk).encode(),
            "decode answer": lambda: json.loads(raw),
        },
        "orjson": {
            "encode answer": lambda: orjson.dumps(COMPLETION),
            "encode chunk": lambda: orjson.dumps(chunk),
            "decode answer": lambda: orjson.loads(raw),
        },
    }
    return {
        lib: {
            case: min(timeit.repeat(fn, number=rounds, repeat=5)) / rounds * 1e6
            for case, fn in fns.items()
        }
        for lib, fns in cases.items()
    }
