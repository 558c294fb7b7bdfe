"""The one place that talks to upstreams: a pooled HTTP client and an SSE reader.

Every failure leaves here as one of our errors, named after the connection, with every
secret masked: a refused connection or a broken stream is a 502, a timeout a 504, and
a non-2xx answer is classified by `classify_error` with the upstream's own message.

The client is pyreqwest (Rust's reqwest and hyper on a Tokio thread), chosen by
measurement over aiohttp, httpx and aiosonic (``docs/dependencies.md``): the lowest cost
per request one at a time, which is what a gateway adds to every call.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import orjson

from chatgate.adapters.upstream import UpstreamRequest, classify_error
from chatgate.errors import GatewayTimeoutError, UpstreamError, redact

if TYPE_CHECKING:
    from pyreqwest.client import Client
    from pyreqwest.request import RequestBuilder
    from pyreqwest.response import Response

CONNECT_TIMEOUT = 10.0


@dataclass(frozen=True, slots=True)
class SSEEvent:
    """One server-sent event: its name (if any) and its data."""

    event: str | None
    data: str


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
    ) -> tuple[int, Mapping[str, str], bytes]:
        """Send and read the whole answer; non-2xx answers are returned, not raised."""
        from pyreqwest import exceptions as failed

        try:
            built = self._builder(request).timeout(self._timeout(timeout)).build()
            response = await built.send()
            return response.status, response.headers, bytes(await response.bytes())
        except (TimeoutError, failed.RequestTimeoutError, failed.ReadTimeoutError,
                failed.ConnectTimeoutError):  # fmt: skip
            raise _timeout(connection, timeout) from None
        except failed.PyreqwestError as exc:
            raise _unreachable(connection, request.url, exc, secrets) from None

    async def send_json(
        self,
        request: UpstreamRequest,
        connection: str,
        timeout: float,
        secrets: Iterable[str],
    ) -> Any:
        """Send, raise for a non-2xx answer, and parse the JSON body."""
        status, headers, body = await self.send(request, connection, timeout, secrets)
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

    async def stream_sse(
        self,
        request: UpstreamRequest,
        connection: str,
        timeout: float,
        secrets: Iterable[str],
    ) -> AsyncIterator[SSEEvent]:
        """Open a stream and yield its events; a non-2xx answer raises as an ordinary
        error, a stream that breaks later as a 502. *timeout* bounds the wait for the
        answer and then for each read, not the whole stream."""
        from pyreqwest import exceptions as failed

        secrets = list(secrets)
        opened = False
        try:
            # No read-ahead: by default the client buffers the body before handing the
            # response over, which would hold back every event of a slow stream.
            streamed = self._builder(request).streamed_read_buffer_limit(0).build_streamed()
            async with asyncio.timeout(timeout):
                response = await streamed.__aenter__()
            opened = True
            try:
                async for event in _events(response, timeout, connection, secrets):
                    yield event
            finally:
                await streamed.__aexit__(None, None, None)
        except (TimeoutError, failed.RequestTimeoutError, failed.ReadTimeoutError,
                failed.ConnectTimeoutError):  # fmt: skip
            raise _timeout(connection, timeout) from None
        except failed.PyreqwestError as exc:
            if not opened and not isinstance(exc, failed.ReadError | failed.DecodeError):
                raise _unreachable(connection, request.url, exc, secrets) from None
            raise UpstreamError(
                f"connection '{connection}': the upstream broke off the stream "
                f"({type(exc).__name__})",
                code="upstream_stream_broken",
            ) from None


async def _events(
    response: Response, timeout: float, connection: str, secrets: list[str]
) -> AsyncIterator[SSEEvent]:
    """Split the byte stream into events ourselves: one Python step per network read,
    not one per line (a read usually holds several whole events)."""
    if not 200 <= response.status < 300:
        body = bytes(await response.bytes())
        raise classify_error(response.status, body, response.headers, connection, secrets)
    reader = response.body_reader
    buffer = b""
    while True:
        async with asyncio.timeout(timeout):  # a silent upstream is a 504, not a hang
            data = await reader.read_chunk()
        if data is None:
            break
        buffer += bytes(data)
        if b"\r" in buffer:
            buffer = buffer.replace(b"\r\n", b"\n")
        while True:
            end = buffer.find(b"\n\n")
            if end < 0:
                break
            block, buffer = buffer[:end], buffer[end + 2 :]
            event = _parse_event(block)
            if event is not None:
                yield event
    if buffer.strip():
        event = _parse_event(buffer)
        if event is not None:
            yield event


def _parse_event(block: bytes) -> SSEEvent | None:
    name: str | None = None
    data: list[str] = []
    for raw in block.split(b"\n"):
        line = raw.decode("utf-8", errors="replace")
        if line.startswith("data:"):
            data.append(line[5:].removeprefix(" "))
        elif line.startswith("event:"):
            name = line[6:].strip()
        # Comments (":") and other fields (id:, retry:) carry nothing we use.
    return SSEEvent(name, "\n".join(data)) if data else None


def _timeout(connection: str, timeout: float) -> GatewayTimeoutError:
    return GatewayTimeoutError(
        f"connection '{connection}': no answer from the upstream within {timeout:g} s"
    )


def _unreachable(
    connection: str, url: str, exc: Exception, secrets: Iterable[str]
) -> UpstreamError:
    from pyreqwest import exceptions as failed

    refused = isinstance(exc, failed.ConnectError)
    reason = "connection refused" if refused else type(exc).__name__
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
