"""An upstream that quotes the caller's credentials back: a real HTTP server on loopback.

It speaks four wires under any base path (OpenAI ``/chat/completions``, Claude
``/messages``, Gemini ``/models/{model}:generateContent`` and Cohere ``/v2/chat``, each
with its models list) and, whatever it answers, repeats what it was sent: the
``Authorization`` (a Basic one decoded too), ``x-api-key`` and ``x-goog-api-key`` headers
and the body. `EchoUpstream.mode` picks where the echo goes:

- ``ok``: a proper answer; the echo only in the response headers (every mode has them);
- ``status_4xx`` / ``status_5xx``: an error status whose body quotes everything;
- ``error_200``: a 200 whose body is ``{"error": ...}`` quoting everything;
- ``stream_error``: a good event, then the protocol's error event quoting everything
  (a non-stream request gets ``error_200``);
- ``not_json``: a good event, then an event that is not JSON (non-stream: a text body);
- ``half_masked``: a 401 naming each credential as providers do, ``sk-ABCD****wxyz``;
- ``split``: a proper answer whose text is each credential, cut in two stream events.

``POST /token`` plays Google's OAuth endpoint for a service account, answering `TOKEN`.
"""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from tests.fakes.openai_server import serve

Mode = Literal[
    "ok",
    "status_4xx",
    "status_5xx",
    "error_200",
    "stream_error",
    "not_json",
    "half_masked",
    "split",
]
MODES: tuple[Mode, ...] = get_args(Mode)
Wire = Literal["openai", "claude", "gemini", "cohere"]
CREDENTIAL_HEADERS = ("authorization", "x-api-key", "x-goog-api-key")
# The access token the service-account exchange hands out: a secret of its own.
TOKEN = "ya29.Tq7vLk2ZpW9xR4mN8cJ3hF6sD1gB5yU0eA"
MODEL = "echo-model"
CLAUDE_DELTA = "content_block_delta"


@dataclass
class EchoUpstream:
    """The server's knobs and its count of requests."""

    url: str = ""
    mode: Mode = "ok"
    requests: int = 0
    paths: list[str] = field(default_factory=list)


def credentials(request: Request) -> list[str]:
    """Each credential the request carried, as sent, plus a Basic one decoded."""
    found = [request.headers[h] for h in CREDENTIAL_HEADERS if request.headers.get(h)]
    for value in list(found):
        scheme, _, token = value.partition(" ")
        found.append(token)
        if scheme.lower() == "basic":
            # An upstream that says which user and password it refused.
            found.append(base64.b64decode(token).decode(errors="replace"))
    return [value for value in found if value]


def half_masked(value: str) -> str:
    """*value* the way providers half-mask a key they refuse: ``sk-ABCD****wxyz``."""
    return f"{value[:10]}****{value[-4:]} ({value[:7]}...{value[-4:]})"


def echo_headers(quoted: list[str]) -> dict[str, str]:
    """Response headers that repeat the credentials (one header each)."""
    out = {f"x-echo-{n}": value for n, value in enumerate(quoted)}
    out["www-authenticate"] = f'Bearer error="invalid_token", token="{"; ".join(quoted)}"'
    return out


def _json(payload: Any, status: int, headers: dict[str, str]) -> Response:
    return Response(orjson.dumps(payload), status, headers, media_type="application/json")


def whole(wire: Wire, text: str) -> dict[str, Any]:
    """A whole answer saying *text* in *wire*'s shape."""
    if wire == "claude":
        return {
            "id": "msg_echo",
            "type": "message",
            "role": "assistant",
            "model": MODEL,
            "content": [{"type": "text", "text": text}],
            "stop_reason": "end_turn",
            "stop_sequence": None,
            "usage": {"input_tokens": 3, "output_tokens": 2},
        }
    if wire == "gemini":
        parts = [{"text": text}]
        return {
            "candidates": [{"content": {"role": "model", "parts": parts}, "finishReason": "STOP"}],
            "usageMetadata": {"promptTokenCount": 3, "candidatesTokenCount": 2},
            "responseId": "resp-echo",
        }
    if wire == "cohere":
        return {
            "id": "chat-echo",
            "finish_reason": "COMPLETE",
            "message": {"role": "assistant", "content": [{"type": "text", "text": text}]},
            "usage": {"tokens": {"input_tokens": 3, "output_tokens": 2}},
        }
    return {
        "id": "chatcmpl-echo",
        "object": "chat.completion",
        "created": 1_700_000_000,
        "model": MODEL,
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}
        ],
        "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5},
    }


def _event(data: Any, kind: str | None = None) -> bytes:
    named = b"event: " + kind.encode() + b"\n" if kind else b""
    return named + b"data: " + orjson.dumps(data) + b"\n\n"


def _chunk(choice: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": "chatcmpl-echo",
        "object": "chat.completion.chunk",
        "model": MODEL,
        "choices": [choice],
    }


def text_events(wire: Wire, pieces: list[str]) -> Iterator[bytes]:
    """The stream's opening and one event per piece of text, in *wire*'s framing."""
    if wire == "claude":
        start = {**whole(wire, ""), "content": [], "stop_reason": None}
        yield _event({"type": "message_start", "message": start}, "message_start")
        block: dict[str, Any] = {"type": "content_block_start", "index": 0}
        yield _event({**block, "content_block": {"type": "text", "text": ""}}, block["type"])
    if wire == "cohere":
        opening = {"type": "message-start", "id": "chat-echo"}
        yield _event({**opening, "delta": {"message": {"role": "assistant"}}}, "message-start")
    for piece in pieces:
        if wire == "claude":
            delta: dict[str, Any] = {"type": "text_delta", "text": piece}
            yield _event({"type": "content_block_delta", "index": 0, "delta": delta}, CLAUDE_DELTA)
        elif wire == "gemini":
            parts = [{"text": piece}]
            yield _event({"candidates": [{"content": {"role": "model", "parts": parts}}]})
        elif wire == "cohere":
            delta = {"message": {"content": {"text": piece}}}
            yield _event({"type": "content-delta", "index": 0, "delta": delta}, "content-delta")
        else:
            choice = {"index": 0, "delta": {"content": piece}, "finish_reason": None}
            yield _event(_chunk(choice))


def end_events(wire: Wire) -> Iterator[bytes]:
    """The events that close a good stream in *wire*."""
    if wire == "claude":
        yield _event({"type": "content_block_stop", "index": 0}, "content_block_stop")
        delta: dict[str, Any] = {"stop_reason": "end_turn", "stop_sequence": None}
        usage = {"output_tokens": 2}
        yield _event({"type": "message_delta", "delta": delta, "usage": usage}, "message_delta")
        yield _event({"type": "message_stop"}, "message_stop")
    elif wire == "gemini":
        parts = [{"text": ""}]
        candidate = {"content": {"role": "model", "parts": parts}, "finishReason": "STOP"}
        yield _event({"candidates": [candidate], "usageMetadata": {"promptTokenCount": 3}})
    elif wire == "cohere":
        yield _event({"type": "content-end", "index": 0}, "content-end")
        delta = {"finish_reason": "COMPLETE", "usage": {"tokens": {"input_tokens": 3}}}
        yield _event({"type": "message-end", "delta": delta}, "message-end")
    else:
        choice = {"index": 0, "delta": {}, "finish_reason": "stop"}
        yield _event(_chunk(choice))
        yield b"data: [DONE]\n\n"


def error_event(wire: Wire, message: str) -> bytes:
    """The event *wire* uses to report an error mid-stream."""
    if wire == "claude":
        error = {"type": "overloaded_error", "message": message}
        return _event({"type": "error", "error": error}, "error")
    if wire == "cohere":
        return _event({"type": "error", "message": message}, "error")
    return _event({"error": {"code": 503, "message": message, "status": "UNAVAILABLE"}})


def models(wire: Wire) -> dict[str, Any]:
    """A models list with the one model, in *wire*'s shape."""
    if wire == "gemini":
        listed = [{"name": f"models/{MODEL}", "supportedGenerationMethods": ["generateContent"]}]
        return {"models": listed}
    if wire == "cohere":
        return {"models": [{"name": MODEL, "endpoints": ["chat"]}]}
    return {"object": "list", "data": [{"id": MODEL, "object": "model", "type": "model"}]}


def build_app(state: EchoUpstream) -> Starlette:
    """The routes of all four wires, under any base path."""

    async def answer(request: Request, wire: Wire, stream: bool) -> Response:
        state.requests += 1
        state.paths.append(request.url.path)
        raw = await request.body()
        quoted = credentials(request)
        said = f"refused {' | '.join(quoted)} for body {raw.decode(errors='replace')}"
        headers = echo_headers(quoted)
        mode = state.mode
        if mode in ("status_4xx", "status_5xx", "half_masked"):
            if mode == "half_masked":
                said = "Incorrect API key provided: " + ", ".join(half_masked(q) for q in quoted)
            status = 500 if mode == "status_5xx" else 401
            error = {"message": said, "type": "echo", "code": status}
            return _json({"error": error}, status, headers)
        if mode == "error_200" or (mode == "stream_error" and not stream):
            return _json({"error": {"message": said, "type": "echo"}}, 200, headers)
        if mode == "not_json" and not stream:
            return Response(said, 200, headers, media_type="text/plain")
        if request.method == "GET":
            return _json(models(wire), 200, headers)
        if mode == "split":
            pieces = [part for q in quoted for part in (q[: len(q) // 2], q[len(q) // 2 :])]
        else:
            pieces = ["Hello", " there."]
        if not stream:
            return _json(whole(wire, "".join(pieces)), 200, headers)
        events = _stream(wire, mode, pieces, said)
        return StreamingResponse(events, 200, headers, media_type="text/event-stream")

    async def _stream(wire: Wire, mode: Mode, pieces: list[str], said: str) -> AsyncIterator[bytes]:
        for event in text_events(wire, pieces):
            yield event
        if mode == "stream_error":
            yield error_event(wire, said)
            return
        if mode == "not_json":
            yield b"data: upstream broke: " + said.encode() + b"\n\n"
            return
        for event in end_events(wire):
            yield event

    async def openai(request: Request) -> Response:
        stream = request.method == "POST" and bool(orjson.loads(await request.body()).get("stream"))
        return await answer(request, "openai", stream)

    async def claude(request: Request) -> Response:
        stream = request.method == "POST" and bool(orjson.loads(await request.body()).get("stream"))
        return await answer(request, "claude", stream)

    async def gemini(request: Request) -> Response:
        target = request.path_params.get("target", "")
        return await answer(request, "gemini", target.endswith(":streamGenerateContent"))

    async def cohere(request: Request) -> Response:
        stream = request.method == "POST" and bool(orjson.loads(await request.body()).get("stream"))
        return await answer(request, "cohere", stream)

    async def token(request: Request) -> Response:
        state.requests += 1
        payload = {"access_token": TOKEN, "expires_in": 3600, "token_type": "Bearer"}
        return _json(payload, 200, {})

    return Starlette(
        routes=[
            Route("/token", token, methods=["POST"]),
            Route("/openai/{base:path}/chat/completions", openai, methods=["POST"]),
            Route("/openai/{base:path}/models", openai, methods=["GET"]),
            Route("/claude/{base:path}/messages", claude, methods=["POST"]),
            Route("/claude/{base:path}/models", claude, methods=["GET"]),
            Route("/gemini/{base:path}/models/{target}", gemini, methods=["POST"]),
            Route("/gemini/{base:path}/models", gemini, methods=["GET"]),
            Route("/cohere/{base:path}/v2/chat", cohere, methods=["POST"]),
            Route("/cohere/{base:path}/v1/models", cohere, methods=["GET"]),
        ]
    )


def run() -> Iterator[EchoUpstream]:
    """Serve an echo upstream on loopback; yield its state until closed."""
    state = EchoUpstream()
    for url in serve(build_app(state)):
        state.url = url
        yield state
