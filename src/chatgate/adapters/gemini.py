"""The Gemini API: Google AI Studio (source ``google``) and Vertex AI (``vertexai``).

OpenAI → Gemini: leading system messages become ``systemInstruction``; later ones become
user turns; ``assistant`` is ``model``; tool calls are ``functionCall`` parts and tool
results ``functionResponse`` parts (named after the call they answer); images are
``inlineData`` (data URLs) or ``fileData`` (other URLs); same-role neighbours merge.
The key always travels in the ``x-goog-api-key`` header, never in a URL. See
``docs/providers.md``.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from typing import Any

import orjson

from chatgate.adapters.gemini_schema import to_gemini
from chatgate.adapters.google_auth import ServiceAccountToken, load_service_account
from chatgate.adapters.wire import (
    NativeAdapter,
    ReaderBase,
    arguments,
    call_id,
    decode,
    image,
    lie,
    role_chunk,
    stream_error,
    text_of,
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
    JSONObjectFormat,
    JSONSchemaFormat,
    Message,
    ToolCall,
    ToolCallDelta,
    Usage,
)
from chatgate.upstream import SSEEvent, UpstreamRequest

SAFETY_CATEGORIES = (
    "HARM_CATEGORY_HARASSMENT",
    "HARM_CATEGORY_HATE_SPEECH",
    "HARM_CATEGORY_SEXUALLY_EXPLICIT",
    "HARM_CATEGORY_DANGEROUS_CONTENT",
)
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
THINKING_BUDGET = {"minimal": 512, "low": 1024, "medium": 8192, "high": 24576}
SUPPORTED = frozenset(
    {
        "model", "messages", "stream", "stream_options", "max_tokens", "max_completion_tokens",
        "temperature", "top_p", "top_k", "stop", "seed", "n", "presence_penalty",
        "frequency_penalty", "response_format", "tools", "tool_choice", "user",
        "reasoning_effort", "inference_extra_params", "inference_extra_headers",
    }
)  # fmt: skip


class GeminiAdapter(NativeAdapter):
    """Builds ``generateContent`` requests and reads their answers, for one connection."""

    supported = SUPPORTED

    def __init__(
        self,
        connection: Connection,
        source: Source,
        env: Mapping[str, str] | None = None,
        placeholder: str = DEFAULT_PLACEHOLDER,
    ) -> None:
        env = os.environ if env is None else env
        super().__init__(connection, source, env, placeholder)
        self.vertex = source.id == "vertexai"
        account = load_service_account(connection, env) if self.vertex else None
        self.token: ServiceAccountToken | None = None
        self.bearer: str | None = None
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
            region = connection.region
            host = "aiplatform.googleapis.com"
            self.base_url = f"https://{host if region == 'global' else f'{region}-{host}'}/v1"
        project = connection.project or (account or {}).get("project_id")
        self.models_path = (
            f"projects/{project}/locations/{connection.region}/publishers/google/models"
            if self.vertex and project and not connection.proxy_password
            else "publishers/google/models"
            if self.vertex
            else "models"
        )

    async def authorize(self) -> None:
        """Fetch (or reuse) the service account's access token before sending."""
        if self.token is not None:
            self.bearer = await self.token.get()

    def headers(self) -> dict[str, str]:
        """The key in ``x-goog-api-key`` (never the URL), or a bearer token."""
        out = {"Content-Type": "application/json"}
        if self.token is not None:
            out["Authorization"] = f"Bearer {self.bearer or '(service-account token)'}"
        elif self.key:
            out["x-goog-api-key"] = self.key
            if self.proxied:  # reverse proxies commonly read a bearer token instead
                out["Authorization"] = f"Bearer {self.key}"
        out.update(self.connection.headers)
        return out

    def build(self, request: ChatRequest, dropped: list[str]) -> UpstreamRequest:
        """The ``generateContent`` (or ``streamGenerateContent``) request."""
        system, contents = _contents(request.messages, self.placeholder)
        body: dict[str, Any] = {"contents": contents}
        if system:
            body["systemInstruction"] = {"parts": system}
        config = _generation_config(request, set(dropped))
        if config:
            body["generationConfig"] = config
        safety = self.connection.safety_settings
        if safety is None:
            safety = [{"category": c, "threshold": "OFF"} for c in SAFETY_CATEGORIES]
        if safety:
            body["safetySettings"] = safety
        _tools(request, body)
        body.update(self.connection.extra_body)
        for name in self.connection.exclude_params:
            body.pop(name, None)
        method = "streamGenerateContent?alt=sse" if request.stream else "generateContent"
        url = f"{self.base_url}/{self.models_path}/{request.model_name}:{method}"
        return UpstreamRequest("POST", url, self.headers(), body, stream=bool(request.stream))

    def parse_response(self, data: Any, model: str) -> ChatResponse:
        """A ``GenerateContentResponse`` as a chat completion."""
        if not isinstance(data, dict):
            raise lie(self.connection, "the answer is not a GenerateContentResponse")
        candidates = data.get("candidates")
        if not candidates:
            raise _blocked(self.connection, data)
        choices = []
        for position, candidate in enumerate(candidates):
            texts, thoughts, calls = _parts(candidate)
            finish = _finish(candidate.get("finishReason"), bool(calls)) or "stop"
            message = AssistantMessage(
                content="".join(texts) if texts or not calls else None,
                tool_calls=[
                    ToolCall(id=call_id(), function=FunctionCall(name=n, arguments=a))
                    for n, a in calls
                ]
                or None,
                reasoning_content="".join(thoughts) or None,
            )
            choices.append(Choice(candidate.get("index", position), message, finish))
        return ChatResponse(
            id=str(data.get("responseId") or "gemini"),
            created=int(time.time()),
            model=model,
            choices=choices,
            usage=_usage(data.get("usageMetadata")) or Usage(0, 0),
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
            and "generateContent" in (item.get("supportedGenerationMethods") or [])
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
        data = decode(self.connection, event)
        if not isinstance(data, dict):
            raise lie(self.connection, "a stream event is not a JSON object")
        if data.get("error"):
            raise stream_error(self.connection, data["error"])
        out: list[ChatChunk] = []
        if not self.started:
            self.started = True
            self.id = str(data.get("responseId") or self.id)
            out.append(role_chunk(self.id, self.model, self.created))
        candidates = data.get("candidates")
        if not candidates and data.get("promptFeedback", {}).get("blockReason"):
            raise _blocked(self.connection, data)
        usage = _usage(data.get("usageMetadata"))
        for position, candidate in enumerate(candidates or []):
            index = int(candidate.get("index", position))
            texts, thoughts, calls = _parts(candidate)
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
            finish = _finish(candidate.get("finishReason"), index in self.tools)
            if finish is not None:
                self.ended.add(index)
                out.append(self.chunk(Delta(), finish, usage, index))
        self.finished = len(self.ended) >= self.candidates
        return out


def _contents(
    messages: list[Message], placeholder: str
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    start = 0
    while start < len(messages) - 1 and messages[start].role in ("system", "developer"):
        start += 1
    system = [{"text": text_of(m)} for m in messages[:start] if text_of(m)]
    names = {c.id: c.function.name for m in messages for c in (m.tool_calls or [])}
    contents: list[dict[str, Any]] = []
    for position in range(start, len(messages)):
        message = messages[position]
        role = "model" if message.role == "assistant" else "user"
        parts = _message_parts(message, names, f"messages[{position}]")
        if not parts:
            continue
        if contents and contents[-1]["role"] == role:
            contents[-1]["parts"].extend(parts)
        else:
            contents.append({"role": role, "parts": parts})
    if not contents:
        contents.append({"role": "user", "parts": [{"text": placeholder}]})
    return system, contents


def _message_parts(message: Message, names: dict[str, str], param: str) -> list[dict[str, Any]]:
    if message.role == "tool":
        text = text_of(message)
        try:
            value = orjson.loads(text)
        except orjson.JSONDecodeError:
            value = None
        response = value if isinstance(value, dict) else {"content": text}
        name = names.get(message.tool_call_id or "", "unknown")
        return [{"functionResponse": {"name": name, "response": response}}]
    parts: list[dict[str, Any]] = []
    prefix = f"{message.name}: " if message.name and message.role == "user" else ""
    content = message.content
    if isinstance(content, str):
        if content:
            parts.append({"text": prefix + content})
    elif content is not None:
        for index, part in enumerate(content):
            if part.type == "text":
                if part.text:
                    parts.append({"text": part.text})
            elif part.type == "image_url":
                found = image(part.image_url.url, f"{param}.content[{index}]")
                if found.data is not None:
                    parts.append({"inlineData": {"mimeType": found.media_type, "data": found.data}})
                else:
                    parts.append({"fileData": {"mimeType": found.media_type, "fileUri": found.url}})
            elif part.type == "input_audio":
                media = f"audio/{part.input_audio.format}"
                parts.append({"inlineData": {"mimeType": media, "data": part.input_audio.data}})
            elif part.type == "refusal":
                parts.append({"text": part.refusal})
        if prefix and parts and "text" in parts[0]:
            parts[0]["text"] = prefix + parts[0]["text"]
    for index, call in enumerate(message.tool_calls or []):
        args = arguments(call.function.arguments, f"{param}.tool_calls[{index}].function.arguments")
        parts.append({"functionCall": {"name": call.function.name, "args": args}})
    return parts


def _generation_config(request: ChatRequest, dropped: set[str]) -> dict[str, Any]:
    config: dict[str, Any] = {}
    pairs = (
        ("temperature", "temperature"),
        ("top_p", "topP"),
        ("top_k", "topK"),
        ("seed", "seed"),
        ("presence_penalty", "presencePenalty"),
        ("frequency_penalty", "frequencyPenalty"),
        ("n", "candidateCount"),
    )
    for ours, theirs in pairs:
        value = getattr(request, ours)
        if value is not None and ours not in dropped:
            config[theirs] = value
    if request.completion_limit:
        config["maxOutputTokens"] = request.completion_limit
    if request.stops:
        config["stopSequences"] = request.stops
    fmt = request.response_format
    if isinstance(fmt, JSONSchemaFormat | JSONObjectFormat):
        config["responseMimeType"] = "application/json"
        if isinstance(fmt, JSONSchemaFormat) and fmt.json_schema.schema_:
            config["responseSchema"] = to_gemini(fmt.json_schema.schema_, "response_format")
    effort = (request.model_extra or {}).get("reasoning_effort")
    if isinstance(effort, str) and effort != "none" and "reasoning_effort" not in dropped:
        if effort not in THINKING_BUDGET:
            raise InvalidRequestError(
                f"reasoning_effort must be one of {', '.join(THINKING_BUDGET)} or none",
                param="reasoning_effort",
            )
        config["thinkingConfig"] = {
            "thinkingBudget": THINKING_BUDGET[effort],
            "includeThoughts": True,
        }
    return config


def _tools(request: ChatRequest, body: dict[str, Any]) -> None:
    if not request.tools:
        return
    declarations = []
    for index, tool in enumerate(request.tools):
        entry: dict[str, Any] = {"name": tool.function.name}
        if tool.function.description:
            entry["description"] = tool.function.description
        if tool.function.parameters and tool.function.parameters.get("properties"):
            where = f"tools[{index}].function.parameters"
            entry["parameters"] = to_gemini(tool.function.parameters, where)
        declarations.append(entry)
    body["tools"] = [{"functionDeclarations": declarations}]
    choice = request.tool_choice
    if choice is None:
        return
    if choice == "auto":
        config: dict[str, Any] = {"mode": "AUTO"}
    elif choice == "none":
        config = {"mode": "NONE"}
    elif choice == "required":
        config = {"mode": "ANY"}
    else:
        config = {"mode": "ANY", "allowedFunctionNames": [choice.function.get("name", "")]}
    body["toolConfig"] = {"functionCallingConfig": config}


def _parts(candidate: dict[str, Any]) -> tuple[list[str], list[str], list[tuple[str, str]]]:
    texts: list[str] = []
    thoughts: list[str] = []
    calls: list[tuple[str, str]] = []
    for part in (candidate.get("content") or {}).get("parts") or []:
        if "functionCall" in part:
            call = part["functionCall"]
            args = orjson.dumps(call.get("args") or {}).decode()
            calls.append((str(call.get("name", "")), args))
        elif "text" in part:
            (thoughts if part.get("thought") else texts).append(str(part["text"]))
    return texts, thoughts, calls


def _finish(reason: Any, called: bool) -> FinishReason | None:
    if not reason or reason == "FINISH_REASON_UNSPECIFIED":
        return None
    finish = FINISH.get(str(reason), "stop")
    return "tool_calls" if finish == "stop" and called else finish


def _usage(raw: Any) -> Usage | None:
    if not isinstance(raw, dict):
        return None
    completion = int(raw.get("candidatesTokenCount") or 0) + int(raw.get("thoughtsTokenCount") or 0)
    return Usage(int(raw.get("promptTokenCount") or 0), completion)


def _blocked(connection: Connection, data: dict[str, Any]) -> InvalidRequestError:
    reason = (data.get("promptFeedback") or {}).get("blockReason")
    if reason:
        return InvalidRequestError(
            f"connection '{connection.name}': Gemini blocked the prompt ({reason})",
            code="content_filter",
        )
    return InvalidRequestError(
        f"connection '{connection.name}': Gemini returned no candidate", code="no_candidate"
    )
