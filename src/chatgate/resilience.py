"""Upstream resilience, the decisions: which failures are retried or fallen back from,
how long to wait (jittered exponential backoff, ``Retry-After``), which connections are
ejected for a while after consecutive failures (outlier ejection, as Envoy does), and
the order a balance pool tries its targets in (docs/resilience.md); and `Learner`, the
observer that tells the ejector how plain requests ended.

Everything here is small, synchronous and clock-injected, so that it is tested without
an event loop; `chatgate.resilience_run` runs the attempts of a plan with it.
"""

from __future__ import annotations

import itertools
import logging
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING, Any, Literal

from chatgate.errors import (
    ChatgateError,
    OverloadedError,
    RateLimitError,
    UpstreamError,
)
from chatgate.exchange.errors import UpstreamAnsweredError
from chatgate.source_row import EMBEDDED

if TYPE_CHECKING:  # chatgate.plan imports the config, whose [resilience] defaults are here
    from chatgate.plan import Attempt, Finished, Plan

log = logging.getLogger("chatgate.resilience")

# The defaults of the ``[resilience]`` table (chatgate.config_sections.ResilienceSettings).
# Backoff before retry n (0-based): a uniform draw in [d/2, d], d = min(CAP, BASE * 2**n).
# Half of it is kept so that a retry never fires at once ("full jitter" may draw 0),
# and the other half spreads the clients that failed together.
BACKOFF_BASE = 0.25
BACKOFF_CAP = 8.0
# An upstream may ask for minutes; no client waits that long inside one request.
RETRY_AFTER_CAP = 30.0
# With no inference_timeout, no retry starts later than this after the request began:
# each attempt is bounded by its connection's timeouts, and the retries by this.
NO_DEADLINE_WINDOW = 120.0
# Outlier ejection: this many consecutive failures eject a connection for
# EJECT_BASE × (times ejected in a row), at most EJECT_CAP seconds.
EJECT_AFTER = 5
EJECT_BASE = 30.0
EJECT_CAP = 300.0
# The statuses chatgate answers an upstream's failure with (a 500 is chatgate's own bug).
_UPSTREAM_FAILED = frozenset({502, 503, 504})

Verdict = Literal["retry", "fallback", "final"]
Strategy = Literal["round_robin", "least_outstanding"]


def verdict(exc: BaseException) -> Verdict:
    """What a failed attempt allows: ``retry`` the same connection (429, an upstream
    5xx, an engine queue full, a connection that could not be made), ``fallback`` to
    the next alternative only (any other upstream failure: a broken or garbled answer,
    a connection timeout), or ``final`` (the client's fault, our deadline, a bug)."""
    if not isinstance(exc, ChatgateError):
        return "final"
    if isinstance(exc, RateLimitError | UpstreamAnsweredError | OverloadedError):
        return "retry"
    if isinstance(exc, UpstreamError) and exc.code == "upstream_unreachable":
        return "retry"
    if exc.status >= 500 and exc.code != "inference_timeout":
        return "fallback"
    return "final"


def counts_against(exc: BaseException) -> bool:
    """Whether *exc* counts towards ejecting the connection: a 5xx-like failure of the
    upstream (a 429 is the upstream working as meant, and does not)."""
    return verdict(exc) != "final" and not isinstance(exc, RateLimitError)


def counts_against_status(status: int, code: str | None) -> bool:
    """`counts_against` for a failed attempt as observers hear of it (`Finished`): an
    upstream failure's status (502, 503, 504), the request's own deadline excepted."""
    return status in _UPSTREAM_FAILED and code != "inference_timeout"


def reason(exc: BaseException) -> str:
    """The short reason shown in ``x-chatgate-attempts``: the status, or what failed."""
    if isinstance(exc, ChatgateError):
        if exc.code == "upstream_unreachable":
            return "unreachable"
        return str(exc.status)
    return "error"


def backoff(
    retry: int,
    *,
    base: float = BACKOFF_BASE,
    cap: float = BACKOFF_CAP,
    draw: Callable[[], float] = random.random,
) -> float:
    """Seconds to wait before retry number *retry* (0-based), jittered in [d/2, d]."""
    ceiling = min(cap, base * 2.0 ** min(retry, 32))
    return ceiling * (0.5 + draw() / 2)


def retry_after(
    headers: Mapping[str, str], *, cap: float = RETRY_AFTER_CAP, now: float | None = None
) -> float | None:
    """``Retry-After`` in seconds (delta-seconds or an HTTP date), capped; None when
    absent or unreadable."""
    value = next((v for k, v in headers.items() if k.lower() == "retry-after"), None)
    if value is None:
        return None
    value = value.strip()
    if value.isdigit():
        seconds = float(value)
    else:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:  # an HTTP date is GMT; a date without a zone is read so
            return None
        seconds = when.timestamp() - (time.time() if now is None else now)
    return min(max(seconds, 0.0), cap)


def wait_before(
    exc: BaseException,
    retry: int,
    *,
    base: float,
    cap: float,
    ceiling: float = BACKOFF_CAP,
) -> float:
    """The wait before *retry*: the backoff (*base*, at most *ceiling*), or the
    upstream's ``Retry-After`` (at most *cap*) if longer. An upstream sends it on a 429
    and on a 503 (`chatgate.exchange.errors.classify_error` keeps it on both), and the
    embedded engine on its queue being full."""
    asked = retry_after(exc.headers, cap=cap) if isinstance(exc, ChatgateError) else None
    delay = backoff(retry, base=base, cap=ceiling)
    return delay if asked is None else max(delay, asked)


@dataclass(slots=True)
class Outlier:
    """One connection's record: consecutive failures, ejections in a row, and until when
    (monotonic seconds) it is ejected."""

    failures: int = 0
    ejections: int = 0
    until: float = 0.0


class Ejector:
    """Outlier ejection: *after* consecutive failures eject a route for *base* × the
    times it was ejected in a row, at most *cap* seconds; a success forgives it all."""

    def __init__(
        self,
        after: int = EJECT_AFTER,
        base: float = EJECT_BASE,
        cap: float = EJECT_CAP,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.after, self.base, self.cap, self.clock = after, base, cap, clock
        self.routes: dict[str, Outlier] = {}

    def ejected(self, route: str) -> bool:
        """Whether *route* is ejected now."""
        found = self.routes.get(route)
        return found is not None and found.until > self.clock()

    def failed(self, route: str) -> bool:
        """Count a failure of *route*; True when this one ejected it."""
        found = self.routes.setdefault(route, Outlier())
        if found.until > self.clock():
            return False  # tried while ejected (nothing else was left): already out
        found.failures += 1
        if found.failures < self.after:
            return False
        found.failures = 0
        found.ejections += 1
        found.until = self.clock() + min(self.cap, self.base * found.ejections)
        return True

    def succeeded(self, route: str) -> None:
        """*route* answered: its record is cleared."""
        if route in self.routes:
            del self.routes[route]

    def state(self, route: str) -> dict[str, Any] | None:
        """What ``/healthz`` shows of *route*; None when it has no failures on record."""
        found = self.routes.get(route)
        if found is None:
            return None
        left = found.until - self.clock()
        return {
            "ejected": left > 0,
            "ejected_for_s": round(left, 1) if left > 0 else 0.0,
            "consecutive_failures": found.failures,
            "times_ejected": found.ejections,
        }


class Learner:
    """The observer that tells the ejector how the attempts of plain requests to remote
    connections ended; `chatgate.resilience_run` tells it of its own (their plans have a
    trail). The embedded engine is left out: a plain request to it fails on its queue
    being full, its own load, which no cool-down relieves (its /healthz shows the queue)."""

    __slots__ = ("ejector", "routes")

    def __init__(self, ejector: Ejector) -> None:
        self.ejector = ejector
        self.routes = ejector.routes  # never rebound: read here without a hop

    def started(self, plan: Plan, attempt: Attempt) -> None:
        """Nothing is known until the attempt ends."""

    def finished(self, plan: Plan, attempt: Attempt, result: Finished) -> None:
        """A success clears the route's record; an upstream failure counts against it."""
        # On every request: a success costs one dict lookup (the runner's own successes
        # were cleared already, and find nothing).
        if result.outcome == "ok":
            if attempt.route in self.routes:
                self.ejector.succeeded(attempt.route)
            return
        failed = (
            plan.trail is None
            and result.outcome == "error"
            and counts_against_status(result.status, result.error_code)
            and attempt.backend.connection.source != EMBEDDED
        )
        if failed and self.ejector.failed(attempt.route):
            log.warning("connection %s ejected after failures", attempt.route)


def route_of(model: str) -> str:
    """The route part of a model id (``conn@dep/model`` → ``conn@dep``)."""
    return model.partition("/")[0]


class Pool:
    """Several ``connection/model`` targets that serve one model, in the order a request
    tries them: round robin, or the fewest requests outstanding first (ties in round-robin
    order); ejected targets last, where the runner skips them."""

    def __init__(self, targets: list[str], strategy: Strategy = "round_robin") -> None:
        self.targets = tuple(targets)
        self.strategy = strategy
        self._turn = itertools.count()

    def order(self, outstanding: Mapping[str, int], ejected: Callable[[str], bool]) -> list[str]:
        """Every target, the one to try first at the front."""
        start = next(self._turn) % len(self.targets)
        turn = [*self.targets[start:], *self.targets[:start]]
        if self.strategy == "least_outstanding":
            turn.sort(key=lambda t: outstanding.get(route_of(t), 0))  # stable: ties rotate
        return sorted(turn, key=lambda t: ejected(route_of(t)))
