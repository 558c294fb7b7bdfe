"""Gateway keys and the loopback rule."""

from __future__ import annotations

from typing import Any

import pytest

from chatgate.errors import AuthenticationError, ConfigError
from chatgate.plan import ANONYMOUS
from chatgate.server.auth import Authenticator, check_bind, is_loopback


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
