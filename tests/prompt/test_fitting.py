"""Context fitting: the system part and the newest turns stay, in O(log n) measurements."""

from __future__ import annotations

import math
from collections.abc import Sequence

import pytest
from hypothesis import given
from hypothesis import strategies as st

from chatgate.errors import ContextLengthError
from chatgate.prompt.fitting import estimate_tokens, fit
from chatgate.prompt.instruct import preset, render
from chatgate.types import Message, Role


class Counter:
    """A measure: one token a character of content, plus a fixed cost a message."""

    def __init__(self, per_message: int = 1) -> None:
        self.calls = 0
        self.per_message = per_message

    def __call__(self, messages: Sequence[Message]) -> int:
        self.calls += 1
        return sum(len(m.text()) + self.per_message for m in messages)


def chat(*texts: str, system: Sequence[str] = ("sys",)) -> list[Message]:
    head = [Message(role="system", content=s) for s in system]
    roles: tuple[Role, Role] = ("user", "assistant")
    return head + [Message(role=roles[i % 2], content=t) for i, t in enumerate(texts)]


def test_everything_fits_with_one_measurement() -> None:
    measure = Counter()
    messages = chat("aa", "bb", "cc")
    fitted = fit(messages, 100, measure)
    assert (fitted.messages, fitted.cut, fitted.tokens, measure.calls) == (messages, 0, 13, 1)


def test_the_oldest_turns_go_first_and_the_system_part_stays() -> None:
    messages = chat("1111", "2222", "3333", "4444", system=("s", "t"))
    # system 2+2, each turn 5: keeping the last two turns costs 14.
    fitted = fit(messages, 14, Counter())
    assert fitted.messages == messages[:2] + messages[-2:]
    assert (fitted.cut, fitted.tokens) == (2, 14)


@pytest.mark.parametrize(
    ("messages", "what"),
    [
        (chat("x" * 50), "the system part and the last message"),
        (chat("a", "x" * 50), "the system part and the last message"),
        (chat(system=("x" * 50,)), "the system part"),
    ],
)
def test_too_big_even_when_cut_to_the_bone(messages: list[Message], what: str) -> None:
    with pytest.raises(ContextLengthError, match=f"{what} alone come to") as caught:
        fit(messages, 10, Counter())
    assert "budget of 10" in caught.value.message
    assert caught.value.code == "context_length_exceeded"


def test_fitting_a_rendered_prompt() -> None:
    template = preset("chatml")
    messages = chat("Hi", "Hello", "How?")

    def measure(candidate: Sequence[Message]) -> int:
        return estimate_tokens(render(candidate, template).text)

    everything = measure(messages)
    fitted = fit(messages, everything - 1, measure)
    assert fitted.messages == [messages[0], *messages[2:]]
    assert fitted.tokens == measure(fitted.messages) < everything


@pytest.mark.parametrize(
    ("text", "ratio", "expected"),
    [("", 3.0, 0), ("a", 3.0, 1), ("abc", 3.0, 1), ("abcd", 3.0, 2), ("abcd", 4.0, 1)],
)
def test_estimate_tokens_rounds_up(text: str, ratio: float, expected: int) -> None:
    assert estimate_tokens(text, ratio) == expected


def test_estimate_tokens_needs_a_positive_ratio() -> None:
    with pytest.raises(ValueError, match="positive"):
        estimate_tokens("abc", 0)


@given(
    system=st.lists(st.text(max_size=5), max_size=3),
    turns=st.lists(st.text(max_size=20), max_size=60),
    budget=st.integers(min_value=0, max_value=400),
    per_message=st.integers(min_value=0, max_value=5),
)
def test_fit_keeps_a_suffix_and_measures_logarithmically(
    system: list[str], turns: list[str], budget: int, per_message: int
) -> None:
    messages = chat(*turns, system=system)
    head, rest = messages[: len(system)], messages[len(system) :]
    smallest = Counter(per_message)(head + rest[-1:])
    measure = Counter(per_message)
    try:
        fitted = fit(messages, budget, measure)
    except ContextLengthError:
        assert smallest > budget
    else:
        assert smallest <= budget
        kept = fitted.messages[len(head) :]
        assert fitted.messages[: len(head)] == head
        assert kept == rest[len(rest) - len(kept) :]
        assert fitted.cut == len(rest) - len(kept)
        assert fitted.tokens == Counter(per_message)(fitted.messages) <= budget
        if fitted.cut:  # as many as fit: one more message would not
            assert Counter(per_message)(head + rest[fitted.cut - 1 :]) > budget
    assert measure.calls <= 2 * math.log2(max(len(rest), 1)) + 3
