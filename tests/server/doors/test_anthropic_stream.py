"""The chunk stream as Anthropic's events, sans I/O: block boundaries, thinking and its
signature, tool arguments, keep-alives, usage at the end; and the whole answer's
thinking blocks when a secret was redacted from them."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest

from chatgate.adapters import registry
from chatgate.answers import (
    AssistantMessage,
    ChatChunk,
    ChunkChoice,
    Delta,
    ToolCallDelta,
    Usage,
)
from chatgate.config import Connection
from chatgate.server.doors.anthropic_encode import thinking_blocks
from chatgate.server.doors.anthropic_stream import EventWriter, events
from chatgate.sources import SOURCES
from chatgate.types import ChatRequest, RedactedThinkingPart, ThinkingPart
from chatgate.upstream import Credentials
from tests.adapters.recorded import read_stream

Event = tuple[str, Any]


def chunk(delta: Delta | None = None, finish: Any = None, **more: Any) -> ChatChunk:
    choices = [] if delta is None else [ChunkChoice(0, delta, finish)]
    return ChatChunk("chatcmpl-abc", 0, "m", choices, **more)


async def _run(chunks: list[ChatChunk]) -> list[Event]:
    async def source() -> AsyncIterator[ChatChunk]:
        for item in chunks:
            yield item

    raw = b"".join([frame async for frame in events(source(), "c/m")])
    out: list[Event] = []
    for block in raw.decode().strip().split("\n\n"):
        head, data = block.split("\n")
        out.append((head.removeprefix("event: "), orjson.loads(data.removeprefix("data: "))))
    return out


def _short(found: list[Event]) -> list[Any]:
    """Each event as its type and what distinguishes it."""
    out: list[Any] = []
    for kind, data in found:
        if kind == "content_block_start":
            out.append(("start", data["index"], data["content_block"]["type"]))
        elif kind == "content_block_delta":
            delta = dict(data["delta"])
            out.append(("delta", data["index"], delta.pop("type"), *delta.values()))
        elif kind == "content_block_stop":
            out.append(("stop", data["index"]))
        else:
            out.append(kind)
    return out


async def test_thinking_text_and_two_tool_calls() -> None:
    found = await _run(
        [
            chunk(Delta(role="assistant", content="")),
            chunk(Delta(reasoning_content="Hm")),
            chunk(Delta(reasoning_content="m.")),
            chunk(Delta(content="Checking.")),
            chunk(Delta(tool_calls=[ToolCallDelta(0, "call_1", "f", "")])),
            chunk(Delta(tool_calls=[ToolCallDelta(0, arguments='{"a":')])),
            chunk(Delta(tool_calls=[ToolCallDelta(0, arguments="1}")])),
            chunk(Delta(tool_calls=[ToolCallDelta(1, "call_2", "g", "{}")])),
            chunk(Delta(), "tool_calls"),
            chunk(usage=Usage(30, 9)),
        ]
    )
    assert _short(found) == [
        "message_start",
        "ping",
        ("start", 0, "thinking"),
        ("delta", 0, "thinking_delta", "Hm"),
        ("delta", 0, "thinking_delta", "m."),
        ("stop", 0),
        ("start", 1, "text"),
        ("delta", 1, "text_delta", "Checking."),
        ("stop", 1),
        ("start", 2, "tool_use"),
        ("delta", 2, "input_json_delta", '{"a":'),
        ("delta", 2, "input_json_delta", "1}"),
        ("stop", 2),
        ("start", 3, "tool_use"),
        ("delta", 3, "input_json_delta", "{}"),
        ("stop", 3),
        "message_delta",
        "message_stop",
    ]
    assert found[0][1]["message"]["id"] == "msg_abc"
    assert found[9][1]["content_block"] == {
        "type": "tool_use",
        "id": "call_1",
        "name": "f",
        "input": {},
    }
    assert found[-2][1] == {
        "type": "message_delta",
        "delta": {"stop_reason": "tool_use", "stop_sequence": None},
        "usage": {
            "input_tokens": 30,
            "output_tokens": 9,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 0,
        },
    }


async def test_signatures_close_their_thinking_and_redacted_blocks_stand_alone() -> None:
    found = await _run(
        [
            chunk(Delta(role="assistant", reasoning_content="a")),
            chunk(Delta(reasoning_content="b", reasoning_signature="s1", redacted_reasoning=["r"])),
            chunk(Delta(content="4", reasoning_signature="s2")),
            chunk(Delta(), "stop"),
        ]
    )
    assert _short(found)[2:-2] == [
        ("start", 0, "thinking"),
        ("delta", 0, "thinking_delta", "a"),
        ("delta", 0, "signature_delta", "s1"),
        ("stop", 0),
        ("start", 1, "redacted_thinking"),
        ("stop", 1),
        ("start", 2, "thinking"),
        ("delta", 2, "thinking_delta", "b"),
        ("delta", 2, "signature_delta", "s2"),
        ("stop", 2),
        ("start", 3, "text"),
        ("delta", 3, "text_delta", "4"),
        ("stop", 3),
    ]
    assert found[6][1]["content_block"] == {"type": "redacted_thinking", "data": "r"}


async def test_a_recorded_claude_stream_through_the_door() -> None:
    connection = Connection(name="c", source="claude", api_key="sk-Xy7Qm2", base_url="http://x/v1")
    adapter = registry.make_adapter(connection, SOURCES["claude"], Credentials(key="sk-Xy7Qm2"))
    ask = ChatRequest.model_validate(
        {"model": "c/m", "messages": [{"role": "user", "content": "?"}]}
    )
    chunks = read_stream(adapter.reader(ask), "anthropic/stream_thinking.sse").chunks
    found = _short(await _run(chunks))
    assert (
        "delta",
        0,
        "signature_delta",
        "EqQBCgIYAhIM1gbcDa9GJwZA2b3hGgxBdjrkzLoky3dl1pkiMOYds",
    ) in found
    assert [e for e in found if e[0] == "start"] == [
        ("start", 0, "thinking"),
        ("start", 1, "redacted_thinking"),
        ("start", 2, "text"),
    ]


async def test_keep_alives_are_pings_and_other_choices_are_left_out() -> None:
    found = await _run(
        [
            ChatChunk("queued", 0, "m", comment="position 3"),
            chunk(Delta(role="assistant", content="Hi")),
            ChatChunk("chatcmpl-abc", 0, "m", [ChunkChoice(1, Delta(content="other"))]),
            chunk(Delta(), "length"),
        ]
    )
    assert _short(found) == [
        "message_start",
        "ping",
        "ping",
        ("start", 0, "text"),
        ("delta", 0, "text_delta", "Hi"),
        ("stop", 0),
        "message_delta",
        "message_stop",
    ]
    assert found[-2][1]["delta"]["stop_reason"] == "max_tokens"


async def test_an_empty_stream_is_still_a_whole_message() -> None:
    assert _short(await _run([])) == ["message_start", "ping", "message_delta", "message_stop"]


def test_arguments_of_a_closed_tool_call_are_left_out(caplog: pytest.LogCaptureFixture) -> None:
    writer = EventWriter("c/m")
    writer.chunk(chunk(Delta(tool_calls=[ToolCallDelta(0, "a", "f", "{")])))
    writer.chunk(chunk(Delta(tool_calls=[ToolCallDelta(1, "b", "g", "{}")])))
    with caplog.at_level(logging.WARNING, "chatgate.server"):
        assert writer.chunk(chunk(Delta(tool_calls=[ToolCallDelta(0, arguments="}")]))) == []
    assert "earlier tool call" in caplog.text


def test_thinking_a_secret_was_redacted_from_loses_its_signature() -> None:
    blocks: list[ThinkingPart | RedactedThinkingPart] = [
        ThinkingPart(type="thinking", thinking="the key is sk-x", signature="s")
    ]
    message = AssistantMessage("Hi", reasoning_content="the key is sk-x", thinking_blocks=blocks)
    assert thinking_blocks(message) == [
        {"type": "thinking", "thinking": "the key is sk-x", "signature": "s"}
    ]
    message.reasoning_content = "the key is [redacted]"
    assert thinking_blocks(message) == [
        {"type": "thinking", "thinking": "the key is [redacted]", "signature": ""}
    ]
