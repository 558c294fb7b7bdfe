"""The ASGI application: routes, start-up and the error handlers."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from chatgate.errors import ChatgateError, NotFoundError, redact
from chatgate.gateway import Gateway
from chatgate.server import admin, openai, sgp
from chatgate.server.auth import KeyChecker
from chatgate.server.responses import dumps

log = logging.getLogger("chatgate.server")


def _json_error(exc: ChatgateError) -> Response:
    return Response(
        dumps(exc.to_dict()),
        status_code=exc.status,
        headers=exc.headers,
        media_type="application/json",
    )


async def healthz(request: Request) -> Response:
    """``GET /healthz``: up, and how each connection is doing."""
    gateway: Gateway = request.app.state.gateway
    return Response(
        dumps({"status": "ok", "connections": gateway.health()}), media_type="application/json"
    )


def create_app(gateway: Gateway, *, progress: Callable[[str], None] | None = None) -> ASGIApp:
    """The server for *gateway*; the model loads at start-up, before the first request."""
    settings = gateway.settings
    import os

    keys = settings.server.resolved_keys(os.environ)
    secrets = settings.secrets()

    async def on_chatgate_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, ChatgateError)
        return _json_error(exc)

    async def on_http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        if exc.status_code == 404:
            return _json_error(NotFoundError(f"no such route: {request.method} {request.url.path}"))
        error = ChatgateError(str(exc.detail))
        error.status = exc.status_code  # type: ignore[misc]
        error.error_type = "invalid_request_error"  # type: ignore[misc]
        return _json_error(error)

    async def on_unexpected(request: Request, exc: Exception) -> Response:
        log.error("unexpected error on %s: %s", request.url.path, redact(repr(exc), secrets))
        return _json_error(ChatgateError("internal error in chatgate; see the server log"))

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await gateway.start(progress)
        try:
            yield
        finally:
            await gateway.aclose()

    app = Starlette(
        routes=[
            Route("/v1/chat/completions", openai.chat_completions, methods=["POST"]),
            Route("/v1/models", openai.list_models, methods=["GET"]),
            Route("/v4/beta/chat/completions", sgp.chat_completions, methods=["POST"]),
            Route("/v1/models/{model_id:path}", openai.get_model, methods=["GET"]),
            Route("/healthz", healthz, methods=["GET"]),
            Route("/api/connections", admin.list_connections, methods=["GET"]),
            Route("/api/connections/{name}/models", admin.connection_models, methods=["GET"]),
            Route("/api/connections/{name}/status", admin.connection_status, methods=["GET"]),
            Route("/api/connections/{name}/test", admin.connection_test, methods=["POST"]),
            Route("/api/preview", admin.preview, methods=["POST"]),
        ],
        exception_handlers={
            ChatgateError: on_chatgate_error,
            HTTPException: on_http_error,
            Exception: on_unexpected,
        },
        lifespan=lifespan,
    )
    app.state.gateway = gateway
    app.state.keys = KeyChecker(keys)
    app.state.secrets = secrets
    app.state.max_body_bytes = settings.server.max_body_bytes
    app.state.started = int(time.time())
    return FastPath(app, on_chatgate_error, on_unexpected)


class FastPath:
    """Sends ``POST /v1/chat/completions`` straight to its handler.

    Everything else goes through Starlette. The chat route is the one that carries the
    load, and skipping the router and middleware layers saves a measurable part of
    the gateway's added latency (``docs/performance.md``).
    """

    def __init__(
        self,
        app: Starlette,
        on_error: Callable[[Request, Exception], Awaitable[Response]],
        on_unexpected: Callable[[Request, Exception], Awaitable[Response]],
    ) -> None:
        self.app = app
        self.state = app.state
        self.on_error = on_error
        self.on_unexpected = on_unexpected

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] != "http"
            or scope["path"] != "/v1/chat/completions"
            or scope["method"] != "POST"
        ):
            await self.app(scope, receive, send)
            return
        scope["app"] = self.app
        request = Request(scope, receive)
        try:
            response = await openai.chat_completions(request)
        except ChatgateError as exc:
            response = await self.on_error(request, exc)
        except Exception as exc:
            response = await self.on_unexpected(request, exc)
        await response(scope, receive, send)
