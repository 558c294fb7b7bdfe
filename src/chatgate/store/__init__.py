"""The store: connections a person manages, their keys encrypted at rest, and the usage
log, in SQLite (by default) or PostgreSQL, through one synchronous, thread-safe API.

See docs/store.md. The server calls `Store` from a worker thread; nothing here is async.
"""

from chatgate.store.errors import (
    ConnectionNotFound,
    KeyNotFound,
    KeyUnreadable,
    MasterKeyUnavailable,
    SecretUnreadable,
    StoreConflict,
    StoreError,
    StoreInvalid,
    StoreNotFound,
    StoreUnavailable,
)
from chatgate.store.rows import GROUP_NAMES, KeyInfo, StoredConnection, UsageGroup, UsageRow
from chatgate.store.store import Store

__all__ = [
    "GROUP_NAMES",
    "ConnectionNotFound",
    "KeyInfo",
    "KeyNotFound",
    "KeyUnreadable",
    "MasterKeyUnavailable",
    "SecretUnreadable",
    "Store",
    "StoreConflict",
    "StoreError",
    "StoreInvalid",
    "StoreNotFound",
    "StoreUnavailable",
    "StoredConnection",
    "UsageGroup",
    "UsageRow",
]
