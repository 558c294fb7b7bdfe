"""Where secrets come from, and the live set of them that redaction masks.

A backend asks the resolver for a connection's `Credentials` when it is built; the edge
asks for `SecretResolver.secrets` whenever it redacts, so a key added later (by a store
that supplies secrets, for one) is masked as soon as it is in use. `EnvSecrets` is the
resolver of the config file and the environment: ``api_key``, ``api_key_env``,
``proxy_password``, credentials in ``headers`` and base URLs, and Google service
accounts (``service_account_file``, ``service_account_json_env``).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Protocol
from urllib.parse import unquote, urlsplit

import orjson

from chatgate.errors import ConfigError
from chatgate.upstream import Credentials

if TYPE_CHECKING:
    from chatgate.config import Connection, Settings


class SecretResolver(Protocol):
    """Supplies each connection's credentials and every secret in use."""

    def credentials(self, connection: Connection) -> Credentials:
        """The credentials *connection* sends with."""
        ...

    def secrets_of(self, connection: Connection) -> list[str]:
        """Every secret *connection* holds, for redaction."""
        ...

    def secrets(self) -> list[str]:
        """Every secret in use now: gateway keys and each connection's."""
        ...


class EnvSecrets:
    """Secrets from the settings and the environment, read when asked."""

    def __init__(self, settings: Settings, env: Mapping[str, str] | None = None) -> None:
        self.settings = settings
        self.env = os.environ if env is None else env

    def credentials(self, connection: Connection) -> Credentials:
        """The key (``api_key`` or ``api_key_env``) and the service account, if any."""
        return Credentials(connection.key(self.env), self._service_account(connection))

    def secrets_of(self, connection: Connection) -> list[str]:
        """The connection's configured secrets and its service account's private key."""
        found = connection.secrets(self.env)
        try:
            account = self._service_account(connection)
        except ConfigError:
            account = None
        if account:
            found += _private_key(account)
        return found

    def secrets(self) -> list[str]:
        """Gateway keys, the store URL's password and every connection's secrets."""
        out = self.settings.server.resolved_keys(self.env)
        for url in (self.settings.store_url, self.settings.redis_url):
            password = urlsplit(url).password if url else None
            if password:
                out += {password, unquote(password)}
        for connection in self.settings.connections:
            out += self.secrets_of(connection)
        return out

    def _service_account(self, connection: Connection) -> str | None:
        if connection.google.service_account_file:
            try:
                return Path(connection.google.service_account_file).expanduser().read_text()
            except OSError as exc:
                raise ConfigError(
                    f"connection '{connection.name}': cannot read service_account_file: "
                    f"{exc.strerror}"
                ) from None
        variable = connection.google.service_account_json_env
        if variable:
            text = self.env.get(variable)
            if not text:
                raise ConfigError(f"connection '{connection.name}': variable {variable} is empty")
            return text
        return None


class LiveSecrets:
    """A connection's secrets, asked of the resolver each time they are read: the
    exchange reads them only to redact an error, and then they must be current."""

    def __init__(
        self,
        resolver: SecretResolver,
        connection: Connection,
        also: Callable[[], Iterable[str | None]] = tuple,
    ) -> None:
        self.resolver, self.connection, self.also = resolver, connection, also

    def __iter__(self) -> Iterator[str]:
        found = [*self.resolver.secrets_of(self.connection), *self.also()]
        return iter([s for s in found if s])


def _private_key(account_text: str) -> list[str]:
    try:
        info = orjson.loads(account_text)
    except orjson.JSONDecodeError:
        return []
    key = info.get("private_key") if isinstance(info, dict) else None
    return [key] if isinstance(key, str) and key else []
