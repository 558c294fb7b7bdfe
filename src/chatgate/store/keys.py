"""A connection's labelled keys: sealed at rest, one of them active, shown only masked.

Each function runs inside the caller's transaction (`Store` opens one per call). The
first key a connection gets is its active one; after that a key becomes active only
when asked. The active key is not deleted while the connection has others (activate
another first), so a connection never loses its key by surprise.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Row, delete, insert, select, update

from chatgate.errors import mask_secret
from chatgate.store.crypto import Sealer, Unsealable, key_context
from chatgate.store.errors import (
    ConnectionNotFound,
    KeyNotFound,
    KeyUnreadable,
    StoreConflict,
    StoreInvalid,
)
from chatgate.store.rows import KeyInfo
from chatgate.store.tables import connections, keys

DEFAULT_LABEL = "default"  # the label of the api_key a connection is added with
LABEL = re.compile(r"[A-Za-z0-9_.-]{1,64}")
MAX_SECRET_CHARS = 16_384
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def check_label(label: object) -> str:
    """*label*, if it is one a URL path can carry as it is."""
    if not isinstance(label, str) or not LABEL.fullmatch(label):
        raise StoreInvalid(
            "label: 1 to 64 letters, digits, '_', '.' or '-'",
            field="label",
        )
    return label


def check_secret(secret: object, field: str = "secret") -> str:
    """*secret* without surrounding whitespace, if it can go in an HTTP header."""
    # No message here quotes the value: it is a key, or most of one.
    if not isinstance(secret, str):
        raise StoreInvalid(f"{field}: a string", field=field)
    secret = secret.strip()
    if not secret:
        raise StoreInvalid(f"{field}: empty", field=field)
    if len(secret) > MAX_SECRET_CHARS:
        raise StoreInvalid(f"{field}: longer than {MAX_SECRET_CHARS} characters", field=field)
    if _CONTROL.search(secret):
        raise StoreInvalid(f"{field}: holds a control character (a line break?)", field=field)
    return secret


def connection_id(conn: Connection, name: str) -> int:
    """The row id of the stored connection *name*."""
    found = conn.scalar(select(connections.c.id).where(connections.c.name == name))
    if found is None:
        raise ConnectionNotFound(name)
    return int(found)


def insert_key(
    conn: Connection,
    sealer: Sealer,
    *,
    owner: tuple[int, str],
    label: str,
    secret: str,
    active: bool,
    now: datetime,
) -> None:
    """Seal *secret* and store it under *label* for the connection *owner* (id, name)."""
    owner_id, owner_name = owner
    if active:
        _deactivate(conn, owner_id)
    conn.execute(
        insert(keys).values(
            connection_id=owner_id,
            label=label,
            sealed=sealer.seal(secret, key_context(owner_name, label)),
            masked=mask_secret(secret),
            active=active,
            created=now,
            updated=now,
        )
    )


def add(
    conn: Connection,
    sealer: Sealer,
    connection: str,
    label: str,
    secret: str,
    *,
    activate: bool,
    now: datetime,
) -> KeyInfo:
    """Add a key; it is active if asked, or if it is the connection's first."""
    label, secret = check_label(label), check_secret(secret)
    owner_id = connection_id(conn, connection)
    if _row(conn, owner_id, label) is not None:
        raise StoreConflict(
            f"connection {connection!r} already has a key labelled {label!r} "
            "(rotate it to change its secret)",
            field="label",
        )
    has_active = _active_row(conn, owner_id) is not None
    active = activate or not has_active
    insert_key(
        conn,
        sealer,
        owner=(owner_id, connection),
        label=label,
        secret=secret,
        active=active,
        now=now,
    )
    return _info(_existing(conn, owner_id, connection, label), connection, sealer)


def listed(conn: Connection, sealer: Sealer, connection: str) -> list[KeyInfo]:
    """The connection's keys, oldest first."""
    owner_id = connection_id(conn, connection)
    rows = conn.execute(
        select(keys).where(keys.c.connection_id == owner_id).order_by(keys.c.created, keys.c.id)
    )
    return [_info(row, connection, sealer) for row in rows]


def activate(conn: Connection, sealer: Sealer, connection: str, label: str) -> KeyInfo:
    """Make the labelled key the active one (the one before it stays, inactive)."""
    owner_id = connection_id(conn, connection)
    row = _existing(conn, owner_id, connection, label)
    if not row.active:
        _deactivate(conn, owner_id)
        conn.execute(update(keys).where(keys.c.id == row.id).values(active=True))
        row = _existing(conn, owner_id, connection, label)
    return _info(row, connection, sealer)


def remove(conn: Connection, connection: str, label: str) -> None:
    """Delete the labelled key; the active one only when it is the last."""
    owner_id = connection_id(conn, connection)
    row = _existing(conn, owner_id, connection, label)
    if row.active:
        others = conn.scalar(
            select(keys.c.label).where(keys.c.connection_id == owner_id, keys.c.id != row.id)
        )
        if others is not None:
            raise StoreConflict(
                f"key {label!r} is connection {connection!r}'s active key: activate another "
                f"(such as {others!r}) before deleting it",
                field="label",
            )
    conn.execute(delete(keys).where(keys.c.id == row.id))


def rotate(
    conn: Connection, sealer: Sealer, connection: str, label: str, secret: str, *, now: datetime
) -> KeyInfo:
    """Replace the labelled key's secret; it keeps its label and whether it is active."""
    secret = check_secret(secret)
    owner_id = connection_id(conn, connection)
    row = _existing(conn, owner_id, connection, label)
    conn.execute(
        update(keys)
        .where(keys.c.id == row.id)
        .values(
            sealed=sealer.seal(secret, key_context(connection, label)),
            masked=mask_secret(secret),
            updated=now,
        )
    )
    return _info(_existing(conn, owner_id, connection, label), connection, sealer)


def plaintext(conn: Connection, sealer: Sealer, connection: str, label: str | None) -> str:
    """The labelled key's secret, or the active key's."""
    query = (
        select(keys.c.label, keys.c.sealed)
        .join(connections, connections.c.id == keys.c.connection_id)
        .where(connections.c.name == connection)
    )
    query = query.where(keys.c.active if label is None else keys.c.label == label)
    row = conn.execute(query).first()
    if row is None:
        connection_id(conn, connection)  # names the connection if it is the one missing
        raise KeyNotFound(connection, label)
    try:
        return sealer.open(row.sealed, key_context(connection, row.label))
    except Unsealable as exc:
        raise KeyUnreadable(connection, row.label, str(exc)) from None


def active_infos(conn: Connection, sealer: Sealer, names: Mapping[int, str]) -> dict[int, KeyInfo]:
    """The active key of each connection in *names* (row id → name) that has one."""
    if not names:
        return {}
    rows = conn.execute(select(keys).where(keys.c.active, keys.c.connection_id.in_(list(names))))
    return {row.connection_id: _info(row, names[row.connection_id], sealer) for row in rows}


def replace_active(
    conn: Connection, sealer: Sealer, owner: tuple[int, str], secret: str, *, now: datetime
) -> None:
    """Give the connection's active key *secret*, or add it as `DEFAULT_LABEL` if it has
    no key (and as ``api_key`` if that label is taken by an inactive key)."""
    owner_id, name = owner
    active = _active_row(conn, owner_id)
    if active is not None:
        rotate(conn, sealer, name, active.label, secret, now=now)
        return
    label = DEFAULT_LABEL if _row(conn, owner_id, DEFAULT_LABEL) is None else "api_key"
    if _row(conn, owner_id, label) is not None:
        raise StoreConflict(
            f"connection {name!r} has no active key, and labels {DEFAULT_LABEL!r} and "
            "'api_key' are taken: activate a key, or add this one under a label of its own",
            field="api_key",
        )
    insert_key(conn, sealer, owner=owner, label=label, secret=secret, active=True, now=now)


def _deactivate(conn: Connection, owner_id: int) -> None:
    # First, in its own statement: the one-active index is checked row by row.
    conn.execute(
        update(keys).where(keys.c.connection_id == owner_id, keys.c.active).values(active=False)
    )


def _row(conn: Connection, owner_id: int, label: str) -> Row[Any] | None:
    return conn.execute(
        select(keys).where(keys.c.connection_id == owner_id, keys.c.label == label)
    ).first()


def _active_row(conn: Connection, owner_id: int) -> Row[Any] | None:
    return conn.execute(select(keys).where(keys.c.connection_id == owner_id, keys.c.active)).first()


def _existing(conn: Connection, owner_id: int, connection: str, label: str) -> Row[Any]:
    row = _row(conn, owner_id, label)
    if row is None:
        raise KeyNotFound(connection, label)
    return row


def _info(row: Row[Any], connection: str, sealer: Sealer) -> KeyInfo:
    problem = None
    try:
        # Opened to be sure, not guessed from the key id: a damaged or moved value
        # names the right master key and still does not open.
        sealer.open(row.sealed, key_context(connection, row.label))
    except Unsealable as exc:
        problem = str(exc)
    return KeyInfo(
        connection=connection,
        label=row.label,
        masked=row.masked,
        active=bool(row.active),
        created=row.created,
        updated=row.updated,
        readable=problem is None,
        problem=problem,
    )
