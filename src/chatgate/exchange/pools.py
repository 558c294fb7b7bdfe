"""The transport's pyreqwest clients: one per pair of connect and read timeouts.

pyreqwest sets its connect and read timeouts per client, not per request (its request
builder has only a total), so an exchange with a connect timeout of its own needs a
client of its own. Its read timeout is the longer of the exchange's first_byte and
read: a client holds that one exactly by itself, and is the backstop for the other,
which our asyncio bound stops on time. The backstop matters: pyreqwest (0.15) does not
abort a request whose wait for a head is cancelled from Python, so without it the
connection would stay open for as long as the upstream stays silent.
"""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING, NamedTuple

from chatgate.exchange.timeouts import CONNECT_TIMEOUT, Timeouts

if TYPE_CHECKING:
    from pyreqwest.client import Client

# More distinct (connect, read) pairs than this share one spare client (`Pools.get`).
MAX_POOLS = 16


class Pool(NamedTuple):
    """A client and which of an exchange's bounds it holds itself, to the exact second:
    there our own (asyncio) bound is not needed, and one call may read a whole body."""

    client: Client
    connect: float
    holds_head: bool  # the wait for the head (and a stream's first bytes): first_byte
    holds_read: bool  # each later read: read


class Pools:
    """The clients, created on first use; each pools its own connections."""

    def __init__(self) -> None:
        self._clients: dict[tuple[float, float | None], Client] = {}
        # `get`'s answers, by bounds and total: it runs per request.
        self._chosen: dict[tuple[Timeouts, float | None], Pool] = {}

    def get(self, timeouts: Timeouts, total: float | None = None) -> Pool:
        """The client for *timeouts* in an exchange whose whole is bounded by *total*.
        A total no longer than either wait (a bare ``timeout``, the default) ends before
        either could, and the request carries it itself: the client then needs no read
        timeout of its own, which would only arm a timer on every read. Past
        `MAX_POOLS` pairs, a spare one with the default connect timeout and no read
        timeout: our bounds still hold, but a wait for a head that they stop then keeps
        its connection until the total, if any."""
        chosen = self._chosen.get((timeouts, total))
        if chosen is not None:
            return chosen
        if total is not None and total <= min(timeouts.head, timeouts.read):
            key: tuple[float, float | None] = (timeouts.connect, None)
            held = (True, True)
        else:
            key = (timeouts.connect, max(timeouts.head, timeouts.read))
            held = (key[1] == timeouts.head, key[1] == timeouts.read)
        if key not in self._clients and len(self._clients) >= MAX_POOLS:
            key, held = (CONNECT_TIMEOUT, None), held if key[1] is None else (False, False)
        client = self._clients.get(key)
        if client is None:
            client = self._clients[key] = _build_client(*key)
        chosen = Pool(client, key[0], *held)
        if len(self._chosen) < 4 * MAX_POOLS:
            self._chosen[(timeouts, total)] = chosen
        return chosen

    async def aclose(self) -> None:
        """Close every client and its connections; the next `get` starts afresh."""
        clients, self._clients, self._chosen = list(self._clients.values()), {}, {}
        for client in clients:
            await client.close()


def _build_client(connect: float, read: float | None) -> Client:
    # Imported on first upstream use: `import chatgate` stays light.
    from pyreqwest.client import ClientBuilder

    builder = (
        ClientBuilder()
        .connect_timeout(timedelta(seconds=connect))
        .follow_redirects(False)
        .user_agent("chatgate")
        # No compression to undo: it costs time on every answer.
        .gzip(False)
        .brotli(False)
        .deflate(False)
        .zstd(False)
    )
    if read is not None:
        builder = builder.read_timeout(timedelta(seconds=read))
    return builder.build()
