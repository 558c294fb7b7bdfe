"""The chat-completion shapes OpenAI defined, which the OpenAI door and the SGP v4 door
both answer in: ``chat.completion``, ``chat.completion.chunk`` and ``usage``, rendered
from our answer types (which know no door's shape)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from chatgate.plan import Plan
from chatgate.server.responses import dumps
from chatgate.types import (
    AssistantMessage,
    ChatChunk,
    ChatResponse,
    ChunkChoice,
    Delta,
    ToolCallDelta,
    Usage,
)


async def sse_chunks(chunks: AsyncIterator[ChatChunk], plan: Plan) -> AsyncIterator[bytes]:
    """Each chunk as one ``data:`` frame (the OpenAI chunk shape, which SGP shares)."""
    opts = plan.request.stream_options
    with_usage = bool(opts and opts.include_usage)
    async for chunk in chunks:
        if chunk.comment is not None:
            # An SSE comment: clients skip it, and it keeps proxies from timing out.
            yield b": " + chunk.comment.replace("\n", " ").encode() + b"\n\n"
            continue
        yield b"data: " + dumps(render_chunk(chunk, with_usage_field=with_usage)) + b"\n\n"


def render_usage(usage: Usage) -> dict[str, int]:
    """The OpenAI ``usage`` object."""
    return {
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens,
        "total_tokens": usage.total_tokens,
    }


def _message(message: AssistantMessage) -> dict[str, Any]:
    out: dict[str, Any] = {"role": "assistant", "content": message.content, "refusal": None}
    if message.tool_calls:
        out["tool_calls"] = [tc.model_dump() for tc in message.tool_calls]
    if message.reasoning_content is not None:
        out["reasoning_content"] = message.reasoning_content
    return out


def render_response(answer: ChatResponse) -> dict[str, Any]:
    """The OpenAI ``chat.completion`` object."""
    return {
        "id": answer.id,
        "object": "chat.completion",
        "created": answer.created,
        "model": answer.model,
        "system_fingerprint": answer.system_fingerprint,
        "choices": [
            {
                "index": c.index,
                "message": _message(c.message),
                "logprobs": c.logprobs,
                "finish_reason": c.finish_reason,
            }
            for c in answer.choices
        ],
        "usage": render_usage(answer.usage),
    }


def _tool_delta(delta: ToolCallDelta) -> dict[str, Any]:
    out: dict[str, Any] = {"index": delta.index}
    if delta.id is not None:
        out["id"] = delta.id
        out["type"] = "function"
    function: dict[str, str] = {}
    if delta.name is not None:
        function["name"] = delta.name
    if delta.arguments is not None:
        function["arguments"] = delta.arguments
    if function:
        out["function"] = function
    return out


def _delta(delta: Delta) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if delta.role is not None:
        out["role"] = delta.role
    if delta.content is not None:
        out["content"] = delta.content
    if delta.reasoning_content is not None:
        out["reasoning_content"] = delta.reasoning_content
    if delta.tool_calls is not None:
        out["tool_calls"] = [_tool_delta(t) for t in delta.tool_calls]
    return out


def _chunk_choice(choice: ChunkChoice) -> dict[str, Any]:
    return {
        "index": choice.index,
        "delta": _delta(choice.delta),
        "logprobs": choice.logprobs,
        "finish_reason": choice.finish_reason,
    }


def render_chunk(chunk: ChatChunk, *, with_usage_field: bool = False) -> dict[str, Any]:
    """The OpenAI ``chat.completion.chunk`` object. With ``with_usage_field`` every chunk
    carries ``usage`` (null until the last), as OpenAI does for ``include_usage``."""
    out: dict[str, Any] = {
        "id": chunk.id,
        "object": "chat.completion.chunk",
        "created": chunk.created,
        "model": chunk.model,
        "system_fingerprint": chunk.system_fingerprint,
        "choices": [_chunk_choice(c) for c in chunk.choices],
    }
    if chunk.usage is not None:
        out["usage"] = render_usage(chunk.usage)
    elif with_usage_field:
        out["usage"] = None
    return out
