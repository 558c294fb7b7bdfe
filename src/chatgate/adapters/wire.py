"""What a provider's wire protocol must offer `RemoteBackend`, and the pieces they share.

An adapter is sans I/O: it builds `UpstreamRequest`s and reads decoded answers. A
`StreamReader` holds the state one stream needs (which content block is which tool call,
the usage seen so far) and turns each upstream event into OpenAI chunks. Answers are read
through `Fields`, so a value of the wrong type anywhere is a 502 naming the connection.
The runner, not the adapter, adds the connection's ``extra_body`` and ``exclude_params``.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import orjson

from chatgate.adapters.fields import Fields as Fields
from chatgate.adapters.fields import lie as lie
from chatgate.config import Connection
from chatgate.errors import ConfigError, InvalidRequestError, UpstreamError
from chatgate.prompt.postprocess import DEFAULT_PLACEHOLDER
from chatgate.redaction import scrubbed
from chatgate.sources import Source
from chatgate.types import (
    ChatChunk,
    ChatRequest,
    ChatResponse,
    ChunkChoice,
    Delta,
    FinishReason,
    Message,
    Usage,
)
from chatgate.upstream import Credentials, Job, Question, SSEEvent, UpstreamRequest
from chatgate.urls import clean_base_url

# One provider turn: its role and its blocks (Claude) or parts (Gemini).
Turn = tuple[str, list[dict[str, Any]]]


class StreamReader(Protocol):
    """Turns one upstream stream, event by event, into OpenAI chunks."""

    finished: bool  # the upstream said the answer is complete
    done: bool  # nothing more will come worth reading

    def feed(self, event: Any) -> list[ChatChunk]:
        """The chunks one event makes (an `SSEEvent`, or for an NDJSON stream one parsed
        line); an error event raises."""
        ...


class WireAdapter(Protocol):
    """One provider's wire protocol, for one connection."""

    base_url: str
    key: str | None
    notes: list[str]

    def auth_request(self, now: float) -> UpstreamRequest | None:
        """The request that fetches what sending needs beyond the key (an OAuth token),
        when one is due at *now*; None when nothing is."""
        ...

    def accept_auth(self, data: Any, now: float) -> None:
        """Take the answer to `auth_request`."""
        ...

    def secrets(self) -> list[str | None]:
        """What this adapter sends that must never be shown: its key, and any token it
        was given."""
        ...

    def job(self, request: ChatRequest, dropped: list[str]) -> Job | None:
        """The queued job a non-stream *request* runs as, for protocols that submit and
        poll (AI Horde); None where one request gets the answer (`build`)."""
        ...

    def cancel_request(self, request: ChatRequest) -> UpstreamRequest | None:
        """The request that stops *request*'s generation upstream when the client leaves
        mid-stream (an abort endpoint), if the protocol has one."""
        ...

    def lookup(self, request: ChatRequest) -> Question | None:
        """What must be known before *request* can be built (a model's chat template,
        a long prompt's token count, a template's rendering); None when nothing is."""
        ...

    def learn(self, question: Question, answer: Any, error: str | None) -> None:
        """Take the answer to a `lookup` question (JSON, or a rendered template's text),
        or why there is none (*error*)."""
        ...

    def unsupported(self, request: ChatRequest, set_names: list[str]) -> list[str]:
        """Parameters this provider refuses, in the order the client set them."""
        ...

    def build(self, request: ChatRequest, dropped: list[str]) -> UpstreamRequest:
        """The upstream request (stream or not, as ``request.stream`` says)."""
        ...

    def parse_response(self, data: Any, model: str) -> ChatResponse:
        """A whole answer."""
        ...

    def settle(self, answer: ChatResponse, request: ChatRequest) -> ChatResponse:
        """*answer* to *request* finished the way the protocol leaves to chatgate (stop
        strings a server cannot apply, cut here)."""
        ...

    def reader(self, request: ChatRequest) -> StreamReader:
        """A reader for the stream *request* opens."""
        ...

    def models_request(self, base_url: str | None = None) -> UpstreamRequest:
        """The free call that lists models."""
        ...

    def parse_models(self, data: Any) -> list[str]:
        """Model ids from the models answer."""
        ...


@dataclass(frozen=True, slots=True)
class Endpoint:
    """Where a connection sends its requests and with which key."""

    base_url: str
    key: str | None
    notes: list[str]
    proxied: bool


def endpoint(connection: Connection, source: Source, credentials: Credentials) -> Endpoint:
    """The base URL and key of *connection*: its own URL (a custom server or a reverse
    proxy, whose password then replaces the key) or the source's default."""
    notes: list[str] = []
    configured = credentials.key
    if connection.base_url:
        cleaned = clean_base_url(connection.base_url, connection.name)
        if cleaned.note:
            notes.append(cleaned.note)
        base_url = cleaned.url
    elif source.anonymous_base_url and not configured:
        base_url = source.anonymous_base_url
    elif source.default_base_url:
        base_url = source.default_base_url
    else:
        raise ConfigError(f"connection '{connection.name}': source '{source.id}' needs base_url")
    proxied = bool(connection.base_url) and source.reverse_proxy
    password = (connection.proxy_password or "").strip()
    key = password if proxied and password else None
    key = key or configured or source.anonymous_key
    if key is None and source.key_required:
        variable = connection.api_key_env or f"{connection.name.upper()}_API_KEY"
        raise ConfigError(
            f"connection '{connection.name}' ({source.display_name}) needs a key: set "
            f'api_key_env = "{variable}" and export it, or api_key'
        )
    return Endpoint(base_url, key, notes, proxied)


class PlainExchange:
    """The exchange most protocols need: a key and nothing more, one request per
    answer, no abort endpoint. Adapters override what their protocol has."""

    key: str | None

    def secrets(self) -> list[str | None]:
        """The key."""
        return [self.key]

    def auth_request(self, now: float) -> UpstreamRequest | None:
        """Nothing beyond the key is needed."""
        return None

    def accept_auth(self, data: Any, now: float) -> None:
        """Never called: there is no `auth_request`."""

    def job(self, request: ChatRequest, dropped: list[str]) -> Job | None:
        """One request gets the answer."""
        return None

    def cancel_request(self, request: ChatRequest) -> UpstreamRequest | None:
        """Closing the stream is all it takes to stop."""
        return None

    def lookup(self, request: ChatRequest) -> Question | None:
        """Nothing to ask before building."""
        return None

    def settle(self, answer: ChatResponse, request: ChatRequest) -> ChatResponse:
        """The server finished the answer itself."""
        return answer

    def learn(self, question: Question, answer: Any, error: str | None) -> None:
        """Never called: there is no `lookup`."""


class NativeAdapter(PlainExchange):
    """What the native (non-OpenAI) protocols share: where to send, with which key, and
    the parameters they accept (``supported``; ``n`` only matters above 1)."""

    supported: frozenset[str] = frozenset()

    def __init__(
        self,
        connection: Connection,
        source: Source,
        credentials: Credentials,
        placeholder: str = DEFAULT_PLACEHOLDER,
    ) -> None:
        self.connection, self.source = connection, source
        # The user turn inserted where a provider demands one (``prompt_placeholder``).
        self.placeholder = placeholder
        where = endpoint(connection, source, credentials)
        self.base_url, self.key, self.proxied = where.base_url, where.key, where.proxied
        self.notes = list(where.notes)
        self.read = Fields(connection)

    def unsupported(self, request: ChatRequest, set_names: list[str]) -> list[str]:
        """Parameters this protocol has no counterpart for, in the client's order."""
        return [
            name
            for name in set_names
            if not (name == "n" and (request.n or 1) == 1) and name not in self.supported
        ]

    def listed(self, data: Any, key: str, field: str) -> list[str]:
        """The *field* of every entry in the models answer's *key* list."""
        items = data.get(key) if isinstance(data, dict) else None
        if not isinstance(items, list):
            raise lie(self.connection, "the models answer has no list")
        return [str(i[field]) for i in items if isinstance(i, dict) and i.get(field)]


class ReaderBase:
    """The state every native stream reader keeps, and how it makes a chunk."""

    def __init__(self, connection: Connection, model: str, default_id: str) -> None:
        self.connection, self.model = connection, model
        self.finished = self.done = False
        self.read = Fields(connection)
        self.id = default_id
        self.created = int(time.time())

    def chunk(
        self,
        delta: Delta,
        finish: FinishReason | None = None,
        usage: Usage | None = None,
        index: int = 0,
    ) -> ChatChunk:
        """One chunk with one choice."""
        choice = ChunkChoice(index, delta, finish)
        return ChatChunk(self.id, self.created, self.model, [choice], usage)


def arguments(text: str, param: str) -> Any:
    """Tool-call arguments (a JSON string in OpenAI's format) as a value."""
    if not text.strip():
        return {}
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        raise InvalidRequestError(
            "tool-call arguments must be a JSON string", param=param, code="invalid_value"
        ) from None


def leading_system(messages: Sequence[Message]) -> tuple[list[Message], list[Message]]:
    """(system prompt, conversation): every system or developer message before the first
    message of another role is the system prompt, even when no other message follows (a
    provider that needs a turn then adds its placeholder user turn); a later one stays in
    the conversation, in whatever role the provider has for it."""
    start = 0
    while start < len(messages) and messages[start].role in ("system", "developer"):
        start += 1
    return list(messages[:start]), list(messages[start:])


def merge_turns(turns: Iterable[Turn]) -> list[Turn]:
    """Turns for a provider whose user and assistant turns must alternate (a tool result
    is a user turn there): an empty turn is left out, as such providers refuse it and it
    says nothing, and a turn joins the one before it when their roles match."""
    out: list[Turn] = []
    for role, items in turns:
        if not items:
            continue
        if out and out[-1][0] == role:
            out[-1][1].extend(items)
        else:
            out.append((role, list(items)))
    return out


def call_id() -> str:
    """A tool-call id for providers that do not give one."""
    return "call_" + uuid.uuid4().hex[:24]


def stream_error(connection: Connection, said: Any) -> UpstreamError:
    """An error the upstream sent inside a stream, in its own words (without a Python
    traceback or the server's file paths, `chatgate.redaction.scrubbed`)."""
    message = said.get("message") if isinstance(said, dict) else None
    words = message if isinstance(message, str) and message else str(said)[:300]
    return UpstreamError(
        f"connection '{connection.name}': upstream error in the stream: {scrubbed(words)}"
    )


def decode(connection: Connection, event: SSEEvent) -> Any:
    """An event's JSON data."""
    try:
        return orjson.loads(event.data)
    except orjson.JSONDecodeError:
        raise lie(connection, f"a stream event is not JSON: {event.data[:120]!r}") from None


def role_chunk(chunk_id: str, model: str, created: int | None = None) -> ChatChunk:
    """The first chunk of every OpenAI stream: the role, empty content."""
    return ChatChunk(
        chunk_id,
        created or int(time.time()),
        model,
        [ChunkChoice(0, Delta(role="assistant", content=""))],
    )
