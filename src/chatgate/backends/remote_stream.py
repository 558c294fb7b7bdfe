"""How `RemoteBackend` streams: a queued job's progress while it waits, the upstream's
events read into chunks, a JSON schema in the form the server takes, and the usage
chunk a client asked for even from an upstream that sends none."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from typing import TYPE_CHECKING, Any, TypeVar, cast

import orjson

from chatgate.adapters import guided
from chatgate.adapters.wire import StreamReader, WireAdapter
from chatgate.answers import as_chunks
from chatgate.backends.remote_ops import ConnectionOperations
from chatgate.backends.schema_forms import REFUSED, SchemaForms, refuses_schema
from chatgate.errors import NotFoundError, UpstreamError
from chatgate.exchange.timeouts import Timeouts
from chatgate.output import contract_for
from chatgate.plan import Attempt, OutputPlan
from chatgate.types import ChatChunk, ChatRequest, ChatResponse, Delta, Usage
from chatgate.upstream import UpstreamRequest

if TYPE_CHECKING:
    from chatgate.backends.base import Backend

# What a parser raises when an upstream's answer has the wrong shape somewhere the
# parser did not look first: the answer is a lie, never a crash of the gateway.
MISSHAPEN = (TypeError, KeyError, AttributeError, IndexError, ValueError)
T = TypeVar("T")


class Streaming(ConnectionOperations):
    """Mixed into `chatgate.backends.remote.RemoteBackend`: its streams. The methods
    below the attributes are `RemoteBackend`'s, named here for the type checker."""

    forms: SchemaForms
    stream_timeouts: float | Timeouts
    _authorizes: bool
    _looks_up: bool

    async def chat(
        self, attempt: Attempt, progress: Callable[[str], None] | None = None
    ) -> ChatResponse:
        """One whole answer (`RemoteBackend.chat`)."""
        raise NotImplementedError

    async def _authorize(self) -> None:
        raise NotImplementedError

    async def _look_up(self, request: ChatRequest) -> None:
        raise NotImplementedError

    def _build(
        self, request: ChatRequest, dropped: tuple[str, ...], adapter: WireAdapter | None = None
    ) -> UpstreamRequest:
        raise NotImplementedError

    def _misshapen(self, exc: Exception) -> UpstreamError:
        raise NotImplementedError

    async def _waiting(self, attempt: Attempt) -> AsyncGenerator[ChatChunk | ChatResponse, None]:
        """A queued job's progress as comment chunks while it waits, then its answer. A
        client that leaves closes this: the job is cancelled (and withdrawn upstream)."""
        said: asyncio.Queue[str] = asyncio.Queue()
        answer = asyncio.ensure_future(self.chat(attempt, said.put_nowait))
        model = attempt.request.model
        try:
            while not answer.done():
                heard = asyncio.ensure_future(said.get())
                await asyncio.wait({answer, heard}, return_when=asyncio.FIRST_COMPLETED)
                if heard.done():
                    yield ChatChunk("queued", int(time.time()), model, comment=heard.result())
                else:
                    heard.cancel()
            yield answer.result()
        finally:
            if not answer.done():
                answer.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await answer

    async def _stream_one(
        self, request: ChatRequest, dropped: tuple[str, ...]
    ) -> AsyncIterator[ChatChunk]:
        if self._authorizes:
            await self._authorize()
        if self._looks_up:
            await self._look_up(request)
        forms = self.forms.forms(request)
        for position, form in forms:
            sent = request if form is None else guided.in_form(request, form)
            if form == "none":
                # Unconstrained: the answer is checked whole before any of it is sent.
                async for chunk in self._checked_whole(request, sent, dropped):
                    yield chunk
                self.forms.worked(position, form, forms)
                return
            try:
                events, first = await self._opened(sent, dropped)
            except REFUSED as exc:
                if form is None or position == forms[-1][0] or not refuses_schema(exc):
                    raise
                self.forms.refused(form, exc)
                continue
            self.forms.worked(position, form, forms)
            break
        reader = self.adapter.reader(sent)
        try:
            async for chunk in self._chunks(_after(first, events), reader, sent):
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
        self, events: AsyncIterator[Any], reader: StreamReader, request: ChatRequest
    ) -> AsyncIterator[ChatChunk]:
        """The chunks of a stream. A client that asked for usage gets a usage chunk
        even from an upstream that sends none (llama_cpp.server ignores
        ``stream_options``): then counted by chatgate (`_counted_usage`)."""
        wants_usage = bool(request.stream_options and request.stream_options.include_usage)
        reported = False
        last: ChatChunk | None = None
        pieces = 0  # chunks that carried output: one token each on llama.cpp's servers
        async for event in events:
            for chunk in self._read(reader, event):
                usage = chunk.usage
                if usage is not None and chunk.choices:
                    chunk.usage = None  # OpenAI sends usage in a chunk of its own
                if chunk.choices:
                    pieces += sum(1 for choice in chunk.choices if _carries_output(choice.delta))
                    last = chunk
                    yield chunk
                if usage is not None:
                    reported = True
                    if wants_usage:
                        yield ChatChunk(
                            chunk.id,
                            chunk.created,
                            chunk.model,
                            [],
                            usage,
                            chunk.system_fingerprint,
                        )
            if reader.done:
                break
        if wants_usage and not reported and last is not None and reader.finished:
            usage = self._counted_usage(request, pieces)
            yield ChatChunk(last.id, last.created, last.model, [], usage, last.system_fingerprint)

    def _read(self, reader: StreamReader, event: Any) -> list[ChatChunk]:
        try:
            return reader.feed(event)
        except MISSHAPEN as exc:
            raise self._misshapen(exc) from None

    async def _opened(
        self, request: ChatRequest, dropped: tuple[str, ...]
    ) -> tuple[AsyncGenerator[Any, None], Any]:
        """The stream of *request*, open, and its first event (None for an empty one):
        an error answer is raised here, before anything is yielded, so it can be asked
        again (at ``/v1``, or with the schema in another form)."""

        async def first(adapter: WireAdapter) -> tuple[AsyncGenerator[Any, None], Any]:
            upstream = self._build(request, dropped, adapter)
            opened = (
                self.transport.stream_sse
                if upstream.framing == "sse"
                else self.transport.stream_ndjson
            )
            events = opened(
                upstream,
                self.connection.name,
                self.stream_timeouts,
                self.secrets,
                stream_deadline=self.connection.stream_deadline,
                max_event_bytes=self.connection.max_event_bytes,
                on_cancel=adapter.cancel_request(request),
            )
            try:
                return events, await anext(events)
            except StopAsyncIteration:
                return events, None
            except BaseException:
                await events.aclose()
                raise

        try:
            return await first(self.adapter)
        except NotFoundError as exc:
            return await self._at_v1(exc, first)

    async def _checked_whole(
        self, request: ChatRequest, sent: ChatRequest, dropped: tuple[str, ...]
    ) -> AsyncIterator[ChatChunk]:
        """A stream of *sent* (unconstrained) made of one whole answer, checked against
        *request*'s contract first and asked for again up to ``guided_retries``."""
        output = OutputPlan(contract_for(request), True, True, self.connection.guided_retries)
        whole = Attempt(self.connection.name, cast("Backend", self), sent, dropped, output)
        opts = request.stream_options
        answer = await self.chat(whole)
        for chunk in as_chunks(answer, with_usage=bool(opts and opts.include_usage)):
            yield chunk

    def _counted_usage(self, request: ChatRequest, pieces: int) -> Usage:
        """Usage an upstream did not report: completion tokens are the chunks that
        carried output (llama.cpp's servers send one token per chunk; a server that
        sends several makes this a lower bound); prompt tokens an estimate, a token per
        four characters of the messages and tools sent, plus 3 a message and 3 for the
        reply's start (OpenAI's rule of thumb). docs/providers.md says so."""
        chars = sum(len(message.text()) for message in request.messages)
        if request.tools:
            chars += len(orjson.dumps([tool.model_dump(mode="json") for tool in request.tools]))
        return Usage(-(-chars // 4) + 3 * len(request.messages) + 3, pieces)


async def _after(first: Any, events: AsyncIterator[Any]) -> AsyncIterator[Any]:
    """*first* (unless None), then the rest of *events*."""
    if first is not None:
        yield first
    async for event in events:
        yield event


def _carries_output(delta: Delta) -> bool:
    return bool(delta.content or delta.reasoning_content or delta.tool_calls)
