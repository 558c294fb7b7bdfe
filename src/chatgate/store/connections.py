"""Stored connections: the fields of a ``[[connections]]`` table, validated as a whole by
`chatgate.config.Connection` on every write, and kept as JSON.

Secrets never go into that JSON. A connection's ``api_key`` becomes its key labelled
``default`` (`chatgate.store.keys`); ``proxy_password`` is sealed into the row. Secrets
the store could only keep in the clear are refused, with the field named: an auth header
in ``headers`` (give it as ``api_key``) and credentials written into a URL.

An update is a JSON merge patch (RFC 7386): a value replaces, a table merges into the
stored table, and ``null`` removes a field (back to its default). A connection keeps its
name: the name is part of every key's associated data, and the gateway's routes.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from pydantic import ValidationError
from sqlalchemy import Connection as SqlConnection
from sqlalchemy import Row, delete, insert, select, update

from chatgate.config import OPTION_TABLES, Connection
from chatgate.errors import mask_secret
from chatgate.sources import SOURCES
from chatgate.store import keys
from chatgate.store.crypto import Sealer, Unsealable, connection_context
from chatgate.store.errors import (
    ConnectionNotFound,
    SecretUnreadable,
    StoreConflict,
    StoreError,
    StoreInvalid,
)
from chatgate.store.rows import KeyInfo, StoredConnection
from chatgate.store.tables import connections
from chatgate.store.tables import keys as key_table
from chatgate.upstream import AUTH_HEADERS

SEALED_FIELDS = ("proxy_password",)
_KEEP = object()  # a patch that does not mention api_key


def add(
    conn: SqlConnection,
    sealer: Sealer,
    fields: Mapping[str, Any],
    *,
    reserved: frozenset[str],
    now: datetime,
) -> StoredConnection:
    """Validate *fields* and store them as a new connection (its api_key as a key)."""
    data = dict(_mapping(fields, "fields"))
    api_key = data.pop("api_key", None)
    secret = None if api_key is None else keys.check_secret(api_key, field="api_key")
    model = validate(data)
    if model.name in reserved:
        raise StoreConflict(
            f"a connection named {model.name!r} is in the config file, where the store "
            "cannot change it: choose another name",
            field="name",
        )
    if _row(conn, model.name) is not None:
        raise StoreConflict(f"a connection named {model.name!r} is stored already", field="name")
    public, sealed = _split(model)
    result = conn.execute(
        insert(connections).values(
            name=model.name,
            fields=_dumps(public),
            sealed_secrets=_seal(sealer, model.name, sealed),
            secret_masks=_dumps(_masks(sealed)),
            revision=1,
            created=now,
            updated=now,
        )
    )
    if secret is not None:
        inserted = result.inserted_primary_key
        assert inserted is not None  # an INSERT of one row always has its key
        owner = (int(inserted[0]), model.name)
        keys.insert_key(
            conn, sealer, owner=owner, label=keys.DEFAULT_LABEL, secret=secret, active=True, now=now
        )
    return get(conn, sealer, model.name)


def update_fields(
    conn: SqlConnection,
    sealer: Sealer,
    name: str,
    patch: Mapping[str, Any],
    *,
    expected_revision: int | None,
    now: datetime,
) -> StoredConnection:
    """Apply the merge patch *patch*, validate the result whole, and bump the revision."""
    row = _existing(conn, name)
    if expected_revision is not None and row.revision != expected_revision:
        raise StoreConflict(
            f"connection {name!r} is at revision {row.revision}, not {expected_revision}: "
            "it was changed meanwhile",
            field="revision",
        )
    changes = dict(_mapping(patch, "patch"))
    if changes.get("name", name) != name:
        raise StoreInvalid(
            "name: a connection keeps its name (add one under the new name, then delete this one)",
            field="name",
        )
    api_key = changes.pop("api_key", _KEEP)
    if api_key is None:
        raise StoreInvalid("api_key: to remove a key, delete it by its label", field="api_key")
    secret = None if api_key is _KEEP else keys.check_secret(api_key, field="api_key")
    sealed_changes = {field: changes.pop(field) for field in SEALED_FIELDS if field in changes}
    current = json.loads(row.fields)
    merged = merge_patch(_without_nested_twins(current, changes), changes)
    old_secrets = _open_sealed(sealer, name, row.sealed_secrets)
    secrets = {**(old_secrets or {}), **sealed_changes}
    model = validate({**merged, **{k: v for k, v in secrets.items() if v is not None}})
    public, sealed = _split(model)
    if public == current and not sealed_changes and secret is None:
        return get(conn, sealer, name)
    values: dict[str, Any] = {"fields": _dumps(public), "revision": row.revision + 1}
    if sealed_changes:
        # Sealed fields the patch leaves alone stay as they are, readable or not.
        values |= {
            "sealed_secrets": _seal(sealer, name, sealed),
            "secret_masks": _dumps(_masks(sealed)),
        }
    values["updated"] = now
    conn.execute(update(connections).where(connections.c.id == row.id).values(**values))
    if secret is not None:
        keys.replace_active(conn, sealer, (row.id, name), secret, now=now)
    return get(conn, sealer, name)


def remove(conn: SqlConnection, name: str) -> None:
    """Delete the connection and its keys (its usage rows stay)."""
    row = _existing(conn, name)
    conn.execute(delete(key_table).where(key_table.c.connection_id == row.id))
    conn.execute(delete(connections).where(connections.c.id == row.id))


def get(conn: SqlConnection, sealer: Sealer, name: str) -> StoredConnection:
    """The stored connection *name*."""
    row = _existing(conn, name)
    active = keys.active_infos(conn, sealer, {row.id: row.name})
    return _stored(row, sealer, active.get(row.id))


def listed(conn: SqlConnection, sealer: Sealer) -> list[StoredConnection]:
    """Every stored connection, by name."""
    rows = list(conn.execute(select(connections).order_by(connections.c.name)))
    active = keys.active_infos(conn, sealer, {row.id: row.name for row in rows})
    return [_stored(row, sealer, active.get(row.id)) for row in rows]


def for_gateway(conn: SqlConnection, sealer: Sealer, name: str) -> Connection:
    """The connection as the gateway builds a route from: its sealed fields opened, its
    key left to `chatgate.store.Store.secret`."""
    row = _existing(conn, name)
    try:
        secrets = _opened(sealer, name, row.sealed_secrets)
    except Unsealable as exc:
        raise SecretUnreadable(name, ", ".join(SEALED_FIELDS), str(exc)) from None
    try:
        return Connection.model_validate({**json.loads(row.fields), **secrets})
    except ValidationError as exc:
        where, message = _first_error(exc)
        raise StoreError(
            f"stored connection {name!r} no longer validates ({where}: {message}); edit it"
        ) from None


def validate(fields: Mapping[str, Any]) -> Connection:
    """*fields* as a `Connection`, or `StoreInvalid` naming the first field at fault."""
    _refuse_clear_secrets(fields)
    try:
        model = Connection.model_validate(fields)
    except ValidationError as exc:
        where, message = _first_error(exc)
        raise StoreInvalid(f"{where}: {message}" if where else message, field=where) from None
    if model.source not in SOURCES:
        # The value is not quoted: a field that is not api_key may still hold a pasted key.
        raise StoreInvalid(
            f"source: not a known source (the sources: {', '.join(sorted(SOURCES))})",
            field="source",
        )
    return model


def merge_patch(target: Any, patch: Any) -> Any:
    """*target* with the JSON merge patch *patch* applied (RFC 7386)."""
    if not isinstance(patch, Mapping):
        return patch
    result = dict(target) if isinstance(target, Mapping) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def _without_nested_twins(current: dict[str, Any], changes: Mapping[str, Any]) -> dict[str, Any]:
    # A patch may give an option flat (`context_size = 8192`) that is stored in its
    # table (`text.context_size`); validation lifts the flat one into the table but lets
    # the table's own value win, so the stored one is taken out first.
    out = dict(current)
    for key in changes:
        if key in Connection.model_fields:
            continue
        for table, (_, options) in OPTION_TABLES.items():
            nested = out.get(table)
            if key in options.model_fields and isinstance(nested, dict) and key in nested:
                out[table] = {k: v for k, v in nested.items() if k != key}
    return out


def _refuse_clear_secrets(fields: Mapping[str, Any]) -> None:
    headers = fields.get("headers")
    for header in headers if isinstance(headers, Mapping) else ():
        if isinstance(header, str) and header.lower() in AUTH_HEADERS:
            raise StoreInvalid(
                f"headers.{header}: the store keeps keys only encrypted: give this one as "
                "api_key (the source sends it in the right header)",
                field=f"headers.{header}",
            )
    deployments = fields.get("deployments")
    urls = [("base_url", fields.get("base_url"))]
    if isinstance(deployments, Mapping):
        urls += [(f"deployments.{key}", value) for key, value in deployments.items()]
    for where, url in urls:
        if isinstance(url, str) and _has_userinfo(url):
            raise StoreInvalid(
                f"{where}: credentials in a URL would be stored in the clear: give the key "
                "as api_key and a proxy's password as proxy_password, which are encrypted",
                field=where,
            )


def _has_userinfo(url: str) -> bool:
    try:
        parts = urlsplit(url)
        return bool(parts.username or parts.password)
    except ValueError:
        return False  # left to the validation, which names what is wrong with it


def _first_error(exc: ValidationError) -> tuple[str | None, str]:
    # Never str(exc): it quotes the input, which may be a key given in the wrong field.
    first = exc.errors(include_url=False, include_input=False, include_context=False)[0]
    return ".".join(str(part) for part in first["loc"]) or None, first["msg"]


def _split(model: Connection) -> tuple[dict[str, Any], dict[str, str]]:
    public = model.model_dump(mode="json", exclude_unset=True)
    public.pop("api_key", None)
    sealed = {field: public.pop(field) for field in SEALED_FIELDS if field in public}
    return public, {k: v for k, v in sealed.items() if isinstance(v, str) and v}


def _masks(sealed: Mapping[str, str]) -> dict[str, str]:
    return {field: mask_secret(value) for field, value in sealed.items()}


def _seal(sealer: Sealer, name: str, sealed: Mapping[str, str]) -> bytes | None:
    return sealer.seal(_dumps(sealed), connection_context(name)) if sealed else None


def _opened(sealer: Sealer, name: str, value: bytes | None) -> dict[str, str]:
    """The sealed fields of the connection *name* ({} when it has none)."""
    if value is None:
        return {}
    opened = json.loads(sealer.open(value, connection_context(name)))
    return {k: v for k, v in opened.items() if isinstance(v, str)}


def _open_sealed(sealer: Sealer, name: str, value: bytes | None) -> dict[str, str] | None:
    """The sealed fields, or None when they do not open."""
    try:
        return _opened(sealer, name, value)
    except Unsealable:
        return None


def _stored(row: Row[Any], sealer: Sealer, active_key: KeyInfo | None) -> StoredConnection:
    return StoredConnection(
        name=row.name,
        fields=json.loads(row.fields),
        revision=row.revision,
        created=row.created,
        updated=row.updated,
        secret_masks=json.loads(row.secret_masks),
        secrets_readable=_open_sealed(sealer, row.name, row.sealed_secrets) is not None,
        active_key=active_key,
    )


def _mapping(value: object, what: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping) or not all(isinstance(k, str) for k in value):
        raise StoreInvalid(f"{what}: a table of fields (a JSON object)", field=None)
    return value


def _row(conn: SqlConnection, name: str) -> Row[Any] | None:
    return conn.execute(select(connections).where(connections.c.name == name)).first()


def _existing(conn: SqlConnection, name: str) -> Row[Any]:
    row = _row(conn, name)
    if row is None:
        raise ConnectionNotFound(name)
    return row


def _dumps(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
