"""The official ``anthropic`` SDK against a real chatgate server whose backend speaks
another protocol (the OpenAI-compatible fake, ``tests/fakes/openai_server.py``): text,
streams, a tool round trip whole and streamed, images, count_tokens, and what the
upstream received. No model is needed."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from typing import Any

import anthropic
import httpx
import pytest

from tests.conftest import LiveServer
from tests.fakes.openai_server import FakeOpenAI
from tests.server.doors.test_anthropic_servers import (
    CHAT_KEY,
    KEY,
    claude_fake,
    door_server,
    parse_events,
    post,
    sdk,
    user,
)

WEATHER_TOOL: Any = {
    "name": "get_weather",
    "description": "The weather in a city.",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}},
}
PNG = base64.b64encode(b"\x89PNG\r\n\x1a\n" + b"\0" * 16).decode()


@pytest.fixture(scope="module")
def server(fake_openai: FakeOpenAI) -> Iterator[LiveServer]:
    with claude_fake() as claude, door_server(fake_openai.url, claude.url) as info:
        yield info


@pytest.fixture()
def client(server: LiveServer, fake: FakeOpenAI) -> Iterator[anthropic.Anthropic]:
    with sdk(server) as opened:
        yield opened


def test_text(client: anthropic.Anthropic, fake: FakeOpenAI) -> None:
    message = client.messages.create(
        model="chat/gpt-fake-1",
        max_tokens=20,
        system=[{"type": "text", "text": "Be brief."}, {"type": "text", "text": "Be kind."}],
        messages=user("Hi"),
        stop_sequences=["END"],
        metadata={"user_id": "user-7"},
        extra_body={"temperature": 0.5, "top_p": 0.9, "top_k": 40},
    )
    assert message.id.startswith("msg_")
    assert message.type == "message" and message.role == "assistant"
    assert message.model == "chat/gpt-fake-1"
    assert [(b.type, getattr(b, "text", None)) for b in message.content] == [
        ("text", "Hello from the fake.")
    ]
    assert message.stop_reason == "end_turn" and message.stop_sequence is None
    assert (message.usage.input_tokens, message.usage.output_tokens) == (11, 4)
    sent = fake.last("/chat/completions")
    assert sent.headers["authorization"] == f"Bearer {CHAT_KEY}"
    assert sent.body == {
        "model": "gpt-fake-1",
        "messages": [
            {
                "role": "system",
                "content": [
                    {"type": "text", "text": "Be brief."},
                    {"type": "text", "text": "Be kind."},
                ],
            },
            {"role": "user", "content": "Hi"},
        ],
        "max_tokens": 20,
        "temperature": 0.5,
        "top_p": 0.9,
        "top_k": 40,
        "stop": ["END"],
        "user": "user-7",
    }


def test_the_stream_helper(client: anthropic.Anthropic, fake: FakeOpenAI) -> None:
    with client.messages.stream(
        model="chat/gpt-fake-1", max_tokens=20, system="Be brief.", messages=user("Hi")
    ) as stream:
        pieces = list(stream.text_stream)
        final = stream.get_final_message()
    assert "".join(pieces) == "Hello from the fake." and len(pieces) == 4
    assert final.stop_reason == "end_turn"
    assert final.content[0].type == "text" and final.content[0].text == "Hello from the fake."
    # The usage chunk the door asked for fills message_delta.
    assert (final.usage.input_tokens, final.usage.output_tokens) == (11, 4)
    sent = fake.last("/chat/completions").body
    assert sent["stream"] is True and sent["stream_options"] == {"include_usage": True}


def test_create_with_stream_true(client: anthropic.Anthropic) -> None:
    events = list(
        client.messages.create(
            model="chat/gpt-fake-1", max_tokens=20, messages=user("Hi"), stream=True
        )
    )
    kinds = [e.type for e in events]
    assert kinds == [
        "message_start",
        "content_block_start",
        *["content_block_delta"] * 4,
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    start, delta = events[0], events[-2]
    assert start.type == "message_start" and start.message.id.startswith("msg_")
    assert delta.type == "message_delta" and delta.delta.stop_reason == "end_turn"
    assert delta.usage.output_tokens == 4


def test_the_raw_stream_is_anthropic_s_framing(server: LiveServer) -> None:
    body = {"model": "chat/gpt-fake-1", "max_tokens": 9, "messages": user("Hi"), "stream": True}
    answer = post(server, body)
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/event-stream")
    events = parse_events(answer.text)
    assert [e for e, _ in events[:2]] == ["message_start", "ping"]
    assert events[2][1] == {
        "type": "content_block_start",
        "index": 0,
        "content_block": {"type": "text", "text": ""},
    }
    assert events[3][1]["delta"] == {"type": "text_delta", "text": "Hello"}
    assert events[-1] == ("message_stop", {"type": "message_stop"})


def _tool_turn(client: anthropic.Anthropic, stream: bool) -> anthropic.types.Message:
    ask: dict[str, Any] = {
        "model": "chat/tool-weather",
        "max_tokens": 50,
        "messages": user("Weather in Paris?"),
        "tools": [WEATHER_TOOL],
        "tool_choice": {"type": "auto"},
    }
    if not stream:
        message: anthropic.types.Message = client.messages.create(**ask)
        return message
    with client.messages.stream(**ask) as events:
        kinds = [e.type for e in events]
        assert "input_json" in kinds  # the SDK's event for input_json_delta
        return events.get_final_message()


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
def test_a_tool_round_trip(client: anthropic.Anthropic, fake: FakeOpenAI, stream: bool) -> None:
    called = _tool_turn(client, stream)
    assert called.stop_reason == "tool_use"
    (use,) = [b for b in called.content if b.type == "tool_use"]
    assert (use.id, use.name, use.input) == ("call_abc123", "get_weather", {"city": "Paris"})
    sent = fake.last("/chat/completions").body
    assert sent["tools"] == [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "description": "The weather in a city.",
                "parameters": WEATHER_TOOL["input_schema"],
            },
        }
    ]
    assert sent["tool_choice"] == "auto"
    history: list[Any] = [
        *user("Weather in Paris?"),
        {"role": "assistant", "content": [b.model_dump(exclude_none=True) for b in called.content]},
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": use.id, "content": "18C and sunny"},
                {"type": "text", "text": "Thanks!"},
            ],
        },
    ]
    ask: dict[str, Any] = {
        "model": "chat/gpt-fake-1",
        "max_tokens": 50,
        "messages": history,
        "tools": [WEATHER_TOOL],
    }
    if stream:
        with client.messages.stream(**ask) as events:
            answer = events.get_final_message()
    else:
        answer = client.messages.create(**ask)
    assert answer.content[0].type == "text" and answer.stop_reason == "end_turn"
    assert fake.last("/chat/completions").body["messages"] == [
        {"role": "user", "content": "Weather in Paris?"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_abc123",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_abc123", "content": "18C and sunny"},
        {"role": "user", "content": "Thanks!"},
    ]


@pytest.mark.parametrize(
    ("choice", "sent"),
    [
        ({"type": "auto"}, {"tool_choice": "auto"}),
        ({"type": "any"}, {"tool_choice": "required"}),
        (
            {"type": "tool", "name": "get_weather"},
            {"tool_choice": {"type": "function", "function": {"name": "get_weather"}}},
        ),
        ({"type": "none"}, {"tool_choice": "none"}),
        (
            {"type": "auto", "disable_parallel_tool_use": True},
            {"tool_choice": "auto", "parallel_tool_calls": False},
        ),
    ],
)
def test_tool_choice_is_translated(
    client: anthropic.Anthropic, fake: FakeOpenAI, choice: Any, sent: dict[str, Any]
) -> None:
    client.messages.create(
        model="chat/gpt-fake-1",
        max_tokens=9,
        messages=user("Hi"),
        tools=[WEATHER_TOOL],
        tool_choice=choice,
    )
    body = fake.last("/chat/completions").body
    assert {k: body.get(k) for k in sent} == sent
    assert "parallel_tool_calls" in sent or "parallel_tool_calls" not in body


def test_images_base64_and_url(client: anthropic.Anthropic, fake: FakeOpenAI) -> None:
    client.messages.create(
        model="chat/gpt-fake-1",
        max_tokens=9,
        messages=[
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "What are these?"},
                    {
                        "type": "image",
                        "source": {"type": "base64", "media_type": "image/png", "data": PNG},
                    },
                    {
                        "type": "image",
                        "source": {"type": "url", "url": "https://example.com/cat.jpg"},
                    },
                ],
            }
        ],
    )
    content = fake.last("/chat/completions").body["messages"][0]["content"]
    assert content == [
        {"type": "text", "text": "What are these?"},
        {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}},
        {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg"}},
    ]


def test_cache_control_and_thinking_stay_off_an_openai_wire(
    client: anthropic.Anthropic, fake: FakeOpenAI
) -> None:
    ephemeral: Any = {"type": "ephemeral"}
    tool: Any = {**WEATHER_TOOL, "cache_control": ephemeral}
    history: Any = [
        {
            "role": "user",
            "content": [{"type": "text", "text": "Q", "cache_control": ephemeral}],
        },
        {
            "role": "assistant",
            "content": [
                {"type": "thinking", "thinking": "Hmm.", "signature": "c2ln"},
                {"type": "redacted_thinking", "data": "ZW5j"},
                {"type": "text", "text": "A"},
            ],
        },
        *user("Again"),
    ]
    client.messages.create(
        model="chat/gpt-fake-1",
        max_tokens=2000,
        system=[{"type": "text", "text": "Rules.", "cache_control": ephemeral}],
        thinking={"type": "enabled", "budget_tokens": 1024},
        tools=[tool],
        messages=history,
    )
    body = fake.last("/chat/completions").body
    assert "cache_control" not in str(body) and "thinking" not in str(body)
    assert "signature" not in str(body) and "ZW5j" not in str(body)
    assert body["messages"][0]["content"] == [{"type": "text", "text": "Rules."}]
    assert body["messages"][2] == {"role": "assistant", "content": "A"}


def test_reasoning_comes_back_as_a_thinking_block(client: anthropic.Anthropic) -> None:
    message = client.messages.create(model="chat/reason-1", max_tokens=9, messages=user("Hi"))
    assert [b.type for b in message.content] == ["thinking", "text"]
    thinking = message.content[0]
    assert thinking.type == "thinking"
    assert (thinking.thinking, thinking.signature) == ("Thinking about it.", "")
    with client.messages.stream(model="chat/reason-1", max_tokens=9, messages=user("Hi")) as s:
        final = s.get_final_message()
    assert [b.type for b in final.content] == ["thinking", "text"]


def test_count_tokens(client: anthropic.Anthropic) -> None:
    counted = client.messages.with_raw_response.count_tokens(
        model="chat/gpt-fake-1",
        system="Be brief.",
        messages=user("How many tokens is this?"),
        tools=[WEATHER_TOOL],
    )
    assert counted.parse().input_tokens > 0
    # An OpenAI-compatible server has no tokenizer chatgate can ask: an estimate.
    assert counted.headers["x-chatgate-token-count"] == "estimate"


@pytest.mark.parametrize("header", ["x-api-key", "authorization"])
def test_either_key_header_and_no_version_header(server: LiveServer, header: str) -> None:
    value = KEY if header == "x-api-key" else f"Bearer {KEY}"
    body = {"model": "chat/gpt-fake-1", "max_tokens": 9, "messages": user("Hi")}
    answer = httpx.post(
        server.url + "/v1/messages?beta=true", json=body, headers={header: value}, timeout=30
    )
    assert answer.status_code == 200, answer.text
    assert answer.json()["content"][0]["text"] == "Hello from the fake."


def test_any_anthropic_version_is_accepted(server: LiveServer) -> None:
    body = {"model": "chat/gpt-fake-1", "max_tokens": 9, "messages": user("Hi")}
    assert post(server, body, **{"anthropic-version": "1999-01-01"}).status_code == 200
