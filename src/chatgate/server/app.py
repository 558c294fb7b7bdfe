"""The ASGI application: routes, start-up, the edge checks and the error handlers.

Every error is JSON in its front door's shape: ``{"detail": ...}`` under ``/v4``
(FastAPI's, which SGP clients parse), the OpenAI error object everywhere else.
"""

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
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from chatgate.errors import ChatgateError, NotFoundError, redact
from chatgate.gateway import Gateway
from chatgate.server import admin
from chatgate.server.auth import ADMITTED, Admission, EdgeGuard, KeyChecker
from chatgate.server.doors import openai, sgp
from chatgate.server.responses import dumps
from chatgate.urls import mask_userinfo

log = logging.getLogger("chatgate.server")


def is_v4(path: str) -> bool:
    """Whether *path* belongs to the SGP v4 front door."""
    return path == "/v4" or path.startswith("/v4/")


def _json_error(exc: ChatgateError, path: str) -> Response:
    body = sgp.sgp_error(exc) if is_v4(path) else exc.to_dict()
    return Response(
        dumps(body), status_code=exc.status, headers=exc.headers, media_type="application/json"
    )


async def healthz(request: Request) -> Response:
    """``GET /healthz``: up; with a key (or without keys configured), each connection too."""
    state = request.app.state
    keys: KeyChecker = state.keys
    # Load balancers probe without a key; the details (URLs, engine state) are for users.
    if keys.enabled and not keys.presented(request):
        return Response(dumps({"status": "ok"}), media_type="application/json")
    keys.check(request)  # a wrong key is refused, so a misconfigured monitor notices
    gateway: Gateway = state.gateway
    body = {"status": "ok", "connections": admin.masked(gateway.health())}
    return Response(dumps(body), media_type="application/json")


def create_app(gateway: Gateway, *, progress: Callable[[str], None] | None = None) -> ASGIApp:
    """The server for *gateway*; the model loads at start-up, before the first request."""
    settings = gateway.settings
    import os

    keys = settings.server.resolved_keys(os.environ)
    secrets = settings.secrets()
    guard = EdgeGuard(
        keyed=bool(keys),
        allowed_hosts=settings.server.allowed_hosts,
        cors_origins=settings.server.cors_origins,
    )

    async def on_chatgate_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, ChatgateError)
        return _json_error(exc, request.url.path)

    async def on_http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        path = request.url.path
        headers = dict(exc.headers or {})  # keeps a 405's Allow
        if is_v4(path):
            body = dumps({"detail": exc.detail})
            return Response(body, exc.status_code, headers, media_type="application/json")
        if exc.status_code == 404:
            return _json_error(NotFoundError(f"no such route: {request.method} {path}"), path)
        error = ChatgateError(str(exc.detail), headers=headers)
        error.status = exc.status_code  # type: ignore[misc]
        error.error_type = "invalid_request_error"  # type: ignore[misc]
        return _json_error(error, path)

    async def on_unexpected(request: Request, exc: Exception) -> Response:
        shown = mask_userinfo(redact(repr(exc), secrets))  # a repr may quote a base URL
        log.error("unexpected error on %s: %s", request.url.path, shown)
        error = ChatgateError("internal error in chatgate; see the server log")
        return _json_error(error, request.url.path)

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
    return FastPath(app, on_chatgate_error, on_unexpected, guard)


def _adding(send: Send, headers: tuple[tuple[bytes, bytes], ...]) -> Send:
    """*send*, with *headers* added to the response's start."""

    async def wrapped(message: Message) -> None:
        if message["type"] == "http.response.start":
            message = {**message, "headers": [*message.get("headers", ()), *headers]}
        await send(message)

    return wrapped


class FastPath:
    """Runs the edge checks on every request, then sends ``POST /v1/chat/completions``
    straight to its handler.

    Everything else goes through Starlette. The chat route is the one that carries the
    load, and skipping the router and middleware layers saves a measurable part of
    the gateway's added latency (``docs/performance.md``). The checks live here, not in
    a Starlette middleware, so the fast path cannot skip them.
    """

    def __init__(
        self,
        app: Starlette,
        on_error: Callable[[Request, Exception], Awaitable[Response]],
        on_unexpected: Callable[[Request, Exception], Awaitable[Response]],
        guard: EdgeGuard,
    ) -> None:
        self.app = app
        self.state = app.state
        self.on_error = on_error
        self.on_unexpected = on_unexpected
        self.guard = guard

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        admission = self.guard.admit(scope)
        if admission is not ADMITTED:
            if admission.error is not None or admission.preflight:
                await _refusal(admission, scope["path"])(scope, receive, send)
                return
            send = _adding(send, admission.headers)
        if scope["path"] != "/v1/chat/completions" or scope["method"] != "POST":
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


def _refusal(admission: Admission, path: str) -> Response:
    """The answer the edge gives itself: an error, or a CORS preflight's 204."""
    if admission.error is None:
        response = Response(status_code=204)
    else:
        response = _json_error(admission.error, path)
    response.raw_headers.extend(admission.headers)
    return response
