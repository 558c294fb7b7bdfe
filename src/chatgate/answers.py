"""The answer types: what engines and adapters build, and each door renders.

Slotted dataclasses, not pydantic models: chatgate makes them itself, so they need no
validation, and a stream makes one per token.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from chatgate.types import FinishReason, ToolCall


@dataclass(slots=True)
class Usage:
    """Token counts of one request."""

    prompt_tokens: int
    completion_tokens: int

    @property
    def total_tokens(self) -> int:
        """Prompt plus completion."""
        return self.prompt_tokens + self.completion_tokens


@dataclass(slots=True)
class AssistantMessage:
    """The message of one choice of a non-stream answer."""

    content: str | None
    tool_calls: list[ToolCall] | None = None
    reasoning_content: str | None = None


@dataclass(slots=True)
class Choice:
    """One choice of a non-stream answer."""

    index: int
    message: AssistantMessage
    finish_reason: FinishReason | None
    logprobs: dict[str, Any] | None = None


@dataclass(slots=True)
class ChatResponse:
    """A whole chat completion."""

    id: str
    created: int
    model: str
    choices: list[Choice]
    usage: Usage
    system_fingerprint: str | None = None

    @property
    def text(self) -> str:
        """The first choice's content (a convenience for library users)."""
        return self.choices[0].message.content or "" if self.choices else ""


@dataclass(slots=True)
class ToolCallDelta:
    """A piece of a streamed tool call; ``index`` ties the pieces together."""

    index: int
    id: str | None = None
    name: str | None = None
    arguments: str | None = None


@dataclass(slots=True)
class Delta:
    """What one stream chunk adds to a choice."""

    role: Literal["assistant"] | None = None
    content: str | None = None
    reasoning_content: str | None = None
    tool_calls: list[ToolCallDelta] | None = None


@dataclass(slots=True)
class ChunkChoice:
    """One choice of a stream chunk."""

    index: int
    delta: Delta
    finish_reason: FinishReason | None = None
    logprobs: dict[str, Any] | None = None


@dataclass(slots=True)
class ChatChunk:
    """One event of a streamed chat completion.

    A chunk with no choices and a ``usage`` is the final usage chunk; one with a
    ``comment`` instead says how a queued request stands (AI Horde's queue position),
    which an SSE door sends as a comment line and other doors leave out.
    """

    id: str
    created: int
    model: str
    choices: list[ChunkChoice] = field(default_factory=list)
    usage: Usage | None = None
    system_fingerprint: str | None = None
    comment: str | None = None


def as_chunks(answer: ChatResponse, *, with_usage: bool) -> list[ChatChunk]:
    """A whole answer as the chunks of a stream: role, content, finish, usage."""
    chunks = []
    for choice in answer.choices:
        message = choice.message
        calls = [
            ToolCallDelta(i, c.id, c.function.name, c.function.arguments)
            for i, c in enumerate(message.tool_calls or [])
        ]
        delta = Delta("assistant", message.content, message.reasoning_content, calls or None)
        chunks.append(
            ChatChunk(answer.id, answer.created, answer.model, [ChunkChoice(choice.index, delta)])
        )
        finish = ChunkChoice(choice.index, Delta(), choice.finish_reason)
        chunks.append(ChatChunk(answer.id, answer.created, answer.model, [finish]))
    if with_usage:
        chunks.append(ChatChunk(answer.id, answer.created, answer.model, [], answer.usage))
    return chunks
