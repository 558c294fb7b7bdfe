"""An upstream that answers with the wrong types at any level, through both doors.

Every parser (OpenAI's dialect, Claude, Gemini, Cohere) is fed each broken answer, as a
whole answer and as a stream event, through ``/v1`` and ``/v4``. The client always gets
JSON in the door's own shape, never a plain-text 500 or a traceback in the log.
"""

from __future__ import annotations

import logging
import re
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import orjson
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from chatgate.config import Connection, Settings
from tests.conftest import LiveServer, start_server
from tests.fakes.openai_server import serve

# Wrong types at each level of each protocol's answer; every parser gets every one.
BROKEN: list[Any] = [
    None,
    "a string",
    [],
    {"choices": 3},
    {"choices": ["x"]},
    {"choices": [{"message": 5}]},
    {"choices": [{"message": {"content": 7}, "finish_reason": 5}]},
    {"choices": [{"message": {"tool_calls": "x"}}]},
    {"choices": [{"message": {"tool_calls": [{"function": 5}]}}]},
    {"choices": [{"delta": 5}], "usage": "x"},
    {"choices": [{"delta": {"tool_calls": [{"index": "a"}]}}]},
    {"content": 5, "usage": {"input_tokens": "x"}},
    {"content": [5]},
    {"content": [{"type": "text", "text": 5}]},
    {"type": "content_block_delta", "index": "x", "delta": 5},
    {"type": "message_start", "message": 5},
    {"candidates": None},
    {"candidates": [{"content": 5}]},
    {"candidates": [{"content": {"parts": [5]}}], "usageMetadata": []},
    {"message": 5},
    {"message": {"content": [5], "tool_calls": 7}},
    {"type": "content-delta", "delta": {"message": 5}},
]
SOURCES = ["custom", "claude", "google", "cohere"]
CASE = re.compile(r"case-(\d+)")
DOORS = ["/v1/chat/completions", "/v4/beta/chat/completions"]


def _case(request: Request, body: bytes) -> Any:
    found = CASE.search(request.url.path) or CASE.search(body.decode("utf-8", "replace"))
    assert found is not None
    return BROKEN[int(found.group(1))]


def build_app() -> Starlette:
    async def answer(request: Request) -> Response:
        body = await request.body()
        value = _case(request, body)
        wants_stream = b'"stream":true' in body or "stream" in request.url.path.lower()
        if not wants_stream:
            return Response(orjson.dumps(value), media_type="application/json")

        async def events() -> AsyncIterator[bytes]:
            yield b"data: " + orjson.dumps(value) + b"\n\n"
            yield b"data: [DONE]\n\n"

        return StreamingResponse(events(), media_type="text/event-stream")

    return Starlette(routes=[Route("/{path:path}", answer, methods=["POST"])])


@pytest.fixture(scope="module")
def server() -> Iterator[LiveServer]:
    for url in serve(build_app()):
        connections = [
            Connection(name=f"up-{s}", source=s, base_url=url + "/v1", api_key="sk-broken-key-77")
            for s in SOURCES
        ]
        info, uv, thread = start_server(Settings(connections=connections, embedded=False))
        yield info
        uv.should_exit = True
        thread.join(timeout=10)


def _door_error(path: str, body: Any) -> None:
    if path.startswith("/v4"):
        assert isinstance(body, dict) and set(body) == {"detail"}, body
        assert isinstance(body["detail"], str) and "internal error" not in body["detail"]
    else:
        assert isinstance(body, dict) and set(body) == {"error"}, body
        assert body["error"]["type"] != "server_error" or body["error"]["code"], body
        assert "internal error" not in body["error"]["message"]


def _check(path: str, answer: httpx.Response) -> None:
    assert answer.headers["content-type"].startswith(("application/json", "text/event-stream"))
    if answer.headers["content-type"].startswith("application/json"):
        body = answer.json()
        if answer.status_code == 200:
            assert body["object"] == "chat.completion" and isinstance(body["choices"], list)
        else:
            assert 400 <= answer.status_code < 600 and answer.status_code != 500, answer.text
            _door_error(path, body)
        return
    assert answer.status_code == 200
    for frame in answer.text.split("\n\n"):
        if not frame.strip() or frame == "data: [DONE]":
            continue
        name, _, data = frame.rpartition("\n")
        value = orjson.loads(data.removeprefix("data: "))
        if name == "event: error":
            _door_error(path, value)
        else:
            assert value["object"] == "chat.completion.chunk"


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
@pytest.mark.parametrize("path", DOORS)
@pytest.mark.parametrize("source", SOURCES)
def test_every_broken_answer_is_door_shaped(
    server: LiveServer, source: str, path: str, stream: bool, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    with server.client() as client:
        for i in range(len(BROKEN)):
            body = {
                "model": f"up-{source}/case-{i}",
                "messages": [{"role": "user", "content": "Hi"}],
                "stream": stream,
            }
            answer = client.post(path, json=body)
            _check(path, answer)
    assert "Traceback" not in caplog.text
    assert "unexpected error" not in caplog.text
    assert "sk-broken-key-77" not in caplog.text
