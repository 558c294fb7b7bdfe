"""What a provider's wire protocol must offer `RemoteBackend`, and the pieces they share.

An adapter is sans I/O: it builds `UpstreamRequest`s and reads decoded answers. A
`StreamReader` holds the state one stream needs (which content block is which tool call,
the usage seen so far) and turns each upstream event into OpenAI chunks.
"""

from __future__ import annotations

import base64
import binascii
import os
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import orjson

from chatgate.config import Connection
from chatgate.errors import ConfigError, InvalidRequestError, UpstreamError
from chatgate.prompt.postprocess import DEFAULT_PLACEHOLDER
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
from chatgate.upstream import SSEEvent, UpstreamRequest
from chatgate.urls import clean_base_url


class StreamReader(Protocol):
    """Turns one upstream stream, event by event, into OpenAI chunks."""

    finished: bool  # the upstream said the answer is complete
    done: bool  # nothing more will come worth reading

    def feed(self, event: SSEEvent) -> list[ChatChunk]:
        """The chunks one event makes; an error event raises."""
        ...


class WireAdapter(Protocol):
    """One provider's wire protocol, for one connection."""

    base_url: str
    key: str | None
    notes: list[str]

    async def authorize(self) -> None:
        """Get what sending needs beyond the key (an OAuth token), before `build`."""
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


def endpoint(connection: Connection, source: Source, env: Mapping[str, str]) -> Endpoint:
    """The base URL and key of *connection*: its own URL (a custom server or a reverse
    proxy, whose password then replaces the key) or the source's default."""
    notes: list[str] = []
    configured = connection.key(env)
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


class NativeAdapter:
    """What the native (non-OpenAI) protocols share: where to send, with which key, and
    the parameters they accept (``supported``; ``n`` only matters above 1)."""

    supported: frozenset[str] = frozenset()

    def __init__(
        self,
        connection: Connection,
        source: Source,
        env: Mapping[str, str] | None = None,
        placeholder: str = DEFAULT_PLACEHOLDER,
    ) -> None:
        self.connection, self.source = connection, source
        # The user turn inserted where a provider demands one (``prompt_placeholder``).
        self.placeholder = placeholder
        where = endpoint(connection, source, os.environ if env is None else env)
        self.base_url, self.key, self.proxied = where.base_url, where.key, where.proxied
        self.notes = list(where.notes)

    async def authorize(self) -> None:
        """Nothing beyond the key is needed (Vertex's service accounts override this)."""

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


@dataclass(frozen=True, slots=True)
class Image:
    """An image part, as the providers want it: inline bytes or a URL."""

    url: str | None = None
    media_type: str | None = None
    data: str | None = None  # base64


def image(url: str, param: str) -> Image:
    """A ``data:`` URL split into media type and base64 data; anything else stays a URL."""
    if not url.startswith("data:"):
        return Image(url=url, media_type=_guess_type(url))
    head, _, data = url[5:].partition(",")
    media_type, _, encoding = head.partition(";")
    if encoding != "base64" or not data:
        raise InvalidRequestError(
            "an image data URL must be base64: data:<type>;base64,<data>", param=param
        )
    try:
        base64.b64decode(data[:64] + "=" * (-len(data[:64]) % 4), validate=True)
    except binascii.Error:
        raise InvalidRequestError("the image data is not base64", param=param) from None
    return Image(media_type=media_type or "image/png", data=data)


def _guess_type(url: str) -> str:
    path = url.split("?", 1)[0].lower()
    for ext, media_type in (
        (".png", "image/png"),
        (".gif", "image/gif"),
        (".webp", "image/webp"),
        (".heic", "image/heic"),
    ):
        if path.endswith(ext):
            return media_type
    return "image/jpeg"


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


def text_of(message: Message) -> str:
    """The text parts of *message*, joined (tool results and system prompts)."""
    if message.content is None:
        return ""
    if isinstance(message.content, str):
        return message.content
    return "\n\n".join(p.text for p in message.content if p.type == "text")


def call_id() -> str:
    """A tool-call id for providers that do not give one."""
    return "call_" + uuid.uuid4().hex[:24]


def lie(connection: Connection, what: str) -> UpstreamError:
    """The upstream answered something that is not its protocol."""
    return UpstreamError(f"connection '{connection.name}': {what}", code="bad_upstream_response")


def stream_error(connection: Connection, said: Any) -> UpstreamError:
    """An error the upstream sent inside a stream, in its own words."""
    message = said.get("message") if isinstance(said, dict) else None
    return UpstreamError(
        f"connection '{connection.name}': upstream error in the stream: "
        f"{message or str(said)[:300]}"
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
