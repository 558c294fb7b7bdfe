"""Connection operations over HTTP: list, models, status, test, preview.

Answers are plain JSON (not the OpenAI shape); errors keep the OpenAI error object so
one client-side handler reads both; the caller was authenticated at the edge. A base
URL may carry a password in its userinfo, and an upstream's answer (a status error, a
test's reply) may quote a key, so every answer goes through `masked` with the secrets
in use, and every error's message through `_redacting` before the app's handler.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

from chatgate.errors import ChatgateError, InvalidRequestError
from chatgate.gateway import Gateway
from chatgate.redaction import redact
from chatgate.server.dispatch import live_secrets, read_body
from chatgate.server.responses import dumps
from chatgate.urls import mask_userinfo
from chatgate.validation import parse_chat_request

# The admin API's paths: with admin keys configured, only they may call these.
ADMIN_PREFIXES = (
    "/api/connections",
    "/api/usage",
    "/api/sources",
    "/api/preview",
    "/api/keys",
)


def masked(value: Any, secrets: list[str] | None = None) -> Any:
    """*value* with every URL password and every secret in its strings masked, however
    deep."""
    if isinstance(value, str):
        return mask_userinfo(redact(value, secrets or []))
    if isinstance(value, dict):
        return {key: masked(item, secrets) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [masked(item, secrets) for item in value]
    return value


Route = Callable[[Request], Awaitable[Response]]


def _json(request: Request, value: object, status: int = 200) -> Response:
    shown = masked(value, live_secrets(_gateway(request)))
    return Response(dumps(shown), status_code=status, media_type="application/json")


def _redacting(route: Route) -> Route:
    """*route* whose errors are redacted before the app's handler shows them: an
    upstream's refusal may quote a key in a form only the edge knows (a URL's userinfo
    as Basic credentials)."""

    @functools.wraps(route)
    async def wrapped(request: Request) -> Response:
        try:
            return await route(request)
        except ChatgateError as exc:
            exc.message = mask_userinfo(redact(exc.message, live_secrets(_gateway(request))))
            raise

    return wrapped


def _gateway(request: Request) -> Gateway:
    # The caller was authenticated at the edge (`chatgate.server.app.Edge`).
    gateway: Gateway = request.app.state.gateway
    return gateway


@_redacting
async def connection_models(request: Request) -> Response:
    """``GET /api/connections/{name}/models``: the upstream list merged with manual ids."""
    backend = _gateway(request).backend(request.path_params["name"])
    refresh = request.query_params.get("refresh") in ("1", "true")
    return _json(request, await backend.list_models(refresh=refresh))


@_redacting
async def connection_status(request: Request) -> Response:
    """``GET /api/connections/{name}/status``: a free probe."""
    backend = _gateway(request).backend(request.path_params["name"])
    return _json(request, await backend.check_status())


@_redacting
async def connection_test(request: Request) -> Response:
    """``POST /api/connections/{name}/test``: a real minimal request (billed upstream)."""
    gateway = _gateway(request)
    name = request.path_params["name"]
    gateway.backend(name)  # an unknown name is a 404 before the body is read
    model = request.query_params.get("model")
    raw = await read_body(request, request.app.state.max_body_bytes)
    if raw.strip():
        try:
            body = orjson.loads(raw)
        except orjson.JSONDecodeError:
            raise InvalidRequestError("the body is not valid JSON", code="invalid_json") from None
        if isinstance(body, dict) and isinstance(body.get("model"), str):
            model = body["model"]
    return _json(request, await gateway.send_test(name, model))


@_redacting
async def preview(request: Request) -> Response:
    """``POST /api/preview``: the upstream request a chat request would produce."""
    gateway = _gateway(request)
    raw = await read_body(request, request.app.state.max_body_bytes)
    shown = await gateway.preview(parse_chat_request(raw))
    # The backend masked the headers; the body is the user's own text, where only a
    # secret of ours (pasted, or put in extra_body) is masked.
    return _json(request, shown)
