"""A connection to an HTTP provider: a pure adapter (translation) over the exchange (I/O).

It executes the attempts `Gateway.prepare` planned and decides nothing again. Besides
chat, it carries the connection operations a person needs when setting one up: list
models, check status (free), and preview the exact upstream request without sending it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

from chatgate.adapters import guided
from chatgate.adapters.extras import add_request_extras
from chatgate.adapters.registry import make_adapter
from chatgate.adapters.wire import PlainExchange, StreamReader, WireAdapter, lie
from chatgate.answers import as_chunks
from chatgate.backends import fanout
from chatgate.backends.base import refuse_or_drop, set_fields
from chatgate.capabilities import Profile, profile_of
from chatgate.config import Connection
from chatgate.errors import ChatgateError, NotFoundError, UpstreamError
from chatgate.exchange.timeouts import bounds
from chatgate.exchange.transport import Transport
from chatgate.output import contract_for
from chatgate.plan import FREE, ONE, Attempt, Fanout, OutputPlan
from chatgate.prompt.postprocess import DEFAULT_PLACEHOLDER
from chatgate.prompt.template_runner import default_runner
from chatgate.secrets import LiveSecrets, SecretResolver
from chatgate.sources import Source
from chatgate.types import ChatChunk, ChatRequest, ChatResponse
from chatgate.upstream import TemplateRender, UpstreamRequest
from chatgate.urls import mask_userinfo, with_v1

log = logging.getLogger("chatgate.connections")

MODELS_TTL = 60.0  # seconds an upstream model list is trusted
STATUS_TIMEOUT = 15.0
LOOKUPS = 3  # questions an adapter may ask before one request (template, token counts)
# What a parser raises when an upstream's answer has the wrong shape somewhere the
# parser did not look first: the answer is a lie, never a crash of the gateway.
MISSHAPEN = (TypeError, KeyError, AttributeError, IndexError, ValueError)


class RemoteBackend:
    """One configured provider connection."""

    billed = True
    open_models = True

    def __init__(
        self,
        connection: Connection,
        source: Source,
        transport: Transport,
        resolver: SecretResolver,
        placeholder: str = DEFAULT_PLACEHOLDER,
    ) -> None:
        self.connection = connection
        self.source = source
        self.transport = transport
        self.resolver = resolver
        self.placeholder = placeholder
        self.adapter: WireAdapter = make_adapter(
            connection, source, resolver.credentials(connection), placeholder
        )
        self.profile: Profile = profile_of(self.adapter)
        self.answer_timeouts, self.stream_timeouts = bounds(
            connection.timeout, connection.connect_timeout, connection.first_byte_timeout
        )
        # The key the adapter sends, and any access token it was given (Vertex's).
        self.secrets = LiveSecrets(resolver, connection, lambda: self.adapter.secrets())
        self._models: list[str] = []
        self._models_at = 0.0
        self._auth_lock = asyncio.Lock()
        # Whether the protocol fetches tokens or runs jobs at all (asked once, not on
        # every request).
        kind = type(self.adapter)
        self._authorizes = getattr(kind, "auth_request", None) is not PlainExchange.auth_request
        self._queues = getattr(kind, "job", None) is not PlainExchange.job
        self._looks_up = getattr(kind, "lookup", None) is not PlainExchange.lookup
        for note in self.adapter.notes:
            log.warning("%s", mask_userinfo(note))

    # --- planning ------------------------------------------------------------------

    def models(self) -> list[str]:
        """Known model names without I/O: manual ids, the fixed list, the cached list."""
        return _merge(self.connection.models, self.source.fixed_models, self._models)

    def plan(self, request: ChatRequest, route: str) -> Attempt:
        """The constraint in this source's form, the parameters it refuses (a 400, or
        dropped), and ``n`` / ``best_of`` emulated where the source lacks them."""
        connection = self.connection
        contract = contract_for(request)
        shaped = guided.plan(request, connection, contract)
        sent = shaped.request
        names = [n for n in self.adapter.unsupported(sent, set_fields(sent)) if n != "n"]
        ranked = self.profile.emulates_best_of(sent)
        if ranked and "best_of" in names:
            names.remove("best_of")
        dropped = refuse_or_drop(names, connection, self.source.display_name)
        if ranked:
            fan = Fanout(candidates=sent.best_of or 1, candidates_in_one=self.profile.n)
        elif self.profile.fans_out(sent):
            fan = Fanout(copies=sent.n or 1)
        else:
            fan = ONE
        output = FREE
        if shaped.contract is not None:
            output = OutputPlan(shaped.contract, True, shaped.buffered, connection.guided_retries)
        return Attempt(route, self, sent, tuple(dropped), output, fan)

    async def start(self, progress: Callable[[str], None] | None = None) -> None:
        """Nothing to load: connections are opened on first use."""

    def status(self) -> dict[str, Any]:
        """Configuration facts for ``/healthz`` (no I/O; see `check_status`)."""
        return {"source": self.source.id, "status": "configured", "base_url": self.adapter.base_url}

    async def close(self) -> None:
        """The transport is shared and closed by the gateway."""

    def terminate(self) -> None:
        """Nothing runs outside the event loop."""

    # --- execution -----------------------------------------------------------------

    def build(self, attempt: Attempt) -> UpstreamRequest:
        """The upstream request *attempt* sends (with ``n`` emulated, the first of them)."""
        request = attempt.request
        if attempt.fanout.candidates:
            request = fanout.candidates(request)
        if attempt.fanout.copies > 1 or (attempt.fanout.candidates and not self.profile.n):
            request = fanout.copies(request)[0]
        return self._build(request, attempt.dropped)

    def _build(self, request: ChatRequest, dropped: tuple[str, ...]) -> UpstreamRequest:
        upstream = self.adapter.build(request, list(dropped))
        add_request_extras(
            upstream,
            request.inference_extra_params,
            request.inference_extra_headers,
            protected=self.connection.extra_body,
            excluded=self.connection.exclude_params,
            allow_auth_override=self.connection.allow_auth_override,
        )
        return upstream

    async def chat(self, attempt: Attempt) -> ChatResponse:
        """Send and translate one non-stream answer; a checked one that fails its
        contract is asked for again (``guided_retries``), then it is a 502."""
        request = attempt.request
        if request.stream:
            request = request.without("stream", "stream_options")
        output, fan = attempt.output, attempt.fanout

        def send(single: ChatRequest) -> Any:
            return self._send(single, attempt.dropped)

        for tried in range(output.retries + 1):
            if fan.candidates:
                answer = await fanout.best_of(request, send, native_n=fan.candidates_in_one)
            elif fan.copies > 1:
                answer = await fanout.gather(request, send)
            else:
                answer = await send(request)
            contract = output.contract
            if not output.checked or contract is None:
                return answer
            try:
                for choice in answer.choices:
                    if choice.message.tool_calls is None:
                        choice.message.content = contract.check(choice.message.content or "")
                return answer
            except UpstreamError as exc:
                if tried == output.retries:
                    raise UpstreamError(
                        f"connection '{self.connection.name}': {exc.message} "
                        f"(after {tried + 1} attempts)",
                        code="invalid_model_output",
                    ) from None
        raise AssertionError("unreachable")

    async def _authorize(self) -> None:
        """Fetch what sending needs beyond the key (a Vertex token), through the
        exchange, when it is due."""
        if self.adapter.auth_request(time.time()) is None:
            return
        async with self._auth_lock:
            request = self.adapter.auth_request(time.time())
            if request is not None:
                data = await self.transport.send_json(
                    request, self.connection.name, STATUS_TIMEOUT, self.secrets
                )
                self.adapter.accept_auth(data, time.time())

    async def _look_up(self, request: ChatRequest) -> None:
        """Find out what the adapter needs to know before building *request*. A server
        that cannot answer is the adapter's to judge (it falls back, or refuses); a
        template that fails to render is the request's error."""
        for _ in range(LOOKUPS):
            question = self.adapter.lookup(request)
            if question is None:
                return
            ask = question.ask
            if isinstance(ask, TemplateRender):
                text = await default_runner().render(
                    ask.source,
                    ask.messages,
                    bos_token=ask.bos_token,
                    eos_token=ask.eos_token,
                    extra=ask.extra,
                    param=ask.param,
                )
                self.adapter.learn(question, text, None)
                continue
            try:
                data = await self.transport.send_json(
                    ask, self.connection.name, STATUS_TIMEOUT, self.secrets
                )
            except ChatgateError as exc:
                self.adapter.learn(question, None, exc.message)
            else:
                self.adapter.learn(question, data, None)

    async def _send(self, request: ChatRequest, dropped: tuple[str, ...]) -> ChatResponse:
        if self._authorizes:
            await self._authorize()
        if self._looks_up:
            await self._look_up(request)
        name, limit = self.connection.name, self.connection.max_response_bytes
        job = self.adapter.job(request, list(dropped)) if self._queues else None
        if job is not None:
            data = await self.transport.run_job(
                job, name, self.answer_timeouts, self.secrets, max_response_bytes=limit
            )
        else:
            data = await self.transport.send_json(
                self._build(request, dropped),
                name,
                self.answer_timeouts,
                self.secrets,
                max_response_bytes=limit,
            )
        try:
            return self.adapter.parse_response(data, request.model)
        except MISSHAPEN as exc:
            raise self._misshapen(exc) from None

    def _misshapen(self, exc: Exception) -> UpstreamError:
        log.warning(
            "connection '%s': an answer the parser could not read (%s)",
            self.connection.name,
            type(exc).__name__,
        )
        return lie(self.connection, "the upstream's answer does not have the protocol's shape")

    async def stream(self, attempt: Attempt) -> AsyncIterator[ChatChunk]:
        """Send and translate a stream; a stream that ends without finishing is a 502.
        A constraint the backend cannot enforce is checked first: that answer arrives
        whole, as one chunk per choice."""
        if attempt.output.buffered:
            opts = attempt.request.stream_options
            answer = await self.chat(attempt)
            for chunk in as_chunks(answer, with_usage=bool(opts and opts.include_usage)):
                yield chunk
            return
        if attempt.fanout.copies > 1:

            def one(single: ChatRequest) -> AsyncIterator[ChatChunk]:
                return self._stream_one(single, attempt.dropped)

            async for chunk in fanout.interleave(attempt.request, one):
                yield chunk
            return
        async for chunk in self._stream_one(attempt.request, attempt.dropped):
            yield chunk

    async def _stream_one(
        self, request: ChatRequest, dropped: tuple[str, ...]
    ) -> AsyncIterator[ChatChunk]:
        if self._authorizes:
            await self._authorize()
        if self._looks_up:
            await self._look_up(request)
        upstream = self._build(request, dropped)
        wants_usage = bool(request.stream_options and request.stream_options.include_usage)
        reader = self.adapter.reader(request)
        opened = (
            self.transport.stream_sse if upstream.framing == "sse" else self.transport.stream_ndjson
        )
        events = opened(
            upstream,
            self.connection.name,
            self.stream_timeouts,
            self.secrets,
            stream_deadline=self.connection.stream_deadline,
            max_event_bytes=self.connection.max_event_bytes,
            on_cancel=self.adapter.cancel_request(request),
        )
        try:
            async for chunk in self._chunks(events, reader, wants_usage):
                yield chunk
        finally:
            await events.aclose()  # at once: a client that left stops the upstream now
        if not reader.finished:
            raise UpstreamError(
                f"connection '{self.connection.name}': the upstream stream ended before "
                "the answer finished",
                code="upstream_stream_broken",
            )

    async def _chunks(
        self, events: AsyncIterator[Any], reader: StreamReader, wants_usage: bool
    ) -> AsyncIterator[ChatChunk]:
        async for event in events:
            for chunk in self._read(reader, event):
                usage = chunk.usage
                if usage is not None and chunk.choices:
                    chunk.usage = None  # OpenAI sends usage in a chunk of its own
                if chunk.choices:
                    yield chunk
                if usage is not None and wants_usage:
                    yield ChatChunk(
                        chunk.id, chunk.created, chunk.model, [], usage, chunk.system_fingerprint
                    )
            if reader.done:
                break

    def _read(self, reader: StreamReader, event: Any) -> list[ChatChunk]:
        try:
            return reader.feed(event)
        except MISSHAPEN as exc:
            raise self._misshapen(exc) from None

    # --- connection operations -----------------------------------------------------

    async def list_models(self, *, refresh: bool = False) -> dict[str, Any]:
        """The upstream list (cached for a minute) merged with the manual ids."""
        note = None
        fetched: list[str] = []
        if self.source.models == "list":
            if refresh or time.monotonic() - self._models_at > MODELS_TTL:
                # A failure is remembered for the TTL too, so a dead upstream does not
                # stall every /v1/models call with a fresh probe.
                self._models_at = time.monotonic()
                self._models, note = await self._fetch_models()
            fetched = self._models
        return {
            "connection": self.connection.name,
            "models": _merge(self.connection.models, self.source.fixed_models, fetched),
            "upstream": fetched,
            "manual": list(self.connection.models),
            "note": note,
        }

    async def _fetch_models(self) -> tuple[list[str], str | None]:
        name, secrets = self.connection.name, self.secrets
        try:
            data = await self.transport.send_json(
                self.adapter.models_request(), name, STATUS_TIMEOUT, secrets
            )
            return self.adapter.parse_models(data), None
        except NotFoundError:
            retry = with_v1(self.adapter.base_url) if self.connection.base_url else None
            if retry is None:
                raise
            data = await self.transport.send_json(
                self.adapter.models_request(retry), name, STATUS_TIMEOUT, secrets
            )
            note = (
                f"connection '{name}': {self.adapter.base_url}/models answered 404 but "
                f'{retry}/models works; using base_url = "{retry}" (put it in the config)'
            )
            log.warning("%s", mask_userinfo(note))
            # The whole adapter is rebuilt for the URL that works, not patched in place.
            moved = self.connection.model_copy(update={"base_url": retry})
            self.adapter = make_adapter(
                moved, self.source, self.resolver.credentials(moved), self.placeholder
            )
            return self.adapter.parse_models(data), note

    async def check_status(self) -> dict[str, Any]:
        """A free probe (the models call); with ``bypass_status_check`` a failure warns."""
        out: dict[str, Any] = {"connection": self.connection.name, "source": self.source.id}
        if self.source.status == "none":
            return {
                **out,
                "status": "unchecked",
                "message": f"{self.source.display_name} has no free status call; "
                "send a test message to check the key (it is billed)",
            }
        started = time.perf_counter()
        try:
            report = await self.list_models(refresh=True)
        except ChatgateError as exc:
            failed = {"error": exc.message, "http_status": exc.status}
            if self.connection.bypass_status_check:
                return {**out, "status": "bypassed", "warning": exc.message, **failed}
            return {**out, "status": "error", **failed}
        return {
            **out,
            "status": "ok",
            "models": len(report["upstream"]),
            "latency_ms": round((time.perf_counter() - started) * 1000, 1),
            "note": report["note"],
        }

    async def preview(self, attempt: Attempt) -> dict[str, Any]:
        """The exact upstream request, secrets masked. Nothing is sent."""
        if self._looks_up:
            await self._look_up(attempt.request)
        fan = attempt.fanout
        sent = fan.copies if fan.copies > 1 else fan.candidates if not fan.candidates_in_one else 1
        return {
            "connection": self.connection.name,
            "source": self.source.id,
            **self.build(attempt).preview(self.secrets),
            **({"sent_times": sent} if sent > 1 else {}),
        }


def _merge(*lists: Any) -> list[str]:
    seen: dict[str, None] = {}
    for items in lists:
        for item in items:
            seen.setdefault(item, None)
    return list(seen)
