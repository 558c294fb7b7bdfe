"""Source ``local``: chat requests answered by the embedded engine's worker process.

The worker (`chatgate.engine.supervisor`) is llama.cpp's server in a child process;
`chatgate.engine.client.WorkerClient` reaches it over loopback through the shared
transport, like any other upstream, so the gateway's event loop never tokenizes,
renders or samples. When the worker dies, requests in flight get a 503
``engine_unavailable`` (an error event once a stream has started), and new ones wait
for its replacement.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

from chatgate.adapters.engine_wire import SUPPORTED, logit_bias, parse_completion
from chatgate.backends import fanout
from chatgate.backends.base import refuse_or_drop, set_fields
from chatgate.backends.local_load import WorkerLoad
from chatgate.config import Connection
from chatgate.engine import EngineUnavailableError, Supervisor, worker_count, worker_settings
from chatgate.engine.client import WorkerClient
from chatgate.engine.grammar import enforced
from chatgate.engine.watch import watch
from chatgate.errors import (
    ChatgateError,
    ContextLengthError,
    UnsupportedParameterError,
    UpstreamError,
)
from chatgate.exchange.transport import Transport
from chatgate.output import OutputContract, contract_for
from chatgate.plan import FREE, Attempt, Fanout, OutputPlan
from chatgate.types import ChatChunk, ChatRequest, ChatResponse, TextPart

# A constrained output that fails its final check (the grammar covers a subset of JSON
# Schema) is generated again with another seed this many times.
CONSTRAINED_RETRIES = 2


class LocalBackend:
    """The embedded llama.cpp engine behind the chat-completions interface: a pool of
    worker processes (one per core by default), each request on the least busy one."""

    billed = False
    open_models = False

    def __init__(self, connection: Connection, transport: Transport | None = None) -> None:
        self.connection = connection
        self.transport = transport or Transport()
        count = worker_count(connection)
        self.workers = [
            WorkerClient(
                connection,
                Supervisor(lambda i=i: worker_settings(connection, i, count)),  # type: ignore[misc]
                self.transport,
            )
            for i in range(count)
        ]
        self.load = WorkerLoad(connection, self.workers)
        self._watchdogs: list[asyncio.Task[None]] = []

    # --- the Backend protocol --------------------------------------------------------

    def models(self) -> list[str]:
        """The one model this connection serves."""
        return [self.connection.engine.model_alias]

    def plan(self, request: ChatRequest, route: str) -> Attempt:
        """The parameters the engine cannot honour (tools are refused unless disabled),
        the grammar that enforces the output constraint, and ``n`` / ``best_of`` as
        one batch or as several requests."""
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
        if limit is not None and limit >= self.connection.engine.context_size:
            raise ContextLengthError(
                f"this model's maximum context length is {self.connection.engine.context_size} "
                f"tokens per sequence, but max_tokens asks for {limit}; lower max_tokens",
                param="messages",
            )
        dropped = refuse_or_drop(names, self.connection, "the embedded engine")
        contract = contract_for(request)
        output = (
            OutputPlan(enforced(contract), checked=True, retries=CONSTRAINED_RETRIES)
            if contract is not None
            else FREE
        )
        n = request.n or 1
        if (request.best_of or 1) > n:
            # Candidates as separate requests (seed + i): the same ones a client would
            # get by asking for each alone.
            fan = Fanout(candidates=request.best_of or 1)
        elif n > 1 and not self._fits_one_worker(request):
            fan = Fanout(copies=n)
        else:
            fan = Fanout()
        return Attempt(route, self, request, tuple(dropped), output, fan)

    async def start(self, progress: Callable[[str], None] | None = None) -> None:
        """Start every worker, wait until each has its model loaded, and watch them."""
        count = len(self.workers)
        started = time.perf_counter()
        if progress and count > 1:
            progress(f"starting {count} engine workers, one per core…")
        # Every worker has its say before a failure is raised: otherwise the others would
        # still be starting when the caller looks at the status.
        outcomes = await asyncio.gather(
            *(w.supervisor.start(progress if i == 0 else None) for i, w in enumerate(self.workers)),
            return_exceptions=True,
        )
        for outcome in outcomes:
            if isinstance(outcome, BaseException):
                raise outcome
        if progress and count > 1:
            progress(f"{count} engine workers ready in {time.perf_counter() - started:.1f} s")
        if not self._watchdogs and self.connection.engine.engine_watchdog > 0:
            loop = asyncio.get_running_loop()
            self._watchdogs = [loop.create_task(watch(w)) for w in self.workers]

    def status(self) -> dict[str, Any]:
        """Worker states, restarts and queue figures (no I/O)."""
        parallel = self.connection.engine.parallel
        each = [w.supervisor.status() for w in self.workers]
        states = [w.supervisor.state for w in self.workers]
        serving = states.count("ready")
        overall = "ready" if serving == len(states) else next(s for s in states if s != "ready")
        exits = [
            (w.supervisor.exited_at, e["last_exit"])
            for w, e in zip(self.workers, each, strict=True)
        ]
        return {
            "source": self.connection.source,
            "status": "ok" if serving else overall,
            "loaded": serving > 0,
            "model": self.connection.engine.model_alias,
            "slots": parallel,
            "busy": min(self.load.inflight, parallel),
            "waiting": max(0, self.load.inflight - parallel),
            "worker": overall,
            "serving": serving,
            "restarts": sum(e["restarts"] for e in each),
            "last_exit": max(exits, key=lambda pair: pair[0] or 0.0)[1],
            "threads": each[0]["threads"],
            "workers": each,
        }

    def terminate(self) -> None:
        """Stop every worker process at once (no event loop needed)."""
        for worker in self.workers:
            worker.supervisor.terminate()

    async def close(self) -> None:
        """Stop the watchdogs and the workers."""
        for task in self._watchdogs:
            task.cancel()
        await asyncio.gather(*self._watchdogs, return_exceptions=True)
        self._watchdogs = []
        await asyncio.gather(*(w.supervisor.close() for w in self.workers))

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
        """Starts the workers if needed; their state, and their queues as they see them."""
        processing = deferred = 0
        for worker in self.workers:
            await worker.supervisor.ready()
            gauges = await worker.metrics()
            processing += int(gauges.get("llamacpp:requests_processing", 0))
            deferred += int(gauges.get("llamacpp:requests_deferred", 0))
        return {
            "connection": self.connection.name,
            **self.status(),
            "worker_processing": processing,
            "worker_deferred": deferred,
        }

    async def preview(self, attempt: Attempt) -> dict[str, Any]:
        """The worker request, and the prompt text the model would read."""
        request, contract = attempt.request, attempt.output.contract
        worker = await self.ready_worker()
        prompt = await worker.prompt(request)
        if self._uses_text_route(request):
            upstream = worker.completion_request(request, prompt, contract)
        else:
            upstream = worker.chat_request(request, contract)
        tokens = await worker.count_tokens(prompt)
        shown = upstream.preview([worker.supervisor.token])
        shown["url"] = "engine-worker://" + upstream.url.split("/", 3)[-1]
        shown["headers"] = {}
        return {
            "connection": self.connection.name,
            "source": self.connection.source,
            **shown,
            "prompt": prompt,
            "prompt_tokens": tokens,
            "engine": worker.supervisor.status(),
        }

    # --- requests ----------------------------------------------------------------------

    def _uses_text_route(self, request: ChatRequest) -> bool:
        return (
            request.chat_template is not None
            or request.raw_prompt is not None
            or bool(request.include_stop_str_in_output)
        )

    async def ready_worker(self) -> WorkerClient:
        """The least busy worker, once it serves (for the tokenizer and previews)."""
        worker = self.workers[self.load.pick()]
        await worker.supervisor.ready()
        return worker

    def _fits_one_worker(self, request: ChatRequest) -> bool:
        """Whether *request*'s n choices go to one worker as one batch."""
        return not self._uses_text_route(request) and (request.n or 1) <= self.load.slots()

    # --- answers ----------------------------------------------------------------------

    async def chat(self, attempt: Attempt) -> ChatResponse:
        """One whole answer; a constrained one is checked and, if it fails, made again."""
        request = attempt.request
        if request.stream:
            request = request.without("stream", "stream_options")
        contract = attempt.output.contract
        weight = self.load.admit(request)
        try:
            broken = ""
            for tried in range(attempt.output.retries + 1):
                again = (
                    request
                    if tried == 0 or request.seed is None
                    else request.without(seed=request.seed + 1000 * tried)
                )
                answer = await self._answer(again, attempt)
                broken = "" if contract is None else _broken(answer, contract)
                if not broken:
                    return answer
            assert contract is not None
            raise UpstreamError(
                f"{broken} (the {contract.param} constraint, after "
                f"{attempt.output.retries + 1} attempts); raise max_tokens or simplify it",
                code="invalid_model_output",
            )
        finally:
            self.load.release(weight)

    async def _answer(self, request: ChatRequest, attempt: Attempt) -> ChatResponse:
        contract = attempt.output.contract
        if attempt.fanout.candidates:
            return await fanout.best_of(
                request, lambda r: self._on_a_worker(r, contract), native_n=False
            )
        if attempt.fanout.copies > 1:
            return await fanout.gather(request, lambda r: self._on_a_worker(r, contract))
        return await self._on_a_worker(request, contract)

    async def _on_a_worker(
        self, request: ChatRequest, contract: OutputContract | None
    ) -> ChatResponse:
        """One request on the least busy worker; asked once more (of another worker, or
        of the next one) if its worker died before it answered: nothing reached the
        client yet, so nothing is lost or repeated."""
        for attempt in (1, 2):
            with self.load.least_busy(request.n or 1) as worker:
                try:
                    await worker.supervisor.ready()
                    return await self._one(worker, request, contract)
                except EngineUnavailableError:
                    if attempt == 2:
                        raise
        raise AssertionError("unreachable")

    async def _one(
        self, worker: WorkerClient, request: ChatRequest, contract: OutputContract | None
    ) -> ChatResponse:
        if self._uses_text_route(request):
            upstream = worker.completion_request(request, await worker.prompt(request), contract)
            answer = parse_completion(await worker.call(upstream), request)
        else:
            data = await worker.call(await worker.chat_request_off_loop(request, contract))
            answer = worker.parse_chat(data, request)
        answer.model = request.model
        return answer

    async def stream(self, attempt: Attempt) -> AsyncIterator[ChatChunk]:
        """Stream the answer; a constrained one is checked before its finish chunk."""
        request, contract = attempt.request, attempt.output.contract
        weight = self.load.admit(request)
        try:
            if attempt.fanout.copies > 1:
                source = fanout.interleave(request, lambda r: self._stream_one(r, contract))
            else:
                source = self._stream_one(request, contract)
            async for chunk in source:
                yield chunk
        finally:
            self.load.release(weight)

    async def _stream_one(
        self, request: ChatRequest, contract: OutputContract | None
    ) -> AsyncIterator[ChatChunk]:
        wants_usage = bool(request.stream_options and request.stream_options.include_usage)
        texts: dict[int, list[str]] = {}
        with self.load.least_busy(request.n or 1) as worker:
            generation = worker.supervisor.generation
            try:
                await worker.supervisor.ready()
                generation = worker.supervisor.generation
                async for chunk in self._worker_chunks(worker, request, contract):
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
                raise await worker.explain(exc, generation) from None

    async def _worker_chunks(
        self, worker: WorkerClient, request: ChatRequest, contract: OutputContract | None
    ) -> AsyncIterator[ChatChunk]:
        if self._uses_text_route(request):
            prompt = await worker.prompt(request)
            upstream = worker.completion_request(request, prompt, contract)
            chunks = worker.native_chunks(upstream, request)
        else:
            upstream = await worker.chat_request_off_loop(request, contract)
            chunks = worker.chat_chunks(upstream, request)
        async for chunk in chunks:
            yield chunk


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
