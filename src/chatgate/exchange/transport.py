"""The one place that talks to upstreams: pooled HTTP clients and bounded stream readers.

Every failure leaves here as one of our errors, named after the connection, with every
secret masked: a refused connection or a broken answer is a 502, a timeout a 504, and
a non-2xx answer is classified by `classify_error` with the upstream's own message.

Everything an upstream sends is bounded: in time by `Timeouts` (connect, first byte,
each read, the total; a stream's total is its ``stream_deadline``), in size by
``max_response_bytes`` (a whole answer) and ``max_event_bytes`` (one SSE event or NDJSON
line). The stream parsers take byte chunks without any HTTP (`SSEParser`,
`NDJSONParser`) and look at each byte about once, however the stream is cut. Exchanges
that outlive one request (submit, poll, cancel) are in `chatgate.exchange.jobs`.

The client is pyreqwest (Rust's reqwest and hyper on a Tokio thread), chosen by
measurement over aiohttp, httpx and aiosonic (``docs/dependencies.md``): the lowest cost
per request one at a time, which is what a gateway adds to every call. Its timeouts
are set per client, hence one client per pair of them (`chatgate.exchange.pools`).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Callable, Iterable, Mapping
from datetime import timedelta
from functools import cache
from typing import TYPE_CHECKING, Any

import orjson

from chatgate.errors import GatewayTimeoutError, UpstreamError, redact
from chatgate.exchange.cancel import Cancels, at_end
from chatgate.exchange.errors import classify_error, is_connect_timeout, transport_failure
from chatgate.exchange.pools import Pool, Pools
from chatgate.exchange.streams import (
    DEFAULT_MAX_EVENT_BYTES,
    DEFAULT_MAX_RESPONSE_BYTES,
    DEFAULT_STREAM_DEADLINE,
    NDJSONParser,
    SSEParser,
    too_large,
)
from chatgate.exchange.timeouts import Clock, Phase, Timeouts, connect_expired
from chatgate.offload import off_loop
from chatgate.upstream import Job, SSEEvent, UpstreamRequest

if TYPE_CHECKING:
    from pyreqwest.client import Client
    from pyreqwest.request import RequestBuilder
    from pyreqwest.response import Response

# An error answer is read this far and no further: its message is cut to 1000
# characters anyway, and a 429 must keep its Retry-After however long its body.
# A whole answer this large is decoded in a thread.
DECODE_OFF_LOOP_BYTES = 1024 * 1024
# A stream read this large gives the event loop a turn before the next one.
YIELD_BYTES = 64 * 1024
ERROR_BODY_BYTES = 64 * 1024


@cache
def _failed() -> Any:
    """pyreqwest's exceptions, imported when an exchange first fails: an except clause
    is evaluated only then, so the happy path pays for no import statement."""
    from pyreqwest import exceptions

    return exceptions


class Transport:
    """Pooled pyreqwest clients, created on first use; one transport serves every
    connection."""

    def __init__(self) -> None:
        self._pools = Pools()
        self._cancels = Cancels(self._send_cancel)

    @property
    def client(self) -> Client:
        """The pool of the default `Timeouts`."""
        return self.pool(Timeouts()).client

    def pool(self, timeouts: Timeouts, total: float | None = None) -> Pool:
        """The client for *timeouts* (and a *total*), and which bounds it holds itself
        (`Pools.get`)."""
        return self._pools.get(timeouts, total)

    async def aclose(self) -> None:
        """Let the cancel requests under way finish, then close every pooled connection."""
        await self._cancels.drain()
        await self._pools.aclose()

    def _builder(
        self, client: Client, request: UpstreamRequest, clock: Clock, read_ahead: bool = False
    ) -> RequestBuilder:
        builder = client.request(request.method, request.url).headers(request.headers)
        if request.content is not None:
            builder = builder.body_bytes(request.content)
        elif request.body is not None:
            builder = builder.body_bytes(orjson.dumps(request.body))
        remaining = clock.remaining()
        if remaining is not None:
            # The client's own total: at the end it drops the request, even one whose
            # wait for a head we cancelled (see `chatgate.exchange.pools`).
            builder = builder.timeout(timedelta(seconds=remaining))
        if read_ahead:
            # The client's default: up to 64 KiB of body come with the head, which saves
            # a round trip to its thread per answer (measured: about a tenth of a small
            # answer over loopback). Only where the client holds every bound itself: to
            # ours, the reads of that body would look like the wait for the head.
            return builder
        # For a stream, read-ahead would also hold back events that have come.
        return builder.streamed_read_buffer_limit(0)

    async def send(
        self,
        request: UpstreamRequest,
        connection: str,
        timeout: float | Timeouts,
        secrets: Iterable[str],
        *,
        max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
    ) -> tuple[int, Mapping[str, str], bytes]:
        """Send and read the whole answer within *timeout* (a number: the whole answer
        within it; `Timeouts`: each bound); non-2xx answers are returned (their body cut
        to `ERROR_BODY_BYTES`), not raised. A 2xx body over *max_response_bytes* is a
        502 ``upstream_response_too_large``."""
        clock = Clock.of(timeout, "answer")
        return await self.exchange(request, connection, clock, secrets, max_response_bytes)

    async def send_json(
        self,
        request: UpstreamRequest,
        connection: str,
        timeout: float | Timeouts,
        secrets: Iterable[str],
        *,
        max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
    ) -> Any:
        """Send, raise for a non-2xx answer, and parse the JSON body."""
        clock = Clock.of(timeout, "answer")
        # *secrets* is read only on an error (it may be a live view: `LiveSecrets`).
        return await self.exchange_json(request, connection, clock, secrets, max_response_bytes)

    async def exchange_json(
        self,
        request: UpstreamRequest,
        connection: str,
        clock: Clock,
        secrets: Iterable[str],
        max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
    ) -> Any:
        """`send_json` on a clock of the caller's (a job's requests share one total)."""
        status, headers, body = await self.exchange(
            request, connection, clock, secrets, max_response_bytes
        )
        if not 200 <= status < 300:
            raise classify_error(status, body, headers, connection, secrets)
        try:
            if len(body) < DECODE_OFF_LOOP_BYTES:
                return orjson.loads(body)
            # Megabytes of JSON take tens of milliseconds: not on the event loop.
            return await off_loop(lambda: orjson.loads(body))
        except orjson.JSONDecodeError:
            snippet = redact(body[:200].decode("utf-8", errors="replace"), secrets)
            raise UpstreamError(
                f"connection '{connection}': the upstream answered {status} with a body that "
                f"is not JSON: {snippet!r}",
                code="bad_upstream_response",
            ) from None

    async def exchange(
        self,
        request: UpstreamRequest,
        connection: str,
        clock: Clock,
        secrets: Iterable[str],
        max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
    ) -> tuple[int, Mapping[str, str], bytes]:
        """`send` on a clock of the caller's."""
        if clock.remaining() == 0.0:
            raise clock.past_end(connection)
        pool = self.pool(clock.timeouts, clock.total)
        opened = False
        try:
            read_ahead = pool.holds_head and pool.holds_read
            streamed = self._builder(pool.client, request, clock, read_ahead).build_streamed()
            if pool.holds_head:  # the usual case: the client holds the bound itself
                clock.phase = "first_byte"
                response = await streamed.__aenter__()
            else:
                async with clock.wait("first_byte"):
                    response = await streamed.__aenter__()
            opened = True
            try:
                ok = 200 <= response.status < 300
                limit = max_response_bytes if ok else ERROR_BODY_BYTES
                body = await _read_body(response, limit, not ok, clock, pool.holds_read)
                if body is None:
                    raise too_large(connection, "answer", limit, secrets, "max_response_bytes")
                return response.status, response.headers, body
            finally:
                await streamed.__aexit__(None, None, None)
        except (TimeoutError, _failed().RequestTimeoutError) as exc:
            if not opened and isinstance(exc, _failed().ReadTimeoutError):
                clock.phase = "read"  # the head came; the body read ahead with it stalled
            raise _expired(exc, clock, pool, connection, request.url, list(secrets)) from None
        except _failed().PyreqwestError as exc:
            # A body error here means the head came and the body broke off.
            failed = _failed()
            opened = opened or isinstance(exc, failed.ReadError | failed.DecodeError)
            raise transport_failure(connection, request.url, exc, secrets, opened) from None

    def stream_sse(
        self,
        request: UpstreamRequest,
        connection: str,
        timeout: float | Timeouts,
        secrets: Iterable[str],
        *,
        stream_deadline: float = DEFAULT_STREAM_DEADLINE,
        max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES,
        on_cancel: UpstreamRequest | None = None,
    ) -> AsyncGenerator[SSEEvent, None]:
        """Open a stream and yield its events; a non-2xx answer raises as an ordinary
        error, a stream that breaks later as a 502. *timeout* (a number) bounds the wait
        for the first bytes and then each read, *stream_deadline* the whole stream; a
        `Timeouts` sets each bound (its total, if any, replaces the deadline). *on_cancel*
        is sent, best effort, when we stop before the upstream ended the stream: the
        consumer closed it or was cancelled, or one of our bounds passed."""
        secrets = list(secrets)
        parser = SSEParser(connection, max_event_bytes, secrets)
        clock = Clock.of(timeout, "stream", stream_deadline)
        return self._stream(request, connection, clock, secrets, parser, on_cancel)

    def stream_ndjson(
        self,
        request: UpstreamRequest,
        connection: str,
        timeout: float | Timeouts,
        secrets: Iterable[str],
        *,
        stream_deadline: float = DEFAULT_STREAM_DEADLINE,
        max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES,
        on_cancel: UpstreamRequest | None = None,
    ) -> AsyncGenerator[Any, None]:
        """`stream_sse` for a stream of JSON lines (Ollama's): yields each line parsed."""
        secrets = list(secrets)
        parser = NDJSONParser(connection, max_event_bytes, secrets)
        clock = Clock.of(timeout, "stream", stream_deadline)
        return self._stream(request, connection, clock, secrets, parser, on_cancel)

    async def _stream(
        self,
        request: UpstreamRequest,
        connection: str,
        clock: Clock,
        secrets: list[str],
        parser: SSEParser | NDJSONParser,
        on_cancel: UpstreamRequest | None,
    ) -> AsyncGenerator[Any, None]:
        pool = self.pool(clock.timeouts, clock.total)
        opened = False
        ended = False  # the upstream ended the stream: the body's end, or an error answer
        abandoned = False  # we stopped first: the consumer left, or a bound of ours passed
        try:
            streamed = self._builder(pool.client, request, clock).build_streamed()
            async with clock.wait("first_byte", held=pool.holds_head):
                response = await streamed.__aenter__()
            opened = True
            try:
                if not 200 <= response.status < 300:
                    ended = True
                    body = await _read_body(
                        response, ERROR_BODY_BYTES, True, clock, pool.holds_read
                    )
                    raise classify_error(
                        response.status, body or b"", response.headers, connection, secrets
                    )
                reader = response.body_reader
                phase: Phase = "first_byte"  # the first body bytes are still the first byte
                held = pool.holds_head
                while True:
                    # A silent upstream is a 504, not a hang; so is a dripping one.
                    async with clock.wait(phase, held=held):
                        data = await reader.read_chunk()
                    if data is None:
                        break
                    phase, held = "read", pool.holds_read
                    for item in parser.feed(memoryview(data)):
                        yield item
                    if len(data) >= YIELD_BYTES:
                        # Chunks the client already holds come back without a pass of
                        # the event loop: a 10 MB event would hold every other client.
                        await asyncio.sleep(0)
                ended = True
                for item in parser.finish():
                    yield item
            except GeneratorExit:
                if not ended and on_cancel is not None:
                    ended = await at_end(response)
                abandoned = not ended
                raise
            finally:
                await streamed.__aexit__(None, None, None)
        except asyncio.CancelledError:
            abandoned = not ended
            raise
        except (TimeoutError, _failed().RequestTimeoutError) as exc:
            abandoned = not ended
            raise _expired(exc, clock, pool, connection, request.url, secrets) from None
        except _failed().PyreqwestError as exc:
            failed = _failed()
            opened = opened or isinstance(exc, failed.ReadError | failed.DecodeError)
            raise transport_failure(connection, request.url, exc, secrets, opened) from None
        finally:
            if abandoned and on_cancel is not None:
                await self._cancels.fire(lambda: on_cancel, connection, secrets)

    async def run_job(
        self,
        job: Job,
        connection: str,
        timeouts: float | Timeouts,
        secrets: Iterable[str],
        *,
        max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
        on_progress: Callable[[str], None] | None = None,
    ) -> Any:
        """Submit *job*, poll it until it is finished, and return the last poll's JSON
        answer, telling *on_progress* how it stands meanwhile; see
        `chatgate.exchange.jobs.run_job`."""
        from chatgate.exchange.jobs import run_job

        return await run_job(
            self, job, connection, timeouts, list(secrets), max_response_bytes, on_progress
        )

    async def fire(
        self, make: Callable[[], UpstreamRequest | None], connection: str, secrets: list[str]
    ) -> None:
        """Send the cancel request *make* builds, best effort (`Cancels.fire`)."""
        await self._cancels.fire(make, connection, secrets)

    async def _send_cancel(
        self, request: UpstreamRequest, connection: str, timeouts: Timeouts, secrets: list[str]
    ) -> tuple[int, Mapping[str, str], bytes]:
        return await self.send(
            request, connection, timeouts, secrets, max_response_bytes=ERROR_BODY_BYTES
        )


async def _read_body(
    response: Response, limit: int, cut: bool, clock: Clock, held: bool
) -> bytes | None:
    """The body, at most *limit* bytes: cut there, or None when it is longer."""
    declared = response.headers.get("content-length")
    if declared is not None and declared.isdigit():
        if int(declared) <= limit and held:
            # One call reads the declared length: the client holds each of its reads to
            # `read`, and the whole to the total.
            clock.phase = "read"
            return bytes(await response.bytes())
        if int(declared) > limit and not cut:
            return None
    body = bytearray()
    reader = response.body_reader
    while len(body) <= limit:
        async with clock.wait("read", held=held):
            data = await reader.read_chunk()
        if data is None:
            return bytes(body)
        body += data
    return bytes(body[:limit]) if cut else None


def _expired(
    exc: Exception, clock: Clock, pool: Pool, connection: str, url: str, secrets: list[str]
) -> GatewayTimeoutError:
    """A timeout as our 504: the connector's own, or the clock's bound under way."""
    if is_connect_timeout(exc):
        return connect_expired(connection, url, pool.connect, secrets)
    return clock.expired(connection)
