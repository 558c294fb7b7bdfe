"""Speaker names are handled once, before any adapter, by the ``names`` policy.

A wire with a ``name`` field (OpenAI's) carries it; one without (Claude, Gemini, Cohere)
or with one for user messages only (xAI) gets ``Name: `` in front of the text, or
nothing with ``names = "none"``.
"""

from __future__ import annotations

from typing import Any

import pytest

from chatgate.config import Connection, Settings
from chatgate.gateway import Gateway
from chatgate.types import NamesPolicy

CHAT = [
    {"role": "user", "content": "Hi", "name": "Alice"},
    {"role": "assistant", "content": "Hello", "name": "Bob"},
    {"role": "user", "content": [{"type": "text", "text": "More"}], "name": "Alice"},
]


def sent(source: str, names: NamesPolicy | None = None) -> list[dict[str, Any]]:
    conn = Connection(
        name="c", source=source, base_url="http://127.0.0.1:9/v1", api_key="k-1", names=names
    )
    with Gateway(Settings(connections=[conn], embedded=False)) as gateway:
        shown = gateway._loop().call(gateway.preview(model="c/m", messages=CHAT))
    body = shown["body"]
    found: list[dict[str, Any]] = body.get("messages") or body.get("contents") or []
    return found


def texts(messages: list[dict[str, Any]]) -> list[str]:
    out = []
    for message in messages:
        content: str | list[dict[str, Any]] = message.get("content", message.get("parts", []))
        if isinstance(content, str):
            out.append(content)
        else:
            out.append("".join(p.get("text", "") for p in content))
    return out


@pytest.mark.parametrize("source", ["claude", "google", "cohere"])
def test_a_wire_without_names_gets_prefixes(source: str) -> None:
    assert texts(sent(source)) == ["Alice: Hi", "Bob: Hello", "Alice: More"]


def test_names_none_drops_them() -> None:
    assert texts(sent("claude", names="none")) == ["Hi", "Hello", "More"]


def test_openai_carries_the_name_field() -> None:
    messages = sent("openai")
    assert [m.get("name") for m in messages] == ["Alice", "Bob", "Alice"]
    assert texts(messages) == ["Hi", "Hello", "More"]


def test_xai_carries_user_names_and_prefixes_the_rest() -> None:
    messages = sent("xai")
    assert [m.get("name") for m in messages] == ["Alice", None, "Alice"]
    assert texts(messages) == ["Hi", "Bob: Hello", "More"]
