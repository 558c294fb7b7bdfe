"""What the KoboldCpp and llama.cpp door tests share: a chatgate server whose door
default is a given model, and server-sent events read the way a client reads them."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import orjson

from chatgate.config import Connection, DoorOptions, Settings
from tests.conftest import LiveServer, start_server

# Unlike in their first and last characters: callers are told apart by the key masked.
KEY_A = "sk-aaaa-door-test-key-0123456789-aaaa"
KEY_B = "sk-bbbb-door-test-key-0123456789-bbbb"


@dataclass(frozen=True)
class Event:
    """One server-sent event: its name (``message`` when unnamed) and its JSON data."""

    name: str
    data: Any


def sse_events(text: str) -> list[Event]:
    """The events of an SSE body (comment lines skipped), each data parsed as JSON."""
    events = []
    for block in text.replace("\r\n", "\n").split("\n\n"):
        name, data = "message", []
        for line in block.split("\n"):
            if line.startswith("event:"):
                name = line.removeprefix("event:").strip()
            elif line.startswith("data:"):
                data.append(line.removeprefix("data:").strip())
        if data:
            events.append(Event(name, orjson.loads("\n".join(data))))
    return events


@contextmanager
def door_server(
    connections: list[Connection], door: str, model: str | None, *, keys: list[str] | None = None
) -> Iterator[LiveServer]:
    """A chatgate server over *connections* whose *door* defaults to *model*."""
    settings = Settings(embedded=False, connections=connections)
    if model is not None:
        settings.doors[door] = DoorOptions(default_model=model)
    settings.server.api_keys = keys or []
    info, server, thread = start_server(settings)
    try:
        yield info
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def client(server: LiveServer, key: str | None = None) -> httpx.Client:
    """An httpx client for *server*, with *key* as the Bearer token."""
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return httpx.Client(base_url=server.url, headers=headers, timeout=60)
