"""The ASGI application: the edge, the routes, start-up and the error handlers.

Every request passes `Edge` first: the Host, CORS and content-type checks, then the one
authentication step, which gives the caller's identity. A door's chat route then goes
straight to `chatgate.server.dispatch` (the same code for every door); every other
route goes through Starlette's router. Every error is JSON in its front door's shape:
``{"detail": ...}`` under ``/v4`` (FastAPI's, which SGP clients parse), the OpenAI
error object everywhere else.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from chatgate.errors import ChatgateError, NotFoundError
from chatgate.gateway import Gateway
from chatgate.server import admin, admin_keys, admin_store, metrics_route, openapi, web
from chatgate.server.auth import ADMITTED, Admission, Authenticator, EdgeGuard, require_admin
from chatgate.server.dispatch import as_error, error_response, handle
from chatgate.server.doors import anthropic, completions, kobold, llamacpp, ollama, openai, sgp
from chatgate.server.doors.base import Door, DoorEntry
from chatgate.server.key_snapshot import KeySnapshot
from chatgate.server.managed import ManagedConnections
from chatgate.server.responses import dumps

log = logging.getLogger("chatgate.server")
ENTRIES: tuple[DoorEntry, ...] = tuple(
    module.ENTRY for module in (openai, sgp, anthropic, completions, ollama, kobold, llamacpp)
)
OPENAI_DOOR = openai.DOOR
# The chat route of each door: (method, path) → door.
CHAT_ROUTES: dict[tuple[str, str], Door] = {
    route: door for entry in ENTRIES for route, door in entry.chat.items()
}
# Which door's error shape a path answers in: its exact path, else its longest prefix.
_EXACT: dict[str, Door] = {p: e.errors for e in ENTRIES for p in e.paths if not p.endswith("/")}
_EXACT.update({path: door for (_, path), door in CHAT_ROUTES.items()})
_PREFIXES: tuple[tuple[str, Door], ...] = tuple(
    sorted(
        ((p, e.errors) for e in ENTRIES for p in e.paths if p.endswith("/")),
        key=lambda item: -len(item[0]),
    )
)
# Every POST route of a door takes JSON (the content-type check in `EdgeGuard`).
JSON_POSTS = frozenset(
    {path for method, path in CHAT_ROUTES if method == "POST"}
    | {
        route.path
        for entry in ENTRIES
        for route in entry.routes
        if isinstance(route, Route) and "POST" in (route.methods or ())
    }
)


# Answered without a key (with less: /healthz), or the page that asks for one.
KEYLESS = frozenset({"/healthz", "/", "/health"})  # /health: llama-server's, public there too
KEYLESS_PREFIXES = ("/static/",)


def door_for(path: str) -> Door:
    """The door whose error shape *path* answers in."""
    door = _EXACT.get(path)
    if door is not None:
        return door
    for prefix, door in _PREFIXES:
        if path.startswith(prefix):
            return door
    return OPENAI_DOOR


def _collapsed(scope: Scope) -> Scope:
    """*scope* with repeated slashes in its path made one (``/v1//chat/completions``, as
    a base URL typed with a trailing slash gives)."""
    path = _SLASHES.sub("/", scope["path"])
    return {**scope, "path": path, "raw_path": path.encode("latin-1", "replace")}


_SLASHES = re.compile(r"//+")


async def healthz(request: Request) -> Response:
    """``GET /healthz``: up; with a key (or without keys configured), each connection too."""
    # Load balancers probe without a key; the details (URLs, engine state) are for users.
    if request.scope.get("state", {}).get("caller") is None:
        return Response(dumps({"status": "ok"}), media_type="application/json")
    gateway: Gateway = request.app.state.gateway
    body = {"status": "ok", "connections": admin.masked(gateway.health())}
    return Response(dumps(body), media_type="application/json")


def create_app(gateway: Gateway, *, progress: Callable[[str], None] | None = None) -> ASGIApp:
    """The server for *gateway*; the model loads at start-up, before the first request."""
    settings = gateway.settings
    import os

    keys = settings.server.resolved_keys(os.environ)
    guard = EdgeGuard(
        keyed=bool(keys),
        allowed_hosts=settings.server.allowed_hosts,
        cors_origins=settings.server.cors_origins,
        json_posts=JSON_POSTS,
    )
    secrets = gateway.resolver.secrets

    async def on_chatgate_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, ChatgateError)
        return error_response(door_for(request.url.path), exc)

    async def on_http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        path = request.url.path
        headers = dict(exc.headers or {})  # keeps a 405's Allow
        door = door_for(path)
        if door is sgp.DOOR:  # FastAPI's own words, which SGP clients see
            body = dumps({"detail": exc.detail})
            return Response(body, exc.status_code, headers, media_type="application/json")
        if exc.status_code == 404:
            error: ChatgateError = NotFoundError(f"no such route: {request.method} {path}")
        else:
            error = ChatgateError(str(exc.detail), headers=headers)
            error.status = exc.status_code  # type: ignore[misc]
            error.error_type = "invalid_request_error"  # type: ignore[misc]
        return error_response(door, error)

    async def on_unexpected(request: Request, exc: Exception) -> Response:
        path = request.url.path
        return error_response(door_for(path), as_error(exc, secrets, path))

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        app.state.managed = await _open_store(gateway)
        await admin_keys.start(app.state, app.state.managed)  # gateway keys (docs/keys.md)
        await gateway.start(progress)
        try:
            yield
        finally:
            await gateway.aclose()
            await admin_keys.stop(app.state)
            if app.state.managed is not None:
                app.state.managed.close()  # writes the usage rows still queued

    async def not_here(request: Request) -> Response:
        # Only reached by a method a chat route does not take: Edge answers its POSTs.
        raise HTTPException(405, headers={"Allow": "POST"})

    app = Starlette(
        routes=[
            *(Route(path, not_here, methods=[method]) for method, path in CHAT_ROUTES),
            *(route for entry in ENTRIES for route in entry.routes),
            Route("/healthz", healthz, methods=["GET"]),
            metrics_route.route(gateway),  # also installs the metrics observers
            *admin_store.routes(),
            *admin_keys.routes(),
            *web.ROUTES,
            Route("/api/connections/{name}/models", admin.connection_models, methods=["GET"]),
            Route("/api/connections/{name}/status", admin.connection_status, methods=["GET"]),
            Route("/api/connections/{name}/test", admin.connection_test, methods=["POST"]),
            Route("/api/preview", admin.preview, methods=["POST"]),
            # Behind the key like the rest (why: chatgate.server.openapi); built here, once.
            openapi.route(),
        ],
        exception_handlers={
            ChatgateError: on_chatgate_error,
            HTTPException: on_http_error,
            Exception: on_unexpected,
        },
        lifespan=lifespan,
    )
    app.state.gateway = gateway
    app.state.managed = None  # the store, once the lifespan opened it
    app.state.max_body_bytes = settings.server.max_body_bytes
    app.state.started = int(time.time())
    admin_keys.install(app.state, gateway, KeySnapshot())
    return Edge(app, guard, Authenticator(keys, settings.server.admin_keys, app.state.keys))


async def _open_store(gateway: Gateway) -> ManagedConnections | None:
    """The store with its connections served, or None (logged) when it cannot open: the
    config file's connections serve either way."""
    try:
        managed = ManagedConnections.open(gateway)
    except ChatgateError as exc:
        log.error("the store did not open, so no connection can be managed: %s", exc.message)
        return None
    await managed.load()
    return managed


def _adding(send: Send, headers: tuple[tuple[bytes, bytes], ...]) -> Send:
    """*send*, with *headers* added to the response's start."""

    async def wrapped(message: Message) -> None:
        if message["type"] == "http.response.start":
            message = {**message, "headers": [*message.get("headers", ()), *headers]}
        await send(message)

    return wrapped


class Edge:
    """What every HTTP request passes first: the edge checks (`EdgeGuard`), then the one
    authentication step, whose caller identity goes on in ``scope["state"]["caller"]``.

    A door's chat route is then handed to `chatgate.server.dispatch.handle` directly:
    it is the route that carries the load, and skipping Starlette's router and
    middleware layers saves a measurable part of the added latency
    (``docs/performance.md``). It is the same dispatch code for every door.
    """

    def __init__(self, app: Starlette, guard: EdgeGuard, auth: Authenticator) -> None:
        self.app = app
        self.guard = guard
        self.auth = auth

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if "//" in scope["path"]:
            scope = _collapsed(scope)
        path = scope["path"]
        admission = self.guard.admit(scope)
        if admission is not ADMITTED:
            if admission.error is not None or admission.preflight:
                await _refusal(admission, door_for(path))(scope, receive, send)
                return
            send = _adding(send, admission.headers)
        try:
            # /healthz answers without a key too, with less; no route takes OPTIONS
            # (beyond the CORS preflight answered above), so it gets its 405 as it is.
            # The web page and its files load without a key: the page asks for one.
            optional = (
                path in KEYLESS or path.startswith(KEYLESS_PREFIXES) or scope["method"] == "OPTIONS"
            )
            caller = self.auth.authenticate(scope, optional=optional)
            if path.startswith(admin.ADMIN_PREFIXES):
                require_admin(caller)
        except ChatgateError as exc:
            await error_response(door_for(path), exc)(scope, receive, send)
            return
        scope.setdefault("state", {})["caller"] = caller
        door = CHAT_ROUTES.get((scope["method"], path))
        if door is None:
            await self.app(scope, receive, send)
            return
        scope["app"] = self.app
        response = await handle(door, Request(scope, receive))
        try:
            await response(scope, receive, send)
        except asyncio.CancelledError:
            # Only uvicorn cancels a request's task: at shutdown, past shutdown_timeout,
            # after logging how many it cancels. The attempt is in the usage log already
            # (499), and uvicorn closes the connection; a traceback each would say no more.
            return


def _refusal(admission: Admission, door: Door) -> Response:
    """The answer the edge gives itself: an error, or a CORS preflight's 204."""
    if admission.error is None:
        response = Response(status_code=204)
    else:
        response = error_response(door, admission.error)
    response.raw_headers.extend(admission.headers)
    return response
