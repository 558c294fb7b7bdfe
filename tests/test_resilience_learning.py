"""Cool-down learns from every request: a plain request (no retries, no fallbacks, no
pool) counts towards ejecting its connection, which /healthz shows; an ejected
connection with no alternative still serves, and one with an alternative is skipped.
The ``[resilience]`` timings are the ones used; the plain path stays plain."""

from __future__ import annotations

import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import httpx
import pytest

from chatgate.config import Connection, ResilienceSettings, Settings, load_settings
from chatgate.errors import InvalidRequestError, RateLimitError, UpstreamError
from chatgate.gateway import Gateway
from chatgate.plan import Attempt, Finished, Plan
from chatgate.resilience import Ejector, Learner
from tests.conftest import start_server
from tests.fakes.scripted_upstream import ScriptedUpstream

HI = [{"role": "user", "content": "Hi"}]


@pytest.fixture()
def fake(scripted_upstream: ScriptedUpstream) -> ScriptedUpstream:
    """The fake, its scripts and record cleared for this test."""
    scripted_upstream.reset()
    return scripted_upstream


def settings(fake: ScriptedUpstream, retries: int | None = None, **fields: Any) -> Settings:
    """Connections a and b on the fake; a's model m falls back to b's."""
    conns = [
        Connection(
            name=name, source="custom", base_url=f"{fake.url}/{name}/v1", timeout=5.0, retries=r
        )
        for name, r in (("a", retries), ("b", None))
    ]
    fields.setdefault("fallbacks", {"a/m": ["b/m"]})
    return Settings(connections=conns, embedded=False, **fields)


async def ask(gw: Gateway, model: str) -> list[str] | None:
    """One answer of *model*; its trail (None on the plain path)."""
    plan = gw.prepare(model=model, messages=HI)
    await gw.run(plan)
    return plan.trail


def test_plain_requests_cool_a_connection_down(fake: ScriptedUpstream) -> None:
    timings = ResilienceSettings(eject_after=2, eject_base=30.0)
    info, server, thread = start_server(settings(fake, resilience=timings))
    try:
        with httpx.Client(base_url=info.url, timeout=30) as client:

            def chat(model: str, **fields: Any) -> httpx.Response:
                body = {"model": model, "messages": HI, **fields}
                return client.post("/v1/chat/completions", json=body)

            def ejection() -> dict[str, Any] | None:
                found: dict[str, Any] | None = (
                    client.get("/healthz").json()["connections"]["a"].get("ejection")
                )
                return found

            # A 429 and a 4xx are the upstream working as meant: not counted.
            fake.script["a"] = ["429", "400"]
            assert chat("a/x").status_code == 429 and chat("a/x").status_code == 400
            assert ejection() is None
            # a/x has no retries and no fallbacks: two plain failures (one a stream) eject a.
            fake.script["a"] = ["500", "500"]
            failed = chat("a/x")
            assert failed.status_code == 502 and "x-chatgate-attempts" not in failed.headers
            assert ejection() == {
                "ejected": False,
                "ejected_for_s": 0.0,
                "consecutive_failures": 1,
                "times_ejected": 0,
            }
            assert chat("a/x", stream=True).status_code == 502
            cooling = ejection()
            assert cooling is not None and cooling["ejected"] is True
            assert cooling["times_ejected"] == 1 and cooling["ejected_for_s"] > 25
            # With an alternative, the ejected connection is skipped...
            asked = fake.count("a")
            answer = chat("a/m")
            assert answer.status_code == 200 and answer.json()["model"] == "b/m"
            assert answer.headers["x-chatgate-attempts"] == "a/m:ejected,b/m:ok"
            assert fake.count("a") == asked
            # ...and without one, it still serves; its success readmits it.
            answer = chat("a/x")
            assert answer.status_code == 200 and fake.count("a") == asked + 1
            assert ejection() is None
    finally:
        server.should_exit = True
        thread.join(timeout=10)


async def test_eject_after_one_in_the_config_file(fake: ScriptedUpstream, tmp_path: Path) -> None:
    path = tmp_path / "chatgate.toml"
    path.write_text(
        f"""
embedded = false

[resilience]
eject_after = 1
eject_base = 20
backoff_base = 0.01
backoff_cap = 0.02

[[connections]]
name = "a"
source = "custom"
base_url = "{fake.url}/a/v1"

[[connections]]
name = "b"
source = "custom"
base_url = "{fake.url}/b/v1"

[fallbacks]
"a/m" = ["b/m"]
""",
        encoding="utf-8",
    )
    gw = Gateway(load_settings(path, env={}))
    assert gw.resilience.ejector.after == 1 and gw.resilience.ejector.base == 20.0
    assert (gw.resilience.backoff_base, gw.resilience.backoff_cap) == (0.01, 0.02)
    fake.script["a"] = ["500"]
    assert await ask(gw, "a/m") == ["a/m:502", "b/m:ok"]
    assert gw.health()["a"]["ejection"]["ejected"] is True  # after one failure
    assert await ask(gw, "a/m") == ["a/m:ejected", "b/m:ok"]
    assert fake.count("a") == 1
    await gw.aclose()


async def test_a_plain_failure_ejects_for_the_resilient_requests(fake: ScriptedUpstream) -> None:
    gw = Gateway(settings(fake, resilience=ResilienceSettings(eject_after=1)))
    gw.resilience.learn(gw.observers)
    fake.script["a"] = ["503"]
    with pytest.raises(UpstreamError):
        await ask(gw, "a/x")
    assert gw.health()["a"]["ejection"]["ejected"] is True
    assert await ask(gw, "a/m") == ["a/m:ejected", "b/m:ok"]
    await gw.aclose()


async def test_the_runners_tries_are_counted_once(fake: ScriptedUpstream) -> None:
    gw = Gateway(settings(fake, retries=1, resilience=ResilienceSettings(eject_after=3)))
    gw.resilience.backoff_base = 0.01
    gw.resilience.learn(gw.observers)
    gw.resilience.learn(gw.observers)  # once is enough: it joins once
    assert gw.observers == [gw.resilience.learner]
    fake.script["a"] = ["500", "500"]
    with pytest.raises(UpstreamError):
        await ask(gw, "a/x")  # two tries, on the runner (a retries): two failures, not four
    assert gw.health()["a"]["ejection"]["consecutive_failures"] == 2
    for step in ("429", "400"):
        fake.script["a"] = [step, step]
        with pytest.raises(RateLimitError if step == "429" else InvalidRequestError):
            await ask(gw, "a/x")
    assert gw.health()["a"]["ejection"]["consecutive_failures"] == 2
    await gw.aclose()


async def test_the_plain_path_stays_plain(fake: ScriptedUpstream) -> None:
    gw = Gateway(settings(fake, fallbacks={}))
    assert gw.observers == []  # a library gateway is not given an observer to tell
    plan = gw.prepare(model="a/x", messages=HI)
    assert not gw.resilience.engaged(plan)
    await gw.run(plan)
    assert plan.trail is None and not gw.resilience.outstanding
    # What the learner costs a plain request that answered: about a dict lookup. The
    # bound is loose (a shared machine); it catches work added to the path, not µs.
    learner = Learner(gw.resilience.ejector)
    attempt, done = plan.first, Finished("ok", 0.01)
    calls = 200_000
    began = time.perf_counter()
    for _ in range(calls):
        learner.finished(plan, attempt, done)
    assert (time.perf_counter() - began) / calls < 5e-6
    assert not gw.resilience.ejector.routes
    await gw.aclose()


def attempt_of(source: str) -> Attempt:
    """An attempt of route ``a`` on a connection of *source* (all the learner reads)."""
    connection = SimpleNamespace(source=source)
    return cast(Attempt, SimpleNamespace(route="a", backend=SimpleNamespace(connection=connection)))


@pytest.mark.parametrize(
    ("source", "result", "trail", "counted"),
    [
        ("custom", Finished("error", 0.1, status=502), None, True),
        ("custom", Finished("error", 0.1, status=503, error_code="fake_503"), None, True),
        ("custom", Finished("error", 0.1, status=504, error_code="timeout"), None, True),
        ("custom", Finished("error", 0.1, status=504, error_code="inference_timeout"), None, False),
        ("custom", Finished("error", 0.1, status=500), None, False),  # chatgate's own bug
        ("custom", Finished("error", 0.1, status=429), None, False),
        ("custom", Finished("error", 0.1, status=400), None, False),
        ("custom", Finished("cancelled", 0.1, status=499), None, False),
        ("local", Finished("error", 0.1, status=503, error_code="engine_overloaded"), None, False),
        ("custom", Finished("error", 0.1, status=502), ["a/m:502"], False),  # the runner's
    ],
)
def test_what_the_learner_counts(
    source: str, result: Finished, trail: list[str] | None, counted: bool
) -> None:
    ejector = Ejector(after=1)
    plan = Plan.__new__(Plan)
    plan.trail = trail
    Learner(ejector).finished(plan, attempt_of(source), result)
    assert ejector.ejected("a") is counted
    if counted:
        Learner(ejector).finished(plan, attempt_of(source), Finished("ok", 0.1))
        assert ejector.state("a") is None  # a success readmits it
