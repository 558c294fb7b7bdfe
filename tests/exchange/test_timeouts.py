"""The four timeouts against real loopback servers: which bound fires, what it is called,
the old bare-number form, and that the client drops what our bounds give up on."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Iterator

import pytest

from chatgate.errors import GatewayTimeoutError
from chatgate.exchange import Timeouts, Transport
from chatgate.exchange.pools import MAX_POOLS
from chatgate.exchange.timeouts import Clock
from chatgate.upstream import UpstreamRequest
from tests.fakes.job_server import JobState
from tests.fakes.raw_upstream import Mode, RawUpstream

BOUND = 3.0  # every timeout here fires well within this


def chat(raw: RawUpstream, mode: Mode, stream: bool = False) -> UpstreamRequest:
    """A chat request to *raw*, which answers as *mode*."""
    raw.mode = mode
    return UpstreamRequest(
        "POST", raw.url + "/chat/completions", {}, {"model": "m", "stream": stream}
    )


def events(queue: JobState, **query: object) -> UpstreamRequest:
    """A stream request to the fake queue's ``/events``."""
    params = "&".join(f"{k}={v}" for k, v in query.items())
    return UpstreamRequest("POST", f"{queue.url}/events?{params}", stream=True)


async def timed_out(call: Awaitable[object]) -> tuple[GatewayTimeoutError, float]:
    """The 504 *call* raises, and how long it took."""
    start = time.monotonic()
    with pytest.raises(GatewayTimeoutError) as caught:
        async with asyncio.timeout(BOUND):
            await call
    return caught.value, time.monotonic() - start


async def drain(stream: AsyncIterator[object]) -> list[object]:
    """Everything *stream* yields."""
    return [item async for item in stream]


# --- the description -------------------------------------------------------------------


@pytest.mark.parametrize("field", ["connect", "first_byte", "read", "total"])
@pytest.mark.parametrize("value", [0.0, -1.0, float("inf")])
def test_timeouts_refuse_bounds_that_are_no_bounds(field: str, value: float) -> None:
    with pytest.raises(ValueError, match=f"Timeouts.{field}"):
        Timeouts(**{field: value})


def test_timeouts_defaults_and_first_byte_falls_back_to_read() -> None:
    assert Timeouts() == Timeouts(connect=10.0, first_byte=None, read=600.0, total=None)
    assert Timeouts(read=7).head == 7
    assert Timeouts(first_byte=2, read=7).head == 2


async def test_a_bare_number_keeps_its_old_meaning() -> None:
    answer = Clock.of(5, "answer")
    assert answer.timeouts == Timeouts(first_byte=5, read=5)
    assert (answer.total, answer.legacy) == (5, True)
    stream = Clock.of(5, "stream", 30)
    assert stream.timeouts == Timeouts(first_byte=5, read=5)
    assert (stream.total, stream.label) == (30, "stream_deadline")
    assert Clock.of(5, "job").total == 600
    # A Timeouts' own total wins over the deadline; without one the deadline is the total.
    assert Clock.of(Timeouts(total=4), "stream", 30).total == 4
    assert Clock.of(Timeouts(), "stream", 30).total == 30
    assert Clock.of(Timeouts(), "answer").total is None
    assert Clock.of(Timeouts(), "job").total == 600


# --- first_byte and read ---------------------------------------------------------------


async def test_first_byte_bounds_the_wait_for_the_head(transport: Transport) -> None:
    async with RawUpstream() as raw:
        call = transport.send(chat(raw, "silent"), "up", Timeouts(first_byte=0.1, read=30), [])
        error, took = await timed_out(call)
    assert (error.status, error.code) == (504, "timeout")
    assert error.message == (
        "connection 'up': no answer from the upstream within 0.1 s (first_byte timeout)"
    )
    assert 0.08 < took < BOUND


@pytest.mark.parametrize("first_byte", [None, 1.0], ids=["client-held", "ours"])
async def test_read_bounds_each_read_of_a_body(
    transport: Transport, first_byte: float | None
) -> None:
    """The head comes at once, the body a byte a second: each read is too slow. With
    first_byte ≤ read the client holds the reads itself; with a longer first_byte, we do."""
    async with RawUpstream(drip_interval=1.0) as raw:
        call = transport.send(
            chat(raw, "drip"), "up", Timeouts(first_byte=first_byte, read=0.1), []
        )
        error, _ = await timed_out(call)
    assert error.code == "timeout"
    assert error.message == (
        "connection 'up': the upstream stopped sending: nothing more within 0.1 s (read timeout)"
    )


async def test_total_bounds_a_whole_answer_however_steady(transport: Transport) -> None:
    async with RawUpstream(drip_interval=0.02) as raw:
        call = transport.send(chat(raw, "drip"), "up", Timeouts(read=1, total=0.1), [])
        error, took = await timed_out(call)
    assert (error.status, error.code) == (504, "upstream_deadline")
    assert "did not finish its answer within its total timeout (0.1 s)" in error.message
    assert 0.08 < took < BOUND


@pytest.mark.parametrize(("mode", "said"), [("silent", "no answer"), ("drip", "no whole answer")])
async def test_a_bare_number_bounds_the_whole_answer_as_before(
    transport: Transport, mode: Mode, said: str
) -> None:
    async with RawUpstream(drip_interval=0.02) as raw:
        error, _ = await timed_out(transport.send_json(chat(raw, mode), "up", 0.1, []))
    assert error.code == "timeout"
    assert error.message == f"connection 'up': {said} from the upstream within 0.1 s (timeout)"


@pytest.mark.parametrize("read", [30.0, 0.1], ids=["ours", "client-held"])
async def test_a_stream_first_byte_waits_for_the_first_body_bytes(
    transport: Transport, queue: JobState, read: float
) -> None:
    """The head comes at once; the first event only later. first_byte covers it."""
    request = events(queue, first_delay=1.5)
    call = drain(transport.stream_sse(request, "up", Timeouts(first_byte=0.1, read=read), []))
    error, took = await timed_out(call)
    assert "within 0.1 s (first_byte timeout)" in error.message
    assert took < 1.4


async def test_a_stream_read_held_by_the_client(transport: Transport, queue: JobState) -> None:
    stalled = events(queue, count=2, every=0.03, stall=1.5)
    got: list[object] = []
    with pytest.raises(GatewayTimeoutError) as caught:
        async for event in transport.stream_sse(stalled, "up", Timeouts(read=0.1), []):
            got.append(event)
    assert len(got) == 2
    assert "nothing more within 0.1 s (read timeout)" in caught.value.message


async def test_a_long_first_byte_and_a_short_read(transport: Transport, queue: JobState) -> None:
    """A slow start is allowed by first_byte; the later reads are held to read."""
    bounds = Timeouts(first_byte=1, read=0.15)
    request = events(queue, first_delay=0.3, count=3, every=0.03)
    got = await drain(transport.stream_sse(request, "up", bounds, []))
    assert len(got) == 3
    stalled = events(queue, count=2, every=0.03, stall=1.5, framing="ndjson")
    error, _ = await timed_out(drain(transport.stream_ndjson(stalled, "up", bounds, [])))
    assert "nothing more within 0.15 s (read timeout)" in error.message


async def test_a_stream_total_from_timeouts_is_its_deadline(
    transport: Transport, queue: JobState
) -> None:
    request = events(queue, count=100, every=0.05)
    stream = transport.stream_sse(request, "up", Timeouts(read=1, total=0.1), [])
    error, _ = await timed_out(drain(stream))
    assert error.code == "stream_deadline"
    assert "did not finish within its total timeout (0.1 s)" in error.message


# --- connect ---------------------------------------------------------------------------


@pytest.fixture()
def full_backlog() -> Iterator[int]:
    """A port whose accept queue is full: a connection to it is never made."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = listener.getsockname()[1]
    fillers = []
    for _ in range(3):
        filler = socket.socket()
        filler.setblocking(False)
        try:
            filler.connect(("127.0.0.1", port))
        except BlockingIOError:
            pass
        fillers.append(filler)
    time.sleep(0.05)
    yield port
    for sock in [*fillers, listener]:
        sock.close()


async def test_connect_bounds_the_tcp_connection(transport: Transport, full_backlog: int) -> None:
    request = UpstreamRequest("GET", f"http://127.0.0.1:{full_backlog}/v1/models")
    error, took = await timed_out(transport.send(request, "up", Timeouts(connect=0.1), []))
    assert (error.status, error.code) == (504, "timeout")
    assert error.message == (
        f"connection 'up': cannot connect to http://127.0.0.1:{full_backlog} within 0.1 s "
        "(connect timeout)"
    )
    assert took < 2.0


async def test_connect_bounds_the_tls_handshake_too(transport: Transport) -> None:
    """The server accepts the TCP connection and never answers the TLS hello."""

    async def mute(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()  # until the client gives up
        writer.close()

    server = await asyncio.start_server(mute, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        request = UpstreamRequest("GET", f"https://127.0.0.1:{port}/v1/models")
        error, _ = await timed_out(transport.send(request, "up", Timeouts(connect=0.1), []))
    assert f"https://127.0.0.1:{port} within 0.1 s (connect timeout)" in error.message


def test_each_pair_of_client_bounds_has_its_pool() -> None:
    transport = Transport()
    default = transport.pool(Timeouts())
    assert transport.client is default.client
    assert transport.pool(Timeouts(first_byte=3)).client is default.client  # max(3, 600)
    quick = transport.pool(Timeouts(connect=0.5))
    assert quick.client is not default.client and quick.connect == 0.5
    # The client holds a bound itself when it is the longer of first_byte and read.
    assert default.holds_head and default.holds_read
    assert transport.pool(Timeouts(first_byte=900)).holds_head
    assert not transport.pool(Timeouts(first_byte=900)).holds_read
    assert not transport.pool(Timeouts(first_byte=1)).holds_head


def test_past_the_pool_cap_a_spare_pool_serves() -> None:
    transport = Transport()
    for n in range(MAX_POOLS):
        transport.pool(Timeouts(read=1 + n))
    spare = transport.pool(Timeouts(connect=3, read=99))
    assert (spare.connect, spare.holds_head, spare.holds_read) == (10.0, False, False)
    assert spare.client is transport.pool(Timeouts(read=98)).client


# --- nothing left behind ---------------------------------------------------------------


@pytest.fixture()
async def eof_watch() -> AsyncIterator[tuple[int, asyncio.Event]]:
    """A server that reads a request, never answers, and notes when the client hangs up."""
    hung_up = asyncio.Event()

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        await reader.read()  # b"" once the client drops the connection
        hung_up.set()
        writer.close()

    server = await asyncio.start_server(handler, "127.0.0.1", 0)
    async with server:
        yield server.sockets[0].getsockname()[1], hung_up


async def test_a_connection_we_stop_waiting_on_is_dropped(
    transport: Transport, eof_watch: tuple[int, asyncio.Event]
) -> None:
    """pyreqwest does not abort a request whose wait for a head was cancelled; the
    pool's read timeout (here read, 0.4 s) drops it soon after our first_byte (0.1 s)."""
    port, hung_up = eof_watch
    request = UpstreamRequest("GET", f"http://127.0.0.1:{port}/slow", stream=True)
    stream = transport.stream_sse(request, "up", Timeouts(first_byte=0.1, read=0.4), [])
    await timed_out(drain(stream))
    async with asyncio.timeout(BOUND):
        await hung_up.wait()


async def test_an_answer_body_sent_as_content(transport: Transport, queue: JobState) -> None:
    form = b"grant_type=x&assertion=y.z"
    headers = {"content-type": "application/x-www-form-urlencoded"}
    request = UpstreamRequest("POST", f"{queue.url}/echo", headers, content=form)
    echoed = await transport.send_json(request, "up", Timeouts(read=5), [])
    assert echoed == {"content_type": headers["content-type"], "body": form.decode()}
