"""What a client is told after retries and fallbacks: an upstream 503's ``Retry-After``
is waited for like a 429's (capped) and reaches the client when the request fails, and
``x-chatgate-dropped-params`` names what the attempt that answered dropped."""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest

from chatgate.config import Connection, Settings
from chatgate.errors import RateLimitError, UpstreamError
from chatgate.exchange.errors import UpstreamAnsweredError, classify_error
from chatgate.gateway import Gateway
from chatgate.resilience import wait_before
from chatgate.resilience_run import answered, dropped_header
from tests.conftest import start_server
from tests.fakes.scripted_upstream import ScriptedUpstream

HI = [{"role": "user", "content": "Hi"}]
BODY = b'{"error": {"message": "busy"}}'


@pytest.fixture()
def fake(scripted_upstream: ScriptedUpstream) -> ScriptedUpstream:
    """The fake, its scripts and record cleared for this test."""
    scripted_upstream.reset()
    return scripted_upstream


def connection(fake: ScriptedUpstream, name: str, source: str = "custom", **kw: Any) -> Connection:
    """Connection *name* on the fake (its own base path), with a short timeout."""
    return Connection(
        name=name,
        source=source,
        base_url=f"{fake.url}/{name}/v1",
        api_key="sk-fake-1234567890",
        timeout=5.0,
        **kw,
    )


def gateway(fake: ScriptedUpstream, retries: int | None = None, **fields: Any) -> Gateway:
    """Connections a and b on the fake; a short backoff."""
    conns = [connection(fake, "a", retries=retries), connection(fake, "b")]
    gw = Gateway(Settings(connections=conns, embedded=False, **fields))
    gw.resilience.backoff_base = 0.01
    return gw


# --- Retry-After on a 503 ------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "kept"),
    [(503, True), (429, True), (500, False), (502, False), (504, False)],
)
def test_retry_after_is_kept_on_429_and_503_only(status: int, kept: bool) -> None:
    error = classify_error(status, BODY, {"retry-after": "2"}, "a", [])
    assert error.headers == ({"Retry-After": "2"} if kept else {})
    if status == 503:
        assert isinstance(error, UpstreamAnsweredError) and error.status == 502
    assert classify_error(status, BODY, {}, "a", []).headers == {}


def test_a_503s_retry_after_sets_the_wait_capped_like_a_429s() -> None:
    busy = classify_error(503, BODY, {"Retry-After": "2"}, "a", [])
    assert wait_before(busy, 0, base=0.01, cap=30.0) == 2.0
    assert wait_before(busy, 0, base=0.01, cap=0.5) == 0.5
    limited = RateLimitError("429", headers={"Retry-After": "2"})
    assert wait_before(limited, 0, base=0.01, cap=0.5) == 0.5


async def test_a_503_is_retried_after_its_retry_after(fake: ScriptedUpstream) -> None:
    gw = gateway(fake, retries=1)
    fake.script["a"] = ["503@1"]
    plan = gw.prepare(model="a/m", messages=HI)
    await gw.run(plan)
    first, second = fake.arrivals["a"]
    assert second - first >= 0.9  # Retry-After: 1, not the 10 ms backoff
    assert plan.trail == ["a/m:502", "a/m:ok"]
    # An upstream asking for an hour waits the cap, as a 429 would.
    gw.resilience.retry_after_cap = 0.3
    fake.script["a"] = ["503@3600"]
    began = time.monotonic()
    await gw.run(gw.prepare(model="a/m", messages=HI))
    assert 0.25 <= time.monotonic() - began < 2.5
    await gw.aclose()


async def test_the_final_503_gives_the_client_its_retry_after(fake: ScriptedUpstream) -> None:
    # A wait past the deadline is not waited for: the 503 is answered at once, with it.
    gw = gateway(fake, retries=3)
    fake.script["a"] = ["503@7"]
    began = time.monotonic()
    with pytest.raises(UpstreamError) as caught:
        await gw.run(gw.prepare(model="a/m", messages=HI, inference_timeout=3))
    assert time.monotonic() - began < 2.5
    assert caught.value.headers["Retry-After"] == "7"
    # The plain path (no retries) and the last of the fallbacks keep it too.
    plain = gateway(fake, fallbacks={"b/m": ["a/m"]})
    fake.script["a"] = ["503@4"]
    with pytest.raises(UpstreamError) as caught:
        await plain.run(plain.prepare(model="a/m", messages=HI))
    assert caught.value.headers == {"Retry-After": "4"}
    fake.script["a"], fake.script["b"] = ["503@5"], ["500"]
    plan = plain.prepare(model="b/m", messages=HI)
    with pytest.raises(UpstreamError) as caught:
        await plain.run(plan)
    assert plan.trail == ["b/m:502", "a/m:502"] and caught.value.headers["Retry-After"] == "5"
    await gw.aclose()
    await plain.aclose()


def test_the_retry_after_of_a_503_reaches_the_client(fake: ScriptedUpstream) -> None:
    conns = [connection(fake, "a")]
    info, server, thread = start_server(Settings(connections=conns, embedded=False))
    try:
        with httpx.Client(base_url=info.url, timeout=30) as client:
            body = {"model": "a/m", "messages": HI}
            fake.script["a"] = ["503@6"]
            failed = client.post("/v1/chat/completions", json=body)
            assert failed.status_code == 502 and failed.headers["retry-after"] == "6"
            fake.script["a"] = ["503@6"]
            streamed = client.post("/v1/chat/completions", json={**body, "stream": True})
            assert streamed.status_code == 502 and streamed.headers["retry-after"] == "6"
            fake.script["a"] = ["500"]
            assert "retry-after" not in client.post("/v1/chat/completions", json=body).headers
    finally:
        server.should_exit = True
        thread.join(timeout=10)


# --- x-chatgate-dropped-params ---------------------------------------------------------

# a (OpenAI) drops top_k; b (Mistral) drops top_k and logit_bias; c (custom) drops none.
ASKED: dict[str, Any] = {"top_k": 3, "logit_bias": {"1": 1}}


def dropping(fake: ScriptedUpstream) -> Settings:
    """Three connections that drop different parameters, each falling back to the next."""
    conns = [
        connection(fake, name, source, drop_params=True)
        for name, source in (("a", "openai"), ("b", "mistral"), ("c", "custom"))
    ]
    fallbacks = {"a/m": ["b/m"], "b/m": ["c/m"]}
    return Settings(connections=conns, embedded=False, fallbacks=fallbacks)


def test_the_answering_attempt_is_found_from_the_trail(fake: ScriptedUpstream) -> None:
    gw = Gateway(dropping(fake))
    plan = gw.prepare(model="a/m", messages=HI, **ASKED)
    assert [a.dropped for a in plan.attempts] == [("top_k",), ("top_k", "logit_bias")]
    assert answered(plan) is plan.first  # before anything answered
    assert dropped_header(plan) == {"x-chatgate-dropped-params": "top_k"}
    plan.trail = ["a/m:502", "b/m:ok"]
    assert answered(plan) is plan.attempts[1]
    assert dropped_header(plan) == {"x-chatgate-dropped-params": "top_k,logit_bias"}
    plan.trail = ["a/m:502", "b/m:502"]  # failed everywhere: the first, as before
    assert answered(plan) is plan.first


def test_the_dropped_params_header_names_the_answering_attempts(fake: ScriptedUpstream) -> None:
    info, server, thread = start_server(dropping(fake))
    header = "x-chatgate-dropped-params"
    try:
        with httpx.Client(base_url=info.url, timeout=30) as client:
            for stream in (False, True):
                body = {"model": "a/m", "messages": HI, "stream": stream, **ASKED}
                fake.script["a"] = ["500"]
                answer = client.post("/v1/chat/completions", json=body)
                assert answer.status_code == 200, answer.text
                assert answer.headers["x-chatgate-attempts"] == "a/m:502,b/m:ok"
                assert answer.headers[header] == "top_k,logit_bias"
                # The first answers: its own.
                answer = client.post("/v1/chat/completions", json=body)
                assert answer.headers[header] == "top_k"
                # The one that answers drops nothing: no header, though the first did.
                fake.script["b"] = ["500"]
                answer = client.post("/v1/chat/completions", json={**body, "model": "b/m"})
                assert answer.headers["x-chatgate-attempts"] == "b/m:502,c/m:ok"
                assert header not in answer.headers
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def test_a_prompt_list_names_what_every_answering_attempt_dropped(
    fake: ScriptedUpstream,
) -> None:
    info, server, thread = start_server(dropping(fake))
    header = "x-chatgate-dropped-params"
    try:
        with httpx.Client(base_url=info.url, timeout=30) as client:
            body = {"model": "a/m", "prompt": ["one", "two"], "max_tokens": 4, **ASKED}
            # One prompt falls back to b, the other is answered by a: both drops count.
            fake.script["a"] = ["500"]
            answer = client.post("/v1/completions", json=body)
            assert answer.status_code == 200, answer.text
            assert len(answer.json()["choices"]) == 2
            assert answer.headers[header] == "top_k,logit_bias"
            # Streamed, the prompts go in turn and the header leaves with the first
            # prompt's first frame: what its answering attempt dropped.
            fake.script["a"] = ["500"]
            answer = client.post("/v1/completions", json={**body, "stream": True})
            assert answer.status_code == 200, answer.text
            assert answer.headers[header] == "top_k,logit_bias"
            answer = client.post("/v1/completions", json={**body, "stream": True})
            assert answer.headers[header] == "top_k"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
