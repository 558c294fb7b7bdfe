"""The admin API of gateway keys (``/api/keys``, docs/admin-api.md), and the parts of
the server they need: the key table held in memory for the edge, and the limiter.

A key is answered once, by ``POST /api/keys``; afterwards only its prefix id shows.
After a change this process reads the key table again at once, so the edge refuses a
revoked key before the answer is sent; other instances read it within a second.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from starlette.datastructures import State
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from chatgate.errors import InvalidRequestError
from chatgate.gateway import Gateway
from chatgate.limits import LocalLimiter, TokenCounter
from chatgate.limits_redis import RedisLimiter
from chatgate.server.admin import _json, _redacting
from chatgate.server.admin_store import _body, _managed
from chatgate.server.key_snapshot import KeyRefresher, KeySnapshot
from chatgate.server.managed import ManagedConnections
from chatgate.server.responses import dumps
from chatgate.store.gateway_keys import GatewayKey

FIELDS = ("label", "role", "connections", "models", "rpm", "tpm", "budget_tokens")


def install(state: State, gateway: Gateway, snapshot: KeySnapshot) -> None:
    """Give the app its limiter (Redis when ``redis_url`` is set) and the key table."""
    url = gateway.settings.redis_url
    state.limiter = RedisLimiter(url) if url else LocalLimiter()
    state.keys = snapshot
    state.key_refresher = None
    gateway.observers.append(TokenCounter(state.limiter))
    # The server tells its observers of every attempt: its plain requests count towards
    # cool-down too (docs/resilience.md).
    gateway.resilience.learn(gateway.observers)


async def start(state: State, managed: ManagedConnections | None) -> None:
    """Read the key table before the first request, then keep it fresh (with a store)."""
    if managed is not None:
        state.key_refresher = KeyRefresher(managed, state.keys)
        await state.key_refresher.start()


async def stop(state: State) -> None:
    """Stop refreshing the key table, and close the limiter's connection."""
    if state.key_refresher is not None:
        await state.key_refresher.stop()
    if isinstance(state.limiter, RedisLimiter):
        await state.limiter.aclose()


def shown(key: GatewayKey, usage: dict[str, Any] | None = None) -> dict[str, Any]:
    """A key as the admin API shows it: never the key, its prefix id only."""
    return {
        "label": key.label,
        "role": key.role,
        "masked": key.masked,
        "connections": list(key.connections),
        "models": list(key.models),
        "rpm": key.rpm,
        "tpm": key.tpm,
        "budget_tokens": key.budget_tokens,
        "expires_at": _when(key.expires_at),
        "revoked_at": _when(key.revoked_at),
        "created_at": key.created.isoformat(),
        "usage": usage or {"period": month_start().strftime("%Y-%m"), "requests": 0, "tokens": 0},
    }


def _when(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment is not None else None


def month_start(now: datetime | None = None) -> datetime:
    """The start of the budget period: this calendar month, UTC."""
    now = now or datetime.now(UTC)
    return now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)


def parse_expiry(value: object) -> datetime | None:
    """``expires_at`` as a timezone-aware time (ISO 8601; UTC when it names no zone)."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidRequestError("'expires_at' must be an ISO 8601 time", param="expires_at")
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise InvalidRequestError(
            "'expires_at' must be an ISO 8601 time such as 2027-01-01T00:00:00Z",
            param="expires_at",
        ) from None
    moment = moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
    try:
        return moment.astimezone(UTC)
    except OverflowError:  # year 1 in a zone east of UTC, say
        raise InvalidRequestError("'expires_at' is out of range", param="expires_at") from None


async def _refreshed(request: Request) -> None:
    refresher: KeyRefresher | None = request.app.state.key_refresher
    if refresher is not None:
        await refresher.refresh()


@_redacting
async def create_key(request: Request) -> Response:
    """``POST /api/keys``: a new gateway key, answered once."""
    managed = _managed(request)
    body = await _body(request)
    unknown = sorted(set(body) - {*FIELDS, "expires_at"})
    if unknown:
        raise InvalidRequestError(f"unknown field '{unknown[0]}'", param=unknown[0])
    fields: dict[str, Any] = {name: body[name] for name in FIELDS if name in body}
    fields["expires_at"] = parse_expiry(body.get("expires_at"))
    if "label" not in fields:
        raise InvalidRequestError("'label' is required", param="label")
    key, secret = await managed.call(lambda: managed.store.create_gateway_key(**fields))
    await _refreshed(request)
    # Built here, not by `_json`: the one answer that carries the key, as it is.
    answer = {**shown(key), "key": secret}
    return Response(dumps(answer), status_code=201, media_type="application/json")


@_redacting
async def list_keys(request: Request) -> Response:
    """``GET /api/keys``: every key, masked, with this month's usage from the log."""
    managed = _managed(request)
    await managed.call(managed.usage.writer.flush, 2.0)
    keys = await managed.call(managed.store.list_gateway_keys)
    since = month_start()
    groups = await managed.call(managed.store.usage, None, since, None, "caller")
    period = since.strftime("%Y-%m")
    used = {
        g.key.get("caller"): {
            "period": period,
            "requests": g.requests,
            "tokens": g.tokens_in + g.tokens_out,
        }
        for g in groups
    }
    return _json(request, {"keys": [shown(k, used.get(k.label)) for k in keys]})


@_redacting
async def revoke_key(request: Request) -> Response:
    """``DELETE /api/keys/{label}``: the key revoked, refused from now on."""
    managed = _managed(request)
    label = request.path_params["label"]
    key = await managed.call(managed.store.revoke_gateway_key, label)
    await _refreshed(request)
    return _json(request, shown(key))


def routes() -> list[Route]:
    """The routes of ``/api/keys``."""
    return [
        Route("/api/keys", list_keys, methods=["GET"]),
        Route("/api/keys", create_key, methods=["POST"]),
        Route("/api/keys/{label}", revoke_key, methods=["DELETE"]),
    ]
