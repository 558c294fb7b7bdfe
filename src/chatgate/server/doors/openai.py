"""The OpenAI front door: ``/v1/chat/completions`` and ``/v1/models``, also at the root
(``/chat/completions``, ``/models``) for clients whose base URL lacks ``/v1``."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from chatgate.errors import ChatgateError, ModelNotFoundError
from chatgate.gateway import Gateway
from chatgate.plan import Plan
from chatgate.server.doors.base import DoorEntry
from chatgate.server.doors.chat_shapes import render_response, sse_chunks
from chatgate.server.doors.reach import reachable_models
from chatgate.server.responses import dumps
from chatgate.types import (
    ChatChunk,
    ChatRequest,
    ChatResponse,
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


def _model_object(model_id: str, owned_by: str, created: int) -> dict[str, Any]:
    return {"id": model_id, "object": "model", "created": created, "owned_by": owned_by}


async def list_models(request: Request) -> Response:
    """``GET /v1/models``: every ``connection/model`` id this door may reach."""
    state = request.app.state
    gateway: Gateway = state.gateway
    models = await reachable_models(gateway, OpenAIDoor.name)
    data = [_model_object(m.id, m.owned_by, state.started) for m in models]
    return Response(dumps({"object": "list", "data": data}), media_type="application/json")


async def get_model(request: Request) -> Response:
    """``GET /v1/models/{id}``: one model, or a 404."""
    state = request.app.state
    wanted = request.path_params["model_id"]
    for m in await reachable_models(state.gateway, OpenAIDoor.name):
        if m.id == wanted:
            body = _model_object(m.id, m.owned_by, state.started)
            return Response(dumps(body), media_type="application/json")
    raise ModelNotFoundError(f"the model '{wanted}' does not exist", param="model")


DOOR = OpenAIDoor()
ENTRY = DoorEntry(
    errors=DOOR,
    chat={("POST", "/v1/chat/completions"): DOOR, ("POST", "/chat/completions"): DOOR},
    routes=[
        Route(prefix + path, endpoint, methods=["GET"])
        for prefix in ("/v1", "")
        for path, endpoint in (("/models", list_models), ("/models/{model_id:path}", get_model))
    ],
)
