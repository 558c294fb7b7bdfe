"""What the Anthropic door's tests share: a chatgate server in front of two fakes of other
protocols (an OpenAI-compatible upstream as ``chat``, Claude as ``claude``), and raw
helpers to read an event stream. No model is loaded."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import anthropic
import httpx
import orjson

from chatgate.config import Connection, Settings
from tests.conftest import LiveServer, start_server
from tests.fakes import anthropic_server
from tests.fakes.common import FakeState
from tests.fakes.openai_server import serve

KEY = "gw-Tq4Xv8Rm2Jd6"  # random-looking: a word in a key is masked wherever it appears
CLAUDE_KEY = "sk-ant-Qw8Zr3Lp5Hc"
CHAT_KEY = "sk-Vb5Nm2Kx7Wp"
Event = tuple[str, dict[str, Any]]


@contextmanager
def claude_fake() -> Iterator[FakeState]:
    """The fake Claude upstream, for the block's duration."""
    state = FakeState()
    for url in serve(anthropic_server.build_app(state)):
        state.url = url
        yield state


@contextmanager
def door_server(openai_url: str, claude_url: str) -> Iterator[LiveServer]:
    """chatgate with a gateway key, ``chat/*`` on the OpenAI fake, ``claude/*`` on the
    Claude fake."""
    settings = Settings(
        embedded=False,
        connections=[
            Connection(name="chat", source="custom", base_url=f"{openai_url}/v1", api_key=CHAT_KEY),
            Connection(
                name="claude", source="claude", base_url=f"{claude_url}/v1", api_key=CLAUDE_KEY
            ),
        ],
    )
    settings.server.api_keys = [KEY]
    info, server, thread = start_server(settings)
    try:
        yield info
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def sdk(server: LiveServer, key: str = KEY) -> anthropic.Anthropic:
    """The official client, pointed at *server*."""
    return anthropic.Anthropic(base_url=server.url, api_key=key, max_retries=0)


def post(
    server: LiveServer, body: Any, path: str = "/v1/messages", **headers: str
) -> httpx.Response:
    """A raw POST with the key as ``x-api-key``, as Anthropic's own clients send it."""
    content = body if isinstance(body, bytes) else orjson.dumps(body)
    sent = {"x-api-key": KEY, "content-type": "application/json", **headers}
    return httpx.post(server.url + path, content=content, headers=sent, timeout=30)


def parse_events(raw: str) -> list[Event]:
    """An SSE body as (event, data) pairs; every frame must name its event and repeat
    the type inside, as Anthropic's do."""
    out: list[Event] = []
    for block in raw.strip().split("\n\n"):
        lines = dict(line.split(": ", 1) for line in block.split("\n"))
        data = orjson.loads(lines["data"])
        assert data["type"] == lines["event"], block
        out.append((lines["event"], data))
    return out


def user(text: str) -> list[Any]:
    """A conversation of one user message."""
    return [{"role": "user", "content": text}]
