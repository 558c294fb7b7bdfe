"""Fixtures of the Ollama door's tests: a chatgate server without the embedded model in
front of the Claude fake and the Ollama fake, and the official client pointed at it."""

from __future__ import annotations

import base64
from collections.abc import Generator, Iterator
from typing import cast

import ollama
import pytest

from chatgate.config import Connection, Settings, TextOptions
from tests.conftest import LiveServer, start_server
from tests.fakes import anthropic_server
from tests.fakes.common import FakeState
from tests.fakes.ollama_server import OllamaState
from tests.fakes.openai_server import serve

KEY = "gw-ollama-door-key-0123456789"
CLAUDE_KEY = "sk-ant-test-Hq4Lm8Xz2Vb6Nc"
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather in a city.",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}, "unit": {"type": "string"}},
            "required": ["city"],
        },
    },
}
# A PNG's signature and header chunk: what chatgate reads of an image to name its type.
PNG = base64.b64encode(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(17)).decode()


@pytest.fixture(scope="module")
def claude_fake() -> Iterator[FakeState]:
    """The fake Anthropic Messages API, for the module."""
    state = FakeState()
    runner = cast(Generator[str, None, None], serve(anthropic_server.build_app(state)))
    state.url = next(runner)
    yield state
    runner.close()


def door_settings(claude: FakeState, ollama_fake: OllamaState) -> Settings:
    """Two Claude connections (one with a revoked key) and two Ollama ones (generate and
    chat), no embedded model, a gateway key."""
    base = claude.url + "/v1"
    settings = Settings(
        embedded=False,
        connections=[
            Connection(name="claude", source="claude", base_url=base, api_key=CLAUDE_KEY),
            Connection(
                name="revoked",
                source="claude",
                base_url=base,
                api_key=anthropic_server.KEY_REVOKED,
            ),
            Connection(name="ol", source="ollama", base_url=ollama_fake.url),
            Connection(
                name="olchat",
                source="ollama",
                base_url=ollama_fake.url,
                text=TextOptions(ollama_api="chat"),
            ),
        ],
    )
    settings.server.api_keys = [KEY]
    return settings


@pytest.fixture(scope="module")
def door(claude_fake: FakeState, ollama_fake_server: OllamaState) -> Iterator[LiveServer]:
    """The chatgate server of `door_settings`."""
    info, server, thread = start_server(door_settings(claude_fake, ollama_fake_server))
    yield info
    server.should_exit = True
    thread.join(timeout=10)


@pytest.fixture()
def oc(door: LiveServer) -> Iterator[ollama.Client]:
    """The official Ollama client, with the gateway key."""
    with ollama.Client(
        host=door.url, headers={"Authorization": f"Bearer {KEY}"}, timeout=30
    ) as client:
        yield client
