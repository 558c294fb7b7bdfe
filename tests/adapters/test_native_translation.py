"""Property: translating an OpenAI conversation to Claude, Gemini or Cohere keeps every
text, image, tool call and tool result, in order; and the fakes accept the result.

Each provider's body is read back into the same neutral items the conversation is made
of, so "nothing lost, nothing reordered" is one list comparison.
"""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chatgate.adapters.anthropic import AnthropicAdapter
from chatgate.adapters.cohere import CohereAdapter
from chatgate.adapters.gemini import GeminiAdapter
from chatgate.adapters.registry import make_adapter
from chatgate.adapters.wire import leading_system, merge_turns
from chatgate.config import Connection
from chatgate.prompt.postprocess import DEFAULT_PLACEHOLDER
from chatgate.sources import SOURCES
from chatgate.types import ChatRequest, Message
from chatgate.upstream import Credentials
from tests.fakes import anthropic_server, cohere_server, gemini_server

WORDS = st.text(alphabet="abcdefgh xyz", min_size=1, max_size=12).map(str.strip).filter(bool)
IMAGE_DATA = st.sampled_from(["iVBORw0KGgo", "R0lGODlhAQAB", "UklGRiQAAABX"])
Item = tuple[Any, ...]


@st.composite
def conversations(draw: st.DrawFn) -> tuple[list[dict[str, Any]], list[Item]]:
    """A conversation and the items it holds, in order."""
    messages: list[dict[str, Any]] = []
    items: list[Item] = []
    if draw(st.booleans()):
        text = draw(WORDS)
        messages.append({"role": "system", "content": text})
        items.append(("text", text))
    for turn in range(draw(st.integers(1, 6))):
        kind = draw(st.sampled_from(["user", "image", "assistant", "call"]))
        text = draw(WORDS)
        if kind == "user":
            messages.append({"role": "user", "content": text})
            items.append(("text", text))
        elif kind == "image":
            data = draw(IMAGE_DATA)
            url = f"data:image/png;base64,{data}"
            parts = [
                {"type": "text", "text": text},
                {"type": "image_url", "image_url": {"url": url}},
            ]
            messages.append({"role": "user", "content": parts})
            items += [("text", text), ("image", data)]
        elif kind == "assistant":
            messages.append({"role": "assistant", "content": text})
            items.append(("text", text))
        else:
            call_id = f"call_{turn}"
            args = {"q": text}
            call = {
                "id": call_id,
                "type": "function",
                "function": {"name": f"fn{turn}", "arguments": orjson.dumps(args).decode()},
            }
            result = draw(WORDS)
            messages.append({"role": "user", "content": "go"})
            messages.append({"role": "assistant", "content": None, "tool_calls": [call]})
            messages.append({"role": "tool", "tool_call_id": call_id, "content": result})
            items += [("text", "go"), ("call", f"fn{turn}", args), ("result", result)]
    return messages, items


def claude_items(body: dict[str, Any]) -> list[Item]:
    out: list[Item] = [("text", b["text"]) for b in body.get("system", [])]
    for message in body["messages"]:
        for block in message["content"]:
            if block["type"] == "text":
                out.append(("text", block["text"]))
            elif block["type"] == "image":
                out.append(("image", block["source"]["data"]))
            elif block["type"] == "tool_use":
                out.append(("call", block["name"], block["input"]))
            elif block["type"] == "tool_result":
                out.append(("result", block["content"]))
    return out


def gemini_items(body: dict[str, Any]) -> list[Item]:
    system = body.get("systemInstruction", {}).get("parts", [])
    out: list[Item] = [("text", p["text"]) for p in system]
    for content in body["contents"]:
        for part in content["parts"]:
            if "text" in part:
                out.append(("text", part["text"]))
            elif "inlineData" in part:
                out.append(("image", part["inlineData"]["data"]))
            elif "functionCall" in part:
                out.append(("call", part["functionCall"]["name"], part["functionCall"]["args"]))
            elif "functionResponse" in part:
                out.append(("result", part["functionResponse"]["response"]["content"]))
    return out


def cohere_items(body: dict[str, Any]) -> list[Item]:
    out: list[Item] = []
    for message in body["messages"]:
        content = message.get("content")
        if message["role"] == "tool":
            out.append(("result", content))
            continue
        if isinstance(content, str) and content:
            out.append(("text", content))
        for part in content if isinstance(content, list) else []:
            if part["type"] == "text":
                out.append(("text", part["text"]))
            else:
                out.append(("image", part["image_url"]["url"].split(",", 1)[1]))
        for call in message.get("tool_calls") or []:
            function = call["function"]
            out.append(("call", function["name"], orjson.loads(function["arguments"])))
    return out


ADAPTERS = [
    ("claude", AnthropicAdapter, claude_items, anthropic_server.check),
    ("google", GeminiAdapter, gemini_items, gemini_server.check),
    ("cohere", CohereAdapter, cohere_items, cohere_server.check),
]


@pytest.mark.parametrize(
    ("source", "adapter", "items_of", "check"),
    ADAPTERS,
    ids=lambda a: a if isinstance(a, str) else "",
)
@settings(max_examples=150, deadline=None)
@given(conversation=conversations())
def test_translation_keeps_everything_in_order(
    source: str, adapter: Any, items_of: Any, check: Any, conversation: Any
) -> None:
    messages, expected = conversation
    connection = Connection(name="p", source=source, api_key="k-123456")
    built = adapter(connection, SOURCES[source], Credentials(key="k-123456")).build(
        ChatRequest.model_validate({"model": "p/m", "messages": messages}), []
    )
    seen = [i for i in items_of(built.body) if i != ("text", DEFAULT_PLACEHOLDER)]
    assert seen == expected
    assert check(built.body) is None  # the provider would accept it


def body_of(source: str, messages: list[dict[str, Any]], **fields: Any) -> dict[str, Any]:
    connection = Connection(name="p", source=source, api_key="k-123456", **fields)
    adapter = make_adapter(connection, SOURCES[source], Credentials(key="k-123456"))
    built = adapter.build(ChatRequest.model_validate({"model": "p/m", "messages": messages}), [])
    assert built.body is not None
    return built.body


def text(value: str) -> dict[str, Any]:
    return {"role": "user", "content": value}


SYSTEM_ONLY = [{"role": "system", "content": "Rules."}, {"role": "developer", "content": "More."}]


def test_leading_system_takes_every_leading_system_message_and_nothing_after() -> None:
    messages = [
        Message(role="system", content="a"),
        Message(role="developer", content="b"),
        Message(role="user", content="c"),
        Message(role="system", content="d"),
    ]
    system, rest = leading_system(messages)
    assert [m.content for m in system] == ["a", "b"]
    assert [m.content for m in rest] == ["c", "d"]
    assert leading_system(messages[:2]) == (messages[:2], [])
    assert leading_system(messages[2:]) == ([], messages[2:])


def test_merge_turns_joins_neighbours_of_one_role_and_leaves_out_empty_ones() -> None:
    turns = [("user", [{"t": 1}]), ("user", []), ("assistant", []), ("user", [{"t": 2}])]
    assert merge_turns(turns) == [("user", [{"t": 1}, {"t": 2}])]
    assert merge_turns([("user", [{"t": 1}]), ("model", [{"t": 2}])]) == [
        ("user", [{"t": 1}]),
        ("model", [{"t": 2}]),
    ]
    assert turns[0] == ("user", [{"t": 1}])  # the caller's turns are not changed


def test_a_conversation_of_system_messages_only_gets_the_placeholder_turn() -> None:
    claude = body_of("claude", SYSTEM_ONLY)
    assert [b["text"] for b in claude["system"]] == ["Rules.", "More."]
    assert claude["messages"] == [
        {"role": "user", "content": [{"type": "text", "text": DEFAULT_PLACEHOLDER}]}
    ]
    gemini = body_of("google", SYSTEM_ONLY)
    assert gemini["systemInstruction"] == {"parts": [{"text": "Rules."}, {"text": "More."}]}
    assert gemini["contents"] == [{"role": "user", "parts": [{"text": DEFAULT_PLACEHOLDER}]}]
    assert gemini_server.check(gemini) is None
    cohere = body_of("cohere", SYSTEM_ONLY)
    assert cohere["messages"] == [
        {"role": "system", "content": "Rules."},
        {"role": "system", "content": "More."},
        {"role": "user", "content": DEFAULT_PLACEHOLDER},
    ]


def test_a_later_system_message_stays_in_the_conversation() -> None:
    messages = [*SYSTEM_ONLY, text("Hi"), {"role": "system", "content": "Later."}, text("Go")]
    claude = body_of("claude", messages)
    assert len(claude["system"]) == 2
    assert claude["messages"] == [
        {
            "role": "user",
            "content": [{"type": "text", "text": t} for t in ("Hi", "Later.", "Go")],
        }
    ]
    gemini = body_of("google", messages)
    assert len(gemini["systemInstruction"]["parts"]) == 2
    assert gemini["contents"] == [
        {"role": "user", "parts": [{"text": "Hi"}, {"text": "Later."}, {"text": "Go"}]}
    ]
    cohere = body_of("cohere", messages)
    assert [m["role"] for m in cohere["messages"]] == ["system", "system", "user", "system", "user"]


@pytest.mark.parametrize("source", ["claude", "google", "cohere"])
def test_names_are_left_to_the_prompt_policy(source: str) -> None:
    # The names policy runs before any adapter: a name still on a message is not sent.
    messages = [{"role": "user", "name": "Bob", "content": "Hi"}]
    sent = orjson.dumps(body_of(source, messages)).decode()
    assert "Bob" not in sent and "Hi" in sent


@pytest.mark.parametrize("source", ["claude", "google", "cohere"])
def test_extra_body_and_exclude_params_are_left_to_the_runner(source: str) -> None:
    body = body_of(
        source,
        [text("Hi")],
        extra_body={"top_k": 3, "mystery": 1},
        exclude_params=["model", "messages", "contents"],
    )
    assert "mystery" not in body and "top_k" not in body
    assert "messages" in body or "contents" in body


def test_text_parts_are_joined_by_a_blank_line() -> None:
    parts = [{"type": "text", "text": "one"}, {"type": "text", "text": "two"}]
    call = {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}
    messages = [
        {"role": "system", "content": parts},
        text("Hi"),
        {"role": "assistant", "content": None, "tool_calls": [call]},
        {"role": "tool", "tool_call_id": "c1", "content": parts},
    ]
    claude = body_of("claude", messages)
    assert claude["system"] == [{"type": "text", "text": "one\n\ntwo"}]
    assert claude["messages"][-1]["content"][0]["content"] == "one\n\ntwo"
    gemini = body_of("google", messages)
    assert gemini["systemInstruction"]["parts"] == [{"text": "one\n\ntwo"}]
    result = gemini["contents"][-1]["parts"][0]["functionResponse"]["response"]
    assert result == {"content": "one\n\ntwo"}
    cohere = body_of("cohere", messages)
    assert cohere["messages"][0]["content"] == "one\n\ntwo"
    assert cohere["messages"][-1]["content"] == "one\n\ntwo"
