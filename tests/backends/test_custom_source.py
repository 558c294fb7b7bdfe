"""The ``custom`` source against a fake of llama_cpp.server's quirks: a base URL without
``/v1``, ``max_completion_tokens`` it ignores, ``json_schema`` it refuses with a
traceback, llama.cpp's own ``json_object`` + ``schema``, and no usage in a stream."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import jsonschema
import orjson
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from chatgate.config import Connection, Settings
from chatgate.errors import ChatgateError, InvalidRequestError, NotFoundError, UpstreamError
from chatgate.gateway import Gateway
from chatgate.types import ChatChunk
from tests.fakes.common import sample
from tests.fakes.openai_server import FakeOpenAI, Seen, serve

SCHEMA = {
    "type": "object",
    "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
    "required": ["city", "days"],
}
HI = [{"role": "user", "content": "Hi"}]
PIECES = ["Hel", "lo", " there", "."]
# What llama_cpp.server answers when something inside it raises: its message, with the
# traceback it printed, and the paths of its files.
TRACEBACK = (
    "Traceback (most recent call last):\n"
    '  File "/srv/llama/.venv/lib/python3.11/site-packages/llama_cpp/server/app.py", '
    "line 513, in create_chat_completion\n"
    "    response = await run_in_threadpool(llama.create_chat_completion, **kwargs)\n"
    '  File "/srv/llama/.venv/lib/python3.11/site-packages/llama_cpp/llama_chat_format.py", '
    "line 612, in chat_completion_handler\n"
    '    raise ValueError(f"unsupported response_format {kind}")\n'
    "ValueError: unsupported response_format json_schema"
)


@dataclass
class FakeLlamaServer:
    """The knobs and the record of a llama_cpp.server look-alike."""

    url: str = ""
    seen: list[Seen] = field(default_factory=list)
    json_schema_status: int = 500  # what a json_schema response_format gets
    json_object_ok: bool = True  # whether llama.cpp's own form is honoured
    free_text: str = '{"city": "Oslo", "days": 2}'  # an unconstrained answer

    def chats(self) -> list[Seen]:
        return [s for s in self.seen if s.path.endswith("/chat/completions")]

    def reset(self) -> None:
        self.seen.clear()
        self.json_schema_status, self.json_object_ok = 500, True
        self.free_text = '{"city": "Oslo", "days": 2}'


def _error(status: int, message: str) -> Response:
    body = {"error": {"message": message, "type": "internal_server_error"}}
    return Response(orjson.dumps(body), status_code=status, media_type="application/json")


def _text(state: FakeLlamaServer, body: dict[str, Any]) -> str | Response:
    fmt = body.get("response_format") or {}
    if fmt.get("type") == "json_schema":
        if state.json_schema_status == 500:
            return _error(500, TRACEBACK)
        return _error(state.json_schema_status, "response_format.type: unexpected value")
    if fmt.get("type") == "json_object" and "schema" in fmt:
        if not state.json_object_ok:
            return _error(500, TRACEBACK.replace("json_schema", "json_object"))
        return orjson.dumps(sample(fmt["schema"])).decode()
    if body["messages"][-1]["content"] == "json please":
        return state.free_text
    return "".join(PIECES)


def build_app(state: FakeLlamaServer) -> Starlette:
    """Only under /v1, as llama_cpp.server serves; anything else is FastAPI's 404."""

    async def chat(request: Request) -> Response:
        body = orjson.loads(await request.body())
        state.seen.append(Seen("POST", request.url.path, dict(request.headers), body))
        text = _text(state, body)
        if isinstance(text, Response):
            return text
        base = {"id": "chatcmpl-llama", "created": 1_700_000_000, "model": body["model"]}
        if not body.get("stream"):  # stream_options is ignored, as llama_cpp.server does
            choice = {"index": 0, "message": {"role": "assistant", "content": text}}
            usage = {"prompt_tokens": 9, "completion_tokens": 4, "total_tokens": 13}
            answer = {**base, "choices": [{**choice, "finish_reason": "stop"}], "usage": usage}
            return Response(orjson.dumps(answer), media_type="application/json")
        pieces = PIECES if text == "".join(PIECES) else [text]

        async def frames() -> Any:
            for delta, finish in [
                ({"role": "assistant"}, None),
                *(({"content": p}, None) for p in pieces),
                ({}, "stop"),
            ]:
                chunk = {**base, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
                yield b"data: " + orjson.dumps(chunk) + b"\n\n"
            yield b"data: [DONE]\n\n"

        return StreamingResponse(frames(), media_type="text/event-stream")

    async def models(request: Request) -> Response:
        state.seen.append(Seen("GET", request.url.path, dict(request.headers), None))
        return Response(orjson.dumps({"object": "list", "data": [{"id": "smol"}]}))

    async def missing(request: Request) -> Response:
        state.seen.append(Seen(request.method, request.url.path, dict(request.headers), None))
        return Response(b'{"detail":"Not Found"}', 404, media_type="application/json")

    return Starlette(
        routes=[
            Route("/v1/chat/completions", chat, methods=["POST"]),
            Route("/v1/models", models, methods=["GET"]),
            Route("/{rest:path}", missing, methods=["GET", "POST"]),
        ]
    )


@pytest.fixture(scope="module")
def llama_fake() -> Iterator[FakeLlamaServer]:
    state = FakeLlamaServer()
    for url in serve(build_app(state)):
        state.url = url
        yield state


@pytest.fixture()
def llama(llama_fake: FakeLlamaServer) -> FakeLlamaServer:
    llama_fake.reset()
    return llama_fake


def gateway(url: str, source: str = "custom", **fields: Any) -> Gateway:
    conn = Connection(name="up", source=source, base_url=url, **fields)
    return Gateway(Settings(embedded=False, connections=[conn]))


def text_of(chunks: list[ChatChunk]) -> str:
    return "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)


# --- a base URL without /v1 ---------------------------------------------------------


async def test_chat_at_a_bare_base_url_moves_to_v1(
    llama: FakeLlamaServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, "chatgate.connections")
    async with gateway(llama.url) as gw:
        first = await gw.chat(model="up/smol", messages=HI)
        second = await gw.chat(model="up/smol", messages=HI)
    assert first.text == second.text == "Hello there."
    paths = [s.path for s in llama.seen]
    assert paths == ["/chat/completions", "/v1/chat/completions", "/v1/chat/completions"]
    assert f'using base_url = "{llama.url}/v1" (put it in the config)' in caplog.text


async def test_stream_at_a_bare_base_url_moves_to_v1(llama: FakeLlamaServer) -> None:
    async with gateway(llama.url) as gw:
        chunks = [c async for c in gw.stream(model="up/smol", messages=HI)]
        again = [c async for c in gw.stream(model="up/smol", messages=HI)]
    assert text_of(chunks) == text_of(again) == "Hello there."
    assert [s.path for s in llama.seen] == [
        "/chat/completions",
        "/v1/chat/completions",
        "/v1/chat/completions",
    ]


async def test_a_second_404_says_what_to_try(llama: FakeLlamaServer) -> None:
    async with gateway(f"{llama.url}/api") as gw:
        with pytest.raises(NotFoundError) as caught:
            await gw.chat(model="up/smol", messages=HI)
        with pytest.raises(NotFoundError) as streamed:
            [c async for c in gw.stream(model="up/smol", messages=HI)]
    for exc in (caught.value, streamed.value):
        assert "answered 404" in exc.message and "try adding /v1" in exc.message
        assert f"{llama.url}/api/v1" in exc.message
    assert [s.path for s in llama.seen][:2] == ["/api/chat/completions", "/api/v1/chat/completions"]


async def test_a_versioned_base_url_is_not_second_guessed(llama: FakeLlamaServer) -> None:
    async with gateway(f"{llama.url}/api/v2") as gw:
        with pytest.raises(NotFoundError):
            await gw.chat(model="up/smol", messages=HI)
    assert [s.path for s in llama.seen] == ["/api/v2/chat/completions"]


# --- max_completion_tokens ----------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "sent"),
    [
        ({"max_completion_tokens": 5}, {"max_tokens": 5}),
        ({"max_completion_tokens": 5, "max_tokens": 9}, {"max_tokens": 5}),
        ({"max_completion_tokens": 9, "max_tokens": 5}, {"max_tokens": 5}),
        ({"max_tokens": 7}, {"max_tokens": 7}),
    ],
)
async def test_custom_sends_the_bound_as_max_tokens(
    llama: FakeLlamaServer, fields: dict[str, int], sent: dict[str, int]
) -> None:
    async with gateway(f"{llama.url}/v1") as gw:
        await gw.chat(model="up/smol", messages=HI, **fields)
    body = llama.chats()[-1].body
    assert {k: v for k, v in body.items() if k.startswith("max_")} == sent


async def test_openai_keeps_the_newer_name(fake: FakeOpenAI) -> None:
    async with gateway(f"{fake.url}/v1", source="openai", api_key="sk-x-00000000") as gw:
        await gw.chat(model="up/gpt-fake-1", messages=HI, max_completion_tokens=5)
    body = fake.last("/chat/completions").body
    assert body["max_completion_tokens"] == 5 and "max_tokens" not in body


# --- llama.cpp's json_object + schema -----------------------------------------------


async def test_json_object_with_a_schema_passes_through_and_is_checked(
    llama: FakeLlamaServer,
) -> None:
    fmt = {"type": "json_object", "schema": SCHEMA}
    async with gateway(f"{llama.url}/v1") as gw:
        answer = await gw.chat(model="up/smol", messages=HI, response_format=fmt)
    jsonschema.validate(orjson.loads(answer.text), SCHEMA)
    assert llama.chats()[-1].body["response_format"] == fmt


async def test_json_object_schema_that_is_broken_is_a_400(llama: FakeLlamaServer) -> None:
    fmt = {"type": "json_object", "schema": {"type": "no-such-type"}}
    async with gateway(f"{llama.url}/v1") as gw:
        with pytest.raises(InvalidRequestError) as caught:
            await gw.chat(model="up/smol", messages=HI, response_format=fmt)
    assert caught.value.param == "response_format.schema"
    assert not llama.chats()


async def test_elsewhere_json_object_with_a_schema_is_sent_as_json_schema(
    fake: FakeOpenAI,
) -> None:
    fmt = {"type": "json_object", "schema": SCHEMA}
    async with gateway(f"{fake.url}/v1", source="openai", api_key="sk-x-00000000") as gw:
        answer = await gw.chat(model="up/gpt-fake-1", messages=HI, response_format=fmt)
    jsonschema.validate(orjson.loads(answer.text), SCHEMA)
    sent = fake.last("/chat/completions").body["response_format"]
    assert sent["type"] == "json_schema" and sent["json_schema"]["schema"] == SCHEMA


# --- a refused json_schema ----------------------------------------------------------

JSON_SCHEMA = {"type": "json_schema", "json_schema": {"name": "trip", "schema": SCHEMA}}


@pytest.mark.parametrize("status", [500, 400, 422])
async def test_a_refused_json_schema_is_sent_in_the_servers_form_and_remembered(
    llama: FakeLlamaServer, status: int, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, "chatgate.connections")
    llama.json_schema_status = status
    async with gateway(f"{llama.url}/v1") as gw:
        answer = await gw.chat(model="up/smol", messages=HI, response_format=JSON_SCHEMA)
        chunks = [
            c async for c in gw.stream(model="up/smol", messages=HI, response_format=JSON_SCHEMA)
        ]
    jsonschema.validate(orjson.loads(answer.text), SCHEMA)
    jsonschema.validate(orjson.loads(text_of(chunks)), SCHEMA)
    kinds = [s.body["response_format"]["type"] for s in llama.chats()]
    assert kinds == ["json_schema", "json_object", "json_object"]  # learned once
    assert "json_object + schema (llama.cpp's form) from now on" in caplog.text
    assert "Traceback" not in caplog.text and "/srv/llama" not in caplog.text


async def test_neither_form_then_unconstrained_and_checked(llama: FakeLlamaServer) -> None:
    llama.json_object_ok = False
    ask = [{"role": "user", "content": "json please"}]
    async with gateway(f"{llama.url}/v1", guided_retries=1) as gw:
        answer = await gw.chat(model="up/smol", messages=ask, response_format=JSON_SCHEMA)
        assert orjson.loads(answer.text) == {"city": "Oslo", "days": 2}
        streamed = [
            c async for c in gw.stream(model="up/smol", messages=ask, response_format=JSON_SCHEMA)
        ]
        assert orjson.loads(text_of(streamed)) == {"city": "Oslo", "days": 2}
        assert streamed[-1].choices[0].finish_reason == "stop"
        llama.free_text = '{"city": "Oslo"}'  # misses "days": checked, asked again, a 502
        with pytest.raises(UpstreamError) as caught:
            await gw.chat(model="up/smol", messages=ask, response_format=JSON_SCHEMA)
        with pytest.raises(UpstreamError) as in_stream:
            [c async for c in gw.stream(model="up/smol", messages=ask, response_format=JSON_SCHEMA)]
    for exc in (caught.value, in_stream.value):
        assert exc.code == "invalid_model_output" and "(after 2 attempts)" in exc.message
    forms = [(s.body.get("response_format") or {}).get("type") for s in llama.chats()]
    assert forms == ["json_schema", "json_object", None, None, None, None, None, None]


async def test_a_refusal_that_stays_is_relayed_without_its_traceback(
    llama: FakeLlamaServer,
) -> None:
    llama.json_object_ok = False
    bad = {"type": "json_object", "schema": SCHEMA}  # the client's own form: no other
    async with gateway(f"{llama.url}/v1") as gw:
        llama.free_text = "not json"
        with pytest.raises(ChatgateError) as caught:
            await gw.chat(
                model="up/smol",
                messages=[{"role": "user", "content": "json please"}],
                response_format=bad,
            )
    assert caught.value.code == "invalid_model_output"
    forms = [s.body.get("response_format", {}).get("type") for s in llama.chats()]
    assert forms[:2] == ["json_object", None]  # the client's form, then unconstrained


async def test_an_upstream_500_reaches_the_client_without_traceback_or_paths(
    llama: FakeLlamaServer,
) -> None:
    llama.json_object_ok = False
    async with gateway(f"{llama.url}/v1", source="openai", api_key="sk-x-00000000") as gw:
        with pytest.raises(UpstreamError) as caught:  # one form only: the 500 is the answer
            await gw.chat(model="up/smol", messages=HI, response_format=JSON_SCHEMA)
    message = caught.value.message
    assert "upstream answered 500: ValueError: unsupported response_format json_schema" in message
    assert "Traceback" not in message and "/srv/" not in message and "line 513" not in message


# --- usage in a stream that reports none --------------------------------------------


async def test_usage_is_counted_when_the_upstream_ignores_stream_options(
    llama: FakeLlamaServer,
) -> None:
    async with gateway(f"{llama.url}/v1") as gw:
        chunks = [
            c
            async for c in gw.stream(
                model="up/smol",
                messages=[{"role": "user", "content": "x" * 40}],
                stream_options={"include_usage": True},
            )
        ]
        plain = [c async for c in gw.stream(model="up/smol", messages=HI)]
    assert llama.chats()[0].body["stream_options"] == {"include_usage": True}  # ignored
    *_, last = chunks
    assert last.choices == [] and last.usage is not None
    assert last.usage.completion_tokens == len(PIECES)  # one per content chunk
    assert last.usage.prompt_tokens == 40 // 4 + 3 + 3  # the estimate docs/providers.md gives
    assert all(c.usage is None for c in plain)


async def test_a_reported_usage_is_not_counted_again(fake: FakeOpenAI) -> None:
    async with gateway(f"{fake.url}/v1") as gw:
        chunks = [
            c
            async for c in gw.stream(
                model="up/gpt-fake-1", messages=HI, stream_options={"include_usage": True}
            )
        ]
    usages = [c.usage for c in chunks if c.usage is not None]
    assert len(usages) == 1 and usages[0].prompt_tokens == 11  # the fake's own count
