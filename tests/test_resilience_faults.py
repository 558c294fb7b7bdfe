"""Fault injection for upstream resilience: scripted fake upstreams answer 429 (with
Retry-After), 500, reset mid-body, stall or send garbage SSE, and the gateway retries,
falls back, cools a failing connection down, balances a pool, and errs clearly; no
request outlives its deadline. Bounds on wall time are generous: the machine is shared.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx
import pytest

from chatgate.config import Balance, Connection, Settings
from chatgate.errors import (
    GatewayTimeoutError,
    InvalidRequestError,
    RateLimitError,
    UpstreamError,
)
from chatgate.gateway import Gateway
from chatgate.plan import Attempt, Finished, Plan
from chatgate.types import ChatResponse
from tests.conftest import start_server
from tests.fakes.raw_upstream import unused_url
from tests.fakes.scripted_upstream import ScriptedUpstream

HI = [{"role": "user", "content": "Hi"}]
TEXT = "Hello from the fake."


@pytest.fixture()
def fake(scripted_upstream: ScriptedUpstream) -> ScriptedUpstream:
    """The fake, its scripts and record cleared for this test."""
    scripted_upstream.reset()
    scripted_upstream.retry_after = "1"
    scripted_upstream.stall_seconds = 5.0
    return scripted_upstream


def settings(
    fake: ScriptedUpstream,
    *,
    each: dict[str, int] | None = None,
    timeout: float = 2.0,
    **fields: Any,
) -> Settings:
    """Connections a, b and c on the fake, with retries per connection (*each*)."""
    conns = [
        Connection(
            name=name,
            source="custom",
            base_url=f"{fake.url}/{name}/v1",
            timeout=timeout,
            retries=(each or {}).get(name),
        )
        for name in ("a", "b", "c")
    ]
    return Settings(connections=conns, embedded=False, **fields)


def gateway(fake: ScriptedUpstream, **kw: Any) -> Gateway:
    """A gateway on the fake whose backoff is short (the test measures the long waits)."""
    gw = Gateway(settings(fake, **kw))
    gw.resilience.backoff_base = 0.01
    return gw


async def ask(gw: Gateway, model: str = "a/m", **fields: Any) -> tuple[Plan, ChatResponse]:
    """One non-stream answer, with its plan."""
    plan = gw.prepare(model=model, messages=HI, **fields)
    return plan, await gw.run(plan)


async def ask_stream(gw: Gateway, model: str = "a/m", **fields: Any) -> tuple[Plan, str]:
    """One streamed answer's text, with its plan."""
    plan = gw.prepare(model=model, messages=HI, stream=True, **fields)
    text = ""
    async for chunk in gw.run_stream(plan):
        text += "".join(c.delta.content or "" for c in chunk.choices)
    return plan, text


async def test_retries_spend_the_failures_then_answer(fake: ScriptedUpstream) -> None:
    gw = gateway(fake, each={"a": 2})
    fake.script["a"] = ["500", "503"]
    plan, answer = await ask(gw)
    assert answer.text == TEXT and fake.count("a") == 3
    assert plan.trail == ["a/m:502", "a/m:502", "a/m:ok"]
    fake.script["a"] = ["500", "500", "500"]
    with pytest.raises(UpstreamError) as caught:
        await ask(gw)
    assert "connection 'a': upstream answered 500: scripted 500" in caught.value.message
    assert fake.count("a") == 6  # 1 + 2 retries, no more
    await gw.aclose()


async def test_the_top_level_default_applies_and_4xx_is_never_retried(
    fake: ScriptedUpstream,
) -> None:
    gw = gateway(fake, each={"b": 0}, retries=3)
    fake.script["a"] = ["400", "500"]
    with pytest.raises(InvalidRequestError):
        await ask(gw)
    assert fake.count("a") == 1
    fake.script["b"] = ["500"]
    with pytest.raises(UpstreamError):
        await ask(gw, "b/m")  # its own 0 beats the default
    assert fake.count("b") == 1
    await gw.aclose()


async def test_429_waits_for_retry_after(fake: ScriptedUpstream) -> None:
    gw = gateway(fake, each={"a": 1})
    fake.script["a"] = ["429"]
    plan, _answer = await ask(gw)
    first, second = fake.arrivals["a"]
    assert second - first >= 0.9  # Retry-After: 1, not the 10 ms backoff
    assert plan.trail == ["a/m:429", "a/m:ok"]
    await gw.aclose()


async def test_retry_after_past_the_deadline_falls_back_at_once(fake: ScriptedUpstream) -> None:
    fake.retry_after = "7"
    gw = gateway(fake, each={"a": 3}, fallbacks={"a/m": ["b/m"]})
    fake.script["a"] = ["429"]
    began = time.monotonic()
    plan, answer = await ask(gw, inference_timeout=3)
    assert time.monotonic() - began < 2.5
    assert plan.trail == ["a/m:429", "b/m:ok"] and answer.model == "b/m"
    # With nowhere to go, the client gets the 429 and its Retry-After, promptly.
    alone = gateway(fake, each={"a": 3})
    fake.script["a"] = ["429"]
    began = time.monotonic()
    with pytest.raises(RateLimitError) as caught:
        await ask(alone, inference_timeout=3)
    assert time.monotonic() - began < 2.5
    assert caught.value.headers["Retry-After"] == "7"
    await gw.aclose()
    await alone.aclose()


async def test_fallbacks_in_order_after_the_retries(fake: ScriptedUpstream) -> None:
    gw = gateway(fake, each={"a": 1, "b": 1}, fallbacks={"a/m": ["b/m", "c/m"]})
    fake.script["a"] = ["500"] * 2
    fake.script["b"] = ["garbage", "500"]  # garbage: not retried, fallen back from
    plan, answer = await ask(gw)
    assert plan.trail == ["a/m:502", "a/m:502", "b/m:502", "c/m:ok"]
    assert answer.model == "c/m" and answer.text == TEXT
    assert [fake.count(n) for n in "abc"] == [2, 1, 1]
    fake.script["a"], fake.script["b"] = ["die"], []  # reset mid-body
    plan, answer = await ask(gw)
    assert plan.trail == ["a/m:502", "b/m:ok"]
    await gw.aclose()


async def test_a_connection_refused_is_retried_then_fallen_back(fake: ScriptedUpstream) -> None:
    conns = settings(fake).connections
    conns.append(Connection(name="dead", source="custom", base_url=unused_url(), retries=1))
    gw = Gateway(Settings(connections=conns, embedded=False, fallbacks={"dead/m": ["a/m"]}))
    gw.resilience.backoff_base = 0.01
    for stream in (False, True):
        plan, _ = await (ask_stream(gw, "dead/m") if stream else ask(gw, "dead/m"))
        assert plan.trail == ["dead/m:unreachable", "dead/m:unreachable", "a/m:ok"]
    await gw.aclose()


async def test_streams_retry_and_fall_back_before_the_first_chunk(fake: ScriptedUpstream) -> None:
    gw = gateway(fake, each={"a": 1}, fallbacks={"a/m": ["b/m"]})
    fake.script["a"] = ["500", "garbage"]
    plan, text = await ask_stream(gw)
    assert text == TEXT and plan.trail == ["a/m:502", "a/m:502", "b/m:ok"]
    await gw.aclose()


async def test_a_started_stream_is_never_retried(fake: ScriptedUpstream) -> None:
    gw = gateway(fake, each={"a": 2}, fallbacks={"a/m": ["b/m"]})
    fake.script["a"] = ["die"]
    got: list[str] = []
    plan = gw.prepare(model="a/m", messages=HI, stream=True)
    with pytest.raises(UpstreamError) as caught:
        async for chunk in gw.run_stream(plan):
            got += [c.delta.content or "" for c in chunk.choices]
    assert got and caught.value.code == "upstream_stream_broken"
    assert fake.count("a") == 1 and fake.count("b") == 0
    assert plan.trail == ["a/m:ok"]
    await gw.aclose()


async def test_no_request_outlives_its_deadline(fake: ScriptedUpstream) -> None:
    gw = gateway(fake, each={"a": 5, "b": 5}, timeout=30, fallbacks={"a/m": ["b/m"]})
    fake.script["a"] = ["stall"] * 6
    fake.script["b"] = ["stall"] * 6
    for stream in (False, True):
        began = time.monotonic()
        with pytest.raises(GatewayTimeoutError) as caught:
            if stream:
                await ask_stream(gw, inference_timeout=1)
            else:
                await ask(gw, inference_timeout=1)
        assert time.monotonic() - began < 3.0
        assert caught.value.code == "inference_timeout"
    await gw.aclose()


async def test_a_stalled_connection_times_out_to_its_fallback(fake: ScriptedUpstream) -> None:
    gw = gateway(fake, timeout=0.5, fallbacks={"a/m": ["b/m"]})
    fake.script["a"] = ["stall"]
    began = time.monotonic()
    plan, _answer = await ask(gw)
    assert time.monotonic() - began < 3.0
    assert plan.trail == ["a/m:504", "b/m:ok"]
    await gw.aclose()


async def test_cool_down_ejects_then_readmits(fake: ScriptedUpstream) -> None:
    gw = gateway(fake, fallbacks={"a/m": ["b/m"]})
    gw.resilience.ejector.after, gw.resilience.ejector.base = 2, 0.6
    fake.script["a"] = ["500"] * 10
    for _ in range(2):
        await ask(gw)
    assert gw.health()["a"]["ejection"]["ejected"] is True
    plan, _ = await ask(gw)  # straight to the fallback: a is not asked
    assert plan.trail == ["a/m:ejected", "b/m:ok"] and fake.count("a") == 2
    await asyncio.sleep(0.7)
    fake.script["a"] = []
    plan, _answer = await ask(gw)
    assert plan.trail == ["a/m:ok"] and "ejection" not in gw.health()["a"]
    await gw.aclose()


async def test_an_ejected_connection_alone_is_tried_once(fake: ScriptedUpstream) -> None:
    gw = gateway(fake, each={"a": 3})
    gw.resilience.ejector.after = 1
    fake.script["a"] = ["500"] * 10
    with pytest.raises(UpstreamError):
        await ask(gw)
    assert fake.count("a") == 1  # ejected at its first failure: no retries on it
    with pytest.raises(UpstreamError):
        await ask(gw)
    assert fake.count("a") == 2  # nowhere else to go: tried anyway, once
    await gw.aclose()


async def test_round_robin_pool_skips_ejected(fake: ScriptedUpstream) -> None:
    gw = gateway(fake, balance={"pool/m": Balance(targets=["a/m", "b/m", "c/m"])})
    answered = [(await ask(gw, "pool/m"))[1].model for _ in range(6)]
    assert answered == ["a/m", "b/m", "c/m"] * 2
    gw.resilience.ejector.after = 1
    fake.script["b"] = ["500"]
    plan, _ = await ask(gw, "pool/m")
    plan, _ = await ask(gw, "pool/m")  # b's turn: it fails, the next target answers
    assert plan.trail == ["b/m:502", "c/m:ok"]
    answered = [(await ask(gw, "pool/m"))[1].model for _ in range(4)]
    assert "b/m" not in answered
    await gw.aclose()


async def test_least_outstanding_pool_avoids_a_busy_target(fake: ScriptedUpstream) -> None:
    gw = gateway(
        fake, balance={"pool/m": Balance(targets=["a/m", "b/m"], strategy="least_outstanding")}
    )
    fake.stall_seconds = 1.0
    fake.script["a"] = ["stall"]
    slow = asyncio.create_task(ask(gw, "pool/m"))
    await asyncio.sleep(0.3)
    assert gw.resilience.outstanding == {"a": 1}
    answered = [(await ask(gw, "pool/m"))[1].model for _ in range(3)]
    assert answered == ["b/m"] * 3
    assert (await slow)[1].model == "a/m"
    assert not gw.resilience.outstanding
    await gw.aclose()


async def test_an_alternative_that_refuses_is_left_out(fake: ScriptedUpstream) -> None:
    conns = settings(fake).connections
    conns.append(Connection(name="claude", source="claude", base_url=fake.url, api_key="k"))
    gw = Gateway(
        Settings(connections=conns, embedded=False, fallbacks={"a/m": ["claude/x", "b/m"]})
    )
    plan = gw.prepare(model="a/m", messages=HI, logit_bias={"1": 1})
    assert [a.route for a in plan.attempts] == ["a", "b"]
    assert plan.trail is not None and plan.trail[0].startswith("claude/x:refused=")
    await gw.aclose()


class Rows:
    """An observer that keeps what it is told."""

    def __init__(self) -> None:
        self.rows: list[tuple[str, str, Finished]] = []

    def started(self, plan: Plan, attempt: Attempt) -> None:
        """Nothing."""

    def finished(self, plan: Plan, attempt: Attempt, result: Finished) -> None:
        """Keep what it is told."""
        self.rows.append((attempt.route, attempt.request.model_name, result))


async def test_observers_hear_of_every_try_the_last_one_final(fake: ScriptedUpstream) -> None:
    gw = gateway(fake, each={"a": 1}, fallbacks={"a/m": ["b/m"]})
    rows = Rows()
    gw.observers.append(rows)
    fake.script["a"] = ["500", "429"]
    await ask(gw)
    fake.script["a"] = ["garbage"]
    await ask_stream(gw)
    fake.script["a"], fake.script["b"] = ["500", "500"], ["400"]
    with pytest.raises(InvalidRequestError):
        await ask(gw)
    told = [(r, f.outcome, f.status, f.final, f.streamed) for r, _, f in rows.rows]
    assert told == [
        ("a", "error", 502, False, False),
        ("a", "error", 429, False, False),
        ("b", "ok", 200, True, False),
        ("a", "error", 502, False, True),
        ("b", "ok", 200, True, True),
        ("a", "error", 502, False, False),
        ("a", "error", 502, False, False),
        ("b", "error", 400, True, False),
    ]
    await gw.aclose()


def test_through_the_server(fake: ScriptedUpstream) -> None:
    conf = settings(fake, each={"a": 1}, fallbacks={"a/m": ["b/m"]})
    info, server, thread = start_server(conf)
    info.gateway.resilience.backoff_base = 0.01
    info.gateway.resilience.ejector.after = 100  # not cooled down mid-test
    try:
        with httpx.Client(base_url=info.url, timeout=30) as client:
            fake.script["a"] = ["500", "500"]
            body = {"model": "a/m", "messages": HI}
            answer = client.post("/v1/chat/completions", json=body)
            assert answer.status_code == 200, answer.text
            assert answer.headers["x-chatgate-attempts"] == "a/m:502,a/m:502,b/m:ok"
            assert answer.json()["model"] == "b/m"
            fake.script["a"] = ["500", "500"]
            message = {"model": "a/m", "max_tokens": 16, "messages": HI}
            anthropic = client.post("/v1/messages", json=message)
            assert anthropic.status_code == 200, anthropic.text
            assert anthropic.json()["model"] == "b/m"
            fake.script["a"] = ["500", "garbage"]
            with client.stream("POST", "/v1/chat/completions", json={**body, "stream": True}) as r:
                text = r.read().decode()
            assert r.headers["x-chatgate-attempts"] == "a/m:502,a/m:502,b/m:ok"
            assert "[DONE]" in text and '"model":"b/m"' in text
            # Started, then broken: an error event, and b is never asked.
            fake.script["a"] = ["die"]
            before = fake.count("b")
            with client.stream("POST", "/v1/chat/completions", json={**body, "stream": True}) as r:
                text = r.read().decode()
            assert r.status_code == 200 and r.headers["x-chatgate-attempts"] == "a/m:ok"
            assert "upstream_stream_broken" in text and fake.count("b") == before
            # Failed everywhere: the error says what was tried.
            fake.script["a"] = ["500", "500"]
            fake.script["b"] = ["400"]
            failed = client.post("/v1/chat/completions", json=body)
            assert failed.status_code == 400
            assert failed.headers["x-chatgate-attempts"] == "a/m:502,a/m:502,b/m:400"
            fake.script["a"], fake.script["b"] = ["500", "500"], ["400"]
            with client.stream("POST", "/v1/chat/completions", json={**body, "stream": True}) as r:
                r.read()
            assert r.status_code == 400  # nothing was sent: a plain error, with the trail
            assert r.headers["x-chatgate-attempts"] == "a/m:502,a/m:502,b/m:400"
            # One usage row per try: b answered three and refused two; a failed ten
            # tries and broke off one stream.
            usage = client.get("/api/usage", params={"group_by": "connection"}).json()
            rows = {g["connection"]: g for g in usage["groups"]}
            assert rows["b"]["requests"] == 5 and rows["b"]["errors"] == 2
            assert rows["a"]["requests"] == 11 and rows["a"]["errors"] == 11
            health = client.get("/healthz").json()
            assert health["connections"]["a"]["ejection"]["consecutive_failures"] >= 1
    finally:
        server.should_exit = True
        thread.join(timeout=10)
