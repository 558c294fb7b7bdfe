"""The decisions of upstream resilience, without a network: backoff and its jitter,
Retry-After, what is retried, the ejection state machine, the balance pools' order, and
the [balance] config table."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from chatgate.config import Balance, Connection, Settings, _check_doors
from chatgate.errors import (
    ConfigError,
    ContextLengthError,
    GatewayTimeoutError,
    InvalidRequestError,
    OverloadedError,
    RateLimitError,
    UpstreamError,
)
from chatgate.exchange.errors import UpstreamAnsweredError
from chatgate.resilience import (
    Ejector,
    Pool,
    backoff,
    counts_against,
    reason,
    retry_after,
    verdict,
    wait_before,
)


@given(st.integers(0, 100), st.floats(0, 1, exclude_max=True))
def test_backoff_stays_within_half_to_whole_of_its_ceiling(retry: int, draw: float) -> None:
    ceiling = min(8.0, 0.25 * 2.0**retry) if retry < 32 else 8.0
    delay = backoff(retry, base=0.25, cap=8.0, draw=lambda: draw)
    assert ceiling / 2 <= delay <= ceiling


def test_backoff_grows_then_stops_at_its_cap() -> None:
    highest = [backoff(n, base=0.25, cap=8.0, draw=lambda: 0.999999) for n in range(8)]
    assert highest == sorted(highest)
    assert highest[-1] == pytest.approx(8.0, rel=1e-3)


def test_retry_after_reads_seconds_and_dates_and_is_capped() -> None:
    assert retry_after({"Retry-After": "3"}) == 3.0
    assert retry_after({"retry-after": " 0 "}) == 0.0
    assert retry_after({"Retry-After": "3600"}, cap=30.0) == 30.0
    now = datetime(2026, 1, 1, tzinfo=UTC)
    later = format_datetime(now + timedelta(seconds=12), usegmt=True)
    assert retry_after({"Retry-After": later}, now=now.timestamp()) == pytest.approx(12.0)
    past = format_datetime(now - timedelta(seconds=12), usegmt=True)
    assert retry_after({"Retry-After": past}, now=now.timestamp()) == 0.0
    assert retry_after({}) is None
    assert retry_after({"Retry-After": "soon"}) is None
    assert retry_after({"Retry-After": "-5"}) is None


def test_the_wait_is_the_longer_of_backoff_and_retry_after() -> None:
    asked = RateLimitError("slow down", headers={"Retry-After": "2"})
    assert wait_before(asked, 0, base=0.01, cap=30.0) == 2.0
    plain = UpstreamAnsweredError("500")
    assert 0.005 <= wait_before(plain, 0, base=0.01, cap=30.0) <= 0.01


def test_what_is_retried_fallen_back_from_or_final() -> None:
    assert verdict(RateLimitError("429")) == "retry"
    assert verdict(UpstreamAnsweredError("503")) == "retry"
    assert verdict(OverloadedError("queue full")) == "retry"
    assert verdict(UpstreamError("refused", code="upstream_unreachable")) == "retry"
    assert verdict(UpstreamError("cut", code="upstream_stream_broken")) == "fallback"
    assert verdict(GatewayTimeoutError("silent")) == "fallback"
    assert verdict(GatewayTimeoutError("ours", code="inference_timeout")) == "final"
    assert verdict(InvalidRequestError("bad")) == "final"
    assert verdict(ContextLengthError("long")) == "final"
    assert verdict(ValueError("a bug")) == "final"
    assert not counts_against(RateLimitError("429"))
    assert counts_against(UpstreamAnsweredError("500"))
    assert reason(UpstreamError("x", code="upstream_unreachable")) == "unreachable"
    assert reason(RateLimitError("429")) == "429"


class Clock:
    """A clock the test moves."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_ejection_after_consecutive_failures_for_growing_times() -> None:
    clock = Clock()
    ejector = Ejector(after=3, base=10.0, cap=25.0, clock=clock)
    assert not ejector.failed("a") and not ejector.failed("a")
    assert ejector.failed("a") and ejector.ejected("a")
    assert ejector.state("a") == {
        "ejected": True,
        "ejected_for_s": 10.0,
        "consecutive_failures": 0,
        "times_ejected": 1,
    }
    assert not ejector.failed("a")  # tried while ejected: counted for nothing
    clock.now += 10.5
    assert not ejector.ejected("a")
    for _ in range(3):
        ejector.failed("a")
    assert ejector.ejected("a")
    assert ejector.state("a")["ejected_for_s"] == 20.0  # type: ignore[index]
    clock.now += 21
    for _ in range(3):
        ejector.failed("a")
    assert ejector.state("a")["ejected_for_s"] == 25.0  # type: ignore[index]  # capped
    ejector.succeeded("a")
    assert not ejector.ejected("a") and ejector.state("a") is None


def test_a_success_between_failures_resets_the_count() -> None:
    ejector = Ejector(after=2, clock=Clock())
    ejector.failed("a")
    ejector.succeeded("a")
    assert not ejector.failed("a")
    assert not ejector.ejected("a") and not ejector.ejected("never-seen")


@given(st.lists(st.booleans(), min_size=1, max_size=40), st.integers(1, 5))
def test_ejection_state_machine_matches_a_model(failures: list[bool], after: int) -> None:
    clock = Clock()
    ejector = Ejector(after=after, base=5.0, cap=50.0, clock=clock)
    run, times = 0, 0
    for failed in failures:
        clock.now += 1.0
        if failed:
            ejected_now = ejector.failed("x")
            run += 1
            assert ejected_now == (run == after)
            if ejected_now:
                times += 1
                run = 0
                assert ejector.ejected("x")
                clock.now += min(50.0, 5.0 * times) + 0.1  # wait it out
        else:
            ejector.succeeded("x")
            run, times = 0, 0


def test_round_robin_rotates_and_puts_ejected_last() -> None:
    pool = Pool(["a/m", "b/m", "c/m"])
    firsts = [pool.order({}, lambda r: False)[0] for _ in range(6)]
    assert firsts == ["a/m", "b/m", "c/m", "a/m", "b/m", "c/m"]
    orders = [pool.order({}, lambda r: r == "b") for _ in range(3)]
    assert [o[0] for o in orders] == ["a/m", "c/m", "c/m"]
    assert all(o[-1] == "b/m" and len(o) == 3 for o in orders)


def test_least_outstanding_picks_the_idlest_and_rotates_ties() -> None:
    pool = Pool(["a/m", "b/m", "c/m"], "least_outstanding")
    assert pool.order({"a": 2, "b": 1, "c": 3}, lambda r: False) == ["b/m", "a/m", "c/m"]
    ties = [pool.order({"c": 1}, lambda r: False)[0] for _ in range(4)]
    assert set(ties) == {"a/m", "b/m"}
    assert pool.order({"a": 0, "b": 5}, lambda r: r == "a")[0] != "a/m"


@given(st.lists(st.sampled_from(["a", "b", "c", "d"]), min_size=1, max_size=4, unique=True))
def test_a_pool_order_is_always_every_target_once(names: list[str]) -> None:
    targets = [f"{n}/m" for n in names]
    pool = Pool(targets, "least_outstanding")
    for _ in range(5):
        assert sorted(pool.order({"a": 1}, lambda r: r == "b")) == sorted(targets)


def _settings(**kw: object) -> Settings:
    conns = [Connection(name=n, source="custom", base_url="http://x") for n in ("a", "b")]
    return Settings(connections=conns, embedded=False, **kw)  # type: ignore[arg-type]


def test_balance_table_is_checked() -> None:
    _check_doors(_settings(balance={"p/m": Balance(targets=["a/m", "b/m"])}))
    with pytest.raises(ConfigError, match="no connection's"):
        _check_doors(_settings(balance={"a/m": Balance(targets=["b/m"])}))
    with pytest.raises(ConfigError, match="'z/m' is not"):
        _check_doors(_settings(balance={"p/m": Balance(targets=["z/m"])}))
    # A pool may have fallbacks of its own.
    _check_doors(_settings(balance={"p/m": Balance(targets=["a/m"])}, fallbacks={"p/m": ["b/m"]}))
    with pytest.raises(ConfigError, match="fallbacks"):
        _check_doors(_settings(fallbacks={"q/m": ["b/m"]}))
