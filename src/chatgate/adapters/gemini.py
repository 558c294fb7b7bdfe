"""The Gemini API: Google AI Studio (source ``google``) and Vertex AI (``vertexai``).

The request body is made by `chatgate.adapters.gemini_request`; this module knows where
to send it (AI Studio, a Vertex region and project), how to authenticate (the key always
in the ``x-goog-api-key`` header, never in a URL, or a service account's token), and
reads the answers, whole or streamed. See ``docs/providers.md``.
"""

from __future__ import annotations

import time
from typing import Any

import orjson

from chatgate.adapters.gemini_request import body
from chatgate.adapters.google_auth import ServiceAccountToken, load_service_account
from chatgate.adapters.wire import (
    Fields,
    NativeAdapter,
    ReaderBase,
    call_id,
    decode,
    lie,
    role_chunk,
    stream_error,
)
from chatgate.config import Connection
from chatgate.errors import ConfigError, InvalidRequestError
from chatgate.prompt.postprocess import DEFAULT_PLACEHOLDER
from chatgate.sources import Source
from chatgate.types import (
    AssistantMessage,
    ChatChunk,
    ChatRequest,
    ChatResponse,
    Choice,
    Delta,
    FinishReason,
    FunctionCall,
    ToolCall,
    ToolCallDelta,
    Usage,
)
from chatgate.upstream import Credentials, SSEEvent, UpstreamRequest

FINISH: dict[str, FinishReason] = {
    "STOP": "stop",
    "MAX_TOKENS": "length",
    "SAFETY": "content_filter",
    "RECITATION": "content_filter",
    "BLOCKLIST": "content_filter",
    "PROHIBITED_CONTENT": "content_filter",
    "SPII": "content_filter",
    "IMAGE_SAFETY": "content_filter",
}
SUPPORTED = frozenset(
    {
        "model", "messages", "stream", "stream_options", "max_tokens", "max_completion_tokens",
        "temperature", "top_p", "top_k", "stop", "seed", "n", "presence_penalty",
        "frequency_penalty", "response_format", "tools", "tool_choice", "user",
        "reasoning_effort", "inference_extra_params", "inference_extra_headers",
    }
)  # fmt: skip
# A part's kinds of data: one per part (text may come with ``thought``).
Parts = tuple[list[str], list[str], list[tuple[str, str]]]


class GeminiAdapter(NativeAdapter):
    """Builds ``generateContent`` requests and reads their answers, for one connection."""

    supported = SUPPORTED

    def __init__(
        self,
        connection: Connection,
        source: Source,
        credentials: Credentials,
        placeholder: str = DEFAULT_PLACEHOLDER,
    ) -> None:
        super().__init__(connection, source, credentials, placeholder)
        self.vertex = source.id == "vertexai"
        account = (
            load_service_account(credentials.service_account, connection.name)
            if self.vertex and credentials.service_account
            else None
        )
        self.token: ServiceAccountToken | None = None
        if account is not None and not connection.proxy_password:
            self.token = ServiceAccountToken(account, connection.name)
            self.key = None
        elif self.vertex and self.key is None:
            raise ConfigError(
                f"connection '{connection.name}' (Vertex AI) needs an express-mode key "
                "(api_key or api_key_env) or a service account (service_account_file or "
                "service_account_json_env)"
            )
        if self.vertex and not connection.base_url:
            region = connection.google.region
            host = "aiplatform.googleapis.com"
            self.base_url = f"https://{host if region == 'global' else f'{region}-{host}'}/v1"
        project = connection.google.project or (account or {}).get("project_id")
        self.models_path = (
            f"projects/{project}/locations/{connection.google.region}/publishers/google/models"
            if self.vertex and project and not connection.proxy_password
            else "publishers/google/models"
            if self.vertex
            else "models"
        )

    def auth_request(self, now: float) -> UpstreamRequest | None:
        """The service account's token exchange, when its token is due."""
        return self.token.request(now) if self.token is not None else None

    def secrets(self) -> list[str | None]:
        """The key and the service account's current access token."""
        return [self.key, self.token.token if self.token is not None else None]

    def accept_auth(self, data: Any, now: float) -> None:
        """Keep the access token the exchange answered."""
        if self.token is not None:
            self.token.accept(data, now)

    def headers(self) -> dict[str, str]:
        """The key in ``x-goog-api-key`` (never the URL), or a bearer token."""
        out = {"Content-Type": "application/json"}
        if self.token is not None:
            out["Authorization"] = f"Bearer {self.token.token or '(service-account token)'}"
        elif self.key:
            out["x-goog-api-key"] = self.key
            if self.proxied:  # reverse proxies commonly read a bearer token instead
                out["Authorization"] = f"Bearer {self.key}"
        out.update(self.connection.headers)
        return out

    def build(self, request: ChatRequest, dropped: list[str]) -> UpstreamRequest:
        """The ``generateContent`` (or ``streamGenerateContent``) request."""
        sent = body(request, dropped, self.placeholder, self.connection.google.safety_settings)
        method = "streamGenerateContent?alt=sse" if request.stream else "generateContent"
        url = f"{self.base_url}/{self.models_path}/{request.model_name}:{method}"
        return UpstreamRequest("POST", url, self.headers(), sent, stream=bool(request.stream))

    def parse_response(self, data: Any, model: str) -> ChatResponse:
        """A ``GenerateContentResponse`` as a chat completion."""
        read = self.read
        answer = read.of(data, dict, "the answer")
        candidates = _candidates(read, answer)
        if not candidates:
            raise _blocked(read, answer)
        choices = []
        for position, candidate in enumerate(candidates):
            texts, thoughts, calls = _parts(read, candidate)
            finish = _finish(read, candidate, bool(calls)) or "stop"
            message = AssistantMessage(
                content="".join(texts) if texts or not calls else None,
                tool_calls=[
                    ToolCall(id=call_id(), function=FunctionCall(name=n, arguments=a))
                    for n, a in calls
                ]
                or None,
                reasoning_content="".join(thoughts) or None,
            )
            choices.append(Choice(read.count(candidate, "index", position), message, finish))
        return ChatResponse(
            id=read.field(answer, "responseId", str) or "gemini",
            created=int(time.time()),
            model=model,
            choices=choices,
            usage=_usage(read, answer) or Usage(0, 0),
        )

    def reader(self, request: ChatRequest) -> GeminiStreamReader:
        """A reader for ``streamGenerateContent?alt=sse``."""
        return GeminiStreamReader(self.connection, request.model, request.n or 1)

    def models_request(self, base_url: str | None = None) -> UpstreamRequest:
        """``GET .../models`` (AI Studio; Vertex lists a documented set)."""
        headers = {k: v for k, v in self.headers().items() if k != "Content-Type"}
        return UpstreamRequest("GET", f"{base_url or self.base_url}/models?pageSize=1000", headers)

    def parse_models(self, data: Any) -> list[str]:
        """Models that can ``generateContent``, without the ``models/`` prefix."""
        items = data.get("models") if isinstance(data, dict) else None
        if not isinstance(items, list):
            raise lie(self.connection, "the models answer has no list")
        return [
            str(item["name"]).removeprefix("models/")
            for item in items
            if isinstance(item, dict)
            and item.get("name")
            and "generateContent" in _methods(item.get("supportedGenerationMethods"))
        ]


class GeminiStreamReader(ReaderBase):
    """Each event is a whole ``GenerateContentResponse`` holding the new parts."""

    def __init__(self, connection: Connection, model: str, candidates: int) -> None:
        super().__init__(connection, model, "gemini")
        self.started = False
        self.tools: dict[int, int] = {}
        self.ended: set[int] = set()
        self.candidates = candidates

    def feed(self, event: SSEEvent) -> list[ChatChunk]:
        """One event's chunks."""
        read = self.read
        data = read.of(decode(self.connection, event), dict, "a stream event")
        if data.get("error"):
            raise stream_error(self.connection, data["error"])
        out: list[ChatChunk] = []
        if not self.started:
            self.started = True
            self.id = read.field(data, "responseId", str) or self.id
            out.append(role_chunk(self.id, self.model, self.created))
        candidates = _candidates(read, data)
        feedback = read.field(data, "promptFeedback", dict) or {}
        if not candidates and feedback.get("blockReason"):
            raise _blocked(read, data)
        usage = _usage(read, data)
        for position, candidate in enumerate(candidates):
            index = read.count(candidate, "index", position)
            texts, thoughts, calls = _parts(read, candidate)
            deltas: list[ToolCallDelta] = []
            for name, args in calls:
                number = self.tools.get(index, 0)
                self.tools[index] = number + 1
                deltas.append(ToolCallDelta(number, id=call_id(), name=name, arguments=args))
            if texts or thoughts or deltas:
                delta = Delta(
                    content="".join(texts) or None,
                    reasoning_content="".join(thoughts) or None,
                    tool_calls=deltas or None,
                )
                out.append(self.chunk(delta, index=index))
            finish = _finish(read, candidate, index in self.tools)
            if finish is not None:
                self.ended.add(index)
                out.append(self.chunk(Delta(), finish, usage, index))
        self.finished = len(self.ended) >= self.candidates
        return out


def _candidates(read: Fields, answer: dict[str, Any]) -> list[dict[str, Any]]:
    # Gemini leaves out an empty list (a blocked prompt has none); it never writes null.
    if "candidates" in answer and answer["candidates"] is None:
        raise lie(read.connection, "'candidates' is null where an array belongs")
    return read.items(answer, "candidates", dict)


def _parts(read: Fields, candidate: dict[str, Any]) -> Parts:
    """(texts, thoughts, calls as name and JSON arguments) of one candidate."""
    texts: list[str] = []
    thoughts: list[str] = []
    calls: list[tuple[str, str]] = []
    content = read.field(candidate, "content", dict) or {}
    for part in read.items(content, "parts", dict):
        call = read.field(part, "functionCall", dict)
        if call is not None:
            args = orjson.dumps(read.field(call, "args", dict) or {}).decode()
            calls.append((read.field(call, "name", str) or "", args))
        elif "text" in part:
            text = read.field(part, "text", str) or ""
            (thoughts if read.field(part, "thought", bool) else texts).append(text)
    return texts, thoughts, calls


def _finish(read: Fields, candidate: dict[str, Any], called: bool) -> FinishReason | None:
    reason = read.field(candidate, "finishReason", str)
    if not reason or reason == "FINISH_REASON_UNSPECIFIED":
        return None
    finish = FINISH.get(reason, "stop")
    return "tool_calls" if finish == "stop" and called else finish


def _usage(read: Fields, answer: dict[str, Any]) -> Usage | None:
    raw = read.field(answer, "usageMetadata", dict)
    if raw is None:
        return None
    completion = read.count(raw, "candidatesTokenCount") + read.count(raw, "thoughtsTokenCount")
    return Usage(read.count(raw, "promptTokenCount"), completion)


def _methods(raw: Any) -> list[Any]:
    return raw if isinstance(raw, list) else []


def _blocked(read: Fields, answer: dict[str, Any]) -> InvalidRequestError:
    connection = read.connection.name
    reason = (read.field(answer, "promptFeedback", dict) or {}).get("blockReason")
    if reason:
        return InvalidRequestError(
            f"connection '{connection}': Gemini blocked the prompt ({reason})",
            code="content_filter",
        )
    return InvalidRequestError(
        f"connection '{connection}': Gemini returned no candidate", code="no_candidate"
    )
