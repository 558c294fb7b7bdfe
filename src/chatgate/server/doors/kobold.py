"""The KoboldCpp front door: the KoboldAI API with KoboldCpp's extras, for front ends
that speak it (SillyTavern's KoboldAI source, KoboldAI Lite): ``docs/doors/kobold.md``.

Its requests name no model: they go to the door's ``default_model``, which
``/api/v1/model`` reports. Generation runs as a stream inside even for a whole answer,
so that ``/api/extra/abort`` can stop it and the generate call still returns the text
made so far, as KoboldCpp does. Errors are KoboldCpp's ``{"detail": {"msg", "type"}}``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, Literal

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp

from chatgate.errors import ChatgateError
from chatgate.gateway import Gateway
from chatgate.model_info import model_facts
from chatgate.plan import ANONYMOUS, Plan
from chatgate.resilience_run import dropped_header
from chatgate.server.dispatch import live_secrets, read_body, respond
from chatgate.server.doors.base import DoorEntry
from chatgate.server.doors.completions_request import Offsets
from chatgate.server.doors.kobold_fields import DOOR_NAME, KNOBS, Generate, decode, text_field
from chatgate.server.doors.kobold_live import Generations, Live, generations, until_aborted
from chatgate.server.doors.kobold_openapi import path_items
from chatgate.server.doors.reach import default_model
from chatgate.server.doors.text_doors import (
    caller_of,
    door_names,
    guarded,
    in_door_words,
    json_object_body,
    plan_all,
    redacted,
    renderer,
)
from chatgate.server.responses import JSONBody, dumps
from chatgate.tokens import count_tokens, tokenize
from chatgate.types import (
    AssistantMessage,
    ChatChunk,
    ChatRequest,
    ChatResponse,
    Choice,
    FinishReason,
    Usage,
)

# The KoboldCpp release whose API this door follows (its generate fields, routes and
# answers); front ends gate features on it (SillyTavern: streaming from 1.30, token
# counts 1.41, grammar 1.44, min_p 1.48).
KOBOLDCPP_VERSION = "1.76"
KOBOLDAI_API_VERSION = "1.2.5"  # the KoboldAI API level KoboldCpp reports
# KoboldCpp's words for an error's kind, by status; chatgate's own elsewhere.
ERROR_TYPES = {
    400: "bad_input",
    401: "unauthorized",
    404: "not_found",
    413: "bad_input",
    415: "bad_input",
    429: "service_unavailable",
    503: "service_unavailable",
}


NAMES = door_names(KNOBS)


def kobold_error(exc: ChatgateError) -> dict[str, Any]:
    """KoboldCpp's error body, a field named by KoboldCpp's name for it."""
    detail: dict[str, Any] = {
        "msg": in_door_words(exc, NAMES),
        "type": ERROR_TYPES.get(exc.status),
    }
    if detail["type"] is None:
        detail["type"] = exc.error_type
    if exc.status == 401:
        detail = {"error": "Unauthorized", **detail}
    return {"detail": detail}


def plain_finish(finish: FinishReason | None) -> Literal["stop", "length"]:
    """A chat finish reason as a text server's two: ``length`` or ``stop``."""
    return "length" if finish == "length" else "stop"


def _event(data: dict[str, Any]) -> bytes:
    return b"event: message\ndata: " + dumps(data) + b"\n\n"


class KoboldDoor:
    """KoboldCpp's generate API; one instance per generation holds its `Live` entry."""

    name = DOOR_NAME

    def __init__(
        self,
        live: Live | None = None,
        running: Generations | None = None,
        logprobs: bool = False,
    ) -> None:
        self.live = live
        self.running = running
        self.logprobs = logprobs

    def decode(self, raw: bytes, gateway: Gateway) -> ChatRequest:
        """A generate body as our request, for the door's default model."""
        return decode(raw, gateway, stream=False).request

    def encode_answer(self, answer: ChatResponse, plan: Plan) -> Any:
        """``{"results": [{"text", "finish_reason", ...}]}``, a result per choice."""
        offsets = Offsets()
        results = []
        for choice in answer.choices:
            result: dict[str, Any] = {
                "text": choice.message.content or "",
                "finish_reason": plain_finish(choice.finish_reason),
                "tool_calls": [],
                "logprobs": None,
                "prompt_tokens": answer.usage.prompt_tokens,
                "completion_tokens": answer.usage.completion_tokens,
            }
            if self.logprobs and choice.logprobs is not None:
                # KoboldCpp's shape holds the chat form and the Completions form at once.
                shaped = offsets.logprobs(choice.index, choice.logprobs) or {}
                result["logprobs"] = {"content": choice.logprobs.get("content", []), **shaped}
            results.append(result)
        return {"results": results}

    async def encode_stream(
        self, chunks: AsyncIterator[ChatChunk], plan: Plan
    ) -> AsyncIterator[bytes]:
        """``event: message`` frames of ``{"token", "finish_reason": null}``, the last one
        ``{"token": "", "finish_reason"}``; an aborted stream ends with ``"stop"``."""
        live = self.live or Live("", plan.caller)
        running = self.running or Generations()
        finish: FinishReason | None = None
        running.start(live)
        try:
            async for chunk in until_aborted(chunks, live):
                if chunk.comment is not None:
                    yield b": " + chunk.comment.replace("\n", " ").encode() + b"\n\n"
                    continue
                for choice in chunk.choices:
                    if choice.delta.content:
                        yield _event({"token": choice.delta.content, "finish_reason": None})
                    if choice.finish_reason is not None:
                        finish = choice.finish_reason
        finally:
            running.end(live)
        yield _event({"token": "", "finish_reason": plain_finish(finish)})

    def encode_error(self, exc: ChatgateError) -> Any:
        """``{"detail": {"msg", "type"}}``."""
        return kobold_error(exc)

    def error_frame(self, exc: ChatgateError) -> bytes:
        """An ``event: error`` frame holding KoboldCpp's error body."""
        return b"event: error\ndata: " + dumps(kobold_error(exc)) + b"\n\n"


async def _planned(request: Request, *, stream: bool) -> tuple[Plan, Generate]:
    gateway: Gateway = request.app.state.gateway
    decoded: list[Generate] = []

    def requests(raw: bytes) -> list[ChatRequest]:
        decoded.append(decode(raw, gateway, stream=stream))
        return [decoded[0].request]

    plans = await plan_all(request, DOOR, requests)
    return plans[0], decoded[0]


async def generate(request: Request) -> ASGIApp:
    """``POST /api/v1/generate``: the whole text, or what was made before an abort."""
    gateway: Gateway = request.app.state.gateway
    plan, decoded = await _planned(request, stream=False)
    live = Live(decoded.genkey, caller_of(request))
    running = generations(gateway)
    door = KoboldDoor(live, running, decoded.logprobs)

    async def produce() -> tuple[int, Any, dict[str, str]]:
        running.start(live)
        try:
            answer = await _collect(gateway, plan, live)
        finally:
            running.end(live)
        return 200, door.encode_answer(answer, plan), dropped_header(plan)

    return JSONBody(produce, renderer(door, gateway, request.scope["path"]))


async def _collect(gateway: Gateway, plan: Plan, live: Live) -> ChatResponse:
    """The stream of *plan* gathered into a whole answer, until it ends or is aborted."""
    texts: dict[int, list[str]] = {}
    finishes: dict[int, FinishReason] = {}
    logprobs: dict[int, list[Any]] = {}
    usage = Usage(0, 0)
    head: ChatChunk | None = None
    async for chunk in until_aborted(gateway.run_stream(plan), live):
        head = head or chunk
        if chunk.usage is not None:
            usage = chunk.usage
        for choice in chunk.choices:
            texts.setdefault(choice.index, []).append(choice.delta.content or "")
            if choice.finish_reason is not None:
                finishes[choice.index] = choice.finish_reason
            if choice.logprobs is not None:
                logprobs.setdefault(choice.index, []).extend(choice.logprobs.get("content", []))
    known = live_secrets(gateway)
    count = max(plan.request.n or 1, len(texts))
    choices = []
    for index in range(count):
        text = redacted("".join(texts.get(index, [])), known)
        entries = logprobs.get(index)
        shown = None if entries is None else {"content": entries}
        choices.append(Choice(index, AssistantMessage(text), finishes.get(index, "stop"), shown))
    if head is None:
        return ChatResponse("", 0, plan.request.model, choices, usage)
    return ChatResponse(head.id, head.created, head.model, choices, usage)


async def stream(request: Request) -> ASGIApp:
    """``POST /api/extra/generate/stream``: the text as server-sent events."""
    gateway: Gateway = request.app.state.gateway
    plan, decoded = await _planned(request, stream=True)
    door = KoboldDoor(Live(decoded.genkey, caller_of(request)), generations(gateway))
    return respond(door, gateway, plan, request.scope["path"])


async def _genkey(request: Request) -> str:
    """The ``genkey`` of an abort or check body; none for a body without one (KoboldCpp
    reads an unreadable body as naming no key)."""
    if request.method != "POST":
        return ""
    raw = await read_body(request, request.app.state.max_body_bytes)
    try:
        key = json_object_body(raw).get("genkey") if raw.strip() else None
    except ChatgateError:
        key = None
    return key if isinstance(key, str) else ""


def _json(value: Any, headers: dict[str, str] | None = None) -> Response:
    return Response(dumps(value), headers=headers, media_type="application/json")


async def abort(request: Request) -> ASGIApp:
    """``POST /api/extra/abort``: stops the caller's generation with that genkey (or
    their latest); ``success`` says whether one was running."""
    running = generations(request.app.state.gateway)
    live = running.find(await _genkey(request), caller_of(request))
    if live is None:
        return _json({"success": "false", "done": "false"})
    live.aborted.set()
    return _json({"success": "true", "done": "true"})


async def check(request: Request) -> ASGIApp:
    """``/api/extra/generate/check``: the text the caller's generation has made so far."""
    gateway: Gateway = request.app.state.gateway
    live = generations(gateway).find(await _genkey(request), caller_of(request))
    text = "" if live is None else redacted(live.text, live_secrets(gateway))
    return _json({"results": [{"text": text}]})


async def model(request: Request) -> ASGIApp:
    """``GET /api/v1/model``: ``koboldcpp/`` and the door's default model."""
    return _json({"result": "koboldcpp/" + default_model(request.app.state.gateway, DOOR_NAME)})


async def api_version(request: Request) -> ASGIApp:
    """``GET /api/v1/info/version``: the KoboldAI API level."""
    return _json({"result": KOBOLDAI_API_VERSION})


async def version(request: Request) -> ASGIApp:
    """``GET /api/extra/version``: KoboldCpp's identity and the features it serves."""
    caller = request.scope.get("state", {}).get("caller")
    features = ("txt2img", "vision", "transcribe", "multiplayer", "websearch", "tts")
    body: dict[str, Any] = {
        "result": "KoboldCpp",
        "version": KOBOLDCPP_VERSION,
        "protected": caller is not None and caller is not ANONYMOUS,
        **dict.fromkeys(features, False),
        "embeddings": False,
    }
    return _json(body)


async def context_length(request: Request) -> ASGIApp:
    """``GET /api/v1/config/max_context_length`` (and ``/api/extra/true_max_context_length``):
    the default model's context, where chatgate knows it (else the one it assumes)."""
    gateway: Gateway = request.app.state.gateway
    facts = await model_facts(gateway, default_model(gateway, DOOR_NAME))
    return _json({"value": facts.context_or_default})


async def tokencount(request: Request) -> ASGIApp:
    """``POST /api/extra/tokencount``: ``{"value", "ids"}`` by the model's tokenizer;
    where it has none, an estimate and no ids (``x-chatgate-token-count: estimate``)."""
    gateway: Gateway = request.app.state.gateway
    body = json_object_body(await read_body(request, request.app.state.max_body_bytes))
    text = text_field(body, "prompt")
    target = default_model(gateway, DOOR_NAME)
    ids = await tokenize(gateway, target, text) if text else []
    if ids is not None:
        return _json({"value": len(ids), "ids": ids}, {"x-chatgate-token-count": "exact"})
    counted = await count_tokens(gateway, target, text)
    kind = "exact" if counted.exact else "estimate"
    return _json({"value": counted.tokens, "ids": []}, {"x-chatgate-token-count": kind})


DOOR = KoboldDoor()
ROUTES: tuple[tuple[str, Any, tuple[str, ...]], ...] = (
    ("/api/v1/generate", generate, ("POST",)),
    ("/api/extra/generate/stream", stream, ("POST",)),
    ("/api/extra/generate/check", check, ("GET", "POST")),
    ("/api/extra/abort", abort, ("POST",)),
    ("/api/extra/tokencount", tokencount, ("POST",)),
    ("/api/v1/model", model, ("GET",)),
    ("/api/v1/info/version", api_version, ("GET",)),
    ("/api/extra/version", version, ("GET",)),
    ("/api/v1/config/max_context_length", context_length, ("GET",)),
    ("/api/extra/true_max_context_length", context_length, ("GET",)),
)
ENTRY = DoorEntry(
    errors=DOOR,
    routes=[Route(path, guarded(DOOR, run), methods=list(m)) for path, run, m in ROUTES],
    paths=("/api/v1/", "/api/extra/"),
    openapi=path_items(),
)
