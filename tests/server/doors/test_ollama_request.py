"""Ollama bodies as chatgate requests, without a server: options, format, think, raw
prompts, tool-call ids, and the names errors give the fields."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest

from chatgate.config import Connection, Settings
from chatgate.errors import ChatgateError, InvalidRequestError, UnsupportedParameterError
from chatgate.gateway import Gateway
from chatgate.server.doors.ollama import CHAT, GENERATE, NDJSON
from chatgate.server.doors.ollama_options import request_fields
from chatgate.server.doors.ollama_request import Preloaded
from chatgate.server.responses import EventStream
from chatgate.types import ChatRequest

HI = [{"role": "user", "content": "Hi"}]


@pytest.fixture(scope="module")
def gateway() -> Gateway:
    """The embedded model (not started), a custom chat API and an Ollama server."""
    return Gateway(
        Settings(
            connections=[
                Connection(name="local", source="local"),
                Connection(name="api", source="custom", base_url="http://127.0.0.1:9/v1"),
                Connection(name="ol", source="ollama", base_url="http://127.0.0.1:9"),
            ]
        )
    )


def chat(gateway: Gateway, **body: Any) -> ChatRequest:
    return CHAT.decode(orjson.dumps({"model": "api/m", "messages": HI, **body}), gateway)


def generate(gateway: Gateway, **body: Any) -> ChatRequest:
    return GENERATE.decode(orjson.dumps({"model": "api/m", **body}), gateway)


@pytest.mark.parametrize(
    ("options", "to_ollama", "fields"),
    [
        (
            {"num_predict": 8, "temperature": 0, "top_p": 0.9, "top_k": 40, "seed": 1},
            False,
            {"max_tokens": 8, "temperature": 0.0, "top_p": 0.9, "top_k": 40, "seed": 1},
        ),
        (
            {"min_p": 0.05, "repeat_penalty": 1.1, "presence_penalty": 0.5},
            False,
            {"min_p": 0.05, "repetition_penalty": 1.1, "presence_penalty": 0.5},
        ),
        (
            {"frequency_penalty": 1, "stop": ["\n", "User:"]},
            False,
            {"frequency_penalty": 1.0, "stop": ["\n", "User:"]},
        ),
        ({"stop": "###"}, False, {"stop": ["###"]}),
        ({"num_predict": -1, "seed": -1}, False, {}),  # no limit, a random seed: the defaults
        ({"num_predict": 7.9}, False, {"max_tokens": 7}),  # truncated, as Ollama does
        ({"temperature": None}, False, {}),
        ({"num_ctx": 8192, "num_gpu": 1, "num_thread": 4}, False, {}),
        ({"num_ctx": 8192, "num_thread": 4}, True, {"num_ctx": 8192, "num_thread": 4}),
        ({"typical_p": 1.0, "repeat_last_n": 64}, False, {"repeat_last_n": 64}),
        ({"typical_p": 0.7}, False, {"typical_p": 0.7}),
        ({"typical_p": 1.0}, True, {"typical_p": 1.0}),
        ({"mirostat": 2, "tfs_z": 0.9, "low_vram": True, "whatever": "x"}, True, {}),
    ],
)
def test_options_map_to_request_fields(
    options: dict[str, Any], to_ollama: bool, fields: dict[str, Any]
) -> None:
    assert request_fields(options, to_ollama=to_ollama) == fields


def test_options_chatgate_cannot_honour_are_ignored_with_a_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.WARNING, "chatgate.server"):
        assert request_fields({"mirostat": 1, "num_ctx": 4096, "top_k": 3}, to_ollama=False) == {
            "top_k": 3
        }
    assert "options ignored: 'mirostat'" in caplog.text and "num_ctx" not in caplog.text


def test_a_chat_body(gateway: Gateway) -> None:
    request = chat(gateway, options={"num_predict": 8}, format="json", think=True)
    assert request.model == "api/m" and request.stream and request.max_tokens == 8
    assert request.stream_options is not None and request.stream_options.include_usage
    assert request.response_format is not None and request.response_format.type == "json_object"
    assert (request.model_extra or {}).get("reasoning_effort") == "medium"
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}}
    fixed = chat(gateway, stream=False, format=schema, think="max", keep_alive="5m")
    assert not fixed.stream and fixed.stream_options is None
    assert fixed.model_dump(by_alias=True)["response_format"]["json_schema"]["schema"] == schema
    assert fixed.model_extra == {"reasoning_effort": "high"}  # keep_alive means nothing here
    assert chat(gateway, think=False).model_extra == {}


def test_ollama_s_own_fields_go_to_an_ollama_connection(gateway: Gateway) -> None:
    request = chat(
        gateway, model="ol/qwen3:0.6b", think="low", keep_alive=0, options={"num_ctx": 2048}
    )
    assert request.model == "ol/qwen3:0.6b"
    assert request.model_extra == {"think": "low", "keep_alive": 0, "num_ctx": 2048}


def test_tool_calls_get_ids_and_tool_results_find_their_call(gateway: Gateway) -> None:
    call = {"function": {"name": "get_weather", "arguments": {"city": "Paris"}}}
    other = {"id": "call_x", "function": {"name": "get_time", "arguments": "{}"}}
    messages = [
        {"role": "user", "content": "Weather and time?"},
        {"role": "Assistant", "content": "", "tool_calls": [other, call]},
        {"role": "tool", "content": "20C", "tool_name": "get_weather"},
        {"role": "tool", "content": "noon"},
    ]
    request = chat(gateway, messages=messages)
    assistant, weather, time = request.messages[1:]
    assert assistant.content is None and assistant.tool_calls is not None
    assert [c.id for c in assistant.tool_calls] == ["call_x", "call_1_1"]
    assert orjson.loads(assistant.tool_calls[1].function.arguments) == {"city": "Paris"}
    assert (weather.tool_call_id, time.tool_call_id) == ("call_1_1", "call_x")


def test_generate_bodies(gateway: Gateway) -> None:
    request = generate(gateway, prompt="Hi", system="Be brief.")
    assert [(m.role, m.content) for m in request.messages] == [
        ("system", "Be brief."),
        ("user", "Hi"),
    ]
    assert request.raw_prompt is None
    raw = generate(gateway, prompt="<|im_start|>user\nHi", raw=True, suffix="end")
    assert raw.raw_prompt == "<|im_start|>user\nHi" and raw.suffix == "end"
    assert [(m.role, m.content) for m in raw.messages] == [("user", "<|im_start|>user\nHi")]


def test_nothing_to_generate_is_a_load_answer(gateway: Gateway) -> None:
    with pytest.raises(Preloaded) as loaded:
        chat(gateway, messages=[])
    assert loaded.value.status == 200 and CHAT.encode_error(loaded.value)["done_reason"] == "load"
    with pytest.raises(Preloaded) as unloaded:
        generate(gateway, prompt="", keep_alive=0)
    body = GENERATE.encode_error(unloaded.value)
    assert body["done_reason"] == "unload" and body["response"] == "" and body["done"] is True


def test_refusals_name_the_field_the_client_wrote(gateway: Gateway) -> None:
    body = {"model": "local/smollm2-135m-instruct", "prompt": "Hi"}
    request = GENERATE.decode(orjson.dumps({**body, "options": {"repeat_penalty": 1.2}}), gateway)
    with pytest.raises(UnsupportedParameterError) as refused:
        gateway.prepare(request)
    said = CHAT.encode_error(refused.value)["error"]
    assert "'options.repeat_penalty' is not supported by the embedded engine" in said
    with pytest.raises(InvalidRequestError) as bad:
        chat(gateway, options={"presence_penalty": 3})
    assert bad.value.param == "options.presence_penalty"
    assert CHAT.error_frame(bad.value).endswith(b"}\n")


async def test_an_event_stream_can_carry_ndjson() -> None:
    async def frames() -> AsyncIterator[bytes]:
        yield b'{"done":true}\n'

    def render(exc: BaseException) -> tuple[int, Any, dict[str, str]]:
        raise AssertionError("no error here")

    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        await asyncio.sleep(3600)
        return {"type": "http.disconnect"}

    async def send(message: Any) -> None:
        sent.append(message)

    await EventStream(frames(), {}, render, media_type=NDJSON)({}, receive, send)
    headers = dict(sent[0]["headers"])
    assert headers[b"content-type"] == b"application/x-ndjson"
    assert headers[b"cache-control"] == b"no-cache"
    assert b"".join(m.get("body", b"") for m in sent[1:]) == b'{"done":true}\n'
    plain = []

    async def send_plain(message: Any) -> None:
        plain.append(message)

    await EventStream(frames(), {}, render)({}, receive, send_plain)
    assert dict(plain[0]["headers"])[b"content-type"].startswith(b"text/event-stream")


def test_error_bodies_are_ollama_s() -> None:
    assert CHAT.encode_error(ChatgateError("boom")) == {"error": "boom"}
    assert GENERATE.error_frame(ChatgateError("boom")) == b'{"error":"boom"}\n'
