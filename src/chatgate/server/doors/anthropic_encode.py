"""Our answers and errors in the Anthropic Messages shapes: the ``message`` object, its
content blocks, ``stop_reason``, ``usage``, and ``{"type": "error", "error": {...}}``."""

from __future__ import annotations

import logging
import secrets
from typing import Any

import orjson

from chatgate.answers import AssistantMessage, ChatResponse, Usage
from chatgate.errors import ChatgateError
from chatgate.types import FinishReason, ToolCall

log = logging.getLogger("chatgate.server")

Json = dict[str, Any]

# finish_reason → stop_reason ("stop" is "stop_sequence" when the backend said which
# stop sequence ended the answer).
STOP_REASONS: dict[FinishReason | None, str] = {
    "stop": "end_turn",
    "length": "max_tokens",
    "tool_calls": "tool_use",
    "function_call": "tool_use",
    "content_filter": "refusal",
    None: "end_turn",
}
# Anthropic's error type for each status (its SDK picks the exception by status); any
# other 4xx is invalid_request_error, any other 5xx api_error.
ERROR_TYPES: dict[int, str] = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    502: "api_error",
    503: "overloaded_error",
    504: "timeout_error",
    529: "overloaded_error",
}


def error_type(status: int) -> str:
    """Anthropic's error type for an HTTP *status*."""
    found = ERROR_TYPES.get(status)
    if found is not None:
        return found
    return "invalid_request_error" if status < 500 else "api_error"


def render_error(exc: ChatgateError) -> Json:
    """``{"type": "error", "error": {"type", "message"}}``."""
    return {"type": "error", "error": {"type": error_type(exc.status), "message": exc.message}}


def stop_reason(finish: FinishReason | None, stop_sequence: str | None, tools: bool) -> str:
    """Anthropic's ``stop_reason`` for an answer that finished so."""
    if tools and finish in ("stop", None):
        return "tool_use"  # some servers say "stop" after a call
    if finish == "stop" and stop_sequence is not None:
        return "stop_sequence"
    return STOP_REASONS.get(finish, "end_turn")


def message_id(answer_id: str) -> str:
    """An Anthropic-style id for an answer (``msg_...``)."""
    if answer_id.startswith("msg_"):
        return answer_id
    return "msg_" + answer_id.removeprefix("chatcmpl-")


def tool_use_id(given: str | None) -> str:
    """A tool call's id, or a new one when the backend gave none."""
    return given or "toolu_" + secrets.token_hex(12)


def render_usage(usage: Usage | None) -> Json:
    """``usage``: input tokens are those not read from or written to a prompt cache, as
    Anthropic counts them."""
    if usage is None:
        usage = Usage(0, 0)
    cached, written = usage.cached_tokens, usage.cache_write_tokens
    return {
        "input_tokens": max(0, usage.prompt_tokens - cached - written),
        "output_tokens": usage.completion_tokens,
        "cache_creation_input_tokens": written,
        "cache_read_input_tokens": cached,
    }


def tool_input(arguments: str) -> Json:
    """A call's JSON arguments as ``input`` (an object; ``{}`` when a backend wrote
    something that is not one)."""
    try:
        value = orjson.loads(arguments) if arguments.strip() else {}
    except orjson.JSONDecodeError:
        value = None
    if not isinstance(value, dict):
        log.warning("a backend's tool-call arguments are not a JSON object; sent as {}")
        return {}
    return value


def thinking_blocks(message: AssistantMessage) -> list[Json]:
    """The reasoning of *message* as blocks: Claude's own, signed, as they came; other
    reasoning as one thinking block without a signature."""
    reasoning = message.reasoning_content
    blocks = message.thinking_blocks
    if blocks:
        texts = "".join(b.thinking for b in blocks if b.type == "thinking")
        # Unequal when the gateway redacted a secret in the reasoning: the signatures
        # no longer match, and the redacted text is what may be shown.
        if texts == (reasoning or ""):
            return [b.model_dump() for b in blocks]
    if reasoning:
        return [{"type": "thinking", "thinking": reasoning, "signature": ""}]
    return []


def tool_use_block(call: ToolCall) -> Json:
    """One tool call as a ``tool_use`` block."""
    return {
        "type": "tool_use",
        "id": tool_use_id(call.id),
        "name": call.function.name,
        "input": tool_input(call.function.arguments),
    }


def render_message(answer: ChatResponse, model: str) -> Json:
    """The ``message`` object of a whole answer (its first choice: Anthropic has no
    ``n``)."""
    content: list[Json] = []
    finish: FinishReason | None = None
    stop_sequence: str | None = None
    calls: list[ToolCall] = []
    if answer.choices:
        choice = answer.choices[0]
        message = choice.message
        finish, stop_sequence = choice.finish_reason, choice.stop_sequence
        calls = message.tool_calls or []
        content += thinking_blocks(message)
        if message.content:
            content.append({"type": "text", "text": message.content})
        content += [tool_use_block(call) for call in calls]
    reason = stop_reason(finish, stop_sequence, bool(calls))
    return {
        "id": message_id(answer.id),
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": reason,
        "stop_sequence": stop_sequence if reason == "stop_sequence" else None,
        "usage": render_usage(answer.usage),
    }
