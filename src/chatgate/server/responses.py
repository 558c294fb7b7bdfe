"""ASGI responses that stop the work as soon as the client goes away.

Starlette's own responses notice a closed connection only when they next write. A
generation can run for a long time before it writes anything (a queued request, a long
prompt, a non-stream answer), so these responses watch ``http.disconnect`` from the
first moment and cancel the work the instant it arrives.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import orjson
from starlette.types import Receive, Scope, Send

from chatgate.errors import ShuttingDownError

# Turns any exception into (status, body, headers) in the door's shape.
RenderError = Callable[[BaseException], tuple[int, Any, dict[str, str]]]

# How long a request that the server cuts may take to send its last words (an error
# answer or frame): a client that stopped reading must not hold the shutdown.
LAST_FRAME_SECONDS = 1.0

JSON_HEADERS = [(b"content-type", b"application/json")]
SSE_HEADERS = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-cache"),
    (b"x-accel-buffering", b"no"),
]


def dumps(value: Any) -> bytes:
    """JSON bytes, fast."""
    return orjson.dumps(value)


def _header_list(headers: dict[str, str]) -> list[tuple[bytes, bytes]]:
    return [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()]


async def _until_disconnect(receive: Receive) -> None:
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return


async def _race(
    work: Awaitable[None],
    receive: Receive,
    last_words: Callable[[], Awaitable[None]] | None = None,
) -> None:
    """Run *work* in this task; cancel it the moment the client disconnects. Cancelled
    by anyone else (the server stopping past its ``shutdown_timeout``), *last_words*
    answer the client first, within `LAST_FRAME_SECONDS`.

    One watcher task per request (not two tasks and a wait): this is the hot path.
    """
    task = asyncio.current_task()
    assert task is not None
    gone = False

    async def watch() -> None:
        nonlocal gone
        await _until_disconnect(receive)
        gone = True
        task.cancel()

    watcher = asyncio.get_running_loop().create_task(watch())
    try:
        await work
    except asyncio.CancelledError:
        if not gone:
            if last_words is not None:
                await _bounded(last_words())
            raise
        task.uncancel()  # the cancellation was ours: the client is gone, nothing to send
    finally:
        watcher.cancel()


async def _bounded(words: Awaitable[None]) -> None:
    try:
        async with asyncio.timeout(LAST_FRAME_SECONDS):
            await words
    except (TimeoutError, OSError):
        pass  # the client stopped reading or the socket broke: the cut stands as it is


class JSONBody:
    """A JSON answer computed by *produce* while the client is still there (a value to
    encode, or bytes already encoded). Cancelled before it answers (the server stopping
    past its ``shutdown_timeout``), it answers the 503 ``server_shutting_down`` in the
    door's shape."""

    def __init__(
        self,
        produce: Callable[[], Awaitable[tuple[int, Any, dict[str, str]]]],
        render_error: RenderError,
    ) -> None:
        self.produce = produce
        self.render_error = render_error

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        answering = False

        async def work() -> None:
            nonlocal answering
            try:
                status, body, headers = await self.produce()
            except Exception as exc:  # any failure, a bug included, in the door's shape
                status, body, headers = self.render_error(exc)
            answering = True
            await _answer(send, status, body, headers)

        async def cut() -> None:
            if not answering:
                await _answer(send, *self.render_error(ShuttingDownError()))

        await _race(work(), receive, cut)


class EventStream:
    """Server-sent events: each item of *frames* is one whole frame (bytes); with
    *media_type*, a stream of frames of that type instead (Ollama's NDJSON lines).

    An error raised before the first frame still gets a plain JSON error with its own
    status; after that, *frames* must report errors as frames itself (a stream that has
    started cannot change its status). Cancelled by the server stopping past its
    ``shutdown_timeout``, a stream not yet begun answers the 503 ``server_shutting_down``,
    and one that began ends with the frame *cut* makes, if given, and a proper end, so
    that the client reads an error rather than a broken body.
    """

    def __init__(
        self,
        frames: AsyncIterator[bytes],
        headers: dict[str, str],
        render_error: RenderError,
        media_type: str | None = None,
        cut: Callable[[], bytes] | None = None,
    ) -> None:
        self.frames = frames
        self.headers = headers
        self.render_error = render_error
        self.cut = cut
        self.start_headers = SSE_HEADERS
        if media_type is not None:
            self.start_headers = [(b"content-type", media_type.encode("latin-1")), *SSE_HEADERS[1:]]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = False

        async def work() -> None:
            nonlocal started
            try:
                first = await anext(self.frames)
            except StopAsyncIteration:
                first = b""
            except Exception as exc:
                await _answer(send, *self.render_error(exc))
                return
            await send(
                {
                    "type": "http.response.start",
                    "status": 200,
                    "headers": self.start_headers + _header_list(self.headers),
                }
            )
            started = True
            await send({"type": "http.response.body", "body": first, "more_body": True})
            async for frame in self.frames:
                await send({"type": "http.response.body", "body": frame, "more_body": True})
            await send({"type": "http.response.body", "body": b""})

        async def cut() -> None:
            if not started:
                await _answer(send, *self.render_error(ShuttingDownError()))
            elif self.cut is not None:
                await send({"type": "http.response.body", "body": self.cut(), "more_body": True})
                await send({"type": "http.response.body", "body": b""})

        try:
            await _race(work(), receive, cut)
        finally:
            aclose = getattr(self.frames, "aclose", None)
            if aclose is not None:
                await aclose()


async def _answer(send: Send, status: int, body: Any, headers: dict[str, str]) -> None:
    """A whole JSON answer: *body* is a value to encode, or bytes already encoded."""
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": JSON_HEADERS + _header_list(headers),
        }
    )
    await send(
        {"type": "http.response.body", "body": body if isinstance(body, bytes) else dumps(body)}
    )
