"""`Gateway`: the one pipeline every front door, the CLI and the library go through."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from dataclasses import dataclass
from os import PathLike
from typing import Any, TypeVar

from chatgate.backends.base import Backend
from chatgate.backends.local import LocalBackend
from chatgate.backends.remote import RemoteBackend
from chatgate.config import Connection, Settings, load_settings
from chatgate.connections import describe_connection
from chatgate.errors import (
    ChatgateError,
    ConfigError,
    GatewayTimeoutError,
    InvalidRequestError,
    NotFoundError,
)
from chatgate.exchange.transport import Transport
from chatgate.prompt.memory import apply_memory
from chatgate.prompt.policy import Shaping, choose, shape
from chatgate.prompt.postprocess import DEFAULT_PLACEHOLDER
from chatgate.routing import resolve
from chatgate.sources import SOURCES, get_source
from chatgate.types import ChatChunk, ChatRequest, ChatResponse
from chatgate.validation import parse_chat_request

T = TypeVar("T")
log = logging.getLogger("chatgate.gateway")


def build_backend(
    connection: Connection, transport: Transport, placeholder: str = DEFAULT_PLACEHOLDER
) -> Backend:
    """The backend object for a configured connection."""
    source = get_source(connection.source)
    if source is None:
        known = ", ".join(sorted(SOURCES))
        raise ConfigError(
            f"connection '{connection.name}': unknown source '{connection.source}' (known: {known})"
        )
    if source.adapter == "local":
        return LocalBackend(connection, transport)
    return RemoteBackend(connection, source, transport, placeholder=placeholder)


@dataclass(frozen=True, slots=True)
class Prepared:
    """A request checked and routed, ready to run."""

    request: ChatRequest
    backend: Backend
    dropped: list[str]
    shaping: Shaping
    forgotten: int = 0  # messages the memory strategy left out


@dataclass(frozen=True, slots=True)
class ModelInfo:
    """One model a client can ask for."""

    id: str
    owned_by: str


class Gateway:
    """Routes chat requests to the configured connections.

    Async code awaits `chat` or iterates `stream`; sync code calls `chat_sync` or
    iterates `stream_sync`, which run the same pipeline on a private event loop. Use one
    style per instance.
    """

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        config: str | PathLike[str] | None = None,
    ) -> None:
        self.settings = settings if settings is not None else load_settings(config)
        self.transport = Transport()
        self.backends: dict[str, Backend] = {
            conn.name: build_backend(conn, self.transport, self.settings.prompt_placeholder)
            for conn in self.settings.connections
        }
        # Deployments are the same connection at another base URL, routed as
        # "name@deployment/model"; '@' cannot occur in a connection name.
        self.routes: dict[str, Backend] = dict(self.backends)
        for conn in self.settings.connections:
            if conn.deployments and conn.source == "local":
                raise ConfigError(
                    f"connection '{conn.name}': deployments are base URLs of a remote "
                    "source; the embedded engine has none"
                )
            for deployment, url in conn.deployments.items():
                moved = conn.model_copy(update={"base_url": url, "deployments": {}})
                placeholder = self.settings.prompt_placeholder
                self.routes[f"{conn.name}@{deployment}"] = build_backend(
                    moved, self.transport, placeholder
                )
        self._runner: _LoopThread | None = None

    # --- async API ---------------------------------------------------------------

    async def start(self, progress: Callable[[str], None] | None = None) -> None:
        """Warm every backend up (load the embedded model)."""
        for backend in self.backends.values():
            await backend.start(progress)

    def prepare(
        self, request: ChatRequest | dict[str, Any] | None = None, /, **fields: Any
    ) -> Prepared:
        """Validate and route without running: the server needs the outcome first."""
        req = self._coerce(request, fields)
        limit = self.settings.max_messages
        if len(req.messages) > limit:
            raise InvalidRequestError(
                f"the request has {len(req.messages)} messages; the limit is {limit} "
                "(max_messages in the config); shorten the conversation or use a "
                "memory_strategy",
                param="messages",
                code="too_many_messages",
            )
        if req.best_of is not None:
            _check_best_of(req)
        backend = resolve(req.model, self.routes)
        dropped = backend.unsupported(req)
        connection = backend.connection
        forgotten = 0
        if req.memory_strategy is not None:
            kept = apply_memory(req.messages, req.memory_strategy)
            forgotten = len(req.messages) - len(kept)
            req = req.model_copy(update={"messages": kept})
        shaping = choose(req, connection, get_source(connection.source))
        req = shape(req, shaping, connection, self.settings)
        return Prepared(req, backend, dropped, shaping, forgotten)

    async def run(self, prepared: Prepared) -> ChatResponse:
        """Run a prepared request to one whole answer."""
        deadline = prepared.request.deadline
        if deadline is None:
            return await prepared.backend.chat(prepared.request)
        try:
            async with asyncio.timeout(deadline):
                return await prepared.backend.chat(prepared.request)
        except TimeoutError:
            raise _past_deadline(deadline) from None

    def run_stream(self, prepared: Prepared) -> AsyncIterator[ChatChunk]:
        """Run a prepared request as a stream of chunks."""
        deadline = prepared.request.deadline
        if deadline is None:
            return prepared.backend.stream(prepared.request)
        return _within(prepared.backend.stream(prepared.request), deadline)

    async def chat(
        self, request: ChatRequest | dict[str, Any] | None = None, /, **fields: Any
    ) -> ChatResponse:
        """One whole answer; takes a `ChatRequest`, a dict, or the fields as keywords."""
        return await self.run(self.prepare(request, **fields))

    async def stream(
        self, request: ChatRequest | dict[str, Any] | None = None, /, **fields: Any
    ) -> AsyncIterator[ChatChunk]:
        """The answer as chunks, as they are made (``stream`` is implied)."""
        if isinstance(request, ChatRequest):
            request = request if request.stream else request.model_copy(update={"stream": True})
        else:
            fields["stream"] = True
        async for chunk in self.run_stream(self.prepare(request, **fields)):
            yield chunk

    def models(self) -> list[ModelInfo]:
        """Every model id the configured connections serve."""
        return [
            ModelInfo(f"{name}/{model}", backend.connection.source)
            for name, backend in self.backends.items()
            for model in backend.models()
        ]

    async def list_models(self) -> list[ModelInfo]:
        """Every model id, refreshing upstream lists where they are stale.

        A connection whose list cannot be fetched still contributes its manual and
        fixed ids; the failure is logged, not raised.
        """
        out: list[ModelInfo] = []
        for name, backend in self.backends.items():
            try:
                models = (await backend.list_models())["models"]
            except ChatgateError as exc:
                log.warning("models of connection '%s' unavailable: %s", name, exc.message)
                models = backend.models()
            out += [ModelInfo(f"{name}/{m}", backend.connection.source) for m in models]
        return out

    def backend(self, name: str) -> Backend:
        """The connection called *name*, or a 404."""
        backend = self.backends.get(name)
        if backend is None:
            known = ", ".join(sorted(self.backends)) or "none"
            raise NotFoundError(
                f"no connection named '{name}' (configured: {known})",
                code="connection_not_found",
            )
        return backend

    def connections(self) -> list[dict[str, Any]]:
        """Each connection's configuration, secrets masked."""
        return [describe_connection(b) for b in self.backends.values()]

    async def preview(
        self, request: ChatRequest | dict[str, Any] | None = None, /, **fields: Any
    ) -> dict[str, Any]:
        """The upstream request *request* would produce; nothing is sent."""
        prepared = self.prepare(request, **fields)
        shown = await prepared.backend.preview(prepared.request)
        shown["dropped_params"] = prepared.dropped
        shown["post_processing"] = prepared.shaping.describe()
        strategy = prepared.request.memory_strategy
        if strategy is not None:
            shown["memory_strategy"] = {
                **strategy.model_dump(),
                "dropped_messages": prepared.forgotten,
            }
        return shown

    def health(self) -> dict[str, Any]:
        """Each connection's status."""
        return {name: backend.status() for name, backend in self.backends.items()}

    async def aclose(self) -> None:
        """Release every backend."""
        for backend in self.routes.values():
            await backend.close()
        await self.transport.aclose()

    # --- sync API ----------------------------------------------------------------

    def start_sync(self, progress: Callable[[str], None] | None = None) -> None:
        """`start` for code without an event loop."""
        self._loop().call(self.start(progress))

    def chat_sync(
        self, request: ChatRequest | dict[str, Any] | None = None, /, **fields: Any
    ) -> ChatResponse:
        """`chat` for code without an event loop."""
        return self._loop().call(self.chat(request, **fields))

    def stream_sync(
        self, request: ChatRequest | dict[str, Any] | None = None, /, **fields: Any
    ) -> Iterator[ChatChunk]:
        """`stream` for code without an event loop."""
        agen = self.stream(request, **fields)
        loop = self._loop()
        try:
            while True:
                try:
                    yield loop.call(_anext(agen))
                except StopAsyncIteration:
                    return
        finally:
            aclose = getattr(agen, "aclose", None)
            if aclose is not None:
                loop.call(aclose())

    def close(self) -> None:
        """Release everything (sync code)."""
        if self._runner is not None:
            self._runner.call(self.aclose())
            self._runner.stop()
            self._runner = None
        else:
            for backend in self.backends.values():
                if isinstance(backend, LocalBackend):
                    for worker in backend.workers:
                        worker.supervisor.terminate()

    def __enter__(self) -> Gateway:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    async def __aenter__(self) -> Gateway:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # --- helpers -----------------------------------------------------------------

    def _coerce(
        self, request: ChatRequest | dict[str, Any] | None, fields: dict[str, Any]
    ) -> ChatRequest:
        if isinstance(request, ChatRequest):
            if fields:
                raise InvalidRequestError("pass a ChatRequest or keyword fields, not both")
            return request
        body = dict(request or {}, **fields)
        if "model" not in body and self.settings.default_model:
            body["model"] = self.settings.default_model
        return parse_chat_request(body)

    def _loop(self) -> _LoopThread:
        if self._runner is None:
            self._runner = _LoopThread()
        return self._runner


def _check_best_of(request: ChatRequest) -> None:
    """What ``best_of`` means on every backend: at least ``n``, and never streamed."""
    n = request.n or 1
    if request.best_of is not None and request.best_of < n:
        raise InvalidRequestError(
            f"best_of ({request.best_of}) must be at least n ({n})", param="best_of"
        )
    if request.stream and (request.best_of or 1) > n:
        raise InvalidRequestError(
            "best_of cannot be streamed: the best answers are known only at the end",
            param="best_of",
        )


def _past_deadline(seconds: float) -> GatewayTimeoutError:
    return GatewayTimeoutError(
        f"no complete answer within inference_timeout ({seconds:g} s); raise "
        "inference_timeout or ask for less",
        param="inference_timeout",
        code="inference_timeout",
    )


async def _within(chunks: AsyncIterator[ChatChunk], seconds: float) -> AsyncIterator[ChatChunk]:
    """*chunks*, cut with a 504 when the whole stream takes longer than *seconds*."""
    loop = asyncio.get_running_loop()
    end = loop.time() + seconds
    try:
        while True:
            try:
                async with asyncio.timeout_at(end):
                    chunk = await anext(chunks)
            except StopAsyncIteration:
                return
            except TimeoutError:
                raise _past_deadline(seconds) from None
            yield chunk
    finally:
        aclose = getattr(chunks, "aclose", None)
        if aclose is not None:
            await aclose()


async def _anext(agen: AsyncIterator[T]) -> T:
    return await anext(agen)


class _LoopThread:
    """An event loop in a daemon thread, for the sync API."""

    def __init__(self) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, daemon=True, name="chatgate-sync"
        )
        self._thread.start()

    def call(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result()

    def stop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)
        self._loop.close()
