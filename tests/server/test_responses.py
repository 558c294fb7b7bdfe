"""How an answer ends when the server stopping past its ``shutdown_timeout`` cancels
it: a stream that began, with the door's error frame and a proper end; an answer not
yet begun, as the door's 503; and never with a wait on a client that stopped reading."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest

from chatgate.errors import ChatgateError
from chatgate.server import responses
from chatgate.server.dispatch import shutdown_frame
from chatgate.server.doors import anthropic, ollama, openai
from chatgate.server.doors.base import Door
from chatgate.server.responses import EventStream, JSONBody


async def _frames() -> AsyncIterator[bytes]:
    yield b"data: 1\n\n"
    yield b"data: 2\n\n"
    await asyncio.sleep(3600)  # an upstream still talking when the server stops
    yield b"data: never\n\n"


def _render(exc: BaseException) -> tuple[int, Any, dict[str, str]]:
    return 500, {"error": str(exc)}, {}


async def _cut_stream(stream: EventStream, send: Any) -> None:
    """Run *stream* until it has sent two frames, then cancel it as uvicorn does."""
    forever = asyncio.Event()

    async def receive() -> dict[str, Any]:
        await forever.wait()
        return {"type": "http.disconnect"}

    task = asyncio.ensure_future(stream({"type": "http"}, receive, send))
    await asyncio.sleep(0.05)
    task.cancel(msg="Task cancelled, timeout graceful shutdown exceeded")
    with pytest.raises(asyncio.CancelledError):
        await task


# Each door's own words for it: OpenAI's code, Anthropic's type for a 503, Ollama's
# error string (it has no codes).
DOORS = [
    (openai.DOOR, ("code", "server_shutting_down")),
    (anthropic.DOOR, ("type", "overloaded_error")),
    (ollama.OllamaChatDoor(), None),
]


@pytest.mark.parametrize(("door", "kind"), DOORS, ids=lambda d: getattr(d, "name", ""))
def test_a_cut_stream_ends_with_the_doors_error_and_a_proper_end(
    door: Door, kind: tuple[str, str] | None
) -> None:
    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    stream = EventStream(_frames(), {}, _render, cut=shutdown_frame(door))
    asyncio.run(_cut_stream(stream, send))
    bodies = [m.get("body", b"") for m in sent if m["type"] == "http.response.body"]
    assert bodies[:2] == [b"data: 1\n\n", b"data: 2\n\n"]
    assert bodies[-1] == b"" and not sent[-1].get("more_body")  # the body's end
    last = bodies[-2]
    assert last == shutdown_frame(door)()
    error = orjson.loads(last[last.index(b"{") :])["error"]
    said = error if kind is None else error["message"]
    assert "shutting down" in said
    if kind is not None:
        assert error[kind[0]] == kind[1]


def test_without_a_cut_frame_the_stream_is_only_cancelled() -> None:
    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    asyncio.run(_cut_stream(EventStream(_frames(), {}, _render), send))
    assert [m.get("body") for m in sent[1:]] == [b"data: 1\n\n", b"data: 2\n\n"]


def test_a_client_that_stopped_reading_does_not_hold_the_cut(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(responses, "LAST_FRAME_SECONDS", 0.05)
    frames_sent = 0

    async def send(message: dict[str, Any]) -> None:
        nonlocal frames_sent
        if message["type"] == "http.response.body":
            frames_sent += 1
            if frames_sent > 2:  # the last frame: the socket's buffer is full
                await asyncio.sleep(3600)

    async def run() -> float:
        loop = asyncio.get_running_loop()
        started = loop.time()
        await _cut_stream(
            EventStream(_frames(), {}, _render, cut=shutdown_frame(openai.DOOR)), send
        )
        return loop.time() - started

    assert asyncio.run(run()) < 1.0


def _door_render(door: Door) -> Any:
    def render(exc: BaseException) -> tuple[int, Any, dict[str, str]]:
        assert isinstance(exc, ChatgateError)
        return exc.status, door.encode_error(exc), exc.headers

    return render


async def _cut_before_answering(app: Any) -> list[dict[str, Any]]:
    """Run *app* (an answer not yet made), cancel it as uvicorn does; what it sent."""
    sent: list[dict[str, Any]] = []
    forever = asyncio.Event()

    async def receive() -> dict[str, Any]:
        await forever.wait()
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    task = asyncio.ensure_future(app({"type": "http"}, receive, send))
    await asyncio.sleep(0.05)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    return sent


async def _never() -> tuple[int, Any, dict[str, str]]:
    await asyncio.sleep(3600)
    raise AssertionError("unreachable")


async def _no_first_frame() -> AsyncIterator[bytes]:
    await asyncio.sleep(3600)
    yield b"data: never\n\n"


@pytest.mark.parametrize(
    "make",
    [
        lambda render: JSONBody(_never, render),
        lambda render: EventStream(_no_first_frame(), {}, render),
    ],
    ids=["whole answer", "stream before its first frame"],
)
def test_an_answer_cut_before_it_began_is_the_doors_503(make: Any) -> None:
    sent = asyncio.run(_cut_before_answering(make(_door_render(openai.DOOR))))
    start, body = sent
    assert start["status"] == 503
    assert (b"retry-after", b"1") in start["headers"]
    error = orjson.loads(body["body"])["error"]
    assert error["code"] == "server_shutting_down" and "shutting down" in error["message"]
