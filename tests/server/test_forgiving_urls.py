"""The URLs clients really send: base URLs typed without ``/v1`` or with a trailing
slash, and ``Authorization: Bearer `` with an empty token when no key is set."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from typing import Any

import httpx
import orjson
import pytest

from chatgate.config import Connection, Settings
from tests.conftest import GATEWAY_KEY, start_server
from tests.fakes.openai_server import FakeOpenAI

CHAT = {"model": "up/m", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 5}


def _settings(fake: FakeOpenAI, keys: list[str]) -> Settings:
    settings = Settings(
        embedded=False,
        connections=[
            Connection(name="up", source="custom", base_url=fake.url + "/v1", models=["m"])
        ],
    )
    settings.server.api_keys = keys
    return settings


@pytest.fixture()
def open_server(fake: FakeOpenAI) -> Iterator[str]:
    info, server, thread = start_server(_settings(fake, []))
    yield info.url
    server.should_exit = True
    thread.join(timeout=10)


@pytest.fixture()
def keyed_server(fake: FakeOpenAI) -> Iterator[str]:
    info, server, thread = start_server(_settings(fake, [GATEWAY_KEY]))
    yield info.url
    server.should_exit = True
    thread.join(timeout=10)


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/models"),
        ("GET", "/v1/models"),
        ("GET", "/v1//models"),
        ("GET", "//v1/models"),
        ("GET", "//models"),
        ("GET", "/models/up/m"),
        ("GET", "/v1/models//up/m"),
        ("POST", "/chat/completions"),
        ("POST", "/v1/chat/completions"),
        ("POST", "/v1//chat/completions"),
        ("POST", "//chat/completions"),
        ("POST", "/v1///chat//completions"),
    ],
)
def test_the_openai_routes_answer_at_the_root_and_with_doubled_slashes(
    open_server: str, method: str, path: str
) -> None:
    # httpx keeps the path as given; a URL joined from "http://host/v1/" gives these.
    with httpx.Client(timeout=30) as client:
        body = CHAT if method == "POST" else None
        answer = client.request(method, open_server + path, json=body)
    assert answer.status_code == 200, answer.text
    data = answer.json()
    if path.rstrip("/").endswith("models"):
        assert data["object"] == "list" and "up/m" in [m["id"] for m in data["data"]]
    elif "models" in path:
        assert data["id"] == "up/m"
    else:
        assert data["object"] == "chat.completion"


def test_an_unknown_root_path_is_still_a_404_in_the_openai_shape(open_server: str) -> None:
    answer = httpx.get(open_server + "//nothing//here", timeout=30)
    assert answer.status_code == 404
    assert "no such route: GET /nothing/here" in answer.json()["error"]["message"]


def _raw(url: str, method: str, path: str, headers: dict[str, str]) -> tuple[int, dict[str, Any]]:
    """One request sent byte for byte: httpx refuses a header value ending in a space,
    which is what a front end sends as ``Authorization: Bearer `` with no key set."""
    host, port = url.removeprefix("http://").split(":")
    body = orjson.dumps(CHAT) if method == "POST" else b""
    lines = [f"{method} {path} HTTP/1.1", f"Host: {host}:{port}", "Connection: close"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    if body:
        lines += ["Content-Type: application/json", f"Content-Length: {len(body)}"]
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode() + body)
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
    head, _, payload = received.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    if b"transfer-encoding: chunked" in head.lower():
        payload = _unchunked(payload)
    return status, orjson.loads(payload)


def _unchunked(payload: bytes) -> bytes:
    out = b""
    while payload:
        size_line, _, rest = payload.partition(b"\r\n")
        size = int(size_line, 16)
        if size == 0:
            break
        out, payload = out + rest[:size], rest[size + 2 :]
    return out


@pytest.mark.parametrize(
    "headers",
    [
        {"Authorization": "Bearer "},
        {"Authorization": "Bearer"},
        {"Authorization": "Bearer    "},
        {"x-api-key": ""},
        {"x-api-key": "", "Authorization": "Bearer "},
    ],
)
def test_an_empty_key_is_no_key(
    open_server: str, keyed_server: str, headers: dict[str, str]
) -> None:
    # No keys configured: accepted, as a front end with no key set expects.
    assert _raw(open_server, "GET", "/models", headers)[0] == 200
    assert _raw(open_server, "POST", "/chat/completions", headers)[0] == 200
    # Keys configured: a 401 that says the key is missing (not that it is wrong).
    status, refused = _raw(keyed_server, "POST", "/chat/completions", headers)
    assert status == 401
    assert refused["error"]["code"] == "missing_api_key"


def test_an_empty_x_api_key_does_not_hide_a_bearer_key(keyed_server: str) -> None:
    headers = {"x-api-key": "", "Authorization": f"Bearer {GATEWAY_KEY}"}
    answer = httpx.post(keyed_server + "/chat/completions", json=CHAT, headers=headers, timeout=30)
    assert answer.status_code == 200, answer.text
