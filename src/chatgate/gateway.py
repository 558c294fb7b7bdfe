"""`Gateway`: the one pipeline every front door, the CLI and the library go through."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable
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
    InvalidRequestError,
    NotFoundError,
)
from chatgate.exchange.transport import Transport
from chatgate.gateway_live import LiveConnections
from chatgate.gateway_sync import SyncAPI
from chatgate.plan import ANONYMOUS, Attempt, Caller, Observer, Plan
from chatgate.prompt.memory import apply_memory
from chatgate.prompt.policy import Shaping, choose, shape
from chatgate.prompt.postprocess import DEFAULT_PLACEHOLDER
from chatgate.resilience_run import Resilience
from chatgate.routing import resolve
from chatgate.running import Watch, observed, past_deadline, within
from chatgate.secrets import EnvSecrets, SecretResolver
from chatgate.sources import EMBEDDED, SOURCES, get_source
from chatgate.types import ChatChunk, ChatRequest, ChatResponse
from chatgate.validation import parse_chat_request

T = TypeVar("T")
TEST_MAX_TOKENS = 16
log = logging.getLogger("chatgate.gateway")


def build_backend(
    connection: Connection,
    transport: Transport,
    resolver: SecretResolver,
    placeholder: str = DEFAULT_PLACEHOLDER,
) -> Backend:
    """The backend object for a configured connection: the embedded engine for a source
    whose adapter is ``local``, a provider connection for every HTTP protocol."""
    source = get_source(connection.source)
    if source is None:
        known = ", ".join(sorted(SOURCES))
        raise ConfigError(
            f"connection '{connection.name}': unknown source '{connection.source}' (known: {known})"
        )
    if source.adapter == EMBEDDED:
        return LocalBackend(connection, transport)
    return RemoteBackend(connection, source, transport, resolver, placeholder=placeholder)


@dataclass(frozen=True, slots=True)
class ModelInfo:
    """One model a client can ask for."""

    id: str
    owned_by: str


class Gateway(LiveConnections, SyncAPI):
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
        self.resolver: SecretResolver = EnvSecrets(self.settings)
        self.transport = Transport()
        self.observers: list[Observer] = []
        self.backends: dict[str, Backend] = {}
        self.routes: dict[str, Backend] = {}
        self.labelled: dict[tuple[str, str], Backend] = {}
        self.unavailable: dict[str, str] = {}
        for conn in self.settings.connections:
            routes = self._routes_of(conn)
            self.backends[conn.name] = routes[conn.name]
            self.routes.update(routes)
        # The connections of the config file: read-only while running.
        self.configured = frozenset(self.backends)
        # Counts live changes to the connections, so that what is cached of them (the
        # secrets redaction looks for) is read again.
        self.generation = 0
        self._runner = None
        self.resilience = Resilience(self.settings)  # retries, fallbacks, pools, ejection

    # --- async API ---------------------------------------------------------------

    async def start(self, progress: Callable[[str], None] | None = None) -> None:
        """Warm every backend up (load the embedded model)."""
        for backend in self.backends.values():
            await backend.start(progress)

    def prepare(
        self,
        request: ChatRequest | dict[str, Any] | None = None,
        /,
        *,
        caller: Caller = ANONYMOUS,
        door: str = "library",
        key_label: str | None = None,
        **fields: Any,
    ) -> Plan:
        """Validate, route, shape and plan without running: every decision about the
        request is made here, once (the server needs the outcome before it answers)."""
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
        forgotten = 0
        if req.memory_strategy is not None:
            kept = apply_memory(req.messages, req.memory_strategy)
            forgotten = len(req.messages) - len(kept)
            req = req.model_copy(update={"messages": kept})
        if req.model in self.resilience.models:  # fallbacks or a pool: docs/resilience.md
            return self.resilience.plan(self, req, forgotten, caller, door, key_label)
        req, shaping, attempt = self.plan_attempt(req, key_label)
        return Plan(req, (attempt,), shaping, forgotten, caller, door)

    def plan_attempt(
        self, req: ChatRequest, key_label: str | None = None
    ) -> tuple[ChatRequest, Shaping, Attempt]:
        """*req* routed to its model's backend, shaped for it and planned by it."""
        route, backend = resolve(req.model, self.routes)
        if key_label is not None or self.unavailable:
            backend = self.keyed_backend(route, backend, key_label)
        connection = backend.connection
        source = get_source(connection.source)
        shaping = choose(req, connection, source)
        req = shape(req, shaping, connection, self.settings, source)
        return req, shaping, backend.plan(req, route)

    async def run(self, plan: Plan) -> ChatResponse:
        """Run a planned request to one whole answer."""
        if self.resilience.engaged(plan):
            return await self.resilience.run(self, plan)
        attempt = plan.first
        if not self.observers:  # the usual case, on the hot path: nothing to tell
            return await self._answer(plan, attempt)
        watch = self._watch(plan, attempt, streamed=False)
        try:
            answer = await self._answer(plan, attempt)
        except BaseException as exc:
            watch.failed(exc)
            raise
        watch.done(answer.usage)
        return answer

    async def _answer(self, plan: Plan, attempt: Attempt) -> ChatResponse:
        deadline = plan.request.deadline
        if deadline is None:
            return await attempt.backend.chat(attempt)
        try:
            async with asyncio.timeout(deadline):
                return await attempt.backend.chat(attempt)
        except TimeoutError:
            raise past_deadline(deadline) from None

    def run_stream(self, plan: Plan) -> AsyncIterator[ChatChunk]:
        """Run a planned request as a stream of chunks."""
        if self.resilience.engaged(plan):
            return self.resilience.stream(self, plan)
        attempt = plan.first
        chunks = attempt.backend.stream(attempt)
        deadline = plan.request.deadline
        if deadline is not None:
            chunks = within(chunks, deadline)
        if not self.observers:
            return chunks
        return observed(chunks, self._watch(plan, attempt, streamed=True))

    def _watch(self, plan: Plan, attempt: Attempt, *, streamed: bool) -> Watch:
        return Watch(self.observers, plan, attempt, streamed)

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
        chunks = self.run_stream(self.prepare(request, **fields))
        try:
            async for chunk in chunks:
                yield chunk
        finally:
            # A caller that stops reading stops the upstream now, not at garbage
            # collection: the chunks are closed with this stream.
            aclose = getattr(chunks, "aclose", None)
            if aclose is not None:
                await aclose()

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
        plan = self.prepare(request, **fields)
        before = request if isinstance(request, ChatRequest) else self._coerce(request, fields)
        shown = await plan.first.backend.preview(plan.first)
        # What memory and post-processing did: the messages as sent, then as shaped.
        shown["messages_before"] = [m.model_dump(exclude_none=True) for m in before.messages]
        shown["messages_after"] = [m.model_dump(exclude_none=True) for m in plan.request.messages]
        shown["dropped_params"] = plan.dropped
        shown["post_processing"] = plan.shaping.describe()
        strategy = plan.request.memory_strategy
        if strategy is not None:
            shown["memory_strategy"] = {
                **strategy.model_dump(),
                "dropped_messages": plan.forgotten,
            }
        return shown

    async def send_test(self, name: str, model: str | None = None) -> dict[str, Any]:
        """A real, minimal "Hi" through connection *name*: proves its key, URL and model
        work end to end (billed by a provider; free on the embedded engine)."""
        backend = self.backend(name)
        chosen = model or next(iter(backend.models()), None)
        if chosen is None:
            raise NotFoundError(
                f"connection '{name}': no model known to test; list the models first, add "
                "`models = [...]` to the connection, or name one",
                param="model",
            )
        started = time.perf_counter()
        answer = await self.chat(
            model=f"{name}/{chosen}",
            messages=[{"role": "user", "content": "Hi"}],
            max_tokens=TEST_MAX_TOKENS,
        )
        usage = answer.usage
        return {
            "connection": name,
            "model": chosen,
            "ok": True,
            "reply": answer.text,
            "latency_ms": round((time.perf_counter() - started) * 1000, 1),
            "usage": {
                "prompt_tokens": usage.prompt_tokens,
                "completion_tokens": usage.completion_tokens,
                "total_tokens": usage.total_tokens,
            },
            "billed": backend.billed,
            "billing_note": (
                "this was a real request to the provider and is billed as one"
                if backend.billed
                else "the embedded model runs on this machine; nothing is billed"
            ),
        }

    def health(self) -> dict[str, Any]:
        """Each connection's status."""
        out = {name: backend.status() for name, backend in self.backends.items()}
        for name, status in out.items():
            if (ejection := self.resilience.health(name)) is not None:
                status["ejection"] = ejection
        return out

    async def aclose(self) -> None:
        """Release every backend."""
        for backend in self.routes.values():
            await backend.close()
        await self.transport.aclose()

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
