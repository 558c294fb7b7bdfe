"""The admin API over the store: connections added, edited and deleted live, their
labelled keys, the usage log, and the source catalogue (``docs/admin-api.md``).

Every store call runs on the store's own thread (`ManagedConnections.call`); after a
change the gateway serves the connection as the store now has it, before the answer is
sent. Keys are never returned: a key appears masked, or not at all.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from chatgate.connections import describe_connection
from chatgate.errors import InvalidRequestError
from chatgate.gateway import Gateway
from chatgate.prompt.instruct import PRESET_NAMES
from chatgate.server.admin import _json, _redacting
from chatgate.server.dispatch import read_body
from chatgate.server.managed import ManagedConnections
from chatgate.source_notes import note_for
from chatgate.sources import SOURCES, TEXT_ADAPTERS, get_source
from chatgate.store import GROUP_NAMES, KeyInfo, StoreUnavailable


def _managed(request: Request) -> ManagedConnections:
    managed: ManagedConnections | None = request.app.state.managed
    if managed is None:
        raise StoreUnavailable(
            "the store is not open (see the server log for why): connections from the "
            "config file still serve, but none can be added or changed"
        )
    return managed


async def _body(request: Request) -> dict[str, Any]:
    raw = await read_body(request, request.app.state.max_body_bytes)
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise InvalidRequestError("the body is not valid JSON", code="invalid_json") from None
    if not isinstance(body, dict):
        raise InvalidRequestError("the body must be a JSON object", code="invalid_type")
    return body


def _text(body: dict[str, Any], name: str, *, required: bool = True) -> str | None:
    value = body.get(name)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value.strip():
        raise InvalidRequestError(f"'{name}' must be a non-empty string", param=name)
    return value


def _key(info: KeyInfo) -> dict[str, Any]:
    return {
        "label": info.label,
        "masked": info.masked,
        "active": info.active,
        "readable": info.readable,
        "problem": info.problem,
        "created_at": info.created.isoformat(),
        "updated_at": info.updated.isoformat(),
    }


def _api(source: str) -> str:
    found = get_source(source)
    return "text" if found is not None and found.adapter in TEXT_ADAPTERS else "chat"


async def _described(request: Request, name: str) -> dict[str, Any]:
    """One connection as the admin API shows it: config or store, keys masked."""
    gateway: Gateway = request.app.state.gateway
    backend = gateway.backend(name)
    shown = describe_connection(backend)
    shown["api"] = _api(backend.connection.source)
    shown["text"] = backend.connection.text.model_dump(exclude_defaults=True)
    if name in gateway.configured:
        return {**shown, "origin": "config", "read_only": True, "keys": []}
    managed = _managed(request)
    keys = await managed.call(managed.store.list_keys, name)
    shown["unavailable"] = gateway.unavailable.get(name)
    return {**shown, "origin": "store", "read_only": False, "keys": [_key(k) for k in keys]}


@_redacting
async def list_connections(request: Request) -> Response:
    """``GET /api/connections``: every connection, the config file's and the store's."""
    gateway: Gateway = request.app.state.gateway
    shown = [await _described(request, name) for name in gateway.backends]
    return _json(request, {"connections": shown})


@_redacting
async def add_connection(request: Request) -> Response:
    """``POST /api/connections``: a connection added to the store, served at once."""
    managed = _managed(request)
    body = await _body(request)
    stored = await managed.call(managed.store.add_connection, body)
    await managed.refresh(stored.name)
    return _json(request, await _described(request, stored.name), 201)


@_redacting
async def get_connection(request: Request) -> Response:
    """``GET /api/connections/{name}``."""
    return _json(request, await _described(request, request.path_params["name"]))


@_redacting
async def update_connection(request: Request) -> Response:
    """``PATCH /api/connections/{name}``: some fields changed, the whole validated."""
    managed, name = _managed(request), request.path_params["name"]
    _writable(request, name)
    body = await _body(request)
    await managed.call(managed.store.update_connection, name, body)
    await managed.refresh(name)
    return _json(request, await _described(request, name))


@_redacting
async def delete_connection(request: Request) -> Response:
    """``DELETE /api/connections/{name}``: gone from the store and from routing."""
    managed, name = _managed(request), request.path_params["name"]
    _writable(request, name)
    await managed.call(managed.store.delete_connection, name)
    managed.forget(name)
    return Response(status_code=204)


def _writable(request: Request, name: str) -> None:
    """A 409 for a config-file connection (read-only here), a 404 for none."""
    gateway: Gateway = request.app.state.gateway
    if name in gateway.configured:
        gateway.put_connection(gateway.backend(name).connection)  # raises the 409


@_redacting
async def add_key(request: Request) -> Response:
    """``POST /api/connections/{name}/keys``: a labelled key added."""
    managed, name = _managed(request), request.path_params["name"]
    _writable(request, name)
    body = await _body(request)
    label, secret = _text(body, "label"), _text(body, "key")
    activate = body.get("activate", False)
    if not isinstance(activate, bool):
        raise InvalidRequestError("'activate' must be true or false", param="activate")
    info = await managed.call(managed.store.add_key, name, label, secret, activate=activate)
    await managed.refresh(name)
    return _json(request, _key(info), 201)


@_redacting
async def rotate_key(request: Request) -> Response:
    """``PUT /api/connections/{name}/keys/{label}``: the label's secret replaced."""
    managed, name, label = _managed(request), *_names(request)
    _writable(request, name)
    secret = _text(await _body(request), "key")
    info = await managed.call(managed.store.rotate_key, name, label, secret)
    await managed.refresh(name)
    return _json(request, _key(info))


@_redacting
async def activate_key(request: Request) -> Response:
    """``POST /api/connections/{name}/keys/{label}/activate``."""
    managed, name, label = _managed(request), *_names(request)
    _writable(request, name)
    info = await managed.call(managed.store.activate_key, name, label)
    await managed.refresh(name)
    return _json(request, _key(info))


@_redacting
async def delete_key(request: Request) -> Response:
    """``DELETE /api/connections/{name}/keys/{label}``."""
    managed, name, label = _managed(request), *_names(request)
    _writable(request, name)
    keys = await managed.call(managed.store.list_keys, name)
    doomed = next((k for k in keys if k.label == label), None)
    if doomed is not None and doomed.active and len(keys) > 1:
        raise InvalidRequestError(
            f"'{label}' is the active key: activate another key before deleting it",
            param="label",
            code="active_key",
        )
    await managed.call(managed.store.delete_key, name, label)
    await managed.refresh(name)
    return Response(status_code=204)


def _names(request: Request) -> tuple[str, str]:
    return request.path_params["name"], request.path_params["label"]


def _moment(request: Request, name: str) -> datetime | None:
    value = request.query_params.get(name)
    if not value:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise InvalidRequestError(
            f"'{name}' must be an ISO 8601 time such as 2026-12-01 or 2026-12-01T10:00:00Z",
            param=name,
        ) from None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


@_redacting
async def usage(request: Request) -> Response:
    """``GET /api/usage``: requests, errors, tokens and latency, grouped."""
    managed = _managed(request)
    params = request.query_params
    group_by = [g.strip() for g in (params.get("group_by") or "").split(",") if g.strip()]
    for name in group_by:
        if name not in GROUP_NAMES:
            raise InvalidRequestError(
                f"group_by: '{name}' is not one of {', '.join(GROUP_NAMES)}", param="group_by"
            )
    since, until = _moment(request, "since"), _moment(request, "until")
    connection = params.get("connection") or None
    # Rows queued a moment ago count: a client that just made a request sees it.
    await managed.call(managed.usage.writer.flush, 2.0)
    store = managed.store
    groups = await managed.call(store.usage, connection, since, until, group_by or None)
    total = await managed.call(store.usage, connection, since, until, None)
    return _json(request, {"groups": [_group(g) for g in groups], "total": _group(total[0])})


def _group(group: Any) -> dict[str, Any]:
    key = {k: v.isoformat() if isinstance(v, datetime) else v for k, v in group.key.items()}
    return {
        **key,
        "requests": group.requests,
        "errors": group.errors,
        "streamed": group.streamed,
        "tokens_in": group.tokens_in,
        "tokens_out": group.tokens_out,
        "latency_ms_avg": group.latency_avg_ms,
        "latency_ms_p50": group.latency_p50_ms,
        "latency_ms_p95": group.latency_p95_ms,
    }


async def sources(request: Request) -> Response:
    """``GET /api/sources``: the catalogue a connection is made from."""
    out = []
    for source in SOURCES.values():
        if source.adapter == "local":
            continue  # the embedded engine is configured in the file only
        note = note_for(source.id)
        out.append(
            {
                "id": source.id,
                "name": source.display_name,
                "api": _api(source.id),
                "default_base_url": source.default_base_url,
                "key_required": source.key_required,
                "reverse_proxy": source.reverse_proxy,
                "models": source.models,
                "post_processing": source.post_processing,
                "post_processing_forced": source.post_processing_forced,
                "notes": {"key_url": note.key_url, "hint": note.hint} if note else None,
            }
        )
    return _json(request, {"sources": out, "instruct_templates": list(PRESET_NAMES)})


def routes() -> list[Route]:
    """The admin API's store routes."""
    named = "/api/connections/{name}"
    key = named + "/keys/{label}"
    return [
        Route("/api/sources", sources, methods=["GET"]),
        Route("/api/connections", list_connections, methods=["GET"]),
        Route("/api/connections", add_connection, methods=["POST"]),
        Route(named, get_connection, methods=["GET"]),
        Route(named, update_connection, methods=["PATCH"]),
        Route(named, delete_connection, methods=["DELETE"]),
        Route(named + "/keys", add_key, methods=["POST"]),
        Route(key, rotate_key, methods=["PUT"]),
        Route(key, delete_key, methods=["DELETE"]),
        Route(key + "/activate", activate_key, methods=["POST"]),
        Route("/api/usage", usage, methods=["GET"]),
    ]
