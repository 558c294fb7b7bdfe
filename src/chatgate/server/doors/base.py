"""What every front door is: a codec over the one pipeline.

A door decodes its request body into a `ChatRequest`, and encodes an answer, a chunk
stream and an error in its own shape. Everything else (authentication, body limits,
planning, running, disconnects) is `chatgate.server.dispatch`, the same for every door,
so adding a door is one codec module plus its routes.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from starlette.routing import BaseRoute

from chatgate.errors import ChatgateError
from chatgate.types import ChatChunk, ChatRequest, ChatResponse

if TYPE_CHECKING:
    from chatgate.gateway import Gateway
    from chatgate.plan import Plan


class Door(Protocol):
    """One front door's wire format."""

    name: str

    def decode(self, raw: bytes, gateway: Gateway) -> ChatRequest:
        """The request body as our request, or a 4xx in this door's shape."""
        ...

    def encode_answer(self, answer: ChatResponse, plan: Plan) -> Any:
        """A whole answer, as the JSON value this door returns."""
        ...

    def encode_stream(self, chunks: AsyncIterator[ChatChunk], plan: Plan) -> AsyncIterator[bytes]:
        """The chunks as this door's stream frames, with its end marker if it has one."""
        ...

    def encode_error(self, exc: ChatgateError) -> Any:
        """An error, as the JSON value this door returns (status and headers are the
        error's own)."""
        ...

    def error_frame(self, exc: ChatgateError) -> bytes:
        """An error after the stream began, as one frame of this door's stream."""
        ...


@dataclass(frozen=True, slots=True)
class DoorEntry:
    """What one door module adds to the server.

    ``chat`` maps (method, path) to the door codec whose chat route it is: those go
    through `chatgate.server.dispatch`. ``routes`` are the door's other routes (model
    lists, versions, token counts), plain Starlette routes. ``paths`` are the paths whose
    errors (404s included) are answered in ``errors``' shape: exact paths, or prefixes
    ending in ``/``. ``openapi`` holds the OpenAPI path items of every route the door
    adds beyond the OpenAI and SGP routes (``chatgate.server.openapi`` merges them).
    """

    errors: Door
    chat: Mapping[tuple[str, str], Door] = field(default_factory=dict)
    routes: Sequence[BaseRoute] = ()
    paths: tuple[str, ...] = ()
    openapi: Mapping[str, Any] = field(default_factory=dict)
