"""Access tokens for Vertex AI from a service account, through Google's ``google-auth``.

The library signs the JWT and makes the token exchange at the ``token_uri`` the key file
names. Its transport is synchronous, so the exchange runs in a worker thread; the token
is kept until a minute before it expires.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Mapping
from datetime import UTC
from pathlib import Path
from typing import Any

from chatgate.config import Connection
from chatgate.errors import AuthenticationError, ConfigError

SCOPES = ["https://www.googleapis.com/auth/cloud-platform"]
REFRESH_MARGIN = 60.0


def load_service_account(connection: Connection, env: Mapping[str, str]) -> dict[str, Any] | None:
    """The service-account key of *connection*, from its file or its variable, if any."""
    raw: str | None = None
    if connection.service_account_file:
        try:
            raw = Path(connection.service_account_file).expanduser().read_text()
        except OSError as exc:
            raise ConfigError(
                f"connection '{connection.name}': cannot read service_account_file: {exc.strerror}"
            ) from None
    elif connection.service_account_json_env:
        raw = env.get(connection.service_account_json_env)
        if not raw:
            raise ConfigError(
                f"connection '{connection.name}': variable "
                f"{connection.service_account_json_env} is empty"
            )
    if raw is None:
        return None
    try:
        info = json.loads(raw)
    except json.JSONDecodeError:
        info = None
    needed = ("client_email", "private_key", "token_uri")
    if not isinstance(info, dict) or any(k not in info for k in needed):
        raise ConfigError(
            f"connection '{connection.name}': the service account is not a Google key "
            f"file (it needs {', '.join(needed)})"
        )
    return info


class ServiceAccountToken:
    """A cached OAuth access token for one service account."""

    def __init__(self, info: dict[str, Any], connection: str) -> None:
        self.info, self.connection = info, connection
        self.token: str | None = None
        self.expires = 0.0
        self._lock = asyncio.Lock()

    async def get(self) -> str:
        """A valid token, exchanged again when it is about to expire."""
        async with self._lock:
            if self.token is not None and time.time() < self.expires - REFRESH_MARGIN:
                return self.token
            token, self.expires = await asyncio.to_thread(self._exchange)
            self.token = token
            return token

    def _exchange(self) -> tuple[str, float]:
        try:
            from google.auth.exceptions import GoogleAuthError
            from google.auth.transport.requests import Request
            from google.oauth2.service_account import Credentials
        except ImportError:
            raise ConfigError(
                "Vertex AI with a service account needs google-auth: pip install 'chatgate[vertex]'"
            ) from None
        credentials = Credentials.from_service_account_info(  # type: ignore[no-untyped-call]
            self.info, scopes=SCOPES
        )
        try:
            credentials.refresh(Request())
        except GoogleAuthError as exc:
            # The library's message names the account, never the key.
            raise AuthenticationError(
                f"connection '{self.connection}': the service account token exchange "
                f"failed: {str(exc)[:300]}",
                code="upstream_unauthorized",
            ) from None
        expiry = credentials.expiry
        expires = expiry.timestamp() if expiry is not None else time.time() + 3000
        if expiry is not None and expiry.tzinfo is None:  # google-auth uses naive UTC
            expires = expiry.replace(tzinfo=UTC).timestamp()
        return str(credentials.token), expires
