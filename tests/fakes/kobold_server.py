"""A fake KoboldCpp (KoboldAI United API plus KoboldCpp's extras) on loopback; with
``KoboldState.classic`` set, a KoboldAI Classic/United server instead.

Routes:

- ``POST /api/v1/generate`` → ``{"results": [{"text", "finish_reason", "logprobs",
  "prompt_tokens", "completion_tokens"}]}``;
- ``POST /api/extra/generate/stream`` → SSE, every event ``event: message`` with
  ``data: {"token": "...", "finish_reason": null}``, the last one ``{"token": "",
  "finish_reason": "stop"|"length"}``; no ``[DONE]``;
- ``GET|POST /api/extra/generate/check`` (``{"genkey"}``) → ``{"results": [{"text"}]}``,
  the text a running generation has made so far;
- ``POST /api/extra/abort`` (``{"genkey"}``) → ``{"success": "true"|"false", "done":
  "true"}`` — strings, as KoboldCpp writes them. It stops the running generation started
  with that genkey (every running one when no genkey is given), stream or not, which then
  ends with ``finish_reason: "stop"``; every abort is recorded in `KoboldState.aborts`;
- ``POST /api/extra/tokencount`` (alias ``/api/extra/tokenize``; ``{"prompt"}``) →
  ``{"value": n, "ids": [...]}`` by `common.token_ids`: one token per whitespace-separated
  word;
- ``POST /api/extra/detokenize`` ``{"ids"}`` → ``{"result"}`` (`common.token_text`);
- ``GET /api/v1/model`` → ``{"result": "koboldcpp/<model>"}`` (Classic: the bare name);
  ``GET /api/v1/info/version`` → ``{"result": "1.2.5"}``; ``GET /api/v1/config/max_length``
  and ``/max_context_length`` → ``{"value": n}``;
- ``GET /api/extra/version`` → ``{"result": "KoboldCpp", "version": "1.98.1", ...}``;
  ``GET /api/extra/true_max_context_length`` → ``{"value": 4096}``; ``GET /props`` →
  ``{"chat_template", "total_slots", "default_generation_settings": {"n_ctx"}}``.

Classic (``classic=True``): no ``/api/extra/*`` and no ``/props`` (plain 404 there).

With ``KoboldState.password`` set, the generate, stream, check, abort and tokencount
routes need ``Authorization: Bearer <password>``, else 401 ``{"detail": {"error":
"Unauthorized", "msg": ..., "type": "unauthorized"}}``; the GET info routes stay public.

A body field of the wrong type answers 422 ``{"detail": {"<field>": ["Not a valid
integer."]}}`` (the KoboldAI API's marshmallow schema): ``prompt`` (required string),
``max_length``, ``max_context_length``, ``stop_sequence`` (list of strings), ``grammar``,
``sampler_seed``, ``trim_stop``, ``genkey``, ``memory`` and the common samplers.

The generated text comes from the request: the last non-blank line of ``memory +
prompt`` (`common.echo_pieces`), one word a token, cut at ``max_length`` words (default
200; finish ``length``) and at the first ``stop_sequence`` (finish ``stop``; the stop
string is removed when ``trim_stop`` is true, the default, and kept otherwise). A
``grammar`` whose root rule is only string literals answers its first literal.
``KoboldState.token_delay`` spaces the tokens out (for abort tests).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from tests.fakes.common import (
    CHATML_JINJA,
    FakeState,
    Generation,
    Runs,
    bearer,
    echo_pieces,
    generate,
    grammar_text,
    json_response,
    paced,
    pieces,
    sse,
    token_ids,
    token_text,
    type_problems,
)

DEFAULT_MAX_LENGTH = 200
FIELDS = {
    "prompt": "str",
    "memory": "str",
    "max_length": "int",
    "max_context_length": "int",
    "stop_sequence": "list[str]",
    "trim_stop": "bool",
    "grammar": "str",
    "grammar_retain_state": "bool",
    "sampler_seed": "int",
    "sampler_order": "list[int]",
    "genkey": "str",
    "temperature": "number",
    "top_p": "number",
    "top_k": "int",
    "min_p": "number",
    "typical": "number",
    "tfs": "number",
    "top_a": "number",
    "rep_pen": "number",
    "rep_pen_range": "int",
    "rep_pen_slope": "number",
    "use_default_badwordsids": "bool",
    "banned_tokens": "list[str]",
    "images": "list[str]",
}
MESSAGES = {
    "str": "Not a valid string.",
    "int": "Not a valid integer.",
    "number": "Not a valid number.",
    "bool": "Not a valid boolean.",
}


@dataclass
class KoboldState(FakeState):
    """What the fake saw, and the knobs tests turn."""

    classic: bool = False
    model: str = "Llama-3-8B-Fake"
    password: str | None = None
    max_context: int = 4096
    chat_template: str = CHATML_JINJA
    token_delay: float = 0.0
    aborts: list[str | None] = field(default_factory=list)
    partial: dict[str, str] = field(default_factory=dict)
    runs: Runs = field(default_factory=Runs)


def problems(body: Any) -> dict[str, list[str]]:
    """What the KoboldAI schema refuses in *body*, as its 422 ``detail``."""
    if not isinstance(body, dict):
        return {"_schema": ["Invalid input type."]}
    if "prompt" not in body:
        return {"prompt": ["Missing data for required field."]}
    wrong = type_problems(body, FIELDS)
    return {name: [MESSAGES.get(kind, "Not a valid list.")] for name, kind in wrong.items()}


def answer(body: dict[str, Any]) -> Generation:
    """The whole generation for *body*, before any abort."""
    grammar = body.get("grammar")
    literal = grammar_text(grammar) if grammar else None
    words = (
        pieces(literal)
        if literal is not None
        else echo_pieces(str(body.get("memory") or "") + body["prompt"])
    )
    limit = body.get("max_length", DEFAULT_MAX_LENGTH)
    stops = body.get("stop_sequence") or []
    return generate(words, limit, stops, keep_stop=body.get("trim_stop") is False)


def build_app(state: KoboldState) -> Starlette:
    """The fake's routes (the extras answer 404 while ``state.classic`` is set)."""

    def denied(request: Request) -> Response | None:
        if state.password is None or bearer(request) == state.password:
            return None
        detail = {
            "error": "Unauthorized",
            "msg": "Authentication key is missing or invalid.",
            "type": "unauthorized",
        }
        return json_response({"detail": detail}, 401)

    def extra(request: Request) -> Response | None:
        return Response("Not Found", 404, media_type="text/plain") if state.classic else None

    async def tokens(body: dict[str, Any]) -> AsyncIterator[str]:
        """The generation's tokens as they come, stopped by an abort of its genkey."""
        key = str(body.get("genkey") or "")
        stopped = state.runs.start(key)
        state.partial[key] = ""
        try:
            async for token in paced(answer(body).pieces, state.token_delay, stopped):
                state.partial[key] += token
                yield token
        finally:
            state.runs.finish(key)

    async def checked(request: Request, stream: bool) -> dict[str, Any] | Response:
        """The request's body, or the answer refusing it."""
        body = await state.record(request)
        refused = denied(request) or (extra(request) if stream else None)
        if refused:
            return refused
        wrong = problems(body)
        if wrong:
            return json_response({"detail": wrong}, 422)
        return dict(body)

    async def generate_route(request: Request) -> Response:
        body = await checked(request, stream=False)
        if isinstance(body, Response):
            return body
        whole = answer(body)
        text = "".join([token async for token in tokens(body)])
        finish = whole.finish if text == whole.text else "stop"
        result = {
            "text": text,
            "finish_reason": finish,
            "logprobs": None,
            "prompt_tokens": len(token_ids(body["prompt"])),
            "completion_tokens": len(token_ids(text)),
        }
        return json_response({"results": [result]})

    async def stream_route(request: Request) -> Response:
        body = await checked(request, stream=True)
        if isinstance(body, Response):
            return body

        async def events(body: dict[str, Any]) -> AsyncIterator[bytes]:
            whole = answer(body)
            sent = ""
            async for token in tokens(body):
                sent += token
                yield sse({"token": token, "finish_reason": None}, "message")
            finish = whole.finish if sent == whole.text else "stop"
            yield sse({"token": "", "finish_reason": finish}, "message")

        return StreamingResponse(events(body), media_type="text/event-stream")

    async def check_route(request: Request) -> Response:
        body = await state.record(request) if request.method == "POST" else None
        refused = denied(request) or extra(request)
        if refused:
            return refused
        key = str((body or {}).get("genkey") or request.query_params.get("genkey") or "")
        return json_response({"results": [{"text": state.partial.get(key, "")}]})

    async def abort(request: Request) -> Response:
        body = await state.record(request)
        refused = denied(request) or extra(request)
        if refused:
            return refused
        key = (body or {}).get("genkey")
        state.aborts.append(key)
        stopped = state.runs.stop(key)
        return json_response({"success": "true" if stopped else "false", "done": "true"})

    async def tokencount(request: Request) -> Response:
        body = await state.record(request)
        refused = denied(request) or extra(request)
        if refused:
            return refused
        ids = token_ids(str((body or {}).get("prompt") or ""))
        return json_response({"value": len(ids), "ids": ids})

    async def detokenize(request: Request) -> Response:
        body = await state.record(request)
        refused = denied(request) or extra(request)
        if refused:
            return refused
        ids = (body or {}).get("ids") or []
        return json_response({"result": token_text([i for i in ids if type(i) is int])})

    async def info(request: Request) -> Response:
        await state.record(request)
        path = request.url.path
        if path.startswith("/api/extra/") or path == "/props":
            refused = extra(request)
            if refused:
                return refused
        payloads: dict[str, dict[str, Any]] = {
            "/api/v1/model": {
                "result": state.model if state.classic else f"koboldcpp/{state.model}"
            },
            "/api/v1/info/version": {"result": "1.2.5"},
            "/api/v1/config/max_length": {"value": DEFAULT_MAX_LENGTH},
            "/api/v1/config/max_context_length": {"value": state.max_context},
            "/api/extra/true_max_context_length": {"value": state.max_context},
            "/api/extra/version": {
                "result": "KoboldCpp",
                "version": "1.98.1",
                "protected": state.password is not None,
                "txt2img": False,
                "vision": False,
                "transcribe": False,
                "multiplayer": False,
                "websearch": False,
                "tts": False,
                "embeddings": False,
                "jinja": False,
            },
            "/props": {
                "chat_template": state.chat_template,
                "total_slots": 1,
                "default_generation_settings": {"n_ctx": state.max_context},
            },
        }
        return json_response(payloads[path])

    info_paths = [
        "/api/v1/model",
        "/api/v1/info/version",
        "/api/v1/config/max_length",
        "/api/v1/config/max_context_length",
        "/api/extra/true_max_context_length",
        "/api/extra/version",
        "/props",
    ]
    return Starlette(
        routes=[
            Route("/api/v1/generate", generate_route, methods=["POST"]),
            Route("/api/extra/generate/stream", stream_route, methods=["POST"]),
            Route("/api/extra/generate/check", check_route, methods=["GET", "POST"]),
            Route("/api/extra/abort", abort, methods=["POST"]),
            Route("/api/extra/tokencount", tokencount, methods=["POST"]),
            Route("/api/extra/tokenize", tokencount, methods=["POST"]),
            Route("/api/extra/detokenize", detokenize, methods=["POST"]),
            *[Route(path, info, methods=["GET"]) for path in info_paths],
        ]
    )
