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
from chatgate.config import Connection
from chatgate.prompt.postprocess import DEFAULT_PLACEHOLDER
from chatgate.sources import SOURCES
from chatgate.types import ChatRequest
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
    built = adapter(connection, SOURCES[source], {}).build(
        ChatRequest.model_validate({"model": "p/m", "messages": messages}), []
    )
    seen = [i for i in items_of(built.body) if i != ("text", DEFAULT_PLACEHOLDER)]
    assert seen == expected
    assert check(built.body) is None  # the provider would accept it
