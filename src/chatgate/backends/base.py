"""What the gateway needs from every backend, whatever it speaks."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from functools import lru_cache
from typing import TYPE_CHECKING, Any, Protocol

from chatgate.config import Connection
from chatgate.errors import UnsupportedParameterError
from chatgate.extensions import GATEWAY_FIELDS
from chatgate.types import ChatChunk, ChatRequest, ChatResponse

if TYPE_CHECKING:
    from chatgate.plan import Attempt


class Backend(Protocol):
    """A configured connection that can answer chat requests.

    `plan` decides, once per request, everything about how this backend will answer
    it; `chat`, `stream` and `preview` execute that decision and decide nothing again.
    """

    connection: Connection
    # Whether a test message costs money (a provider bills it; the embedded model not).
    billed: bool
    # Whether a model name beyond `models` may be asked for (a provider decides what it
    # serves; the embedded engine serves its one model).
    open_models: bool

    def models(self) -> list[str]:
        """The model names this connection serves (without the connection prefix)."""
        ...

    def plan(self, request: ChatRequest, route: str) -> Attempt:
        """This backend's attempt at *request*: what is sent, dropped, enforced and fanned
        out; a 400 for what it cannot honour."""
        ...

    async def start(self, progress: Callable[[str], None] | None = None) -> None:
        """Get ready to serve (load a model, open a client)."""
        ...

    async def chat(self, attempt: Attempt) -> ChatResponse:
        """One whole answer."""
        ...

    def stream(self, attempt: Attempt) -> AsyncIterator[ChatChunk]:
        """The answer as chunks, ending with a finish chunk (and usage, if asked)."""
        ...

    def status(self) -> dict[str, Any]:
        """A small health report."""
        ...

    async def close(self) -> None:
        """Release what `start` took."""
        ...

    def terminate(self) -> None:
        """Stop at once, without an event loop (child processes, if any)."""
        ...

    async def list_models(self, *, refresh: bool = False) -> dict[str, Any]:
        """The models this connection serves, asking the upstream where it can."""
        ...

    async def check_status(self) -> dict[str, Any]:
        """A free probe of the connection."""
        ...

    async def preview(self, attempt: Attempt) -> dict[str, Any]:
        """What would be sent for *attempt*, without sending it."""
        ...


def set_fields(request: ChatRequest) -> list[str]:
    """The names of the request fields the client set, extras included."""
    # The set names, in declaration order (refusals name the first), without walking
    # every declared field: a request sets a handful of the fifty.
    candidates = _ordered(type(request), frozenset(request.model_fields_set))
    names = [name for name in candidates if getattr(request, name) is not None]
    return names + list(request.model_extra or {})


@lru_cache(maxsize=256)
def _ordered(model: type[ChatRequest], given: frozenset[str]) -> tuple[str, ...]:
    # Clients send the same few sets of fields: each set is put in order once.
    order = _field_order(model)
    return tuple(sorted((n for n in given - GATEWAY_FIELDS if n in order), key=order.__getitem__))


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
