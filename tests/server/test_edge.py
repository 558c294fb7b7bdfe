"""The edge of the server: content types, Host headers, CORS, error shapes, /healthz,
and URL passwords masked on every surface that shows a base URL."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from chatgate.cli import main
from chatgate.config import Connection, Settings
from chatgate.errors import ConfigError
from chatgate.gateway import Gateway
from chatgate.server.app import create_app
from chatgate.server.auth import EdgeGuard
from chatgate.urls import clean_base_url, mask_userinfo
from tests.conftest import LiveServer, start_server
from tests.fakes.openai_server import FakeOpenAI

GATEWAY_KEY = "gw-edge-test-key-0003"
KEY = "sk-test-edge-upstream-8888uvwx"
USER = "edge-user"
PASSWORD = "hunter2-userinfo-secret"
SHOWN = f"{USER}:***@"
ORIGIN = "https://app.example"
JSON = "application/json"

CHAT = {"model": "fake/gpt-fake-1", "messages": [{"role": "user", "content": "Hi"}]}
BODIES: dict[str, dict[str, Any]] = {
    "/v1/chat/completions": CHAT,
    "/v4/beta/chat/completions": {"model": "fake/gpt-fake-1", "messages": [{"content": "Hi"}]},
    "/api/preview": CHAT,
    "/api/connections/fake/test": {"model": "gpt-fake-1"},
}


def with_userinfo(url: str) -> str:
    return url.replace("://", f"://{USER}:{PASSWORD}@", 1)


def settings_for(fake: FakeOpenAI, **server: Any) -> Settings:
    """The fake as connection "fake" (with /v1) and "bare" (without), plus "dead" (cannot
    be reached): each with a password in its URL."""
    urls = {"fake": f"{fake.url}/v1", "bare": fake.url, "dead": "http://127.0.0.1:9/v1"}
    connections = [
        Connection(name=name, source="custom", base_url=with_userinfo(url), api_key=KEY)
        for name, url in urls.items()
    ]
    connections[0].models = ["manual-model"]
    settings = Settings(embedded=False, connections=connections)
    for name, value in server.items():
        setattr(settings.server, name, value)
    return settings


def serve(settings: Settings) -> Iterator[LiveServer]:
    info, uv, thread = start_server(settings)
    yield info
    uv.should_exit = True
    thread.join(timeout=10)


@pytest.fixture(scope="module")
def keyed(fake_openai: FakeOpenAI) -> Iterator[LiveServer]:
    """Gateway keys, and CORS for one origin."""
    yield from serve(settings_for(fake_openai, api_keys=[GATEWAY_KEY], cors_origins=[ORIGIN + "/"]))


@pytest.fixture(scope="module")
def open_server(fake_openai: FakeOpenAI) -> Iterator[LiveServer]:
    """No keys (loopback only), two extra host names, no CORS."""
    yield from serve(settings_for(fake_openai, allowed_hosts=["Gateway.lan", "other.lan:9000"]))


@pytest.fixture()
def servers(keyed: LiveServer, open_server: LiveServer) -> dict[str, LiveServer]:
    return {"keyed": keyed, "open": open_server}


def call(
    server: LiveServer,
    method: str,
    path: str,
    headers: list[tuple[str, str]] | None = None,
    *,
    auth: bool = True,
    body: bytes | None = None,
) -> httpx.Response:
    sent = list(headers or [])
    if auth and server.key:
        sent.append(("authorization", f"Bearer {server.key}"))
    with httpx.Client(base_url=server.url, timeout=30) as c:
        return c.request(method, path, headers=sent, content=body)


def assert_door_shape(answer: httpx.Response, path: str, code: str | None = None) -> None:
    body = answer.json()
    if path.startswith("/v4/"):
        assert set(body) == {"detail"} and isinstance(body["detail"], str), body
    else:
        assert set(body["error"]) == {"message", "type", "param", "code"}, body
        if code is not None:
            assert body["error"]["code"] == code


# --- content types ---------------------------------------------------------------------

ACCEPTED_TYPES = [
    (JSON,),
    ("application/json; charset=utf-8",),
    ("Application/JSON",),
    ("application/vnd.chatgate+json",),
]
REFUSED_TYPES: list[tuple[str, ...]] = [
    (),
    ("text/plain",),
    ("text/plain; charset=utf-8",),
    ("text/plain; x=application/json",),
    ("application/x-www-form-urlencoded",),
    ("multipart/form-data; boundary=x",),
    ("text/json",),
    ("application/jsonp",),
    ("application/json, text/plain",),
    (JSON, "text/plain"),  # two headers: ambiguous
]


@pytest.mark.parametrize("path", list(BODIES))
@pytest.mark.parametrize(
    ("types", "status"), [(t, 200) for t in ACCEPTED_TYPES] + [(t, 415) for t in REFUSED_TYPES]
)
def test_json_routes_take_only_json(
    keyed: LiveServer, path: str, types: tuple[str, ...], status: int
) -> None:
    headers = [("content-type", t) for t in types]
    answer = call(keyed, "POST", path, headers, body=orjson.dumps(BODIES[path]))
    assert answer.status_code == status, answer.text
    if status == 415:
        assert_door_shape(answer, path, "unsupported_media_type")


# --- Host headers ----------------------------------------------------------------------

HOSTS: list[tuple[str, str, str, str, int]] = [
    ("open", "127.0.0.1", "GET", "/healthz", 200),
    ("open", "127.0.0.1:8787", "GET", "/healthz", 200),
    ("open", "localhost", "GET", "/healthz", 200),
    ("open", "LOCALHOST:1", "GET", "/v1/models", 200),
    ("open", "[::1]", "GET", "/healthz", 200),
    ("open", "[::1]:8787", "GET", "/healthz", 200),
    ("open", "gateway.lan", "GET", "/healthz", 200),
    ("open", "gateway.lan:8787", "GET", "/healthz", 200),
    ("open", "other.lan:9000", "GET", "/healthz", 200),
    ("open", "other.lan:9001", "GET", "/healthz", 403),
    ("open", "other.lan", "GET", "/healthz", 403),
    ("open", "evil.example", "GET", "/healthz", 403),
    ("open", "evil.example:8787", "GET", "/v1/models", 403),
    ("open", "127.0.0.1.evil.example", "GET", "/api/connections", 403),
    ("open", "localhost.evil.example", "POST", "/v1/chat/completions", 403),
    ("open", "evil.example", "POST", "/v4/beta/chat/completions", 403),
    ("open", "evil.example", "POST", "/api/preview", 403),
    ("open", "::1", "GET", "/healthz", 403),
    ("open", "127.0.0.1:port", "GET", "/healthz", 403),
    ("open", "evil.example@127.0.0.1", "GET", "/healthz", 403),
    ("keyed", "evil.example", "GET", "/v1/models", 200),
    ("keyed", "evil.example", "POST", "/v1/chat/completions", 200),
    ("keyed", "evil.example:443", "POST", "/v4/beta/chat/completions", 200),
]


@pytest.mark.parametrize(("server", "host", "method", "path", "status"), HOSTS)
def test_host_header(
    servers: dict[str, LiveServer], server: str, host: str, method: str, path: str, status: int
) -> None:
    body = orjson.dumps(BODIES[path]) if method == "POST" else None
    headers = [("host", host)] + ([("content-type", JSON)] if body else [])
    answer = call(servers[server], method, path, headers, body=body)
    assert answer.status_code == status, answer.text
    if status == 403:
        assert_door_shape(answer, path, "host_not_allowed")


# --- CORS ------------------------------------------------------------------------------

PREFLIGHT = [
    ("origin", ORIGIN),
    ("access-control-request-method", "POST"),
    ("access-control-request-headers", "authorization, content-type, x-stainless-os"),
]
EVIL_PREFLIGHT = [("origin", "https://evil.example"), *PREFLIGHT[1:]]
PLAIN_FROM_APP = [("origin", ORIGIN), ("content-type", "text/plain")]
# (server, method, path, headers, with the key, status, allowed origin answered)
CORS: list[tuple[str, str, str, list[tuple[str, str]], bool, int, bool]] = [
    ("keyed", "OPTIONS", "/v1/chat/completions", PREFLIGHT, False, 204, True),
    ("keyed", "OPTIONS", "/v4/beta/chat/completions", PREFLIGHT, False, 204, True),
    ("keyed", "OPTIONS", "/api/preview", PREFLIGHT, False, 204, True),
    ("keyed", "OPTIONS", "/v1/chat/completions", EVIL_PREFLIGHT, False, 405, False),
    ("keyed", "GET", "/v1/models", [("origin", ORIGIN)], True, 200, True),
    ("keyed", "POST", "/v1/chat/completions", [("origin", ORIGIN)], True, 200, True),
    ("keyed", "POST", "/v4/beta/chat/completions", [("origin", ORIGIN)], True, 200, True),
    ("keyed", "POST", "/v1/chat/completions", PLAIN_FROM_APP, True, 415, True),
    ("keyed", "GET", "/v1/models", [("origin", "https://evil.example")], True, 200, False),
    ("keyed", "GET", "/v1/models", [("origin", "null")], True, 200, False),
    ("open", "OPTIONS", "/v1/chat/completions", PREFLIGHT, False, 405, False),
    ("open", "GET", "/v1/models", [("origin", ORIGIN)], False, 200, False),
    ("open", "POST", "/v1/chat/completions", [("origin", ORIGIN)], False, 200, False),
]


@pytest.mark.parametrize(("server", "method", "path", "headers", "auth", "status", "allowed"), CORS)
def test_cors(
    servers: dict[str, LiveServer],
    server: str,
    method: str,
    path: str,
    headers: list[tuple[str, str]],
    auth: bool,
    status: int,
    allowed: bool,
) -> None:
    body = orjson.dumps(BODIES[path]) if method == "POST" else None
    if body and not any(name == "content-type" for name, _ in headers):
        headers = [*headers, ("content-type", JSON)]
    answer = call(servers[server], method, path, headers, auth=auth, body=body)
    assert answer.status_code == status, answer.text
    cors = {k: v for k, v in answer.headers.items() if k.startswith("access-control-")}
    if not allowed:
        assert cors == {}
        return
    assert cors["access-control-allow-origin"] == ORIGIN
    assert "origin" in answer.headers["vary"].lower()
    if method == "OPTIONS":
        assert "POST" in cors["access-control-allow-methods"]
        assert "x-stainless-os" in cors["access-control-allow-headers"]


# --- error shapes ----------------------------------------------------------------------

# (method, path, status, the exact body or None for the OpenAI shape)
ERRORS: list[tuple[str, str, int, dict[str, Any] | None]] = [
    ("GET", "/v4/nothing", 404, {"detail": "Not Found"}),
    ("GET", "/v4", 404, {"detail": "Not Found"}),
    ("POST", "/v4/beta/nothing", 404, {"detail": "Not Found"}),
    ("GET", "/v4/beta/chat/completions", 405, {"detail": "Method Not Allowed"}),
    ("DELETE", "/v4/beta/chat/completions", 405, {"detail": "Method Not Allowed"}),
    ("GET", "/v1/nothing", 404, None),
    ("GET", "/v1/chat/completions", 405, None),
    ("POST", "/api/nothing", 404, None),
    ("GET", "/nothing/here", 404, None),
]


@pytest.mark.parametrize(("method", "path", "status", "expected"), ERRORS)
def test_error_shapes(
    keyed: LiveServer, method: str, path: str, status: int, expected: dict[str, Any] | None
) -> None:
    body = b"{}" if method == "POST" else None
    answer = call(keyed, method, path, [("content-type", JSON)], body=body)
    assert answer.status_code == status, answer.text
    assert answer.headers["content-type"] == JSON
    if expected is None:
        assert_door_shape(answer, path)
    else:
        assert answer.json() == expected
    if status == 405:
        assert "POST" in answer.headers["allow"]


# --- /healthz --------------------------------------------------------------------------

# (server, headers, status, details shown)
HEALTH: list[tuple[str, list[tuple[str, str]], int, bool]] = [
    ("keyed", [], 200, False),
    ("keyed", [("authorization", f"Bearer {GATEWAY_KEY}")], 200, True),
    ("keyed", [("x-api-key", GATEWAY_KEY)], 200, True),
    ("keyed", [("authorization", "Bearer wrong")], 401, False),
    ("keyed", [("authorization", "Basic abc")], 200, False),
    ("open", [], 200, True),
]


@pytest.mark.parametrize(("server", "headers", "status", "details"), HEALTH)
def test_healthz(
    servers: dict[str, LiveServer],
    server: str,
    headers: list[tuple[str, str]],
    status: int,
    details: bool,
) -> None:
    answer = call(servers[server], "GET", "/healthz", headers, auth=False)
    assert answer.status_code == status, answer.text
    if status != 200:
        return
    body = answer.json()
    if details:
        assert body["status"] == "ok" and set(body["connections"]) == {"fake", "bare", "dead"}
        assert PASSWORD not in answer.text and SHOWN in answer.text
    else:
        assert body == {"status": "ok"}


# --- URL passwords ---------------------------------------------------------------------


@pytest.fixture()
def fresh(fake: FakeOpenAI) -> Iterator[LiveServer]:
    """A server of its own: the models probe rewrites a connection's base URL."""
    fake.missing_models_prefixes = ("",)  # "bare" answers 404 until /v1 is added
    try:
        yield from serve(settings_for(fake, api_keys=[GATEWAY_KEY]))
    finally:
        fake.missing_models_prefixes = ()


# (method, path, body, a URL is in the answer)
SURFACES: list[tuple[str, str, dict[str, Any] | None, bool]] = [
    ("GET", "/healthz", None, True),
    ("GET", "/api/connections", None, True),
    ("GET", "/api/connections/bare/models?refresh=1", None, True),
    ("GET", "/api/connections/bare/status", None, True),
    ("GET", "/api/connections/fake/models", None, False),
    ("GET", "/api/connections/fake/status", None, False),
    ("GET", "/api/connections/dead/status", None, False),
    ("POST", "/api/preview", CHAT, True),
    ("POST", "/api/preview", {**CHAT, "model": "bare/gpt-fake-1"}, True),
    ("POST", "/api/connections/fake/test", {"model": "gpt-fake-1"}, False),
]


@pytest.mark.parametrize(("method", "path", "body", "shows_url"), SURFACES)
def test_url_passwords_are_masked(
    fresh: LiveServer, method: str, path: str, body: dict[str, Any] | None, shows_url: bool
) -> None:
    raw = orjson.dumps(body) if body is not None else None
    answer = call(fresh, method, path, [("content-type", JSON)], body=raw)
    assert answer.status_code == 200, answer.text
    assert PASSWORD not in answer.text
    assert (SHOWN in answer.text) is shows_url, answer.text


@pytest.mark.parametrize("extra", [[], ["--json"]])
def test_cli_list_masks_url_passwords(
    tmp_path: Path, fake: FakeOpenAI, capsys: pytest.CaptureFixture[str], extra: list[str]
) -> None:
    config = tmp_path / "chatgate.toml"
    config.write_text(
        f'embedded = false\n[[connections]]\nname = "fake"\nsource = "custom"\n'
        f'base_url = "{with_userinfo(fake.url)}/v1"\napi_key = "{KEY}"\n'
    )
    assert main(["--config", str(config), "connections", "list", *extra]) == 0
    out = capsys.readouterr().out
    assert PASSWORD not in out and SHOWN in out


MASKS = [
    ("https://user:pass@host/v1", "https://user:***@host/v1"),
    ("http://token@host:8080/v1", "http://***@host:8080/v1"),
    ("https://user:@host", "https://user:***@host"),
    ("https://user:p@ss@host/v1", "https://user:***@host/v1"),
    ("https://user:***@host", "https://user:***@host"),
    ("https://host/v1", "https://host/v1"),
    ("https://host/path?next=a@b", "https://host/path?next=a@b"),
    ("mailto:someone@example.com", "mailto:someone@example.com"),
    (
        'tried http://a:b@h/models; use "https://c:d@k/v1"',
        'tried http://a:***@h/models; use "https://c:***@k/v1"',
    ),
    ("", ""),
]


@pytest.mark.parametrize(("text", "expected"), MASKS)
def test_mask_userinfo(text: str, expected: str) -> None:
    assert mask_userinfo(text) == expected


def test_base_url_messages_mask_passwords() -> None:
    cleaned = clean_base_url(f"https://u:{PASSWORD}@h/v1/chat/completions", "c")
    assert cleaned.note is not None and "u:***@h/v1" in cleaned.note
    assert PASSWORD not in cleaned.note
    with pytest.raises(ConfigError) as refused:
        clean_base_url(f"ftp://u:{PASSWORD}@h/v1", "c")
    assert PASSWORD not in refused.value.message


# --- settings --------------------------------------------------------------------------

GUARD_SETTINGS: list[tuple[list[str], list[str], bool]] = [
    (["gateway.lan", "gateway.lan:8787", "::1", "[fe80::1]:80", "10.0.0.5"], [], True),
    ([], ["https://app.example", "http://localhost:3000/", "HTTPS://App.Example"], True),
    (["evil.example/path"], [], False),
    (["a b"], [], False),
    (["host:port"], [], False),
    (["user@host"], [], False),
    ([], ["app.example"], False),
    ([], ["https://app.example/path"], False),
    ([], ["https://u:p@app.example"], False),
    ([], ["*"], False),
]


@pytest.mark.parametrize(("hosts", "origins", "valid"), GUARD_SETTINGS)
def test_edge_settings_are_checked(hosts: list[str], origins: list[str], valid: bool) -> None:
    if valid:
        EdgeGuard(keyed=False, allowed_hosts=hosts, cors_origins=origins)
        return
    with pytest.raises(ConfigError):
        EdgeGuard(keyed=False, allowed_hosts=hosts, cors_origins=origins)


def test_only_the_kobold_abort_may_come_without_a_body_or_type() -> None:
    settings = Settings(embedded=False, default_model="none/m")
    app = create_app(Gateway(settings))
    transport = httpx.ASGITransport(app=app)

    async def calls() -> list[int]:
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as c:
            return [
                (await c.post("/api/extra/abort")).status_code,
                (await c.post("/api/extra/abort", content=b"x")).status_code,
                (await c.post("/api/connections/none/test")).status_code,
                (await c.post("/api/preview")).status_code,
            ]

    assert asyncio.run(calls()) == [200, 415, 415, 415]


def test_llama_servers_health_needs_no_key() -> None:
    settings = Settings(embedded=False, default_model="none/m")
    settings.server.api_keys = ["sk-edge-health-key-0001"]
    transport = httpx.ASGITransport(app=create_app(Gateway(settings)))

    async def status() -> tuple[int, int]:
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as c:
            return (await c.get("/health")).status_code, (await c.get("/props")).status_code

    # Answered without a key: a 503, since its default model has no connection here.
    assert asyncio.run(status()) == (503, 401)
