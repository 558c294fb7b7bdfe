"""The Anthropic Messages API (source ``claude``), translated both ways (sans I/O).

The request body is made by `chatgate.adapters.anthropic_request`; this module reads the
answers, whole or streamed: text, thinking (as ``reasoning_content``, and as the signed
blocks Claude needs back: ``thinking_blocks``, a stream's ``reasoning_signature``), tool
calls, and the forced `JSON_TOOL`'s input returned as the message text. See
``docs/providers.md``.
"""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Any

import orjson

from chatgate.adapters.anthropic_request import JSON_TOOL, body
from chatgate.adapters.wire import Fields, NativeAdapter, ReaderBase, decode, lie, role_chunk
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
    RedactedThinkingPart,
    ThinkingPart,
    ToolCall,
    ToolCallDelta,
    Usage,
)
from chatgate.upstream import SSEEvent, UpstreamRequest

API_VERSION = "2023-06-01"
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
        "metadata", "cache_control", "inference_extra_params", "inference_extra_headers",
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
        return UpstreamRequest(
            "POST",
            f"{self.base_url}/messages",
            self.headers(),
            body(request, dropped, self.placeholder),
            stream=bool(request.stream),
        )

    def parse_response(self, data: Any, model: str) -> ChatResponse:
        """A Messages answer as a chat completion."""
        if isinstance(data, dict) and data.get("type") == "error":
            raise _stream_error(self.connection, data)
        read = self.read
        answer = read.of(data, dict, "the answer")
        if not isinstance(answer.get("content"), list):
            raise lie(self.connection, "the answer is not a Messages API message")
        texts, thinking, calls = [], [], []
        blocks: list[ThinkingPart | RedactedThinkingPart] = []
        structured = False
        for block in read.items(answer, "content", dict):
            kind = read.field(block, "type", str)
            if kind == "text":
                texts.append(read.field(block, "text", str) or "")
            elif kind == "thinking":
                thought = read.field(block, "thinking", str) or ""
                thinking.append(thought)
                signature = read.field(block, "signature", str) or ""
                blocks.append(ThinkingPart(type="thinking", thinking=thought, signature=signature))
            elif kind == "redacted_thinking":
                data = read.field(block, "data", str) or ""
                blocks.append(RedactedThinkingPart(type="redacted_thinking", data=data))
            elif kind == "tool_use":
                name = read.need(block, "name", str)
                args = orjson.dumps(read.field(block, "input", dict) or {}).decode()
                if name == JSON_TOOL:
                    texts.append(args)
                    structured = True
                else:
                    function = FunctionCall(name=name, arguments=args)
                    calls.append(ToolCall(id=read.need(block, "id", str), function=function))
        finish = _finish(read.field(answer, "stop_reason", str), structured)
        message = AssistantMessage(
            content="".join(texts) if texts or not calls else None,
            tool_calls=calls or None,
            reasoning_content="".join(thinking) or None,
            thinking_blocks=blocks or None,
        )
        stop = read.field(answer, "stop_sequence", str)
        return ChatResponse(
            id=read.field(answer, "id", str) or "msg",
            created=int(time.time()),
            model=model,
            choices=[Choice(0, message, finish, stop_sequence=stop)],
            usage=_usage(read, read.field(answer, "usage", dict) or {}),
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
        # A signature and redacted blocks ride on the next chunk: alone, each would be
        # an empty delta to every door but the Anthropic one.
        self.signature: str | None = None
        self.redacted: list[str] = []

    def feed(self, event: SSEEvent) -> list[ChatChunk]:
        """One event's chunks."""
        data = decode(self.connection, event)
        if event.event == "error" or (isinstance(data, dict) and data.get("type") == "error"):
            raise _stream_error(self.connection, data)
        read = self.read
        data = read.of(data, dict, "a stream event")
        kind = data.get("type")
        if kind == "message_start":
            message = read.field(data, "message", dict) or {}
            self.id = read.field(message, "id", str) or self.id
            self.usage = _usage(read, read.field(message, "usage", dict) or {})
            return [role_chunk(self.id, self.model, self.created)]
        if kind == "content_block_start":
            block = read.field(data, "content_block", dict) or {}
            return self._carry(self._start(read.count(data, "index"), block))
        if kind == "content_block_delta":
            delta = read.field(data, "delta", dict) or {}
            return self._carry(self._delta(read.count(data, "index"), delta))
        if kind == "message_delta":
            self.usage = _later_usage(read, read.field(data, "usage", dict) or {}, self.usage)
            said = read.field(data, "delta", dict) or {}
            reason = read.field(said, "stop_reason", str)
            if reason is None:
                return []
            self.finished = True
            last = self.chunk(Delta(), _finish(reason, self.structured), usage=self.usage)
            for choice in last.choices:
                choice.stop_sequence = read.field(said, "stop_sequence", str)
            return self._carry([last])
        if kind == "message_stop":
            self.finished = self.done = True
            return []
        return []  # ping, content_block_stop, and event types added later

    def _start(self, index: int, block: dict[str, Any]) -> list[ChatChunk]:
        read = self.read
        kind = read.field(block, "type", str)
        name = read.field(block, "name", str)
        if kind == "tool_use" and name == JSON_TOOL:
            self.blocks[index] = ("json", -1)
            self.structured = True
            return []
        if kind == "tool_use":
            self.blocks[index] = ("tool", self.tools)
            self.tools += 1
            call_id = read.field(block, "id", str)
            call = ToolCallDelta(self.tools - 1, id=call_id, name=name, arguments="")
            return [self.chunk(Delta(tool_calls=[call]))]
        self.blocks[index] = (str(kind), -1)
        if kind == "redacted_thinking":
            self.redacted.append(read.field(block, "data", str) or "")
            return []
        if kind == "thinking":
            thought = read.field(block, "thinking", str)
            return [self.chunk(Delta(reasoning_content=thought))] if thought else []
        text = read.field(block, "text", str) if kind == "text" else None
        return [self.chunk(Delta(content=text))] if text else []

    def _carry(self, chunks: list[ChatChunk]) -> list[ChatChunk]:
        """*chunks*, the first of them carrying the signature and redacted blocks read
        since the last chunk."""
        if chunks and (self.signature is not None or self.redacted):
            for choice in chunks[0].choices:
                choice.delta.reasoning_signature = self.signature
                choice.delta.redacted_reasoning = self.redacted or None
            self.signature, self.redacted = None, []
        return chunks

    def _delta(self, index: int, delta: dict[str, Any]) -> list[ChatChunk]:
        read = self.read
        kind = read.field(delta, "type", str)
        if kind == "text_delta":
            return [self.chunk(Delta(content=read.field(delta, "text", str) or ""))]
        if kind == "thinking_delta":
            thought = read.field(delta, "thinking", str) or ""
            return [self.chunk(Delta(reasoning_content=thought))]
        if kind == "input_json_delta":
            block, tool = self.blocks.get(index, ("tool", 0))
            part = read.field(delta, "partial_json", str)
            if not part:
                return []
            if block == "json":
                return [self.chunk(Delta(content=part))]
            return [self.chunk(Delta(tool_calls=[ToolCallDelta(tool, arguments=part)]))]
        if kind == "signature_delta":
            self.signature = (self.signature or "") + (read.field(delta, "signature", str) or "")
        return []  # citations carry nothing a door shows


def _finish(reason: str | None, structured: bool) -> FinishReason:
    finish = STOP_REASONS.get(str(reason), "stop")
    # The forced JSON tool is how the answer was written, not a call for the client.
    return "stop" if structured and finish == "tool_calls" else finish


def _usage(read: Fields, raw: dict[str, Any]) -> Usage:
    cached = read.count(raw, "cache_read_input_tokens")
    written = read.count(raw, "cache_creation_input_tokens")
    prompt = read.count(raw, "input_tokens") + cached + written
    return Usage(prompt, read.count(raw, "output_tokens"), cached, written)


def _later_usage(read: Fields, raw: dict[str, Any], before: Usage) -> Usage:
    """*before* updated by a ``message_delta``'s usage: the output count, and the input
    counts when it gives them again (the cache counts may settle only then)."""
    completion = read.count(raw, "output_tokens", before.completion_tokens)
    if raw.get("input_tokens") is None:
        return replace(before, completion_tokens=completion)
    return replace(_usage(read, raw), completion_tokens=completion)


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
