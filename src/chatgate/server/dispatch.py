"""The one path every door's chat route takes: body → plan → answer, errors in the
door's shape.

The caller was authenticated at the edge (`chatgate.server.app.Edge`) before the route
was chosen. Here the body is read within its limit, decoded by the door, planned by
`Gateway.prepare` and run; whatever is raised, before or after the first byte, reaches
the client in the door's own shape, and an unexpected exception is logged with every
secret redacted, never as a traceback.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp

from chatgate.errors import ChatgateError, RequestTooLargeError, redact
from chatgate.gateway import Gateway
from chatgate.plan import ANONYMOUS, Plan
from chatgate.server.doors.base import Door
from chatgate.server.responses import EventStream, JSONBody, dumps
from chatgate.urls import mask_userinfo

log = logging.getLogger("chatgate.server")

# Bodies this big are parsed and planned in a thread: 10,000 messages take 30-60 ms,
# which the event loop would otherwise spend away from every other client.
OFF_LOOP_BYTES = 256 * 1024

Secrets = Callable[[], list[str]]


def as_error(exc: BaseException, secrets: Secrets, where: str) -> ChatgateError:
    """*exc* as one of our errors: itself, or (a bug) a 500 that says to read the log,
    with the redacted cause logged."""
    if isinstance(exc, ChatgateError):
        return exc
    shown = mask_userinfo(redact(repr(exc), secrets()))  # a repr may quote a base URL
    log.error("unexpected error on %s: %s", where, shown)
    return ChatgateError("internal error in chatgate; see the server log")


def error_response(door: Door, error: ChatgateError) -> Response:
    """*error* as a JSON answer in *door*'s shape."""
    return Response(
        dumps(door.encode_error(error)),
        error.status,
        error.headers,
        media_type="application/json",
    )


async def read_body(request: Request, limit: int) -> bytes:
    """The whole body, refusing more than *limit* bytes before reading them all."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise RequestTooLargeError(f"the body is {declared} bytes; the limit is {limit}")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise RequestTooLargeError(f"the body is over the limit of {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


async def handle(door: Door, request: Request) -> ASGIApp:
    """A chat request through *door*: never raises, every failure is door-shaped."""
    state = request.app.state
    gateway: Gateway = state.gateway
    secrets: Secrets = gateway.resolver.secrets
    caller = request.scope.get("state", {}).get("caller", ANONYMOUS)
    try:
        body = await read_body(request, state.max_body_bytes)

        def plan() -> Plan:
            return gateway.prepare(door.decode(body, gateway), caller=caller)

        planned = plan() if len(body) < OFF_LOOP_BYTES else await asyncio.to_thread(plan)
    except Exception as exc:
        return error_response(door, as_error(exc, secrets, request.scope["path"]))
    # The scope's path, not request.url: building a URL costs more than planning.
    return respond(door, gateway, planned, request.scope["path"])


def respond(door: Door, gateway: Gateway, plan: Plan, where: str) -> ASGIApp:
    """The answer to a planned request: one JSON body, or a stream of frames."""
    secrets: Secrets = gateway.resolver.secrets
    headers = {"x-chatgate-dropped-params": ",".join(plan.dropped)} if plan.first.dropped else {}

    def render(exc: BaseException) -> tuple[int, Any, dict[str, str]]:
        error = as_error(exc, secrets, where)
        return error.status, door.encode_error(error), error.headers

    if plan.request.stream:
        return EventStream(_frames(door, gateway, plan, where), headers, render)

    async def produce() -> tuple[int, Any, dict[str, str]]:
        answer = await gateway.run(plan)
        return 200, door.encode_answer(answer, plan), headers

    return JSONBody(produce, render)


async def _frames(door: Door, gateway: Gateway, plan: Plan, where: str) -> AsyncIterator[bytes]:
    """The door's frames; an error after the first one as the door's error frame."""
    secrets: Secrets = gateway.resolver.secrets
    started = False
    try:
        async for frame in door.encode_stream(gateway.run_stream(plan), plan):
            yield frame
            started = True
    except Exception as exc:
        error = as_error(exc, secrets, where)
        if not started:
            raise error from None
        error.message = redact(error.message, secrets())  # upstream words may quote a key
        yield door.error_frame(error)
