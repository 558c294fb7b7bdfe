"""A misbehaving upstream: a real TCP server on loopback that writes raw HTTP/1.1 bytes.

A framework server cannot be made to lie about lengths, reset a socket mid-body or omit
the blank lines between events, so this one writes the bytes itself. The test picks the
behaviour (`mode`) before each request; every answer carries ``Connection: close`` so
no pooled connection carries one case into the next.

Modes (the same for a stream and a non-stream request unless said):

- ``ok``: a proper chat completion (stream: chunks, a finish, ``[DONE]``);
- ``close``: read the request, close without a byte of answer;
- ``reset``: send the head and part of the body, then reset (``SO_LINGER`` 0);
- ``silent``: read the request, never answer;
- ``html_502``: a 502 with an HTML page, as a proxy in front of a dead server sends;
- ``truncated_json``: a 200 whose JSON stops half-way (the length matches what is sent);
- ``not_json``: a 200 with plain text;
- ``no_blank_lines``: SSE events separated by single newlines (for both kinds of request);
- ``big_event``: one event of `big_bytes` (non-stream: an answer that long);
- ``cut``: `cut_after` events, then the connection closes mid-body;
- ``drip``: a well-formed answer sent one byte every `drip_interval` seconds;
- ``rate_limited``: a 429 with ``Retry-After``;
- ``ndjson``: three JSON lines ``{"n": 0}`` to ``{"n": 2}`` (Ollama's framing).

`unused_url` gives an address where nothing listens (connection refused), and
`raw_upstream_thread` runs the server on an event loop of its own thread.
"""

from __future__ import annotations

import asyncio
import os
import socket
import struct
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Literal

import orjson

Mode = Literal[
    "ok",
    "close",
    "reset",
    "silent",
    "html_502",
    "truncated_json",
    "not_json",
    "no_blank_lines",
    "big_event",
    "cut",
    "drip",
    "rate_limited",
    "ndjson",
]
TEXT_PIECES = ["Hel", "lo", " there"]
HTML_502 = b"<html><head><title>502 Bad Gateway</title></head><body>nginx</body></html>"


def unused_url() -> str:
    """A loopback base URL where nothing listens."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/v1"


def completion(content: str) -> dict[str, Any]:
    """A whole chat completion saying *content*."""
    return {
        "id": "chatcmpl-raw",
        "object": "chat.completion",
        "created": 1_700_000_000,
        "model": "m",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": content},
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
    }


def chunk(content: str | None, finish: str | None = None) -> bytes:
    """One stream chunk as JSON."""
    delta = {} if content is None else {"content": content}
    return orjson.dumps(
        {
            "id": "chatcmpl-raw",
            "object": "chat.completion.chunk",
            "created": 1_700_000_000,
            "model": "m",
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        }
    )


def sse_events(separator: bytes = b"\n\n") -> list[bytes]:
    """The frames of a good stream; *separator* ends each one."""
    frames = [b"data: " + chunk(piece) for piece in TEXT_PIECES]
    frames += [b"data: " + chunk(None, "stop"), b"data: [DONE]"]
    return [frame + separator for frame in frames]


def _head(status: str, headers: dict[str, str]) -> bytes:
    lines = [f"HTTP/1.1 {status}", "Connection: close", *(f"{k}: {v}" for k, v in headers.items())]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def _framed(data: bytes) -> bytes:
    """*data* as one chunk of a chunked body."""
    return f"{len(data):x}\r\n".encode() + data + b"\r\n"


SSE_HEAD = _head("200 OK", {"Content-Type": "text/event-stream", "Transfer-Encoding": "chunked"})
NDJSON_HEAD = _head(
    "200 OK", {"Content-Type": "application/x-ndjson", "Transfer-Encoding": "chunked"}
)
END_OF_CHUNKS = b"0\r\n\r\n"


@dataclass
class RawUpstream:
    """The server and its knobs; use it as ``async with RawUpstream() as raw``."""

    mode: Mode = "ok"
    cut_after: int = 2
    drip_interval: float = 1.0
    big_bytes: int = 10 * 1024 * 1024
    retry_after: str = "7"
    requests: int = 0
    _server: asyncio.Server | None = None
    _handlers: set[asyncio.Task[None]] = field(default_factory=set)
    _stop: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def url(self) -> str:
        """The base URL an OpenAI-compatible connection uses."""
        assert self._server is not None, "the server is not started"
        port = self._server.sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}/v1"

    async def __aenter__(self) -> RawUpstream:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        assert self._server is not None
        self._server.close()
        # A handler still waiting (silent, drip) is told to stop, not cancelled: Python
        # 3.11's stream server reports a cancelled handler as an unhandled error.
        self._stop.set()
        await asyncio.gather(*self._handlers, return_exceptions=True)
        await self._server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        try:
            stream = await _read_request(reader)
            self.requests += 1
            await self._answer(self.mode, stream, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass  # the client went away first: nothing to answer
        finally:
            self._handlers.discard(task)
            writer.close()
            try:
                await writer.wait_closed()
            except ConnectionError:
                pass  # already reset; nothing left to flush

    async def _answer(self, mode: Mode, stream: bool, writer: asyncio.StreamWriter) -> None:
        if mode == "close":
            return
        if mode == "silent":
            await self._stop.wait()
        if mode == "rate_limited":
            body = orjson.dumps({"error": {"message": "slow down", "code": "rate_limit_exceeded"}})
            headers = {"Retry-After": self.retry_after}
            await _send(writer, _json_head("429 Too Many Requests", len(body), headers) + body)
        elif mode == "html_502":
            head = {"Content-Type": "text/html", "Content-Length": str(len(HTML_502))}
            await _send(writer, _head("502 Bad Gateway", head) + HTML_502)
        elif mode == "not_json":
            text = b"Hello, I am a web page and not an API."
            head = {"Content-Type": "text/plain", "Content-Length": str(len(text))}
            await _send(writer, _head("200 OK", head) + text)
        elif mode == "ndjson":
            lines = b"".join(_framed(orjson.dumps({"n": n}) + b"\n") for n in range(3))
            await _send(writer, NDJSON_HEAD + lines + END_OF_CHUNKS)
        elif mode == "no_blank_lines":
            await _send(writer, SSE_HEAD + _framed(b"".join(sse_events(b"\n"))) + END_OF_CHUNKS)
        elif stream:
            await self._answer_stream(mode, writer)
        else:
            await self._answer_whole(mode, writer)

    async def _answer_whole(self, mode: Mode, writer: asyncio.StreamWriter) -> None:
        content = "x" * self.big_bytes if mode == "big_event" else "".join(TEXT_PIECES)
        body = orjson.dumps(completion(content))
        if mode == "truncated_json":
            body = body[: len(body) // 2]
        head = _json_head("200 OK", len(body), {})
        if mode in ("ok", "big_event", "truncated_json"):
            await _send(writer, head + body)
        elif mode in ("cut", "reset"):
            # The head promises the whole length; only half of it comes.
            await _send(writer, head + body[: len(body) // 2])
            await self._then_break(mode, writer)
        elif mode == "drip":
            await _send(writer, head)
            await self._drip(body, writer)

    async def _answer_stream(self, mode: Mode, writer: asyncio.StreamWriter) -> None:
        frames = sse_events()
        if mode == "truncated_json":
            frames = [b'data: {"id": "chatcmpl-raw", "choi\n\n']
        elif mode == "big_event":
            frames = [b"data: " + chunk("x" * self.big_bytes) + b"\n\n", *frames[-2:]]
        if mode in ("ok", "truncated_json", "big_event"):
            await _send(writer, SSE_HEAD + b"".join(_framed(f) for f in frames) + END_OF_CHUNKS)
        elif mode in ("cut", "reset"):
            sent = b"".join(_framed(f) for f in frames[: self.cut_after])
            await _send(writer, SSE_HEAD + sent)
            await self._then_break(mode, writer)
        elif mode == "drip":
            await _send(writer, SSE_HEAD)
            await self._drip(b"".join(frames), writer, chunked=True)
            await _send(writer, END_OF_CHUNKS)

    async def _then_break(self, mode: Mode, writer: asyncio.StreamWriter) -> None:
        # A moment for the client to take in what was sent before the connection
        # breaks, so the break lands mid-body and not before the head.
        await asyncio.sleep(0.1)
        if mode == "reset":
            sock = writer.get_extra_info("socket")
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))

    async def _drip(self, data: bytes, writer: asyncio.StreamWriter, chunked: bool = False) -> None:
        for byte in data:
            one = bytes([byte])
            await _send(writer, _framed(one) if chunked else one)
            if await self._pause(self.drip_interval):
                return

    async def _pause(self, seconds: float) -> bool:
        """Wait *seconds*; whether the server is stopping meanwhile."""
        try:
            async with asyncio.timeout(seconds):
                await self._stop.wait()
        except TimeoutError:
            return False
        return True


def _json_head(status: str, length: int, headers: dict[str, str]) -> bytes:
    return _head(
        status, {"Content-Type": "application/json", "Content-Length": str(length), **headers}
    )


async def _send(writer: asyncio.StreamWriter, data: bytes) -> None:
    writer.write(data)
    await writer.drain()


async def _read_request(reader: asyncio.StreamReader) -> bool:
    """Read one request; whether it asks for a stream."""
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    body = orjson.loads(await reader.readexactly(length)) if length else {}
    return bool(isinstance(body, dict) and body.get("stream"))


@contextmanager
def raw_upstream_thread(niceness: int | None = None, **knobs: Any) -> Iterator[RawUpstream]:
    """A `RawUpstream` (with *knobs*) serving from its own thread and event loop, that
    thread at *niceness* when given (it then yields the CPU to what a test measures)."""
    # For tests that time another client: the upstream's writes (10 MB events, drips)
    # then never wait behind the test's own loop, nor the test behind them.
    loop = asyncio.new_event_loop()

    def run() -> None:
        if niceness is not None:
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), niceness)
        loop.run_forever()

    thread = threading.Thread(target=run, name="raw-upstream", daemon=True)
    thread.start()
    raw = RawUpstream(**knobs)
    try:
        asyncio.run_coroutine_threadsafe(raw.__aenter__(), loop).result(timeout=10)
        try:
            yield raw
        finally:
            stop = raw.__aexit__(None, None, None)
            asyncio.run_coroutine_threadsafe(stop, loop).result(timeout=10)
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        loop.close()
