"""A fake OpenAI-compatible upstream: a real HTTP server on loopback.

It speaks the Chat Completions wire protocol as OpenAI documents it (non-stream JSON,
SSE chunks with ``[DONE]``, tool calls streamed as indexed argument pieces, the usage
chunk, error objects) under any base path, so one server stands in for every
OpenAI-compatible source. It records every request it receives.

What it answers is chosen by the requested model name:

- ``tool-*``: one call to ``get_weather`` with arguments ``{"city": "Paris"}``;
- ``reason-*``: a ``reasoning_content`` before the text;
- ``error-NNN``: an error object with status NNN (429 adds ``Retry-After: 7``);
- ``die-*``: a stream that breaks off after two chunks;
- ``oops-*``: a stream that sends an error object after two chunks;
- ``lie-*``: a non-stream answer that is not a chat completion;
- ``slow-*``: answers after two seconds (for timeouts);
- ``stall-*``: a stream that goes silent for two seconds after two chunks;
- ``long-*``: a stream of a chunk every 0.1 s for a minute (for a server's shutdown);
- anything else: the text ``Hello from the fake.``
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any

import orjson
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

TEXT_PIECES = ["Hello", " from", " the", " fake."]
TOOL_ARGUMENT_PIECES = ['{"ci', 'ty": ', '"Par', 'is"}']
MODELS = ["gpt-fake-1", "gpt-fake-2"]


@dataclass
class Seen:
    """One request the fake received."""

    method: str
    path: str
    headers: dict[str, str]
    body: Any


@dataclass
class FakeOpenAI:
    """The server's state: what it saw, and knobs the tests turn."""

    url: str = ""
    seen: list[Seen] = field(default_factory=list)
    # Paths (suffix after the base) that answer 404, to test URL forgiveness.
    missing_models_prefixes: tuple[str, ...] = ()
    models_payload: Any = None

    def last(self, suffix: str) -> Seen:
        """The most recent request whose path ends with *suffix*."""
        for seen in reversed(self.seen):
            if seen.path.endswith(suffix):
                return seen
        raise AssertionError(f"no request to *{suffix}; saw {[s.path for s in self.seen]}")


def _error(status: int, message: str, etype: str, code: str | None = None) -> Response:
    body = {"error": {"message": message, "type": etype, "param": None, "code": code}}
    headers = {"Retry-After": "7"} if status == 429 else {}
    return Response(
        orjson.dumps(body), status_code=status, headers=headers, media_type="application/json"
    )


def constrained_text(request: dict[str, Any]) -> str | None:
    """What a constrained server answers: vLLM's structured_outputs or legacy guided_*
    fields, or an OpenAI json_schema response_format (``wrong-*`` models ignore them)."""
    from tests.fakes.common import sample

    legacy = {k.removeprefix("guided_"): v for k, v in request.items() if k.startswith("guided_")}
    wanted = request.get("structured_outputs") or legacy
    if "json" in wanted:
        return orjson.dumps(sample(wanted["json"])).decode()
    if "choice" in wanted:
        return str(wanted["choice"][-1])
    if "regex" in wanted:
        return "".join(TEXT_PIECES)  # the tests' patterns match the fake's text
    fmt = request.get("response_format") or {}
    if fmt.get("type") == "json_schema":
        return orjson.dumps(sample(fmt["json_schema"].get("schema") or {})).decode()
    return None


def completion(model: str, request: dict[str, Any]) -> dict[str, Any]:
    """The non-stream answer for *model*."""
    message: dict[str, Any] = {"role": "assistant", "content": "".join(TEXT_PIECES)}
    finish = "stop"
    if model.startswith("tool-"):
        message = {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_abc123",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": "".join(TOOL_ARGUMENT_PIECES)},
                }
            ],
        }
        finish = "tool_calls"
    elif model.startswith("reason-"):
        message["reasoning_content"] = "Thinking about it."
    constrained = constrained_text(request)
    if constrained is not None and not model.startswith("wrong-"):
        message["content"] = constrained
    logprobs = None
    if request.get("logprobs"):
        token = {"token": "Hello", "logprob": -0.25, "bytes": [72, 101, 108, 108, 111]}
        logprobs = {"content": [{**token, "top_logprobs": [token]}], "refusal": None}
    choice: dict[str, Any] = {
        "index": 0,
        "message": message,
        "finish_reason": finish,
        "logprobs": logprobs,
    }
    return {
        "id": "chatcmpl-fake123",
        "object": "chat.completion",
        "created": 1_700_000_000,
        "model": model,
        "system_fingerprint": "fp_fake",
        "choices": [choice] * int(request.get("n") or 1),
        "usage": {"prompt_tokens": 11, "completion_tokens": 4, "total_tokens": 15},
    }


def _chunk(model: str, delta: dict[str, Any], finish: str | None = None) -> bytes:
    data = {
        "id": "chatcmpl-fake123",
        "object": "chat.completion.chunk",
        "created": 1_700_000_000,
        "model": model,
        "system_fingerprint": "fp_fake",
        "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
    }
    return b"data: " + orjson.dumps(data) + b"\n\n"


async def stream_frames(model: str, request: dict[str, Any]) -> AsyncIterator[bytes]:
    """The SSE stream for *model*, as OpenAI frames it."""
    yield _chunk(model, {"role": "assistant", "content": ""})
    if model.startswith("tool-"):
        yield _chunk(
            model,
            {
                "tool_calls": [
                    {
                        "index": 0,
                        "id": "call_abc123",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": ""},
                    }
                ]
            },
        )
        for piece in TOOL_ARGUMENT_PIECES:
            yield _chunk(model, {"tool_calls": [{"index": 0, "function": {"arguments": piece}}]})
        yield _chunk(model, {}, "tool_calls")
    else:
        if model.startswith("reason-"):
            yield _chunk(model, {"reasoning_content": "Thinking about it."})
        if model.startswith("long-"):
            for _ in range(600):
                yield _chunk(model, {"content": "."})
                await asyncio.sleep(0.1)
        for number, piece in enumerate(TEXT_PIECES):
            if model.startswith("stall-") and number == 2:
                await asyncio.sleep(2)
            if model.startswith("die-") and number == 2:
                await asyncio.sleep(0.05)
                raise ConnectionResetError("the fake dies mid-stream")
            if model.startswith("oops-") and number == 2:
                error = {
                    "error": {
                        "message": "overloaded mid-stream",
                        "type": "server_error",
                        "code": "overloaded",
                    }
                }
                yield b"data: " + orjson.dumps(error) + b"\n\n"
                return
            yield _chunk(model, {"content": piece})
        yield _chunk(model, {}, "stop")
    if (request.get("stream_options") or {}).get("include_usage"):
        usage = {
            "id": "chatcmpl-fake123",
            "object": "chat.completion.chunk",
            "created": 1_700_000_000,
            "model": model,
            "system_fingerprint": "fp_fake",
            "choices": [],
            "usage": {"prompt_tokens": 11, "completion_tokens": 4, "total_tokens": 15},
        }
        yield b"data: " + orjson.dumps(usage) + b"\n\n"
    yield b"data: [DONE]\n\n"


def build_app(state: FakeOpenAI) -> Starlette:
    """The fake's routes, under any base path."""

    async def record(request: Request) -> Any:
        raw = await request.body()
        body = orjson.loads(raw) if raw else None
        state.seen.append(Seen(request.method, request.url.path, dict(request.headers), body))
        return body

    async def chat(request: Request) -> Response:
        body = await record(request)
        auth = request.headers.get("authorization", "")
        if auth == "Bearer sk-revoked":
            return _error(
                401,
                "Incorrect API key provided: sk-revo****oked.",
                "invalid_request_error",
                "invalid_api_key",
            )
        model = str(body.get("model", ""))
        if model.startswith("error-"):
            status = int(model.split("-")[1].partition(":")[0])  # Ollama adds ":latest"
            return _error(status, f"the fake says {status}", "fake_error", f"fake_{status}")
        if model.startswith("slow-"):
            await asyncio.sleep(2)
        if model.startswith("lie-"):
            return Response(b'{"hello": "not a completion"}', media_type="application/json")
        if body.get("stream"):
            return StreamingResponse(stream_frames(model, body), media_type="text/event-stream")
        return Response(orjson.dumps(completion(model, body)), media_type="application/json")

    async def models(request: Request) -> Response:
        await record(request)
        prefix = request.url.path.removesuffix("/models")
        if prefix in state.missing_models_prefixes:
            return _error(404, "Not Found", "not_found")
        payload = state.models_payload or {
            "object": "list",
            "data": [
                {"id": m, "object": "model", "created": 0, "owned_by": "fake"} for m in MODELS
            ],
        }
        return Response(orjson.dumps(payload), media_type="application/json")

    return Starlette(
        routes=[
            Route("/{base:path}/chat/completions", chat, methods=["POST"]),
            Route("/chat/completions", chat, methods=["POST"]),
            Route("/{base:path}/models", models, methods=["GET"]),
            Route("/models", models, methods=["GET"]),
        ]
    )


def serve(app: Starlette) -> Iterator[str]:
    """Run *app* on a free loopback port in a thread; yield its URL until closed."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="critical", ws="none", lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline:
            raise RuntimeError("the fake upstream did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
