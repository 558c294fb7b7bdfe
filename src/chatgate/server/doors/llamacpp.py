"""The llama.cpp server front door: llama-server's own API (``/completion``, ``/props``,
``/health``, ``/tokenize``, ``/detokenize``) for front ends that speak it (SillyTavern's
llama.cpp text completion source): ``docs/doors/llamacpp.md``.

Its requests name no model: they go to the door's ``default_model``, which ``/props``
describes. Answers, stream frames and errors are llama-server's shapes
(``{"error": {"code", "message", "type"}}``). Token ids come from the default model's
own tokenizer; a backend without one answers 501, and no ids are invented.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any, ClassVar

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp

from chatgate.errors import (
    ChatgateError,
    ContextLengthError,
    InvalidRequestError,
    UnsupportedParameterError,
)
from chatgate.gateway import Gateway
from chatgate.model_info import backend_of, engine_loading, model_facts
from chatgate.plan import Plan
from chatgate.server.dispatch import read_body, respond
from chatgate.server.doors.base import DoorEntry
from chatgate.server.doors.llamacpp_fields import DOOR_NAME, KNOBS, Completion, decode
from chatgate.server.doors.llamacpp_openapi import path_items
from chatgate.server.doors.reach import default_model
from chatgate.server.doors.text_doors import (
    Knob,
    checked,
    door_names,
    guarded,
    in_door_words,
    json_object_body,
    plan_all,
)
from chatgate.server.responses import dumps
from chatgate.tokens import detokenize, tokenize
from chatgate.types import ChatChunk, ChatRequest, ChatResponse, FinishReason, Usage

PIECES_AT_ONCE = 16  # detokenize calls in flight for ``with_pieces``
MAX_PIECES = 4096  # tokens ``with_pieces`` spells out, one call each
# llama-server's error type for each status; chatgate's own for the rest.
ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "invalid_request_error",
    415: "invalid_request_error",
    501: "not_supported_error",
    502: "server_error",
    503: "unavailable_error",
}


class NoTokenizerError(ChatgateError):
    """The default model's backend has no tokenizer chatgate can reach."""

    status: ClassVar[int] = 501
    error_type: ClassVar[str] = "not_supported_error"


NAMES = door_names(KNOBS, max_tokens="n_predict", logprobs="n_probs")


def llama_error(exc: ChatgateError) -> dict[str, Any]:
    """llama-server's error body, a field named by llama-server's name for it."""
    kind = ERROR_TYPES.get(exc.status, exc.error_type)
    if isinstance(exc, ContextLengthError):
        kind = "exceed_context_size_error"
    message = in_door_words(exc, NAMES)
    return {"error": {"code": exc.status, "message": message, "type": kind}}


def stop_type(finish: FinishReason | None, word: str | None) -> str:
    """llama-server's ``stop_type`` for a finish reason: ``limit`` for a length cut,
    ``word`` when the stop string is known, else ``eos``."""
    if finish == "length":
        return "limit"
    return "word" if word else "eos"


class LlamaCppDoor:
    """llama-server's ``/completion``; one instance per request holds what its answer
    echoes and when the request began (for ``timings``)."""

    name = DOOR_NAME

    def __init__(self, completion: Completion | None = None) -> None:
        self.completion = completion
        self.started = time.perf_counter()

    def decode(self, raw: bytes, gateway: Gateway) -> ChatRequest:
        """A ``/completion`` body as our request, for the door's default model."""
        return decode(raw, gateway).request

    def _final(
        self,
        content: str,
        finish: FinishReason | None,
        word: str | None,
        usage: Usage,
        first_token: float | None,
    ) -> dict[str, Any]:
        """The whole answer object (a stream's last frame has it with no content)."""
        done = time.perf_counter()
        # chatgate sees the time to the first token (a stream's) and the rest; a whole
        # answer's time is all counted as generation.
        prompt_ms = 0.0 if first_token is None else (first_token - self.started) * 1000
        predicted_ms = (done - (first_token or self.started)) * 1000
        completion = self.completion
        out: dict[str, Any] = {
            "index": 0,
            "content": content,
            "tokens": [],
            "id_slot": -1,
            "stop": True,
            "model": completion.settings.get("model", "") if completion else "",
            "tokens_predicted": usage.completion_tokens,
            "tokens_evaluated": usage.prompt_tokens,
            "generation_settings": dict(completion.settings) if completion else {},
            "prompt": completion.prompt if completion else "",
            "truncated": False,
            "stop_type": stop_type(finish, word),
            "stopping_word": word or "",
            "timings": _timings(usage, prompt_ms, predicted_ms),
        }
        return out

    def encode_answer(self, answer: ChatResponse, plan: Plan) -> Any:
        """llama-server's completion object."""
        choice = answer.choices[0] if answer.choices else None
        content = choice.message.content or "" if choice else ""
        finish = choice.finish_reason if choice else "stop"
        # The stop string that ended it, where the backend told (a newer answer field).
        word = getattr(choice, "stop_sequence", None)
        out = self._final(content, finish, word, answer.usage, None)
        if self.completion and self.completion.n_probs and choice and choice.logprobs:
            out["completion_probabilities"] = list(choice.logprobs.get("content") or [])
        return out

    async def encode_stream(
        self, chunks: AsyncIterator[ChatChunk], plan: Plan
    ) -> AsyncIterator[bytes]:
        """``data: {"content", "stop": false}`` frames, then the whole object with
        ``"stop": true`` (no ``[DONE]``, as llama-server)."""
        finish: FinishReason | None = None
        word: str | None = None
        usage = Usage(0, 0)
        first_token: float | None = None
        probs = bool(self.completion and self.completion.n_probs)
        async for chunk in chunks:
            if chunk.comment is not None:
                yield b": " + chunk.comment.replace("\n", " ").encode() + b"\n\n"
                continue
            if chunk.usage is not None:
                usage = chunk.usage
            for choice in chunk.choices:
                if choice.finish_reason is not None:
                    finish = choice.finish_reason
                    word = getattr(choice, "stop_sequence", None) or word
                text = choice.delta.content
                if not text and not (probs and choice.logprobs):
                    continue
                first_token = first_token or time.perf_counter()
                frame: dict[str, Any] = {
                    "index": 0,
                    "content": text or "",
                    "tokens": [],
                    "stop": False,
                    "id_slot": -1,
                }
                if probs and choice.logprobs:
                    frame["completion_probabilities"] = list(choice.logprobs.get("content") or [])
                yield b"data: " + dumps(frame) + b"\n\n"
        yield b"data: " + dumps(self._final("", finish, word, usage, first_token)) + b"\n\n"

    def encode_error(self, exc: ChatgateError) -> Any:
        """``{"error": {"code", "message", "type"}}``."""
        return llama_error(exc)

    def error_frame(self, exc: ChatgateError) -> bytes:
        """A ``data:`` frame holding the error object (llama-server's stream error)."""
        return b"data: " + dumps(llama_error(exc)) + b"\n\n"


def _timings(usage: Usage, prompt_ms: float, predicted_ms: float) -> dict[str, float]:
    def per(n: int, ms: float) -> tuple[float, float]:
        return (ms / n if n else 0.0, 1000 * n / ms if ms > 0 else 0.0)

    prompt_per_token, prompt_per_second = per(usage.prompt_tokens, prompt_ms)
    predicted_per_token, predicted_per_second = per(usage.completion_tokens, predicted_ms)
    return {
        "prompt_n": usage.prompt_tokens,
        "prompt_ms": prompt_ms,
        "prompt_per_token_ms": prompt_per_token,
        "prompt_per_second": prompt_per_second,
        "predicted_n": usage.completion_tokens,
        "predicted_ms": predicted_ms,
        "predicted_per_token_ms": predicted_per_token,
        "predicted_per_second": predicted_per_second,
    }


async def completion(request: Request) -> ASGIApp:
    """``POST /completion``: the way every chat route goes, in llama-server's shapes."""
    gateway: Gateway = request.app.state.gateway
    decoded: list[Completion] = []

    def requests(raw: bytes) -> list[ChatRequest]:
        decoded.append(decode(raw, gateway))
        return [decoded[0].request]

    door = LlamaCppDoor()
    plans = await plan_all(request, DOOR, requests)
    door.completion = decoded[0]
    return respond(door, gateway, plans[0], request.scope["path"])


def _json(value: Any, status: int = 200) -> Response:
    return Response(dumps(value), status, media_type="application/json")


async def health(request: Request) -> ASGIApp:
    """``GET /health``: ok once the default model can answer; 503 while the embedded
    engine loads, or when no default model is set."""
    gateway: Gateway = request.app.state.gateway
    try:
        model = default_model(gateway, DOOR_NAME)
        loading = engine_loading(gateway, model)
    except ChatgateError as exc:
        body = {"error": {"code": 503, "message": exc.message, "type": "unavailable_error"}}
        return _json(body, 503)
    if loading:
        body = {"error": {"code": 503, "message": "Loading model", "type": "unavailable_error"}}
        return _json(body, 503)
    return _json({"status": "ok"})


async def props(request: Request) -> ASGIApp:
    """``GET /props``: the default model as chatgate knows it."""
    gateway: Gateway = request.app.state.gateway
    facts = await model_facts(gateway, default_model(gateway, DOOR_NAME))
    body: dict[str, Any] = {
        "default_generation_settings": {"n_ctx": facts.context_or_default, "model": facts.model},
        "total_slots": facts.slots,
        # Not a file: the model's chatgate id (which is what requests here reach).
        "model_path": facts.model,
        "model_alias": facts.model,
        "chat_template": facts.chat_template or "",
        "modalities": {"vision": False, "audio": False},
        "build_info": "chatgate",
    }
    if facts.bos_token is not None:
        body["bos_token"] = facts.bos_token
    if facts.eos_token is not None:
        body["eos_token"] = facts.eos_token
    return _json(body)


def _no_tokenizer(gateway: Gateway, model: str) -> NoTokenizerError:
    source = backend_of(gateway, model).connection.source
    return NoTokenizerError(
        f"the default model '{model}' (source '{source}') has no tokenizer chatgate can "
        "reach: token ids come only from the embedded engine, llama.cpp and KoboldCpp"
    )


async def tokenize_route(request: Request) -> ASGIApp:
    """``POST /tokenize``: ``{"tokens": [...]}`` (``with_pieces``: ``{"id", "piece"}``)."""
    gateway: Gateway = request.app.state.gateway
    body = json_object_body(await read_body(request, request.app.state.max_body_bytes))
    if body.get("content") is None:
        raise InvalidRequestError(
            "missing required parameter: 'content'",
            param="content",
            code="missing_required_parameter",
        )
    content = checked("content", body["content"], Knob("str"))
    names = ("add_special", "parse_special", "with_pieces")
    flags = {k: checked(k, body[k], Knob("bool")) for k in names if body.get(k) is not None}
    if flags.get("add_special") or flags.get("parse_special") is False:
        name = "add_special" if flags.get("add_special") else "parse_special"
        raise UnsupportedParameterError(
            f"'{name}' is not supported: chatgate's token ids never hold a BOS, and special "
            "tokens are always parsed",
            param=name,
        )
    model = default_model(gateway, DOOR_NAME)
    ids = await tokenize(gateway, model, content)
    if ids is None:
        raise _no_tokenizer(gateway, model)
    if not flags.get("with_pieces"):
        return _json({"tokens": ids})
    if len(ids) > MAX_PIECES:
        raise InvalidRequestError(
            f"with_pieces spells out at most {MAX_PIECES} tokens; this text is {len(ids)}",
            param="with_pieces",
        )
    return _json({"tokens": await _pieces(gateway, model, ids)})


async def _pieces(gateway: Gateway, model: str, ids: list[int]) -> list[dict[str, Any]]:
    """Each id with its text, by the model's tokenizer, a few calls at a time."""
    gate = asyncio.Semaphore(PIECES_AT_ONCE)

    async def piece(token: int) -> dict[str, Any]:
        async with gate:
            text = await detokenize(gateway, model, [token])
        return {"id": token, "piece": text or ""}

    return list(await asyncio.gather(*(piece(t) for t in ids)))


async def detokenize_route(request: Request) -> ASGIApp:
    """``POST /detokenize``: ``{"content": ...}``, the text of the ids."""
    gateway: Gateway = request.app.state.gateway
    body = json_object_body(await read_body(request, request.app.state.max_body_bytes))
    ids = checked("tokens", body.get("tokens", []), Knob("ints"))
    model = default_model(gateway, DOOR_NAME)
    text = await detokenize(gateway, model, ids)
    if text is None:
        raise _no_tokenizer(gateway, model)
    return _json({"content": text})


DOOR = LlamaCppDoor()
ROUTES: tuple[tuple[str, Any, str], ...] = (
    ("/completion", completion, "POST"),
    ("/props", props, "GET"),
    ("/health", health, "GET"),
    ("/tokenize", tokenize_route, "POST"),
    ("/detokenize", detokenize_route, "POST"),
)
ENTRY = DoorEntry(
    errors=DOOR,
    routes=[Route(path, guarded(DOOR, run), methods=[method]) for path, run, method in ROUTES],
    paths=tuple(path for path, _, _ in ROUTES),
    openapi=path_items(),
)
