"""Shared fixtures: settings, a real server on loopback with the real embedded model."""

from __future__ import annotations

import os
import socket
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest
import uvicorn

from chatgate.config import Settings, load_settings
from chatgate.gateway import Gateway
from chatgate.server.app import create_app
from tests.fakes.openai_server import FakeOpenAI, build_app, serve
from tests.fakes.scripted_upstream import ScriptedUpstream
from tests.fakes.scripted_upstream import build_app as build_scripted_app
from tests.fakes.text_conftest import *  # noqa: F403 - the text backends' fakes

# No test touches the user's own data directory: the store's default SQLite file (and
# its key file) go under a directory of this run's.
os.environ["XDG_DATA_HOME"] = tempfile.mkdtemp(prefix="chatgate-tests-data-")
GATEWAY_KEY = "sk-test-gateway-key-0123456789abcd"
MODEL = "local/smollm2-135m-instruct"


@dataclass
class LiveServer:
    """A chatgate server running in this process, on a free loopback port."""

    url: str
    key: str | None
    gateway: Gateway

    def client(self, **kwargs: object) -> httpx.Client:
        headers = {"Authorization": f"Bearer {self.key}"} if self.key else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=60, **kwargs)  # type: ignore[arg-type]


def start_server(settings: Settings) -> tuple[LiveServer, uvicorn.Server, threading.Thread]:
    """Start uvicorn in a thread; return once it accepts requests. Each server gets a
    store of its own (an empty SQLite file) unless the settings name one."""
    if settings.store_url is None:
        settings.store_url = f"sqlite:///{tempfile.mkdtemp(prefix='chatgate-store-')}/store.db"
    gateway = Gateway(settings)
    app = create_app(gateway)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(app, log_level="warning", lifespan="on", ws="none")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the test server did not start")
        time.sleep(0.05)
    keys = settings.server.api_keys
    return (
        LiveServer(f"http://127.0.0.1:{port}", keys[0] if keys else None, gateway),
        server,
        thread,
    )


@pytest.fixture(scope="session")
def live() -> Iterator[LiveServer]:
    """One server with a gateway key and the real embedded model, for the whole run."""
    settings = load_settings(env={})
    # Fixed threads: results that must repeat exactly (greedy, seeded) stay the same
    # only with the same thread count; tests/engine/test_tuning.py covers the tuning.
    settings.connections[0].engine.threads_batch = 1
    settings.server.api_keys = [GATEWAY_KEY]
    settings.server.max_body_bytes = 64 * 1024
    info, server, thread = start_server(settings)
    yield info
    server.should_exit = True
    thread.join(timeout=10)


@pytest.fixture()
def client(live: LiveServer) -> Iterator[httpx.Client]:
    """An httpx client for the live server, authenticated."""
    with live.client() as c:
        yield c


@pytest.fixture(scope="module")
def scripted_upstream() -> Iterator[ScriptedUpstream]:
    """One scripted fake (faults on cue) per module; each connection is a base path on it."""
    state = ScriptedUpstream()
    for url in serve(build_scripted_app(state)):
        state.url = url
        yield state


@pytest.fixture(scope="session")
def fake_openai() -> Iterator[FakeOpenAI]:
    """A fake OpenAI-compatible upstream on loopback, shared by the whole run."""
    state = FakeOpenAI()
    for url in serve(build_app(state)):
        state.url = url
        yield state


@pytest.fixture()
def fake(fake_openai: FakeOpenAI) -> FakeOpenAI:
    """The shared fake, with its record and knobs reset for this test."""
    fake_openai.seen.clear()
    fake_openai.missing_models_prefixes = ()
    fake_openai.models_payload = None
    return fake_openai
