"""The connection endpoints and preview over HTTP, and /v1/models fed by connections."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from chatgate.config import Connection, Settings
from tests.conftest import LiveServer, start_server
from tests.fakes.openai_server import FakeOpenAI

KEY = "sk-test-admin-key-3333hijk"
GATEWAY_KEY = "gw-admin-test-key-0001"


@pytest.fixture()
def server(fake: FakeOpenAI) -> Iterator[LiveServer]:
    settings = Settings(
        embedded=False,
        connections=[
            Connection(
                name="fake",
                source="custom",
                base_url=f"{fake.url}/v1",
                api_key=KEY,
                models=["manual-model"],
            ),
            Connection(
                name="down",
                source="openai",
                base_url="http://127.0.0.1:9/v1",
                api_key=KEY,
                bypass_status_check=True,
            ),
        ],
    )
    settings.server.api_keys = [GATEWAY_KEY]
    info, uv, thread = start_server(settings)
    yield info
    uv.should_exit = True
    thread.join(timeout=10)


@pytest.fixture()
def http(server: LiveServer) -> Iterator[httpx.Client]:
    with server.client() as c:
        yield c


def test_list_connections_masks_keys(http: httpx.Client) -> None:
    answer = http.get("/api/connections")
    assert answer.status_code == 200
    rows = answer.json()["connections"]
    assert [r["name"] for r in rows] == ["fake", "down"]
    assert rows[0]["api_key"] == "sk-...hijk"
    assert KEY not in answer.text


def test_models_status_and_test(http: httpx.Client) -> None:
    models = http.get("/api/connections/fake/models").json()
    assert models["models"] == ["manual-model", "gpt-fake-1", "gpt-fake-2"]
    assert http.get("/api/connections/fake/status").json()["status"] == "ok"
    down = http.get("/api/connections/down/status").json()
    assert down["status"] == "bypassed"
    assert "cannot reach" in down["warning"]
    tested = http.post("/api/connections/fake/test", json={"model": "gpt-fake-1"}).json()
    assert tested["reply"] == "Hello from the fake." and tested["billed"] is True


def test_v1_models_lists_connection_models(http: httpx.Client) -> None:
    ids = [m["id"] for m in http.get("/v1/models").json()["data"]]
    assert ids[:3] == ["fake/manual-model", "fake/gpt-fake-1", "fake/gpt-fake-2"]


def test_preview_sends_nothing(http: httpx.Client, fake: FakeOpenAI) -> None:
    answer = http.post(
        "/api/preview",
        json={
            "model": "fake/gpt-fake-1",
            "messages": [{"role": "user", "content": "Hi"}],
            "stream": True,
        },
    )
    assert answer.status_code == 200
    shown = answer.json()
    assert shown["headers"]["Authorization"] == "Bearer sk-...hijk"
    assert shown["body"]["stream"] is True
    assert not [s for s in fake.seen if s.path.endswith("/chat/completions")]
    assert KEY not in answer.text


def test_unknown_connection_and_auth(http: httpx.Client, server: LiveServer) -> None:
    missing = http.get("/api/connections/nope/status")
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "connection_not_found"
    with httpx.Client(base_url=server.url) as anonymous:
        assert anonymous.get("/api/connections").status_code == 401


def test_upstream_errors_reach_the_client(http: httpx.Client) -> None:
    answer = http.post(
        "/v1/chat/completions",
        json={"model": "fake/error-429", "messages": [{"role": "user", "content": "Hi"}]},
    )
    assert answer.status_code == 429
    assert answer.headers["retry-after"] == "7"
    assert "the fake says 429" in answer.json()["error"]["message"]
    refused = http.post(
        "/v1/chat/completions",
        json={"model": "down/gpt-4o", "messages": [{"role": "user", "content": "Hi"}]},
    )
    assert refused.status_code == 502
    assert "connection 'down'" in refused.json()["error"]["message"]


STRICT_CHAT = {
    "model": "fake/gpt-fake-1",
    "messages": [
        {"role": "system", "content": "Be brief."},
        {"role": "assistant", "content": "Welcome!"},
        {"role": "system", "content": "[OOC: no spoilers]"},
        {"role": "user", "content": "Hello"},
    ],
    "prompt_post_processing": "strict",
}
STRICT_SENT = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "[Start a new chat]"},
    {"role": "assistant", "content": "Welcome!"},
    {"role": "user", "content": "[OOC: no spoilers]\n\nHello"},
]


def test_preview_shows_post_processing(http: httpx.Client) -> None:
    shown = http.post("/api/preview", json=STRICT_CHAT).json()
    assert shown["body"]["messages"] == STRICT_SENT
    assert "prompt_post_processing" not in shown["body"]
    assert shown["post_processing"] == {"mode": "strict", "set_by": "request", "forced": None}


def test_post_processing_reaches_the_upstream(http: httpx.Client, fake: FakeOpenAI) -> None:
    assert http.post("/v1/chat/completions", json=STRICT_CHAT).status_code == 200
    assert fake.last("/chat/completions").body["messages"] == STRICT_SENT
    refused = http.post(
        "/v1/chat/completions",
        json={**STRICT_CHAT, "tools": [{"type": "function", "function": {"name": "f"}}]},
    )
    assert refused.status_code == 400
    error = refused.json()["error"]
    assert error["param"] == "prompt_post_processing" and "'strict-tools'" in error["message"]
