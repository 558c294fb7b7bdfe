"""Gateway keys end to end, in one server: made by the admin API, accepted on every
door as a bearer token or ``x-api-key``, limited to their models, refused with a 401
that says why once revoked or expired, and rate limited with a 429 in each door's
shape; the key is answered once and never shown again."""

from __future__ import annotations

import logging
import socket
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from chatgate.config import Connection, Settings
from tests.conftest import GATEWAY_KEY, start_server
from tests.fakes.openai_server import FakeOpenAI

HI = [{"role": "user", "content": "hi"}]
OPENAI = ("/v1/chat/completions", {"model": "file/m", "messages": HI, "max_tokens": 4})
ANTHROPIC = ("/v1/messages", {"model": "file/m", "messages": HI, "max_tokens": 4})
OLLAMA = ("/api/chat", {"model": "file/m", "messages": HI, "stream": False})


@pytest.fixture()
def server(tmp_path: Path, fake: FakeOpenAI) -> Iterator[str]:
    settings = Settings(
        embedded=False,
        store_url=f"sqlite:///{tmp_path}/store.db",
        connections=[
            Connection(name="file", source="custom", base_url=fake.url + "/v1"),
            Connection(name="other", source="custom", base_url=fake.url + "/v1"),
        ],
    )
    settings.server.api_keys = [GATEWAY_KEY]
    settings.server.admin_keys = [GATEWAY_KEY]
    info, uv, thread = start_server(settings)
    yield info.url
    uv.should_exit = True
    thread.join(timeout=10)


def admin(url: str) -> httpx.Client:
    return httpx.Client(base_url=url, headers={"Authorization": f"Bearer {GATEWAY_KEY}"})


def create(url: str, **fields: Any) -> str:
    with admin(url) as http:
        answer = http.post("/api/keys", json=fields)
    assert answer.status_code == 201, answer.text
    key: str = answer.json()["key"]
    return key


def call(
    url: str, key: str, route: tuple[str, dict[str, Any]], header: str = "bearer"
) -> httpx.Response:
    headers = {"Authorization": f"Bearer {key}"} if header == "bearer" else {"x-api-key": key}
    path, body = route
    return httpx.post(url + path, json=body, headers=headers, timeout=30)


def test_create_list_and_revoke(server: str) -> None:
    expiry = (datetime.now(UTC) + timedelta(days=1)).isoformat()
    with admin(server) as http:
        made = http.post(
            "/api/keys",
            json={
                "label": "alice",
                "rpm": 100,
                "tpm": 10_000,
                "budget_tokens": 1_000_000,
                "models": ["file/*"],
                "expires_at": expiry,
            },
        )
        assert made.status_code == 201
        body = made.json()
        key = body["key"]
        assert key.startswith("cg-") and len(key) >= 46
        assert body["masked"] == f"cg-{key[3:11]}..." and body["role"] == "client"
        assert body["expires_at"] is not None and body["models"] == ["file/*"]
        assert call(server, key, OPENAI).status_code == 200
        listed = http.get("/api/keys")
        assert listed.status_code == 200 and key not in listed.text
        (row,) = listed.json()["keys"]
        assert row["label"] == "alice" and row["revoked_at"] is None
        assert row["usage"]["requests"] == 1 and row["usage"]["tokens"] > 0
        assert http.post("/api/keys", json={"label": "alice"}).status_code == 409
        assert http.post("/api/keys", json={"label": "x", "rpm": 0}).status_code == 400
        assert http.post("/api/keys", json={"label": "x", "owner": 1}).status_code == 400
        assert http.post("/api/keys", json={"label": "x", "expires_at": "soon"}).status_code == 400
        gone = http.delete("/api/keys/alice")
        assert gone.status_code == 200 and gone.json()["revoked_at"] is not None
        assert key not in gone.text
        assert http.delete("/api/keys/nobody").status_code == 404
    # Refused at once by this instance, saying why, on every door.
    refused = call(server, key, OPENAI)
    assert refused.status_code == 401
    assert refused.json()["error"]["code"] == "revoked_api_key"
    assert "revoked" in refused.json()["error"]["message"] and key not in refused.text


@pytest.mark.parametrize(
    "route", [OPENAI, ANTHROPIC, OLLAMA], ids=["openai", "anthropic", "ollama"]
)
@pytest.mark.parametrize("header", ["bearer", "x-api-key"])
def test_a_stored_key_works_on_every_door(
    server: str, route: tuple[str, dict[str, Any]], header: str
) -> None:
    key = create(server, label="k")
    answer = call(server, key, route, header)
    assert answer.status_code == 200, answer.text


def test_config_keys_keep_working(server: str) -> None:
    create(server, label="k")
    assert call(server, GATEWAY_KEY, OPENAI).status_code == 200
    assert call(server, "cg-" + "x" * 43, OPENAI).status_code == 401
    assert httpx.post(server + OPENAI[0], json=OPENAI[1]).status_code == 401


def test_an_expired_key_is_refused_saying_so(server: str) -> None:
    past = (datetime.now(UTC) - timedelta(seconds=1)).isoformat()
    key = create(server, label="old", expires_at=past)
    refused = call(server, key, OPENAI)
    assert refused.status_code == 401
    assert refused.json()["error"]["code"] == "expired_api_key"
    assert "expired" in refused.json()["error"]["message"]


def test_models_and_connections_are_enforced_in_each_door_shape(server: str) -> None:
    key = create(server, label="narrow", models=["file/m"], connections=["file"])
    assert call(server, key, OPENAI).status_code == 200
    other = {**OPENAI[1], "model": "file/other-model"}
    refused = call(server, key, (OPENAI[0], other))
    assert refused.status_code == 403
    assert "file/other-model" in refused.json()["error"]["message"]
    assert refused.json()["error"]["code"] == "model_not_allowed"
    anthropic = call(server, key, (ANTHROPIC[0], {**ANTHROPIC[1], "model": "other/m"}))
    assert anthropic.status_code == 403
    assert anthropic.json()["type"] == "error"
    assert anthropic.json()["error"]["type"] == "permission_error"
    assert "other/m" in anthropic.json()["error"]["message"]
    ollama = call(server, key, (OLLAMA[0], {**OLLAMA[1], "model": "other/m"}))
    assert ollama.status_code == 403 and "other/m" in ollama.json()["error"]


def test_a_client_key_may_not_administer(server: str) -> None:
    key = create(server, label="client")
    for method, path in (("GET", "/api/keys"), ("POST", "/api/keys"), ("GET", "/api/connections")):
        answer = httpx.request(method, server + path, json={}, headers={"x-api-key": key})
        assert answer.status_code == 403, path
    boss = create(server, label="boss", role="admin")
    assert httpx.get(server + "/api/keys", headers={"x-api-key": boss}).status_code == 200


def _limited(server: str, route: tuple[str, dict[str, Any]]) -> httpx.Response:
    key = create(server, label="slow", rpm=2)
    for left in ("1", "0"):
        answer = call(server, key, route)
        assert answer.status_code == 200
        assert answer.headers["x-ratelimit-remaining-requests"] == left
    refused = call(server, key, route)
    assert refused.status_code == 429
    headers = refused.headers
    assert 1 <= int(headers["retry-after"]) <= 60
    assert headers["x-ratelimit-limit-requests"] == "2"
    assert headers["x-ratelimit-remaining-requests"] == "0"
    assert headers["x-ratelimit-reset-requests"].endswith("s")
    assert key not in refused.text
    return refused


def test_429_in_the_openai_shape(server: str) -> None:
    error = _limited(server, OPENAI).json()["error"]
    assert error["type"] == "rate_limit_error" and error["code"] == "rate_limit_exceeded"
    assert "2 requests per minute" in error["message"]


def test_429_in_the_anthropic_shape(server: str) -> None:
    body = _limited(server, ANTHROPIC).json()
    assert body["type"] == "error" and body["error"]["type"] == "rate_limit_error"


def test_429_in_the_ollama_shape(server: str) -> None:
    body = _limited(server, OLLAMA).json()
    assert isinstance(body["error"], str) and "requests per minute" in body["error"]


def test_tpm_counts_the_answers_tokens(server: str) -> None:
    key = create(server, label="tokens", tpm=1)
    assert call(server, key, OPENAI).status_code == 200  # its tokens are counted after it
    refused = call(server, key, OPENAI)
    assert refused.status_code == 429
    assert refused.headers["x-ratelimit-limit-tokens"] == "1"
    assert refused.headers["x-ratelimit-remaining-tokens"] == "0"


def test_429_on_a_text_door(server: str) -> None:
    key = create(server, label="text", rpm=1)
    route = ("/v1/completions", {"model": "file/m", "prompt": "hi", "max_tokens": 4})
    assert call(server, key, route).status_code == 200
    refused = call(server, key, route)
    assert refused.status_code == 429
    assert refused.json()["error"]["code"] == "rate_limit_exceeded"
    assert refused.headers["x-ratelimit-remaining-requests"] == "0"


def test_with_redis_down_requests_are_admitted(
    tmp_path: Path, fake: FakeOpenAI, caplog: pytest.LogCaptureFixture
) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        dead = f"redis://:not-logged-pw@127.0.0.1:{sock.getsockname()[1]}/0"
    settings = Settings(
        embedded=False,
        store_url=f"sqlite:///{tmp_path}/store.db",
        redis_url=dead,
        connections=[Connection(name="file", source="custom", base_url=fake.url + "/v1")],
    )
    settings.server.api_keys = [GATEWAY_KEY]
    info, uv, thread = start_server(settings)
    try:
        key = create(info.url, label="open", rpm=1)
        with caplog.at_level(logging.WARNING, "chatgate.limits"):
            statuses = [call(info.url, key, OPENAI).status_code for _ in range(3)]
        assert statuses == [200, 200, 200]  # fail open: no limit without Redis
        assert "admitted without their limits" in caplog.text
        assert "not-logged-pw" not in caplog.text
    finally:
        uv.should_exit = True
        thread.join(timeout=10)


def test_a_limited_stream_carries_the_headers(server: str) -> None:
    key = create(server, label="streamer", rpm=5)
    path, body = OPENAI
    headers = {"Authorization": f"Bearer {key}"}
    with httpx.stream(
        "POST", server + path, json={**body, "stream": True}, headers=headers, timeout=30
    ) as answer:
        assert answer.status_code == 200
        assert answer.headers["x-ratelimit-remaining-requests"] == "4"
        assert "[DONE]" in answer.read().decode()
