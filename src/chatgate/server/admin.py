"""Connection operations over HTTP: list, models, status, test, preview.

Answers are plain JSON (not the OpenAI shape); errors keep the OpenAI error object so
one client-side handler reads both; the caller was authenticated at the edge. A base
URL may carry a password in its userinfo, so every answer that can show one (a URL, or
a note quoting it) goes through `masked`.
"""

from __future__ import annotations

from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

from chatgate.errors import InvalidRequestError
from chatgate.gateway import Gateway
from chatgate.server.dispatch import read_body
from chatgate.server.responses import dumps
from chatgate.urls import mask_userinfo
from chatgate.validation import parse_chat_request


def masked(value: Any) -> Any:
    """*value* with every URL password in its strings masked, however deep."""
    if isinstance(value, str):
        return mask_userinfo(value)
    if isinstance(value, dict):
        return {key: masked(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [masked(item) for item in value]
    return value


def _json(value: object, status: int = 200) -> Response:
    return Response(dumps(value), status_code=status, media_type="application/json")


def _gateway(request: Request) -> Gateway:
    # The caller was authenticated at the edge (`chatgate.server.app.Edge`).
    gateway: Gateway = request.app.state.gateway
    return gateway


async def list_connections(request: Request) -> Response:
    """``GET /api/connections``: every connection, keys masked."""
    return _json({"connections": masked(_gateway(request).connections())})


async def connection_models(request: Request) -> Response:
    """``GET /api/connections/{name}/models``: the upstream list merged with manual ids."""
    backend = _gateway(request).backend(request.path_params["name"])
    refresh = request.query_params.get("refresh") in ("1", "true")
    return _json(masked(await backend.list_models(refresh=refresh)))


async def connection_status(request: Request) -> Response:
    """``GET /api/connections/{name}/status``: a free probe."""
    backend = _gateway(request).backend(request.path_params["name"])
    return _json(masked(await backend.check_status()))


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
    return _json(await gateway.send_test(name, model))


async def preview(request: Request) -> Response:
    """``POST /api/preview``: the upstream request a chat request would produce."""
    gateway = _gateway(request)
    raw = await read_body(request, request.app.state.max_body_bytes)
    shown = await gateway.preview(parse_chat_request(raw))
    # Only the URL: the body is the user's own text, shown as it will be sent.
    if isinstance(shown.get("url"), str):
        shown["url"] = mask_userinfo(shown["url"])
    return _json(shown)
