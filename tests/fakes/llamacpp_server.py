"""A fake llama.cpp ``llama-server`` (its native, non-OpenAI routes) on loopback.

Routes:

- ``POST /completion`` (alias ``/completions``): ``prompt`` (a string, or a list of token
  ids), ``n_predict`` (−1, the default: no limit), ``stop``, ``grammar``, ``json_schema``,
  ``seed``, ``cache_prompt``, ``stream`` and the samplers. Non-stream: one object
  ``{"index", "content", "tokens", "id_slot", "stop": true, "model", "tokens_predicted",
  "tokens_evaluated", "tokens_cached", "generation_settings", "prompt", "truncated",
  "stop_type", "stopping_word", "timings"}``. Stream: SSE ``data: {"index", "content",
  "tokens", "stop": false, "id_slot", "tokens_predicted", "tokens_evaluated"}`` per token,
  then the same whole object with ``"content": ""`` and ``"stop": true``; no ``[DONE]``.
  ``stop_type`` is ``eos`` (the text ran out), ``limit`` (``n_predict`` reached) or
  ``word`` (a stop string; ``stopping_word`` names it, the output excludes it).
- ``GET /health`` (and ``/v1/health``) → 200 ``{"status": "ok"}``.
- ``GET /props`` → ``{"default_generation_settings": {"n_ctx", ...}, "total_slots": 1,
  "model_path", "chat_template", "bos_token": "<s>", "eos_token": "</s>",
  "modalities", "build_info"}``.
- ``POST /tokenize`` ``{"content", "with_pieces"}`` → ``{"tokens": [ids]}`` (pieces:
  ``[{"id", "piece"}]``), one token per whitespace-separated word (`common.token_ids`).
- ``POST /detokenize`` ``{"tokens"}`` → ``{"content"}`` (`common.token_text`).
- ``GET /v1/models`` (and ``/models``) → ``{"object": "list", "data": [{"id", ...,
  "meta": {"n_ctx_train"}}], "models": [{"name", "model", ...}]}``.

Checks as llama-server does: no ``prompt`` → 400 ``invalid_request_error``; both
``json_schema`` and ``grammar`` → 400; a prompt longer than ``n_ctx`` tokens (one BOS
plus one a word) → 400 ``exceed_context_size_error`` with ``n_prompt_tokens`` and
``n_ctx``. A sampling field of the wrong type is not refused: llama-server logs a warning
and uses the default, so the fake records the field's name in
`LlamaCppState.ignored` and ignores it.

``LlamaCppState.loading`` → every route, ``/health`` included, answers 503
``{"error": {"code": 503, "message": "Loading model", "type": "unavailable_error"}}``.
``LlamaCppState.api_key`` → every route but ``/health`` and the model list needs
``Authorization: Bearer <key>``, else 401 ``Invalid API Key`` (``authentication_error``).

The content comes from the request: the prompt's last non-blank line, a word a token
(`common.echo_pieces`), cut at ``n_predict`` and ``stop``; with ``json_schema`` a JSON
value satisfying it (`common.sample`); with a ``grammar`` whose root rule is only string
literals, its first literal. ``token_delay`` spaces the stream's events; a client that
goes away mid-stream is recorded in `LlamaCppState.disconnects` (tokens sent).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from tests.fakes.common import (
    CHATML_JINJA,
    FakeState,
    Generation,
    bearer,
    echo_pieces,
    generate,
    grammar_text,
    json_response,
    pieces,
    sample,
    sse,
    token_ids,
    token_text,
    type_problems,
)

FIELDS = {
    "n_predict": "int",
    "stop": "list[str]",
    "grammar": "str",
    "json_schema": "object",
    "seed": "int",
    "cache_prompt": "bool",
    "stream": "bool",
    "temperature": "number",
    "top_k": "int",
    "top_p": "number",
    "min_p": "number",
    "typical_p": "number",
    "repeat_penalty": "number",
    "repeat_last_n": "int",
    "presence_penalty": "number",
    "frequency_penalty": "number",
    "ignore_eos": "bool",
    "n_probs": "int",
    "n_keep": "int",
    "id_slot": "int",
}


@dataclass
class LlamaCppState(FakeState):
    """What the fake saw, and the knobs tests turn."""

    loading: bool = False
    api_key: str | None = None
    n_ctx: int = 4096
    chat_template: str = CHATML_JINJA
    model_path: str = "/models/fake-model-Q4_K_M.gguf"
    token_delay: float = 0.0
    ignored: list[str] = field(default_factory=list)
    disconnects: list[int] = field(default_factory=list)

    @property
    def model(self) -> str:
        return self.model_path.rsplit("/", 1)[-1]


def error(status: int, message: str, kind: str, **extra: Any) -> Response:
    """A llama-server error body."""
    return json_response(
        {"error": {"code": status, "message": message, "type": kind, **extra}}, status
    )


def prompt_tokens(prompt: Any) -> int:
    """How many tokens the prompt takes: a BOS, then a word a token (or the ids given)."""
    if isinstance(prompt, str):
        return 1 + len(token_ids(prompt))
    return len(prompt)


def answer(body: dict[str, Any]) -> tuple[Generation, str]:
    """The generation for *body* and its ``stop_type``."""
    if body.get("json_schema") is not None:
        return Generation(pieces(orjson.dumps(sample(body["json_schema"])).decode()), "stop"), "eos"
    literal = grammar_text(body["grammar"]) if body.get("grammar") else None
    if literal is not None:
        return Generation(pieces(literal), "stop"), "eos"
    prompt = body["prompt"] if isinstance(body["prompt"], str) else ""
    made = generate(echo_pieces(prompt), body.get("n_predict", -1), body.get("stop") or [])
    kind = "limit" if made.finish == "length" else "word" if made.stop_word else "eos"
    return made, kind


def build_app(state: LlamaCppState) -> Starlette:
    """The fake's routes."""

    def refused(request: Request, public: bool = False) -> Response | None:
        if state.loading:
            return error(503, "Loading model", "unavailable_error")
        if public or state.api_key is None or bearer(request) == state.api_key:
            return None
        return error(401, "Invalid API Key", "authentication_error")

    def final(body: dict[str, Any], made: Generation, kind: str, content: str) -> dict[str, Any]:
        predicted, evaluated = len(made.pieces), prompt_tokens(body["prompt"])
        return {
            "index": 0,
            "content": content,
            "tokens": [],
            "id_slot": 0,
            "stop": True,
            "model": state.model,
            "tokens_predicted": predicted,
            "tokens_evaluated": evaluated,
            "tokens_cached": evaluated + predicted,
            "generation_settings": {
                "n_predict": body.get("n_predict", -1),
                "seed": body.get("seed", 4294967295),
                "temperature": body.get("temperature", 0.8),
                "stop": body.get("stop") or [],
                "stream": bool(body.get("stream")),
            },
            "prompt": body["prompt"],
            "has_new_line": "\n" in made.text,
            "truncated": False,
            "stop_type": kind,
            "stopping_word": made.stop_word or "",
            "timings": {
                "prompt_n": evaluated,
                "prompt_ms": 1.5,
                "prompt_per_token_ms": 1.5 / max(evaluated, 1),
                "prompt_per_second": 1000 * max(evaluated, 1) / 1.5,
                "predicted_n": predicted,
                "predicted_ms": 2.0 * predicted,
                "predicted_per_token_ms": 2.0,
                "predicted_per_second": 500.0,
            },
        }

    async def events(body: dict[str, Any], made: Generation, kind: str) -> AsyncIterator[bytes]:
        evaluated = prompt_tokens(body["prompt"])
        sent = 0
        try:
            for piece in made.pieces:
                if sent and state.token_delay:
                    await asyncio.sleep(state.token_delay)
                sent += 1
                yield sse(
                    {
                        "index": 0,
                        "content": piece,
                        "tokens": [],
                        "stop": False,
                        "id_slot": -1,
                        "tokens_predicted": sent,
                        "tokens_evaluated": evaluated,
                    }
                )
        except (asyncio.CancelledError, GeneratorExit):
            state.disconnects.append(sent)
            raise
        yield sse(final(body, made, kind, ""))

    async def completion(request: Request) -> Response:
        body = await state.record(request)
        denied = refused(request)
        if denied:
            return denied
        if not isinstance(body, dict) or "prompt" not in body:
            return error(400, '"prompt" must be provided', "invalid_request_error")
        prompt = body["prompt"]
        if not isinstance(prompt, str | list):
            return error(
                400, '"prompt" must be a string or a list of tokens', "invalid_request_error"
            )
        wrong = type_problems(body, FIELDS)
        state.ignored.extend(wrong)
        body = {k: v for k, v in body.items() if k not in wrong}
        if body.get("json_schema") is not None and body.get("grammar") is not None:
            message = 'Either "json_schema" or "grammar" can be specified, but not both'
            return error(400, message, "invalid_request_error")
        needed = prompt_tokens(prompt)
        if needed > state.n_ctx:
            message = (
                f"the request exceeds the available context size, try increasing it"
                f" (n_prompt_tokens={needed}, n_ctx={state.n_ctx})"
            )
            return error(
                400, message, "exceed_context_size_error", n_prompt_tokens=needed, n_ctx=state.n_ctx
            )
        made, kind = answer(body)
        if body.get("stream"):
            return StreamingResponse(events(body, made, kind), media_type="text/event-stream")
        return json_response(final(body, made, kind, made.text))

    async def health(request: Request) -> Response:
        await state.record(request)
        return refused(request, public=True) or json_response({"status": "ok"})

    async def props(request: Request) -> Response:
        await state.record(request)
        denied = refused(request)
        if denied:
            return denied
        settings = {"n_ctx": state.n_ctx, "n_predict": -1, "temperature": 0.8, "top_k": 40}
        return json_response(
            {
                "default_generation_settings": settings,
                "total_slots": 1,
                "model_path": state.model_path,
                "chat_template": state.chat_template,
                "bos_token": "<s>",
                "eos_token": "</s>",
                "modalities": {"vision": False, "audio": False},
                "build_info": "b6000-fake",
            }
        )

    async def tokenize(request: Request) -> Response:
        body = await state.record(request)
        denied = refused(request)
        if denied:
            return denied
        content = str((body or {}).get("content") or "")
        ids = token_ids(content)
        if (body or {}).get("with_pieces"):
            words = content.split()
            return json_response(
                {"tokens": [{"id": i, "piece": w} for i, w in zip(ids, words, strict=True)]}
            )
        return json_response({"tokens": ids})

    async def detokenize(request: Request) -> Response:
        body = await state.record(request)
        denied = refused(request)
        if denied:
            return denied
        ids = (body or {}).get("tokens") or []
        return json_response({"content": token_text([i for i in ids if type(i) is int])})

    async def models(request: Request) -> Response:
        await state.record(request)
        denied = refused(request, public=True)
        if denied:
            return denied
        entry = {
            "id": state.model,
            "object": "model",
            "created": 1_700_000_000,
            "owned_by": "llamacpp",
            "meta": {"n_ctx_train": state.n_ctx, "vocab_type": 2, "n_params": 494_032_768},
        }
        listed = {
            "name": state.model,
            "model": state.model,
            "type": "model",
            "capabilities": ["completion"],
        }
        return json_response({"object": "list", "data": [entry], "models": [listed]})

    return Starlette(
        routes=[
            Route("/completion", completion, methods=["POST"]),
            Route("/completions", completion, methods=["POST"]),
            Route("/health", health, methods=["GET"]),
            Route("/v1/health", health, methods=["GET"]),
            Route("/props", props, methods=["GET"]),
            Route("/tokenize", tokenize, methods=["POST"]),
            Route("/detokenize", detokenize, methods=["POST"]),
            Route("/v1/models", models, methods=["GET"]),
            Route("/models", models, methods=["GET"]),
        ]
    )
