"""``memory_strategy: last_k``: the rule, as a table and as properties."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from chatgate.extensions import MemoryStrategy
from chatgate.prompt.memory import apply_memory
from chatgate.types import Message

CALL = {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}


def msgs(*roles: str) -> list[Message]:
    out = []
    for n, role in enumerate(roles):
        fields: dict[str, Any] = {"role": role, "content": f"{role}{n}"}
        if role == "tool":
            fields["tool_call_id"] = "c1"
        if role == "call":
            fields = {"role": "assistant", "content": None, "tool_calls": [CALL]}
        out.append(Message.model_validate(fields))
    return out


@pytest.mark.parametrize(
    ("roles", "k", "kept"),
    [
        (["system", "user", "assistant", "user"], 1, ["system0", "user3"]),
        (
            ["system", "developer", "user", "assistant", "user"],
            2,
            ["system0", "developer1", "assistant3", "user4"],
        ),
        (["user", "assistant", "user"], 5, ["user0", "assistant1", "user2"]),
        (["system", "user", "assistant", "user"], 0, ["system0", "user3"]),  # the question stays
        (["user", "call", "tool", "assistant"], 2, ["assistant3"]),  # no orphan result
        (["system"], 0, ["system0"]),
    ],
)
def test_last_k(roles: list[str], k: int, kept: list[str]) -> None:
    out = apply_memory(msgs(*roles), MemoryStrategy(k=k))
    assert [m.content for m in out if m.content] == kept


def test_both_shapes_are_the_same_strategy() -> None:
    flat = MemoryStrategy.model_validate({"name": "last_k", "k": 3})
    nested = MemoryStrategy.model_validate({"name": "last_k", "params": {"k": 3}})
    assert flat == nested == MemoryStrategy.model_validate({"k": 3})


@given(
    roles=st.lists(st.sampled_from(["system", "user", "assistant"]), min_size=1, max_size=12),
    k=st.integers(0, 15),
)
def test_rules(roles: list[str], k: int) -> None:
    messages = msgs(*roles)
    out = apply_memory(messages, MemoryStrategy(k=k))
    lead = 0
    while lead < len(roles) and roles[lead] == "system":
        lead += 1
    assert out[:lead] == messages[:lead]  # the instructions stay
    rest = out[lead:]
    assert rest == messages[len(messages) - len(rest) :]  # a suffix, in order
    assert len(rest) == min(max(k, 1), len(messages) - lead)
