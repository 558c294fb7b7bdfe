"""The live half of `chatgate.gateway.Gateway`: connections added, replaced and dropped
while it runs (the store's, through the admin API), their labelled keys, and the
connections whose key cannot be read.

Each table is swapped whole, between two awaits: a request routes on the old tables or
the new, and one already planned finishes on the backend it planned with.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from chatgate.backends.base import Backend
from chatgate.config import Connection, Settings
from chatgate.errors import ConfigError, ConflictError, NotFoundError, OverloadedError
from chatgate.sources import EMBEDDED

if TYPE_CHECKING:
    from chatgate.exchange.transport import Transport
    from chatgate.secrets import SecretResolver


class LiveConnections:
    """Mixed into `Gateway`: the routing tables and how they change."""

    settings: Settings
    transport: Transport
    resolver: SecretResolver
    backends: dict[str, Backend]
    routes: dict[str, Backend]
    # (connection, label) → the connection with that labelled key instead of its active one.
    labelled: dict[tuple[str, str], Backend]
    # Connection → why it cannot serve now (its key is sealed under a lost master key).
    unavailable: dict[str, str]
    configured: frozenset[str]
    generation: int

    if TYPE_CHECKING:  # Gateway's own

        def backend(self, name: str) -> Backend: ...

    def _routes_of(self, conn: Connection) -> dict[str, Backend]:
        """The backends of *conn*: its own, and one per deployment, routed as
        ``name@deployment/model`` ('@' cannot occur in a connection name)."""
        from chatgate.gateway import build_backend  # the module that mixes this in

        placeholder = self.settings.prompt_placeholder
        backend = build_backend(conn, self.transport, self.resolver, placeholder)
        if conn.deployments and not backend.open_models:
            raise ConfigError(
                f"connection '{conn.name}': deployments are base URLs of a remote "
                "source; the embedded engine has none"
            )
        routes = {conn.name: backend}
        for deployment, url in conn.deployments.items():
            moved = conn.model_copy(update={"base_url": url, "deployments": {}})
            routes[f"{conn.name}@{deployment}"] = build_backend(
                moved, self.transport, self.resolver, placeholder
            )
        return routes

    def put_connection(
        self,
        conn: Connection,
        *,
        keys: Mapping[str, str] | None = None,
        unavailable: str | None = None,
    ) -> None:
        """Serve *conn* from now on, added or in place of the one of its name; *keys* are
        its other labelled keys (a request chooses one with ``key_label``), and
        *unavailable* says why it cannot serve now, if it cannot."""
        if conn.name in self.configured:
            raise ConflictError(
                f"connection '{conn.name}' is in the config file, which is read-only "
                "while chatgate runs; edit the file and restart, or choose another name",
                param="name",
            )
        if conn.source == EMBEDDED:
            raise ConflictError(
                "the embedded engine is configured in the config file only", param="source"
            )
        routes = self._routes_of(conn)
        labelled = {
            (conn.name, label): self._routes_of(
                conn.model_copy(update={"api_key": secret, "deployments": {}})
            )[conn.name]
            for label, secret in (keys or {}).items()
        }
        others = [c for c in self.settings.connections if c.name != conn.name]
        self.settings.connections = [*others, conn]
        self.backends = {**self.backends, conn.name: routes[conn.name]}
        self.routes = {**self._without(self.routes, conn.name), **routes}
        kept = {k: v for k, v in self.labelled.items() if k[0] != conn.name}
        self.labelled = {**kept, **labelled}
        self.unavailable = {k: v for k, v in self.unavailable.items() if k != conn.name}
        if unavailable is not None:
            self.unavailable[conn.name] = unavailable
        self.generation += 1

    def drop_connection(self, name: str) -> None:
        """Stop serving connection *name* (a 404 from now on); requests already planned
        on it finish."""
        if name in self.configured:
            raise ConflictError(
                f"connection '{name}' is in the config file, which is read-only while "
                "chatgate runs",
                param="name",
            )
        self.backend(name)  # a 404 when there is none
        self.settings.connections = [c for c in self.settings.connections if c.name != name]
        self.backends = {k: v for k, v in self.backends.items() if k != name}
        self.routes = self._without(self.routes, name)
        self.labelled = {k: v for k, v in self.labelled.items() if k[0] != name}
        self.unavailable = {k: v for k, v in self.unavailable.items() if k != name}
        self.generation += 1

    def keyed_backend(self, route: str, backend: Backend, label: str | None) -> Backend:
        """The backend *route* uses with the key labelled *label* (its active key when
        None); a 503 when the connection's key cannot be read."""
        connection = route.partition("@")[0]
        problem = self.unavailable.get(connection)
        if problem is not None and label is None:
            raise OverloadedError(
                f"connection '{connection}' cannot be used now: {problem}",
                code="key_unreadable",
            )
        if label is None:
            return backend
        found = self.labelled.get((route, label))
        if found is None:
            labels = sorted(lb for c, lb in self.labelled if c == route)
            raise NotFoundError(
                f"connection '{route}' has no usable key labelled '{label}'"
                + (f" (its labels: {', '.join(labels)})" if labels else ""),
                code="key_not_found",
            )
        return found

    @staticmethod
    def _without(routes: dict[str, Backend], name: str) -> dict[str, Backend]:
        return {k: v for k, v in routes.items() if k.partition("@")[0] != name}
