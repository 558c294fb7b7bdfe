"""The Anthropic Messages API (source ``claude``), translated both ways (sans I/O).

OpenAI → Claude: leading system messages become ``system``; a later system message
becomes a user turn (Claude has no mid-conversation system role); tool calls become
``tool_use`` blocks and tool results ``tool_result`` blocks in a user turn; same-role
neighbours merge; a conversation that does not start with the user gets the placeholder
first; a final assistant message is continued (prefill). ``response_format`` is a forced
tool whose input is returned as the message text. See ``docs/providers.md``.
"""

from __future__ import annotations

import time
from typing import Any

import orjson

from chatgate.adapters.wire import (
    NativeAdapter,
    ReaderBase,
    arguments,
    decode,
    image,
    lie,
    role_chunk,
    text_of,
)
from chatgate.config import Connection
from chatgate.errors import (
    ChatgateError,
    InvalidRequestError,
    OverloadedError,
    RateLimitError,
    UpstreamError,
)
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

API_VERSION = "2023-06-01"
DEFAULT_MAX_TOKENS = 4096
JSON_TOOL = "json_output"  # the forced tool that carries structured output
THINKING_SHARE = {"minimal": 0.1, "low": 0.1, "medium": 0.25, "high": 0.5}
MIN_THINKING = 1024
STOP_REASONS: dict[str, FinishReason] = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "pause_turn": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}
SUPPORTED = frozenset(
    {
        "model", "messages", "stream", "stream_options", "max_tokens", "max_completion_tokens",
        "temperature", "top_p", "top_k", "stop", "user", "tools", "tool_choice",
        "parallel_tool_calls", "response_format", "reasoning_effort", "thinking",
        "metadata", "inference_extra_params", "inference_extra_headers",
    }
)  # fmt: skip


class AnthropicAdapter(NativeAdapter):
    """Builds Messages API requests and reads its answers, for one connection."""

    supported = SUPPORTED

    def headers(self) -> dict[str, str]:
        """Key, API version, then the connection's own headers."""
        out = {"Content-Type": "application/json", "anthropic-version": API_VERSION}
        if self.key:
            out["x-api-key"] = self.key
        out.update(self.connection.headers)
        return out

    def build(self, request: ChatRequest, dropped: list[str]) -> UpstreamRequest:
        """The ``POST /messages`` request."""
        system, messages = _messages(request.messages, self.placeholder)
        body: dict[str, Any] = {
            "model": request.model_name,
            "max_tokens": request.completion_limit or DEFAULT_MAX_TOKENS,
        }
        if system:
            body["system"] = system
        body["messages"] = messages
        if request.stream:
            body["stream"] = True
        skip = set(dropped)
        if request.temperature is not None and "temperature" not in skip:
            body["temperature"] = min(request.temperature, 1.0)  # Claude's range is 0-1
        if request.top_p is not None and "top_p" not in skip:
            body["top_p"] = request.top_p
        if request.top_k is not None and "top_k" not in skip:
            body["top_k"] = request.top_k
        if request.stops:
            body["stop_sequences"] = request.stops
        if request.user and "user" not in skip:
            body["metadata"] = {"user_id": request.user}
        _tools(request, body)
        _thinking(request, body)
        extra = request.model_extra or {}
        for name in ("metadata", "thinking"):
            if name in extra and name not in skip:
                body[name] = extra[name]
        body.update(self.connection.extra_body)
        for name in self.connection.exclude_params:
            body.pop(name, None)
        return UpstreamRequest(
            "POST", f"{self.base_url}/messages", self.headers(), body, stream=bool(request.stream)
        )

    def parse_response(self, data: Any, model: str) -> ChatResponse:
        """A Messages answer as a chat completion."""
        if not isinstance(data, dict) or data.get("type") == "error":
            raise _stream_error(self.connection, data)
        if not isinstance(data.get("content"), list):
            raise lie(self.connection, "the answer is not a Messages API message")
        texts, thinking, calls = [], [], []
        structured = False
        for block in data["content"]:
            kind = block.get("type")
            if kind == "text":
                texts.append(block.get("text", ""))
            elif kind == "thinking":
                thinking.append(block.get("thinking", ""))
            elif kind == "tool_use" and block.get("name") == JSON_TOOL:
                texts.append(orjson.dumps(block.get("input", {})).decode())
                structured = True
            elif kind == "tool_use":
                args = orjson.dumps(block.get("input", {})).decode()
                calls.append(
                    ToolCall(
                        id=block["id"], function=FunctionCall(name=block["name"], arguments=args)
                    )
                )
        finish = STOP_REASONS.get(str(data.get("stop_reason")), "stop")
        if structured and finish == "tool_calls":
            finish = "stop"
        message = AssistantMessage(
            content="".join(texts) if texts or not calls else None,
            tool_calls=calls or None,
            reasoning_content="".join(thinking) or None,
        )
        return ChatResponse(
            id=str(data.get("id") or "msg"),
            created=int(time.time()),
            model=model,
            choices=[Choice(0, message, finish)],
            usage=_usage(data.get("usage") or {}),
        )

    def reader(self, request: ChatRequest) -> AnthropicStreamReader:
        """A reader for a Messages API event stream."""
        return AnthropicStreamReader(self.connection, request.model)

    def models_request(self, base_url: str | None = None) -> UpstreamRequest:
        """``GET /models`` (free; needs a key that may list models)."""
        headers = {k: v for k, v in self.headers().items() if k != "Content-Type"}
        return UpstreamRequest("GET", f"{base_url or self.base_url}/models?limit=1000", headers)

    def parse_models(self, data: Any) -> list[str]:
        """Model ids from ``{"data": [{"id": ...}]}``."""
        return self.listed(data, "data", "id")


class AnthropicStreamReader(ReaderBase):
    """Messages API events → OpenAI chunks, tool calls indexed as OpenAI does."""

    def __init__(self, connection: Connection, model: str) -> None:
        super().__init__(connection, model, "msg")
        self.usage = Usage(0, 0)
        self.blocks: dict[int, tuple[str, int]] = {}  # block index -> (kind, tool index)
        self.tools = 0
        self.structured = False

    def feed(self, event: SSEEvent) -> list[ChatChunk]:
        """One event's chunks."""
        data = decode(self.connection, event)
        kind = data.get("type") if isinstance(data, dict) else None
        if kind == "message_start":
            message = data.get("message") or {}
            self.id = str(message.get("id") or self.id)
            self.usage = _usage(message.get("usage") or {})
            return [role_chunk(self.id, self.model, self.created)]
        if kind == "content_block_start":
            return self._start(int(data.get("index", 0)), data.get("content_block") or {})
        if kind == "content_block_delta":
            return self._delta(int(data.get("index", 0)), data.get("delta") or {})
        if kind == "message_delta":
            usage = data.get("usage") or {}
            self.usage = Usage(
                self.usage.prompt_tokens,
                int(usage.get("output_tokens", self.usage.completion_tokens)),
            )
            reason = (data.get("delta") or {}).get("stop_reason")
            if reason is None:
                return []
            finish = STOP_REASONS.get(str(reason), "stop")
            if self.structured and finish == "tool_calls":
                finish = "stop"
            self.finished = True
            return [self.chunk(Delta(), finish, usage=self.usage)]
        if kind == "message_stop":
            self.finished = self.done = True
            return []
        if kind == "error" or event.event == "error":
            raise _stream_error(self.connection, data)
        return []  # ping, content_block_stop, and event types added later

    def _start(self, index: int, block: dict[str, Any]) -> list[ChatChunk]:
        kind = block.get("type")
        if kind == "tool_use" and block.get("name") == JSON_TOOL:
            self.blocks[index] = ("json", -1)
            self.structured = True
            return []
        if kind == "tool_use":
            self.blocks[index] = ("tool", self.tools)
            self.tools += 1
            call = ToolCallDelta(
                self.tools - 1, id=block.get("id"), name=block.get("name"), arguments=""
            )
            return [self.chunk(Delta(tool_calls=[call]))]
        self.blocks[index] = (str(kind), -1)
        if kind == "text" and block.get("text"):
            return [self.chunk(Delta(content=block["text"]))]
        return []

    def _delta(self, index: int, delta: dict[str, Any]) -> list[ChatChunk]:
        kind = delta.get("type")
        if kind == "text_delta":
            return [self.chunk(Delta(content=delta.get("text", "")))]
        if kind == "thinking_delta":
            return [self.chunk(Delta(reasoning_content=delta.get("thinking", "")))]
        if kind == "input_json_delta":
            block, tool = self.blocks.get(index, ("tool", 0))
            part = delta.get("partial_json", "")
            if not part:
                return []
            if block == "json":
                return [self.chunk(Delta(content=part))]
            return [self.chunk(Delta(tool_calls=[ToolCallDelta(tool, arguments=part)]))]
        return []  # signature_delta and citations carry nothing OpenAI has


def _messages(
    messages: list[Message], placeholder: str
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(system blocks, messages): the leading system run is the system prompt."""
    system: list[dict[str, Any]] = []
    start = 0
    while start < len(messages) and messages[start].role in ("system", "developer"):
        text = text_of(messages[start])
        if text:
            system.append({"type": "text", "text": text})
        start += 1
    out: list[dict[str, Any]] = []
    for position in range(start, len(messages)):
        message = messages[position]
        role, blocks = _blocks(message, f"messages[{position}]")
        if not blocks:
            continue  # Claude refuses empty turns; an empty message says nothing
        if out and out[-1]["role"] == role:
            out[-1]["content"].extend(blocks)
        else:
            out.append({"role": role, "content": blocks})
    if not out or out[0]["role"] != "user":
        out.insert(0, {"role": "user", "content": [{"type": "text", "text": placeholder}]})
    last = out[-1]
    if last["role"] == "assistant":  # prefill: Claude refuses trailing whitespace
        tail = last["content"][-1]
        if tail["type"] == "text":
            tail["text"] = tail["text"].rstrip()
            if not tail["text"]:
                last["content"].pop()
                if not last["content"]:
                    out.pop()
    return system, out


def _blocks(message: Message, param: str) -> tuple[str, list[dict[str, Any]]]:
    if message.role == "tool":
        result = {
            "type": "tool_result",
            "tool_use_id": message.tool_call_id or "",
            "content": text_of(message),
        }
        return "user", [result]
    role = "assistant" if message.role == "assistant" else "user"
    blocks: list[dict[str, Any]] = []
    name = f"{message.name}: " if message.name and role == "user" else ""
    content = message.content
    if isinstance(content, str):
        if content:
            blocks.append({"type": "text", "text": name + content})
    elif content is not None:
        for index, part in enumerate(content):
            if part.type == "text":
                if part.text:
                    blocks.append({"type": "text", "text": part.text})
            elif part.type == "image_url":
                blocks.append(_image(part.image_url.url, f"{param}.content[{index}]"))
            elif part.type == "refusal":
                blocks.append({"type": "text", "text": part.refusal})
            else:
                raise InvalidRequestError(
                    f"Claude does not take '{part.type}' content parts",
                    param=f"{param}.content[{index}]",
                    code="unsupported_content",
                )
        if name and blocks and blocks[0]["type"] == "text":
            blocks[0]["text"] = name + blocks[0]["text"]
    for index, call in enumerate(message.tool_calls or []):
        where = f"{param}.tool_calls[{index}].function.arguments"
        blocks.append(
            {
                "type": "tool_use",
                "id": call.id,
                "name": call.function.name,
                "input": arguments(call.function.arguments, where),
            }
        )
    return role, blocks


def _image(url: str, param: str) -> dict[str, Any]:
    found = image(url, param)
    if found.data is not None:
        source = {"type": "base64", "media_type": found.media_type, "data": found.data}
        return {"type": "image", "source": source}
    return {"type": "image", "source": {"type": "url", "url": found.url}}


def _tools(request: ChatRequest, body: dict[str, Any]) -> None:
    tools = [
        {
            "name": t.function.name,
            **({"description": t.function.description} if t.function.description else {}),
            "input_schema": t.function.parameters or {"type": "object", "properties": {}},
        }
        for t in request.tools or []
    ]
    choice: dict[str, Any] | None = None
    fmt = request.response_format
    if isinstance(fmt, JSONSchemaFormat | JSONObjectFormat):
        if tools:
            raise InvalidRequestError(
                "Claude takes response_format as a forced tool, so it cannot be combined "
                "with tools; send one or the other",
                param="response_format",
                code="unsupported_combination",
            )
        schema = (
            fmt.json_schema.schema_ or {"type": "object"}
            if isinstance(fmt, JSONSchemaFormat)
            else {"type": "object"}
        )
        tools = [
            {
                "name": JSON_TOOL,
                "description": "Reply with the answer as this object.",
                "input_schema": schema,
            }
        ]
        choice = {"type": "tool", "name": JSON_TOOL}
    elif request.tool_choice is not None and tools:
        tc = request.tool_choice
        if tc == "auto":
            choice = {"type": "auto"}
        elif tc == "required":
            choice = {"type": "any"}
        elif tc == "none":
            choice = {"type": "none"}
        else:
            choice = {"type": "tool", "name": tc.function.get("name", "")}
    if request.parallel_tool_calls is False and tools:
        choice = {**(choice or {"type": "auto"}), "disable_parallel_tool_use": True}
    if tools:
        body["tools"] = tools
    if choice is not None:
        body["tool_choice"] = choice


def _thinking(request: ChatRequest, body: dict[str, Any]) -> None:
    effort = (request.model_extra or {}).get("reasoning_effort")
    if not isinstance(effort, str) or effort == "none":
        return
    if effort not in THINKING_SHARE:
        raise InvalidRequestError(
            f"reasoning_effort must be one of {', '.join(THINKING_SHARE)} or none",
            param="reasoning_effort",
        )
    budget = max(MIN_THINKING, int(body["max_tokens"] * THINKING_SHARE[effort]))
    if budget >= body["max_tokens"]:
        body["max_tokens"] += budget  # the budget is part of max_tokens; keep room to answer
    body["thinking"] = {"type": "enabled", "budget_tokens": budget}
    for name in ("temperature", "top_p", "top_k"):  # not allowed with thinking
        body.pop(name, None)


def _usage(raw: dict[str, Any]) -> Usage:
    prompt = sum(
        int(raw.get(k) or 0)
        for k in ("input_tokens", "cache_creation_input_tokens", "cache_read_input_tokens")
    )
    return Usage(prompt, int(raw.get("output_tokens") or 0))


def _stream_error(connection: Connection, data: Any) -> ChatgateError:
    error = data.get("error") if isinstance(data, dict) else None
    error = error if isinstance(error, dict) else {}
    kind, message = error.get("type", "error"), error.get("message", str(data)[:300])
    said = f"connection '{connection.name}': upstream error: {message}"
    if kind == "overloaded_error":
        return OverloadedError(said, code="upstream_overloaded")
    if kind == "rate_limit_error":
        return RateLimitError(said, code="rate_limit_exceeded")
    if kind == "invalid_request_error":
        return InvalidRequestError(said, code=kind)
    return UpstreamError(said, code=str(kind))
