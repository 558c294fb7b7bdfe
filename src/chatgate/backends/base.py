"""What the gateway needs from every backend, whatever it speaks."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from functools import lru_cache
from typing import Any, Protocol

from chatgate.config import Connection
from chatgate.errors import UnsupportedParameterError
from chatgate.extensions import GATEWAY_FIELDS
from chatgate.types import ChatChunk, ChatRequest, ChatResponse


class Backend(Protocol):
    """A configured connection that can answer chat requests."""

    connection: Connection

    def models(self) -> list[str]:
        """The model names this connection serves (without the connection prefix)."""
        ...

    def unsupported(self, request: ChatRequest) -> list[str]:
        """The request's parameters this backend cannot honour (names, in order)."""
        ...

    async def start(self, progress: Callable[[str], None] | None = None) -> None:
        """Get ready to serve (load a model, open a client)."""
        ...

    async def chat(self, request: ChatRequest) -> ChatResponse:
        """One whole answer."""
        ...

    def stream(self, request: ChatRequest) -> AsyncIterator[ChatChunk]:
        """The answer as chunks, ending with a finish chunk (and usage, if asked)."""
        ...

    def status(self) -> dict[str, Any]:
        """A small health report."""
        ...

    async def close(self) -> None:
        """Release what `start` took."""
        ...

    async def list_models(self, *, refresh: bool = False) -> dict[str, Any]:
        """The models this connection serves, asking the upstream where it can."""
        ...

    async def check_status(self) -> dict[str, Any]:
        """A free probe of the connection."""
        ...

    async def send_test(self, model: str | None = None) -> dict[str, Any]:
        """A real minimal request, to prove the connection works end to end."""
        ...

    async def preview(self, request: ChatRequest) -> dict[str, Any]:
        """What would be sent for *request*, without sending it."""
        ...


def set_fields(request: ChatRequest) -> list[str]:
    """The names of the request fields the client set, extras included."""
    # The set names, in declaration order (refusals name the first), without walking
    # every declared field: a request sets a handful of the fifty.
    order = _field_order(type(request))
    names = sorted(
        (
            name
            for name in request.model_fields_set - GATEWAY_FIELDS
            if name in order and getattr(request, name) is not None  # extras come below
        ),
        key=order.__getitem__,
    )
    return names + list(request.model_extra or {})


@lru_cache(maxsize=4)
def _field_order(model: type[ChatRequest]) -> dict[str, int]:
    return {name: index for index, name in enumerate(model.model_fields)}


def refuse_or_drop(names: list[str], connection: Connection, what: str) -> list[str]:
    """Raise for the first unsupported parameter, unless the connection drops them."""
    if names and not connection.drop_params:
        name = names[0]
        if name == "suffix":
            raise UnsupportedParameterError(
                f"'suffix' is for text-completion backends only; {what} (connection "
                f"'{connection.name}') is a chat backend",
                param=name,
            )
        raise UnsupportedParameterError(
            f"'{name}' is not supported by {what} (connection '{connection.name}'); "
            "remove it, or set drop_params = true on the connection to drop such "
            "parameters silently",
            param=name,
        )
    return names
