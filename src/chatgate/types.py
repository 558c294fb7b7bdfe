"""The core value types of chatgate.

Requests are pydantic models, validated once at the front door in strict mode (a string
is not an integer). Answers are slotted dataclasses that render straight to the OpenAI
wire shape; they are built by engines and adapters, so they need no validation.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator, model_validator

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


class TextPart(_Strict):
    """A piece of text inside a message's content list."""

    type: Literal["text"]
    text: str


class ImageURL(_Strict):
    """Where an image lives: an http(s) URL or a ``data:`` URL."""

    url: str
    detail: Literal["auto", "low", "high"] | None = None


class ImagePart(_Strict):
    """An image inside a message's content list."""

    type: Literal["image_url"]
    image_url: ImageURL


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


class Message(BaseModel):
    """One message of a conversation, in any of the five roles."""

    model_config = ConfigDict(strict=True, extra="allow", frozen=True)

    role: Role
    content: str | list[ContentPart] | None = None
    name: str | None = None
    tool_calls: list[ToolCall] | None = None
    tool_call_id: str | None = None
    reasoning_content: str | None = None

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
        """The message's text: the string content, or its text parts joined."""
        if self.content is None:
            return ""
        if isinstance(self.content, str):
            return self.content
        return "".join(p.text for p in self.content if isinstance(p, TextPart))


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
    """``response_format: {"type": "json_object"}``."""

    type: Literal["json_object"]


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
        """This request less the fields *names*, with *updates*, validated again.

        ``model_copy`` would keep a cleared field counted as set, and it would be sent
        upstream as ``null``; a rebuilt request has only what it says.
        """
        data = self.model_dump(mode="json", by_alias=True, exclude_unset=True)
        for name in names:
            data.pop(name, None)
        data.update(updates)
        return ChatRequest.model_validate(data)

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


# --- answers -------------------------------------------------------------------------


@dataclass(slots=True)
class Usage:
    """Token counts of one request."""

    prompt_tokens: int
    completion_tokens: int

    @property
    def total_tokens(self) -> int:
        """Prompt plus completion."""
        return self.prompt_tokens + self.completion_tokens

    def to_dict(self) -> dict[str, int]:
        """The OpenAI ``usage`` object."""
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.total_tokens,
        }


@dataclass(slots=True)
class AssistantMessage:
    """The message of one choice of a non-stream answer."""

    content: str | None
    tool_calls: list[ToolCall] | None = None
    reasoning_content: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """The OpenAI ``message`` object."""
        out: dict[str, Any] = {"role": "assistant", "content": self.content, "refusal": None}
        if self.tool_calls:
            out["tool_calls"] = [tc.model_dump() for tc in self.tool_calls]
        if self.reasoning_content is not None:
            out["reasoning_content"] = self.reasoning_content
        return out


@dataclass(slots=True)
class Choice:
    """One choice of a non-stream answer."""

    index: int
    message: AssistantMessage
    finish_reason: FinishReason | None
    logprobs: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        """The OpenAI ``choices[i]`` object."""
        return {
            "index": self.index,
            "message": self.message.to_dict(),
            "logprobs": self.logprobs,
            "finish_reason": self.finish_reason,
        }


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

    def to_dict(self) -> dict[str, Any]:
        """The OpenAI ``chat.completion`` object."""
        return {
            "id": self.id,
            "object": "chat.completion",
            "created": self.created,
            "model": self.model,
            "system_fingerprint": self.system_fingerprint,
            "choices": [c.to_dict() for c in self.choices],
            "usage": self.usage.to_dict(),
        }


@dataclass(slots=True)
class ToolCallDelta:
    """A piece of a streamed tool call; ``index`` ties the pieces together."""

    index: int
    id: str | None = None
    name: str | None = None
    arguments: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """The OpenAI ``delta.tool_calls[i]`` object."""
        out: dict[str, Any] = {"index": self.index}
        if self.id is not None:
            out["id"] = self.id
            out["type"] = "function"
        function: dict[str, str] = {}
        if self.name is not None:
            function["name"] = self.name
        if self.arguments is not None:
            function["arguments"] = self.arguments
        if function:
            out["function"] = function
        return out


@dataclass(slots=True)
class Delta:
    """What one stream chunk adds to a choice."""

    role: Literal["assistant"] | None = None
    content: str | None = None
    reasoning_content: str | None = None
    tool_calls: list[ToolCallDelta] | None = None

    def to_dict(self) -> dict[str, Any]:
        """The OpenAI ``delta`` object, without the members that are unset."""
        out: dict[str, Any] = {}
        if self.role is not None:
            out["role"] = self.role
        if self.content is not None:
            out["content"] = self.content
        if self.reasoning_content is not None:
            out["reasoning_content"] = self.reasoning_content
        if self.tool_calls is not None:
            out["tool_calls"] = [t.to_dict() for t in self.tool_calls]
        return out


@dataclass(slots=True)
class ChunkChoice:
    """One choice of a stream chunk."""

    index: int
    delta: Delta
    finish_reason: FinishReason | None = None
    logprobs: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        """The OpenAI ``choices[i]`` object of a chunk."""
        return {
            "index": self.index,
            "delta": self.delta.to_dict(),
            "logprobs": self.logprobs,
            "finish_reason": self.finish_reason,
        }


@dataclass(slots=True)
class ChatChunk:
    """One event of a streamed chat completion.

    A chunk with no choices and a ``usage`` is the final usage chunk.
    """

    id: str
    created: int
    model: str
    choices: list[ChunkChoice] = field(default_factory=list)
    usage: Usage | None = None
    system_fingerprint: str | None = None

    def to_dict(self, *, with_usage_field: bool = False) -> dict[str, Any]:
        """The OpenAI ``chat.completion.chunk`` object.

        With ``with_usage_field`` every chunk carries ``usage`` (null until the last),
        as OpenAI does when the client asked for ``include_usage``.
        """
        out: dict[str, Any] = {
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "system_fingerprint": self.system_fingerprint,
            "choices": [c.to_dict() for c in self.choices],
        }
        if self.usage is not None:
            out["usage"] = self.usage.to_dict()
        elif with_usage_field:
            out["usage"] = None
        return out
