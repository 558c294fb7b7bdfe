"""An OpenAI request as the body of Claude's ``POST /messages`` (sans I/O).

The leading system messages are ``system``; a later system message is a user turn
(Claude has no mid-conversation system role); tool calls are ``tool_use`` blocks and
tool results ``tool_result`` blocks in a user turn; same-role neighbours merge; a
conversation that does not start with the user gets the placeholder first; a final
assistant message is continued (prefill). ``response_format`` is a forced tool
(`JSON_TOOL`) whose input the answer returns as the message text.

What only Claude reads goes as the client gave it: ``cache_control`` breakpoints on
system and message text, images, tools, tool calls and tool results; an assistant's
signed ``thinking`` and ``redacted_thinking`` blocks, first in its turn; ``is_error`` on
a tool result.
"""

from __future__ import annotations

from typing import Any

from chatgate.adapters.images import image
from chatgate.adapters.wire import Turn, arguments, leading_system, merge_turns
from chatgate.errors import InvalidRequestError
from chatgate.types import (
    CacheControl,
    ChatRequest,
    ContentPart,
    JSONObjectFormat,
    JSONSchemaFormat,
    Message,
    TextPart,
)

DEFAULT_MAX_TOKENS = 4096
JSON_TOOL = "json_output"  # the forced tool that carries structured output
THINKING_SHARE = {"minimal": 0.1, "low": 0.1, "medium": 0.25, "high": 0.5}
MIN_THINKING = 1024


def body(request: ChatRequest, dropped: list[str], placeholder: str) -> dict[str, Any]:
    """The Messages API body for *request*, less the parameters in *dropped*."""
    system, messages = _messages(request.messages, placeholder)
    out: dict[str, Any] = {
        "model": request.model_name,
        "max_tokens": request.completion_limit or DEFAULT_MAX_TOKENS,
    }
    if system:
        out["system"] = system
    out["messages"] = messages
    if request.stream:
        out["stream"] = True
    skip = set(dropped)
    if request.temperature is not None and "temperature" not in skip:
        out["temperature"] = min(request.temperature, 1.0)  # Claude's range is 0-1
    if request.top_p is not None and "top_p" not in skip:
        out["top_p"] = request.top_p
    if request.top_k is not None and "top_k" not in skip:
        out["top_k"] = request.top_k
    if request.stops:
        out["stop_sequences"] = request.stops
    if request.user and "user" not in skip:
        out["metadata"] = {"user_id": request.user}
    _tools(request, out)
    _thinking(request, out)
    extra = request.model_extra or {}
    for name in ("metadata", "thinking", "cache_control"):
        if name in extra and name not in skip:
            out[name] = extra[name]
    return out


def _messages(
    messages: list[Message], placeholder: str
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(system blocks, messages)."""
    system, rest = leading_system(messages)
    blocks = [block for m in system for block in _system_blocks(m)]
    offset = len(system)
    turns = merge_turns(_turn(message, f"messages[{offset + i}]") for i, message in enumerate(rest))
    out: list[dict[str, Any]] = [{"role": r, "content": c} for r, c in turns]
    if not out or out[0]["role"] != "user":
        out.insert(0, {"role": "user", "content": [{"type": "text", "text": placeholder}]})
    last = out[-1]
    if last["role"] == "assistant":  # prefill: Claude refuses trailing whitespace
        tail = last["content"][-1]
        if tail["type"] == "text":
            tail["text"] = tail["text"].rstrip()
            if not tail["text"]:
                last["content"].pop()
                if not last["content"]:
                    out.pop()
    return blocks, out


def _system_blocks(message: Message) -> list[dict[str, Any]]:
    """A system message's text as one block; as its own parts when one of them marks a
    cache breakpoint, which must stay on the text it marks."""
    content = message.content
    if isinstance(content, list) and any(_cache(p) for p in content):
        return [_text(p) for p in content if isinstance(p, TextPart) and p.text]
    text = message.text()
    return [{"type": "text", "text": text}] if text else []


def _cache(part: ContentPart) -> CacheControl | None:
    return getattr(part, "cache_control", None)


def _marked(block: dict[str, Any], cache: CacheControl | None) -> dict[str, Any]:
    if cache is not None:
        block["cache_control"] = cache.model_dump(exclude_none=True)
    return block


def _text(part: TextPart) -> dict[str, Any]:
    return _marked({"type": "text", "text": part.text}, part.cache_control)


def _tool_result(message: Message, param: str) -> dict[str, Any]:
    """A tool message as a ``tool_result`` block: its text, or its blocks when it holds
    an image or a cache breakpoint."""
    content = message.content
    result: dict[str, Any] = {"type": "tool_result", "tool_use_id": message.tool_call_id or ""}
    if isinstance(content, list) and any(p.type != "text" or _cache(p) for p in content):
        result["content"] = _blocks(content, param)
    else:
        result["content"] = message.text()
    if message.is_error:
        result["is_error"] = True
    return _marked(result, message.cache_control)


def _blocks(content: list[ContentPart], param: str) -> list[dict[str, Any]]:
    blocks: list[dict[str, Any]] = []
    for index, part in enumerate(content):
        if part.type == "text":
            if part.text:
                blocks.append(_text(part))
        elif part.type == "image_url":
            image_block = _image(part.image_url.url, f"{param}.content[{index}]")
            blocks.append(_marked(image_block, part.cache_control))
        elif part.type == "refusal":
            blocks.append({"type": "text", "text": part.refusal})
        else:
            raise InvalidRequestError(
                f"Claude does not take '{part.type}' content parts",
                param=f"{param}.content[{index}]",
                code="unsupported_content",
            )
    return blocks


def _signed_thinking(message: Message) -> list[dict[str, Any]]:
    """An assistant's signed reasoning, as Claude gave it. A block without a signature
    was not Claude's (another backend's reasoning, shown as a thinking block): Claude
    would refuse it, so it is left out."""
    out: list[dict[str, Any]] = []
    for block in message.thinking_blocks or ():
        if block.type == "thinking" and not block.signature:
            continue
        out.append(block.model_dump())
    return out


def _turn(message: Message, param: str) -> Turn:
    if message.role == "tool":
        return "user", [_tool_result(message, param)]
    role = "assistant" if message.role == "assistant" else "user"
    blocks: list[dict[str, Any]] = _signed_thinking(message) if role == "assistant" else []
    content = message.content
    if isinstance(content, str):
        if content:
            blocks.append({"type": "text", "text": content})
    elif content is not None:
        blocks += _blocks(content, param)
    for index, call in enumerate(message.tool_calls or []):
        where = f"{param}.tool_calls[{index}].function.arguments"
        use = {
            "type": "tool_use",
            "id": call.id,
            "name": call.function.name,
            "input": arguments(call.function.arguments, where),
        }
        blocks.append(_marked(use, call.cache_control))
    return role, blocks


def _image(url: str, param: str) -> dict[str, Any]:
    found = image(url, param)
    if found.data is not None:
        source = {"type": "base64", "media_type": found.media_type, "data": found.data}
        return {"type": "image", "source": source}
    return {"type": "image", "source": {"type": "url", "url": found.url}}


def _tools(request: ChatRequest, body: dict[str, Any]) -> None:
    tools = [
        _marked(
            {
                "name": t.function.name,
                **({"description": t.function.description} if t.function.description else {}),
                "input_schema": t.function.parameters or {"type": "object", "properties": {}},
            },
            t.cache_control,
        )
        for t in request.tools or []
    ]
    choice: dict[str, Any] | None = None
    fmt = request.response_format
    if isinstance(fmt, JSONSchemaFormat | JSONObjectFormat):
        if tools:
            raise InvalidRequestError(
                "Claude takes response_format as a forced tool, so it cannot be combined "
                "with tools; send one or the other",
                param="response_format",
                code="unsupported_combination",
            )
        schema = (
            fmt.json_schema.schema_ or {"type": "object"}
            if isinstance(fmt, JSONSchemaFormat)
            else {"type": "object"}
        )
        tools = [
            {
                "name": JSON_TOOL,
                "description": "Reply with the answer as this object.",
                "input_schema": schema,
            }
        ]
        choice = {"type": "tool", "name": JSON_TOOL}
    elif request.tool_choice is not None and tools:
        tc = request.tool_choice
        if tc == "auto":
            choice = {"type": "auto"}
        elif tc == "required":
            choice = {"type": "any"}
        elif tc == "none":
            choice = {"type": "none"}
        else:
            choice = {"type": "tool", "name": tc.function.get("name", "")}
    if request.parallel_tool_calls is False and tools:
        choice = {**(choice or {"type": "auto"}), "disable_parallel_tool_use": True}
    if tools:
        body["tools"] = tools
    if choice is not None:
        body["tool_choice"] = choice


def _thinking(request: ChatRequest, body: dict[str, Any]) -> None:
    effort = (request.model_extra or {}).get("reasoning_effort")
    if not isinstance(effort, str) or effort == "none":
        return
    if effort not in THINKING_SHARE:
        raise InvalidRequestError(
            f"reasoning_effort must be one of {', '.join(THINKING_SHARE)} or none",
            param="reasoning_effort",
        )
    budget = max(MIN_THINKING, int(body["max_tokens"] * THINKING_SHARE[effort]))
    if budget >= body["max_tokens"]:
        body["max_tokens"] += budget  # the budget is part of max_tokens; keep room to answer
    body["thinking"] = {"type": "enabled", "budget_tokens": budget}
    for name in ("temperature", "top_p", "top_k"):  # not allowed with thinking
        body.pop(name, None)
