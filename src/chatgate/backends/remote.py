"""A connection to an HTTP provider: an adapter (translation) plus the transport (I/O).

Besides chat, it carries the connection operations a person needs when setting one
up: list models, check status (free), send a test message (billed), and preview the
exact upstream request without sending it.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any

from chatgate.adapters import guided
from chatgate.adapters.extras import add_request_extras
from chatgate.adapters.wire import WireAdapter
from chatgate.backends import fanout
from chatgate.backends.base import refuse_or_drop, set_fields
from chatgate.config import Connection
from chatgate.errors import ChatgateError, NotFoundError, UpstreamError
from chatgate.exchange.transport import Transport
from chatgate.prompt.postprocess import DEFAULT_PLACEHOLDER
from chatgate.sources import Source
from chatgate.types import (
    ChatChunk,
    ChatRequest,
    ChatResponse,
    ChunkChoice,
    Delta,
    ToolCallDelta,
)
from chatgate.upstream import UpstreamRequest
from chatgate.urls import mask_userinfo, with_v1

log = logging.getLogger("chatgate.connections")

MODELS_TTL = 60.0  # seconds an upstream model list is trusted
STATUS_TIMEOUT = 15.0
TEST_MAX_TOKENS = 16


class RemoteBackend:
    """One configured OpenAI-compatible connection."""

    def __init__(
        self,
        connection: Connection,
        source: Source,
        transport: Transport,
        env: Mapping[str, str] | None = None,
        placeholder: str = DEFAULT_PLACEHOLDER,
    ) -> None:
        env = os.environ if env is None else env
        self.connection = connection
        self.source = source
        self.transport = transport
        self.adapter: WireAdapter = make_adapter(connection, source, env, placeholder)
        self.secrets = [s for s in [*connection.secrets(env), self.adapter.key] if s]
        self._models: list[str] = []
        self._models_at = 0.0
        for note in self.adapter.notes:
            log.warning("%s", mask_userinfo(note))

    # --- the Backend protocol ------------------------------------------------------

    def models(self) -> list[str]:
        """Known model names without I/O: manual ids, the fixed list, the cached list."""
        return _merge(self.connection.models, self.source.fixed_models, self._models)

    def unsupported(self, request: ChatRequest) -> list[str]:
        """Parameters this source refuses (400 unless the connection drops them)."""
        return self._unsupported(guided.plan(request, self.connection).request)

    def _unsupported(self, planned: ChatRequest) -> list[str]:
        names = self.adapter.unsupported(planned, set_fields(planned))
        names = [n for n in names if n != "n"]  # emulated: see `_fans_out`
        if "best_of" in names and self._ranks(planned):
            names.remove("best_of")  # emulated: see `fanout.best_of`
        return refuse_or_drop(names, self.connection, self.source.display_name)

    def _ranks(self, planned: ChatRequest) -> bool:
        """Whether ``best_of`` is emulated: it needs the source's log-probabilities."""
        return (planned.best_of or 1) > (planned.n or 1) and not self.adapter.unsupported(
            planned, ["logprobs"]
        )

    def _fans_out(self, planned: ChatRequest) -> bool:
        """Whether ``n`` is emulated with parallel requests (the source has no ``n``)."""
        return (planned.n or 1) > 1 and "n" in self.adapter.unsupported(planned, ["n"])

    async def start(self, progress: Callable[[str], None] | None = None) -> None:
        """Nothing to load: connections are opened on first use."""

    def status(self) -> dict[str, Any]:
        """Configuration facts for ``/healthz`` (no I/O; see `check_status`)."""
        return {"source": self.source.id, "status": "configured", "base_url": self.adapter.base_url}

    async def close(self) -> None:
        """The transport is shared and closed by the gateway."""

    def build(self, request: ChatRequest) -> UpstreamRequest:
        """The upstream request for *request*, parameters dropped as configured (with
        ``n`` emulated, the first of the n requests)."""
        planned = guided.plan(request, self.connection).request
        if self._emulates_best_of(planned):
            planned = fanout.candidates(planned)
        if self._fans_out(planned):
            planned = fanout.copies(planned)[0]
        return self._build(planned)

    def _emulates_best_of(self, planned: ChatRequest) -> bool:
        # Only where the source lacks best_of itself (vLLM has it).
        return self._ranks(planned) and "best_of" in self.adapter.unsupported(planned, ["best_of"])

    def _build(self, planned: ChatRequest) -> UpstreamRequest:
        upstream = self.adapter.build(planned, self._unsupported(planned))
        if planned.inference_extra_params or planned.inference_extra_headers:
            add_request_extras(
                upstream,
                planned.inference_extra_params,
                planned.inference_extra_headers,
                protected=self.connection.extra_body,
                excluded=self.connection.exclude_params,
                allow_auth_override=self.connection.allow_auth_override,
            )
        return upstream

    async def chat(self, request: ChatRequest) -> ChatResponse:
        """Send and translate one non-stream request; a guided answer is checked, and
        asked for again while it fails (``guided_retries``)."""
        if request.stream:
            request = request.model_copy(update={"stream": False, "stream_options": None})
        planned = guided.plan(request, self.connection)
        check = planned.check
        fan = self._fans_out(planned.request)
        ranked = self._emulates_best_of(planned.request)
        for attempt in range(self.connection.guided_retries + 1):
            if ranked:
                native_n = "n" not in self.adapter.unsupported(
                    planned.request.model_copy(update={"n": planned.request.best_of}), ["n"]
                )
                answer = await fanout.best_of(planned.request, self._send, native_n=native_n)
            elif fan:
                answer = await fanout.gather(planned.request, self._send)
            else:
                answer = await self._send(planned.request)
            if check is None:
                return answer
            try:
                for choice in answer.choices:
                    if choice.message.tool_calls is None:
                        choice.message.content = check(choice.message.content or "")
                return answer
            except UpstreamError as exc:
                if attempt == self.connection.guided_retries:
                    raise UpstreamError(
                        f"connection '{self.connection.name}': {exc.message} "
                        f"(after {attempt + 1} attempts)",
                        code="invalid_model_output",
                    ) from None
        raise AssertionError("unreachable")

    async def _send(self, planned: ChatRequest) -> ChatResponse:
        await self.adapter.authorize()
        data = await self.transport.send_json(
            self._build(planned),
            self.connection.name,
            self.connection.timeout,
            self.secrets,
            max_response_bytes=self.connection.max_response_bytes,
        )
        return self.adapter.parse_response(data, planned.model)

    async def stream(self, request: ChatRequest) -> AsyncIterator[ChatChunk]:
        """Send and translate a stream; a stream that ends without finishing is a 502.
        A constraint the backend cannot enforce is checked first: that answer arrives
        whole, as one chunk per choice."""
        planned = guided.plan(request, self.connection)
        if planned.buffered:
            for chunk in as_chunks(await self.chat(request), request):
                yield chunk
            return
        if self._fans_out(planned.request):
            async for chunk in fanout.interleave(planned.request, self._stream_one):
                yield chunk
            return
        async for chunk in self._stream_one(planned.request):
            yield chunk

    async def _stream_one(self, request: ChatRequest) -> AsyncIterator[ChatChunk]:
        await self.adapter.authorize()
        upstream = self._build(request)
        wants_usage = bool(request.stream_options and request.stream_options.include_usage)
        reader = self.adapter.reader(request)
        events = self.transport.stream_sse(
            upstream,
            self.connection.name,
            self.connection.timeout,
            self.secrets,
            stream_deadline=self.connection.stream_deadline,
            max_event_bytes=self.connection.max_event_bytes,
        )
        async for event in events:
            for chunk in reader.feed(event):
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
        if not reader.finished:
            raise UpstreamError(
                f"connection '{self.connection.name}': the upstream stream ended before "
                "the answer finished",
                code="upstream_stream_broken",
            )

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
            self.adapter.base_url = retry
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

    async def send_test(self, model: str | None = None) -> dict[str, Any]:
        """A real, minimal, billed "Hi": proves the key, URL and model work end to end."""
        name = model or self._test_model()
        request = ChatRequest.model_validate(
            {
                "model": f"{self.connection.name}/{name}",
                "messages": [{"role": "user", "content": "Hi"}],
                "max_tokens": TEST_MAX_TOKENS,
            }
        )
        started = time.perf_counter()
        answer = await self.chat(request)
        return {
            "connection": self.connection.name,
            "model": name,
            "ok": True,
            "reply": answer.text,
            "latency_ms": round((time.perf_counter() - started) * 1000, 1),
            "usage": answer.usage.to_dict(),
            "billed": True,
            "billing_note": "this was a real request to the provider and is billed as one",
        }

    def _test_model(self) -> str:
        known = self.models()
        if not known:
            raise NotFoundError(
                f"connection '{self.connection.name}': no model known to test; list the "
                "models first, add `models = [...]` to the connection, or name one",
                param="model",
            )
        return known[0]

    async def preview(self, request: ChatRequest) -> dict[str, Any]:
        """The exact upstream request, secrets masked. Nothing is sent."""
        return {
            "connection": self.connection.name,
            "source": self.source.id,
            **self.build(request).preview(self.secrets),
            **({"sent_times": request.n} if self._fans_out(request) else {}),
        }


def as_chunks(answer: ChatResponse, request: ChatRequest) -> list[ChatChunk]:
    """A whole answer as the chunks of a stream: role, content, finish, usage."""
    chunks = []
    for choice in answer.choices:
        message = choice.message
        calls = [
            ToolCallDelta(i, c.id, c.function.name, c.function.arguments)
            for i, c in enumerate(message.tool_calls or [])
        ]
        delta = Delta("assistant", message.content, message.reasoning_content, calls or None)
        chunks.append(
            ChatChunk(answer.id, answer.created, answer.model, [ChunkChoice(choice.index, delta)])
        )
        finish = ChunkChoice(choice.index, Delta(), choice.finish_reason)
        chunks.append(ChatChunk(answer.id, answer.created, answer.model, [finish]))
    if request.stream_options and request.stream_options.include_usage:
        chunks.append(ChatChunk(answer.id, answer.created, answer.model, [], answer.usage))
    return chunks


def make_adapter(
    connection: Connection,
    source: Source,
    env: Mapping[str, str],
    placeholder: str = DEFAULT_PLACEHOLDER,
) -> WireAdapter:
    """The wire protocol the source's catalogue row names (imported when first used)."""
    if source.adapter == "anthropic":
        from chatgate.adapters.anthropic import AnthropicAdapter

        return AnthropicAdapter(connection, source, env, placeholder)
    if source.adapter == "gemini":
        from chatgate.adapters.gemini import GeminiAdapter

        return GeminiAdapter(connection, source, env, placeholder)
    if source.adapter == "cohere":
        from chatgate.adapters.cohere import CohereAdapter

        return CohereAdapter(connection, source, env, placeholder)
    from chatgate.adapters.openai_chat import OpenAIChatAdapter

    return OpenAIChatAdapter(connection, source, env)


def _merge(*lists: Any) -> list[str]:
    seen: dict[str, None] = {}
    for items in lists:
        for item in items:
            seen.setdefault(item, None)
    return list(seen)
