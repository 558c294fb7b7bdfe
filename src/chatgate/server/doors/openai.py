"""The OpenAI front door: ``/v1/chat/completions`` and ``/v1/models``."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp

from chatgate.errors import ChatgateError, RequestTooLargeError, redact
from chatgate.gateway import Gateway, Prepared
from chatgate.server.responses import EventStream, JSONBody, dumps
from chatgate.validation import parse_chat_request

log = logging.getLogger("chatgate.server")

DONE_FRAME = b"data: [DONE]\n\n"


def openai_error(exc: ChatgateError) -> dict[str, Any]:
    """The body of an error on the OpenAI front door."""
    return exc.to_dict()


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


def dropped_header(prepared: Prepared) -> dict[str, str]:
    """``x-chatgate-dropped-params`` when the connection dropped some parameters."""
    return {"x-chatgate-dropped-params": ",".join(prepared.dropped)} if prepared.dropped else {}


async def chat_completions(request: Request) -> ASGIApp:
    """``POST /v1/chat/completions``."""
    state = request.app.state
    state.keys.check(request)
    gateway: Gateway = state.gateway
    body = await read_body(request, state.max_body_bytes)
    prepared = await off_the_loop_if_large(
        len(body), lambda: gateway.prepare(parse_chat_request(body))
    )
    return respond(gateway, prepared, state.secrets, openai_error, DONE_FRAME)


# Bodies this big are parsed and checked in a thread: 10,000 messages take 30-60 ms,
# which the event loop would otherwise spend away from every other client.
OFF_LOOP_BYTES = 256 * 1024


async def off_the_loop_if_large(size: int, work: Callable[[], Prepared]) -> Prepared:
    """*work*'s result, computed in a thread when the body is *size* bytes or more."""
    if size < OFF_LOOP_BYTES:
        return work()
    return await asyncio.to_thread(work)


def respond(
    gateway: Gateway,
    prepared: Prepared,
    secrets: list[str],
    render: Callable[[ChatgateError], dict[str, Any]],
    done: bytes | None,
) -> ASGIApp:
    """The answer to a prepared request: one JSON body, or an SSE stream."""
    headers = dropped_header(prepared)
    if prepared.request.stream:
        frames = sse_frames(gateway, prepared, secrets, render, done)
        return EventStream(frames, headers, render)

    async def produce() -> tuple[int, Any, dict[str, str]]:
        answer = await gateway.run(prepared)
        return 200, answer.to_dict(), headers

    return JSONBody(produce, render)


async def sse_frames(
    gateway: Gateway,
    prepared: Prepared,
    secrets: list[str],
    render: Callable[[ChatgateError], dict[str, Any]],
    done: bytes | None,
) -> AsyncIterator[bytes]:
    """Chunks, then *done* (OpenAI's ``[DONE]``; SGP sends none); a late error as an
    ``event: error`` in the front door's error shape."""
    opts = prepared.request.stream_options
    with_usage = bool(opts and opts.include_usage)
    started = False
    try:
        async for chunk in gateway.run_stream(prepared):
            yield b"data: " + dumps(chunk.to_dict(with_usage_field=with_usage)) + b"\n\n"
            started = True
        if done is not None:
            yield done
    except ChatgateError as exc:
        if not started:
            raise
        exc.message = redact(exc.message, secrets)  # the edge: upstream words may quote a key
        yield b"event: error\ndata: " + dumps(render(exc)) + b"\n\n"
    except Exception as exc:  # an unexpected failure mid-stream must still end the stream
        log.error("stream failed: %s", redact(repr(exc), secrets))
        error = ChatgateError("the stream failed inside chatgate; see the server log")
        if not started:
            raise error from None
        yield b"event: error\ndata: " + dumps(render(error)) + b"\n\n"


async def list_models(request: Request) -> Response:
    """``GET /v1/models``: every ``connection/model`` id."""
    state = request.app.state
    state.keys.check(request)
    gateway: Gateway = state.gateway
    data = [
        {"id": m.id, "object": "model", "created": state.started, "owned_by": m.owned_by}
        for m in await gateway.list_models()
    ]
    return Response(dumps({"object": "list", "data": data}), media_type="application/json")


async def get_model(request: Request) -> Response:
    """``GET /v1/models/{id}``: one model, or a 404."""
    state = request.app.state
    state.keys.check(request)
    wanted = request.path_params["model_id"]
    for m in await state.gateway.list_models():
        if m.id == wanted:
            body = {"id": m.id, "object": "model", "created": state.started, "owned_by": m.owned_by}
            return Response(dumps(body), media_type="application/json")
    from chatgate.errors import ModelNotFoundError

    raise ModelNotFoundError(f"the model '{wanted}' does not exist", param="model")
