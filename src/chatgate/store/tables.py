"""The store's tables, as SQLAlchemy Core defines them for SQLite and PostgreSQL alike.

Times are whole milliseconds since the epoch, UTC (`UtcMillis`): integers compare, index
and bucket (``at // 86_400_000``) the same way on both databases, where each has its
own date functions. A change here is also a migration (`chatgate.store.migrations`).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Dialect,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    TypeDecorator,
    UniqueConstraint,
)

metadata = MetaData()

# SQLite makes only an INTEGER PRIMARY KEY an auto-numbered rowid, never a BIGINT one.
BigId = BigInteger().with_variant(Integer(), "sqlite")


class UtcMillis(TypeDecorator[datetime]):
    """A timezone-aware datetime, stored as milliseconds since the epoch."""

    impl = BigInteger
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> int | None:
        """Milliseconds since the epoch (a naive time is refused, not guessed)."""
        if value is None:
            return None
        if value.utcoffset() is None:
            raise ValueError("a timezone-aware datetime is needed")
        return to_millis(value)

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        """The stored milliseconds as a UTC datetime."""
        return None if value is None else from_millis(int(value))


def to_millis(moment: datetime) -> int:
    """*moment* (timezone-aware) as whole milliseconds since the epoch."""
    delta = moment - EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1000 + delta.microseconds // 1000


def from_millis(millis: int) -> datetime:
    """Milliseconds since the epoch as a UTC datetime."""
    return EPOCH + timedelta(milliseconds=millis)


EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

schema_version = Table(
    "schema_version",
    metadata,
    Column("version", Integer, primary_key=True, autoincrement=False),
    Column("description", String(200), nullable=False),
    Column("applied", UtcMillis, nullable=False),
)

connections = Table(
    "connections",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("name", String, nullable=False, unique=True),
    # The validated fields, as JSON text, without api_key and proxy_password.
    Column("fields", Text, nullable=False),
    # proxy_password, sealed (`chatgate.store.crypto`), and its masked form for display.
    Column("sealed_secrets", LargeBinary, nullable=True),
    Column("secret_masks", Text, nullable=False, default="{}"),
    Column("revision", Integer, nullable=False),
    Column("created", UtcMillis, nullable=False),
    Column("updated", UtcMillis, nullable=False),
)

keys = Table(
    "connection_keys",
    metadata,
    Column("id", Integer, primary_key=True),
    Column(
        "connection_id",
        Integer,
        ForeignKey("connections.id", ondelete="CASCADE"),
        nullable=False,
    ),
    Column("label", String(100), nullable=False),
    Column("sealed", LargeBinary, nullable=False),
    Column("masked", String(40), nullable=False),
    Column("active", Boolean, nullable=False),
    Column("created", UtcMillis, nullable=False),
    Column("updated", UtcMillis, nullable=False),
    UniqueConstraint("connection_id", "label", name="connection_keys_label"),
)

# At most one active key per connection, held by the database itself.
Index(
    "connection_keys_one_active",
    keys.c.connection_id,
    unique=True,
    sqlite_where=keys.c.active,
    postgresql_where=keys.c.active,
)

usage = Table(
    "usage_log",
    metadata,
    Column("id", BigId, primary_key=True),
    Column("at", UtcMillis, nullable=False),
    # No foreign key: the log outlives a deleted connection, and logs the config file's.
    # Unbounded strings: a value too long for a VARCHAR(n) would fail its whole batch.
    Column("connection", String, nullable=False),
    Column("model", String, nullable=False),
    Column("door", String, nullable=False),
    Column("caller", String, nullable=True),
    Column("tokens_in", Integer, nullable=False),
    Column("tokens_out", Integer, nullable=False),
    Column("latency_ms", Integer, nullable=False),
    Column("status", Integer, nullable=False),
    Column("error_code", String, nullable=True),
    Column("streamed", Boolean, nullable=False),
)

# `usage()` filters by time, or by connection and time; a token budget's seed after a
# restart (`caller_tokens`) by caller and time.
Index("usage_log_at", usage.c.at)
Index("usage_log_connection_at", usage.c.connection, usage.c.at)
usage_by_caller = Index("usage_log_caller_at", usage.c.caller, usage.c.at)

# Gateway keys (docs/keys.md): who may call this gateway. Only the key's prefix id and
# its HMAC-SHA-256 under the store's pepper are kept; a revoked key stays, so a client
# presenting it is told it was revoked rather than that it is wrong.
gateway_keys = Table(
    "gateway_keys",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("label", String(100), nullable=False, unique=True),
    Column("role", String(10), nullable=False),
    Column("prefix", String(16), nullable=False, unique=True),
    Column("digest", LargeBinary, nullable=False),
    # JSON lists of names; an empty list allows every one.
    Column("connections", Text, nullable=False, default="[]"),
    Column("models", Text, nullable=False, default="[]"),
    Column("rpm", Integer, nullable=True),
    Column("tpm", Integer, nullable=True),
    Column("budget_tokens", BigInteger, nullable=True),
    Column("expires_at", UtcMillis, nullable=True),
    Column("revoked_at", UtcMillis, nullable=True),
    Column("created", UtcMillis, nullable=False),
)
