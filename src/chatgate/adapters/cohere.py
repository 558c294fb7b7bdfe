"""Cohere's v2 chat API (source ``cohere``), translated both ways (sans I/O).

Cohere v2 messages are close to OpenAI's: the same roles, ``tool_calls`` with JSON
string arguments, ``tool`` results by ``tool_call_id``. The differences handled here:
sampling names (``p``, ``k``, ``stop_sequences``), ``response_format`` as ``json_object``
with an optional ``json_schema``, ``tool_choice`` as ``REQUIRED`` / ``NONE`` (a named
function becomes ``REQUIRED`` with only that tool offered), the model's ``tool_plan``
(returned as ``reasoning_content``), and the stream's own event types. System messages
keep their place (Cohere takes them anywhere); a conversation of nothing else gets the
placeholder user turn.
"""

from __future__ import annotations

import time
from typing import Any

from chatgate.adapters.images import image
from chatgate.adapters.wire import (
    Fields,
    NativeAdapter,
    ReaderBase,
    decode,
    leading_system,
    lie,
    role_chunk,
    stream_error,
)
from chatgate.config import Connection
from chatgate.types import (
    AssistantMessage,
    ChatChunk,
    ChatRequest,
    ChatResponse,
    Choice,
    Delta,
    FinishReason,
    FunctionCall,
    JSONObjectFormat,
    JSONSchemaFormat,
    Message,
    ToolCall,
    ToolCallDelta,
    Usage,
)
from chatgate.upstream import SSEEvent, UpstreamRequest

FINISH: dict[str, FinishReason] = {
    "COMPLETE": "stop",
    "STOP_SEQUENCE": "stop",
    "MAX_TOKENS": "length",
    "TOOL_CALL": "tool_calls",
}
RENAMED = {"top_p": "p", "top_k": "k"}
SUPPORTED = frozenset(
    {
        "model", "messages", "stream", "stream_options", "max_tokens", "max_completion_tokens",
        "temperature", "top_p", "top_k", "stop", "seed", "presence_penalty",
        "frequency_penalty", "response_format", "tools", "tool_choice", "logprobs", "user",
        "prompt_post_processing", "inference_extra_params", "inference_extra_headers",
    }
)  # fmt: skip


class CohereAdapter(NativeAdapter):
    """Builds ``POST /v2/chat`` requests and reads their answers, for one connection."""

    supported = SUPPORTED

    def headers(self) -> dict[str, str]:
        """Bearer key, then the connection's own headers."""
        out = {"Content-Type": "application/json", "Accept": "application/json"}
        if self.key:
            out["Authorization"] = f"Bearer {self.key}"
        out.update(self.connection.headers)
        return out

    def build(self, request: ChatRequest, dropped: list[str]) -> UpstreamRequest:
        """The ``POST /chat`` request."""
        body: dict[str, Any] = {
            "model": request.model_name,
            "messages": _messages(request.messages, self.placeholder),
        }
        if request.stream:
            body["stream"] = True
        skip = set(dropped)
        for name in (
            "temperature",
            "top_p",
            "top_k",
            "seed",
            "presence_penalty",
            "frequency_penalty",
            "logprobs",
        ):
            value = getattr(request, name)
            if value is not None and name not in skip:
                body[RENAMED.get(name, name)] = value
        if request.completion_limit:
            body["max_tokens"] = request.completion_limit
        if request.stops:
            body["stop_sequences"] = request.stops
        fmt = request.response_format
        if isinstance(fmt, JSONSchemaFormat):
            body["response_format"] = {"type": "json_object"}
            if fmt.json_schema.schema_:
                body["response_format"]["json_schema"] = fmt.json_schema.schema_
        elif isinstance(fmt, JSONObjectFormat):
            body["response_format"] = {"type": "json_object"}
        _tools(request, body)
        return UpstreamRequest(
            "POST", f"{self.base_url}/chat", self.headers(), body, stream=bool(request.stream)
        )

    def parse_response(self, data: Any, model: str) -> ChatResponse:
        """A v2 chat answer as a chat completion."""
        read = self.read
        if not isinstance(data, dict) or not isinstance(data.get("message"), dict):
            raise lie(self.connection, "the answer is not a Cohere chat response")
        message = data["message"]
        texts, thinking = [], []
        for block in read.items(message, "content", dict):
            kind = read.field(block, "type", str)
            if kind == "thinking":
                thinking.append(read.field(block, "thinking", str) or "")
            elif kind == "text":
                texts.append(read.field(block, "text", str) or "")
        calls = [_call(read, c) for c in read.items(message, "tool_calls", dict)]
        reasoning = "".join(thinking) or read.field(message, "tool_plan", str) or None
        answer = AssistantMessage(
            content="".join(texts) if texts or not calls else None,
            tool_calls=calls or None,
            reasoning_content=reasoning,
        )
        finish = FINISH.get(str(read.field(data, "finish_reason", str)), "stop")
        return ChatResponse(
            id=read.field(data, "id", str) or "cohere",
            created=int(time.time()),
            model=model,
            choices=[Choice(0, answer, finish)],
            usage=_usage(read, read.field(data, "usage", dict)),
        )

    def reader(self, request: ChatRequest) -> CohereStreamReader:
        """A reader for a v2 chat event stream."""
        return CohereStreamReader(self.connection, request.model)

    def models_request(self, base_url: str | None = None) -> UpstreamRequest:
        """``GET /v1/models?endpoint=chat`` (the v1 route lists models for v2 too)."""
        base = base_url or self.base_url
        if self.source.models_url and base == self.source.default_base_url:
            url = self.source.models_url
        else:
            url = f"{base.removesuffix('/v2')}/v1/models?endpoint=chat"
        headers = {k: v for k, v in self.headers().items() if k != "Content-Type"}
        return UpstreamRequest("GET", url, headers)

    def parse_models(self, data: Any) -> list[str]:
        """Model names from ``{"models": [{"name": ...}]}``."""
        return self.listed(data, "models", "name")


class CohereStreamReader(ReaderBase):
    """v2 stream events → OpenAI chunks."""

    def __init__(self, connection: Connection, model: str) -> None:
        super().__init__(connection, model, "cohere")
        self.tools: dict[int, int] = {}  # Cohere's tool-call index -> ours

    def feed(self, event: SSEEvent) -> list[ChatChunk]:
        """One event's chunks."""
        data = decode(self.connection, event)
        if event.event == "error" or (isinstance(data, dict) and data.get("type") == "error"):
            raise stream_error(self.connection, data)
        read = self.read
        data = read.of(data, dict, "a stream event")
        kind = data.get("type")
        delta = read.field(data, "delta", dict) or {}
        message = read.field(delta, "message", dict) or {}
        if kind == "message-start":
            self.id = read.field(data, "id", str) or self.id
            return [role_chunk(self.id, self.model, self.created)]
        if kind in ("content-start", "content-delta"):
            content = read.field(message, "content", dict) or {}
            thinking = read.field(content, "thinking", str)
            if thinking:
                return [self.chunk(Delta(reasoning_content=thinking))]
            text = read.field(content, "text", str)
            return [self.chunk(Delta(content=text))] if text else []
        if kind == "tool-plan-delta":
            plan = read.field(message, "tool_plan", str)
            return [self.chunk(Delta(reasoning_content=plan))] if plan else []
        if kind in ("tool-call-start", "tool-call-delta"):
            call = read.field(message, "tool_calls", dict) or {}
            return [self._tool(read.count(data, "index"), call)]
        if kind == "message-end":
            self.finished = self.done = True
            finish = FINISH.get(str(read.field(delta, "finish_reason", str)), "stop")
            return [self.chunk(Delta(), finish, _usage(read, read.field(delta, "usage", dict)))]
        return []  # content-end, tool-call-end, citations

    def _tool(self, index: int, call: dict[str, Any]) -> ChatChunk:
        if index not in self.tools:
            self.tools[index] = len(self.tools)
        read = self.read
        function = read.field(call, "function", dict) or {}
        return self.chunk(
            Delta(
                tool_calls=[
                    ToolCallDelta(
                        self.tools[index],
                        id=read.field(call, "id", str),
                        name=read.field(function, "name", str),
                        arguments=read.field(function, "arguments", str) or "",
                    )
                ]
            )
        )


def _messages(messages: list[Message], placeholder: str) -> list[dict[str, Any]]:
    system, rest = leading_system(messages)
    out = [{"role": "system", "content": m.text()} for m in system if m.text()]
    talk = 0  # entries that are not system messages
    for position, message in enumerate(rest, start=len(system)):
        role = "system" if message.role == "developer" else message.role
        entry: dict[str, Any] = {"role": role}
        if role == "tool":
            entry["tool_call_id"] = message.tool_call_id or ""
            entry["content"] = message.text()
        elif isinstance(message.content, list) and role == "user":
            entry["content"] = _parts(message, f"messages[{position}]")
        else:
            text = message.text()
            if text or not message.tool_calls:
                entry["content"] = text
        if message.tool_calls:
            entry["tool_calls"] = [c.model_dump(mode="json") for c in message.tool_calls]
            if not entry.get("content"):
                names = ", ".join(c.function.name for c in message.tool_calls)
                entry["tool_plan"] = f"I will call {names}."
        if entry.get("content") in ("", []) and "tool_calls" not in entry and role != "tool":
            continue  # Cohere refuses empty messages
        out.append(entry)
        talk += role != "system"
    if not talk:
        out.append({"role": "user", "content": placeholder})
    return out


def _parts(message: Message, param: str) -> list[dict[str, Any]]:
    parts: list[dict[str, Any]] = []
    for index, part in enumerate(message.content or []):
        if isinstance(part, str):
            continue
        if part.type == "text" and part.text:
            parts.append({"type": "text", "text": part.text})
        elif part.type == "image_url":
            image(part.image_url.url, f"{param}.content[{index}]")  # checks a data URL
            parts.append({"type": "image_url", "image_url": {"url": part.image_url.url}})
    return parts


def _tools(request: ChatRequest, body: dict[str, Any]) -> None:
    tools = [t.model_dump(mode="json", exclude_none=True) for t in request.tools or []]
    choice = request.tool_choice
    if choice == "required":
        body["tool_choice"] = "REQUIRED"
    elif choice == "none":
        body["tool_choice"] = "NONE"
    elif choice is not None and choice != "auto":
        wanted = choice.function.get("name", "")
        tools = [t for t in tools if t["function"]["name"] == wanted]
        body["tool_choice"] = "REQUIRED"
    if tools:
        body["tools"] = tools


def _call(read: Fields, call: dict[str, Any]) -> ToolCall:
    function = read.need(call, "function", dict)
    return ToolCall(
        id=read.field(call, "id", str) or "",
        function=FunctionCall(
            name=read.need(function, "name", str),
            arguments=read.field(function, "arguments", str) or "{}",
        ),
    )


def _usage(read: Fields, raw: dict[str, Any] | None) -> Usage:
    if raw is None:
        return Usage(0, 0)
    counts = read.field(raw, "tokens", dict) or read.field(raw, "billed_units", dict) or {}
    return Usage(read.count(counts, "input_tokens"), read.count(counts, "output_tokens"))
