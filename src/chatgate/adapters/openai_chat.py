"""The OpenAI Chat Completions wire protocol, and its dialects (sans I/O).

Speaks ``POST {base}/chat/completions`` and ``GET {base}/models`` for every catalogue
row whose adapter is ``openai_chat``: OpenAI, Mistral, DeepSeek, OpenRouter, Perplexity,
AI21, AI/ML API, Pollinations, Groq, xAI, Fireworks and any custom OpenAI-compatible
server. Per-source quirks are switched on by the row's ``quirks`` flags.
"""

from __future__ import annotations

import hashlib
import random
import re
from typing import Any

from chatgate.adapters.openai_answers import (
    content_of,
    finish_of,
    logprobs_of,
    plain_answer,
    tool_calls_of,
    tool_deltas_of,
    usage_of,
)
from chatgate.adapters.wire import Fields, PlainExchange, decode, endpoint, lie, stream_error
from chatgate.config import Connection
from chatgate.errors import UpstreamError
from chatgate.extensions import GATEWAY_FIELDS, UPSTREAM_FIELDS
from chatgate.prompt.postprocess import DEFAULT_PLACEHOLDER
from chatgate.redaction import scrubbed
from chatgate.sources import OPENAI_CORE, Source
from chatgate.types import (
    AssistantMessage,
    ChatChunk,
    ChatRequest,
    ChatResponse,
    Choice,
    ChunkChoice,
    Delta,
    Usage,
)
from chatgate.upstream import Credentials, SSEEvent, UpstreamRequest

MISTRAL_ID = re.compile(r"^[A-Za-z0-9]{9}$")
# The sources that take Anthropic's cache_control on text parts (OpenRouter passes it on
# to the providers that cache). Everywhere else the field is not sent: the request's
# model_dump leaves it out (`chatgate.types.TextPart`), and strict servers refuse it.
CACHE_CONTROL_SOURCES = frozenset({"openrouter"})


class OpenAIChatAdapter(PlainExchange):
    """Builds requests for, and reads answers from, one OpenAI-compatible connection."""

    def __init__(
        self,
        connection: Connection,
        source: Source,
        credentials: Credentials,
        placeholder: str = DEFAULT_PLACEHOLDER,
    ) -> None:
        self.connection = connection
        self.source = source
        where = endpoint(connection, source, credentials)
        self.base_url, self.key, self.notes = where.base_url, where.key, list(where.notes)
        self.read = Fields(connection)

    # --- requests ------------------------------------------------------------------

    def headers(self) -> dict[str, str]:
        """Auth and source headers, then the connection's own (which may override)."""
        out = {"Content-Type": "application/json"}
        if self.key:
            if self.source.auth == "x-api-key":
                out["x-api-key"] = self.key
            else:
                out["Authorization"] = f"Bearer {self.key}"
        out.update(self.source.headers)
        out.update(self.connection.headers)
        return out

    def unsupported(self, request: ChatRequest, set_names: list[str]) -> list[str]:
        """Parameters this source refuses, in the order the client set them."""
        source = self.source
        out: list[str] = []
        for name in set_names:
            if name == "n" and (request.n or 1) == 1:
                continue
            if name in source.rejects or (
                name not in OPENAI_CORE
                and name not in source.passthrough
                and "pass_all" not in source.quirks
                and name not in UPSTREAM_FIELDS
            ):
                out.append(name)
        return out

    def build(self, request: ChatRequest, dropped: list[str]) -> UpstreamRequest:
        """The upstream chat request: the client's fields under the source's rules."""
        body = request.model_dump(mode="json", by_alias=True, exclude_unset=True)
        for name in [*dropped, *GATEWAY_FIELDS, *UPSTREAM_FIELDS]:
            body.pop(name, None)
        if not request.stream:
            body.pop("stream", None)
            body.pop("stream_options", None)
        if not self.source.user_field:
            body.pop("user", None)
        body["model"] = request.model_name
        if self.source.id in CACHE_CONTROL_SOURCES:
            _cache_marks(body["messages"], request)
        body["messages"] = self._messages(body["messages"], has_tools=bool(request.tools))
        quirks = self.source.quirks
        if "mistral_seed" in quirks and "seed" in body:
            body["random_seed"] = body.pop("seed")
        if "random_seed" in quirks and "seed" not in body:
            body["seed"] = random.randrange(2**31)
        if body.get("stop") in ([], ""):
            body.pop("stop")
        if self.source.max_tokens_name == "max_tokens" and "max_completion_tokens" in body:
            # An older server ignores the newer name and would run unbounded: the bound
            # goes under the name it reads (the tighter one, if both were set).
            newer = body.pop("max_completion_tokens")
            body["max_tokens"] = min(newer, body.get("max_tokens") or newer)
        return UpstreamRequest(
            "POST",
            f"{self.base_url}/chat/completions",
            self.headers(),
            body,
            stream=bool(request.stream),
        )

    def _messages(self, messages: list[dict[str, Any]], *, has_tools: bool) -> list[dict[str, Any]]:
        quirks = self.source.quirks
        out: list[dict[str, Any]] = []
        for message in messages:
            message = dict(message)
            role = message["role"]
            if role == "assistant" and "deepseek_reasoning" not in quirks:
                message.pop("reasoning_content", None)
            if "deepseek_reasoning" in quirks and role == "assistant" and message.get("tool_calls"):
                message.setdefault("reasoning_content", "")
            if "mistral_tool_ids" in quirks:
                _mistral_ids(message)
            if self.source.name_field == "user" and role != "user":
                # The prompt's names policy already made such a name a prefix, if asked.
                message.pop("name", None)
            out.append(message)
        last = out[-1] if out else None
        wants_prefix = ("mistral_prefix" in quirks) or (
            "deepseek_prefix" in quirks and not has_tools
        )
        if last is not None and last["role"] == "assistant" and wants_prefix:
            last["prefix"] = True  # continue the final assistant message
        return out

    def models_request(self, base_url: str | None = None) -> UpstreamRequest:
        """The free ``GET .../models`` call (the source's own URL if it has one)."""
        url = (
            self.source.models_url
            if self.source.models_url and base_url is None and not self.connection.base_url
            else f"{base_url or self.base_url}/models"
        )
        headers = {k: v for k, v in self.headers().items() if k != "Content-Type"}
        return UpstreamRequest("GET", url, headers)

    # --- answers -------------------------------------------------------------------

    def parse_models(self, data: Any) -> list[str]:
        """Model ids from a models answer (OpenAI's list, a bare array, or Pollinations')."""
        items = data.get("data", data.get("models")) if isinstance(data, dict) else data
        if not isinstance(items, list):
            raise UpstreamError(
                f"connection '{self.connection.name}': the models answer has no list"
            )
        wanted = self.source.models_filter
        ids: list[str] = []
        for item in items:
            if isinstance(item, str):
                ids.append(item)
                continue
            if not isinstance(item, dict):
                continue
            if wanted is not None and _dig(item, wanted[0]) != wanted[1]:
                continue
            model_id = item.get("id") or item.get("name")
            if isinstance(model_id, str):
                ids.append(model_id.removeprefix("models/"))
        return ids

    def parse_response(self, data: Any, model: str) -> ChatResponse:
        """A non-stream answer; anything that is not a chat completion is a 502."""
        if not isinstance(data, dict) or not isinstance(data.get("choices"), list):
            raise self._lie("the answer is not a chat completion")
        plain = plain_answer(data, model)
        if plain is not None:
            return plain
        read = self.read
        choices: list[Choice] = []
        for position, raw in enumerate(read.items(data, "choices", dict)):
            message = read.field(raw, "message", dict) or {}
            content, reasoning = content_of(read, message)
            choices.append(
                Choice(
                    index=read.count(raw, "index", position),
                    message=AssistantMessage(
                        content=content,
                        tool_calls=tool_calls_of(read, message) or None,
                        reasoning_content=reasoning,
                    ),
                    finish_reason=finish_of(read, raw),
                    logprobs=logprobs_of(read, raw),
                )
            )
        return ChatResponse(
            id=read.field(data, "id", str) or "chatcmpl-upstream",
            created=int(read.number(data, "created") or 0),
            model=model,
            choices=choices,
            usage=usage_of(read, data) or Usage(0, 0),
            system_fingerprint=read.field(data, "system_fingerprint", str),
        )

    def parse_chunk(self, data: Any, model: str) -> ChatChunk:
        """One stream event; an error object inside the stream raises."""
        if not isinstance(data, dict):
            raise self._lie("a stream event is not a JSON object")
        if data.get("error"):
            raise stream_error(self.connection, _scrubbed_error(data["error"]))
        read = self.read
        choices: list[ChunkChoice] = []
        for position, raw in enumerate(read.items(data, "choices", dict)):
            delta = read.field(raw, "delta", dict) or {}
            content, reasoning = content_of(read, delta)
            choices.append(
                ChunkChoice(
                    index=read.count(raw, "index", position),
                    delta=Delta(
                        role="assistant" if delta.get("role") else None,
                        content=content,
                        reasoning_content=reasoning,
                        tool_calls=tool_deltas_of(read, delta) or None,
                    ),
                    finish_reason=finish_of(read, raw),
                    logprobs=logprobs_of(read, raw),
                )
            )
        return ChatChunk(
            id=read.field(data, "id", str) or "chatcmpl-upstream",
            created=int(read.number(data, "created") or 0),
            model=model,
            choices=choices,
            usage=usage_of(read, data),
            system_fingerprint=read.field(data, "system_fingerprint", str),
        )

    def reader(self, request: ChatRequest) -> OpenAIStreamReader:
        """A reader for an OpenAI-style stream (``data: [DONE]`` ends it)."""
        return OpenAIStreamReader(self, request.model)

    def _lie(self, what: str) -> UpstreamError:
        return lie(self.connection, what)


class OpenAIStreamReader:
    """Chunks come as chunks; ``[DONE]`` or a finish reason ends the answer."""

    def __init__(self, adapter: OpenAIChatAdapter, model: str) -> None:
        self.adapter, self.model = adapter, model
        self.finished = self.done = False

    def feed(self, event: SSEEvent) -> list[ChatChunk]:
        """One event as (at most) one chunk."""
        if event.data.strip() == "[DONE]":
            self.finished = self.done = True
            return []
        data = decode(self.adapter.connection, event)
        if event.event == "error" and isinstance(data, dict):
            data.setdefault("error", data.get("message") or "error event")
        chunk = self.adapter.parse_chunk(data, self.model)
        self.finished = self.finished or any(c.finish_reason for c in chunk.choices)
        return [chunk]


def _scrubbed_error(said: Any) -> Any:
    """An in-stream error object without a traceback or file paths in its message."""
    if isinstance(said, dict) and isinstance(said.get("message"), str):
        return {**said, "message": scrubbed(said["message"])}
    return scrubbed(said) if isinstance(said, str) else said


def _cache_marks(messages: list[dict[str, Any]], request: ChatRequest) -> None:
    """The cache breakpoints of *request*'s text parts, put back on the dumped
    *messages* (one for one, in order)."""
    for dumped, message in zip(messages, request.messages, strict=True):
        if not isinstance(message.content, list):
            continue
        for part, out in zip(message.content, dumped["content"], strict=True):
            if part.type == "text" and part.cache_control is not None:
                out["cache_control"] = part.cache_control.model_dump(exclude_none=True)


def _dig(item: dict[str, Any], path: str) -> Any:
    node: Any = item
    for part in path.split("."):
        if not isinstance(node, dict):
            return None
        node = node.get(part)
    return node


def _mistral_ids(message: dict[str, Any]) -> None:
    """Mistral takes tool-call ids of exactly 9 letters or digits; map others stably."""

    def fix(value: str) -> str:
        if MISTRAL_ID.match(value):
            return value
        return hashlib.sha512(value.encode()).hexdigest()[:9]

    for call in message.get("tool_calls") or []:
        call["id"] = fix(call["id"])
    if message.get("tool_call_id"):
        message["tool_call_id"] = fix(message["tool_call_id"])
