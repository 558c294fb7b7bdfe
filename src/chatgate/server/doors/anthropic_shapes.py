"""The Anthropic Messages request, as pydantic models (the SDK's ``*Param`` types on the
wire): what ``POST /v1/messages`` and ``/v1/messages/count_tokens`` take.

Strict as Anthropic is: a field it does not know is refused ("Extra inputs are not
permitted"), a string is not a number. The OpenAPI request schemas are generated from
these models (`chatgate.server.doors.anthropic_openapi`), so what the document says is
what the door checks.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from chatgate.types import CacheControl

# Sane bounds for counts (the backends' own limits are far below): a larger number is a
# 400 here, not an overflow in a backend.
MAX_COUNT = 2**31 - 1
# Anthropic's tools that run on its own servers (web search, code execution, ...): a
# custom tool has no type, or "custom".
CUSTOM_TOOL_TYPES = (None, "custom")


class _Wire(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)


Cache = Annotated[CacheControl | None, Field(description="A prompt-cache breakpoint.")]


class AnthropicTextBlock(_Wire):
    """A text block."""

    type: Literal["text"]
    text: str
    cache_control: Cache = None
    # Accepted (a client may send an answer's blocks back as they came) and not used.
    citations: list[dict[str, Any]] | None = None


class AnthropicBase64Source(_Wire):
    """An image's bytes, base64-encoded."""

    type: Literal["base64"]
    media_type: Literal["image/jpeg", "image/png", "image/gif", "image/webp"]
    data: str = Field(min_length=1)


class AnthropicURLSource(_Wire):
    """An image at an http(s) URL."""

    type: Literal["url"]
    url: str = Field(pattern=r"^https?://")


class AnthropicImageBlock(_Wire):
    """An image block."""

    type: Literal["image"]
    source: Annotated[AnthropicBase64Source | AnthropicURLSource, Field(discriminator="type")]
    cache_control: Cache = None


class AnthropicToolUseBlock(_Wire):
    """A tool call an assistant made."""

    type: Literal["tool_use"]
    id: str = Field(min_length=1)
    name: str = Field(min_length=1)
    input: dict[str, Any]
    cache_control: Cache = None


ResultBlock = Annotated[AnthropicTextBlock | AnthropicImageBlock, Field(discriminator="type")]


class AnthropicToolResultBlock(_Wire):
    """The result of a tool call, in a user message."""

    type: Literal["tool_result"]
    tool_use_id: str = Field(min_length=1)
    content: str | list[ResultBlock] = ""
    is_error: bool | None = None
    cache_control: Cache = None


class AnthropicThinkingBlock(_Wire):
    """An assistant's reasoning, with Claude's signature (empty from other backends)."""

    type: Literal["thinking"]
    thinking: str
    signature: str


class AnthropicRedactedThinkingBlock(_Wire):
    """Reasoning Claude returned encrypted."""

    type: Literal["redacted_thinking"]
    data: str


ContentBlock = Annotated[
    AnthropicTextBlock
    | AnthropicImageBlock
    | AnthropicToolUseBlock
    | AnthropicToolResultBlock
    | AnthropicThinkingBlock
    | AnthropicRedactedThinkingBlock,
    Field(discriminator="type"),
]


class AnthropicMessage(_Wire):
    """One turn of the conversation."""

    role: Literal["user", "assistant"]
    # Never empty (Anthropic lets only a final assistant turn be, which prefills nothing).
    content: (
        Annotated[str, Field(min_length=1)] | Annotated[list[ContentBlock], Field(min_length=1)]
    )


class AnthropicTool(_Wire):
    """A custom tool (a function the client runs)."""

    name: str = Field(min_length=1)
    description: str | None = None
    input_schema: dict[str, Any]
    type: Literal["custom"] | None = None
    strict: bool | None = None
    cache_control: Cache = None

    @model_validator(mode="before")
    @classmethod
    def _custom_only(cls, data: Any) -> Any:
        kind = data.get("type") if isinstance(data, dict) else None
        if kind not in CUSTOM_TOOL_TYPES:
            raise ValueError(
                f"'{kind}' is one of Anthropic's server tools, which chatgate does not run; "
                "only custom tools (name, description, input_schema) are taken"
            )
        return data


class ToolChoiceAuto(_Wire):
    """The model decides whether to call a tool."""

    type: Literal["auto"]
    disable_parallel_tool_use: bool | None = None


class ToolChoiceAny(_Wire):
    """The model must call some tool."""

    type: Literal["any"]
    disable_parallel_tool_use: bool | None = None


class ToolChoiceTool(_Wire):
    """The model must call the named tool."""

    type: Literal["tool"]
    name: str = Field(min_length=1)
    disable_parallel_tool_use: bool | None = None


class ToolChoiceNone(_Wire):
    """The model must not call a tool."""

    type: Literal["none"]


ToolChoice = Annotated[
    ToolChoiceAuto | ToolChoiceAny | ToolChoiceTool | ToolChoiceNone, Field(discriminator="type")
]


class ThinkingEnabled(_Wire):
    """Extended thinking with a token budget."""

    type: Literal["enabled"]
    budget_tokens: int = Field(ge=1024, le=MAX_COUNT)
    display: Literal["summarized", "omitted"] | None = None


class ThinkingDisabled(_Wire):
    """No extended thinking."""

    type: Literal["disabled"]


class ThinkingAdaptive(_Wire):
    """The model decides how much to think."""

    type: Literal["adaptive"]
    display: Literal["summarized", "omitted"] | None = None


Thinking = Annotated[
    ThinkingEnabled | ThinkingDisabled | ThinkingAdaptive, Field(discriminator="type")
]


class AnthropicMetadata(_Wire):
    """``metadata``: who the end user is."""

    user_id: str | None = Field(default=None, max_length=256)


class AnthropicCountRequest(_Wire):
    """The body of ``POST /v1/messages/count_tokens``."""

    model: str = Field(min_length=1, description="`connection/model`, as everywhere in chatgate.")
    messages: list[AnthropicMessage] = Field(min_length=1)
    system: str | list[AnthropicTextBlock] | None = None
    tools: list[AnthropicTool] | None = None
    tool_choice: ToolChoice | None = None
    thinking: Thinking | None = None
    cache_control: Cache = None


class AnthropicRequest(AnthropicCountRequest):
    """The body of ``POST /v1/messages``."""

    max_tokens: int = Field(ge=1, le=MAX_COUNT)
    stream: bool = False
    stop_sequences: list[str] | None = None
    temperature: float | None = Field(default=None, ge=0, le=1)
    top_p: float | None = Field(default=None, ge=0, le=1)
    top_k: int | None = Field(default=None, ge=0, le=MAX_COUNT)
    metadata: AnthropicMetadata | None = None
    # A scheduling hint of Anthropic's; nothing to schedule here, so it is taken and unused.
    service_tier: Literal["auto", "standard_only"] | None = None
