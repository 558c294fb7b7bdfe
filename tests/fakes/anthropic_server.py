"""A fake Anthropic Messages API on loopback, written from Anthropic's public API docs.

``POST {base}/messages`` checks what the real API checks (key, ``anthropic-version``,
``max_tokens``, a first user turn, alternating roles, each ``tool_result`` answering a
``tool_use`` of the turn before, no empty text, no trailing whitespace in a final
assistant turn) and answers with a message, or an event stream: ``message_start``,
``ping``, ``content_block_start`` / ``content_block_delta`` (``text_delta``,
``input_json_delta`` in many small pieces, ``thinking_delta`` and ``signature_delta``) /
``content_block_stop``, ``message_delta`` with usage, ``message_stop``.
``POST {base}/messages/count_tokens`` answers ``{"input_tokens": 17}``.

The model name picks the behaviour: ``error-NNN``, ``think-*`` (a thinking block
first), ``redacted-*`` (a thinking block, a redacted_thinking block, then a second
thinking block), ``stop-*`` (stopped by the first of ``stop_sequences``), ``oops-*``
(an ``error`` event mid-stream), ``tool-*`` (calls ``get_weather`` when tools are
offered). A forced tool answers with input made from its schema; a last turn holding a
tool result is answered with ``The tool said: <result>``; images are counted.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from tests.fakes.common import TEXT, WEATHER_ARGS, FakeState, json_response, pieces, sample

KEY_REVOKED = "sk-ant-Zr7Kq2Wm9Pv4"  # random-looking: a word in it would be masked as a fragment
COUNTED = 17  # what count_tokens says, whatever it is asked
REDACTED = [
    {"type": "thinking", "thinking": "First, ", "signature": "c2lnMQ"},
    {"type": "redacted_thinking", "data": "ZW5jcnlwdGVk"},
    {"type": "thinking", "thinking": "then.", "signature": "c2lnMg"},
]
ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    429: "rate_limit_error",
    500: "api_error",
    529: "overloaded_error",
}


def error(status: int, message: str) -> Response:
    """An Anthropic error body."""
    kind = ERROR_TYPES.get(status, "api_error")
    headers = {"retry-after": "7"} if status == 429 else None
    return json_response(
        {"type": "error", "error": {"type": kind, "message": message}}, status, headers
    )


def check(body: dict[str, Any]) -> str | None:
    """What the real API would refuse in *body*, if anything."""
    if not isinstance(body.get("max_tokens"), int):
        return "max_tokens: Field required"
    messages = body.get("messages") or []
    if not messages or messages[0]["role"] != "user":
        return 'messages: first message must use the "user" role'
    previous_calls: set[str] = set()
    for index, message in enumerate(messages):
        if index and messages[index - 1]["role"] == message["role"]:
            return f"messages: roles must alternate (messages.{index})"
        blocks = message["content"]
        if isinstance(blocks, str):
            blocks = [{"type": "text", "text": blocks}]
        if not blocks:
            return f"messages.{index}: content must not be empty"
        seen_other = False
        for block in blocks:
            kind = block["type"]
            if kind == "text" and not block["text"]:
                return f"messages.{index}: text content blocks must be non-empty"
            if kind == "tool_result":
                if seen_other:
                    return f"messages.{index}: tool_result blocks must come first"
                if block["tool_use_id"] not in previous_calls:
                    return f"messages.{index}: unexpected tool_use_id {block['tool_use_id']}"
            else:
                seen_other = True
            if kind == "image" and block["source"]["type"] not in ("base64", "url"):
                return f"messages.{index}: bad image source"
            if kind == "thinking" and not block.get("signature"):
                return f"messages.{index}: thinking blocks need their signature"
            if kind in ("thinking", "redacted_thinking") and message["role"] != "assistant":
                return f"messages.{index}: thinking blocks belong to assistant messages"
            cache = block.get("cache_control")
            if cache is not None and (
                kind.endswith("thinking") or cache.get("type") != "ephemeral"
            ):
                return f"messages.{index}: bad cache_control"
        previous_calls = {b["id"] for b in blocks if b["type"] == "tool_use"}
    last = messages[-1]
    if last["role"] == "assistant":
        tail = last["content"][-1]
        if tail["type"] == "text" and tail["text"] != tail["text"].rstrip():
            return "final assistant content cannot end with trailing whitespace"
    return None


def answer(body: dict[str, Any]) -> tuple[list[dict[str, Any]], str]:
    """The content blocks and stop reason for *body*."""
    model = str(body["model"])
    last = body["messages"][-1]
    blocks_in = last["content"] if isinstance(last["content"], list) else []
    results = [b for b in blocks_in if b["type"] == "tool_result"]
    images = sum(1 for b in blocks_in if b["type"] == "image")
    choice = body.get("tool_choice") or {}
    out: list[dict[str, Any]] = []
    if model.startswith("think-"):
        out.append({"type": "thinking", "thinking": "Weighing it up.", "signature": "c2ln"})
    if model.startswith("redacted-"):
        out += [dict(block) for block in REDACTED]
    if choice.get("type") == "tool":
        tool = next(t for t in body["tools"] if t["name"] == choice["name"])
        out.append(
            {
                "type": "tool_use",
                "id": "toolu_json",
                "name": tool["name"],
                "input": sample(tool["input_schema"]),
            }
        )
        return out, "tool_use"
    if results:
        content = results[0]["content"]
        said = content if isinstance(content, str) else content[0]["text"]
        out.append({"type": "text", "text": f"The tool said: {said}"})
        return out, "end_turn"
    if model.startswith("tool-") and body.get("tools"):
        out.append({"type": "text", "text": "Let me check."})
        out.append(
            {"type": "tool_use", "id": "toolu_01A", "name": "get_weather", "input": WEATHER_ARGS}
        )
        return out, "tool_use"
    out.append({"type": "text", "text": f"I see {images} image(s)." if images else TEXT})
    if model.startswith("stop-") and body.get("stop_sequences"):
        return out, "stop_sequence"
    return out, "end_turn"


def message(body: dict[str, Any]) -> dict[str, Any]:
    """A whole Messages API answer."""
    blocks, reason = answer(body)
    return {
        "id": "msg_fake01",
        "type": "message",
        "role": "assistant",
        "model": body["model"],
        "content": blocks,
        "stop_reason": reason,
        "stop_sequence": body["stop_sequences"][0] if reason == "stop_sequence" else None,
        "usage": {"input_tokens": 11, "output_tokens": 7, "cache_read_input_tokens": 2},
    }


def frame(kind: str, data: dict[str, Any]) -> bytes:
    """One SSE event as Anthropic sends it: a named event with its type repeated inside."""
    return b"event: " + kind.encode() + b"\ndata: " + orjson.dumps({"type": kind, **data}) + b"\n\n"


async def events(body: dict[str, Any]) -> AsyncIterator[bytes]:
    """The stream for *body*."""
    whole = message(body)
    start = {
        **whole,
        "content": [],
        "stop_reason": None,
        "usage": {"input_tokens": 11, "output_tokens": 1},
    }
    yield frame("message_start", {"message": start})
    yield frame("ping", {})
    for index, block in enumerate(whole["content"]):
        kind = block["type"]
        if kind == "text":
            yield frame(
                "content_block_start",
                {"index": index, "content_block": {"type": "text", "text": ""}},
            )
            for piece in pieces(block["text"]):
                yield frame(
                    "content_block_delta",
                    {"index": index, "delta": {"type": "text_delta", "text": piece}},
                )
            if str(body["model"]).startswith("oops-"):
                yield frame(
                    "error", {"error": {"type": "overloaded_error", "message": "Overloaded"}}
                )
                return
        elif kind == "thinking":
            yield frame(
                "content_block_start",
                {"index": index, "content_block": {"type": "thinking", "thinking": ""}},
            )
            yield frame(
                "content_block_delta",
                {
                    "index": index,
                    "delta": {"type": "thinking_delta", "thinking": block["thinking"]},
                },
            )
            signature = block["signature"]
            yield frame(
                "content_block_delta",
                {"index": index, "delta": {"type": "signature_delta", "signature": signature}},
            )
        elif kind == "redacted_thinking":
            yield frame("content_block_start", {"index": index, "content_block": block})
        else:
            opened = {"type": "tool_use", "id": block["id"], "name": block["name"], "input": {}}
            yield frame("content_block_start", {"index": index, "content_block": opened})
            for piece in ["", *pieces(orjson.dumps(block["input"]).decode(), 3)]:
                yield frame(
                    "content_block_delta",
                    {"index": index, "delta": {"type": "input_json_delta", "partial_json": piece}},
                )
        yield frame("content_block_stop", {"index": index})
    yield frame(
        "message_delta",
        {
            "delta": {"stop_reason": whole["stop_reason"], "stop_sequence": whole["stop_sequence"]},
            "usage": {"output_tokens": 7},
        },
    )
    yield frame("message_stop", {})


def build_app(state: FakeState) -> Starlette:
    """The fake's routes, under any base path."""

    async def messages(request: Request) -> Response:
        body = await state.record(request)
        key = request.headers.get("x-api-key")
        if not key or key == KEY_REVOKED:
            return error(401, "invalid x-api-key")
        if not request.headers.get("anthropic-version"):
            return error(400, "anthropic-version: header is required")
        model = str(body.get("model", ""))
        if model.startswith("error-"):
            status = int(model.split("-")[1].partition(":")[0])  # Ollama adds ":latest"
            return error(status, f"the fake says {status}")
        problem = check(body)
        if problem:
            return error(400, problem)
        if body.get("stream"):
            return StreamingResponse(events(body), media_type="text/event-stream")
        return json_response(message(body))

    async def count_tokens(request: Request) -> Response:
        body = await state.record(request)
        if not request.headers.get("x-api-key"):
            return error(401, "invalid x-api-key")
        problem = check({**body, "max_tokens": 1})  # the same checks, less max_tokens
        if problem:
            return error(400, problem)
        return json_response({"input_tokens": COUNTED})

    async def models(request: Request) -> Response:
        await state.record(request)
        if not request.headers.get("x-api-key"):
            return error(401, "invalid x-api-key")
        data = [{"type": "model", "id": "claude-fake-1", "display_name": "Claude Fake"}]
        return json_response({"data": data, "has_more": False, "first_id": "claude-fake-1"})

    return Starlette(
        routes=[
            Route("/{base:path}/messages", messages, methods=["POST"]),
            Route("/{base:path}/messages/count_tokens", count_tokens, methods=["POST"]),
            Route("/{base:path}/models", models, methods=["GET"]),
        ]
    )
