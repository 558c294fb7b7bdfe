"""Prompt post-processing: the reference's worked examples, its bugs fixed, and the rules.

The worked examples are those of ``shared/reference/sillytavern-chat-completions.md``
§2.3, with the speakers' names carried by the messages themselves (chatgate has no
"character" and "user" names of its own).
"""

from __future__ import annotations

import itertools
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chatgate.prompt.postprocess import MODES, Mode, postprocess
from chatgate.types import ImagePart, Message, TextPart, ToolCall

PH = "[Start a new chat]"
IMAGE = {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}


def msgs(*items: dict[str, Any]) -> list[Message]:
    return [Message.model_validate(i) for i in items]


def dump(messages: list[Message]) -> list[dict[str, Any]]:
    return [m.model_dump(exclude_none=True) for m in messages]


def call(call_id: str, name: str, arguments: str) -> dict[str, Any]:
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}


X = msgs(
    {"role": "system", "content": "You are Alice."},
    {"role": "system", "content": "Scenario: tavern."},
    {"role": "system", "name": "Bob", "content": "Hi there"},
    {"role": "system", "name": "Alice", "content": "Hello, traveler."},
    {"role": "assistant", "content": "Welcome to the tavern!"},
    {"role": "user", "name": "Bob", "content": "I order ale."},
    {"role": "user", "content": [{"type": "text", "text": "Look at this"}, IMAGE]},
    {"role": "system", "content": "[OOC: keep it short]"},
)
X_SYSTEM = "You are Alice.\n\nScenario: tavern.\n\nBob: Hi there\n\nAlice: Hello, traveler."
X_USER = [{"type": "text", "text": "Bob: I order ale.\n\nLook at this"}, IMAGE]

T = msgs(
    {"role": "system", "content": "Sys"},
    {"role": "user", "content": "Weather in Paris?"},
    {
        "role": "assistant",
        "content": "",
        "tool_calls": [call("call_1", "get_weather", '{"city":"Paris"}')],
    },
    {"role": "tool", "tool_call_id": "call_1", "content": '{"temp":20}'},
    {"role": "tool", "tool_call_id": "call_2", "content": '{"humidity":50}'},
    {"role": "assistant", "content": "It is 20C."},
    {"role": "assistant", "content": "Anything else?"},
)
# What the tools-keeping modes make of T: calls and results intact, texts merged.
T_KEPT: list[dict[str, Any]] = [
    {"role": "system", "content": "Sys"},
    {"role": "user", "content": "Weather in Paris?"},
    {"role": "assistant", "tool_calls": [call("call_1", "get_weather", '{"city":"Paris"}')]},
    {"role": "tool", "tool_call_id": "call_1", "content": '{"temp":20}'},
    {"role": "tool", "tool_call_id": "call_2", "content": '{"humidity":50}'},
    {"role": "assistant", "content": "It is 20C.\n\nAnything else?"},
]

CASES: list[tuple[str, list[Message], Mode, list[dict[str, Any]]]] = [
    ("X none", X, "none", dump(X)),
    (
        "X merge",
        X,
        "merge",
        [
            {"role": "system", "content": X_SYSTEM},
            {"role": "assistant", "content": "Welcome to the tavern!"},
            {"role": "user", "content": X_USER},
            {"role": "system", "content": "[OOC: keep it short]"},
        ],
    ),
    (
        "X semi-strict",
        X,
        "semi-strict",
        [
            {"role": "system", "content": X_SYSTEM},
            {"role": "assistant", "content": "Welcome to the tavern!"},
            {
                "role": "user",
                "content": [*X_USER, {"type": "text", "text": "[OOC: keep it short]"}],
            },
        ],
    ),
    (
        "X strict",
        X,
        "strict",
        [
            {"role": "system", "content": X_SYSTEM},
            {"role": "user", "content": PH},
            {"role": "assistant", "content": "Welcome to the tavern!"},
            {
                "role": "user",
                "content": [*X_USER, {"type": "text", "text": "[OOC: keep it short]"}],
            },
        ],
    ),
    (
        "X single",
        X,
        "single",
        [
            {
                "role": "user",
                "content": [
                    {
                        "type": "text",
                        "text": X_SYSTEM + "\n\nWelcome to the tavern!\n\n"
                        "Bob: I order ale.\n\nLook at this",
                    },
                    IMAGE,
                    {"type": "text", "text": "[OOC: keep it short]"},
                ],
            },
        ],
    ),
    (
        "T merge (tools become text)",
        T,
        "merge",
        [
            {"role": "system", "content": "Sys"},
            {"role": "user", "content": "Weather in Paris?"},
            {"role": "assistant", "content": '[tool call get_weather({"city":"Paris"})]'},
            {
                "role": "user",
                "content": '[tool result get_weather] {"temp":20}\n\n'
                '[tool result call_2] {"humidity":50}',
            },
            {"role": "assistant", "content": "It is 20C.\n\nAnything else?"},
        ],
    ),
    ("T merge-tools", T, "merge-tools", T_KEPT),
    ("T semi-strict-tools", T, "semi-strict-tools", T_KEPT),
    ("T strict-tools", T, "strict-tools", T_KEPT),
    (
        "T single",
        T,
        "single",
        [
            {
                "role": "user",
                "content": "Sys\n\nWeather in Paris?\n\n"
                '[tool call get_weather({"city":"Paris"})]\n\n'
                '[tool result get_weather] {"temp":20}\n\n'
                '[tool result call_2] {"humidity":50}\n\n'
                "It is 20C.\n\nAnything else?",
            },
        ],
    ),
    (
        "strict: assistant first",
        msgs({"role": "assistant", "content": "Greeting"}, {"role": "user", "content": "hi"}),
        "strict",
        [
            {"role": "user", "content": PH},
            {"role": "assistant", "content": "Greeting"},
            {"role": "user", "content": "hi"},
        ],
    ),
    (
        "strict: system alone",
        msgs({"role": "system", "content": "S"}),
        "strict",
        [{"role": "system", "content": "S"}, {"role": "user", "content": PH}],
    ),
    (
        "strict: system, user",
        msgs({"role": "system", "content": "S"}, {"role": "user", "content": "u"}),
        "strict",
        [{"role": "system", "content": "S"}, {"role": "user", "content": "u"}],
    ),
    (
        "semi: late system",
        msgs(
            {"role": "assistant", "content": "Greeting"},
            {"role": "system", "content": "S2"},
            {"role": "user", "content": "hi"},
        ),
        "semi-strict",
        [{"role": "assistant", "content": "Greeting"}, {"role": "user", "content": "S2\n\nhi"}],
    ),
    ("merge: nothing", [], "merge", [{"role": "user", "content": PH}]),
    (
        "developer is system",
        msgs({"role": "developer", "content": "D"}, {"role": "system", "content": "S"}),
        "merge",
        [{"role": "system", "content": "D\n\nS"}],
    ),
    # The reference's bugs, fixed:
    (
        "fixed: an empty message does not split a merge",
        msgs(
            {"role": "user", "content": "a"},
            {"role": "user", "content": ""},
            {"role": "user", "content": "b"},
        ),
        "merge",
        [{"role": "user", "content": "a\n\nb"}],
    ),
    (
        "fixed: merging keeps tool calls",
        msgs(
            {"role": "user", "content": "q"},
            {"role": "assistant", "content": "Let me check."},
            {"role": "assistant", "content": "calling", "tool_calls": [call("c1", "f", "{}")]},
            {"role": "tool", "tool_call_id": "c1", "content": "r"},
        ),
        "merge-tools",
        [
            {"role": "user", "content": "q"},
            {
                "role": "assistant",
                "content": "Let me check.\n\ncalling",
                "tool_calls": [call("c1", "f", "{}")],
            },
            {"role": "tool", "tool_call_id": "c1", "content": "r"},
        ],
    ),
]


@pytest.mark.parametrize(
    ("messages", "mode", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_worked_examples(
    messages: list[Message], mode: Mode, expected: list[dict[str, Any]]
) -> None:
    assert dump(postprocess(messages, mode, placeholder=PH)) == expected


def test_fixed_names_policy_none_adds_no_prefixes() -> None:
    out = postprocess(X, "single", names="none")
    first = out[0].content
    assert isinstance(first, list) and isinstance(first[0], TextPart)
    assert "Bob:" not in first[0].text and "Alice:" not in first[0].text


def test_names_keep_leaves_the_field_on_unmerged_messages() -> None:
    messages = msgs(
        {"role": "user", "name": "Bob", "content": "hi"},
        {"role": "assistant", "name": "Alice", "content": "hello"},
    )
    assert dump(postprocess(messages, "merge", names="keep")) == dump(messages)
    merged = postprocess(
        msgs(
            {"role": "user", "name": "Bob", "content": "a"},
            {"role": "user", "name": "Eve", "content": "b"},
        ),
        "merge",
        names="keep",
    )
    assert dump(merged) == [{"role": "user", "content": "Bob: a\n\nEve: b"}]


def test_custom_placeholder() -> None:
    out = postprocess(msgs({"role": "assistant", "content": "x"}), "strict", placeholder="Go.")
    assert out[0].content == "Go."


def test_input_is_not_changed() -> None:
    before = dump(X)
    postprocess(X, "single")
    assert dump(X) == before


# --- the rules, over random conversations -------------------------------------------

WORDS = st.text(alphabet="abcdefgh ", min_size=1, max_size=8).map(str.strip).filter(bool)


@st.composite
def conversations(draw: st.DrawFn) -> list[Message]:
    out: list[dict[str, Any]] = []
    pending_calls: list[str] = []
    for index in range(draw(st.integers(0, 9))):
        kind = draw(
            st.sampled_from(
                ["system", "developer", "user", "assistant", "empty", "image", "call", "result"]
            )
        )
        name = draw(st.sampled_from([None, None, "Bob", "Ann"]))
        extra = {"name": name} if name else {}
        if kind == "call":
            call_id = f"call{index}"
            pending_calls.append(call_id)
            out.append(
                {
                    "role": "assistant",
                    "content": draw(st.sampled_from(["", "ok"])),
                    "tool_calls": [call(call_id, f"fn{index}", '{"x":1}')],
                }
            )
        elif kind == "result" and pending_calls:
            out.append(
                {"role": "tool", "tool_call_id": pending_calls.pop(0), "content": draw(WORDS)}
            )
        elif kind == "image":
            out.append(
                {"role": "user", "content": [{"type": "text", "text": draw(WORDS)}, IMAGE], **extra}
            )
        elif kind == "empty":
            out.append({"role": draw(st.sampled_from(["user", "assistant"])), "content": ""})
        elif kind in ("system", "developer", "user", "assistant"):
            out.append({"role": kind, "content": draw(WORDS), **extra})
    return msgs(*out)


def texts(messages: list[Message]) -> str:
    parts = []
    for m in messages:
        if isinstance(m.content, str):
            parts.append(m.content)
        elif m.content:
            parts += [p.text for p in m.content if isinstance(p, TextPart)]
    return "\n".join(parts)


def images(messages: list[Message]) -> int:
    return sum(
        isinstance(p, ImagePart) for m in messages if isinstance(m.content, list) for p in m.content
    )


def calls(messages: list[Message]) -> list[ToolCall]:
    return [c for m in messages for c in (m.tool_calls or [])]


def in_order(needles: list[str], haystack: str) -> bool:
    position = 0
    for needle in needles:
        found = haystack.find(needle, position)
        if found < 0:
            return False
        position = found + len(needle)
    return True


@settings(max_examples=300, deadline=None)
@given(
    conversation=conversations(),
    mode=st.sampled_from(MODES),
    names=st.sampled_from(["prefix", "keep", "none"]),
)
def test_rules(conversation: list[Message], mode: Mode, names: Any) -> None:
    out = postprocess(conversation, mode, names=names)
    # Every text, image and tool call survives, in order.
    originals = [t for m in conversation for t in texts([m]).split("\n") if t]
    assert in_order(originals, texts(out))
    assert images(out) == images(conversation)
    if mode == "none" or mode.endswith("-tools"):
        assert calls(out) == calls(conversation)
        if mode != "none":
            assert [m.tool_call_id for m in out if m.role == "tool"] == [
                m.tool_call_id for m in conversation if m.role == "tool"
            ]
    else:
        assert not calls(out) and all(m.role != "tool" for m in out)
        assert in_order(
            [f"{c.function.name}({c.function.arguments})" for c in calls(conversation)], texts(out)
        )
    # Idempotent.
    assert dump(postprocess(out, mode, names=names)) == dump(out)
    if mode == "none":
        assert dump(out) == dump(conversation)
        return
    assert out, "never empty"
    roles = [m.role for m in out]
    if mode in ("merge", "semi-strict", "strict"):
        assert all(a != b for a, b in itertools.pairwise(roles))
    if mode.endswith("-tools"):
        for first, second in itertools.pairwise(out):
            if first.role == second.role:
                assert first.role == "tool" or first.tool_calls
    if mode.removesuffix("-tools") in ("semi-strict", "strict"):
        assert "system" not in roles[1:] and "developer" not in roles
    if mode.removesuffix("-tools") == "strict":
        start = 1 if roles[0] == "system" else 0
        assert roles[start] == "user"
    if mode == "single":
        assert roles == ["user"]
    if names == "none":
        assert all(m.name is None for m in out)
