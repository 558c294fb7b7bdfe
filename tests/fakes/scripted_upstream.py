"""A fake OpenAI-compatible upstream that fails on a script, for the resilience tests.

Each request takes the next step of the script of its base path's first segment (a
connection whose base URL is ``{url}/a`` follows ``script["a"]``), and answers normally
once the script is spent, so "fail the first N, then answer" is
``script["a"] = ["500"] * N``. The steps:

- ``ok``: a proper answer (stream: the fake's chunks and ``[DONE]``);
- ``NNN``: an error object with status NNN; ``429`` carries ``Retry-After`` (`retry_after`);
- ``NNN@S``: the same, with ``Retry-After: S`` whatever the status (``503@1``);
- ``die``: a stream that sends two chunks, then breaks off (non-stream: the same reset);
- ``stall``: waits `stall_seconds` before answering;
- ``garbage``: a 200 event stream (or body) that is not JSON.

It records, per base, when each request arrived (`arrivals`).
"""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from tests.fakes.openai_server import completion, stream_frames


@dataclass
class ScriptedUpstream:
    """The fake's state: the scripts the tests write and what it saw."""

    url: str = ""
    script: dict[str, list[str]] = field(default_factory=dict)
    arrivals: defaultdict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    retry_after: str = "1"
    stall_seconds: float = 5.0

    def reset(self) -> None:
        """Forget every script and arrival."""
        self.script.clear()
        self.arrivals.clear()

    def count(self, base: str) -> int:
        """How many requests for *base* arrived."""
        return len(self.arrivals[base])


def _error(status: int, retry_after: str | None) -> Response:
    body = {"error": {"message": f"scripted {status}", "type": "fake", "code": f"fake_{status}"}}
    headers = {"Retry-After": retry_after} if retry_after is not None else {}
    return Response(orjson.dumps(body), status, headers, media_type="application/json")


async def _dying(model: str, request: dict[str, Any]) -> AsyncIterator[bytes]:
    number = 0
    async for frame in stream_frames(model, request):
        if number == 2:
            await asyncio.sleep(0.05)
            raise ConnectionResetError("the scripted fake dies mid-stream")
        number += 1
        yield frame


async def _garbage() -> AsyncIterator[bytes]:
    yield b"data: {this is not json\n\n"
    yield b"data: [DONE]\n\n"


def build_app(state: ScriptedUpstream) -> Starlette:
    """The fake's one route, under any base path."""

    async def chat(request: Request) -> Response:
        body = orjson.loads(await request.body())
        model = str(body.get("model", ""))
        base = request.path_params["base"].strip("/").partition("/")[0]
        state.arrivals[base].append(time.monotonic())
        steps = state.script.get(base) or []
        step = steps.pop(0) if steps else "ok"
        stream = bool(body.get("stream"))
        if step.isdigit():
            return _error(int(step), state.retry_after if step == "429" else None)
        status, at, seconds = step.partition("@")
        if at and status.isdigit():
            return _error(int(status), seconds)
        if step == "stall":
            await asyncio.sleep(state.stall_seconds)
        if step == "garbage":
            if stream:
                return StreamingResponse(_garbage(), media_type="text/event-stream")
            return Response(b"this is not json", media_type="application/json")
        if step == "die":
            return StreamingResponse(_dying(model, body), media_type="text/event-stream")
        if stream:
            return StreamingResponse(stream_frames(model, body), media_type="text/event-stream")
        return Response(orjson.dumps(completion(model, body)), media_type="application/json")

    return Starlette(routes=[Route("/{base:path}/chat/completions", chat, methods=["POST"])])
