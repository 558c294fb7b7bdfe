"""The Anthropic door in front of a Claude connection (the fake,
``tests/fakes/anthropic_server.py``): ``cache_control`` breakpoints, signed and redacted
thinking, ``thinking`` itself and stop sequences survive the round trip both ways,
whole and streamed; count_tokens is Claude's own."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from typing import Any

import anthropic
import pytest

from tests.conftest import LiveServer
from tests.fakes import anthropic_server
from tests.fakes.common import WEATHER_ARGS, FakeState
from tests.fakes.openai_server import FakeOpenAI
from tests.server.doors.test_anthropic_servers import (
    CLAUDE_KEY,
    KEY,
    claude_fake,
    door_server,
    parse_events,
    post,
    sdk,
    user,
)

PNG = base64.b64encode(b"\x89PNG\r\n\x1a\n" + b"\1" * 12).decode()
HOUR: Any = {"type": "ephemeral", "ttl": "1h"}
EPHEMERAL: Any = {"type": "ephemeral"}
TOOL: Any = {
    "name": "get_weather",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}},
    "cache_control": EPHEMERAL,
}
SYSTEM: Any = [
    {"type": "text", "text": "Rules."},
    {"type": "text", "text": "A long document.", "cache_control": HOUR},
]
HISTORY: Any = [
    {
        "role": "user",
        "content": [
            {"type": "text", "text": "Look.", "cache_control": EPHEMERAL},
            {
                "type": "image",
                "source": {"type": "base64", "media_type": "image/png", "data": PNG},
                "cache_control": EPHEMERAL,
            },
        ],
    },
    {
        "role": "assistant",
        "content": [
            {"type": "thinking", "thinking": "A cat, I think.", "signature": "c2lnQQ"},
            {"type": "redacted_thinking", "data": "ZW5jQg"},
            {"type": "text", "text": "Let me check."},
            {
                "type": "tool_use",
                "id": "toolu_01",
                "name": "get_weather",
                "input": {"city": "Paris"},
                "cache_control": EPHEMERAL,
            },
        ],
    },
    {
        "role": "user",
        "content": [
            {
                "type": "tool_result",
                "tool_use_id": "toolu_01",
                "content": [{"type": "text", "text": "no such city", "cache_control": EPHEMERAL}],
                "is_error": True,
                "cache_control": HOUR,
            },
            {"type": "text", "text": "Go on."},
        ],
    },
]
# What the fake thinks for "redacted-*" models, before its text.
THOUGHTS = anthropic_server.REDACTED
# Its text after HISTORY, whose last turn holds a tool result.
ANSWER = {"type": "text", "text": "The tool said: no such city"}


@pytest.fixture(scope="module")
def claude() -> Iterator[FakeState]:
    with claude_fake() as state:
        yield state


@pytest.fixture(scope="module")
def server(claude: FakeState, fake_openai: FakeOpenAI) -> Iterator[LiveServer]:
    with door_server(fake_openai.url, claude.url) as info:
        yield info


@pytest.fixture()
def client(server: LiveServer) -> Iterator[anthropic.Anthropic]:
    with sdk(server) as opened:
        yield opened


def _ask(model: str = "claude/redacted-1", **more: Any) -> dict[str, Any]:
    return {
        "model": model,
        "max_tokens": 2048,
        "system": SYSTEM,
        "messages": HISTORY,
        "tools": [TOOL],
        "thinking": {"type": "enabled", "budget_tokens": 1024},
        "metadata": {"user_id": "user-7"},
        **more,
    }


def _blocks(message: anthropic.types.Message) -> list[dict[str, Any]]:
    return [b.model_dump(exclude_none=True) for b in message.content]


def test_breakpoints_and_signed_thinking_reach_claude_intact(
    client: anthropic.Anthropic, claude: FakeState
) -> None:
    client.messages.create(**_ask(), extra_body={"cache_control": EPHEMERAL, "top_k": 5})
    sent = claude.last("/messages")
    assert sent.headers["x-api-key"] == CLAUDE_KEY  # the connection's key, not the gateway's
    assert KEY not in str(sent.headers)
    body = sent.body
    assert body["model"] == "redacted-1"
    assert body["system"] == SYSTEM
    assert body["tools"] == [TOOL]
    assert body["thinking"] == {"type": "enabled", "budget_tokens": 1024}
    assert body["cache_control"] == EPHEMERAL
    assert body["metadata"] == {"user_id": "user-7"}
    assert body["top_k"] == 5
    assert body["messages"][0] == HISTORY[0]
    assert body["messages"][1] == HISTORY[1]
    assert body["messages"][2] == HISTORY[2]
    assert len(body["messages"]) == 3


def test_a_claude_answer_s_thinking_comes_back_whole(client: anthropic.Anthropic) -> None:
    message = client.messages.create(**_ask())
    assert _blocks(message) == [*THOUGHTS, ANSWER]
    assert message.stop_reason == "end_turn"
    # Claude's input count leaves out what the cache read (2 of the fake's 13).
    usage = message.usage
    assert (usage.input_tokens, usage.cache_read_input_tokens, usage.output_tokens) == (11, 2, 7)


def test_a_claude_answer_s_thinking_comes_back_streamed(
    client: anthropic.Anthropic, server: LiveServer
) -> None:
    with client.messages.stream(**_ask()) as stream:
        final = stream.get_final_message()
    assert _blocks(final) == [*THOUGHTS, ANSWER]
    events = parse_events(post(server, {**_ask(), "stream": True}).text)
    deltas = [d["delta"] for e, d in events if e == "content_block_delta"]
    assert [d for d in deltas if d["type"] == "signature_delta"] == [
        {"type": "signature_delta", "signature": "c2lnMQ"},
        {"type": "signature_delta", "signature": "c2lnMg"},
    ]
    starts = [d["content_block"]["type"] for e, d in events if e == "content_block_start"]
    assert starts == ["thinking", "redacted_thinking", "thinking", "text"]
    indexes = [d["index"] for e, d in events if e == "content_block_stop"]
    assert indexes == [0, 1, 2, 3]


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
def test_the_answer_sent_back_is_what_claude_gave(
    client: anthropic.Anthropic, claude: FakeState, stream: bool
) -> None:
    ask = {**_ask(), "messages": user("Hi")}
    if stream:
        with client.messages.stream(**ask) as events:
            first = events.get_final_message()
    else:
        first = client.messages.create(**ask)
    again = [*user("Hi"), {"role": "assistant", "content": _blocks(first)}, *user("More?")]
    client.messages.create(**{**ask, "messages": again})
    assert claude.last("/messages").body["messages"][1] == {
        "role": "assistant",
        "content": [*THOUGHTS, {"type": "text", "text": "Hello from the fake."}],
    }


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
def test_a_stop_sequence_is_named(client: anthropic.Anthropic, stream: bool) -> None:
    ask: Any = {"model": "claude/stop-1", "max_tokens": 50, "messages": user("Count")}
    if stream:
        with client.messages.stream(**ask, stop_sequences=["END", "FIN"]) as events:
            message = events.get_final_message()
    else:
        message = client.messages.create(**ask, stop_sequences=["END", "FIN"])
    assert (message.stop_reason, message.stop_sequence) == ("stop_sequence", "END")


def test_thinking_without_a_signature_is_not_sent_to_claude(
    client: anthropic.Anthropic, claude: FakeState
) -> None:
    # Another backend's reasoning, shown as a thinking block: Claude would refuse it.
    history: Any = [
        *user("Hi"),
        {
            "role": "assistant",
            "content": [
                {"type": "thinking", "thinking": "Not Claude's.", "signature": ""},
                {"type": "text", "text": "Hello."},
            ],
        },
        *user("And?"),
    ]
    client.messages.create(model="claude/m-1", max_tokens=20, messages=history)
    assert claude.last("/messages").body["messages"][1] == {
        "role": "assistant",
        "content": [{"type": "text", "text": "Hello."}],
    }


def test_a_tool_round_trip_through_claude(client: anthropic.Anthropic, claude: FakeState) -> None:
    tool: Any = {k: v for k, v in TOOL.items() if k != "cache_control"}
    with client.messages.stream(
        model="claude/tool-1", max_tokens=50, messages=user("Weather?"), tools=[tool]
    ) as events:
        called = events.get_final_message()
    assert called.stop_reason == "tool_use"
    use = called.content[-1]
    assert use.type == "tool_use"
    assert (use.id, use.input) == ("toolu_01A", WEATHER_ARGS)
    history: Any = [
        *user("Weather?"),
        {"role": "assistant", "content": _blocks(called)},
        {
            "role": "user",
            "content": [{"type": "tool_result", "tool_use_id": use.id, "content": "Sunny"}],
        },
    ]
    answer = client.messages.create(
        model="claude/tool-1", max_tokens=50, messages=history, tools=[tool]
    )
    assert answer.content[0].type == "text"
    assert answer.content[0].text == "The tool said: Sunny"


def test_count_tokens_is_claude_s_own(client: anthropic.Anthropic, claude: FakeState) -> None:
    ask = _ask()
    del ask["max_tokens"], ask["metadata"]
    counted = client.messages.with_raw_response.count_tokens(**ask)
    assert counted.parse().input_tokens == anthropic_server.COUNTED
    assert "x-chatgate-token-count" not in counted.headers
    body = claude.last("/messages/count_tokens").body
    assert body["system"] == SYSTEM and body["tools"] == [TOOL]
    assert body["messages"][1] == HISTORY[1]
    assert body["thinking"] == {"type": "enabled", "budget_tokens": 1024}
