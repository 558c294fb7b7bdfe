"""A connection to an HTTP provider: a pure adapter (translation) over the exchange (I/O).

It executes the attempts `Gateway.prepare` planned and decides nothing again. Besides
chat, it carries the connection operations a person needs when setting one up: list
models, check status (free), and preview the exact upstream request without sending it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

from chatgate.adapters import guided
from chatgate.adapters.extras import finish_request
from chatgate.adapters.registry import make_adapter
from chatgate.adapters.wire import PlainExchange, WireAdapter, lie
from chatgate.answers import as_chunks
from chatgate.backends import fanout
from chatgate.backends.base import refuse_or_drop, set_fields
from chatgate.backends.remote_ops import STATUS_TIMEOUT, merge
from chatgate.backends.remote_stream import MISSHAPEN, Streaming
from chatgate.backends.schema_forms import REFUSED, SchemaForms, refuses_schema
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
from chatgate.urls import mask_userinfo

log = logging.getLogger("chatgate.connections")

PROFILES_KEPT = 256  # model ids whose profile is kept
LOOKUPS = 3  # questions an adapter may ask before one request (template, token counts)


class RemoteBackend(Streaming):
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
        self.forms = SchemaForms(connection.name, source)
        self._profiles: dict[str, Profile] = {}
        for note in self.adapter.notes:
            log.warning("%s", mask_userinfo(note))

    # --- planning ------------------------------------------------------------------

    def _profile_for(self, model: str) -> Profile:
        """The connection's profile for *model* (worked out once per model id)."""
        known = self._profiles.get(model)
        if known is None:
            known = self.profile.for_model(self.source.model_rules, model)
            if len(self._profiles) < PROFILES_KEPT:
                self._profiles[model] = known
        return known

    def models(self) -> list[str]:
        """Known model names without I/O: manual ids, the fixed list, the cached list."""
        return merge(self.connection.models, self.source.fixed_models, self._models)

    def plan(self, request: ChatRequest, route: str) -> Attempt:
        """The constraint in this source's form, the parameters it refuses (a 400, or
        dropped), and ``n`` / ``best_of`` emulated where the source lacks them."""
        connection = self.connection
        contract = contract_for(request)
        shaped = guided.plan(request, connection, contract)
        sent = shaped.request
        profile = self._profile_for(sent.model_name)
        given = set_fields(sent)
        names = [n for n in self.adapter.unsupported(sent, given) if n != "n"]
        if profile.refuses:  # this model refuses more than its source (in the client's order)
            refused = set(names) | profile.refuses
            names = [n for n in given if n in refused and n != "n"]
        ranked = self.profile.emulates_best_of(sent)
        if ranked and "best_of" in names:
            names.remove("best_of")
        what = self.source.display_name
        if names and names[0] in profile.refuses:
            what = f"{what} model '{sent.model_name}' ({profile.why})"
        dropped = refuse_or_drop(names, connection, what)
        if (
            profile.max_tokens_name == "max_completion_tokens"
            and sent.max_tokens is not None
            and "max_tokens" not in dropped
        ):
            # These models take only the newer name; the tighter bound, if both came.
            bound = min(sent.max_tokens, sent.max_completion_tokens or sent.max_tokens)
            sent = sent.without("max_tokens", max_completion_tokens=bound)
        if ranked:
            fan = Fanout(candidates=sent.best_of or 1, candidates_in_one=self.profile.n)
        elif self.profile.fans_out(sent):
            fan = Fanout(copies=sent.n or 1)
        else:
            fan = ONE
        output = FREE
        if shaped.contract is not None:
            output = OutputPlan(shaped.contract, True, shaped.buffered, connection.guided_retries)
        if sent.stream and not self.profile.streams:
            # A protocol without streams answers whole; the stream is made of that answer.
            output = OutputPlan(output.contract, output.checked, True, output.retries)
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

    def _build(
        self, request: ChatRequest, dropped: tuple[str, ...], adapter: WireAdapter | None = None
    ) -> UpstreamRequest:
        """The upstream request by *adapter* (this connection's, or one at another base
        URL), with the request's extras."""
        built = (adapter or self.adapter).build(request, list(dropped))
        return finish_request(built, request, self.connection)

    async def chat(
        self, attempt: Attempt, progress: Callable[[str], None] | None = None
    ) -> ChatResponse:
        """Send and translate one non-stream answer; a checked one that fails its
        contract is asked for again (``guided_retries``), then it is a 502. A queued
        job tells *progress* how it stands while it waits."""
        request = attempt.request
        if request.stream:
            request = request.without("stream", "stream_options")
        output, fan = attempt.output, attempt.fanout

        def send(single: ChatRequest) -> Any:
            return self._send(single, attempt.dropped, progress)

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

    async def _send(
        self,
        request: ChatRequest,
        dropped: tuple[str, ...],
        progress: Callable[[str], None] | None = None,
    ) -> ChatResponse:
        """One answer. A JSON schema the server refuses in one form is sent in the next
        its source lists (`SchemaForms`), and the form that worked is remembered."""
        if self._authorizes:
            await self._authorize()
        if self._looks_up:
            await self._look_up(request)
        forms = self.forms.forms(request)
        for position, form in forms:
            sent = request if form is None else guided.in_form(request, form)
            try:
                data = await self._answer(sent, dropped, progress)
            except REFUSED as exc:
                if form is None or position == forms[-1][0] or not refuses_schema(exc):
                    raise
                self.forms.refused(form, exc)
                continue
            self.forms.worked(position, form, forms)
            break
        try:
            return self.adapter.settle(self.adapter.parse_response(data, request.model), request)
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
            if self._queues:
                answer = None
                # Closed with this stream: a client that leaves withdraws the job.
                async with contextlib.aclosing(self._waiting(attempt)) as waiting:
                    async for item in waiting:
                        if isinstance(item, ChatChunk):
                            yield item
                        else:
                            answer = item
                assert answer is not None
            else:
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

    # --- connection operations (the rest are `ConnectionOperations`') -------------

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

    async def _answer(
        self,
        request: ChatRequest,
        dropped: tuple[str, ...],
        progress: Callable[[str], None] | None = None,
    ) -> Any:
        """The JSON answer to *request*; a 404 on a base URL without a version is asked
        again once with ``/v1`` (`_at_v1`)."""
        name, limit = self.connection.name, self.connection.max_response_bytes
        job = self.adapter.job(request, list(dropped)) if self._queues else None
        if job is not None:
            return await self.transport.run_job(
                job,
                name,
                self.answer_timeouts,
                self.secrets,
                max_response_bytes=limit,
                on_progress=progress,
            )

        async def post(adapter: WireAdapter) -> Any:
            return await self.transport.send_json(
                self._build(request, dropped, adapter),
                name,
                self.answer_timeouts,
                self.secrets,
                max_response_bytes=limit,
            )

        try:
            return await post(self.adapter)
        except NotFoundError as exc:
            return await self._at_v1(exc, post)
