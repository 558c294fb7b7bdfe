"""Every OpenAI-compatible catalogue row against the fake upstream, over real sockets.

For each row: the request URL, headers and body; a non-stream answer; a stream with
tool-call deltas; and an upstream error.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import orjson
import pytest

from chatgate.config import Connection, Settings
from chatgate.errors import AuthenticationError
from chatgate.gateway import Gateway
from chatgate.sources import CHAT_SOURCES, SOURCES
from chatgate.types import ChatChunk
from tests.fakes.openai_server import FakeOpenAI

KEY = "sk-test-upstream-key-9876wxyz"
WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    },
}


def base_path(source_id: str) -> str:
    """The path part of the source's own base URL, so the fake sees realistic paths."""
    default = SOURCES[source_id].default_base_url
    return urlsplit(default).path if default else "/v1"


def gateway_for(fake: FakeOpenAI, source_id: str, **fields: Any) -> Gateway:
    conn = Connection(
        name="up",
        source=source_id,
        base_url=fake.url + base_path(source_id),
        api_key=KEY,
        **fields,
    )
    return Gateway(Settings(connections=[conn], embedded=False))


def assemble(chunks: list[ChatChunk]) -> dict[str, Any]:
    """Tool calls and text put back together the way OpenAI's clients do."""
    text, finish = "", None
    calls: dict[int, dict[str, Any]] = {}
    for chunk in chunks:
        for choice in chunk.choices:
            text += choice.delta.content or ""
            finish = choice.finish_reason or finish
            for delta in choice.delta.tool_calls or []:
                call = calls.setdefault(delta.index, {"id": None, "name": "", "arguments": ""})
                call["id"] = delta.id or call["id"]
                call["name"] += delta.name or ""
                call["arguments"] += delta.arguments or ""
    return {"text": text, "calls": list(calls.values()), "finish": finish}


@pytest.mark.parametrize("source_id", CHAT_SOURCES)
async def test_request_and_non_stream_answer(fake: FakeOpenAI, source_id: str) -> None:
    async with gateway_for(fake, source_id) as gw:
        answer = await gw.chat(
            model="up/gpt-fake-1",
            messages=[{"role": "system", "content": "Be kind."}, {"role": "user", "content": "Hi"}],
            temperature=0.5,
            max_tokens=20,
        )
    assert answer.text == "Hello from the fake."
    assert answer.model == "up/gpt-fake-1"
    assert answer.choices[0].finish_reason == "stop"
    assert answer.usage.total_tokens == 15
    seen = fake.last("/chat/completions")
    assert seen.method == "POST"
    assert seen.path == base_path(source_id) + "/chat/completions"
    assert seen.headers["authorization"] == f"Bearer {KEY}"
    assert seen.headers["content-type"] == "application/json"
    for name, value in SOURCES[source_id].headers:
        assert seen.headers[name.lower()] == value
    body = seen.body
    assert body["model"] == "gpt-fake-1"
    assert body["messages"] == [
        {"role": "system", "content": "Be kind."},
        {"role": "user", "content": "Hi"},
    ]
    assert body["temperature"] == 0.5
    assert body["max_tokens"] == 20
    assert "stream" not in body


@pytest.mark.parametrize("source_id", CHAT_SOURCES)
async def test_stream_with_tool_call_deltas(fake: FakeOpenAI, source_id: str) -> None:
    rejects_tools = "tools" in SOURCES[source_id].rejects
    extra = {} if rejects_tools else {"tools": [WEATHER_TOOL], "tool_choice": "auto"}
    async with gateway_for(fake, source_id) as gw:
        chunks = [
            c
            async for c in gw.stream(
                model="up/tool-model",
                messages=[{"role": "user", "content": "Weather?"}],
                stream_options={"include_usage": True},
                **extra,
            )
        ]
    result = assemble(chunks)
    assert result["calls"] == [
        {"id": "call_abc123", "name": "get_weather", "arguments": '{"city": "Paris"}'}
    ]
    assert result["finish"] == "tool_calls"
    assert chunks[0].choices[0].delta.role == "assistant"
    assert chunks[-1].choices == []
    assert chunks[-1].usage is not None and chunks[-1].usage.total_tokens == 15
    body = fake.last("/chat/completions").body
    assert body["stream"] is True
    assert body["stream_options"] == {"include_usage": True}
    if not rejects_tools:
        assert body["tools"] == [WEATHER_TOOL]
        assert body["tool_choice"] == "auto"


@pytest.mark.parametrize("source_id", CHAT_SOURCES)
async def test_upstream_error_keeps_its_message(fake: FakeOpenAI, source_id: str) -> None:
    async with gateway_for(fake, source_id) as gw:
        with pytest.raises(AuthenticationError) as caught:
            await gw.chat(model="up/error-401", messages=[{"role": "user", "content": "Hi"}])
    error = caught.value
    assert error.status == 401
    assert "the fake says 401" in error.message
    assert "connection 'up'" in error.message
    assert KEY not in error.message


def test_every_row_is_complete() -> None:
    for source_id in CHAT_SOURCES:
        row = SOURCES[source_id]
        assert row.display_name
        assert row.default_base_url or source_id == "custom"
        assert row.models in ("list", "fixed", "manual")
        assert row.models == "list" or row.fixed_models
        assert row.post_processing
    assert set(CHAT_SOURCES) >= {
        "openai",
        "mistral",
        "deepseek",
        "openrouter",
        "perplexity",
        "ai21",
        "aimlapi",
        "pollinations",
        "groq",
        "xai",
        "fireworks",
        "custom",
    }


def test_body_is_json_the_fake_can_read(fake: FakeOpenAI) -> None:
    with gateway_for(fake, "custom") as gw:
        gw.chat_sync(model="up/gpt-fake-1", messages=[{"role": "user", "content": "é ✓"}])
    raw = orjson.dumps(fake.last("/chat/completions").body)
    assert "é ✓".encode() in raw
