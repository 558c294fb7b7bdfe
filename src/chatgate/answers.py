"""The answer types: what engines and adapters build, and each door renders.

Slotted dataclasses, not pydantic models: chatgate makes them itself, so they need no
validation, and a stream makes one per token.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from chatgate.types import FinishReason, RedactedThinkingPart, ThinkingPart, ToolCall


@dataclass(slots=True)
class Usage:
    """Token counts of one request."""

    prompt_tokens: int
    completion_tokens: int
    # The part of prompt_tokens read from, and written to, a prompt cache (Claude's
    # cache_read_input_tokens and cache_creation_input_tokens); 0 where unknown.
    cached_tokens: int = 0
    cache_write_tokens: int = 0

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
    # Claude's reasoning as its signed (or redacted) blocks, in order; their thinking
    # texts joined are reasoning_content.
    thinking_blocks: list[ThinkingPart | RedactedThinkingPart] | None = None


@dataclass(slots=True)
class Choice:
    """One choice of a non-stream answer."""

    index: int
    message: AssistantMessage
    finish_reason: FinishReason | None
    logprobs: dict[str, Any] | None = None
    stop_sequence: str | None = None  # the stop sequence that ended it, when told


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
    # Claude's: the signature that closes the reasoning streamed so far, and reasoning
    # blocks it sent encrypted. Both belong before this delta's own reasoning and text.
    reasoning_signature: str | None = None
    redacted_reasoning: list[str] | None = None


@dataclass(slots=True)
class ChunkChoice:
    """One choice of a stream chunk."""

    index: int
    delta: Delta
    finish_reason: FinishReason | None = None
    logprobs: dict[str, Any] | None = None
    stop_sequence: str | None = None  # with the finish reason: the stop sequence, when told


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
        if message.thinking_blocks:
            # Block by block, so that each signature still follows its own thinking.
            *thinking, delta = _thinking_deltas(message.thinking_blocks, delta)
            for step in thinking:
                chunks.append(
                    ChatChunk(
                        answer.id, answer.created, answer.model, [ChunkChoice(choice.index, step)]
                    )
                )
        chunks.append(
            ChatChunk(answer.id, answer.created, answer.model, [ChunkChoice(choice.index, delta)])
        )
        finish = ChunkChoice(
            choice.index, Delta(), choice.finish_reason, stop_sequence=choice.stop_sequence
        )
        chunks.append(ChatChunk(answer.id, answer.created, answer.model, [finish]))
    if with_usage:
        chunks.append(ChatChunk(answer.id, answer.created, answer.model, [], answer.usage))
    return chunks


def _thinking_deltas(blocks: list[ThinkingPart | RedactedThinkingPart], rest: Delta) -> list[Delta]:
    """Reasoning blocks, then *rest* (the role, text and calls) without its reasoning, as
    a stream carries them: a thinking block's text, its signature on the next delta, a
    redacted block's data on the next delta too."""
    out: list[Delta] = []
    signature: str | None = None
    redacted: list[str] = []
    for block in blocks:
        if block.type == "redacted_thinking":
            redacted.append(block.data)
            continue
        out.append(Delta(None, None, block.thinking, None, signature, redacted or None))
        signature, redacted = block.signature, []
    rest.reasoning_content = None
    rest.reasoning_signature, rest.redacted_reasoning = signature, redacted or None
    out.append(rest)
    if len(out) > 1:
        out[0].role, rest.role = rest.role, None
    return out
