"""The plan of one request: everything `Gateway.prepare` decides, decided once.

Backends execute an `Attempt` and decide nothing again: the request to send (its output
constraint already rewritten for the backend, its refused parameters dropped), how its
output is enforced and checked, and how ``n`` and ``best_of`` are met. A `Plan` holds an
ordered list of attempts; `Gateway.run` tries them in order, and tells its observers
what happened (where usage records, metrics and retries hook in).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, Protocol

from chatgate.output import OutputContract
from chatgate.prompt.policy import Shaping
from chatgate.types import ChatRequest, Usage

if TYPE_CHECKING:
    from chatgate.backends.base import Backend


@dataclass(frozen=True, slots=True)
class Caller:
    """Who sent a request: the gateway key's label, or ``anonymous`` without keys;
    ``admin`` when it may use the admin API."""

    id: str
    admin: bool = True
    # A stored gateway key's rules (docs/keys.md); empty tuples allow every one, None is
    # no limit. Config keys and the anonymous caller have none.
    models: tuple[str, ...] = ()
    connections: tuple[str, ...] = ()
    rpm: int | None = None
    tpm: int | None = None
    budget_tokens: int | None = None

    @property
    def limited(self) -> bool:
        """Whether any rate or budget applies to this caller."""
        return self.rpm is not None or self.tpm is not None or self.budget_tokens is not None

    def __str__(self) -> str:
        return self.id


ANONYMOUS = Caller("anonymous")


@dataclass(frozen=True, slots=True)
class Fanout:
    """How ``n`` and ``best_of`` are met where the backend cannot in one request.

    ``copies`` > 1: ``n`` single-answer requests at once (seed + i), merged as choices.
    ``candidates`` > 0: that many candidates with log-probabilities, ranked by mean token
    log-probability, the best ``n`` kept; ``candidates_in_one`` when the backend makes
    them in one request (it has ``n``).
    """

    copies: int = 1
    candidates: int = 0
    candidates_in_one: bool = False


ONE = Fanout()


@dataclass(frozen=True, slots=True)
class OutputPlan:
    """How the output constraint is kept: the contract, whether the finished output is
    checked (``checked``), whether a stream is held back until it is (``buffered``), and
    how often an answer that fails is asked for again."""

    contract: OutputContract | None = None
    checked: bool = False
    buffered: bool = False
    retries: int = 0


FREE = OutputPlan()


# Attempt and Plan are made on every request, and a frozen dataclass costs four times
# as much to make: they are not frozen, and nothing changes them after `prepare`.
@dataclass(slots=True)
class Attempt:
    """One backend's part of a plan."""

    route: str  # the connection name, or "name@deployment"
    backend: Backend
    request: ChatRequest  # what this backend is asked, as it will be sent
    dropped: tuple[str, ...] = ()
    output: OutputPlan = FREE
    fanout: Fanout = ONE


@dataclass(slots=True)
class Plan:
    """A request checked, routed and shaped, with its attempts in order."""

    request: ChatRequest  # the client's request after memory and shaping
    attempts: tuple[Attempt, ...]
    shaping: Shaping
    forgotten: int = 0  # messages the memory strategy left out
    caller: Caller = ANONYMOUS
    door: str = "library"  # the front door it came through; "library" for direct calls
    # What the resilient runner tried, in order ("openai/gpt-4o:503", "claude/x:ok"),
    # sent as x-chatgate-attempts; None on a plan with no retries or alternatives.
    trail: list[str] | None = None

    @property
    def first(self) -> Attempt:
        """The attempt tried first."""
        return self.attempts[0]

    @property
    def dropped(self) -> list[str]:
        """The parameters the first attempt's connection dropped (for the response
        header)."""
        return list(self.first.dropped)


Outcome = Literal["ok", "error", "cancelled"]


@dataclass(frozen=True, slots=True)
class Finished:
    """What an observer learns when an attempt ends."""

    outcome: Outcome
    seconds: float
    usage: Usage | None = None
    status: int = 200
    error_code: str | None = None
    streamed: bool = False
    # False when another attempt follows this failed one (a retry or a fallback), so
    # that an observer counts the request once, at its last attempt.
    final: bool = True


class Observer(Protocol):
    """Told about every attempt: where usage records and metrics hook in."""

    def started(self, plan: Plan, attempt: Attempt) -> None:
        """An attempt is about to run."""
        ...

    def finished(self, plan: Plan, attempt: Attempt, result: Finished) -> None:
        """An attempt ended (answered, failed or was cancelled)."""
        ...
