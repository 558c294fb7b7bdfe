"""The one path every door's chat route takes: body → plan → answer, errors in the
door's shape.

The caller was authenticated at the edge (`chatgate.server.app.Edge`) before the route
was chosen. Here the body is read within its limit, decoded by the door, planned by
`Gateway.prepare` and run; whatever is raised, before or after the first byte, reaches
the client in the door's own shape, and an unexpected exception is logged with every
secret redacted, never as a traceback.

Upstreams quote keys back (in errors, and in answers a model repeats), so everything
that leaves here, error messages, whole answers and every stream frame, goes through
`redact` with `live_secrets`: the configured secrets and each backend's current ones
(a service account's access token exists only in its backend).
"""

from __future__ import annotations

import logging
import time
import weakref
from collections.abc import AsyncIterator, Callable
from typing import Any

from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.types import ASGIApp, Scope

from chatgate.errors import ChatgateError, RequestTooLargeError, ShuttingDownError, redact
from chatgate.gateway import Gateway
from chatgate.metrics import first_frame
from chatgate.offload import off_loop
from chatgate.plan import ANONYMOUS, Plan
from chatgate.redaction import FRAGMENT
from chatgate.resilience_run import answer_headers, dropped_header, trail, trailed
from chatgate.server.admission import admit, with_headers
from chatgate.server.doors.base import Door
from chatgate.server.doors.reach import check_reach
from chatgate.server.responses import EventStream, JSONBody, dumps
from chatgate.types import ChatChunk, ChatResponse
from chatgate.urls import mask_userinfo

log = logging.getLogger("chatgate.server")

# Bodies this big are parsed and planned in a thread: 10,000 messages take 30-60 ms,
# which the event loop would otherwise spend away from every other client.
OFF_LOOP_BYTES = 256 * 1024

Secrets = Callable[[], list[str]]


# Reading the configured secrets (files, variables, URLs) costs more than answering a
# request: a set read this recently stands; what the adapters hold is read every time.
SECRETS_TTL = 1.0
_LIVE: weakref.WeakKeyDictionary[Gateway, tuple[float, int, list[str]]] = (
    weakref.WeakKeyDictionary()
)


def live_secrets(gateway: Gateway) -> list[str]:
    """Every secret in use now: the resolver's (read at most once a second, and at once
    after a connection changed) and what each backend's adapter holds now (a token
    fetched a moment ago)."""
    now = time.monotonic()
    cached = _LIVE.get(gateway)
    if cached is None or now - cached[0] >= SECRETS_TTL or cached[1] != gateway.generation:
        cached = _LIVE[gateway] = (now, gateway.generation, _configured(gateway))
    found = list(cached[2])
    # What the adapters hold now (a token fetched a moment ago), read every time.
    # The labelled keys' backends (a store connection's other keys) hold theirs too.
    for backend in (*gateway.backends.values(), *gateway.labelled.values()):
        adapter = getattr(backend, "adapter", None)
        if adapter is not None:
            found += [s for s in adapter.secrets() if s]
    return found


def _configured(gateway: Gateway) -> list[str]:
    # Every connection's, deployments and URL credentials included (`Connection.secrets`).
    return list(gateway.resolver.secrets())


def as_error(exc: BaseException, secrets: Secrets, where: str) -> ChatgateError:
    """*exc* as one of our errors: itself, redacted (its message may quote an upstream),
    or (a bug) a 500 that says to read the log, with the redacted cause logged."""
    if isinstance(exc, ChatgateError):
        exc.message = redact(exc.message, secrets())
        return exc
    shown = mask_userinfo(redact(repr(exc), secrets()))  # a repr may quote a base URL
    log.error("unexpected error on %s: %s", where, shown)
    return ChatgateError("internal error in chatgate; see the server log")


def key_label(scope: Scope) -> str | None:
    """The stored key a request asks for by label (``x-chatgate-key-label``), if any."""
    for name, value in scope["headers"]:
        if name == b"x-chatgate-key-label":
            label: str = value.decode("latin-1").strip()
            return label or None
    return None


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
    # Straight from ASGI's receive, not Starlette's stream(): one message is the usual
    # body, and an async generator per request is the costlier way to read it.
    chunks: list[bytes] = []
    size = 0
    receive = request.receive
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnect()
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise RequestTooLargeError(f"the body is over the limit of {limit} bytes")
        chunks.append(chunk)
        if not message.get("more_body", False):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)


async def handle(door: Door, request: Request) -> ASGIApp:
    """A chat request through *door*: never raises, every failure is door-shaped."""
    state = request.app.state
    gateway: Gateway = state.gateway

    def secrets() -> list[str]:
        return live_secrets(gateway)

    caller = request.scope.get("state", {}).get("caller", ANONYMOUS)
    try:
        body = await read_body(request, state.max_body_bytes)

        def plan() -> Plan:
            label = key_label(request.scope) if gateway.labelled else None
            chat = door.decode(body, gateway)
            planned = gateway.prepare(chat, caller=caller, door=door.name, key_label=label)
            check_reach(gateway, door.name, planned)
            return planned

        planned = plan() if len(body) < OFF_LOOP_BYTES else await off_loop(plan)
        limits = await admit(request, (planned,))  # the key's models and limits (docs/keys.md)
    except ClientDisconnect:
        # The client left (or the server cut its slow body): no one to answer, nothing
        # to log as an error.
        return Response(status_code=400)
    except Exception as exc:
        return error_response(door, as_error(exc, secrets, request.scope["path"]))
    # The scope's path, not request.url: building a URL costs more than planning.
    answer = respond(door, gateway, planned, request.scope["path"])
    return with_headers(answer, limits) if limits else answer


def respond(door: Door, gateway: Gateway, plan: Plan, where: str) -> ASGIApp:
    """The answer to a planned request: one JSON body, or a stream of frames."""

    def secrets() -> list[str]:
        return live_secrets(gateway)

    # The answering attempt's, once known: a fallback may drop other parameters.
    headers = dropped_header(plan)

    def render(exc: BaseException) -> tuple[int, Any, dict[str, str]]:
        error = as_error(exc, secrets, where)
        if plan.trail:  # what was tried before it failed (docs/resilience.md)
            return error.status, door.encode_error(error), {**error.headers, **trail(plan)}
        return error.status, door.encode_error(error), error.headers

    if plan.request.stream:
        # SSE unless the door says otherwise (Ollama's streams are NDJSON lines).
        media_type = getattr(door, "stream_media_type", None)
        frames = _frames(door, gateway, plan, where)
        if gateway.resilience.engaged(plan):  # x-chatgate-attempts, known at the 1st frame
            frames = trailed(frames, plan, headers)
        return EventStream(frames, headers, render, media_type, cut=shutdown_frame(door))

    async def produce() -> tuple[int, Any, dict[str, str]]:
        answer = await gateway.run(plan)
        known = secrets()

        def encoded() -> Any:
            # A model (or an upstream) may repeat a key in the answer itself.
            return door.encode_answer(_redacted_answer(answer, known), plan)

        if plan.trail:
            answer_headers(plan, headers)
        size = sum(len(c.message.content or "") for c in answer.choices)
        # Redacting megabytes of text is Python work: in a thread, the event loop gets
        # its turn every few milliseconds instead of waiting for the whole answer.
        if size < OFF_LOOP_BYTES:
            return 200, encoded(), headers
        return 200, await off_loop(lambda: dumps(encoded())), headers

    return JSONBody(produce, render)


def shutdown_frame(door: Door) -> Callable[[], bytes]:
    """The last frame of a stream that the server cuts as it stops, in *door*'s shape."""
    return lambda: door.error_frame(ShuttingDownError())


async def _frames(door: Door, gateway: Gateway, plan: Plan, where: str) -> AsyncIterator[bytes]:
    """The door's frames, their text redacted; an error after the first one as the
    door's error frame."""
    known = live_secrets(gateway)  # once per stream: asking costs more than a frame

    def secrets() -> list[str]:
        return known

    started = False
    try:
        chunks = _redacted_chunks(gateway.run_stream(plan), known)
        async for frame in door.encode_stream(chunks, plan):
            if not started:
                first_frame(gateway, plan)  # time to first token (chatgate.metrics)
            yield frame
            started = True
    except Exception as exc:
        error = as_error(exc, secrets, where)
        if not started:
            raise error from None
        yield door.error_frame(error)  # as_error redacted its message


def _redacted_answer(answer: ChatResponse, secrets: list[str]) -> ChatResponse:
    """*answer* with the text a model or upstream wrote redacted (the rest of it is
    chatgate's own: ids, names, counts)."""
    for choice in answer.choices:
        message = choice.message
        if message.content is not None and len(message.content) >= FRAGMENT:
            message.content = redact(message.content, secrets)
        if message.reasoning_content is not None and len(message.reasoning_content) >= FRAGMENT:
            message.reasoning_content = redact(message.reasoning_content, secrets)
        if message.tool_calls:
            message.tool_calls = [
                call.model_copy(
                    update={
                        "function": call.function.model_copy(
                            update={"arguments": redact(call.function.arguments, secrets)}
                        )
                    }
                )
                for call in message.tool_calls
            ]
    return answer


async def _redacted_chunks(
    chunks: AsyncIterator[ChatChunk], secrets: list[str]
) -> AsyncIterator[ChatChunk]:
    """*chunks* with the text a model or upstream wrote redacted. Only texts of at least
    `FRAGMENT` characters can hold a leak that redaction can see, and most streamed
    pieces are a token or two: those cost one length check, not a scan of the frame."""
    try:
        async for chunk in chunks:
            for choice in chunk.choices:
                delta = choice.delta
                if delta.content is not None and len(delta.content) >= FRAGMENT:
                    delta.content = redact(delta.content, secrets)
                if delta.reasoning_content is not None and len(delta.reasoning_content) >= FRAGMENT:
                    delta.reasoning_content = redact(delta.reasoning_content, secrets)
                for call in delta.tool_calls or ():
                    if call.arguments is not None and len(call.arguments) >= FRAGMENT:
                        call.arguments = redact(call.arguments, secrets)
            yield chunk
    finally:
        aclose = getattr(chunks, "aclose", None)
        if aclose is not None:
            await aclose()
