"""All I/O with the engine worker: requests over loopback, answers read into our types.

The worker is llama.cpp's server (`chatgate.engine.worker`); `WorkerClient` reaches it
through the shared transport, like any upstream, with the bearer token only the
gateway knows. A call that breaks because the worker died becomes a 503
``engine_unavailable``, not a bare 502.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import orjson

from chatgate.adapters.engine_wire import (
    CompletionStream,
    chat_body,
    completion_body,
    new_completion_id,
    role_only,
    template_message,
    trim_alternatives,
)
from chatgate.config import Connection
from chatgate.engine.supervisor import Supervisor
from chatgate.errors import ChatgateError, ContextLengthError, InvalidRequestError, UpstreamError
from chatgate.exchange.transport import Transport
from chatgate.output import OutputContract
from chatgate.prompt.template_runner import TEMPLATE_SECONDS as TEMPLATE_SECONDS
from chatgate.prompt.template_runner import default_runner
from chatgate.sources import Source
from chatgate.types import ChatChunk, ChatRequest, ChatResponse, ChunkChoice, Delta
from chatgate.upstream import Credentials, SSEEvent, UpstreamRequest

DEATH_GRACE = 2.0  # seconds to notice that a broken connection was the worker dying
BROKEN = ("upstream_unreachable", "upstream_stream_broken")
OFF_LOOP_MESSAGES = 500  # conversations this long get their worker body made in a thread

# The worker answers its chat route in OpenAI's shape: the OpenAI adapter reads it.
_WORKER_SOURCE = Source(
    id="local",
    display_name="the embedded engine",
    adapter="openai_chat",
    default_base_url="http://127.0.0.1",
    key_required=False,
)


class WorkerClient:
    """Talks to the current worker of one `Supervisor`."""

    def __init__(
        self, connection: Connection, supervisor: Supervisor, transport: Transport
    ) -> None:
        from chatgate.adapters.openai_chat import OpenAIChatAdapter

        self.connection = connection
        self.supervisor = supervisor
        self.transport = transport
        self._openai = OpenAIChatAdapter(connection, _WORKER_SOURCE, Credentials())
        self._props: tuple[int, dict[str, Any]] | None = None

    # --- requests ------------------------------------------------------------------

    def url(self, path: str) -> str:
        """The current worker's URL for *path* (a 503 while there is none)."""
        if self.supervisor.base_url is None:
            raise self.supervisor.unavailable()
        return self.supervisor.base_url + path

    def headers(self) -> dict[str, str]:
        """JSON and the worker's bearer token."""
        return {
            "Content-Type": "application/json",
            "Authorization": f"Bearer {self.supervisor.token}",
        }

    def chat_request(
        self, request: ChatRequest, contract: OutputContract | None
    ) -> UpstreamRequest:
        """``POST /v1/chat/completions`` for *request*."""
        body = chat_body(request, contract)
        url = self.url("/v1/chat/completions")
        return UpstreamRequest("POST", url, self.headers(), body, bool(request.stream))

    async def chat_request_off_loop(
        self, request: ChatRequest, contract: OutputContract | None
    ) -> UpstreamRequest:
        """`chat_request`, made in a thread for a long conversation: 10,000 messages take
        tens of milliseconds to turn into the worker's body."""
        if len(request.messages) < OFF_LOOP_MESSAGES:
            return self.chat_request(request, contract)
        return await asyncio.to_thread(self.chat_request, request, contract)

    def completion_request(
        self, request: ChatRequest, prompt: str, contract: OutputContract | None
    ) -> UpstreamRequest:
        """The native ``POST /completion`` for one choice of *request*."""
        body = completion_body(request, prompt, contract)
        url = self.url("/completion")
        return UpstreamRequest("POST", url, self.headers(), body, bool(request.stream))

    async def call(self, upstream: UpstreamRequest) -> Any:
        """Send and parse one JSON answer; failures explained (`explain`)."""
        generation = self.supervisor.generation
        try:
            return await self.transport.send_json(
                upstream,
                self.connection.name,
                self.connection.timeout,
                [self.supervisor.token],
                max_response_bytes=self.connection.max_response_bytes,
            )
        except ChatgateError as exc:
            raise await self.explain(exc, generation) from None

    async def explain(self, exc: ChatgateError, generation: int) -> ChatgateError:
        """The error a failed worker call means to the client."""
        if isinstance(exc, UpstreamError) and exc.code in BROKEN:
            # A broken connection: most likely the worker died. Give the supervisor a
            # moment to see the exit, then say so (503), rather than a bare 502.
            deadline = time.monotonic() + DEATH_GRACE
            while time.monotonic() < deadline:
                if self.supervisor.generation != generation or not self.supervisor.serving:
                    return self.supervisor.unavailable()
                await asyncio.sleep(0.02)
        if isinstance(exc, InvalidRequestError) and "exceeds the available context" in exc.message:
            return ContextLengthError(
                f"this model's maximum context length is {self.connection.engine.context_size} "
                "tokens per sequence, and the request does not fit (messages plus "
                "max_tokens); shorten the messages or max_tokens",
                param="messages",
            )
        return exc

    # --- the prompt ------------------------------------------------------------------

    async def prompt(self, request: ChatRequest) -> str:
        """The prompt text: the client's raw text, the request's own template, else the
        model's (in the worker)."""
        if request.raw_prompt is not None:
            return request.raw_prompt
        messages = [template_message(m) for m in request.messages]
        if request.chat_template is None:
            body: dict[str, Any] = {"messages": messages}
            if request.chat_template_kwargs:
                body["chat_template_kwargs"] = request.chat_template_kwargs
            data = await self.call(
                UpstreamRequest("POST", self.url("/apply-template"), self.headers(), body)
            )
            return str(data.get("prompt", "")) if isinstance(data, dict) else ""
        props = await self.model_props()
        # A client's template is code: it renders in a child process, off the event
        # loop, and the child is killed if it outlives the deadline (`TEMPLATE_SECONDS`).
        prompt = await default_runner().render(
            request.chat_template,
            messages,
            bos_token=str(props.get("bos_token") or ""),
            eos_token=str(props.get("eos_token") or ""),
            extra=request.chat_template_kwargs,
            param="chat_template",
        )
        if not prompt.strip():
            raise InvalidRequestError(
                "chat_template rendered an empty prompt; the model needs something to read",
                param="chat_template",
            )
        return prompt

    async def model_props(self) -> dict[str, Any]:
        """The worker's ``/props`` (BOS and EOS text, template), once per worker."""
        generation = self.supervisor.generation
        if self._props is None or self._props[0] != generation:
            data = await self.call(UpstreamRequest("GET", self.url("/props"), self.headers()))
            self._props = (generation, data if isinstance(data, dict) else {})
        return self._props[1]

    async def count_tokens(self, prompt: str) -> int | None:
        """How many tokens *prompt* is, by the model's own tokenizer."""
        body = {"content": prompt, "add_special": False}
        data = await self.call(UpstreamRequest("POST", self.url("/tokenize"), self.headers(), body))
        tokens = data.get("tokens") if isinstance(data, dict) else None
        return len(tokens) if isinstance(tokens, list) else None

    async def tokenize(self, text: str) -> list[int]:
        """The model's token ids of *text* (no BOS added)."""
        body = {"content": text, "add_special": False}
        data = await self.call(UpstreamRequest("POST", self.url("/tokenize"), self.headers(), body))
        tokens = data.get("tokens") if isinstance(data, dict) else None
        return [t for t in tokens if type(t) is int] if isinstance(tokens, list) else []

    async def detokenize(self, ids: list[int]) -> str:
        """The text of the token *ids*."""
        body = {"tokens": ids}
        url = self.url("/detokenize")
        data = await self.call(UpstreamRequest("POST", url, self.headers(), body))
        content = data.get("content") if isinstance(data, dict) else None
        return content if isinstance(content, str) else ""

    async def metrics(self) -> dict[str, float]:
        """The worker's own gauges (``llamacpp:requests_processing`` and the rest)."""
        probe = UpstreamRequest("GET", self.url("/metrics"), self.headers())
        status, _, body = await self.transport.send(probe, self.connection.name, 10, [])
        if status != 200:
            raise UpstreamError(f"the engine's metrics answered {status}")
        gauges: dict[str, float] = {}
        for line in body.decode("utf-8", errors="replace").splitlines():
            name, _, value = line.partition(" ")
            if name and not name.startswith("#"):
                try:
                    gauges[name] = float(value)
                except ValueError:
                    continue
        return gauges

    # --- answers -----------------------------------------------------------------------

    def _events(self, upstream: UpstreamRequest) -> AsyncIterator[SSEEvent]:
        return self.transport.stream_sse(
            upstream,
            self.connection.name,
            self.connection.timeout,
            [self.supervisor.token],
            stream_deadline=self.connection.stream_deadline,
            max_event_bytes=self.connection.max_event_bytes,
        )

    def parse_chat(self, data: Any, request: ChatRequest) -> ChatResponse:
        """The chat route's answer, with the alternatives the client asked for."""
        answer = self._openai.parse_response(data, request.model)
        for choice in answer.choices:
            trim_alternatives(choice.logprobs, request.top_logprobs or 0)
        return answer

    async def chat_chunks(
        self, upstream: UpstreamRequest, request: ChatRequest
    ) -> AsyncIterator[ChatChunk]:
        """The chat route's stream, as our chunks."""
        reader = self._openai.reader(request)
        events = self._events(upstream)
        # The role chunks go out at once, before the worker's queue gives this request
        # its turn: a client sees its stream open even while it waits. The worker's own
        # role chunks are then left out, and every chunk carries one id.
        cid, created = new_completion_id(), int(time.time())
        for index in range(request.n or 1):
            role = ChunkChoice(index, Delta(role="assistant", content=""))
            yield ChatChunk(cid, created, request.model, [role])
        async for event in events:
            for chunk in reader.feed(event):
                chunk.id, chunk.created, chunk.model = cid, created, request.model
                chunk.choices = [c for c in chunk.choices if not role_only(c)]
                for choice in chunk.choices:
                    trim_alternatives(choice.logprobs, request.top_logprobs or 0)
                usage, chunk.usage = chunk.usage, None
                if chunk.choices:
                    yield chunk
                if usage is not None:
                    yield ChatChunk(cid, created, request.model, [], usage)
            if reader.done:
                break
        if not reader.finished:
            raise UpstreamError(
                "the engine's stream ended before the answer finished",
                code="upstream_stream_broken",
            )

    async def native_chunks(
        self, upstream: UpstreamRequest, request: ChatRequest
    ) -> AsyncIterator[ChatChunk]:
        """The native ``/completion`` stream, as chat chunks; usage last."""
        stream = CompletionStream(request)
        events = self._events(upstream)
        async for event in events:
            try:
                data = orjson.loads(event.data)
            except orjson.JSONDecodeError:
                raise UpstreamError(
                    "the engine sent a stream event that is not JSON",
                    code="bad_upstream_response",
                ) from None
            for chunk in stream.feed(data):
                yield chunk
            if stream.finished:
                break
        if not stream.finished or stream.usage is None:
            raise UpstreamError(
                "the engine's stream ended before the answer finished",
                code="upstream_stream_broken",
            )
        yield ChatChunk(stream.id, stream.created, request.model, [], stream.usage)
