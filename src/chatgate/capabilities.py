"""What a backend can do itself, as typed data: the facts the plan needs to decide how
``n``, ``best_of`` and log-probabilities are met, per source and per model.

A `Profile` is read once from an adapter's parameter table when the connection is
built, not probed again per request; a model that a source row's `ModelRule` sets apart
(OpenAI's reasoning models) gets that profile with the rule's refusals and token-bound
name (`Profile.for_model`, once per model id).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from functools import lru_cache
from typing import TYPE_CHECKING

from chatgate.source_row import MaxTokensName, ModelRule
from chatgate.types import ChatRequest, Message

if TYPE_CHECKING:
    from chatgate.adapters.wire import WireAdapter


@dataclass(frozen=True, slots=True)
class Profile:
    """One connection's native abilities."""

    n: bool  # several choices in one request
    best_of: bool  # ranks best_of candidates itself (vLLM)
    logprobs: bool  # token log-probabilities, which emulating best_of needs
    streams: bool = True  # streams an answer (a stream to one that cannot is sent whole)
    # This model's own refusals and the name its token bound goes under (a ModelRule).
    refuses: frozenset[str] = frozenset()
    max_tokens_name: MaxTokensName | None = None
    why: str = ""

    def for_model(self, rules: tuple[ModelRule, ...], model: str) -> Profile:
        """This profile for *model*: the first of *rules* that matches it applied."""
        for rule in rules:
            if _compiled(rule.pattern).match(model):
                return replace(
                    self, refuses=rule.refuses, max_tokens_name=rule.max_tokens_name, why=rule.why
                )
        return self

    def emulates_best_of(self, request: ChatRequest) -> bool:
        """Whether *request*'s ``best_of`` is met by ranking candidates here."""
        asked = (request.best_of or 1) > (request.n or 1)
        return asked and self.logprobs and not self.best_of

    def fans_out(self, request: ChatRequest) -> bool:
        """Whether *request*'s ``n`` is met with parallel single-answer requests."""
        return (request.n or 1) > 1 and not self.n


# The request whose refusals reveal the table: every ability asked for at once.
_PROBE = ChatRequest.model_construct(
    {"model", "messages", "n", "best_of", "logprobs"},
    model="probe/probe",
    messages=[Message.model_construct({"role", "content"}, role="user", content="probe")],
    n=2,
    best_of=3,
    logprobs=True,
)


def profile_of(adapter: WireAdapter) -> Profile:
    """The abilities *adapter*'s parameter table declares."""
    refused = set(adapter.unsupported(_PROBE, ["n", "best_of", "logprobs"]))
    return Profile(
        n="n" not in refused,
        best_of="best_of" not in refused,
        logprobs="logprobs" not in refused,
        streams=bool(getattr(adapter, "streams", True)),
    )


@lru_cache(maxsize=64)
def _compiled(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern)
