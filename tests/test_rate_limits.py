"""The limiter's rules, in process: a sliding-window RPM that no 60-second window
exceeds, TPM over finished answers, a monthly budget, and the headers of a 429."""

from __future__ import annotations

import asyncio

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chatgate.errors import RateLimitError
from chatgate.limits import WINDOW, LocalLimiter, TokenCounter, month_left, month_of
from chatgate.plan import ANONYMOUS, Caller, Finished, Plan
from chatgate.types import Usage


class Clock:
    """A clock the test moves."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def admit(limiter: LocalLimiter, caller: Caller) -> dict[str, str] | RateLimitError:
    try:
        return asyncio.run(limiter.admit(caller))
    except RateLimitError as exc:
        return exc


def test_rpm_refuses_the_request_past_the_limit_with_headers() -> None:
    clock = Clock()
    limiter = LocalLimiter(clock)
    caller = Caller("alice", rpm=3)
    answers = [admit(limiter, caller) for _ in range(3)]
    assert [a["x-ratelimit-remaining-requests"] for a in answers] == ["2", "1", "0"]  # type: ignore[index]
    clock.now += 10
    refused = admit(limiter, caller)
    assert isinstance(refused, RateLimitError)
    assert refused.status == 429 and refused.code == "rate_limit_exceeded"
    assert "3 requests per minute" in refused.message and "alice" in refused.message
    assert refused.headers["retry-after"] == "50"
    assert refused.headers["x-ratelimit-limit-requests"] == "3"
    assert refused.headers["x-ratelimit-remaining-requests"] == "0"
    assert refused.headers["x-ratelimit-reset-requests"] == "50s"
    clock.now += 50  # the first request leaves the window
    assert not isinstance(admit(limiter, caller), RateLimitError)


def test_callers_are_counted_apart() -> None:
    limiter = LocalLimiter(Clock())
    assert not isinstance(admit(limiter, Caller("a", rpm=1)), RateLimitError)
    assert not isinstance(admit(limiter, Caller("b", rpm=1)), RateLimitError)
    assert isinstance(admit(limiter, Caller("a", rpm=1)), RateLimitError)


@settings(max_examples=200, deadline=None)
@given(
    rpm=st.integers(1, 8),
    gaps=st.lists(st.floats(0, 30, allow_nan=False), min_size=1, max_size=60),
)
def test_no_window_holds_more_than_rpm(rpm: int, gaps: list[float]) -> None:
    clock = Clock()
    limiter = LocalLimiter(clock)
    caller = Caller("k", rpm=rpm)
    admitted: list[float] = []
    for gap in gaps:
        clock.now += gap
        counts = limiter.counts(caller, take=True)
        if not counts.refused:
            admitted.append(clock.now)
        else:
            # Refused only when the window really is full.
            inside = [t for t in admitted if t > clock.now - WINDOW]
            assert len(inside) >= rpm
    for start in admitted:
        assert len([t for t in admitted if start <= t < start + WINDOW]) <= rpm


def test_tpm_counts_finished_answers_in_the_window() -> None:
    clock = Clock()
    limiter = LocalLimiter(clock)
    caller = Caller("t", tpm=100)
    assert not isinstance(admit(limiter, caller), RateLimitError)
    limiter.spend(caller, 60)
    clock.now += 1
    answer = admit(limiter, caller)
    assert isinstance(answer, dict) and answer["x-ratelimit-remaining-tokens"] == "40"
    limiter.spend(caller, 60)
    refused = admit(limiter, caller)
    assert isinstance(refused, RateLimitError)
    assert "100 tokens per minute" in refused.message
    assert refused.headers["x-ratelimit-limit-tokens"] == "100"
    assert refused.headers["x-ratelimit-remaining-tokens"] == "0"
    assert refused.headers["retry-after"] == "59"
    clock.now += 60
    assert not isinstance(admit(limiter, caller), RateLimitError)


@settings(max_examples=200, deadline=None)
@given(
    spends=st.lists(
        st.tuples(st.floats(0, 20, allow_nan=False), st.integers(1, 5000)), min_size=1, max_size=80
    )
)
def test_tpm_is_the_sum_of_the_one_second_buckets_in_the_window(
    spends: list[tuple[float, int]],
) -> None:
    clock = Clock()
    limiter = LocalLimiter(clock)
    caller = Caller("b", tpm=10**9)
    spent: list[tuple[float, int]] = []
    for gap, tokens in spends:
        clock.now += gap
        limiter.spend(caller, tokens)
        spent.append((clock.now, tokens))
        counts = limiter.counts(caller, take=False)
        # A bucket is a whole second, so an answer leaves the window when its second does.
        inside = [(t, n) for t, n in spent if int(t) > clock.now - WINDOW]
        assert counts.tokens == sum(n for _, n in inside)
        assert counts.oldest_tokens == (int(min(t for t, _ in inside)) if inside else -1.0)


def test_the_budget_lasts_the_month() -> None:
    clock = Clock()
    limiter = LocalLimiter(clock)
    caller = Caller("b", budget_tokens=100)
    limiter.spend(caller, 100)
    clock.now += 3600
    refused = admit(limiter, caller)
    assert isinstance(refused, RateLimitError)
    assert "100 of 100 tokens this month" in refused.message
    assert int(refused.headers["retry-after"]) >= 1


def test_month_helpers() -> None:
    assert month_of(0) == "1970-01"
    assert month_left(0) == 31 * 86_400
    december_last = 1798761599.0  # 2026-12-31T23:59:59Z
    assert month_of(december_last) == "2026-12" and month_left(december_last) == 1


def test_the_observer_counts_tokens_for_limited_callers_only() -> None:
    limiter = LocalLimiter(Clock())
    counter = TokenCounter(limiter)
    limited = Caller("c", tpm=10)
    plan = Plan.__new__(Plan)
    for caller, expected in ((limited, 7), (ANONYMOUS, 0), (Caller("free"), 0)):
        plan.caller = caller
        counter.finished(plan, None, Finished("ok", 0.1, Usage(3, 4)))  # type: ignore[arg-type]
        assert limiter.counts(caller, take=False).tokens == (expected if caller.tpm else 0)
    counter.finished(plan, None, Finished("error", 0.1))  # type: ignore[arg-type]


@pytest.mark.parametrize("caller", [Caller("x"), ANONYMOUS])
def test_an_unlimited_caller_is_not_limited(caller: Caller) -> None:
    assert not caller.limited
    assert Caller("y", rpm=1).limited
