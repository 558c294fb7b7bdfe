"""A fake OpenAI-style **text** completion server on loopback, in the flavour of one of
the servers that speak it: ``TextOpenAIState.flavour`` picks which.

Every flavour: ``POST {base}/completions`` with ``prompt`` (a string or a list of them),
``max_tokens``, ``stop``, ``stream`` (+ ``stream_options.include_usage``), ``n``,
``logprobs``, ``echo``, ``suffix``, ``seed``, … → ``{"id", "object": "text_completion",
"created", "model", "choices": [{"text", "index", "finish_reason", "logprobs"}],
"usage"}``; a stream is ``data: {"choices": [{"text", "index", "finish_reason",
"logprobs"}], …}`` chunks (the last of each choice with its ``finish_reason``), a usage
chunk when asked, then ``data: [DONE]``. ``GET {base}/models``. With
``TextOpenAIState.api_key`` set, the flavour's auth header is required (401 otherwise).

Flavours (base path; auth; extra fields accepted; what an unknown field does; what a
field of the wrong type answers):

- ``textgen`` (text-generation-webui): ``/v1``; Bearer; its samplers (``min_p``,
  ``repetition_penalty``, ``truncation_length``, ``grammar_string``, …); ignored; 422
  with a FastAPI ``detail`` list.
- ``tabby`` (TabbyAPI): ``/v1``; ``x-api-key`` or Bearer; its samplers and aliases
  (``max_length``, ``stop_sequence``, ``rep_pen``, …), ``json_schema``,
  ``regex_pattern``, ``grammar_string``, ``response_format``; ignored; 422.
- ``vllm``: ``/v1``; Bearer; vLLM's sampling extras and ``structured_outputs`` (with
  ``legacy_guided``: the ``guided_*`` fields instead, and then ``structured_outputs`` is
  the unknown one); ignored, as vLLM does with a logged warning; 400 ``BadRequestError``.
- ``aphrodite``: ``/v1``; Bearer; vLLM's extras, text-generation-webui's samplers and
  ``guided_*``; ignored; 400.
- ``mancer``: ``/oai/v1``; ``X-API-KEY`` (or Bearer); text-generation-webui's samplers;
  ignored; 400.
- ``dreamgen``: ``/api/openai/v1``; Bearer; ``min_p``, ``top_k``, ``repetition_penalty``;
  ignored; 400.
- ``generic`` (as OpenAI's own legacy completions): ``/v1``; Bearer; none; **refused**,
  400 ``Unrecognized request argument supplied: x``; 400.

Unknown fields are recorded in `TextOpenAIState.unknown_fields`. A route under another
flavour's base answers 404.

Flavour extras: ``textgen``: ``GET /v1/internal/model/info`` → ``{"model_name",
"lora_names", "loader"}``, ``POST /v1/internal/encode`` ``{"text"}`` → ``{"tokens",
"length"}``, ``POST /v1/internal/token-count`` → ``{"length"}``, ``POST
/v1/internal/stop-generation`` → ``"OK"`` (stops running streams; counted in
``stop_requests``), ``GET /v1/internal/health``. ``tabby``: ``GET /v1/model`` (with
``parameters.max_seq_len``), ``GET /v1/model/list``, ``POST /v1/token/encode``
``{"text"}`` → ``{"tokens", "length"}``, ``GET /health`` → ``{"status": "healthy",
"issues": []}``. ``vllm``: ``POST /tokenize`` ``{"model", "prompt"}`` → ``{"tokens",
"count", "max_model_len"}``, ``GET /health`` (empty 200), ``GET /version``; a ``model``
other than the served one → 404, ``suffix`` → 400, ``logprobs`` > 20 → 400, more than one
``structured_outputs`` kind → 400, prompt plus ``max_tokens`` beyond ``max_model_len`` →
400. ``aphrodite``: ``POST /v1/tokenize`` (same answer as vLLM's). ``mancer``: ``GET
/oai/v1/models/{id}``.

The text comes from the request: the last non-blank line of each prompt, a word a token
(`common.echo_pieces`), cut at ``max_tokens`` (finish ``length``; defaults: 16 for
``generic``, 512 for ``textgen``, none elsewhere) and before the first ``stop`` (kept with
vLLM's ``include_stop_str_in_output``). ``echo`` puts the prompt before it. Constraints the
flavour honours replace it: a JSON schema (``structured_outputs.json``, ``guided_json``,
Tabby's ``json_schema``, ``response_format`` ``json_schema``) → `common.sample` of it;
``json_object`` → ``{"text": <echo>}``; a choice → the **first** choice; a regex → the
fixed `REGEX_TEXT` (``Hello from the fake.``; write patterns it matches); a grammar whose
root is only string literals → its first literal (any other grammar: the echo).
``logprobs: k`` gives every token ``-0.25`` and ``k`` top entries.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from tests.fakes.common import (
    TEXT,
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
    sample,
    token_ids,
    type_problems,
)

REGEX_TEXT = TEXT
"""What every regex constraint answers."""

OPENAI_FIELDS = {
    "model": "str",
    "prompt": "str|list[str]",
    "max_tokens": "int",
    "temperature": "number",
    "top_p": "number",
    "n": "int",
    "stream": "bool",
    "stream_options": "object",
    "logprobs": "int",
    "echo": "bool",
    "stop": "str|list[str]",
    "presence_penalty": "number",
    "frequency_penalty": "number",
    "best_of": "int",
    "logit_bias": "object",
    "seed": "int",
    "suffix": "str",
    "user": "str",
}
NUMBER, INT, BOOL, STR = "number", "int", "bool", "str"
OOBA_FIELDS = {
    **dict.fromkeys(
        [
            "min_p",
            "typical_p",
            "tfs",
            "top_a",
            "top_n_sigma",
            "repetition_penalty",
            "encoder_repetition_penalty",
            "penalty_alpha",
            "guidance_scale",
            "mirostat_tau",
            "mirostat_eta",
            "dynatemp_low",
            "dynatemp_high",
            "dynatemp_exponent",
            "smoothing_factor",
            "smoothing_curve",
            "dry_multiplier",
            "dry_base",
            "xtc_threshold",
            "xtc_probability",
            "epsilon_cutoff",
            "eta_cutoff",
        ],
        NUMBER,
    ),
    **dict.fromkeys(
        [
            "top_k",
            "repetition_penalty_range",
            "no_repeat_ngram_size",
            "mirostat_mode",
            "truncation_length",
            "dry_allowed_length",
            "max_tokens_second",
            "prompt_lookup_num_tokens",
        ],
        INT,
    ),
    **dict.fromkeys(
        [
            "do_sample",
            "dynamic_temperature",
            "temperature_last",
            "auto_max_new_tokens",
            "ban_eos_token",
            "add_bos_token",
            "skip_special_tokens",
            "enable_thinking",
        ],
        BOOL,
    ),
    **dict.fromkeys(
        ["grammar_string", "negative_prompt", "preset", "custom_token_bans", "reasoning_effort"],
        STR,
    ),
    "dry_sequence_breakers": STR,
    "sampler_priority": "str|list[str]",
    "stopping_strings": "list[str]",
}
TABBY_FIELDS = {
    **dict.fromkeys(
        [
            "min_p",
            "typical",
            "typical_p",
            "tfs",
            "top_a",
            "skew",
            "rep_pen",
            "repetition_penalty",
            "max_temp",
            "min_temp",
            "temp_exponent",
            "mirostat_tau",
            "mirostat_eta",
            "dry_multiplier",
            "dry_base",
            "xtc_threshold",
            "xtc_probability",
            "smoothing_factor",
            "frequency_penalty",
            "presence_penalty",
        ],
        NUMBER,
    ),
    **dict.fromkeys(
        [
            "top_k",
            "max_length",
            "min_tokens",
            "min_length",
            "penalty_range",
            "dry_range",
            "dry_allowed_length",
            "mirostat_mode",
            "mirostat",
            "top_logprobs",
        ],
        INT,
    ),
    **dict.fromkeys(
        ["ban_eos_token", "ignore_eos", "add_bos_token", "token_healing", "temperature_last"], BOOL
    ),
    "stop_sequence": "str|list[str]",
    "banned_strings": "str|list[str]",
    "banned_tokens": "any",
    "allowed_tokens": "any",
    "json_schema": "str|object",
    "regex_pattern": STR,
    "grammar_string": STR,
    "response_format": "object",
}
VLLM_FIELDS = {
    **dict.fromkeys(
        ["min_p", "repetition_penalty", "length_penalty"],
        NUMBER,
    ),
    **dict.fromkeys(
        ["top_k", "min_tokens", "truncate_prompt_tokens", "prompt_logprobs", "priority"], INT
    ),
    **dict.fromkeys(
        [
            "include_stop_str_in_output",
            "ignore_eos",
            "skip_special_tokens",
            "spaces_between_special_tokens",
            "add_special_tokens",
            "use_beam_search",
            "return_tokens_as_token_ids",
        ],
        BOOL,
    ),
    "stop_token_ids": "list[int]",
    "allowed_token_ids": "list[int]",
    "bad_words": "list[str]",
    "request_id": STR,
    "response_format": "object",
}
GUIDED_FIELDS = {
    "guided_json": "str|object",
    "guided_regex": STR,
    "guided_choice": "list[str]",
    "guided_grammar": STR,
    "guided_whitespace_pattern": STR,
    "guided_decoding_backend": STR,
}


@dataclass(frozen=True)
class Flavour:
    """What sets one server apart."""

    base: str
    auth: tuple[str, ...]  # header names read for the key ("authorization": Bearer)
    fields: dict[str, str]
    refuse_unknown: bool = False
    bad_type_status: int = 400
    default_max_tokens: int | None = None
    owner: str = "fake"


FLAVOURS = {
    "textgen": Flavour("/v1", ("authorization",), OOBA_FIELDS, False, 422, 512, "system"),
    "tabby": Flavour(
        "/v1", ("x-api-key", "authorization"), TABBY_FIELDS, False, 422, None, "tabbyAPI"
    ),
    "vllm": Flavour("/v1", ("authorization",), VLLM_FIELDS, owner="vllm"),
    "aphrodite": Flavour(
        "/v1",
        ("authorization",),
        {**VLLM_FIELDS, **OOBA_FIELDS, **GUIDED_FIELDS},
        owner="pygmalionai",
    ),
    "mancer": Flavour(
        "/oai/v1",
        ("x-api-key", "authorization"),
        {**OOBA_FIELDS, "dry_sequence_breakers": "any", "custom_token_bans": "any"},
    ),
    "dreamgen": Flavour(
        "/api/openai/v1",
        ("authorization",),
        {"min_p": NUMBER, "top_k": INT, "repetition_penalty": NUMBER},
        owner="dreamgen",
    ),
    "generic": Flavour("/v1", ("authorization",), {}, True, 400, 16, "openai"),
}


@dataclass
class TextOpenAIState(FakeState):
    """What the fake saw, and the knobs tests turn."""

    flavour: str = "generic"
    api_key: str | None = None
    model: str = "fake-text-1"
    legacy_guided: bool = False
    max_model_len: int = 4096
    token_delay: float = 0.0
    unknown_fields: list[str] = field(default_factory=list)
    stop_requests: int = 0
    runs: Runs = field(default_factory=Runs)

    @property
    def kind(self) -> Flavour:
        return FLAVOURS[self.flavour]

    def fields(self) -> dict[str, str]:
        """Every field this flavour knows, with its kind."""
        known = {**OPENAI_FIELDS, **self.kind.fields}
        if self.flavour == "vllm":
            known.update(GUIDED_FIELDS if self.legacy_guided else {"structured_outputs": "object"})
        return known


def openai_error(status: int, message: str, kind: str, param: str | None = None) -> Response:
    return json_response(
        {"error": {"message": message, "type": kind, "param": param, "code": None}}, status
    )


def vllm_error(status: int, message: str, kind: str = "BadRequestError") -> Response:
    return json_response(
        {"error": {"message": message, "type": kind, "param": None, "code": status}}, status
    )


def bad_request(state: TextOpenAIState, message: str) -> Response:
    """A refusal in the flavour's own shape."""
    if state.flavour in ("textgen", "tabby"):
        return json_response({"detail": message}, 400)
    if state.flavour in ("vllm", "aphrodite"):
        return vllm_error(400, message)
    return openai_error(400, message, "invalid_request_error")


def type_error(state: TextOpenAIState, wrong: dict[str, str], body: dict[str, Any]) -> Response:
    """The flavour's answer to wrong-typed fields."""
    if state.kind.bad_type_status == 422:
        detail = [
            {
                "type": f"{kind.split('|')[0].split('[')[0]}_type",
                "loc": ["body", name],
                "msg": f"Input should be a valid {kind}",
                "input": body[name],
            }
            for name, kind in wrong.items()
        ]
        return json_response({"detail": detail}, 422)
    name, kind = next(iter(wrong.items()))
    return bad_request(state, f"{name}: Input should be a valid {kind}")


def constrained(state: TextOpenAIState, body: dict[str, Any]) -> str | None:
    """The text a constraint the flavour honours forces, if any."""
    known = state.fields()
    wanted: dict[str, Any] = {}
    if "structured_outputs" in known and isinstance(body.get("structured_outputs"), dict):
        wanted = body["structured_outputs"]
    for name in GUIDED_FIELDS:
        if name in known and name in body:
            wanted[name.removeprefix("guided_")] = body[name]
    if state.flavour == "tabby":
        wanted.update(
            {k: body[k] for k in ("json_schema", "regex_pattern", "grammar_string") if k in body}
        )
    if state.flavour in ("textgen", "aphrodite", "mancer") and "grammar_string" in body:
        wanted["grammar"] = body["grammar_string"]
    fmt = body.get("response_format") if "response_format" in known else None
    if isinstance(fmt, dict) and fmt.get("type") == "json_schema":
        wanted.setdefault("json", (fmt.get("json_schema") or {}).get("schema") or {})
    schema = wanted.get("json", wanted.get("json_schema"))
    if schema is not None:
        return orjson.dumps(
            sample(orjson.loads(schema) if isinstance(schema, str) else schema)
        ).decode()
    if wanted.get("choice"):
        return str(wanted["choice"][0])
    if "regex" in wanted or "regex_pattern" in wanted:
        return REGEX_TEXT
    grammar = wanted.get("grammar", wanted.get("grammar_string"))
    return grammar_text(grammar) if isinstance(grammar, str) else None


def choice_texts(state: TextOpenAIState, body: dict[str, Any], prompt: str) -> Generation:
    """One choice's generation for *prompt*."""
    forced = constrained(state, body)
    if forced is not None:
        return Generation(pieces(forced), "stop")
    limit = body.get("max_tokens", body.get("max_length", state.kind.default_max_tokens))
    stop = body.get("stop", body.get("stop_sequence")) or []
    stops = [stop] if isinstance(stop, str) else stop
    made = generate(echo_pieces(prompt), limit, stops, bool(body.get("include_stop_str_in_output")))
    fmt = body.get("response_format")
    structured = body.get("structured_outputs") if "structured_outputs" in state.fields() else None
    if (
        isinstance(fmt, dict)
        and fmt.get("type") == "json_object"
        and "response_format" in state.fields()
    ) or (isinstance(structured, dict) and structured.get("json_object")):
        return Generation(pieces(orjson.dumps({"text": made.text}).decode()), "stop")
    return made


def logprobs_of(tokens: list[str], top: int, start: int = 0) -> dict[str, Any]:
    offsets, at = [], start
    for token in tokens:
        offsets.append(at)
        at += len(token)
    return {
        "tokens": tokens,
        "token_logprobs": [-0.25] * len(tokens),
        "top_logprobs": [
            {t: -0.25, **{f"{t}~{i}": -1.0 - i for i in range(1, top)}} for t in tokens
        ],
        "text_offset": offsets,
    }


def build_app(state: TextOpenAIState) -> Starlette:
    """The fake's routes for every flavour; each answers only under its flavour's base."""

    def refused(request: Request, base: str) -> Response | None:
        if base != state.kind.base:
            return Response("Not Found", 404, media_type="text/plain")
        if state.api_key is None:
            return None
        keys = [
            bearer(request) if name == "authorization" else request.headers.get(name)
            for name in state.kind.auth
        ]
        if state.api_key in keys:
            return None
        if state.flavour == "tabby":
            message = "Invalid API key" if any(keys) else "Please provide an API key"
            return json_response({"detail": message}, 401)
        if state.flavour == "textgen":
            return json_response({"detail": "Unauthorized"}, 401)
        if state.flavour in ("vllm", "aphrodite"):
            return json_response({"error": "Unauthorized"}, 401)
        return openai_error(401, "Incorrect API key provided.", "invalid_request_error")

    def base_of(request: Request) -> str:
        return request.url.path.rsplit("/", 1)[0]

    def check(body: Any) -> Response | None:
        if not isinstance(body, dict) or "prompt" not in body:
            if state.kind.bad_type_status == 422:
                detail = [
                    {
                        "type": "missing",
                        "loc": ["body", "prompt"],
                        "msg": "Field required",
                        "input": body,
                    }
                ]
                return json_response({"detail": detail}, 422)
            return bad_request(state, "'prompt' is a required property")
        known = state.fields()
        unknown = [name for name in body if name not in known]
        state.unknown_fields.extend(unknown)
        if unknown and state.kind.refuse_unknown:
            return openai_error(
                400,
                f"Unrecognized request argument supplied: {unknown[0]}",
                "invalid_request_error",
            )
        wrong = type_problems(body, known)
        if wrong:
            return type_error(state, wrong, body)
        if state.flavour in ("vllm", "aphrodite"):
            return vllm_checks(body)
        return None

    def vllm_checks(body: dict[str, Any]) -> Response | None:
        if body.get("model") not in (None, state.model):
            return vllm_error(404, f"The model `{body['model']}` does not exist.", "NotFoundError")
        if body.get("suffix") is not None:
            return vllm_error(400, "suffix is not currently supported")
        if (body.get("logprobs") or 0) > 20:
            return vllm_error(
                400,
                f"Requested sample logprobs of {body['logprobs']}, which is greater than"
                " max allowed: 20",
            )
        structured = body.get("structured_outputs")
        if isinstance(structured, dict) and "structured_outputs" in state.fields():
            kinds = [
                k
                for k in ("json", "regex", "choice", "grammar", "json_object", "structural_tag")
                if structured.get(k) is not None
            ]
            if len(kinds) > 1:
                return vllm_error(
                    400,
                    "You can only use one kind of structured outputs constraint but multiple"
                    f" are specified: {structured}",
                )
        prompts = [body["prompt"]] if isinstance(body["prompt"], str) else body["prompt"]
        for prompt in prompts:
            asked, wanted = len(token_ids(prompt)) + 1, int(body.get("max_tokens") or 0)
            if asked + wanted > state.max_model_len:
                return vllm_error(
                    400,
                    f"This model's maximum context length is {state.max_model_len} tokens."
                    f" However, you requested {asked + wanted} tokens ({asked} in the messages,"
                    f" {wanted} in the completion). Please reduce the length of the messages"
                    " or completion.",
                )
        return None

    def answers(body: dict[str, Any]) -> list[tuple[str, Generation]]:
        prompts = [body["prompt"]] if isinstance(body["prompt"], str) else body["prompt"]
        n = int(body.get("n") or 1)
        return [(p, choice_texts(state, body, p)) for p in prompts for _ in range(n)]

    def usage(made: list[tuple[str, Generation]]) -> dict[str, int]:
        prompt = sum(len(token_ids(p)) + 1 for p in {p for p, _ in made})
        completion = sum(len(g.pieces) for _, g in made)
        return {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
        }

    def head(body: dict[str, Any]) -> dict[str, Any]:
        return {
            "id": "cmpl-fake123",
            "object": "text_completion",
            "created": 1_700_000_000,
            "model": body.get("model") or state.model,
        }

    async def stream(
        body: dict[str, Any], made: list[tuple[str, Generation]]
    ) -> AsyncIterator[bytes]:
        top = body.get("logprobs")
        stopped = state.runs.start(str(id(body)))
        try:
            for index, (prompt, result) in enumerate(made):
                sent = 0
                if body.get("echo"):
                    yield frame(body, index, prompt, None, None)
                async for piece in paced(result.pieces, state.token_delay, stopped):
                    sent += 1
                    logprobs = logprobs_of([piece], top) if top is not None else None
                    yield frame(body, index, piece, None, logprobs)
                finish = result.finish if sent == len(result.pieces) else "stop"
                yield frame(body, index, "", finish, None)
        finally:
            state.runs.finish(str(id(body)))
        if (body.get("stream_options") or {}).get("include_usage"):
            yield (
                b"data: "
                + orjson.dumps({**head(body), "choices": [], "usage": usage(made)})
                + b"\n\n"
            )
        yield b"data: [DONE]\n\n"

    def frame(
        body: dict[str, Any], index: int, text: str, finish: str | None, logprobs: Any
    ) -> bytes:
        choice = {"text": text, "index": index, "logprobs": logprobs, "finish_reason": finish}
        return b"data: " + orjson.dumps({**head(body), "choices": [choice]}) + b"\n\n"

    async def completions(request: Request) -> Response:
        body = await state.record(request)
        denied = refused(request, base_of(request))
        if denied:
            return denied
        problem = check(body)
        if problem:
            return problem
        made = answers(body)
        if body.get("stream"):
            return StreamingResponse(stream(body, made), media_type="text/event-stream")
        top = body.get("logprobs")
        choices = []
        for index, (prompt, result) in enumerate(made):
            text = (prompt if body.get("echo") else "") + result.text
            logprobs = (
                logprobs_of(result.pieces, top, len(text) - len(result.text))
                if top is not None
                else None
            )
            choices.append(
                {"text": text, "index": index, "logprobs": logprobs, "finish_reason": result.finish}
            )
        return json_response({**head(body), "choices": choices, "usage": usage(made)})

    def model_entry() -> dict[str, Any]:
        entry: dict[str, Any] = {
            "id": state.model,
            "object": "model",
            "created": 1_700_000_000,
            "owned_by": state.kind.owner,
        }
        if state.flavour in ("vllm", "aphrodite"):
            entry.update(
                {"root": state.model, "parent": None, "max_model_len": state.max_model_len}
            )
        if state.flavour == "tabby":
            entry["parameters"] = {
                "max_seq_len": state.max_model_len,
                "cache_size": state.max_model_len,
                "prompt_template": "chatml",
            }
        return entry

    async def models(request: Request) -> Response:
        await state.record(request)
        denied = refused(request, base_of(request))
        return denied or json_response({"object": "list", "data": [model_entry()]})

    async def one_model(request: Request) -> Response:
        await state.record(request)
        denied = refused(request, "/oai/v1" if state.flavour == "mancer" else "")
        if denied:
            return denied
        if request.path_params["model"] != state.model:
            return openai_error(404, "The model does not exist.", "invalid_request_error")
        return json_response(model_entry())

    def only(flavours: tuple[str, ...], request: Request, public: bool = False) -> Response | None:
        if state.flavour not in flavours:
            return Response("Not Found", 404, media_type="text/plain")
        return None if public else refused(request, state.kind.base)

    async def tokens_route(request: Request) -> Response:
        body = await state.record(request) or {}
        path = request.url.path
        flavours = {
            "/v1/internal/encode": ("textgen",),
            "/v1/internal/token-count": ("textgen",),
            "/v1/token/encode": ("tabby",),
            "/tokenize": ("vllm",),
            "/v1/tokenize": ("aphrodite",),
        }[path]
        denied = only(flavours, request)
        if denied:
            return denied
        ids = token_ids(str(body.get("text", body.get("prompt", ""))))
        if path == "/v1/internal/token-count":
            return json_response({"length": len(ids)})
        if flavours[0] in ("vllm", "aphrodite"):
            if path == "/tokenize" and body.get("model") not in (None, state.model):
                return vllm_error(
                    404, f"The model `{body['model']}` does not exist.", "NotFoundError"
                )
            return json_response(
                {"tokens": ids, "count": len(ids), "max_model_len": state.max_model_len}
            )
        return json_response({"tokens": ids, "length": len(ids)})

    async def info(request: Request) -> Response:
        await state.record(request)
        path = request.url.path
        if path == "/health":
            denied = only(("tabby", "vllm"), request, public=True)
            if denied or state.flavour == "vllm":
                return denied or Response(b"", 200)
            return json_response({"status": "healthy", "issues": []})
        if path in ("/v1/model", "/v1/model/list"):
            denied = only(("tabby",), request)
            if denied:
                return denied
            return json_response(
                model_entry()
                if path == "/v1/model"
                else {"object": "list", "data": [model_entry()]}
            )
        if path == "/version":
            return only(("vllm",), request) or json_response(
                {"version": "0.11.0" if state.legacy_guided else "0.12.0"}
            )
        denied = only(("textgen",), request)
        if denied:
            return denied
        if path == "/v1/internal/health":
            return json_response({"status": "ok"})
        return json_response({"model_name": state.model, "lora_names": [], "loader": "llama.cpp"})

    async def stop_generation(request: Request) -> Response:
        await state.record(request)
        denied = only(("textgen",), request)
        if denied:
            return denied
        state.stop_requests += 1
        state.runs.stop()
        return json_response("OK")

    bases = ["/v1", "/oai/v1", "/api/openai/v1"]
    return Starlette(
        routes=[
            *[Route(f"{b}/completions", completions, methods=["POST"]) for b in bases],
            *[Route(f"{b}/models", models, methods=["GET"]) for b in bases],
            Route("/oai/v1/models/{model}", one_model, methods=["GET"]),
            *[
                Route(p, tokens_route, methods=["POST"])
                for p in (
                    "/v1/internal/encode",
                    "/v1/internal/token-count",
                    "/v1/token/encode",
                    "/tokenize",
                    "/v1/tokenize",
                )
            ],
            *[
                Route(p, info, methods=["GET"])
                for p in (
                    "/health",
                    "/version",
                    "/v1/model",
                    "/v1/model/list",
                    "/v1/internal/model/info",
                    "/v1/internal/health",
                )
            ],
            Route("/v1/internal/stop-generation", stop_generation, methods=["POST"]),
        ]
    )
