"""`Store`: connections, their encrypted keys, and the usage log, in SQLite or PostgreSQL."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, select

from chatgate.config import Connection
from chatgate.store import connections, gateway_keys, keys, usage, usage_insert
from chatgate.store.crypto import (
    KEY_FILE,
    Unsealable,
    connection_context,
    key_context,
    load_sealer,
)
from chatgate.store.database import Database, locate
from chatgate.store.errors import MasterKeyUnavailable
from chatgate.store.gateway_keys import GatewayKey
from chatgate.store.migrations import migrate
from chatgate.store.rows import KeyInfo, StoredConnection, UsageGroup, UsageRow
from chatgate.store.tables import connections as connection_table
from chatgate.store.tables import keys as key_table

log = logging.getLogger("chatgate.store")


class Store:
    """The store of connections, keys and usage, over SQLite or PostgreSQL.

    Every method is synchronous, thread-safe, and runs one short transaction: the server
    calls them from one worker thread (``asyncio.to_thread`` or an executor), so its
    event loop never waits on the database. Opening migrates the schema and loads the
    master key (`chatgate.store.crypto`); several processes may open one store at once.

    Keys are never returned, except by `secret` (the gateway's) and `every_secret`
    (redaction's); everything else shows them masked.
    """

    def __init__(
        self,
        url: str | None = None,
        *,
        directory: str | os.PathLike[str] | None = None,
        env: Mapping[str, str] | None = None,
        reserved_names: Iterable[str] = (),
    ) -> None:
        """Open (and create or migrate) the store *url* names (None: the SQLite file in
        *directory*, by default the user's data directory). *env* supplies
        ``CHATGATE_SECRET_KEY``; *reserved_names* are the config file's connections."""
        self.location = locate(url, directory)
        self._db = Database(self.location)
        self.reserved_names = frozenset(reserved_names)
        try:
            self.applied_migrations = migrate(self._db)
            self._sealer, created = load_sealer(
                self.location.directory, os.environ if env is None else env
            )
            self._explain_master_key(created)
        except BaseException:
            self._db.close()
            raise

    def __repr__(self) -> str:
        return f"Store({self.location.shown!r}, key_id={self._sealer.key_id!r})"

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the store's database connections."""
        self._db.close()

    @property
    def key_id(self) -> str | None:
        """The id of the master key in use (None without one), as messages name it."""
        return self._sealer.key_id

    # Connections

    def list_connections(self) -> list[StoredConnection]:
        """Every stored connection, by name."""
        with self._db.read() as conn:
            return connections.listed(conn, self._sealer)

    def get_connection(self, name: str) -> StoredConnection:
        """The stored connection *name* (`ConnectionNotFound` if none)."""
        with self._db.read() as conn:
            return connections.get(conn, self._sealer, name)

    def add_connection(self, fields: Mapping[str, Any]) -> StoredConnection:
        """Store a new connection from the fields of a ``[[connections]]`` table; its
        ``api_key``, if given, becomes its active key labelled ``default``."""
        with self._db.write() as conn:
            return connections.add(
                conn, self._sealer, fields, reserved=self.reserved_names, now=_now()
            )

    def update_connection(
        self, name: str, patch: Mapping[str, Any], *, revision: int | None = None
    ) -> StoredConnection:
        """Apply a JSON merge patch to the connection, validated whole; with *revision*,
        only if the connection is still at that revision (else `StoreConflict`)."""
        with self._db.write() as conn:
            return connections.update_fields(
                conn, self._sealer, name, patch, expected_revision=revision, now=_now()
            )

    def delete_connection(self, name: str) -> None:
        """Delete the connection and its keys (its usage rows stay)."""
        with self._db.write() as conn:
            connections.remove(conn, name)

    def gateway_connection(self, name: str) -> Connection:
        """The connection as a validated `Connection`, sealed fields opened, for the
        gateway to route with; its key comes from `secret`, per request."""
        with self._db.read() as conn:
            return connections.for_gateway(conn, self._sealer, name)

    # Keys

    def add_key(
        self, connection: str, label: str, secret: str, *, activate: bool = False
    ) -> KeyInfo:
        """Add a labelled key; it becomes active if *activate*, or if it is the first."""
        with self._db.write() as conn:
            return keys.add(
                conn, self._sealer, connection, label, secret, activate=activate, now=_now()
            )

    def list_keys(self, connection: str) -> list[KeyInfo]:
        """The connection's keys, masked, oldest first."""
        with self._db.read() as conn:
            return keys.listed(conn, self._sealer, connection)

    def activate_key(self, connection: str, label: str) -> KeyInfo:
        """Make the labelled key the connection's active key."""
        with self._db.write() as conn:
            return keys.activate(conn, self._sealer, connection, label)

    def delete_key(self, connection: str, label: str) -> None:
        """Delete the labelled key (the active one only if it is the last)."""
        with self._db.write() as conn:
            keys.remove(conn, connection, label)

    def rotate_key(self, connection: str, label: str, new_secret: str) -> KeyInfo:
        """Give the labelled key a new secret (also how an unreadable key is mended)."""
        with self._db.write() as conn:
            return keys.rotate(conn, self._sealer, connection, label, new_secret, now=_now())

    def secret(self, connection: str, label: str | None = None) -> str:
        """The plaintext of the active key, or of the labelled one: for the gateway's
        upstream request only (`KeyUnreadable` says why it cannot be decrypted)."""
        with self._db.read() as conn:
            return keys.plaintext(conn, self._sealer, connection, label)

    def every_secret(self) -> list[str]:
        """Every readable key and sealed field in the store, for redaction only."""
        with self._db.read() as conn:
            key_rows = conn.execute(
                select(connection_table.c.name, key_table.c.label, key_table.c.sealed).join(
                    connection_table, connection_table.c.id == key_table.c.connection_id
                )
            ).all()
            sealed_rows = conn.execute(
                select(connection_table.c.name, connection_table.c.sealed_secrets).where(
                    connection_table.c.sealed_secrets.is_not(None)
                )
            ).all()
        found: list[str] = []
        for name, label, sealed in key_rows:
            found += self._opened(sealed, key_context(name, label))
        for name, sealed in sealed_rows:
            for text in self._opened(sealed, connection_context(name)):
                found += list(json.loads(text).values())
        return [s for s in found if isinstance(s, str) and s]

    # Gateway keys (docs/keys.md)

    @property
    def pepper(self) -> bytes:
        """The secret gateway keys are hashed under, derived from the master key."""
        if self._sealer.pepper is None:
            raise MasterKeyUnavailable(f"gateway keys need the master key: {self._sealer.problem}")
        return self._sealer.pepper

    def create_gateway_key(self, **fields: Any) -> tuple[GatewayKey, str]:
        """A new gateway key (label, role, connections, models, rpm, tpm, budget_tokens,
        expires_at): its row, and the key itself, which is never returned again."""
        with self._db.write() as conn:
            return gateway_keys.create(conn, self.pepper, now=_now(), **fields)

    def list_gateway_keys(self) -> list[GatewayKey]:
        """Every gateway key (hashes, never keys), revoked ones too, oldest first."""
        with self._db.read() as conn:
            return gateway_keys.listed(conn)

    def revoke_gateway_key(self, label: str) -> GatewayKey:
        """Revoke the gateway key *label* (`StoreNotFound` if none)."""
        with self._db.write() as conn:
            return gateway_keys.revoke(conn, label, _now())

    # Usage

    def record_usage(self, rows: Sequence[UsageRow]) -> int:
        """Write a batch of usage rows in one transaction; how many were written."""
        with self._db.write() as conn:
            return usage_insert.record(conn, rows)

    def spent(self, caller: str, since: datetime, until: datetime) -> int:
        """The tokens (in and out) of *caller*'s usage rows in [since, until): what an
        in-process budget is seeded with after a restart."""
        with self._db.read() as conn:
            return usage.caller_tokens(conn, caller, since, until)

    def usage(
        self,
        connection: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        group_by: str | Sequence[str] | None = None,
    ) -> list[UsageGroup]:
        """Request counts, errors, tokens and latency in [since, until), per group of
        *group_by* (``"connection,model"``; among connection, model, door, caller, day
        and hour, in UTC), in the groups' order; one total when not grouped."""
        with self._db.read() as conn:
            return usage.summed(
                conn, connection=connection, since=since, until=until, group_by=group_by
            )

    def prune_usage(self, before: datetime) -> int:
        """Delete the usage rows older than *before*; how many were deleted."""
        with self._db.write() as conn:
            return usage.prune(conn, before)

    def _opened(self, sealed: bytes, context: bytes) -> list[str]:
        try:
            return [self._sealer.open(sealed, context)]
        except Unsealable:
            return []

    def _explain_master_key(self, created: bool) -> None:
        if not created:
            if self._sealer.problem:
                log.error("store: no master key, stored keys unreadable: %s", self._sealer.problem)
            return
        with self._db.read() as conn:
            stored = conn.scalar(select(func.count()).select_from(key_table)) or 0
        where = self.location.directory / KEY_FILE
        if stored:
            log.warning(
                "store: made a new master key (%s) in %s, where there was none: the keys "
                "stored before (%d) cannot be read until the old key file is put back, or each "
                "is entered again (rotated)",
                self._sealer.key_id,
                where,
                stored,
            )
        else:
            log.info("store: made the master key %s in %s", self._sealer.key_id, where)
        if self._db.is_postgres:
            log.warning(
                "store: a PostgreSQL store with a key file of its own: every instance that "
                "shares the database needs the same master key (CHATGATE_SECRET_KEY)"
            )


def _now() -> datetime:
    return datetime.now(UTC)
