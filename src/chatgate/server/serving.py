"""How ``chatgate serve`` runs the app: uvicorn with httptools, plus read deadlines.

uvicorn (0.54) has no header read timeout: a fresh connection gets no timer at all,
and its keep-alive timer is cancelled by any byte, so a client that sends a partial
request head (slowloris), or nothing, holds its socket forever. ``ReadDeadlines``
adds two deadlines to uvicorn's httptools protocol:

* the request head must be complete within ``header_timeout`` of the connection
  opening (first request) or of its first byte (later requests on a kept-alive
  connection); otherwise the client gets ``408`` and the connection is closed;
* a request body must be complete within ``body_timeout`` of its head; otherwise the
  connection is closed, which the app sees as ``http.disconnect``.

Timers are armed only when a read is left incomplete at the end of a ``data_received``
call, so a request that arrives whole (the usual case) costs no timer at all.
Connections past ``max_connections`` are answered ``503`` with ``Connection: close``
once their head is in (uvicorn's ``limit_concurrency``); the head deadline bounds how
long those, too, can hold a socket. docs/dependencies.md has the measurements.
"""

from __future__ import annotations

import asyncio
import resource
from typing import Any

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from chatgate.config import ServerSettings

TIMEOUT_RESPONSE = (
    b"HTTP/1.1 408 Request Timeout\r\n"
    b"content-type: text/plain; charset=utf-8\r\n"
    b"content-length: 15\r\n"
    b"connection: close\r\n"
    b"\r\n"
    b"Request Timeout"
)
# File descriptors kept besides client sockets: upstream connections, engine pipes, logs.
_SPARE_FDS = 256


class ReadDeadlines(HttpToolsProtocol):
    """uvicorn's httptools protocol with deadlines for the request head and body."""

    # Class attributes, because uvicorn builds the protocol itself; ``protocol_for``
    # makes a subclass with the configured values.
    header_timeout: float = 10.0
    body_timeout: float = 60.0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._deadline: asyncio.TimerHandle | None = None
        self._head_pending = False  # between a request's first byte and its last header
        self._body_pending = False  # between a request's last header and its last byte

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        """Start the head deadline at once: a silent client must not keep the socket."""
        super().connection_made(transport)
        self._arm(self.header_timeout)

    def connection_lost(self, exc: Exception | None) -> None:
        """Drop the deadline along with the connection."""
        self._disarm()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        """Parse, then start a deadline if what arrived left a head or body unfinished."""
        super().data_received(data)
        if self._deadline is not None or self.transport.is_closing():
            return  # the running deadline counts from the first byte; it is not reset
        if self._body_pending:
            self._arm(self.body_timeout)
        elif self._head_pending or self.cycle is None or self.cycle.response_complete:
            # Bytes that start no request (stray line ends) cancel uvicorn's keep-alive
            # timer too, so an idle connection also gets the head deadline here.
            self._arm(self.header_timeout)

    def on_message_begin(self) -> None:
        """A request's first byte."""
        self._head_pending = True
        super().on_message_begin()

    def on_headers_complete(self) -> None:
        """The head is in: its deadline is met; the body (if any) gets its own."""
        self._head_pending = False
        self._body_pending = True
        self._disarm()
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        """The whole request is in."""
        self._body_pending = False
        self._disarm()
        super().on_message_complete()

    def _arm(self, seconds: float) -> None:
        self._deadline = self.loop.call_later(seconds, self._expired)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _expired(self) -> None:
        self._deadline = None
        if self.transport.is_closing():
            return
        if not self._body_pending and self.cycle is not None and not self.cycle.response_complete:
            # A pipelined head is late while an earlier response is still being sent:
            # let that response finish, then uvicorn closes the connection.
            self.cycle.keep_alive = False
            return
        if not self._body_pending:
            self.transport.write(TIMEOUT_RESPONSE)
        # A late body: the app is already running and learns of it as http.disconnect.
        self.transport.close()


def protocol_for(settings: ServerSettings) -> type[ReadDeadlines]:
    """A ``ReadDeadlines`` subclass carrying the ``[server]`` deadlines."""
    return type(
        "ConfiguredReadDeadlines",
        (ReadDeadlines,),
        {"header_timeout": settings.header_timeout, "body_timeout": settings.body_timeout},
    )


def raise_fd_limit(wanted: int) -> None:
    """Lift the soft open-files limit toward the hard one, so the cap is reachable."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < wanted:
        target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))


def uvicorn_config(app: Any, settings: ServerSettings) -> uvicorn.Config:
    """The uvicorn configuration ``chatgate serve`` runs with."""
    return uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        http=protocol_for(settings),
        # uvicorn counts the connection asking, too: +1 lets max_connections be served.
        limit_concurrency=settings.max_connections + 1,
        backlog=max(settings.max_connections, 128),
        # Without it, a SIGTERM waits for every open stream to end: minutes, until a
        # supervisor's SIGKILL loses the queued usage rows.
        timeout_graceful_shutdown=settings.shutdown_timeout,
        log_level="info",
        access_log=False,
        proxy_headers=False,  # no proxy in front by default; one middleware fewer per request
        server_header=False,
    )


def run(app: Any, settings: ServerSettings) -> None:
    """Serve *app* until interrupted."""
    # Two sockets per connection at most: the client's, and a stream's upstream one.
    raise_fd_limit(2 * settings.max_connections + _SPARE_FDS)
    uvicorn.Server(uvicorn_config(app, settings)).run()
