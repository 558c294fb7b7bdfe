"""A small versioned schema: the ``schema_version`` table and ordered migrations.

Every open runs `migrate` in one write transaction, so a store is never seen half
migrated. Two processes opening one store at once take turns: on PostgreSQL under a
transaction-scoped advisory lock, on SQLite under ``BEGIN IMMEDIATE`` (the file's one
write lock). The second finds the work done and changes nothing.

A new store is created from `chatgate.store.tables` as it stands and stamped with every
version: the migrations after version 1 exist for stores made by an older chatgate, and
each is written against the schema of the version before it. Changing a table in
``tables.py`` means adding a `Migration` here that makes the same change, and a test
that a store migrated from the version before matches a new one.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import Connection, func, insert, select, text

from chatgate.store.database import Database
from chatgate.store.errors import StoreUnavailable
from chatgate.store.tables import gateway_keys, metadata, schema_version, usage_by_caller

# Any constant both processes agree on; this one spells "chatgate" in ASCII.
ADVISORY_LOCK = 0x6368617467617465


@dataclass(frozen=True, slots=True)
class Migration:
    """One step of the schema, from the version before it to `version`."""

    version: int
    description: str
    apply: Callable[[Connection], None]


def _create_tables(conn: Connection) -> None:
    metadata.create_all(conn)


def _add_gateway_keys(conn: Connection) -> None:
    gateway_keys.create(conn, checkfirst=True)


def _index_usage_by_caller(conn: Connection) -> None:
    # Without it, a key's budget seed reads every row in its period, whoever made them.
    usage_by_caller.create(conn, checkfirst=True)


MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "connections, their keys, and the usage log", _create_tables),
    Migration(2, "gateway keys, hashed, with their limits", _add_gateway_keys),
    Migration(3, "the usage log indexed by caller and time", _index_usage_by_caller),
)
LATEST = MIGRATIONS[-1].version


def migrate(db: Database) -> tuple[int, ...]:
    """Bring the store to `LATEST`; the versions this call applied (none if it was)."""
    with db.write() as conn:
        if db.is_postgres:
            conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": ADVISORY_LOCK})
        schema_version.create(conn, checkfirst=True)
        current = conn.scalar(select(func.max(schema_version.c.version))) or 0
        if current > LATEST:
            raise StoreUnavailable(
                f"store {db.location.shown} has schema version {current}, newer than this "
                f"chatgate knows ({LATEST}): upgrade chatgate to use it"
            )
        pending = MIGRATIONS if current == 0 else [m for m in MIGRATIONS if m.version > current]
        if current == 0:
            _create_tables(conn)
        else:
            for migration in pending:
                migration.apply(conn)
        now = datetime.now(UTC)
        for migration in pending:
            conn.execute(
                insert(schema_version).values(
                    version=migration.version, description=migration.description, applied=now
                )
            )
        return tuple(m.version for m in pending)


def version(db: Database) -> int:
    """The store's schema version (0 before the first migration)."""
    with db.read() as conn:
        if not db.engine.dialect.has_table(conn, schema_version.name):
            return 0
        return conn.scalar(select(func.max(schema_version.c.version))) or 0
