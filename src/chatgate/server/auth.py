"""Gateway keys: who may use this server."""

from __future__ import annotations

import hmac
import ipaddress

from starlette.requests import Request

from chatgate.errors import AuthenticationError, ConfigError


class KeyChecker:
    """Accepts a request whose bearer token or ``x-api-key`` is a configured key."""

    def __init__(self, keys: list[str]) -> None:
        self._keys = [k.encode() for k in keys]

    @property
    def enabled(self) -> bool:
        """Whether any key is configured (otherwise everyone on loopback may call)."""
        return bool(self._keys)

    def check(self, request: Request) -> None:
        """Raise `AuthenticationError` unless the request carries a valid key."""
        if not self._keys:
            return
        presented = request.headers.get("x-api-key")
        if presented is None:
            scheme, _, token = request.headers.get("authorization", "").partition(" ")
            presented = token.strip() if scheme.lower() == "bearer" else None
        if not presented:
            raise AuthenticationError(
                "missing API key: send 'Authorization: Bearer <key>' or 'x-api-key: <key>'",
                code="missing_api_key",
            )
        given = presented.encode()
        # Compare against every key, always, so timing does not reveal which was close.
        matched = False
        for key in self._keys:
            matched |= hmac.compare_digest(given, key)
        if not matched:
            raise AuthenticationError("incorrect API key provided")


def is_loopback(host: str) -> bool:
    """Whether *host* only accepts connections from this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_bind(host: str, keys: list[str]) -> None:
    """Refuse to listen beyond loopback without gateway keys."""
    if not keys and not is_loopback(host):
        raise ConfigError(
            f"refusing to listen on {host} without gateway keys: anyone who can reach it "
            "could use your connections. Set [server] api_keys (or CHATGATE_API_KEYS), "
            "or bind to 127.0.0.1"
        )
