"""A fake Cohere v2 chat API on loopback, written from Cohere's public API reference.

``POST {base}/v2/chat`` checks a bearer key, the roles, that every ``tool`` message
answers a tool call made before it, that tool-call arguments are JSON strings, that
``tool_choice`` is ``REQUIRED`` or ``NONE`` and ``response_format`` is ``json_object``;
it answers with a v2 chat response or its event stream (``message-start``,
``content-start`` / ``content-delta`` / ``content-end``, ``tool-plan-delta``,
``tool-call-start`` / ``tool-call-delta`` in small pieces / ``tool-call-end``,
``message-end`` with usage). ``GET {base}/v1/models`` lists chat models.

Model names pick the behaviour as in the other fakes: ``error-NNN``, ``oops-*``,
``tool-*``.
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

KEY_REVOKED = "co-Vd8Nc2Lx5Tq1"
ROLES = ("system", "user", "assistant", "tool")


def error(status: int, message: str) -> Response:
    """A Cohere error body."""
    return json_response({"id": "err-1", "message": message}, status)


def check(body: dict[str, Any]) -> str | None:
    """What the real API would refuse in *body*, if anything."""
    messages = body.get("messages") or []
    if not messages:
        return "messages must not be empty"
    calls: set[str] = set()
    for index, message in enumerate(messages):
        if message.get("role") not in ROLES:
            return f"messages[{index}]: invalid role"
        for call in message.get("tool_calls") or []:
            if not isinstance(call["function"]["arguments"], str):
                return f"messages[{index}]: tool call arguments must be a string"
            calls.add(call["id"])
        if message["role"] == "tool" and message.get("tool_call_id") not in calls:
            return f"messages[{index}]: tool_call_id does not match any tool call"
        if (
            message["role"] != "tool"
            and not message.get("content")
            and not message.get("tool_calls")
        ):
            return f"messages[{index}]: content must not be empty"
    if body.get("tool_choice") not in (None, "REQUIRED", "NONE"):
        return "invalid tool_choice"
    fmt = body.get("response_format")
    if fmt is not None and fmt.get("type") not in ("text", "json_object"):
        return "invalid response_format type"
    return None


def answer(body: dict[str, Any]) -> dict[str, Any]:
    """The assistant message and finish reason for *body*."""
    last = body["messages"][-1]
    model = str(body["model"])
    content = last.get("content")
    images = (
        sum(1 for p in content if p.get("type") == "image_url") if isinstance(content, list) else 0
    )
    fmt = body.get("response_format")
    if fmt is not None:
        text = orjson.dumps(sample(fmt.get("json_schema") or {"type": "object"})).decode()
        return {"content": [{"type": "text", "text": text}], "finish_reason": "COMPLETE"}
    if last["role"] == "tool":
        said = {"type": "text", "text": f"The tool said: {last['content']}"}
        return {"content": [said], "finish_reason": "COMPLETE"}
    if model.startswith("tool-") and body.get("tools"):
        call = {
            "id": "get_weather_x1y2z3",
            "type": "function",
            "function": {"name": "get_weather", "arguments": orjson.dumps(WEATHER_ARGS).decode()},
        }
        return {
            "tool_plan": "I will look up the weather.",
            "tool_calls": [call],
            "finish_reason": "TOOL_CALL",
        }
    text = f"I see {images} image(s)." if images else TEXT
    return {"content": [{"type": "text", "text": text}], "finish_reason": "COMPLETE"}


USAGE = {
    "billed_units": {"input_tokens": 8, "output_tokens": 5},
    "tokens": {"input_tokens": 70, "output_tokens": 5},
}


def whole(body: dict[str, Any]) -> dict[str, Any]:
    """A whole v2 chat response."""
    made = answer(body)
    message = {"role": "assistant", **{k: v for k, v in made.items() if k != "finish_reason"}}
    return {
        "id": "chat-fake",
        "finish_reason": made["finish_reason"],
        "message": message,
        "usage": USAGE,
    }


def frame(kind: str, data: dict[str, Any]) -> bytes:
    """One event as Cohere sends it: a named event, the type repeated inside."""
    return b"event: " + kind.encode() + b"\ndata: " + orjson.dumps({"type": kind, **data}) + b"\n\n"


async def events(body: dict[str, Any]) -> AsyncIterator[bytes]:
    """The stream for *body*."""
    made = answer(body)
    yield frame("message-start", {"id": "chat-fake", "delta": {"message": {"role": "assistant"}}})
    if made.get("tool_plan"):
        for piece in pieces(made["tool_plan"], 8):
            yield frame("tool-plan-delta", {"delta": {"message": {"tool_plan": piece}}})
    for index, call in enumerate(made.get("tool_calls") or []):
        opened = {**call, "function": {"name": call["function"]["name"], "arguments": ""}}
        yield frame(
            "tool-call-start", {"index": index, "delta": {"message": {"tool_calls": opened}}}
        )
        for piece in pieces(call["function"]["arguments"], 3):
            yield frame(
                "tool-call-delta",
                {
                    "index": index,
                    "delta": {"message": {"tool_calls": {"function": {"arguments": piece}}}},
                },
            )
        yield frame("tool-call-end", {"index": index})
    for index, block in enumerate(made.get("content") or []):
        yield frame(
            "content-start",
            {"index": index, "delta": {"message": {"content": {"type": "text", "text": ""}}}},
        )
        for piece in pieces(block["text"]):
            yield frame(
                "content-delta",
                {"index": index, "delta": {"message": {"content": {"text": piece}}}},
            )
        if str(body["model"]).startswith("oops-"):
            yield frame("error", {"message": "internal server error, the fake broke"})
            return
        yield frame("content-end", {"index": index})
    yield frame("message-end", {"delta": {"finish_reason": made["finish_reason"], "usage": USAGE}})


def build_app(state: FakeState) -> Starlette:
    """The fake's routes, under any base path."""

    async def chat(request: Request) -> Response:
        body = await state.record(request)
        auth = request.headers.get("authorization", "")
        if not auth.startswith("Bearer ") or auth == f"Bearer {KEY_REVOKED}":
            return error(401, "invalid api token")
        model = str(body.get("model", ""))
        if model.startswith("error-"):
            status = int(model.split("-")[1].partition(":")[0])  # Ollama adds ":latest"
            return error(status, f"the fake says {status}")
        problem = check(body)
        if problem:
            return error(400, problem)
        if body.get("stream"):
            return StreamingResponse(events(body), media_type="text/event-stream")
        return json_response(whole(body))

    async def models(request: Request) -> Response:
        await state.record(request)
        listed = [{"name": "command-fake", "endpoints": ["chat", "generate"]}]
        return json_response({"models": listed})

    return Starlette(
        routes=[
            Route("/{base:path}/v2/chat", chat, methods=["POST"]),
            Route("/v2/chat", chat, methods=["POST"]),
            Route("/{base:path}/v1/models", models, methods=["GET"]),
            Route("/v1/models", models, methods=["GET"]),
        ]
    )
