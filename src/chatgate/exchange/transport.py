"""The one place that talks to upstreams: a pooled HTTP client and bounded stream readers.

Every failure leaves here as one of our errors, named after the connection, with every
secret masked: a refused connection or a broken answer is a 502, a timeout a 504, and
a non-2xx answer is classified by `classify_error` with the upstream's own message.

Everything an upstream sends is bounded: a whole answer by ``max_response_bytes``, one
stream event (SSE) or line (NDJSON) by ``max_event_bytes``, a stream's total time by
``stream_deadline`` besides the per-read ``timeout``. The stream parsers take byte chunks
without any HTTP (`SSEParser`, `NDJSONParser`) and look at each byte about once, however
the stream is cut.

The client is pyreqwest (Rust's reqwest and hyper on a Tokio thread), chosen by
measurement over aiohttp, httpx and aiosonic (``docs/dependencies.md``): the lowest cost
per request one at a time, which is what a gateway adds to every call.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable, Mapping
from datetime import timedelta
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import orjson

from chatgate.errors import GatewayTimeoutError, UpstreamError, redact
from chatgate.exchange.errors import classify_error
from chatgate.exchange.streams import (
    DEFAULT_MAX_EVENT_BYTES,
    DEFAULT_MAX_RESPONSE_BYTES,
    DEFAULT_STREAM_DEADLINE,
    NDJSONParser,
    SSEParser,
    too_large,
)
from chatgate.upstream import SSEEvent, UpstreamRequest

if TYPE_CHECKING:
    from pyreqwest.client import Client
    from pyreqwest.request import RequestBuilder
    from pyreqwest.response import Response

CONNECT_TIMEOUT = 10.0
# The defaults of the connection fields of the same names (chatgate.config.Connection).
# An error answer is read this far and no further: its message is cut to 1000
# characters anyway, and a 429 must keep its Retry-After however long its body.
ERROR_BODY_BYTES = 64 * 1024


class Transport:
    """A shared pyreqwest client, created on first use."""

    def __init__(self) -> None:
        self._client: Client | None = None
        self._timeouts: dict[float, timedelta] = {}

    @property
    def client(self) -> Client:
        """The pooled client (connections are reused across requests)."""
        if self._client is None:
            # Imported on first upstream use: `import chatgate` stays light.
            from pyreqwest.client import ClientBuilder

            self._client = (
                ClientBuilder()
                .connect_timeout(timedelta(seconds=CONNECT_TIMEOUT))
                .follow_redirects(False)
                .user_agent("chatgate")
                # No compression to undo: it costs time on every answer.
                .gzip(False)
                .brotli(False)
                .deflate(False)
                .zstd(False)
                .build()
            )
        return self._client

    async def aclose(self) -> None:
        """Close every pooled connection."""
        if self._client is not None:
            await self._client.close()
            self._client = None

    def _timeout(self, seconds: float) -> timedelta:
        cached = self._timeouts.get(seconds)
        if cached is None:
            cached = self._timeouts[seconds] = timedelta(seconds=seconds)
        return cached

    def _builder(self, request: UpstreamRequest) -> RequestBuilder:
        builder = self.client.request(request.method, request.url).headers(request.headers)
        if request.body is not None:
            builder = builder.body_bytes(orjson.dumps(request.body))
        return builder

    async def send(
        self,
        request: UpstreamRequest,
        connection: str,
        timeout: float,
        secrets: Iterable[str],
        *,
        max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
    ) -> tuple[int, Mapping[str, str], bytes]:
        """Send and read the whole answer within *timeout*; non-2xx answers are returned
        (their body cut to `ERROR_BODY_BYTES`), not raised. A 2xx body over
        *max_response_bytes* is a 502 ``upstream_response_too_large``."""
        from pyreqwest import exceptions as failed

        try:
            built = self._builder(request).timeout(self._timeout(timeout)).build_streamed()
            async with built as response:
                ok = 200 <= response.status < 300
                limit = max_response_bytes if ok else ERROR_BODY_BYTES
                body = await _read_body(response, limit, cut=not ok)
                if body is None:
                    raise too_large(connection, "answer", limit, secrets, "max_response_bytes")
                return response.status, response.headers, body
        except (TimeoutError, failed.RequestTimeoutError):
            raise _timeout(connection, timeout) from None
        except failed.PyreqwestError as exc:
            # A body error here means the head came and the body broke off.
            opened = isinstance(exc, failed.ReadError | failed.DecodeError)
            raise _failed(connection, request.url, exc, secrets, opened) from None

    async def send_json(
        self,
        request: UpstreamRequest,
        connection: str,
        timeout: float,
        secrets: Iterable[str],
        *,
        max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
    ) -> Any:
        """Send, raise for a non-2xx answer, and parse the JSON body."""
        status, headers, body = await self.send(
            request, connection, timeout, secrets, max_response_bytes=max_response_bytes
        )
        if not 200 <= status < 300:
            raise classify_error(status, body, headers, connection, secrets)
        try:
            return orjson.loads(body)
        except orjson.JSONDecodeError:
            snippet = redact(body[:200].decode("utf-8", errors="replace"), secrets)
            raise UpstreamError(
                f"connection '{connection}': the upstream answered {status} with a body that "
                f"is not JSON: {snippet!r}",
                code="bad_upstream_response",
            ) from None

    def stream_sse(
        self,
        request: UpstreamRequest,
        connection: str,
        timeout: float,
        secrets: Iterable[str],
        *,
        stream_deadline: float = DEFAULT_STREAM_DEADLINE,
        max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES,
    ) -> AsyncIterator[SSEEvent]:
        """Open a stream and yield its events; a non-2xx answer raises as an ordinary
        error, a stream that breaks later as a 502. *timeout* bounds the wait for the
        answer and then for each read; *stream_deadline* the whole stream (a 504)."""
        secrets = list(secrets)
        parser = SSEParser(connection, max_event_bytes, secrets)
        return self._stream(request, connection, timeout, secrets, stream_deadline, parser)

    def stream_ndjson(
        self,
        request: UpstreamRequest,
        connection: str,
        timeout: float,
        secrets: Iterable[str],
        *,
        stream_deadline: float = DEFAULT_STREAM_DEADLINE,
        max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES,
    ) -> AsyncIterator[Any]:
        """`stream_sse` for a stream of JSON lines (Ollama's): yields each line parsed."""
        secrets = list(secrets)
        parser = NDJSONParser(connection, max_event_bytes, secrets)
        return self._stream(request, connection, timeout, secrets, stream_deadline, parser)

    async def _stream(
        self,
        request: UpstreamRequest,
        connection: str,
        timeout: float,
        secrets: list[str],
        deadline: float,
        parser: SSEParser | NDJSONParser,
    ) -> AsyncIterator[Any]:
        from pyreqwest import exceptions as failed

        loop = asyncio.get_running_loop()
        end = loop.time() + deadline
        late = False  # whether the wait under way ends at the deadline, not the timeout
        opened = False

        def bound() -> asyncio.Timeout:
            nonlocal late
            now = loop.time()
            late = end <= now + timeout
            return asyncio.timeout_at(min(end, now + timeout))

        try:
            # No read-ahead: by default the client buffers the body before handing the
            # response over, which would hold back every event of a slow stream.
            streamed = self._builder(request).streamed_read_buffer_limit(0).build_streamed()
            async with bound():
                response = await streamed.__aenter__()
            opened = True
            try:
                if not 200 <= response.status < 300:
                    async with bound():
                        body = await _read_body(response, ERROR_BODY_BYTES, cut=True)
                    raise classify_error(
                        response.status, body or b"", response.headers, connection, secrets
                    )
                reader = response.body_reader
                while True:
                    # A silent upstream is a 504, not a hang; so is a dripping one.
                    async with bound():
                        data = await reader.read_chunk()
                    if data is None:
                        break
                    for item in parser.feed(memoryview(data)):
                        yield item
                for item in parser.finish():
                    yield item
            finally:
                await streamed.__aexit__(None, None, None)
        except (TimeoutError, failed.RequestTimeoutError):
            if late:
                raise _past_deadline(connection, deadline) from None
            raise _timeout(connection, timeout) from None
        except failed.PyreqwestError as exc:
            opened = opened or isinstance(exc, failed.ReadError | failed.DecodeError)
            raise _failed(connection, request.url, exc, secrets, opened) from None


async def _read_body(response: Response, limit: int, *, cut: bool) -> bytes | None:
    """The body, at most *limit* bytes: cut there, or None when it is longer."""
    declared = response.headers.get("content-length")
    if declared is not None and declared.isdigit():
        if int(declared) <= limit:
            # The client holds the body to its declared length: one read, no loop.
            return bytes(await response.bytes())
        if not cut:
            return None
    body = bytearray()
    reader = response.body_reader
    while len(body) <= limit:
        data = await reader.read_chunk()
        if data is None:
            return bytes(body)
        body += data
    return bytes(body[:limit]) if cut else None


def _timeout(connection: str, timeout: float) -> GatewayTimeoutError:
    return GatewayTimeoutError(
        f"connection '{connection}': no answer from the upstream within {timeout:g} s"
    )


def _past_deadline(connection: str, deadline: float) -> GatewayTimeoutError:
    return GatewayTimeoutError(
        f"connection '{connection}': the stream did not finish within its stream_deadline "
        f"({deadline:g} s)",
        code="stream_deadline",
    )


def _failed(
    connection: str, url: str, exc: Exception, secrets: Iterable[str], opened: bool
) -> UpstreamError:
    """A transport failure: after the answer began, a broken answer; before, unreachable."""
    from pyreqwest import exceptions as failed

    causes = (getattr(exc, "details", None) or {}).get("causes") or [{}]
    reason = str(causes[-1].get("message") or type(exc).__name__)[:200]
    if isinstance(exc, failed.ConnectError) and "refused" in reason.lower():
        reason = "connection refused"
    if opened:
        said = f"connection '{connection}': the upstream broke off the answer ({reason})"
        return UpstreamError(redact(said, secrets), code="upstream_stream_broken")
    where = urlsplit(url)
    port = f":{where.port}" if where.port else ""
    return UpstreamError(
        redact(
            f"connection '{connection}': cannot reach {where.scheme}://{where.hostname}{port} "
            f"({reason})",
            secrets,
        ),
        code="upstream_unreachable",
    )
