"""An Anthropic Messages body as chatgate's `ChatRequest` (OpenAI-shaped).

- ``system`` is the leading system message (its blocks as text parts);
- a user turn's ``tool_result`` blocks are tool messages, ahead of the turn's text and
  images (Anthropic wants them first, and OpenAI-shaped backends want a tool message
  right after the assistant's call);
- an assistant turn's ``tool_use`` blocks are its tool calls, its ``thinking`` blocks
  its reasoning (``reasoning_content``, and the signed blocks for Claude);
- ``stop_sequences`` is ``stop``, ``metadata.user_id`` is ``user``, ``tool_choice`` and
  ``disable_parallel_tool_use`` are ``tool_choice`` and ``parallel_tool_calls``;
- ``thinking`` and a top-level ``cache_control`` only mean something to Claude: they
  go to a connection that speaks the Messages API and are left out for any other.

A body that is not what Anthropic takes is a 400 naming the field, in Anthropic's words
where they are pydantic's (``max_tokens: Field required``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, TypeVar

import orjson
from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from chatgate.errors import InvalidRequestError
from chatgate.gateway import Gateway
from chatgate.model_info import speaks_messages
from chatgate.server.doors.anthropic_shapes import (
    AnthropicCountRequest,
    AnthropicImageBlock,
    AnthropicMessage,
    AnthropicRequest,
    AnthropicTextBlock,
    AnthropicToolResultBlock,
    AnthropicToolUseBlock,
    ContentBlock,
    ToolChoiceAny,
    ToolChoiceAuto,
    ToolChoiceNone,
    ToolChoiceTool,
)
from chatgate.types import ChatRequest
from chatgate.validation import describe, load_body, param_path

Json = dict[str, Any]
Part = AnthropicTextBlock | AnthropicImageBlock
M = TypeVar("M", bound=BaseModel)
MAX_STOPS = 4  # ChatRequest's (OpenAI's) limit, which every backend takes
# Fields of Anthropic's own that the door does not implement: refused as unknown fields
# are, in words that do not call them unknown.
NOT_IMPLEMENTED = frozenset(
    {
        "container", "context_management", "mcp_servers", "output_config", "output_format",
        "inference_geo", "speed", "diagnostics", "user_profile_id", "workspace_id", "betas",
    }
)  # fmt: skip


def parse_body(raw: bytes, model: type[M]) -> M:
    """*raw* as *model*, or a 400 naming the first field that is wrong."""
    body = load_body(raw)  # a 400 for bad JSON and for numbers no backend takes
    if not isinstance(body, dict):
        raise InvalidRequestError("the body must be a JSON object", code="invalid_type")
    try:
        return model.model_validate(body)
    except ValidationError as exc:
        raise _refusal(exc.errors(include_url=False), body) from None


def _refusal(errors: list[ErrorDetails], body: Any) -> InvalidRequestError:
    """The most telling of *errors*: the deepest (inside a union, the member that got
    furthest is the one the client meant), and of those one about the value rather than
    its type (the union member of the value's own type)."""

    def telling(error: ErrorDetails) -> tuple[int, bool]:
        path = param_path(tuple(error["loc"]), body) or ""
        depth = path.count(".") + path.count("[") + bool(path)
        return depth, not error["type"].endswith("_type")

    best = max(errors, key=telling)
    param = param_path(tuple(best["loc"]), body)
    where = f"{param}: " if param else ""
    kind = best["type"]
    if kind == "missing":
        return InvalidRequestError(f"{where}Field required", param=param, code="missing")
    if kind == "extra_forbidden" and param in NOT_IMPLEMENTED:
        message = f"{param}: chatgate's Anthropic door does not implement this field"
        return InvalidRequestError(message, param=param, code="unsupported_parameter")
    if kind == "extra_forbidden":
        message = f"{where}Extra inputs are not permitted"
        return InvalidRequestError(message, param=param, code="unknown_parameter")
    said = best["msg"].removeprefix("Value error, ")
    return InvalidRequestError(f"{where}{said}", param=param, code=kind)


def decode_messages(raw: bytes, gateway: Gateway) -> ChatRequest:
    """A ``/v1/messages`` body as our request."""
    body = parse_body(raw, AnthropicRequest)
    out = _conversation(body, gateway)
    out["max_tokens"] = body.max_tokens
    if body.stream:
        # Usage at the end of the stream, for message_delta's token counts.
        out["stream"] = True
        out["stream_options"] = {"include_usage": True}
    for name in ("temperature", "top_p", "top_k"):
        value = getattr(body, name)
        if value is not None:
            out[name] = value
    if body.stop_sequences:
        if len(body.stop_sequences) > MAX_STOPS:
            raise InvalidRequestError(
                f"stop_sequences: chatgate takes at most {MAX_STOPS} stop sequences, "
                f"got {len(body.stop_sequences)}",
                param="stop_sequences",
                code="too_many_stop_sequences",
            )
        out["stop"] = list(body.stop_sequences)
    if body.metadata is not None and body.metadata.user_id:
        out["user"] = body.metadata.user_id
    return _validated(out)


def decode_count(raw: bytes, gateway: Gateway) -> ChatRequest:
    """A ``/v1/messages/count_tokens`` body as our request (the prompt only)."""
    return _validated(_conversation(parse_body(raw, AnthropicCountRequest), gateway))


def _validated(out: Json) -> ChatRequest:
    try:
        return ChatRequest.model_validate(out)
    except ValidationError as exc:  # built here from a checked body: a gap in the checks
        raise describe(exc.errors(include_url=False)[0], out) from None


def _conversation(body: AnthropicCountRequest, gateway: Gateway) -> Json:
    """What a messages body and a count body share: model, prompt, tools, thinking."""
    messages: list[Json] = []
    if body.system:
        system = body.system
        content = system if isinstance(system, str) else _content(system)
        messages.append({"role": "system", "content": content})
    for index, message in enumerate(body.messages):
        messages += _turn(message, f"messages[{index}]")
    out: Json = {"model": body.model, "messages": messages}
    if body.tools:
        out["tools"] = [
            _marked(
                {
                    "type": "function",
                    "function": _without_none(
                        {
                            "name": tool.name,
                            "description": tool.description,
                            "parameters": tool.input_schema,
                            "strict": tool.strict,
                        }
                    ),
                },
                tool.cache_control,
            )
            for tool in body.tools
        ]
    _tool_choice(body, out)
    if speaks_messages(gateway, body.model):
        if body.thinking is not None:
            out["thinking"] = body.thinking.model_dump(exclude_none=True)
        if body.cache_control is not None:
            out["cache_control"] = body.cache_control.model_dump(exclude_none=True)
    return out


def _tool_choice(body: AnthropicCountRequest, out: Json) -> None:
    choice = body.tool_choice
    if choice is None:
        return
    if isinstance(choice, ToolChoiceAuto):
        out["tool_choice"] = "auto"
    elif isinstance(choice, ToolChoiceAny):
        out["tool_choice"] = "required"
    elif isinstance(choice, ToolChoiceTool):
        out["tool_choice"] = {"type": "function", "function": {"name": choice.name}}
    elif isinstance(choice, ToolChoiceNone):
        out["tool_choice"] = "none"
    if not isinstance(choice, ToolChoiceNone) and choice.disable_parallel_tool_use:
        out["parallel_tool_calls"] = False


def _turn(message: AnthropicMessage, param: str) -> list[Json]:
    """One Anthropic turn as our messages: tool results first, then the turn itself."""
    if isinstance(message.content, str):
        return [{"role": message.role, "content": message.content}]
    if message.role == "user":
        return _user(message.content, param)
    return [_assistant(message.content, param)]


def _user(blocks: list[ContentBlock], param: str) -> list[Json]:
    results: list[Json] = []
    parts: list[Part] = []
    for index, block in enumerate(blocks):
        if isinstance(block, AnthropicToolResultBlock):
            results.append(_result(block))
        elif isinstance(block, AnthropicTextBlock | AnthropicImageBlock):
            parts.append(block)
        else:
            raise InvalidRequestError(
                f"{param}.content[{index}]: a user message cannot hold a '{block.type}' "
                "block; it belongs in an assistant message",
                param=f"{param}.content[{index}]",
                code="invalid_value",
            )
    if parts or not results:
        results.append({"role": "user", "content": _content(parts)})
    return results


def _result(block: AnthropicToolResultBlock) -> Json:
    given = block.content
    content: str | list[Json]
    if isinstance(given, str):
        content = given
    elif all(isinstance(b, AnthropicTextBlock) and b.cache_control is None for b in given):
        # Plain text goes as a string: OpenAI-shaped servers all take that in a tool message.
        content = "\n\n".join(b.text for b in given if isinstance(b, AnthropicTextBlock))
    else:
        content = _content(given)
    out: Json = {"role": "tool", "tool_call_id": block.tool_use_id, "content": content}
    if block.is_error:
        out["is_error"] = True
    return _marked(out, block.cache_control)


def _assistant(blocks: list[ContentBlock], param: str) -> Json:
    parts: list[Part] = []
    calls: list[Json] = []
    thinking: list[Json] = []
    for index, block in enumerate(blocks):
        if isinstance(block, AnthropicTextBlock | AnthropicImageBlock):
            parts.append(block)
        elif isinstance(block, AnthropicToolUseBlock):
            function = {"name": block.name, "arguments": orjson.dumps(block.input).decode()}
            call = {"id": block.id, "type": "function", "function": function}
            calls.append(_marked(call, block.cache_control))
        elif isinstance(block, AnthropicToolResultBlock):
            raise InvalidRequestError(
                f"{param}.content[{index}]: an assistant message cannot hold a "
                "'tool_result' block; it belongs in a user message",
                param=f"{param}.content[{index}]",
                code="invalid_value",
            )
        else:
            thinking.append(block.model_dump())
    out: Json = {"role": "assistant", "content": _content(parts) if parts or not calls else None}
    if calls:
        out["tool_calls"] = calls
    if thinking:
        out["thinking_blocks"] = thinking
        texts = [b["thinking"] for b in thinking if b["type"] == "thinking"]
        if any(texts):
            out["reasoning_content"] = "".join(texts)
    return out


def _content(blocks: Sequence[Part]) -> str | list[Json]:
    """Blocks as our content: one plain text block as a string (every backend takes
    that), anything else as parts."""
    first = blocks[0] if len(blocks) == 1 else None
    if isinstance(first, AnthropicTextBlock) and first.cache_control is None:
        return first.text
    out: list[Json] = []
    for block in blocks:
        if isinstance(block, AnthropicTextBlock):
            out.append(_marked({"type": "text", "text": block.text}, block.cache_control))
        else:
            source = block.source
            url = (
                source.url
                if source.type == "url"
                else f"data:{source.media_type};base64,{source.data}"
            )
            image = {"type": "image_url", "image_url": {"url": url}}
            out.append(_marked(image, block.cache_control))
    return out


def _marked(item: Json, cache: Any) -> Json:
    if cache is not None:
        item["cache_control"] = cache.model_dump(exclude_none=True)
    return item


def _without_none(item: Json) -> Json:
    return {k: v for k, v in item.items() if v is not None}
