"""Ollama's native API: ``/api/generate`` with a prompt chatgate renders, or ``/api/chat``.

By default (``ollama_api = "generate"``) the chat becomes one prompt string
(`chatgate.adapters.text_prompt`) sent with ``raw: true``, so Ollama applies no template
of its own; the samplers, the stop strings and ``num_ctx`` (the context the prompt was
fitted to) go in ``options``, as do the Ollama options a client names itself
(``num_keep``, ``typical_p``, ``mirostat``…). With ``ollama_api = "chat"`` the messages
go to ``/api/chat`` as they are (images as base64, tool-call arguments as objects) and
Ollama's own template renders the prompt.

Ollama streams unless told otherwise, so ``stream`` is always sent. A stream is NDJSON:
``{"response": "...", "done": false}`` lines (``message.content`` for chat), the last
``"done": true`` with ``done_reason`` and the token counts; an ``{"error": ...}`` line
ends it with an error. ``format`` takes ``"json"`` or a JSON schema. ``/api/show`` tells
a model's Go template (its telltale sequences pick the instruct preset, as a Jinja
template's would) and its context; Ollama has no tokenizer endpoint, and closing the
connection stops the generation.
"""

from __future__ import annotations

from typing import Any

import orjson

from chatgate.adapters.images import image
from chatgate.adapters.text_base import (
    Samplers,
    TextAdapter,
    TextAnswer,
    TextReader,
    finish_of,
)
from chatgate.adapters.text_prompt import ModelFacts, TextPrompt, max_new_tokens
from chatgate.adapters.wire import arguments, call_id, lie, stream_error
from chatgate.errors import InvalidRequestError
from chatgate.types import (
    AssistantMessage,
    ChatChunk,
    ChatRequest,
    ChatResponse,
    Choice,
    Delta,
    FunctionCall,
    ImagePart,
    JSONObjectFormat,
    JSONSchemaFormat,
    Message,
    ToolCall,
    ToolCallDelta,
)
from chatgate.upstream import Question, UpstreamRequest

# Ollama's own options a client may send; they travel inside ``options``.
OPTION_NATIVES = frozenset(
    {
        "num_ctx", "num_keep", "typical_p", "repeat_last_n", "mirostat", "mirostat_tau",
        "mirostat_eta", "num_batch", "num_thread", "num_gpu", "main_gpu", "use_mmap",
        "tfs_z", "penalize_newline",
    }
)  # fmt: skip
# Ollama's own request fields a client may send; they stay at the top level.
TOP_NATIVES = frozenset({"keep_alive", "think"})
CHAT_MODE_WHY = 'Ollama\'s own template renders the prompt (ollama_api = "chat")'

OLLAMA_CONTEXT = 4096  # Ollama's own num_ctx when a Modelfile sets none


class OllamaAdapter(TextAdapter):
    """Ollama's ``/api/generate`` (raw prompt) or ``/api/chat``."""

    samplers: Samplers = Samplers(
        max_tokens="num_predict",
        repetition_penalty="repeat_penalty",
        presence_penalty="presence_penalty",
        frequency_penalty="frequency_penalty",
    )
    native: frozenset[str] = OPTION_NATIVES | TOP_NATIVES
    json_output: bool = True
    # A raw prompt gets no BOS from a template; the model's tokenizer adds its own.
    adds_bos: bool = True
    id_prefix = "ollama-"

    @property
    def chat_mode(self) -> bool:
        """Whether the messages go to ``/api/chat`` (Ollama renders the prompt)."""
        return self.connection.text.ollama_api == "chat"

    def _headers(self) -> dict[str, str]:
        return self.headers()  # a key only for ollama.com's cloud; a local Ollama needs none

    # --- requests ------------------------------------------------------------------

    def unsupported(self, request: ChatRequest, set_names: list[str]) -> list[str]:
        """The text backends' rules; on ``/api/chat`` tools too (``tool_choice`` only as
        ``auto`` or ``none``: Ollama cannot force a call)."""
        refused = super().unsupported(request, set_names)
        if not self.chat_mode:
            return refused
        choice = request.tool_choice
        allowed = {"tools", "parallel_tool_calls"}
        if choice is None or choice in ("auto", "none"):
            allowed.add("tool_choice")
        return [name for name in refused if name not in allowed]

    def lookup(self, request: ChatRequest) -> Question | None:
        """The model's facts and a template's rendering; nothing on ``/api/chat``."""
        return None if self.chat_mode else super().lookup(request)

    def _split(self, fields: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
        """(top-level fields, ``options``) of the sampling *fields*."""
        top = {name: fields[name] for name in TOP_NATIVES if name in fields}
        options = {name: value for name, value in fields.items() if name not in TOP_NATIVES}
        return top, options

    def _payload(
        self, request: ChatRequest, top: dict[str, Any], options: dict[str, Any]
    ) -> dict[str, Any]:
        """What both endpoints share: the model, ``stream`` (always: Ollama streams by
        default), ``keep_alive``, ``format`` and ``options``."""
        payload: dict[str, Any] = {"model": request.model_name, "stream": bool(request.stream)}
        keep_alive = self.connection.text.keep_alive
        if keep_alive is not None:
            payload["keep_alive"] = keep_alive
        payload.update(top)
        fmt = request.response_format
        if isinstance(fmt, JSONSchemaFormat):
            payload["format"] = fmt.json_schema.schema_ or {"type": "object"}
        elif isinstance(fmt, JSONObjectFormat):
            payload["format"] = fmt.schema_ if fmt.schema_ is not None else "json"
        if options:
            payload["options"] = options
        return payload

    def _request(self, path: str, request: ChatRequest, payload: dict[str, Any]) -> UpstreamRequest:
        return UpstreamRequest(
            "POST",
            self.base_url + path,
            self._headers(),
            payload,
            stream=bool(request.stream),
            framing="ndjson",
        )

    def body(
        self, request: ChatRequest, prompt: TextPrompt, fields: dict[str, Any]
    ) -> UpstreamRequest:
        """``/api/generate`` with the raw prompt; ``num_ctx`` is the fitted context
        unless the client set its own."""
        top, options = self._split(fields)
        options.setdefault("num_ctx", prompt.explain["context_size"])
        payload = self._payload(request, top, options)
        payload["prompt"] = prompt.text
        payload["raw"] = True
        return self._request("/api/generate", request, payload)

    def build(self, request: ChatRequest, dropped: list[str]) -> UpstreamRequest:
        """``/api/generate`` with chatgate's prompt, or ``/api/chat`` with the messages."""
        if not self.chat_mode:
            return super().build(request, dropped)
        empty = TextPrompt("", [], {})
        fields = self.sampling(request, dropped, empty)
        if request.stop:
            fields["stop"] = request.stops
        top, options = self._split(fields)
        context = self.connection.text.context_size
        if context is not None:
            options.setdefault("num_ctx", context)
        payload = self._payload(request, top, options)
        payload["messages"] = chat_messages(request.messages)
        if request.tools and request.tool_choice != "none" and "tools" not in dropped:
            payload["tools"] = [tool.model_dump(mode="json") for tool in request.tools]
        upstream = self._request("/api/chat", request, payload)
        upstream.explain = {
            "template": "ollama",
            "why": CHAT_MODE_WHY,
            "max_new_tokens": max_new_tokens(request),
            "stop": request.stops,
        }
        return upstream

    # --- answers -------------------------------------------------------------------

    def _line(self, data: Any, what: str) -> dict[str, Any]:
        line = self.read.of(data, dict, what)
        if "error" in line:
            raise stream_error(self.connection, line["error"])
        return line

    def _answer(self, line: dict[str, Any]) -> TextAnswer:
        read = self.read
        if self.chat_mode:
            message = read.field(line, "message", dict) or {}
            text = read.field(message, "content", str) or ""
        else:
            text = read.field(line, "response", str) or ""
        if not read.field(line, "done", bool):
            return TextAnswer(text, None)
        return TextAnswer(
            text,
            finish_of(read.field(line, "done_reason", str)),
            read.count(line, "prompt_eval_count"),
            read.count(line, "eval_count"),
        )

    def read_answer(self, data: Any) -> TextAnswer:
        """``{"response", "done", "done_reason", "prompt_eval_count", "eval_count"}``."""
        answer = self._answer(self._line(data, "the answer"))
        if answer.finish is None:
            raise lie(self.connection, "the answer is not done")
        return answer

    def read_piece(self, data: Any) -> TextAnswer | None:
        """One NDJSON line; an ``{"error"}`` line raises."""
        return self._answer(self._line(data, "a stream line"))

    def parse_response(self, data: Any, model: str) -> ChatResponse:
        """A whole answer; on ``/api/chat`` with its tool calls and thinking."""
        response = super().parse_response(data, model)
        if self.chat_mode:
            message = self.read.field(data, "message", dict) or {}
            calls = tool_calls(self, message)
            thinking = self.read.field(message, "thinking", str)
            old = response.choices[0]
            response.choices[0] = Choice(
                0,
                AssistantMessage(old.message.content, calls or None, thinking or None),
                "tool_calls" if calls else old.finish_reason,
            )
        return response

    def reader(self, request: ChatRequest) -> TextReader:
        """A reader of Ollama's NDJSON lines."""
        if self.chat_mode:
            return OllamaChatReader(self, request.model)
        return TextReader(self, request.model)

    # --- what the server knows -----------------------------------------------------

    def facts_request(self, model: str) -> UpstreamRequest | None:
        """``POST /api/show``."""
        return UpstreamRequest(
            "POST", self.base_url + "/api/show", self._headers(), {"model": model}
        )

    def read_facts(self, data: Any) -> ModelFacts:
        """The Go ``template`` (its telltale sequences are a Jinja template's too, so
        the preset guesser reads it) and the context: the Modelfile's ``num_ctx``, else
        ``model_info["<arch>.context_length"]`` up to `OLLAMA_CONTEXT`. A Go template
        cannot be rendered as Jinja, so with ``chat_template = "backend"`` it is not
        offered as one."""
        read = self.read
        answer = read.of(data, dict, "/api/show")
        template = read.field(answer, "template", str)
        note = None
        if self.connection.text.chat_template == "backend" and template:
            template = None
            note = (
                "Ollama's template is Go text/template, not Jinja; "
                'ollama_api = "chat" lets Ollama render it'
            )
        context = _parameter(read.field(answer, "parameters", str) or "", "num_ctx")
        if context is None:
            info = read.field(answer, "model_info", dict) or {}
            arch = read.field(info, "general.architecture", str)
            if arch:
                trained = read.count(info, f"{arch}.context_length") or None
                # The model's whole trained context (128K for Llama 3.2) would make
                # Ollama allocate that much KV cache on every load: only up to what
                # Ollama itself would use, unless the connection sets context_size.
                context = min(trained, OLLAMA_CONTEXT) if trained else None
        return ModelFacts(chat_template=template, context_size=context, note=note)

    def models_request(self, base_url: str | None = None) -> UpstreamRequest:
        """``GET /api/tags``."""
        return UpstreamRequest("GET", (base_url or self.base_url) + "/api/tags", self._headers())

    def parse_models(self, data: Any) -> list[str]:
        """``models[].name``."""
        return self.listed(data, "models", "name")


class OllamaChatReader(TextReader):
    """``/api/chat`` lines: text as it comes, thinking as reasoning, a tool call whole
    in one line (and then the finish is ``tool_calls``)."""

    def __init__(self, adapter: OllamaAdapter, model: str) -> None:
        super().__init__(adapter, model)
        self.ollama = adapter
        self.calls = 0

    def feed(self, event: Any) -> list[ChatChunk]:
        """The chunks of one line: the role, the text, thinking and tool calls, then
        the finish."""
        out = super().feed(event)
        message = self.read.field(event, "message", dict) or {}
        extra: list[ChatChunk] = []
        thinking = self.read.field(message, "thinking", str)
        if thinking:
            extra.append(self.chunk(Delta(reasoning_content=thinking)))
        calls = tool_calls(self.ollama, message)
        if calls:
            deltas = [
                ToolCallDelta(self.calls + i, c.id, c.function.name, c.function.arguments)
                for i, c in enumerate(calls)
            ]
            self.calls += len(calls)
            extra.append(self.chunk(Delta(tool_calls=deltas)))
        last = out[-1] if out else None
        if last is not None and last.choices[0].finish_reason is not None:
            if self.calls:
                last.choices[0].finish_reason = "tool_calls"
            return out[:-1] + extra + [last]
        return out + extra


def chat_messages(messages: list[Message]) -> list[dict[str, Any]]:
    """The messages in ``/api/chat``'s shape: text content, ``images`` as base64,
    tool-call arguments as objects, a tool result with its function's ``tool_name``."""
    names: dict[str, str] = {}
    out: list[dict[str, Any]] = []
    for at, message in enumerate(messages):
        role = "system" if message.role == "developer" else message.role
        item: dict[str, Any] = {"role": role, "content": message.text()}
        if isinstance(message.content, list):
            images = []
            for part in message.content:
                if isinstance(part, ImagePart):
                    param = f"messages[{at}].content"
                    found = image(part.image_url.url, param)
                    if found.data is None:
                        raise InvalidRequestError(
                            "Ollama takes images inline: send a base64 data: URL",
                            param=param,
                        )
                    images.append(found.data)
            if images:
                item["images"] = images
        if message.tool_calls:
            calls = []
            for number, call in enumerate(message.tool_calls):
                names[call.id] = call.function.name
                param = f"messages[{at}].tool_calls[{number}].function.arguments"
                calls.append(
                    {
                        "function": {
                            "name": call.function.name,
                            "arguments": arguments(call.function.arguments, param),
                        }
                    }
                )
            item["tool_calls"] = calls
        if message.role == "tool" and message.tool_call_id in names:
            item["tool_name"] = names[message.tool_call_id]
        out.append(item)
    return out


def tool_calls(adapter: OllamaAdapter, message: dict[str, Any]) -> list[ToolCall]:
    """The tool calls of an ``/api/chat`` message (arguments are objects there)."""
    read = adapter.read
    calls: list[ToolCall] = []
    for call in read.items(message, "tool_calls", dict):
        function = read.need(call, "function", dict)
        given = function.get("arguments")
        if isinstance(given, str):
            text = given
        else:
            text = orjson.dumps(read.of(given or {}, dict, "tool-call arguments")).decode()
        calls.append(
            ToolCall(
                id=read.field(call, "id", str) or call_id(),
                function=FunctionCall(name=read.need(function, "name", str), arguments=text),
            )
        )
    return calls


def _parameter(parameters: str, name: str) -> int | None:
    """A whole-number parameter of ``/api/show``'s ``parameters`` text (``name value``
    lines)."""
    for line in parameters.splitlines():
        key, _, value = line.strip().partition(" ")
        if key == name and value.strip().isdigit():
            return int(value.strip())
    return None
