"""The engine worker dies or hangs; the gateway and its remote connections do not."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from chatgate.backends.local import LocalBackend
from chatgate.config import Connection, EngineOptions, Settings
from tests.conftest import GATEWAY_KEY, MODEL, LiveServer, start_server
from tests.fakes.openai_server import FakeOpenAI

pytestmark = pytest.mark.model

NO_END_OF_TURN = {"0": -100, "2": -100, "4": -100}


def serve_with(fake: FakeOpenAI, workers: int) -> Iterator[LiveServer]:
    """A server of its own (its workers get killed), with a remote connection beside it."""
    settings = Settings(
        connections=[
            Connection(
                name="local",
                source="local",
                engine=EngineOptions(engine_watchdog=1.0, workers=workers),
            ),
            Connection(name="remote", source="custom", base_url=f"{fake.url}/v1"),
        ],
        embedded=False,
        default_model=MODEL,
    )
    settings.server.api_keys = [GATEWAY_KEY]
    info, server, thread = start_server(settings)
    yield info
    server.should_exit = True
    thread.join(timeout=10)


@pytest.fixture()
def faulty(fake: FakeOpenAI) -> Iterator[LiveServer]:
    """One engine worker."""
    yield from serve_with(fake, workers=1)


@pytest.fixture()
def pooled(fake: FakeOpenAI) -> Iterator[LiveServer]:
    """Two engine workers."""
    yield from serve_with(fake, workers=2)


def engine(live: LiveServer) -> LocalBackend:
    backend = live.gateway.backends["local"]
    assert isinstance(backend, LocalBackend)
    return backend


def health(c: httpx.Client) -> dict[str, Any]:
    status: dict[str, Any] = c.get("/healthz").json()["connections"]["local"]
    return status


def ask(c: httpx.Client, model: str = MODEL, **fields: Any) -> httpx.Response:
    body = {"model": model, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 4}
    return c.post("/v1/chat/completions", json={**body, **fields})


def wait_for(predicate: Any, limit: float) -> float:
    started = time.monotonic()
    while time.monotonic() - started < limit:
        if predicate():
            return time.monotonic() - started
        time.sleep(0.05)
    raise AssertionError(f"not within {limit} s")


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGSEGV], ids=["SIGKILL", "SIGSEGV"])
def test_worker_death_mid_stream(faulty: LiveServer, sig: signal.Signals) -> None:
    backend = engine(faulty)
    with faulty.client() as c:
        first_pid = health(c)["workers"][0]["pid"]
        body = {
            "model": MODEL,
            "messages": [{"role": "user", "content": "Tell me a long story."}],
            "max_tokens": 1500,
            "stream": True,
            "logit_bias": NO_END_OF_TURN,
        }
        with c.stream("POST", "/v1/chat/completions", json=body) as answer:
            assert answer.status_code == 200
            lines = answer.iter_lines()
            for line in lines:
                if '"content":"' in line and '"content":""' not in line:
                    break
            backend.workers[0].supervisor.kill(sig)
            # Meanwhile a remote connection answers as if nothing happened.
            assert ask(c, "remote/gpt-4o-mini").status_code == 200
            rest = [line for line in lines if line.strip()]
        assert rest[-2] == "event: error", rest[-5:]
        error = orjson.loads(rest[-1].removeprefix("data: "))["error"]
        assert error["code"] == "engine_unavailable"
        assert sig.name in error["message"]
        assert "[DONE]" not in rest
        # The engine answers again after its restart, and /healthz tells the story.
        again = ask(c)
        assert again.status_code == 200, again.text
        status = health(c)
        assert status["worker"] == "ready"
        assert status["restarts"] == 1
        assert status["last_exit"] == sig.name
        assert status["workers"][0]["pid"] != first_pid


def test_request_during_restart_waits_for_the_new_worker(faulty: LiveServer) -> None:
    backend = engine(faulty)
    with faulty.client() as c:
        backend.workers[0].supervisor.kill(signal.SIGKILL)
        answer = ask(c)  # sent while the worker is down or coming back
        assert answer.status_code == 200, answer.text
        assert health(c)["restarts"] == 1


def test_hung_worker_is_killed_and_replaced(faulty: LiveServer) -> None:
    backend = engine(faulty)
    with faulty.client() as c:
        backend.workers[0].supervisor.kill(signal.SIGSTOP)  # alive, but answers nothing
        wait_for(lambda: health(c)["restarts"] == 1 and health(c)["worker"] == "ready", 20)
        assert health(c)["last_exit"] == "hung: no answer for 1 s"
        answer = ask(c)
        assert answer.status_code == 200, (answer.text, health(c))
        assert ask(c, "remote/gpt-4o-mini").status_code == 200


@pytest.fixture()
def served(tmp_path: Path) -> Iterator[str]:
    """A real ``chatgate serve`` process, as it runs in production (its own heap, the
    collector frozen after start-up), with room for 20,000 messages per request."""
    config = tmp_path / "chatgate.toml"
    config.write_text('max_messages = 20000\n[[connections]]\nname = "local"\nsource = "local"\n')
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    command = "from chatgate.cli import main; raise SystemExit(main())"
    process = subprocess.Popen(
        [sys.executable, "-c", command, "serve", "--config", str(config), "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={k: v for k, v in os.environ.items() if not k.startswith("CHATGATE_")},
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: _answers(url), 60)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=15)


def _answers(url: str) -> bool:
    try:
        return httpx.get(f"{url}/healthz", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def test_healthz_stays_quick_during_a_huge_request(served: str) -> None:
    messages = [
        {"role": "user" if i % 2 == 0 else "assistant", "content": f"message number {i}"}
        for i in range(10_000)
    ]
    outcome: list[httpx.Response] = []

    def huge() -> None:
        body = {"model": MODEL, "messages": messages, "max_tokens": 4}
        outcome.append(httpx.post(f"{served}/v1/chat/completions", json=body, timeout=60))

    sender = threading.Thread(target=huge)
    slowest = 0.0
    with httpx.Client(base_url=served) as c:
        c.get("/healthz")
        sender.start()
        while sender.is_alive():
            started = time.perf_counter()
            assert c.get("/healthz").status_code == 200
            slowest = max(slowest, time.perf_counter() - started)
            time.sleep(0.005)
        sender.join()
    # 10,000 messages are far more than 2,048 tokens: a clear 400, after real work.
    assert outcome[0].status_code == 400, outcome[0].text
    assert outcome[0].json()["error"]["code"] == "context_length_exceeded"
    assert slowest < 0.1, slowest
    print(f"slowest /healthz during the huge request: {slowest * 1000:.1f} ms")


def test_one_worker_dies_the_other_serves(pooled: LiveServer) -> None:
    backend = engine(pooled)
    first, second = (w.supervisor for w in backend.workers)
    with pooled.client() as c:
        assert health(c)["serving"] == 2
        first.kill(signal.SIGKILL)
        wait_for(lambda: not first.serving, 5)
        # While the first restarts, the engine still answers, from the second.
        answer = ask(c)
        assert answer.status_code == 200, answer.text
        wait_for(lambda: health(c)["serving"] == 2, 20)
        status = health(c)
        assert status["restarts"] == 1
        assert [w["restarts"] for w in status["workers"]] == [1, 0]
        assert second.restarts == 0
