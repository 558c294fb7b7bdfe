"""The fault matrix: every way an upstream can fail, through the real pipeline.

Each case runs as a non-stream and as a stream request from `Gateway` through the
remote backend and the transport to a raw loopback server (tests/fakes/raw_upstream.py)
that misbehaves on purpose. Each asserts what a client sees (our error class, status and
code) and that it comes within a bound of a few seconds, then that the gateway still
answers. docs/_fault_matrix.md is the same table in prose.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Literal

import pytest

from chatgate.config import Connection, Settings
from chatgate.errors import ChatgateError, GatewayTimeoutError, RateLimitError, UpstreamError
from chatgate.gateway import Gateway
from tests.fakes.raw_upstream import Mode, RawUpstream, unused_url

HI = [{"role": "user", "content": "Hi"}]
TIMEOUT = 0.5  # the connection's timeout: per read for a stream, in total otherwise
DEADLINE = 1.0  # the connection's stream_deadline: longer, so the two are told apart
BOUND = 4.0  # every case ends well within this, or the test fails
TEXT = "Hello there"  # what the raw upstream says when it works


@dataclass(frozen=True)
class Outcome:
    """What the client gets: an error (class, status, code) or, with `error` None, text."""

    error: type[ChatgateError] | None
    status: int = 200
    code: str | None = None


OK = Outcome(None)
UNREACHABLE = Outcome(UpstreamError, 502, "upstream_unreachable")
BROKEN = Outcome(UpstreamError, 502, "upstream_stream_broken")
BAD = Outcome(UpstreamError, 502, "bad_upstream_response")
TIMED_OUT = Outcome(GatewayTimeoutError, 504, "timeout")

Case = Mode | Literal["refused"]
# case -> (non-stream outcome, stream outcome)
MATRIX: dict[Case, tuple[Outcome, Outcome]] = {
    "refused": (UNREACHABLE, UNREACHABLE),
    "close": (UNREACHABLE, UNREACHABLE),
    "reset": (BROKEN, BROKEN),
    "silent": (TIMED_OUT, TIMED_OUT),
    "html_502": (Outcome(UpstreamError, 502, None), Outcome(UpstreamError, 502, None)),
    "truncated_json": (BAD, BAD),
    "not_json": (BAD, BROKEN),
    "no_blank_lines": (BAD, BAD),
    "big_event": (OK, Outcome(UpstreamError, 502, "upstream_event_too_large")),
    "cut": (BROKEN, BROKEN),
    "drip": (TIMED_OUT, Outcome(GatewayTimeoutError, 504, "stream_deadline")),
    "rate_limited": (
        Outcome(RateLimitError, 429, "rate_limit_exceeded"),
        Outcome(RateLimitError, 429, "rate_limit_exceeded"),
    ),
}


@pytest.fixture()
async def raw() -> AsyncIterator[RawUpstream]:
    """The misbehaving upstream, dripping fast enough that only the deadline ends it."""
    async with RawUpstream(drip_interval=0.05, cut_after=2) as server:
        yield server


def gateway(target: str, healthy: str) -> Gateway:
    """Connection "up" to *target*, and "ok" to *healthy* for the after-check."""
    conns = [
        Connection(
            name=name, source="custom", base_url=url, timeout=TIMEOUT, stream_deadline=DEADLINE
        )
        for name, url in (("up", target), ("ok", healthy))
    ]
    return Gateway(Settings(connections=conns, embedded=False))


async def ask(gw: Gateway, model: str, stream: bool, got: list[str]) -> None:
    """One request; the text it brings is appended to *got* as it comes."""
    if stream:
        async for chunk in gw.stream(model=model, messages=HI):
            got += [c.delta.content or "" for c in chunk.choices]
    else:
        got.append((await gw.chat(model=model, messages=HI)).text)


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
@pytest.mark.parametrize("case", list(MATRIX))
async def test_fault(raw: RawUpstream, case: Case, stream: bool) -> None:
    expected = MATRIX[case][stream]
    if case != "refused":
        raw.mode = case
    gw = gateway(unused_url() if case == "refused" else raw.url, raw.url)
    async with gw:
        got: list[str] = []
        caught: ChatgateError | None = None
        try:
            async with asyncio.timeout(BOUND):
                await ask(gw, "up/m", stream, got)
        except ChatgateError as exc:
            caught = exc
        if expected.error is None:
            assert caught is None, caught.to_dict() if caught else None
            assert len("".join(got)) == raw.big_bytes
        else:
            assert isinstance(caught, expected.error), (caught, expected)
            assert (caught.status, caught.code) == (expected.status, expected.code)
            assert "connection 'up'" in caught.message
            _check_details(case, stream, caught, got)
        # The gateway keeps answering: the same upstream once it recovers, and another.
        raw.mode = "ok"
        for model in ("ok/m", "up/m") if case != "refused" else ("ok/m",):
            for again in (False, True):
                answer: list[str] = []
                async with asyncio.timeout(BOUND):
                    await ask(gw, model, again, answer)
                assert "".join(answer) == TEXT


def _check_details(case: Case, stream: bool, caught: ChatgateError, got: list[str]) -> None:
    """What each case must also say or keep."""
    if case == "rate_limited":
        assert caught.headers == {"Retry-After": "7"}
    elif case in ("cut", "reset") and stream:
        # What came before the break was delivered as it came.
        assert "".join(got) == "Hello"
    elif case == "big_event" and stream:
        assert "8388608 bytes (max_event_bytes)" in caught.message
    elif case == "drip" and stream:
        assert f"stream_deadline ({DEADLINE:g} s)" in caught.message
    elif case in ("silent", "drip"):
        assert f"within {TIMEOUT:g} s" in caught.message
    elif case == "html_502":
        assert "upstream answered 502" in caught.message
    elif case == "refused":
        assert "connection refused" in caught.message
