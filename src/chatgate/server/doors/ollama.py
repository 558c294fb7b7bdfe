"""The Ollama front door: Ollama's API (``/api/chat``, ``/api/generate``, ``/api/tags``,
``/api/show``, ``/api/ps``, ``/api/version``) for the editors and desktop apps that
speak only it (``docs/doors/ollama.md``).

Model names map to chatgate's ids by `chatgate.server.doors.ollama_names`, bodies by
`ollama_request` (with `ollama_options`), answers and NDJSON streams by
`ollama_answer`; the model routes are `ollama_models`, the OpenAPI items
`ollama_openapi`. Every error on the door is ``{"error": "..."}``, and an error after a
stream began is one last NDJSON line of that shape.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from starlette.routing import Route

from chatgate.errors import ChatgateError
from chatgate.gateway import Gateway
from chatgate.plan import Plan
from chatgate.server.doors import ollama_models as models
from chatgate.server.doors.base import DoorEntry
from chatgate.server.doors.ollama_answer import chat_answer, generate_answer, ndjson
from chatgate.server.doors.ollama_openapi import path_items
from chatgate.server.doors.ollama_options import with_origin
from chatgate.server.doors.ollama_request import Preloaded, chat_request, generate_request
from chatgate.server.responses import dumps
from chatgate.types import ChatChunk, ChatRequest, ChatResponse

NDJSON = "application/x-ndjson"


def error_body(exc: ChatgateError) -> dict[str, Any]:
    """``{"error": "..."}``, naming the field as the Ollama client wrote it (a load
    answer, which travels as an error, is its own body)."""
    if isinstance(exc, Preloaded):
        return exc.body
    return {"error": with_origin(exc).message}


class OllamaChatDoor:
    """``POST /api/chat``."""

    name = "ollama"
    stream_media_type = NDJSON

    def decode(self, raw: bytes, gateway: Gateway) -> ChatRequest:
        """An ``/api/chat`` body as our request, or Ollama's error."""
        return chat_request(raw, gateway)

    def encode_answer(self, answer: ChatResponse, plan: Plan) -> Any:
        """The whole answer: one object with ``message`` and ``done: true``."""
        return chat_answer(answer, plan.request.model)

    def encode_stream(self, chunks: AsyncIterator[ChatChunk], plan: Plan) -> AsyncIterator[bytes]:
        """NDJSON lines with ``message``, the last with ``done: true``."""
        return ndjson(chunks, plan.request.model, "chat")

    def encode_error(self, exc: ChatgateError) -> Any:
        """``{"error": "..."}``."""
        return error_body(exc)

    def error_frame(self, exc: ChatgateError) -> bytes:
        """One last NDJSON line ``{"error": "..."}``."""
        return dumps(error_body(exc)) + b"\n"


class OllamaGenerateDoor(OllamaChatDoor):
    """``POST /api/generate``: the same errors, ``response`` instead of ``message``."""

    def decode(self, raw: bytes, gateway: Gateway) -> ChatRequest:
        """An ``/api/generate`` body as our request, or Ollama's error."""
        return generate_request(raw, gateway)

    def encode_answer(self, answer: ChatResponse, plan: Plan) -> Any:
        """The whole answer: one object with ``response`` and ``done: true``."""
        return generate_answer(answer, plan.request.model)

    def encode_stream(self, chunks: AsyncIterator[ChatChunk], plan: Plan) -> AsyncIterator[bytes]:
        """NDJSON lines with ``response``, the last with ``done: true``."""
        return ndjson(chunks, plan.request.model, "generate")


CHAT = OllamaChatDoor()
GENERATE = OllamaGenerateDoor()
# The management routes Ollama has and chatgate answers with a 400 that says why.
NOT_HERE = {
    ("POST", "/api/pull"): "pull",
    ("POST", "/api/push"): "push",
    ("POST", "/api/create"): "create",
    ("POST", "/api/copy"): "copy",
    ("DELETE", "/api/delete"): "delete",
}
ROUTE_PATHS = ("/api/tags", "/api/show", "/api/ps", "/api/version", *(p for _, p in NOT_HERE))
ENTRY = DoorEntry(
    errors=CHAT,
    chat={("POST", "/api/chat"): CHAT, ("POST", "/api/generate"): GENERATE},
    routes=[
        Route("/api/tags", models.tags, methods=["GET"]),
        Route("/api/show", models.show, methods=["POST"]),
        Route("/api/ps", models.ps, methods=["GET"]),
        Route("/api/version", models.version, methods=["GET"]),
        *(Route(path, models.not_here(what), methods=[m]) for (m, path), what in NOT_HERE.items()),
    ],
    # Ollama's other routes (embeddings, blobs) answer their 404 in Ollama's shape too;
    # the rest of /api is chatgate's admin API.
    paths=(*ROUTE_PATHS, "/api/embed", "/api/embeddings", "/api/blobs/"),
    openapi=path_items(NOT_HERE),
)
