"""The Anthropic Messages front door: ``POST /v1/messages`` and
``POST /v1/messages/count_tokens`` (``docs/doors/anthropic.md``).

The key comes as ``x-api-key`` or ``Authorization: Bearer`` (the edge takes both), and
``anthropic-version`` is accepted with any value, never required. Model ids are
chatgate's ``connection/model``. The body is decoded into our request
(`chatgate.server.doors.anthropic_decode`); answers, streams and errors are rendered in
Anthropic's shapes (``anthropic_encode``, ``anthropic_stream``), so the official SDK reads
them and raises its own exception classes.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import Route

from chatgate.errors import ChatgateError
from chatgate.gateway import Gateway
from chatgate.offload import off_loop
from chatgate.plan import Plan
from chatgate.server.dispatch import OFF_LOOP_BYTES, as_error, live_secrets, read_body
from chatgate.server.doors.anthropic_decode import decode_count, decode_messages
from chatgate.server.doors.anthropic_encode import render_error, render_message
from chatgate.server.doors.anthropic_openapi import path_items
from chatgate.server.doors.anthropic_stream import events, frame
from chatgate.server.doors.base import DoorEntry
from chatgate.server.doors.reach import check_reach
from chatgate.server.responses import dumps
from chatgate.tokens import count_chat_tokens
from chatgate.types import ChatChunk, ChatRequest, ChatResponse

MESSAGES = "/v1/messages"
COUNT_TOKENS = "/v1/messages/count_tokens"


class AnthropicDoor:
    """Anthropic Messages."""

    name = "anthropic"

    def decode(self, raw: bytes, gateway: Gateway) -> ChatRequest:
        """A Messages body as our request, or a 400 naming the field."""
        return decode_messages(raw, gateway)

    def encode_answer(self, answer: ChatResponse, plan: Plan) -> Any:
        """The ``message`` object."""
        return render_message(answer, plan.request.model)

    def encode_stream(self, chunks: AsyncIterator[ChatChunk], plan: Plan) -> AsyncIterator[bytes]:
        """The event stream, ``message_start`` to ``message_stop``."""
        return events(chunks, plan.request.model)

    def encode_error(self, exc: ChatgateError) -> Any:
        """``{"type": "error", "error": {"type", "message"}}``."""
        return render_error(exc)

    def error_frame(self, exc: ChatgateError) -> bytes:
        """An ``event: error`` frame, as Anthropic ends a stream that failed."""
        return frame("error", {"error": render_error(exc)["error"]})


DOOR = AnthropicDoor()


async def count_tokens(request: Request) -> Response:
    """``POST /v1/messages/count_tokens``: ``{"input_tokens": N}``, by the backend's own
    tokenizer where chatgate can ask one (``x-chatgate-token-count: estimate`` when not)."""
    gateway: Gateway = request.app.state.gateway
    path = request.scope["path"]
    try:
        body = await read_body(request, request.app.state.max_body_bytes)

        def decoded() -> ChatRequest:
            chat = decode_count(body, gateway)
            check_reach(gateway, DOOR.name, gateway.prepare(chat))
            return chat

        chat = decoded() if len(body) < OFF_LOOP_BYTES else await off_loop(decoded)
        counted = await count_chat_tokens(gateway, chat)
    except ClientDisconnect:
        return Response(status_code=400)  # no one is there to answer
    except Exception as exc:
        # An upstream's error may quote a key: redacted as on the chat route.
        raise as_error(exc, lambda: live_secrets(gateway), path) from None
    headers = {} if counted.exact else {"x-chatgate-token-count": "estimate"}
    return Response(
        dumps({"input_tokens": counted.tokens}), headers=headers, media_type="application/json"
    )


ENTRY = DoorEntry(
    errors=DOOR,
    chat={("POST", MESSAGES): DOOR},
    routes=[Route(COUNT_TOKENS, count_tokens, methods=["POST"])],
    # Everything under /v1/messages (a batch route a client tries, say) answers in
    # Anthropic's shape, so that the SDK raises its own classes.
    paths=(MESSAGES, COUNT_TOKENS, MESSAGES + "/"),
    openapi=path_items(),
)
