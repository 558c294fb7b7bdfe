"""The OpenAI front door: ``/v1/chat/completions`` and ``/v1/models``, and the OpenAI
rendering of our answer types (which is this door's, not the core types')."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from chatgate.errors import ChatgateError, ModelNotFoundError
from chatgate.gateway import Gateway
from chatgate.plan import Plan
from chatgate.server.responses import dumps
from chatgate.types import (
    AssistantMessage,
    ChatChunk,
    ChatRequest,
    ChatResponse,
    ChunkChoice,
    Delta,
    ToolCallDelta,
    Usage,
)
from chatgate.validation import parse_chat_request

DONE_FRAME = b"data: [DONE]\n\n"


class OpenAIDoor:
    """OpenAI Chat Completions."""

    name = "openai"

    def decode(self, raw: bytes, gateway: Gateway) -> ChatRequest:
        """An OpenAI body, validated (a 400 naming the parameter path)."""
        return parse_chat_request(raw)

    def encode_answer(self, answer: ChatResponse, plan: Plan) -> Any:
        """The ``chat.completion`` object."""
        return render_response(answer)

    async def encode_stream(
        self, chunks: AsyncIterator[ChatChunk], plan: Plan
    ) -> AsyncIterator[bytes]:
        """``data:`` frames of ``chat.completion.chunk`` objects, then ``[DONE]``."""
        async for frame in sse_chunks(chunks, plan):
            yield frame
        yield DONE_FRAME

    def encode_error(self, exc: ChatgateError) -> Any:
        """``{"error": {"message", "type", "param", "code"}}``."""
        return exc.to_dict()

    def error_frame(self, exc: ChatgateError) -> bytes:
        """An ``event: error`` frame holding the error object."""
        return b"event: error\ndata: " + dumps(self.encode_error(exc)) + b"\n\n"


async def sse_chunks(chunks: AsyncIterator[ChatChunk], plan: Plan) -> AsyncIterator[bytes]:
    """Each chunk as one ``data:`` frame (the OpenAI chunk shape, which SGP shares)."""
    opts = plan.request.stream_options
    with_usage = bool(opts and opts.include_usage)
    async for chunk in chunks:
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


def _model_object(model_id: str, owned_by: str, created: int) -> dict[str, Any]:
    return {"id": model_id, "object": "model", "created": created, "owned_by": owned_by}


async def list_models(request: Request) -> Response:
    """``GET /v1/models``: every ``connection/model`` id."""
    state = request.app.state
    gateway: Gateway = state.gateway
    data = [_model_object(m.id, m.owned_by, state.started) for m in await gateway.list_models()]
    return Response(dumps({"object": "list", "data": data}), media_type="application/json")


async def get_model(request: Request) -> Response:
    """``GET /v1/models/{id}``: one model, or a 404."""
    state = request.app.state
    wanted = request.path_params["model_id"]
    for m in await state.gateway.list_models():
        if m.id == wanted:
            body = _model_object(m.id, m.owned_by, state.started)
            return Response(dumps(body), media_type="application/json")
    raise ModelNotFoundError(f"the model '{wanted}' does not exist", param="model")
