"""A connection with drop_params: unsupported parameters are dropped and reported."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from chatgate.config import load_settings
from tests.conftest import MODEL, LiveServer, start_server

pytestmark = pytest.mark.model


@pytest.fixture(scope="module")
def dropping() -> Iterator[LiveServer]:
    settings = load_settings(env={})
    settings.connections[0].drop_params = True
    info, server, thread = start_server(settings)
    yield info
    server.should_exit = True
    thread.join(timeout=10)


def test_dropped_params_are_reported(dropping: LiveServer) -> None:
    request = {
        "model": MODEL,
        "messages": [{"role": "user", "content": "Hi"}],
        "max_tokens": 2,
        "tools": [{"type": "function", "function": {"name": "f"}}],
        "mystery": 1,
    }
    with dropping.client() as c:
        answer = c.post("/v1/chat/completions", json=request)
        assert answer.status_code == 200
        assert answer.headers["x-chatgate-dropped-params"] == "tools,mystery"
        streamed = c.post("/v1/chat/completions", json={**request, "stream": True})
        assert streamed.headers["x-chatgate-dropped-params"] == "tools,mystery"


def test_no_keys_means_no_auth_needed(dropping: LiveServer) -> None:
    with dropping.client() as c:
        assert dropping.key is None
        assert c.get("/v1/models").status_code == 200
