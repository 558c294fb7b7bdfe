"""Gateway keys: who may call this gateway, with their limits, stored hashed.

A key is ``cg-`` and 43 characters of URL-safe randomness (32 bytes). The store keeps
its first `PREFIX_CHARS` random characters (the key's id, to find its row and to show
it) and HMAC-SHA-256 of the whole key under a pepper derived from the store's master
key (`chatgate.store.crypto`), never the key itself. A slow hash (scrypt, argon2) would
cost tens of milliseconds on every request; a key of 256 random bits needs no
stretching, only a secret the database does not hold (docs/keys.md has the numbers).

Each function runs inside the caller's transaction (`Store` opens one per call).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from sqlalchemy import Connection, Row, insert, select, update

from chatgate.store.errors import StoreConflict, StoreInvalid, StoreNotFound
from chatgate.store.tables import gateway_keys

KEY_PREFIX = "cg-"
RANDOM_BYTES = 32  # 43 URL-safe characters
PREFIX_CHARS = 8
LABEL = re.compile(r"[A-Za-z0-9_.@-]{1,64}")
ROLES = ("admin", "client")
Role = Literal["admin", "client"]


@dataclass(frozen=True, slots=True)
class GatewayKey:
    """One gateway key as the store holds it: never the key, only its id and hash."""

    label: str
    role: Role
    prefix: str
    digest: bytes
    connections: tuple[str, ...]
    models: tuple[str, ...]
    rpm: int | None
    tpm: int | None
    budget_tokens: int | None
    expires_at: datetime | None
    revoked_at: datetime | None
    created: datetime

    @property
    def masked(self) -> str:
        """The key as it may be shown: its prefix id only."""
        return f"{KEY_PREFIX}{self.prefix}..."


def new_key() -> str:
    """A new random gateway key."""
    return KEY_PREFIX + secrets.token_urlsafe(RANDOM_BYTES)


def prefix_of(key: str) -> str | None:
    """The id part of a presented key, or None if it is not shaped as a gateway key."""
    if not key.startswith(KEY_PREFIX) or len(key) < len(KEY_PREFIX) + 43:
        return None
    return key[len(KEY_PREFIX) : len(KEY_PREFIX) + PREFIX_CHARS]


def digest(pepper: bytes, key: str) -> bytes:
    """HMAC-SHA-256 of *key* under *pepper* (about 3 µs)."""
    return hmac.new(pepper, key.encode(), hashlib.sha256).digest()


def _names(value: object, field: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list | tuple) or not all(isinstance(v, str) and v for v in value):
        raise StoreInvalid(f"{field}: a list of names (empty allows every one)", field=field)
    return tuple(value)


# What the columns hold on both databases (INTEGER, and BIGINT for the budget).
MAX_RATE = 2**31 - 1
MAX_BUDGET = 2**63 - 1


def _limit(value: object, field: str, most: int = MAX_RATE) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= most:
        raise StoreInvalid(f"{field}: a whole number from 1 to {most}, or null", field=field)
    return value


def create(
    conn: Connection,
    pepper: bytes,
    *,
    label: object,
    role: object = "client",
    connections: object = None,
    models: object = None,
    rpm: object = None,
    tpm: object = None,
    budget_tokens: object = None,
    expires_at: datetime | None = None,
    now: datetime,
) -> tuple[GatewayKey, str]:
    """Store a new key; the key row and the key itself, which is never seen again."""
    if not isinstance(label, str) or not LABEL.fullmatch(label):
        raise StoreInvalid("label: 1 to 64 letters, digits, '_', '.', '@' or '-'", field="label")
    if role not in ROLES:
        raise StoreInvalid("role: 'admin' or 'client'", field="role")
    if expires_at is not None and expires_at.utcoffset() is None:
        raise StoreInvalid("expires_at: a time with its time zone", field="expires_at")
    if conn.scalar(select(gateway_keys.c.id).where(gateway_keys.c.label == label)) is not None:
        raise StoreConflict(f"a gateway key is already labelled {label!r}", field="label")
    while True:  # a prefix collision is one in 2^48 per key; try again if it happens
        key = new_key()
        prefix = prefix_of(key)
        assert prefix is not None
        taken = select(gateway_keys.c.id).where(gateway_keys.c.prefix == prefix)
        if conn.scalar(taken) is None:
            break
    values: dict[str, Any] = {
        "label": label,
        "role": role,
        "prefix": prefix,
        "digest": digest(pepper, key),
        "connections": json.dumps(list(_names(connections, "connections"))),
        "models": json.dumps(list(_names(models, "models"))),
        "rpm": _limit(rpm, "rpm"),
        "tpm": _limit(tpm, "tpm"),
        "budget_tokens": _limit(budget_tokens, "budget_tokens", MAX_BUDGET),
        "expires_at": expires_at,
        "revoked_at": None,
        "created": now,
    }
    conn.execute(insert(gateway_keys).values(**values))
    return _row(conn.execute(_select().where(gateway_keys.c.label == label)).one()), key


def listed(conn: Connection) -> list[GatewayKey]:
    """Every gateway key, revoked ones too, oldest first."""
    return [_row(r) for r in conn.execute(_select().order_by(gateway_keys.c.id))]


def revoke(conn: Connection, label: str, now: datetime) -> GatewayKey:
    """Mark the key revoked (kept, so it is refused as revoked); again is a no-op."""
    found = conn.execute(_select().where(gateway_keys.c.label == label)).one_or_none()
    if found is None:
        raise StoreNotFound(f"no gateway key is labelled {label!r}", field="label")
    if found.revoked_at is None:
        conn.execute(
            update(gateway_keys).where(gateway_keys.c.label == label).values(revoked_at=now)
        )
        found = conn.execute(_select().where(gateway_keys.c.label == label)).one()
    return _row(found)


def _select() -> Any:
    return select(gateway_keys)


def _row(row: Row[Any]) -> GatewayKey:
    return GatewayKey(
        label=row.label,
        role="admin" if row.role == "admin" else "client",
        prefix=row.prefix,
        digest=bytes(row.digest),
        connections=tuple(json.loads(row.connections)),
        models=tuple(json.loads(row.models)),
        rpm=row.rpm,
        tpm=row.tpm,
        budget_tokens=row.budget_tokens,
        expires_at=row.expires_at,
        revoked_at=row.revoked_at,
        created=row.created,
    )
