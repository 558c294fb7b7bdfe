"""Where one request's time goes inside chatgate: each step of the pipeline, timed alone.

Runs the library pipeline (no HTTP server in front) against the mock, so the figures
are the cost of each step in microseconds, without the client's and the network's.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

import orjson

from chatgate.backends.remote import RemoteBackend
from chatgate.config import Connection, Settings
from chatgate.gateway import Gateway
from chatgate.server.doors.chat_shapes import render_response
from chatgate.validation import parse_chat_request

BODY = orjson.dumps(
    {
        "model": "mock/mock-model",
        "messages": [{"role": "user", "content": "Say something short."}],
        "max_tokens": 16,
    }
)


async def _per_call_us(step: Callable[[], Awaitable[Any]], rounds: int) -> float:
    for _ in range(min(200, rounds)):
        await step()
    started = time.perf_counter()
    for _ in range(rounds):
        await step()
    return (time.perf_counter() - started) / rounds * 1e6


async def breakdown(mock_url: str, rounds: int) -> dict[str, float]:
    """Microseconds per call of each step, and of the whole pipeline."""
    conn = Connection(
        name="mock", source="custom", base_url=f"{mock_url}/v1", models=["mock-model"]
    )
    gateway = Gateway(Settings(embedded=False, connections=[conn]))
    backend = gateway.backends["mock"]
    assert isinstance(backend, RemoteBackend)
    request = parse_chat_request(BODY)
    plan = gateway.prepare(request)
    upstream = backend.build(plan.first)
    answer = await backend.transport.send_json(upstream, "mock", 60, [])

    async def whole() -> None:
        planned = gateway.prepare(parse_chat_request(BODY))
        orjson.dumps(render_response(await gateway.run(planned)))

    async def parse() -> None:
        parse_chat_request(BODY)

    async def prepare() -> None:
        gateway.prepare(request)

    async def build() -> None:
        backend.build(plan.first)

    async def send() -> None:
        await backend.transport.send_json(upstream, "mock", 60, [])

    async def respond() -> None:
        orjson.dumps(render_response(backend.adapter.parse_response(answer, request.model)))

    steps = (
        ("whole pipeline", whole),
        ("parse and validate the body", parse),
        ("route, shape and plan", prepare),
        ("build the upstream request", build),
        ("upstream round trip (HTTP client + mock)", send),
        ("translate and encode the answer", respond),
    )
    try:
        # Round-robin, best of three: each step sees the same warm state and noise.
        best: dict[str, float] = {}
        for _ in range(3):
            for name, step in steps:
                figure = await _per_call_us(step, rounds)
                best[name] = min(best.get(name, figure), figure)
        return best
    finally:
        await gateway.aclose()
