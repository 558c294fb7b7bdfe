"""The Claude adapter keeps what only Claude reads: signed and redacted thinking, read
from its answers (whole and streamed) and sent back; ``cache_control`` breakpoints and
``is_error`` sent as the client gave them; stop sequences and cache counts read. The
OpenAI adapter sends none of it, except OpenRouter's text-part breakpoints."""

from __future__ import annotations

from typing import Any

import pytest

from chatgate.adapters import registry
from chatgate.adapters.anthropic import AnthropicAdapter
from chatgate.adapters.anthropic_request import body
from chatgate.answers import ChatResponse, Choice, Usage, as_chunks
from chatgate.config import Connection
from chatgate.sources import SOURCES
from chatgate.types import AssistantMessage, ChatRequest, RedactedThinkingPart, ThinkingPart
from chatgate.upstream import Credentials
from tests.adapters.recorded import fixture_json, read_stream

KEY = "sk-Tn3Wq8Zp4Lm"
EPHEMERAL = {"type": "ephemeral"}
SIGNED = {"type": "thinking", "thinking": "Hmm.", "signature": "c2ln"}
REDACTED = {"type": "redacted_thinking", "data": "ZW5j"}


def adapter(source: str) -> Any:
    connection = Connection(name="c", source=source, api_key=KEY, base_url="http://up.test/v1")
    return registry.make_adapter(connection, SOURCES[source], Credentials(key=KEY))


def request(messages: list[Any], **fields: Any) -> ChatRequest:
    return ChatRequest.model_validate({"model": "c/m", "messages": messages, **fields})


def test_a_whole_answer_keeps_each_thinking_block_and_its_signature() -> None:
    claude: AnthropicAdapter = adapter("claude")
    answer = claude.parse_response(fixture_json("anthropic/thinking.json"), "c/m")
    message = answer.choices[0].message
    assert message.reasoning_content == "Let me add the digits. 2 + 2 = 4."
    assert [b.model_dump() for b in message.thinking_blocks or []] == [
        {
            "type": "thinking",
            "thinking": "Let me add the digits. ",
            "signature": "EqQBCgIYAhIM1gbcDa9GJwZA2b3hGgxBdjrkzLoky3dl1pkiMOYds",
        },
        {
            "type": "redacted_thinking",
            "data": "EmwKAhgBEgy3va3pzix/LafPsn4aDFIT2Xlxh0L5L8rLVyIwxtE3rAFBa8cr3qpP",
        },
        {"type": "thinking", "thinking": "2 + 2 = 4.", "signature": "EqQBCgIYAhIMabc"},
    ]


def test_a_stream_carries_the_signature_and_redacted_blocks_on_the_next_chunk() -> None:
    claude: AnthropicAdapter = adapter("claude")
    streamed = read_stream(
        claude.reader(request([{"role": "user", "content": "Hi"}])), "anthropic/stream_thinking.sse"
    )
    assert streamed.error is None
    deltas = [c.choices[0].delta for c in streamed.chunks if c.choices]
    carried = [
        (d.content, d.reasoning_signature, d.redacted_reasoning)
        for d in deltas
        if d.reasoning_signature
    ]
    # Not chunks of their own: another door would see empty deltas.
    assert carried == [
        ("4", "EqQBCgIYAhIM1gbcDa9GJwZA2b3hGgxBdjrkzLoky3dl1pkiMOYds", ["EmwKAhgBEgy3va3pzix"])
    ]
    assert all(d.content or d.reasoning_content or d.role or d.tool_calls for d in deltas[:-1])


def test_stop_sequences_and_cache_counts_are_read() -> None:
    claude: AnthropicAdapter = adapter("claude")
    data = fixture_json("anthropic/stop_sequence.json")
    answer = claude.parse_response(data, "c/m")
    assert answer.choices[0].stop_sequence == data["stop_sequence"]
    text = claude.parse_response(fixture_json("anthropic/text.json"), "c/m")
    usage = fixture_json("anthropic/text.json")["usage"]
    assert text.usage.cached_tokens == usage["cache_read_input_tokens"]
    assert text.usage.cache_write_tokens == usage["cache_creation_input_tokens"]


def test_breakpoints_signed_thinking_and_errors_go_to_claude_as_given() -> None:
    image = {
        "type": "image_url",
        "image_url": {"url": "data:image/png;base64,iVBO"},
        "cache_control": EPHEMERAL,
    }
    call = {
        "id": "t1",
        "type": "function",
        "function": {"name": "f", "arguments": "{}"},
        "cache_control": EPHEMERAL,
    }
    sent = body(
        request(
            [
                {
                    "role": "system",
                    "content": [
                        {"type": "text", "text": "A"},
                        {"type": "text", "text": "B", "cache_control": EPHEMERAL},
                    ],
                },
                {
                    "role": "user",
                    "content": [{"type": "text", "text": "Q", "cache_control": EPHEMERAL}, image],
                },
                {
                    "role": "assistant",
                    "content": "Calling.",
                    "tool_calls": [call],
                    "reasoning_content": "Hmm.",
                    "thinking_blocks": [
                        SIGNED,
                        REDACTED,
                        {"type": "thinking", "thinking": "x", "signature": ""},
                    ],
                },
                {
                    "role": "tool",
                    "tool_call_id": "t1",
                    "content": [{"type": "text", "text": "boom"}, image],
                    "is_error": True,
                    "cache_control": EPHEMERAL,
                },
            ],
            tools=[{"type": "function", "function": {"name": "f"}, "cache_control": EPHEMERAL}],
        ),
        [],
        "[Start]",
    )
    assert sent["system"] == [
        {"type": "text", "text": "A"},
        {"type": "text", "text": "B", "cache_control": EPHEMERAL},
    ]
    claude_image = {
        "type": "image",
        "source": {"type": "base64", "media_type": "image/png", "data": "iVBO"},
        "cache_control": EPHEMERAL,
    }
    assert sent["messages"] == [
        {
            "role": "user",
            "content": [{"type": "text", "text": "Q", "cache_control": EPHEMERAL}, claude_image],
        },
        {
            "role": "assistant",
            "content": [
                SIGNED,
                REDACTED,  # the unsigned block is not Claude's: left out
                {"type": "text", "text": "Calling."},
                {
                    "type": "tool_use",
                    "id": "t1",
                    "name": "f",
                    "input": {},
                    "cache_control": EPHEMERAL,
                },
            ],
        },
        {
            "role": "user",
            "content": [
                {
                    "type": "tool_result",
                    "tool_use_id": "t1",
                    "content": [{"type": "text", "text": "boom"}, claude_image],
                    "is_error": True,
                    "cache_control": EPHEMERAL,
                }
            ],
        },
    ]
    assert sent["tools"][0]["cache_control"] == EPHEMERAL


@pytest.mark.parametrize(
    ("source", "forwarded"), [("openai", False), ("custom", False), ("openrouter", True)]
)
def test_openai_wires_get_no_claude_annotations(source: str, forwarded: bool) -> None:
    messages = [
        {"role": "system", "content": [{"type": "text", "text": "S", "cache_control": EPHEMERAL}]},
        {"role": "user", "content": [{"type": "text", "text": "Q", "cache_control": EPHEMERAL}]},
        {
            "role": "assistant",
            "content": "A",
            "thinking_blocks": [SIGNED, REDACTED],
            "reasoning_content": "Hmm.",
        },
        {"role": "user", "content": "Go"},
    ]
    tools = [{"type": "function", "function": {"name": "f"}, "cache_control": EPHEMERAL}]
    sent = adapter(source).build(request(messages, tools=tools), []).body
    assert "thinking_blocks" not in str(sent) and "signature" not in str(sent)
    assert "cache_control" not in str(sent["tools"])  # OpenRouter takes breakpoints on text only
    system, question = sent["messages"][0]["content"][0], sent["messages"][1]["content"][0]
    marks = [part.get("cache_control") for part in (system, question)]
    assert marks == ([EPHEMERAL, EPHEMERAL] if forwarded else [None, None])


def test_a_whole_answer_as_chunks_keeps_each_signature_after_its_thinking() -> None:
    message = AssistantMessage(
        "4",
        reasoning_content="ab",
        thinking_blocks=[
            ThinkingPart(type="thinking", thinking="a", signature="s1"),
            RedactedThinkingPart(type="redacted_thinking", data="r"),
            ThinkingPart(type="thinking", thinking="b", signature="s2"),
        ],
    )
    answer = ChatResponse(
        "msg_1", 0, "c/m", [Choice(0, message, "stop", stop_sequence="END")], Usage(3, 1)
    )
    chunks = as_chunks(answer, with_usage=True)
    deltas = [c.choices[0].delta for c in chunks if c.choices]
    assert [
        (d.role, d.reasoning_content, d.reasoning_signature, d.redacted_reasoning, d.content)
        for d in deltas
    ] == [
        ("assistant", "a", None, None, None),
        (None, "b", "s1", ["r"], None),
        (None, None, "s2", None, "4"),
        (None, None, None, None, None),
    ]
    assert chunks[-2].choices[0].stop_sequence == "END"
