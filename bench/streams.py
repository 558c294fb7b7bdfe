"""Open streams: thousands of SSE streams held at once, and the latency each chunk gains.

    python -m bench.streams mock --port N --chunks 400 --interval 0.05   # the upstream
    python -m bench.streams direct --streams 50 --seconds 2              # mock alone, a check

The mock is raw asyncio protocols (no framework, no task per stream): one ticker walks
the open streams in `SLOTS` phases per interval, so 10,000 streams are 200,000 small
writes a second spread evenly, not 20 bursts. Each chunk's text is ``@<send time>@``,
the mock's ``time.time()`` as it writes it; the client (also raw protocols, one process)
subtracts that from its own clock when the bytes arrive: the same machine's clock, so
the difference is the chunk's whole trip. The same client against the mock directly
gives the baseline; chatgate's added latency is the difference.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import re
import resource
import subprocess
import sys
import time
from array import array
from dataclasses import dataclass, field
from typing import Any, cast

SLOTS = 10  # phases per interval: each tick writes to a tenth of the streams
STAMP = re.compile(rb"@(\d+\.\d+)@")
HEAD = (
    b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
    b"cache-control: no-cache\r\ntransfer-encoding: chunked\r\n\r\n"
)
END_EVENT = (
    b'data: {"id":"m","object":"chat.completion.chunk","created":0,"model":"mock-model",'
    b'"choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}\n\ndata: [DONE]\n\n'
)


def event(sent: float) -> bytes:
    """One SSE chunk whose text is its send time."""
    return (
        b'data: {"id":"m","object":"chat.completion.chunk","created":0,"model":"mock-model",'
        b'"choices":[{"index":0,"delta":{"content":"@%.6f@"},"finish_reason":null}]}\n\n' % sent
    )


def chunked(payload: bytes) -> bytes:
    """*payload* as one HTTP/1.1 chunk."""
    return b"%x\r\n%s\r\n" % (len(payload), payload)


def added_ms(received: float, data: bytes) -> tuple[list[float], bytes]:
    """Milliseconds from each stamp in *data* to *received* (both ``time.time()``), and
    the bytes to keep for the next read: an open stamp, or the last few (a split
    ``[DONE]``)."""
    found, end = [], 0
    for match in STAMP.finditer(data):
        found.append((received - float(match.group(1))) * 1000)
        end = match.end()
    rest = data[end:]
    opened = rest.rfind(b"@")
    return found, rest[opened:] if opened >= 0 else rest[-8:]


class MockServer:
    """Streams *chunks* stamped chunks, one per *interval*, to every request."""

    def __init__(self, chunks: int, interval: float) -> None:
        self.chunks, self.interval = chunks, interval
        self.slots: list[dict[_MockStream, int]] = [{} for _ in range(SLOTS)]
        self.next_slot = 0

    def add(self, stream: _MockStream) -> None:
        """Start streaming to *stream*, in the next phase."""
        stream.transport.write(HEAD)
        self.slots[self.next_slot][stream] = 0
        self.next_slot = (self.next_slot + 1) % SLOTS

    def drop(self, stream: _MockStream) -> None:
        """Forget a closed stream."""
        for slot in self.slots:
            slot.pop(stream, None)

    async def tick(self) -> None:
        """Write one chunk to a tenth of the streams every interval / SLOTS, forever."""
        loop = asyncio.get_running_loop()
        step, at, phase = self.interval / SLOTS, loop.time(), 0
        while True:
            at += step
            await asyncio.sleep(max(0.0, at - loop.time()))
            slot = self.slots[phase]
            phase = (phase + 1) % SLOTS
            finished = []
            for stream, sent in slot.items():
                if sent >= self.chunks:
                    stream.transport.write(chunked(END_EVENT) + b"0\r\n\r\n")
                    finished.append(stream)
                else:
                    stream.transport.write(chunked(event(time.time())))
                    slot[stream] = sent + 1
            for stream in finished:
                del slot[stream]
                stream.reset()


class _MockStream(asyncio.Protocol):
    def __init__(self, server: MockServer) -> None:
        self.server, self.buffer = server, b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        head_end = self.buffer.find(b"\r\n\r\n")
        if head_end < 0:
            return
        length = re.search(rb"(?i)content-length:\s*(\d+)", self.buffer[:head_end])
        if len(self.buffer) - head_end - 4 >= int(length.group(1) if length else 0):
            self.buffer = b""  # one request at a time per connection (keep-alive)
            self.server.add(self)

    def reset(self) -> None:
        self.buffer = b""

    def connection_lost(self, exc: Exception | None) -> None:
        self.server.drop(self)


async def serve_mock(port: int, chunks: int, interval: float) -> None:
    """Run the mock upstream on loopback *port* until killed."""
    server = MockServer(chunks, interval)
    loop = asyncio.get_running_loop()
    listener = await loop.create_server(
        lambda: _MockStream(server), "127.0.0.1", port, backlog=16384, reuse_address=True
    )
    print(f"mock ready on {port}", flush=True)
    async with listener:
        await server.tick()


@dataclass
class Tally:
    """What the clients saw: every chunk's latency, chunk and error counts."""

    latencies: array[float] = field(default_factory=lambda: array("d"))
    chunks: int = 0
    errors: int = 0
    done: int = 0


class _Client(asyncio.Protocol):
    """One stream: sends the request, stamps every chunk's arrival, ends at [DONE]."""

    def __init__(self, request: bytes, tally: Tally, finished: asyncio.Future[None]) -> None:
        self.request, self.tally, self.finished = request, tally, finished
        self.tail, self.first = b"", True

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        self.transport.write(self.request)

    def data_received(self, data: bytes) -> None:
        now = time.time()
        if self.first:
            self.first = False
            if not data.startswith(b"HTTP/1.1 200"):
                self._end(error=True)
                return
        data = self.tail + data
        found, self.tail = added_ms(now, data)
        self.tally.latencies.extend(found)
        self.tally.chunks += len(found)
        if b"[DONE]" in data:
            self._end(error=False)

    def connection_lost(self, exc: Exception | None) -> None:
        self._end(error=True)

    def _end(self, *, error: bool) -> None:
        if self.finished.done():
            return
        if error:
            self.tally.errors += 1
        else:
            self.tally.done += 1
        self.finished.set_result(None)
        self.transport.close()


def request_bytes(port: int, path: str, model: str, key: str | None) -> bytes:
    """The HTTP/1.1 streaming chat request every client sends."""
    body = json.dumps(
        {"model": model, "messages": [{"role": "user", "content": "Hi"}], "stream": True}
    ).encode()
    auth = f"authorization: Bearer {key}\r\n".encode() if key else b""
    return (
        f"POST {path} HTTP/1.1\r\nhost: 127.0.0.1:{port}\r\n"
        f"content-type: application/json\r\ncontent-length: {len(body)}\r\n".encode()
        + auth
        + b"\r\n"
        + body
    )


async def hold(
    port: int, path: str, model: str, key: str | None, streams: int, timeout: float
) -> Tally:
    """Open *streams* streams at once (in batches of 200) and wait for them all."""
    loop = asyncio.get_running_loop()
    tally = Tally()
    request = request_bytes(port, path, model, key)
    waits: list[asyncio.Future[None]] = []
    for start in range(0, streams, 200):
        for _ in range(start, min(streams, start + 200)):
            finished: asyncio.Future[None] = loop.create_future()
            try:
                await loop.create_connection(
                    functools.partial(_Client, request, tally, finished), "127.0.0.1", port
                )
            except OSError:
                tally.errors += 1
                continue
            waits.append(finished)
        await asyncio.sleep(0.02)  # let the accept queue drain between batches
    try:
        await asyncio.wait_for(asyncio.gather(*waits), timeout)
    except TimeoutError:
        tally.errors += sum(1 for w in waits if not w.done())
    return tally


def summary(tally: Tally, streams: int, chunks: int) -> dict[str, Any]:
    """Percentiles of the per-chunk latency and the error counts."""
    ordered = sorted(tally.latencies)

    def at(q: float) -> float:
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")

    missing = streams * chunks - tally.chunks
    return {
        "streams": streams,
        "chunks": tally.chunks,
        "expected_chunks": streams * chunks,
        "p50_ms": round(at(0.50), 3),
        "p99_ms": round(at(0.99), 3),
        "max_ms": round(ordered[-1], 3) if ordered else None,
        "errors": tally.errors + (1 if missing > 0 and tally.errors == 0 else 0),
        "completed": tally.done,
    }


def raise_fd_limit(wanted: int) -> int:
    """Lift this process's open-files limit toward *wanted*; the limit it got."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


class Mock:
    """The mock as a child process (so it never shares the client's loop)."""

    def __init__(self, port: int, chunks: int, interval: float) -> None:
        self.port, self.url = port, f"http://127.0.0.1:{port}"
        argv = [sys.executable, "-m", "bench.streams", "mock", "--port", str(port)]
        argv += ["--chunks", str(chunks), "--interval", str(interval)]
        self.popen = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True)
        assert self.popen.stdout is not None
        line = self.popen.stdout.readline()
        if "ready" not in line:
            self.stop()
            raise RuntimeError(f"the stream mock did not start: {line!r}")

    def stop(self) -> None:
        """Stop the mock."""
        if self.popen.poll() is None:
            self.popen.terminate()
            self.popen.wait(timeout=10)
        if self.popen.stdout is not None:
            self.popen.stdout.close()


def main(argv: list[str] | None = None) -> None:
    """``mock`` (the upstream) or ``direct`` (the client against it, as a check)."""
    parser = argparse.ArgumentParser(prog="bench.streams")
    parser.add_argument("mode", choices=["mock", "direct"])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--chunks", type=int, default=400)
    parser.add_argument("--interval", type=float, default=0.05)
    parser.add_argument("--streams", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=2)
    args = parser.parse_args(argv)
    import uvloop

    raise_fd_limit(65536)
    if args.mode == "mock":
        uvloop.run(serve_mock(args.port, args.chunks, args.interval))
        return
    from bench.peers import free_port

    chunks = round(args.seconds / args.interval)
    mock = Mock(free_port(), chunks, args.interval)
    try:
        tally = uvloop.run(
            hold(mock.port, "/v1/chat/completions", "m", None, args.streams, args.seconds + 30)
        )
    finally:
        mock.stop()
    print(json.dumps(summary(tally, args.streams, chunks)))


if __name__ == "__main__":
    main()
