"""The core value types of chatgate.

Requests are pydantic models, validated once at the front door in strict mode (a string
is not an integer). Answers are slotted dataclasses built by engines and adapters, so
they need no validation; each front door's codec renders them in its own shape
(`chatgate.server.doors`).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator, model_validator

# The answer types live in `chatgate.answers`; importing them from here keeps working.
from chatgate.answers import (
    AssistantMessage as AssistantMessage,
)
from chatgate.answers import (
    ChatChunk as ChatChunk,
)
from chatgate.answers import (
    ChatResponse as ChatResponse,
)
from chatgate.answers import (
    Choice as Choice,
)
from chatgate.answers import (
    ChunkChoice as ChunkChoice,
)
from chatgate.answers import (
    Delta as Delta,
)
from chatgate.answers import (
    ToolCallDelta as ToolCallDelta,
)
from chatgate.answers import (
    Usage as Usage,
)
from chatgate.errors import InvalidRequestError
from chatgate.extensions import GUIDED_KINDS, RequestExtensions

Role = Literal["system", "developer", "user", "assistant", "tool"]
FinishReason = Literal["stop", "length", "tool_calls", "content_filter", "function_call"]
PostProcessingMode = Literal[
    "none", "merge", "merge-tools", "semi-strict", "semi-strict-tools", "strict",
    "strict-tools", "single",
]  # fmt: skip
# SillyTavern's spellings of the same modes, so its users can paste what they know.
POST_PROCESSING_ALIASES = {
    "": "none",
    "claude": "merge",
    "merge_tools": "merge-tools",
    "semi": "semi-strict",
    "semi_tools": "semi-strict-tools",
    "strict_tools": "strict-tools",
}


def _post_processing_alias(value: Any) -> Any:
    return POST_PROCESSING_ALIASES.get(value, value) if isinstance(value, str) else value


PostProcessing = Annotated[PostProcessingMode, BeforeValidator(_post_processing_alias)]
# What happens to a message's ``name`` when post-processing reshapes the prompt.
NamesPolicy = Literal["prefix", "keep", "none"]


class _Strict(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)


class CacheControl(_Strict):
    """A prompt-cache breakpoint (Anthropic's ``cache_control``), on a part, a tool, a
    tool call or a tool result."""

    type: Literal["ephemeral"]
    ttl: Literal["5m", "1h"] | None = None


# The fields below that carry one backend's annotations (cache breakpoints, Claude's
# signed thinking) are excluded from ``model_dump``: an adapter that dumps the request
# as OpenAI JSON never forwards them to an upstream that would refuse them, and the
# adapters that know them (Claude's, OpenRouter's) put them on the wire themselves.
def _annotation(description: str) -> Any:
    return Field(default=None, exclude=True, description=description)


class TextPart(_Strict):
    """A piece of text inside a message's content list."""

    type: Literal["text"]
    text: str
    cache_control: CacheControl | None = _annotation("A prompt-cache breakpoint.")


class ImageURL(_Strict):
    """Where an image lives: an http(s) URL or a ``data:`` URL."""

    url: str
    detail: Literal["auto", "low", "high"] | None = None


class ImagePart(_Strict):
    """An image inside a message's content list."""

    type: Literal["image_url"]
    image_url: ImageURL
    cache_control: CacheControl | None = _annotation("A prompt-cache breakpoint.")


class InputAudio(_Strict):
    """Base64 audio and its format."""

    data: str
    format: str


class AudioPart(_Strict):
    """Audio inside a message's content list."""

    type: Literal["input_audio"]
    input_audio: InputAudio


class RefusalPart(_Strict):
    """A refusal an assistant gave earlier, sent back as history."""

    type: Literal["refusal"]
    refusal: str


ContentPart = Annotated[TextPart | ImagePart | AudioPart | RefusalPart, Field(discriminator="type")]


class FunctionCall(_Strict):
    """The function an assistant called and its JSON-encoded arguments."""

    name: str
    arguments: str


class ToolCall(_Strict):
    """One tool call of an assistant message."""

    id: str
    type: Literal["function"] = "function"
    function: FunctionCall
    cache_control: CacheControl | None = _annotation("A prompt-cache breakpoint.")


class ThinkingPart(_Strict):
    """A block of an assistant's reasoning as Claude returned it, with the signature
    Claude needs to see again when the conversation goes back to it."""

    type: Literal["thinking"]
    thinking: str
    signature: str


class RedactedThinkingPart(_Strict):
    """A block of reasoning Claude returned encrypted: only Claude can read it back."""

    type: Literal["redacted_thinking"]
    data: str


ThinkingBlock = Annotated[ThinkingPart | RedactedThinkingPart, Field(discriminator="type")]


class Message(BaseModel):
    """One message of a conversation, in any of the five roles."""

    model_config = ConfigDict(strict=True, extra="allow", frozen=True)

    role: Role
    content: str | list[ContentPart] | None = None
    name: str | None = None
    tool_calls: list[ToolCall] | None = None
    tool_call_id: str | None = None
    reasoning_content: str | None = None
    # An assistant's reasoning as signed blocks, for Claude; other backends read
    # reasoning_content (the blocks' text) or nothing.
    thinking_blocks: list[ThinkingBlock] | None = _annotation(
        "An assistant's reasoning as Claude returned it (signed), sent back to Claude."
    )
    # On a tool message: the breakpoint and error flag of its tool result.
    cache_control: CacheControl | None = _annotation(
        "On a tool message: a prompt-cache breakpoint on the tool result."
    )
    is_error: bool | None = _annotation("On a tool message: the tool failed.")

    @model_validator(mode="after")
    def _check_role_fields(self) -> Message:
        if self.role == "tool" and not self.tool_call_id:
            raise ValueError("a tool message needs 'tool_call_id'")
        if self.role != "assistant" and self.content is None:
            raise ValueError(f"a {self.role} message needs 'content'")
        if self.role == "assistant" and self.content is None and not self.tool_calls:
            raise ValueError("an assistant message needs 'content' or 'tool_calls'")
        return self

    def text(self) -> str:
        """The message's text: the string content, or its text parts joined by a blank
        line (so that two parts never run into one word)."""
        if self.content is None:
            return ""
        if isinstance(self.content, str):
            return self.content
        return "\n\n".join(p.text for p in self.content if isinstance(p, TextPart))


class StreamOptions(_Strict):
    """``stream_options``: whether a final usage chunk is sent."""

    include_usage: bool = False


class JSONSchemaSpec(_Strict):
    """The ``json_schema`` member of a ``response_format``."""

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True, populate_by_name=True)

    name: str = Field(max_length=64, pattern=r"^[A-Za-z0-9_-]+$")
    description: str | None = None
    schema_: dict[str, Any] | None = Field(default=None, alias="schema")
    strict: bool | None = None


class TextFormat(_Strict):
    """``response_format: {"type": "text"}``."""

    type: Literal["text"]


class JSONObjectFormat(_Strict):
    """``response_format: {"type": "json_object"}``, or llama.cpp's own form of a
    schema, ``{"type": "json_object", "schema": {...}}`` (llama.cpp's server and
    llama-cpp-python's); elsewhere that schema is sent as ``json_schema``."""

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True, populate_by_name=True)

    type: Literal["json_object"]
    schema_: dict[str, Any] | None = Field(default=None, alias="schema")


class JSONSchemaFormat(_Strict):
    """``response_format: {"type": "json_schema", "json_schema": {...}}``."""

    type: Literal["json_schema"]
    json_schema: JSONSchemaSpec


ResponseFormat = Annotated[
    TextFormat | JSONObjectFormat | JSONSchemaFormat, Field(discriminator="type")
]


class FunctionSpec(_Strict):
    """A function a model may call."""

    name: str
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None


class Tool(_Strict):
    """An entry of ``tools``."""

    type: Literal["function"]
    function: FunctionSpec
    cache_control: CacheControl | None = _annotation("A prompt-cache breakpoint.")


class NamedToolChoice(_Strict):
    """``tool_choice`` naming one function."""

    type: Literal["function"]
    function: dict[str, str]


class ChatRequest(RequestExtensions):
    """A chat completion request, as the OpenAI API defines it.

    Fields chatgate does not know are kept in ``model_extra``; each backend decides
    whether it can pass them on or must refuse them.
    """

    model_config = ConfigDict(strict=True, extra="allow", frozen=True)

    model: str = Field(min_length=1)
    messages: list[Message] = Field(min_length=1)
    stream: bool = False
    stream_options: StreamOptions | None = None
    max_tokens: int | None = Field(default=None, ge=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, ge=0, le=1)
    top_k: int | None = Field(default=None, ge=0)
    stop: str | list[str] | None = None
    seed: int | None = None
    n: int | None = Field(default=None, ge=1, le=128)
    presence_penalty: float | None = Field(default=None, ge=-2, le=2)
    frequency_penalty: float | None = Field(default=None, ge=-2, le=2)
    logit_bias: dict[str, Annotated[float, Field(ge=-100, le=100)]] | None = None
    logprobs: bool | None = None
    top_logprobs: int | None = Field(default=None, ge=0, le=20)
    response_format: ResponseFormat | None = None
    user: str | None = None
    tools: list[Tool] | None = None
    tool_choice: Literal["none", "auto", "required"] | NamedToolChoice | None = None
    parallel_tool_calls: bool | None = None
    # chatgate's extension: the prompt post-processing mode for this request only.
    prompt_post_processing: PostProcessing | None = None

    @field_validator("stop")
    @classmethod
    def _at_most_four_stops(cls, value: str | list[str] | None) -> str | list[str] | None:
        if isinstance(value, list) and len(value) > 4:
            raise ValueError(f"at most 4 stop sequences are allowed, got {len(value)}")
        return value

    @model_validator(mode="after")
    def _check_combinations(self) -> ChatRequest:
        # Raised as our own error (pydantic lets it through) so that it names its param.
        if self.top_logprobs is not None and not self.logprobs:
            raise InvalidRequestError(
                "'top_logprobs' needs 'logprobs' set to true",
                param="top_logprobs",
                code="invalid_value",
            )
        if self.stream_options is not None and not self.stream:
            raise InvalidRequestError(
                "'stream_options' is only allowed when 'stream' is true",
                param="stream_options",
                code="invalid_value",
            )
        return self

    def without(self, *names: str, **updates: Any) -> ChatRequest:
        """This request less the fields *names*, with *updates*.

        ``model_copy`` would keep a cleared field counted as set, and it would be sent
        upstream as ``null``; this copy has only what it says. It is not validated
        again: the request was validated once at the door, and *updates* are values of
        the fields' own types, made by chatgate.
        """
        fields = self.model_fields_set - set(names) - updates.keys()
        data: dict[str, Any] = {name: getattr(self, name) for name in fields}
        extra = {k: v for k, v in (self.model_extra or {}).items() if k not in names}
        data.update(extra)
        data.update(updates)
        return ChatRequest.model_construct(set(data) - extra.keys(), **data)

    def output_constraint(self) -> str | None:
        """The field that constrains the output (a ``guided_*`` field, or
        ``response_format`` asking for JSON), if any; more than one is a 400."""
        if self.model_fields_set.isdisjoint(GUIDED_KINDS) and self.response_format is None:
            return None
        asked = [name for name in GUIDED_KINDS if getattr(self, name) is not None]
        if isinstance(self.response_format, JSONObjectFormat | JSONSchemaFormat):
            asked.append("response_format")
        if len(asked) > 1:
            raise InvalidRequestError(
                f"only one output constraint at a time; this request sets {', '.join(asked)}",
                param=asked[-2] if asked[-1] == "response_format" else asked[-1],
            )
        return asked[0] if asked else None

    @property
    def stops(self) -> list[str]:
        """``stop`` as a list, empty when unset."""
        if self.stop is None:
            return []
        return [self.stop] if isinstance(self.stop, str) else list(self.stop)

    @property
    def completion_limit(self) -> int | None:
        """The completion token limit, whichever of the two fields set it."""
        return self.max_completion_tokens or self.max_tokens

    @property
    def model_name(self) -> str:
        """The part of ``model`` after the connection prefix."""
        return self.model.partition("/")[2]
