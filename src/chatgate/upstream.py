"""The wire types that adapters build and the exchange sends: one upstream request, one
server-sent event, a queued job, and the headers that carry credentials.

Adapters (pure) and the exchange (I/O) both import this module and nothing of each other.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

import orjson

from chatgate.redaction import mask_secret, redact

# Headers that carry a credential: masked in every preview, guarded against overrides,
# and collected as secrets from a connection's own headers.
AUTH_HEADERS = frozenset(
    {"authorization", "x-api-key", "api-key", "x-goog-api-key", "apikey"}  # apikey: AI Horde
)


@dataclass(frozen=True, slots=True)
class Credentials:
    """What one connection authenticates with: its key, and a Google service account's
    key file text."""

    key: str | None = None
    service_account: str | None = None


# How a streamed answer is framed: server-sent events, or one JSON value per line.
Framing = Literal["sse", "ndjson"]


@dataclass(slots=True)
class UpstreamRequest:
    """One HTTP request to a provider, built without I/O."""

    method: str
    url: str
    headers: dict[str, str] = field(default_factory=dict)
    body: dict[str, Any] | None = None
    stream: bool = False
    framing: Framing = "sse"
    # A body that is not JSON (an OAuth token exchange posts a form); sent as it is.
    content: bytes | None = None
    # What the preview shows beside the request (the rendered prompt, which template
    # was chosen and why, what was cut to fit); never sent.
    explain: dict[str, Any] | None = None

    def preview(self, secrets: Iterable[str]) -> dict[str, Any]:
        """The request as `POST /api/preview` shows it: every secret masked."""
        known = [s for s in secrets if s]
        headers = {name: _mask_header(name, value, known) for name, value in self.headers.items()}
        body = _redacted(self.body, known) if self.body else None
        return {
            "method": self.method,
            "url": redact(self.url, known),
            "headers": headers,
            "body": body,
            "stream": self.stream,
            **({"prompt": _redacted(self.explain, known)} if self.explain else {}),
        }


def _redacted(value: dict[str, Any], secrets: list[str]) -> Any:
    return orjson.loads(redact(orjson.dumps(value).decode(), secrets))


def _mask_header(name: str, value: str, secrets: list[str]) -> str:
    if name.lower() in AUTH_HEADERS:
        scheme, _, token = value.partition(" ")
        if token and scheme.lower() == "bearer":
            return f"{scheme} {mask_secret(token)}"
        return mask_secret(value)
    return redact(value, secrets)


@dataclass(frozen=True, slots=True)
class TemplateRender:
    """A Jinja chat template to render: it is code (the client's, an operator's or a
    model's), so the exchange runs it in the template runner, never the adapter."""

    source: str
    messages: list[dict[str, Any]]
    bos_token: str = ""
    eos_token: str = ""
    extra: dict[str, Any] | None = None
    param: str | None = None  # the request field the template came from, for errors


@dataclass(frozen=True, slots=True)
class Question:
    """What an adapter must know before it can build a request: the server's answer to
    *ask* (a model's chat template, a prompt's token count), or a template's rendering.
    *topic* tells the adapter, when the answer comes back, what it was about."""

    topic: str
    ask: UpstreamRequest | TemplateRender


@dataclass(frozen=True, slots=True)
class SSEEvent:
    """One server-sent event: its name (if any) and its data."""

    event: str | None
    data: str


class Job(Protocol):
    """A queued upstream task (AI Horde and other queue APIs), described without I/O:
    `chatgate.exchange.Transport.run_job` submits it, polls it every `interval` seconds
    until `finished`, and sends `cancel` when it is abandoned.

    ``submitted`` is the submit request's JSON answer, ``polled`` a poll's.
    """

    @property
    def submit(self) -> UpstreamRequest:
        """The request that queues the task."""
        ...

    @property
    def interval(self) -> float:
        """Seconds between two polls."""
        ...

    def poll(self, submitted: Any) -> UpstreamRequest:
        """The request that asks how the task stands."""
        ...

    def finished(self, polled: Any) -> bool:
        """Whether *polled* is the final answer (it may raise for a failed task)."""
        ...

    def cancel(self, submitted: Any) -> UpstreamRequest | None:
        """The request that withdraws the task, if the API has one."""
        ...

    def progress(self, polled: Any) -> str | None:
        """How an unfinished task stands, in words (its queue position and wait), for a
        client waiting on a stream; None when the poll says nothing of it."""
        ...
