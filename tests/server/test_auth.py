"""Gateway keys and the loopback rule."""

from __future__ import annotations

import pytest
from starlette.requests import Request

from chatgate.errors import AuthenticationError, ConfigError
from chatgate.server.auth import KeyChecker, check_bind, is_loopback


def request(headers: dict[str, str]) -> Request:
    raw = [(k.lower().encode(), v.encode()) for k, v in headers.items()]
    return Request({"type": "http", "method": "POST", "path": "/", "headers": raw})


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
def test_key_checker(headers: dict[str, str], ok: bool) -> None:
    checker = KeyChecker(["good-key-123", "other-key-456"])
    if ok:
        checker.check(request(headers))
    else:
        with pytest.raises(AuthenticationError) as caught:
            checker.check(request(headers))
        assert "good-key" not in caught.value.message


def test_no_keys_means_open() -> None:
    KeyChecker([]).check(request({}))


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
