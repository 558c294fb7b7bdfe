"""Source ``local``: chat requests answered by the embedded engine's worker process.

The worker (`chatgate.engine.supervisor`) is llama.cpp's server in a child process;
this backend reaches it over loopback through the shared transport, like any other
upstream, so the gateway's event loop never tokenizes, renders or samples. When the
worker dies, requests in flight get a 503 ``engine_unavailable`` (an error event once
a stream has started), and new ones wait for its replacement.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import orjson

from chatgate.adapters import fanout
from chatgate.adapters.base import refuse_or_drop, set_fields
from chatgate.adapters.engine_wire import (
    CompletionStream,
    chat_body,
    completion_body,
    logit_bias,
    new_completion_id,
    parse_completion,
    template_message,
    trim_alternatives,
)
from chatgate.adapters.upstream import UpstreamRequest
from chatgate.config import Connection
from chatgate.engine import EngineUnavailableError, Supervisor, tunes_threads, worker_settings
from chatgate.engine.grammar import OutputContract, contract_for
from chatgate.engine.tuning import BatchThreadTuner, read_times
from chatgate.errors import (
    ChatgateError,
    ContextLengthError,
    GatewayTimeoutError,
    InvalidRequestError,
    OverloadedError,
    UnsupportedParameterError,
    UpstreamError,
)
from chatgate.prompt.chat_template import render_chat_template
from chatgate.sources import Source
from chatgate.transport import Transport
from chatgate.types import (
    ChatChunk,
    ChatRequest,
    ChatResponse,
    ChunkChoice,
    Delta,
    TextPart,
)

SUPPORTED = frozenset(
    {
        "model",
        "messages",
        "stream",
        "stream_options",
        "max_tokens",
        "max_completion_tokens",
        "temperature",
        "top_p",
        "top_k",
        "stop",
        "seed",
        "n",
        "presence_penalty",
        "frequency_penalty",
        "logit_bias",
        "logprobs",
        "top_logprobs",
        "response_format",
        "user",
        "parallel_tool_calls",
        "prompt_post_processing",
        "guided_json",
        "guided_regex",
        "guided_choice",
        "guided_grammar",
        "guided_decoding_backend",
        "include_stop_str_in_output",
        "best_of",
        "chat_template",
        "chat_template_kwargs",
    }
)
# A constrained output that fails its final check (llama.cpp's schema conversion covers
# a subset of JSON Schema) is generated again with another seed this many times.
CONSTRAINED_RETRIES = 2
TEMPLATE_SECONDS = 2.0  # the longest a request's own chat_template may take to render
DEATH_GRACE = 2.0  # seconds to notice that a broken connection was the worker dying
WATCH_EVERY = 5.0  # seconds between the watchdog's probes of a serving worker
BROKEN = ("upstream_unreachable", "upstream_stream_broken")


class LocalBackend:
    """The embedded llama.cpp engine behind the chat-completions interface."""

    def __init__(self, connection: Connection, transport: Transport | None = None) -> None:
        self.connection = connection
        self.transport = transport or Transport()
        self.supervisor = Supervisor(lambda: worker_settings(connection))
        self._props: tuple[int, dict[str, Any]] | None = None
        self._inflight = 0
        self._watchdog: asyncio.Task[None] | None = None
        from chatgate.adapters.openai_chat import OpenAIChatAdapter

        # The worker answers its chat route in OpenAI's shape: that adapter reads it.
        self._openai = OpenAIChatAdapter(connection, _ENGINE_SOURCE, env={})

    # --- the Backend protocol --------------------------------------------------------

    def models(self) -> list[str]:
        """The one model this connection serves."""
        return [self.connection.model_alias]

    def unsupported(self, request: ChatRequest) -> list[str]:
        """Parameters the engine cannot honour; tools are refused unless disabled."""
        names = [n for n in set_fields(request) if n not in SUPPORTED]
        if request.tools and request.tool_choice == "none":
            names = [n for n in names if n not in ("tools", "tool_choice")]
        for message in request.messages:
            if isinstance(message.content, list) and any(
                not isinstance(p, TextPart) for p in message.content
            ):
                raise UnsupportedParameterError(
                    "the embedded model reads text only; images and audio need a "
                    "connection to a multimodal model",
                    param="messages",
                )
        if request.logit_bias:
            logit_bias(request)  # a key that is not a token id is a 400 now
        limit = request.completion_limit
        if limit is not None and limit >= self.connection.context_size:
            raise ContextLengthError(
                f"this model's maximum context length is {self.connection.context_size} "
                f"tokens per sequence, but max_tokens asks for {limit}; lower max_tokens",
                param="messages",
            )
        return refuse_or_drop(names, self.connection, "the embedded engine")

    async def start(self, progress: Callable[[str], None] | None = None) -> None:
        """Start the worker, wait until its model is loaded, and watch it from then on."""
        await self.supervisor.start(progress)
        watching = self.connection.engine_watchdog > 0 or tunes_threads(self.connection)
        if self._watchdog is None and watching:
            self._watchdog = asyncio.get_running_loop().create_task(self._watch())

    async def _watch(self) -> None:
        """Every few seconds: follow the machine's load with the batch threads, and kill
        a worker whose main loop stopped answering (a native hang; the supervisor then
        starts another). ``/metrics`` is answered by that loop, so a worker that cannot
        answer it within ``engine_watchdog`` seconds is stuck."""
        limit = self.connection.engine_watchdog
        tuner = BatchThreadTuner() if tunes_threads(self.connection) else None
        while True:
            await asyncio.sleep(min(WATCH_EVERY, limit) if limit > 0 else WATCH_EVERY)
            if not self.supervisor.serving or self.supervisor.base_url is None:
                if tuner is not None:
                    tuner.forget()
                continue
            if tuner is not None:
                self._retune(tuner)
            if limit <= 0:
                continue
            generation = self.supervisor.generation
            probe = UpstreamRequest("GET", self._url("/metrics"), self._headers())
            try:
                await self.transport.send(probe, self.connection.name, limit, [])
            except GatewayTimeoutError:
                if self.supervisor.generation == generation and self.supervisor.serving:
                    self.supervisor.hung(limit)
            except ChatgateError:
                pass  # a dying worker: the supervisor sees the exit itself

    def status(self) -> dict[str, Any]:
        """Worker state, restarts and queue figures (no I/O)."""
        parallel = self.connection.parallel
        return {
            "source": "local",
            "status": "ok" if self.supervisor.state == "ready" else self.supervisor.state,
            "loaded": self.supervisor.state == "ready",
            "model": self.connection.model_alias,
            "slots": parallel,
            "busy": min(self._inflight, parallel),
            "waiting": max(0, self._inflight - parallel),
            **self.supervisor.status(),
        }

    async def engine_metrics(self) -> dict[str, float]:
        """The worker's own gauges (``llamacpp:requests_processing`` and the rest)."""
        await self.supervisor.ready()
        probe = UpstreamRequest("GET", self._url("/metrics"), self._headers())
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

    def _retune(self, tuner: BatchThreadTuner) -> None:
        target = tuner.observe(read_times(self.supervisor.pid))
        current = self.supervisor.settings.threads_batch
        if target is not None and target != current and self._inflight == 0:
            self.supervisor.retune(target)
            tuner.forget()

    async def close(self) -> None:
        """Stop the watchdog and the worker."""
        if self._watchdog is not None:
            self._watchdog.cancel()
            try:
                await self._watchdog
            except asyncio.CancelledError:
                pass
            self._watchdog = None
        await self.supervisor.close()

    async def list_models(self, *, refresh: bool = False) -> dict[str, Any]:
        """The one model, named by ``model_alias``."""
        return {
            "connection": self.connection.name,
            "models": self.models(),
            "upstream": [],
            "manual": [],
            "note": None,
        }

    async def check_status(self) -> dict[str, Any]:
        """Starts the worker if needed; its state, and its queue as the worker sees it."""
        gauges = await self.engine_metrics()
        return {
            "connection": self.connection.name,
            **self.status(),
            "worker_processing": int(gauges.get("llamacpp:requests_processing", 0)),
            "worker_deferred": int(gauges.get("llamacpp:requests_deferred", 0)),
        }

    async def send_test(self, model: str | None = None) -> dict[str, Any]:
        """A real "Hi" through the engine (free: it runs on this machine)."""
        request = ChatRequest.model_validate(
            {
                "model": f"{self.connection.name}/{model or self.connection.model_alias}",
                "messages": [{"role": "user", "content": "Hi"}],
                "max_tokens": 16,
            }
        )
        started = time.perf_counter()
        answer = await self.chat(request)
        return {
            "connection": self.connection.name,
            "model": self.connection.model_alias,
            "ok": True,
            "reply": answer.text,
            "latency_ms": round((time.perf_counter() - started) * 1000, 1),
            "usage": answer.usage.to_dict(),
            "billed": False,
            "billing_note": "the embedded model runs on this machine; nothing is billed",
        }

    async def preview(self, request: ChatRequest) -> dict[str, Any]:
        """The worker request, and the prompt text the model would read."""
        self.unsupported(request)
        await self.supervisor.ready()
        contract = contract_for(request)
        prompt = await self._prompt(request)
        if self._uses_text_route(request):
            upstream = self._completion_request(request, prompt, contract)
        else:
            upstream = self._chat_request(request, contract)
        tokens = await self._count_tokens(prompt)
        shown = upstream.preview([self.supervisor.token])
        shown["url"] = "engine-worker://" + upstream.url.split("/", 3)[-1]
        shown["headers"] = {}
        return {
            "connection": self.connection.name,
            "source": "local",
            **shown,
            "prompt": prompt,
            "prompt_tokens": tokens,
            "engine": self.supervisor.status(),
        }

    # --- requests ----------------------------------------------------------------------

    def _uses_text_route(self, request: ChatRequest) -> bool:
        return request.chat_template is not None or bool(request.include_stop_str_in_output)

    def _url(self, path: str) -> str:
        if self.supervisor.base_url is None:
            raise self.supervisor.unavailable()
        return self.supervisor.base_url + path

    def _headers(self) -> dict[str, str]:
        return {
            "Content-Type": "application/json",
            "Authorization": f"Bearer {self.supervisor.token}",
        }

    def _chat_request(
        self, request: ChatRequest, contract: OutputContract | None, n: int | None = None
    ) -> UpstreamRequest:
        body = chat_body(request, contract, n)
        return UpstreamRequest(
            "POST", self._url("/v1/chat/completions"), self._headers(), body, bool(request.stream)
        )

    def _completion_request(
        self, request: ChatRequest, prompt: str, contract: OutputContract | None
    ) -> UpstreamRequest:
        body = completion_body(request, prompt, contract)
        return UpstreamRequest(
            "POST", self._url("/completion"), self._headers(), body, bool(request.stream)
        )

    async def _call(self, upstream: UpstreamRequest) -> Any:
        generation = self.supervisor.generation
        try:
            return await self.transport.send_json(
                upstream, self.connection.name, self.connection.timeout, [self.supervisor.token]
            )
        except ChatgateError as exc:
            raise await self._explain(exc, generation) from None

    async def _explain(self, exc: ChatgateError, generation: int) -> ChatgateError:
        """The error a failed worker call means to the client."""

        if isinstance(exc, UpstreamError) and exc.code in BROKEN:
            # A broken connection: most likely the worker died. Give the supervisor a
            # moment to see the exit, then say so (503), rather than a bare 502.
            deadline = time.monotonic() + DEATH_GRACE
            while time.monotonic() < deadline:
                if self.supervisor.generation != generation or self.supervisor.state != "ready":
                    return self.supervisor.unavailable()
                await asyncio.sleep(0.02)
        if isinstance(exc, InvalidRequestError) and "exceeds the available context" in exc.message:
            return ContextLengthError(
                f"this model's maximum context length is {self.connection.context_size} "
                "tokens per sequence, and the request does not fit (messages plus "
                "max_tokens); shorten the messages or max_tokens",
                param="messages",
            )
        return exc

    def _admit(self, request: ChatRequest) -> int:
        """Count the sequences *request* takes; past the queue's end it is a 503."""
        weight = max(request.n or 1, request.best_of or 1)
        limit = self.connection.parallel + self.connection.max_queue
        if self._inflight + weight > max(limit, weight):
            raise OverloadedError(
                f"the embedded engine is busy: {self._inflight} sequences running or "
                f"waiting (parallel = {self.connection.parallel}, max_queue = "
                f"{self.connection.max_queue}); retry shortly",
                headers={"Retry-After": "1"},
            )
        self._inflight += weight
        return weight

    async def _prompt(self, request: ChatRequest) -> str:
        """The prompt text: the request's own template, else the model's (in the worker)."""
        messages = [template_message(m) for m in request.messages]
        if request.chat_template is None:
            body: dict[str, Any] = {"messages": messages}
            if request.chat_template_kwargs:
                body["chat_template_kwargs"] = request.chat_template_kwargs
            data = await self._call(
                UpstreamRequest("POST", self._url("/apply-template"), self._headers(), body)
            )
            return str(data.get("prompt", "")) if isinstance(data, dict) else ""
        props = await self._model_props()
        template = request.chat_template

        def render() -> str:
            return render_chat_template(
                template,
                messages,
                bos_token=str(props.get("bos_token") or ""),
                eos_token=str(props.get("eos_token") or ""),
                extra=request.chat_template_kwargs,
                param="chat_template",
            )

        # A client's template is code: render it off the event loop, within a deadline.
        try:
            async with asyncio.timeout(TEMPLATE_SECONDS):
                prompt = await asyncio.to_thread(render)
        except TimeoutError:
            raise InvalidRequestError(
                f"chat_template took longer than {TEMPLATE_SECONDS:g} s to render",
                param="chat_template",
            ) from None
        if not prompt.strip():
            raise InvalidRequestError(
                "chat_template rendered an empty prompt; the model needs something to read",
                param="chat_template",
            )
        return prompt

    async def _model_props(self) -> dict[str, Any]:
        """The worker's ``/props`` (BOS and EOS text, template), once per worker."""
        generation = self.supervisor.generation
        if self._props is None or self._props[0] != generation:
            data = await self._call(UpstreamRequest("GET", self._url("/props"), self._headers()))
            self._props = (generation, data if isinstance(data, dict) else {})
        return self._props[1]

    async def _count_tokens(self, prompt: str) -> int | None:
        body = {"content": prompt, "add_special": False}
        data = await self._call(
            UpstreamRequest("POST", self._url("/tokenize"), self._headers(), body)
        )
        tokens = data.get("tokens") if isinstance(data, dict) else None
        return len(tokens) if isinstance(tokens, list) else None

    # --- answers ----------------------------------------------------------------------

    async def chat(self, request: ChatRequest) -> ChatResponse:
        """One whole answer; a constrained one is checked and, if it fails, made again."""
        if request.stream:
            request = request.without("stream", "stream_options")
        contract = contract_for(request)
        weight = self._admit(request)
        try:
            await self.supervisor.ready()
            broken = ""
            for attempt in range(CONSTRAINED_RETRIES + 1):
                tried = (
                    request
                    if attempt == 0 or request.seed is None
                    else request.model_copy(update={"seed": request.seed + 1000 * attempt})
                )
                answer = await self._answer_once_more_if_restarted(tried, contract)
                broken = "" if contract is None else _broken(answer, contract)
                if not broken:
                    return answer
            assert contract is not None
            raise UpstreamError(
                f"{broken} (the {contract.param} constraint, after "
                f"{CONSTRAINED_RETRIES + 1} attempts); raise max_tokens or simplify it",
                code="invalid_model_output",
            )
        finally:
            self._inflight -= weight

    async def _answer_once_more_if_restarted(
        self, request: ChatRequest, contract: OutputContract | None
    ) -> ChatResponse:
        """`_answer`, asked once more of the next worker if the worker died under it:
        nothing reached the client yet, so nothing is lost or repeated."""
        try:
            return await self._answer(request, contract)
        except EngineUnavailableError:
            await self.supervisor.ready()
            return await self._answer(request, contract)

    async def _answer(self, request: ChatRequest, contract: OutputContract | None) -> ChatResponse:
        n = request.n or 1
        if (request.best_of or 1) > n:
            # Candidates as separate requests (seed + i): the same ones a client would
            # get by asking for each alone.
            return await fanout.best_of(
                request, lambda r: self._answer(r, contract), native_n=False
            )
        if n > 1 and (self._uses_text_route(request) or n > self.connection.parallel):
            return await fanout.gather(request, lambda r: self._answer(r, contract))
        if self._uses_text_route(request):
            prompt = await self._prompt(request)

            async def one(single: ChatRequest) -> ChatResponse:
                body = self._completion_request(single, prompt, contract)
                return parse_completion(await self._call(body), single)

            answer = await one(request)
        else:
            data = await self._call(self._chat_request(request, contract))
            answer = self._openai.parse_response(data, request.model)
            for choice in answer.choices:
                trim_alternatives(choice.logprobs, request.top_logprobs or 0)
        answer.model = request.model
        return answer

    async def stream(self, request: ChatRequest) -> AsyncIterator[ChatChunk]:
        """Stream the answer; a constrained one is checked before its finish chunk."""
        contract = contract_for(request)
        weight = self._admit(request)
        try:
            await self.supervisor.ready()
            n = request.n or 1
            if n > 1 and (self._uses_text_route(request) or n > self.connection.parallel):
                source = fanout.interleave(request, lambda r: self._stream_one(r, contract))
            else:
                source = self._stream_one(request, contract)
            async for chunk in source:
                yield chunk
        finally:
            self._inflight -= weight

    async def _stream_one(
        self, request: ChatRequest, contract: OutputContract | None
    ) -> AsyncIterator[ChatChunk]:
        generation = self.supervisor.generation
        wants_usage = bool(request.stream_options and request.stream_options.include_usage)
        texts: dict[int, list[str]] = {}
        try:
            if self._uses_text_route(request):
                prompt = await self._prompt(request)
                upstream = self._completion_request(request, prompt, contract)
                chunks = self._native_chunks(upstream, request)
            else:
                chunks = self._chat_chunks(self._chat_request(request, contract), request)
            async for chunk in chunks:
                if chunk.usage is not None and not chunk.choices:
                    if wants_usage:
                        yield chunk
                    continue
                for choice in chunk.choices:
                    if choice.delta.content:
                        texts.setdefault(choice.index, []).append(choice.delta.content)
                    if contract is not None and choice.finish_reason == "stop":
                        contract.check("".join(texts.get(choice.index, [])))
                yield chunk
        except ChatgateError as exc:
            raise await self._explain(exc, generation) from None

    async def _chat_chunks(
        self, upstream: UpstreamRequest, request: ChatRequest
    ) -> AsyncIterator[ChatChunk]:
        reader = self._openai.reader(request)
        events = self.transport.stream_sse(
            upstream, self.connection.name, self.connection.timeout, [self.supervisor.token]
        )
        # The role chunks go out at once, before the worker's queue gives this request
        # its turn: a client sees its stream open even while it waits. The worker's own
        # role chunks are then left out, and every chunk carries one id.
        cid, created = new_completion_id(), int(time.time())
        for index in range(request.n or 1):
            yield ChatChunk(cid, created, request.model, [_role(index)])
        async for event in events:
            for chunk in reader.feed(event):
                chunk.id, chunk.created, chunk.model = cid, created, request.model
                chunk.choices = [c for c in chunk.choices if not _role_only(c)]
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

    async def _native_chunks(
        self, upstream: UpstreamRequest, request: ChatRequest
    ) -> AsyncIterator[ChatChunk]:
        stream = CompletionStream(request)
        events = self.transport.stream_sse(
            upstream, self.connection.name, self.connection.timeout, [self.supervisor.token]
        )
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


def _role(index: int) -> ChunkChoice:
    return ChunkChoice(index, Delta(role="assistant", content=""))


def _role_only(choice: ChunkChoice) -> bool:
    delta = choice.delta
    return (
        delta.role is not None
        and not delta.content
        and not delta.reasoning_content
        and not delta.tool_calls
        and choice.finish_reason is None
        and choice.logprobs is None
    )


def _broken(answer: ChatResponse, contract: OutputContract) -> str:
    """Why a finished choice breaks the contract; empty when every one keeps it (a
    choice cut short is let through, flagged by ``finish_reason: "length"``, as OpenAI
    does)."""
    for choice in answer.choices:
        if choice.finish_reason == "length":
            continue
        try:
            contract.check(choice.message.content or "")
        except UpstreamError as exc:
            return exc.message
    return ""


_ENGINE_SOURCE = Source(
    id="local",
    display_name="the embedded engine",
    kind="embedded",
    adapter="openai_chat",
    default_base_url="http://127.0.0.1",
    key_required=False,
)
