"""The one place that talks to upstreams: a pooled aiohttp client and an SSE reader.

Every failure leaves here as one of our errors, named after the connection, with every
secret masked: a refused connection or a broken stream is a 502, a timeout a 504, and
a non-2xx answer is classified by `classify_error` with the upstream's own message.

aiohttp was chosen over httpx by measurement (``docs/performance.md``): its C HTTP
parser and connection pool cost a fraction of httpx's per request.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson

from chatgate.adapters.upstream import UpstreamRequest, classify_error
from chatgate.errors import GatewayTimeoutError, UpstreamError, redact

if TYPE_CHECKING:
    import aiohttp

CONNECT_TIMEOUT = 10.0


@dataclass(frozen=True, slots=True)
class SSEEvent:
    """One server-sent event: its name (if any) and its data."""

    event: str | None
    data: str


class Transport:
    """A shared ``aiohttp.ClientSession``, created on first use in the running loop."""

    def __init__(self) -> None:
        self._session: aiohttp.ClientSession | None = None
        # Parsed once: yarl URLs and timeout objects cost real time per request.
        self._urls: dict[str, Any] = {}
        self._timeouts: dict[float, aiohttp.ClientTimeout] = {}

    def _url(self, url: str) -> Any:
        parsed = self._urls.get(url)
        if parsed is None:
            from yarl import URL

            if len(self._urls) > 1024:
                self._urls.clear()
            parsed = self._urls[url] = URL(url, encoded=True)
        return parsed

    @property
    def session(self) -> aiohttp.ClientSession:
        """The pooled session (connections are reused across requests)."""
        import aiohttp  # imported on first upstream use: `import chatgate` stays light

        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=1000, limit_per_host=0, ttl_dns_cache=300),
                json_serialize=lambda v: orjson.dumps(v).decode(),
                trust_env=False,
                # No cookies to keep between API calls, and no compression to undo:
                # both cost time on every answer.
                cookie_jar=aiohttp.DummyCookieJar(),
                skip_auto_headers=("User-Agent", "Accept-Encoding"),
            )
        return self._session

    async def aclose(self) -> None:
        """Close every pooled connection."""
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _timeout(self, seconds: float) -> aiohttp.ClientTimeout:
        cached = self._timeouts.get(seconds)
        if cached is not None:
            return cached
        import aiohttp

        cached = self._timeouts[seconds] = aiohttp.ClientTimeout(
            total=None, sock_connect=min(seconds, CONNECT_TIMEOUT), sock_read=seconds
        )
        return cached

    async def send(
        self,
        request: UpstreamRequest,
        connection: str,
        timeout: float,
        secrets: Iterable[str],
    ) -> tuple[int, Mapping[str, str], bytes]:
        """Send and read the whole answer; non-2xx answers are returned, not raised."""
        import aiohttp

        try:
            async with self.session.request(
                request.method,
                self._url(request.url),
                headers=request.headers,
                data=orjson.dumps(request.body) if request.body is not None else None,
                timeout=self._timeout(timeout),
                allow_redirects=False,
            ) as response:
                return response.status, response.headers, await response.read()
        except (TimeoutError, aiohttp.ServerTimeoutError):
            raise _timeout(connection, timeout) from None
        except aiohttp.ClientError as exc:
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
        error, a stream that breaks later as a 502."""
        import aiohttp

        secrets = list(secrets)
        try:
            async with self.session.request(
                request.method,
                self._url(request.url),
                headers=request.headers,
                data=orjson.dumps(request.body) if request.body is not None else None,
                timeout=self._timeout(timeout),
                allow_redirects=False,
            ) as response:
                if not 200 <= response.status < 300:
                    body = await response.read()
                    raise classify_error(
                        response.status, body, response.headers, connection, secrets
                    )
                async for event in _events(response.content):
                    yield event
        except (TimeoutError, aiohttp.ServerTimeoutError):
            raise _timeout(connection, timeout) from None
        except (aiohttp.ClientPayloadError, aiohttp.ServerDisconnectedError) as exc:
            raise UpstreamError(
                f"connection '{connection}': the upstream broke off the stream "
                f"({type(exc).__name__})",
                code="upstream_stream_broken",
            ) from None
        except aiohttp.ClientError as exc:
            raise _unreachable(connection, request.url, exc, secrets) from None


async def _events(content: aiohttp.StreamReader) -> AsyncIterator[SSEEvent]:
    """Split the byte stream into events ourselves: one Python step per network read,
    not one per line (a read usually holds several whole events)."""
    buffer = b""
    async for data in content.iter_any():
        buffer += data
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
    connection: str, url: str, exc: aiohttp.ClientError, secrets: Iterable[str]
) -> UpstreamError:
    import aiohttp
    from yarl import URL

    refused = isinstance(exc, aiohttp.ClientConnectorError)
    reason = "connection refused" if refused else type(exc).__name__
    where = URL(url)
    port = f":{where.explicit_port}" if where.explicit_port else ""
    return UpstreamError(
        redact(
            f"connection '{connection}': cannot reach {where.scheme}://{where.host}{port} "
            f"({reason})",
            secrets,
        ),
        code="upstream_unreachable",
    )
