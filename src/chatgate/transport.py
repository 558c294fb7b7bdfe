"""The one place that talks to upstreams: a pooled async HTTP client and an SSE reader.

Every failure leaves here as one of our errors, named after the connection, with every
secret masked: a refused connection or a broken stream is a 502, a timeout a 504, and
a non-2xx answer is classified by `classify_error` with the upstream's own message.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from typing import Any

import httpx
import orjson

from chatgate.adapters.upstream import UpstreamRequest, classify_error
from chatgate.errors import GatewayTimeoutError, UpstreamError, redact


@dataclass(frozen=True, slots=True)
class SSEEvent:
    """One server-sent event: its name (if any) and its data."""

    event: str | None
    data: str


class Transport:
    """A shared ``httpx.AsyncClient``; created on first use, in the running loop."""

    def __init__(self, client: httpx.AsyncClient | None = None) -> None:
        self._client = client

    @property
    def client(self) -> httpx.AsyncClient:
        """The pooled client (connections are reused across requests)."""
        if self._client is None:
            self._client = httpx.AsyncClient(
                limits=httpx.Limits(max_connections=1000, max_keepalive_connections=200),
                follow_redirects=False,
                trust_env=False,
            )
        return self._client

    async def aclose(self) -> None:
        """Close every pooled connection."""
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def send(
        self,
        request: UpstreamRequest,
        connection: str,
        timeout: float,
        secrets: Iterable[str],
    ) -> tuple[int, httpx.Headers, bytes]:
        """Send and read the whole answer; non-2xx answers are returned, not raised."""
        try:
            response = await self.client.request(
                request.method,
                request.url,
                headers=request.headers,
                content=orjson.dumps(request.body) if request.body is not None else None,
                timeout=httpx.Timeout(timeout, connect=min(timeout, 10.0)),
            )
        except httpx.TimeoutException:
            raise _timeout(connection, timeout) from None
        except httpx.HTTPError as exc:
            raise _unreachable(connection, request.url, exc, secrets) from None
        return response.status_code, response.headers, response.content

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
        """Open a stream and yield its events; errors before the first event are raised
        as ordinary errors, a stream that breaks later as a 502."""
        secrets = list(secrets)
        try:
            async with self.client.stream(
                request.method,
                request.url,
                headers=request.headers,
                content=orjson.dumps(request.body) if request.body is not None else None,
                timeout=httpx.Timeout(timeout, connect=min(timeout, 10.0)),
            ) as response:
                if not 200 <= response.status_code < 300:
                    body = await response.aread()
                    raise classify_error(
                        response.status_code, body, response.headers, connection, secrets
                    )
                async for event in _events(response):
                    yield event
        except httpx.TimeoutException:
            raise _timeout(connection, timeout) from None
        except (httpx.RemoteProtocolError, httpx.ReadError) as exc:
            raise UpstreamError(
                f"connection '{connection}': the upstream broke off the stream "
                f"({type(exc).__name__})",
                code="upstream_stream_broken",
            ) from None
        except httpx.HTTPError as exc:
            raise _unreachable(connection, request.url, exc, secrets) from None


async def _events(response: httpx.Response) -> AsyncIterator[SSEEvent]:
    event: str | None = None
    data: list[str] = []
    async for line in response.aiter_lines():
        if not line:
            if data:
                yield SSEEvent(event, "\n".join(data))
            event, data = None, []
        elif line.startswith("data:"):
            data.append(line[5:].removeprefix(" "))
        elif line.startswith("event:"):
            event = line[6:].strip()
        # Comments (":") and other fields (id:, retry:) carry nothing we use.
    if data:
        yield SSEEvent(event, "\n".join(data))


def _timeout(connection: str, timeout: float) -> GatewayTimeoutError:
    return GatewayTimeoutError(
        f"connection '{connection}': no answer from the upstream within {timeout:g} s"
    )


def _unreachable(
    connection: str, url: str, exc: httpx.HTTPError, secrets: Iterable[str]
) -> UpstreamError:
    reason = "connection refused" if isinstance(exc, httpx.ConnectError) else type(exc).__name__
    where = httpx.URL(url)
    return UpstreamError(
        redact(
            f"connection '{connection}': cannot reach {where.scheme}://{where.host}"
            f"{':' + str(where.port) if where.port else ''} ({reason})",
            secrets,
        ),
        code="upstream_unreachable",
    )
