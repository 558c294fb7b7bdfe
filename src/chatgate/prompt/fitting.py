"""Fit a conversation into a token budget by leaving out its oldest turns.

The leading system part (the system and developer messages before the first other
message) and the newest turns are kept; the oldest other messages go first. The caller's
``measure`` renders a candidate and counts its tokens, which may mean a request to the
backend's tokenizer, so the number to cut is found by binary search: ``measure`` runs at
most ``ceil(log2(n)) + 2`` times for *n* conversation messages, not *n* times. The search
assumes what any renderer gives: leaving out more messages never makes the prompt longer.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from chatgate.errors import ContextLengthError
from chatgate.types import Message


@dataclass(frozen=True, slots=True)
class Fitted:
    """The messages kept, how many were left out, and the kept prompt's token count."""

    messages: list[Message]
    cut: int
    tokens: int


def fit(
    messages: Sequence[Message], budget: int, measure: Callable[[Sequence[Message]], int]
) -> Fitted:
    """The longest suffix of the conversation that fits *budget* with the system part;
    a `ContextLengthError` when not even the system part and the last message fit."""
    head = 0
    while head < len(messages) and messages[head].role in ("system", "developer"):
        head += 1
    system, chat = list(messages[:head]), list(messages[head:])

    def keep(cut: int) -> list[Message]:
        return system + chat[cut:]

    tokens = measure(keep(0))
    if tokens <= budget:
        return Fitted(keep(0), 0, tokens)
    worst = max(len(chat) - 1, 0)
    if worst > 0:
        tokens = measure(keep(worst))
    if tokens > budget:
        what = "the system part and the last message" if chat else "the system part"
        raise ContextLengthError(
            f"the prompt does not fit the context: {what} alone come to {tokens:,} tokens, "
            f"more than the budget of {budget:,}",
            param="messages",
        )
    # Invariant: cutting `high` fits (its count is `tokens`), cutting `low` does not.
    low, high = 0, worst
    while high - low > 1:
        middle = (low + high) // 2
        count = measure(keep(middle))
        if count <= budget:
            high, tokens = middle, count
        else:
            low = middle
    return Fitted(keep(high), high, tokens)


def estimate_tokens(text: str, chars_per_token: float = 3.0) -> int:
    """A conservative token count for *text* when no tokenizer can be asked."""
    # English prose averages about four characters a token in the BPE vocabularies of
    # current models, code, digits and other scripts fewer: three over-counts the common
    # case, so a prompt trimmed by this estimate errs on the side of fitting.
    if chars_per_token <= 0:
        raise ValueError("chars_per_token must be positive")
    return math.ceil(len(text) / chars_per_token)
