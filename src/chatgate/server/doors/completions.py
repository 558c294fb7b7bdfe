"""The OpenAI Completions front door: ``POST /v1/completions``, also ``/completions``
for clients whose base URL lacks ``/v1`` (``docs/doors/completions.md``).

The prompt is text the client has formatted itself: a text backend and the embedded
engine get it verbatim (``raw_prompt``), a chat backend gets it as one user message.
A list of prompts is planned as one request per prompt, answered as one answer whose
choices run prompt by prompt (``index`` = prompt × ``n`` + choice); a stream sends the
prompts' choices in turn. Answers, streams and errors are OpenAI's shapes.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator
from typing import Any

from starlette.requests import Request
from starlette.routing import Route
from starlette.types import ASGIApp

from chatgate.errors import ChatgateError
from chatgate.gateway import Gateway
from chatgate.plan import Plan
from chatgate.resilience_run import DROPPED_HEADER, answered, at_first_frame, dropped_header
from chatgate.server.dispatch import as_error, live_secrets, respond, shutdown_frame
from chatgate.server.doors import openai
from chatgate.server.doors.base import Door, DoorEntry
from chatgate.server.doors.chat_shapes import render_usage
from chatgate.server.doors.completions_openapi import path_item
from chatgate.server.doors.completions_request import (
    Decoded,
    Offsets,
    Shape,
    decode,
    finish_of,
)
from chatgate.server.doors.text_doors import (
    guarded,
    plan_all,
    redacted,
    renderer,
)
from chatgate.server.responses import EventStream, JSONBody, dumps
from chatgate.types import ChatChunk, ChatRequest, ChatResponse, Choice, Usage

PATHS = ("/v1/completions", "/completions")
# Prompts of one list answered at once: enough to overlap remote calls, few enough not
# to fill the embedded engine's queue with one client's list.
PARALLEL_PROMPTS = 4


class CompletionsDoor:
    """OpenAI Completions; one instance per request holds that answer's `Shape`."""

    name = "completions"

    def __init__(self, shape: Shape | None = None) -> None:
        self.shape = shape or Shape()
        self.id = "cmpl-" + secrets.token_hex(12)

    def decode(self, raw: bytes, gateway: Gateway) -> ChatRequest:
        """The request of a body's first prompt (the route plans every prompt)."""
        return decode(raw).requests[0]

    def encode_answer(self, answer: ChatResponse, plan: Plan) -> Any:
        """The ``text_completion`` object."""
        offsets = Offsets()
        out: dict[str, Any] = {
            "id": self.id,
            "object": "text_completion",
            "created": answer.created,
            "model": answer.model,
            "choices": [self._choice(c, offsets) for c in answer.choices],
            "usage": render_usage(answer.usage),
        }
        if answer.system_fingerprint is not None:
            out["system_fingerprint"] = answer.system_fingerprint
        return out

    def _choice(self, choice: Choice, offsets: Offsets) -> dict[str, Any]:
        shape = self.shape
        text = choice.message.content or ""
        if shape.echo:
            text = shape.prompt_of(choice.index) + text
        logprobs = None
        if shape.logprobs is not None:
            logprobs = offsets.logprobs(choice.index, choice.logprobs)
        return {
            "text": text,
            "index": choice.index,
            "logprobs": logprobs,
            "finish_reason": finish_of(choice.finish_reason),
        }

    async def encode_stream(
        self, chunks: AsyncIterator[ChatChunk], plan: Plan
    ) -> AsyncIterator[bytes]:
        """``data:`` frames of ``text_completion`` objects, then ``[DONE]``; with
        ``include_usage``, every frame has ``usage`` (null until the last, which has no
        choices)."""
        shape, offsets = self.shape, Offsets()
        echoed: set[int] = set()
        async for chunk in chunks:
            if chunk.comment is not None:
                # An SSE comment: clients skip it, and it keeps proxies from timing out.
                yield b": " + chunk.comment.replace("\n", " ").encode() + b"\n\n"
                continue
            choices = []
            for choice in chunk.choices:
                text = choice.delta.content or ""
                if shape.echo and choice.index not in echoed:
                    echoed.add(choice.index)
                    text = shape.prompt_of(choice.index) + text
                logprobs = None
                if shape.logprobs is not None and choice.logprobs is not None:
                    logprobs = offsets.logprobs(choice.index, choice.logprobs)
                finish = finish_of(choice.finish_reason)
                if text or logprobs is not None or finish is not None:
                    choices.append(
                        {
                            "text": text,
                            "index": choice.index,
                            "logprobs": logprobs,
                            "finish_reason": finish,
                        }
                    )
            if not choices and not (shape.usage_chunks and chunk.usage is not None):
                continue
            frame: dict[str, Any] = {
                "id": self.id,
                "object": "text_completion",
                "created": chunk.created,
                "model": chunk.model,
                "choices": choices,
            }
            if shape.usage_chunks:
                frame["usage"] = None if chunk.usage is None else render_usage(chunk.usage)
            yield b"data: " + dumps(frame) + b"\n\n"
        yield openai.DONE_FRAME

    def encode_error(self, exc: ChatgateError) -> Any:
        """``{"error": {"message", "type", "param", "code"}}``."""
        return exc.to_dict()

    def error_frame(self, exc: ChatgateError) -> bytes:
        """An ``event: error`` frame holding the error object."""
        return openai.DOOR.error_frame(exc)


async def complete(request: Request) -> ASGIApp:
    """``POST /v1/completions``: each prompt planned; one prompt goes the way every chat
    route goes (`chatgate.server.dispatch.respond`), a list is answered as one."""
    gateway: Gateway = request.app.state.gateway
    decoded: list[Decoded] = []

    def requests(raw: bytes) -> list[ChatRequest]:
        decoded.append(decode(raw))
        return decoded[0].requests

    plans = await plan_all(request, DOOR, requests)
    door = CompletionsDoor(decoded[0].shape)
    where = request.scope["path"]
    if len(plans) == 1:
        return respond(door, gateway, plans[0], where)
    return _combined(door, gateway, plans, where)


def _combined(door: CompletionsDoor, gateway: Gateway, plans: list[Plan], where: str) -> ASGIApp:
    """The answers of several prompts as one: choices re-indexed, usage summed."""
    render = renderer(door, gateway, where)
    n = door.shape.n
    if plans[0].request.stream:
        headers: dict[str, str] = {}
        chunks = redacted_chunks(_in_turn(gateway, plans, n), live_secrets(gateway))
        frames = stream_error_frames(door, door.encode_stream(chunks, plans[0]), gateway, where)
        named = at_first_frame(frames, lambda: headers.update(dropped_header(plans[0])))
        return EventStream(named, headers, render, cut=shutdown_frame(door))

    async def produce() -> tuple[int, Any, dict[str, str]]:
        answers = await _answers(gateway, plans)
        known = live_secrets(gateway)
        choices: list[Choice] = []
        for i, answer in enumerate(answers):
            # By position: an upstream's own indexes are not always distinct.
            for j, choice in enumerate(answer.choices):
                choice.index = i * n + j
                if choice.message.content:
                    choice.message.content = redacted(choice.message.content, known)
                choices.append(choice)
        usage = Usage(
            sum(a.usage.prompt_tokens for a in answers),
            sum(a.usage.completion_tokens for a in answers),
        )
        first = answers[0]
        merged = ChatResponse(first.id, first.created, first.model, choices, usage)
        return 200, door.encode_answer(merged, plans[0]), _all_dropped(plans)

    return JSONBody(produce, render)


def _all_dropped(plans: list[Plan]) -> dict[str, str]:
    """The dropped-parameters header of several answered prompts: every parameter any
    prompt's answering connection dropped (each prompt may have fallen back apart)."""
    names = dict.fromkeys(name for plan in plans for name in answered(plan).dropped)
    return {DROPPED_HEADER: ",".join(names)} if names else {}


async def _answers(gateway: Gateway, plans: list[Plan]) -> list[ChatResponse]:
    """Every plan's answer, a few at a time; the first failure cancels the rest."""
    gate = asyncio.Semaphore(PARALLEL_PROMPTS)

    async def one(plan: Plan) -> ChatResponse:
        async with gate:
            return await gateway.run(plan)

    try:
        async with asyncio.TaskGroup() as group:
            tasks = [group.create_task(one(plan)) for plan in plans]
    except ExceptionGroup as failed:
        # The first prompt's failure is the answer's (the others were cancelled by it).
        raise failed.exceptions[0] from None
    return [task.result() for task in tasks]


async def _in_turn(gateway: Gateway, plans: list[Plan], n: int) -> AsyncIterator[ChatChunk]:
    """Every plan's chunks, one prompt after the other, re-indexed; their usage chunks
    summed into one at the end."""
    usage: Usage | None = None
    last: ChatChunk | None = None
    for i, plan in enumerate(plans):
        chunks = gateway.run_stream(plan)
        try:
            async for chunk in chunks:
                last = chunk
                if not chunk.choices and chunk.usage is not None:
                    usage = usage or Usage(0, 0)
                    usage.prompt_tokens += chunk.usage.prompt_tokens
                    usage.completion_tokens += chunk.usage.completion_tokens
                    continue
                for choice in chunk.choices:
                    choice.index += i * n
                yield chunk
        finally:
            aclose = getattr(chunks, "aclose", None)
            if aclose is not None:
                await aclose()
    if usage is not None and last is not None:
        yield ChatChunk(last.id, last.created, last.model, [], usage)


async def redacted_chunks(
    chunks: AsyncIterator[ChatChunk], known: list[str]
) -> AsyncIterator[ChatChunk]:
    """*chunks* with the text a model wrote redacted; closing this closes *chunks*."""
    try:
        async for chunk in chunks:
            for choice in chunk.choices:
                if choice.delta.content:
                    choice.delta.content = redacted(choice.delta.content, known)
            yield chunk
    finally:
        aclose = getattr(chunks, "aclose", None)
        if aclose is not None:
            await aclose()


def stream_error_frames(
    door: Door, frames: AsyncIterator[bytes], gateway: Gateway, where: str
) -> AsyncIterator[bytes]:
    """*frames*, an error after the first one sent as the door's error frame (before
    it, raised: the response then still has its error status)."""

    async def run() -> AsyncIterator[bytes]:
        started = False
        try:
            async for frame in frames:
                yield frame
                started = True
        except Exception as exc:
            error = as_error(exc, lambda: live_secrets(gateway), where)
            if not started:
                raise error from None
            yield door.error_frame(error)

    return run()


DOOR = CompletionsDoor()
ENTRY = DoorEntry(
    errors=DOOR,
    routes=[Route(path, guarded(DOOR, complete), methods=["POST"]) for path in PATHS],
    paths=PATHS,
    openapi={path: path_item() for path in PATHS},
)
