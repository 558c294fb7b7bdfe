"""Gateway keys and the loopback rule."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

from chatgate.config import Settings
from chatgate.errors import AuthenticationError, ConfigError, PermissionDeniedError
from chatgate.gateway import Gateway
from chatgate.plan import ANONYMOUS
from chatgate.server.app import create_app
from chatgate.server.auth import Authenticator, check_bind, is_loopback, require_admin


def request(headers: dict[str, str]) -> dict[str, Any]:
    raw = [(k.lower().encode(), v.encode()) for k, v in headers.items()]
    return {"type": "http", "method": "POST", "path": "/", "headers": raw}


@pytest.mark.parametrize(
    ("headers", "ok"),
    [
        ({"Authorization": "Bearer good-key-123"}, True),
        ({"authorization": "bearer good-key-123"}, True),
        ({"x-api-key": "good-key-123"}, True),
        ({"x-api-key": "other-key-456"}, True),
        ({"Authorization": "Bearer wrong"}, False),
        ({"Authorization": "Basic good-key-123"}, False),
        ({"x-api-key": ""}, False),
        ({}, False),
    ],
)
def test_authenticator(headers: dict[str, str], ok: bool) -> None:
    auth = Authenticator(["good-key-123", "other-key-456"])
    if ok:
        caller = auth.authenticate(request(headers))
        # The caller is named by its key, masked: usage records can say who it was.
        assert caller is not None and caller.id in ("goo...-123", "oth...-456")
    else:
        with pytest.raises(AuthenticationError) as caught:
            auth.authenticate(request(headers))
        assert "good-key" not in caught.value.message


def test_no_keys_means_open() -> None:
    assert Authenticator([]).authenticate(request({})) is ANONYMOUS


def test_an_optional_key_may_be_missing_but_not_wrong() -> None:
    auth = Authenticator(["good-key-123"])
    assert auth.authenticate(request({}), optional=True) is None
    with pytest.raises(AuthenticationError):
        auth.authenticate(request({"x-api-key": "bad"}), optional=True)


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.1.2.3", True),
        ("::1", True),
        ("[::1]", True),
        ("localhost", True),
        ("0.0.0.0", False),
        ("192.168.1.4", False),
        ("::", False),
        ("example.org", False),
    ],
)
def test_is_loopback(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


def test_binding_beyond_loopback_needs_keys() -> None:
    check_bind("127.0.0.1", [])
    check_bind("0.0.0.0", ["k"])
    with pytest.raises(ConfigError, match=r"refusing to listen on 0\.0\.0\.0 without gateway keys"):
        check_bind("0.0.0.0", [])


def test_admin_keys_set_who_may_administer() -> None:
    # Without admin keys every key may; with them, only they.
    open_to_all = Authenticator(["client-key-123"])
    caller = open_to_all.authenticate(request({"x-api-key": "client-key-123"}))
    assert caller is not None and caller.admin
    split = Authenticator(["client-key-123", "admin-key-456"], admin_keys=["admin-key-456"])
    client = split.authenticate(request({"x-api-key": "client-key-123"}))
    admin = split.authenticate(request({"x-api-key": "admin-key-456"}))
    assert client is not None and not client.admin
    assert admin is not None and admin.admin
    require_admin(admin)
    with pytest.raises(PermissionDeniedError) as caught:
        require_admin(client)
    assert caught.value.status == 403 and caught.value.code == "admin_key_required"


def test_the_admin_api_refuses_a_client_key_and_the_page_needs_none() -> None:
    settings = Settings(embedded=False)
    settings.server.api_keys = ["client-key-123"]
    settings.server.admin_keys = ["admin-key-456"]
    app = create_app(Gateway(settings))
    transport = httpx.ASGITransport(app=app)

    async def calls() -> list[int]:
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as c:
            client = {"x-api-key": "client-key-123"}
            admin = {"x-api-key": "admin-key-456"}
            return [
                (await c.get("/api/connections", headers=client)).status_code,
                (await c.get("/api/connections", headers=admin)).status_code,
                (await c.get("/v1/models", headers=client)).status_code,
                (await c.get("/api/connections")).status_code,
            ]

    assert asyncio.run(calls()) == [403, 200, 200, 401]
