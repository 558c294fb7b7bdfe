"""A fake Ollama (its native ``/api`` surface) on loopback, written from Ollama's API docs.

Routes:

- ``POST /api/generate``: ``model`` (required), ``prompt``, ``raw``, ``system``,
  ``template``, ``suffix``, ``images`` (base64 strings), ``format`` (``"json"`` or a JSON
  schema), ``options`` (``num_predict``, ``num_ctx``, ``temperature``, ``top_k``, ``top_p``,
  ``min_p``, ``repeat_penalty``, ``seed``, ``stop``, …), ``keep_alive``, ``stream``
  (default **true**). A stream is NDJSON (``application/x-ndjson``): lines ``{"model",
  "created_at", "response", "done": false}``, the last ``{"done": true, "done_reason":
  "stop"|"length", "total_duration", "load_duration", "prompt_eval_count",
  "prompt_eval_duration", "eval_count", "eval_duration"}`` (plus ``context``, token ids,
  unless ``raw``). ``stream: false``: one object with the whole ``response``. An empty
  prompt only loads the model: one object with ``done_reason: "load"`` (``"unload"``
  with ``keep_alive: 0``).
- ``POST /api/chat``: ``messages`` (``role``, ``content``, ``images``, ``tool_calls`` whose
  ``function.arguments`` must be an **object**, ``tool_name``), ``tools``, ``format``,
  ``options``, ``stream``; lines carry ``message: {"role": "assistant", "content"}``; a
  tool call comes whole in one line's ``message.tool_calls``.
- ``GET /api/tags`` (``name``, ``model``, ``modified_at``, ``size``, ``digest``,
  ``details``), ``POST /api/show`` (``modelfile``, ``parameters``, the Go ``template``,
  ``details``, ``model_info``, ``capabilities``; the template is Ollama's Go
  text/template, not the GGUF Jinja one, and ``model_info`` holds no chat template),
  ``GET /api/ps`` (models used with a non-zero ``keep_alive``), ``GET /api/version``,
  ``GET|HEAD /`` → ``Ollama is running``.

Checks: no ``model`` → 400 ``{"error": "model is required"}``; an unknown model → 404
``{"error": "model 'x' not found"}`` (a name without a tag means ``:latest``); a body
field of the wrong JSON type → 400 with Go's ``json: cannot unmarshal …`` message (string
tool-call arguments among them); an ``options`` value of the wrong type → 400 ``option
"x" must be of type …``; an unknown option is ignored with a warning, and recorded in
`OllamaState.ignored_options`.

The text comes from the request: the last non-blank line of the prompt (of the last
message for chat), a word a line (`common.echo_pieces`), cut at ``num_predict`` (finish
``length``) and before the first ``stop`` string. ``format: "json"`` answers
``{"text": <that text>}``; a schema answers `common.sample` of it. A last ``tool``
message is answered ``The tool said: <content>``.

Model names pick the behaviour (any such name exists): ``error-NNN`` (status NNN,
``{"error": "the fake says NNN"}``), ``oops-*`` (after two lines an ``{"error": …}`` line
ends the stream; not streamed: 500), ``tool-*`` (calls the first offered tool with
arguments sampled from its schema), ``slow-*`` (lines 0.2 s apart; a client that goes
away is recorded in `OllamaState.disconnects` with the lines sent and when).
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route

from tests.fakes.common import (
    FakeState,
    Generation,
    echo_pieces,
    generate,
    json_response,
    pieces,
    sample,
    token_ids,
)

SLOW_DELAY = 0.2
VERSION = "0.12.6"

CHATML_GO = """{{- if .Messages }}
{{- if .System }}<|im_start|>system
{{ .System }}<|im_end|>
{{ end }}
{{- range $i, $_ := .Messages }}
{{- $last := eq (len (slice $.Messages $i)) 1 -}}
{{- if eq .Role "user" }}<|im_start|>user
{{ .Content }}<|im_end|>
{{ else if eq .Role "assistant" }}<|im_start|>assistant
{{ if .Content }}{{ .Content }}
{{- else if .ToolCalls }}<tool_call>
{{ range .ToolCalls }}{"name": "{{ .Function.Name }}", "arguments": {{ .Function.Arguments }}}
{{ end }}</tool_call>
{{- end }}{{ if not $last }}<|im_end|>
{{ end }}
{{- else if eq .Role "tool" }}<|im_start|>user
<tool_response>
{{ .Content }}
</tool_response><|im_end|>
{{ end }}
{{- if and (ne .Role "assistant") $last }}<|im_start|>assistant
{{ end }}
{{- end }}
{{- else }}
{{- if .System }}<|im_start|>system
{{ .System }}<|im_end|>
{{ end }}{{ if .Prompt }}<|im_start|>user
{{ .Prompt }}<|im_end|>
{{ end }}<|im_start|>assistant
{{ end }}{{ .Response }}{{ if .Response }}<|im_end|>{{ end }}"""
"""A Go template of the kind Ollama ships for ChatML models (Qwen 2.5)."""

LLAMA3_GO = """{{- if .System }}<|start_header_id|>system<|end_header_id|>

{{ .System }}<|eot_id|>
{{- end }}
{{- range $i, $_ := .Messages }}
{{- $last := eq (len (slice $.Messages $i)) 1 }}
{{- if ne .Role "system" }}<|start_header_id|>{{ .Role }}<|end_header_id|>

{{ .Content }}{{ if not $last }}<|eot_id|>{{ end }}
{{- if and $last (ne .Role "assistant") }}<|eot_id|><|start_header_id|>assistant<|end_header_id|>

{{ end }}
{{- end }}
{{- end }}"""
"""A Go template of the kind Ollama ships for Llama 3 models."""


@dataclass
class OllamaModel:
    """One model the fake has pulled."""

    family: str = "qwen2"
    parameter_size: str = "494.03M"
    parameter_count: int = 494_032_768
    quantization: str = "Q4_K_M"
    template: str = CHATML_GO
    stops: tuple[str, ...] = ("<|im_start|>", "<|im_end|>")
    context_length: int = 32768
    capabilities: tuple[str, ...] = ("completion", "tools")
    size: int = 397_821_319


def default_models() -> dict[str, OllamaModel]:
    return {
        "qwen2.5:0.5b": OllamaModel(),
        "llama3.2:latest": OllamaModel(
            family="llama",
            parameter_size="3.2B",
            parameter_count=3_212_749_888,
            template=LLAMA3_GO,
            stops=("<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"),
            context_length=131072,
            size=2_019_393_189,
        ),
    }


@dataclass
class Disconnect:
    """A client that went away mid-stream."""

    model: str
    lines: int
    at: float  # time.monotonic()


@dataclass
class OllamaState(FakeState):
    """What the fake saw, and the knobs tests turn."""

    models: dict[str, OllamaModel] = field(default_factory=default_models)
    loaded: dict[str, str] = field(default_factory=dict)  # name → expires_at
    ignored_options: list[str] = field(default_factory=list)
    disconnects: list[Disconnect] = field(default_factory=list)


GO_TYPES = {
    "str": "string",
    "bool": "bool",
    "list": "[]string",
    "object": "map[string]interface {}",
}
REQUEST_FIELDS = {
    "GenerateRequest": {
        "model": "str",
        "prompt": "str",
        "suffix": "str",
        "system": "str",
        "template": "str",
        "raw": "bool",
        "stream": "bool",
        "images": "list",
        "options": "object",
    },
    "ChatRequest": {"model": "str", "stream": "bool", "options": "object", "tools": "list"},
}
OPTIONS = {
    **dict.fromkeys(
        ("num_predict", "num_ctx", "top_k", "seed", "repeat_last_n", "num_keep", "num_batch"),
        "integer",
    ),
    **dict.fromkeys(("num_gpu", "main_gpu", "num_thread"), "integer"),
    **dict.fromkeys(
        ("temperature", "top_p", "min_p", "typical_p", "repeat_penalty", "presence_penalty"),
        "float32",
    ),
    "frequency_penalty": "float32",
    "use_mmap": "boolean",
    "stop": "array of strings",
}


def json_kind(value: Any) -> str:
    """The JSON type of *value*, as Go's decoder names it."""
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    return "array" if isinstance(value, list) else "object" if isinstance(value, dict) else "null"


def unmarshal_error(struct: str, name: str, value: Any, go_type: str) -> Response:
    message = (
        f"json: cannot unmarshal {json_kind(value)} into Go struct field"
        f" {struct}.{name} of type {go_type}"
    )
    return json_response({"error": message}, 400)


def body_problem(body: dict[str, Any], struct: str) -> Response | None:
    """Go's decoding error for a wrong-typed field, if any."""
    checks = {"str": str, "bool": bool, "list": list, "object": dict}
    for name, kind in REQUEST_FIELDS[struct].items():
        value = body.get(name)
        if value is not None and not isinstance(value, checks[kind]):
            return unmarshal_error(struct, name, value, GO_TYPES[kind])
    return None


def messages_problem(messages: Any) -> Response | None:
    """Go's decoding error for the chat messages, if any."""
    if not isinstance(messages, list):
        return unmarshal_error("ChatRequest", "messages", messages, "[]api.Message")
    for message in messages:
        for name in ("role", "content", "tool_name", "thinking"):
            value = message.get(name)
            if value is not None and not isinstance(value, str):
                return unmarshal_error("ChatRequest", f"messages.{name}", value, "string")
        for call in message.get("tool_calls") or []:
            arguments = (call.get("function") or {}).get("arguments")
            if not isinstance(arguments, dict):
                return unmarshal_error(
                    "ToolCallFunction",
                    "messages.tool_calls.function.arguments",
                    arguments,
                    "api.ToolCallFunctionArguments",
                )
    return None


def options_problem(options: dict[str, Any], state: OllamaState) -> Response | None:
    """Ollama's refusal of a wrong-typed option, if any; unknown options are recorded."""
    for name, value in options.items():
        kind = OPTIONS.get(name)
        if kind is None:
            state.ignored_options.append(name)
            continue
        ok = {
            "integer": isinstance(value, int | float) and not isinstance(value, bool),
            "float32": isinstance(value, int | float) and not isinstance(value, bool),
            "boolean": isinstance(value, bool),
            "array of strings": isinstance(value, list) and all(isinstance(s, str) for s in value),
        }[kind]
        if not ok:
            return json_response({"error": f'option "{name}" must be of type {kind}'}, 400)
    return None


def now() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


def formatted(fmt: Any, text: str) -> str | None:
    """What ``format`` makes of the answer; ``None`` without a format."""
    if fmt == "json":
        return orjson.dumps({"text": text}).decode()
    if isinstance(fmt, dict):
        return orjson.dumps(sample(fmt)).decode()
    return None


def build_app(state: OllamaState) -> Starlette:
    """The fake's routes."""

    def find(name: str) -> OllamaModel | None:
        full = name if ":" in name else f"{name}:latest"
        if full in state.models:
            return state.models[full]
        if name.startswith(("error-", "oops-", "slow-", "tool-")):
            return OllamaModel()
        return None

    def details(model: OllamaModel) -> dict[str, Any]:
        return {
            "parent_model": "",
            "format": "gguf",
            "family": model.family,
            "families": [model.family],
            "parameter_size": model.parameter_size,
            "quantization_level": model.quantization,
        }

    def entry(name: str, model: OllamaModel) -> dict[str, Any]:
        return {
            "name": name,
            "model": name,
            "modified_at": "2025-01-01T00:00:00Z",
            "size": model.size,
            "digest": hashlib.sha256(name.encode()).hexdigest(),
            "details": details(model),
        }

    async def checked(
        request: Request, struct: str
    ) -> tuple[dict[str, Any], OllamaModel] | Response:
        """The body and model of a generate or chat request, or the answer refusing it."""
        body = await state.record(request)
        if not isinstance(body, dict):
            return json_response({"error": "unexpected EOF"}, 400)
        problem = body_problem(body, struct)
        if problem:
            return problem
        name = body.get("model")
        if not name:
            return json_response({"error": "model is required"}, 400)
        model = find(name)
        if model is None:
            return json_response({"error": f"model '{name}' not found"}, 404)
        fmt = body.get("format")
        if fmt not in (None, "", "json") and not isinstance(fmt, dict):
            return json_response({"error": 'invalid format: expected "json" or a JSON schema'}, 400)
        problem = options_problem(body.get("options") or {}, state)
        if problem:
            return problem
        if name.startswith("error-"):
            status = int(name.split("-")[1])
            return json_response({"error": f"the fake says {status}"}, status)
        full = name if ":" in name else f"{name}:latest"
        if body.get("keep_alive") in (0, "0", "0s"):
            state.loaded.pop(full, None)
        else:
            state.loaded[full] = "2099-01-01T00:00:00Z"
        return body, model

    def loaded_only(body: dict[str, Any]) -> Response:
        reason = "unload" if body.get("keep_alive") in (0, "0", "0s") else "load"
        head: dict[str, Any] = {"model": body["model"], "created_at": now()}
        if "messages" in body:
            head["message"] = {"role": "assistant", "content": ""}
        else:
            head["response"] = ""
        return json_response({**head, "done": True, "done_reason": reason})

    def made(body: dict[str, Any], source: str) -> Generation:
        options = body.get("options") or {}
        limit = options.get("num_predict")
        limit = int(limit) if isinstance(limit, int | float) and limit >= 0 else None
        result = generate(echo_pieces(source), limit, options.get("stop") or [])
        shaped = formatted(body.get("format"), result.text)
        return Generation(pieces(shaped), "stop") if shaped is not None else result

    def counts(body: dict[str, Any], prompt: str, result: Generation) -> dict[str, Any]:
        evaluated, produced = len(token_ids(prompt)) + 1, len(result.pieces)
        tail: dict[str, Any] = {
            "done": True,
            "done_reason": result.finish,
            "total_duration": 5_000_000 + 2_000_000 * produced,
            "load_duration": 1_000_000,
            "prompt_eval_count": evaluated,
            "prompt_eval_duration": 1_500_000,
            "eval_count": produced,
            "eval_duration": 2_000_000 * produced,
        }
        if "messages" not in body and not body.get("raw"):
            tail["context"] = token_ids(prompt + result.text)
        return tail

    async def lines(
        body: dict[str, Any], heads: list[dict[str, Any]], last: dict[str, Any]
    ) -> AsyncIterator[bytes]:
        name = str(body["model"])
        sent = 0
        try:
            for number, head in enumerate(heads):
                if sent and name.startswith("slow-"):
                    await asyncio.sleep(SLOW_DELAY)
                if number == 2 and name.startswith("oops-"):
                    message = "an error was encountered while running the model: unexpected EOF"
                    yield orjson.dumps({"error": message}) + b"\n"
                    return
                yield orjson.dumps({"model": name, "created_at": now(), **head}) + b"\n"
                sent += 1
            if name.startswith("slow-"):
                await asyncio.sleep(SLOW_DELAY)
            yield orjson.dumps({"model": name, "created_at": now(), **last}) + b"\n"
        except (asyncio.CancelledError, GeneratorExit):
            state.disconnects.append(Disconnect(name, sent, time.monotonic()))
            raise

    def respond(
        body: dict[str, Any],
        heads: list[dict[str, Any]],
        last: dict[str, Any],
        whole: dict[str, Any],
    ) -> Response:
        if body.get("stream", True):
            return StreamingResponse(lines(body, heads, last), media_type="application/x-ndjson")
        if str(body["model"]).startswith("oops-"):
            message = "an error was encountered while running the model: unexpected EOF"
            return json_response({"error": message}, 500)
        return json_response({"model": body["model"], "created_at": now(), **last, **whole})

    async def generate_route(request: Request) -> Response:
        checked_ = await checked(request, "GenerateRequest")
        if isinstance(checked_, Response):
            return checked_
        body, _ = checked_
        prompt = str(body.get("prompt") or "")
        images = body.get("images") or []
        if not all(isinstance(i, str) for i in images):
            return unmarshal_error("GenerateRequest", "images", images, "[]api.ImageData")
        if not prompt and not images:
            return loaded_only(body)
        result = made(body, prompt)
        last = {"response": "", **counts(body, prompt, result)}
        heads = [{"response": p, "done": False} for p in result.pieces]
        return respond(body, heads, last, {"response": result.text})

    async def chat(request: Request) -> Response:
        checked_ = await checked(request, "ChatRequest")
        if isinstance(checked_, Response):
            return checked_
        body, _ = checked_
        messages = body.get("messages")
        if messages is None or messages == []:
            return loaded_only({**body, "messages": []})
        problem = messages_problem(messages)
        if problem:
            return problem
        lastmsg = messages[-1]
        prompt = "\n".join(str(m.get("content") or "") for m in messages)
        tools = body.get("tools") or []
        empty = {"role": "assistant", "content": ""}
        if str(body["model"]).startswith("tool-") and tools and lastmsg.get("role") != "tool":
            function = tools[0]["function"]
            call = {
                "function": {
                    "index": 0,
                    "name": function["name"],
                    "arguments": sample(function.get("parameters") or {}),
                }
            }
            message = {**empty, "tool_calls": [call]}
            result = Generation([], "stop")
            last = {"message": empty, **counts(body, prompt, result)}
            return respond(body, [{"message": message, "done": False}], last, {"message": message})
        source = str(lastmsg.get("content") or "")
        if lastmsg.get("role") == "tool":
            source = f"The tool said: {source}"
        result = made(body, source)
        last = {"message": empty, **counts(body, prompt, result)}
        heads = [{"message": {**empty, "content": p}, "done": False} for p in result.pieces]
        return respond(body, heads, last, {"message": {**empty, "content": result.text}})

    async def tags(request: Request) -> Response:
        await state.record(request)
        return json_response({"models": [entry(n, m) for n, m in state.models.items()]})

    async def show(request: Request) -> Response:
        body = await state.record(request) or {}
        name = body.get("model") or body.get("name")
        if not name:
            return json_response({"error": "model is required"}, 400)
        model = find(name)
        if model is None:
            return json_response({"error": f"model '{name}' not found"}, 404)
        parameters = "\n".join(f'stop{" " * 27}"{s}"' for s in model.stops)
        modelfile = (
            '# Modelfile generated by "ollama show"\n'
            f"FROM /root/.ollama/models/blobs/sha256-{entry(name, model)['digest']}\n"
            f'TEMPLATE """{model.template}"""\n'
            + "".join(f"PARAMETER stop {s}\n" for s in model.stops)
        )
        info = {
            "general.architecture": model.family,
            "general.file_type": 15,
            "general.parameter_count": model.parameter_count,
            "general.quantization_version": 2,
            f"{model.family}.context_length": model.context_length,
            f"{model.family}.embedding_length": 896,
            f"{model.family}.block_count": 24,
            "tokenizer.ggml.model": "gpt2",
            "tokenizer.ggml.tokens": None,
            "tokenizer.ggml.merges": None,
        }
        return json_response(
            {
                "license": "Apache License 2.0",
                "modelfile": modelfile,
                "parameters": parameters,
                "template": model.template,
                "details": details(model),
                "model_info": info,
                "capabilities": list(model.capabilities),
                "modified_at": "2025-01-01T00:00:00Z",
            }
        )

    async def ps(request: Request) -> Response:
        await state.record(request)
        running = []
        for name, expires in state.loaded.items():
            model = find(name) or OllamaModel()
            running.append(
                {
                    **entry(name, model),
                    "expires_at": expires,
                    "size_vram": 0,
                    "context_length": 4096,
                }
            )
        return json_response({"models": running})

    async def version(request: Request) -> Response:
        await state.record(request)
        return json_response({"version": VERSION})

    async def root(request: Request) -> Response:
        await state.record(request)
        return PlainTextResponse("Ollama is running")

    return Starlette(
        routes=[
            Route("/api/generate", generate_route, methods=["POST"]),
            Route("/api/chat", chat, methods=["POST"]),
            Route("/api/tags", tags, methods=["GET"]),
            Route("/api/show", show, methods=["POST"]),
            Route("/api/ps", ps, methods=["GET"]),
            Route("/api/version", version, methods=["GET"]),
            Route("/", root, methods=["GET", "HEAD"]),
        ]
    )
