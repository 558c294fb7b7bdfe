"""Reading OpenAI's chat answers: a whole completion and stream chunks' parts, every
field through `Fields` (a value of the wrong type is a 502 naming the connection), and
the usual answer (one text choice) in one pass of exact type checks first."""

from __future__ import annotations

from typing import Any

import orjson

from chatgate.adapters.wire import Fields
from chatgate.types import (
    AssistantMessage,
    ChatResponse,
    Choice,
    FinishReason,
    FunctionCall,
    ToolCall,
    ToolCallDelta,
    Usage,
)

FINISH_REASONS: dict[str, FinishReason] = {
    "stop": "stop",
    "length": "length",
    "tool_calls": "tool_calls",
    "content_filter": "content_filter",
    "function_call": "function_call",
    "model_length": "length",
    "eos": "stop",
    "end_turn": "stop",
    "max_tokens": "length",
    "tool_call": "tool_calls",
    "error": "stop",
}

# The fields of the usual answer: one text choice, counted usage. `plain_answer` reads
# exactly these; an answer with any other (tool calls, parts, reasoning, log-probabilities)
# is read field by field through `Fields`, which names what is wrong.
_PLAIN_ANSWER = frozenset(
    {"id", "object", "created", "model", "choices", "usage", "system_fingerprint"}
)
_PLAIN_CHOICE = frozenset({"index", "message", "finish_reason", "logprobs"})
_PLAIN_MESSAGE = frozenset({"role", "content", "refusal", "annotations"})
_PLAIN_USAGE = frozenset(
    {"prompt_tokens", "completion_tokens", "total_tokens", "prompt_tokens_details",
     "completion_tokens_details"}
)  # fmt: skip


def plain_answer(data: dict[str, Any], model: str) -> ChatResponse | None:
    """The usual answer, read in one pass of exact type checks (the hot path of every
    proxied request); None for anything else, which the careful reader then reads."""
    choices = data["choices"]
    usage = data.get("usage")
    answer_id, created, fingerprint = (
        data.get("id"),
        data.get("created"),
        data.get("system_fingerprint"),
    )
    if (
        len(choices) != 1
        or not _PLAIN_ANSWER.issuperset(data)
        or type(usage) is not dict
        or not _PLAIN_USAGE.issuperset(usage)
        or type(usage.get("prompt_tokens")) is not int
        or type(usage.get("completion_tokens")) is not int
        or type(answer_id) is not str
        or type(created) is not int
        or (fingerprint is not None and type(fingerprint) is not str)
    ):
        return None
    choice = choices[0]
    if type(choice) is not dict or not _PLAIN_CHOICE.issuperset(choice):
        return None
    message, finish = choice.get("message"), choice.get("finish_reason")
    index, logprobs = choice.get("index", 0), choice.get("logprobs")
    if (
        type(message) is not dict
        or not _PLAIN_MESSAGE.issuperset(message)
        or type(index) is not int
        or logprobs is not None
        or (finish is not None and type(finish) is not str)
    ):
        return None
    content = message.get("content")
    if content is not None and type(content) is not str:
        return None
    return ChatResponse(
        id=answer_id,
        created=created,
        model=model,
        choices=[
            Choice(
                index=index,
                message=AssistantMessage(content=content),
                finish_reason=None if finish is None else FINISH_REASONS.get(finish, "stop"),
            )
        ],
        usage=Usage(usage["prompt_tokens"], usage["completion_tokens"]),
        system_fingerprint=fingerprint,
    )


def content_of(read: Fields, message: dict[str, Any]) -> tuple[str | None, str | None]:
    """Text and reasoning, from a string or a list of typed parts (Mistral's thinking)."""
    reasoning = read.field(message, "reasoning_content", str) or read.field(
        message, "reasoning", str
    )
    if not isinstance(message.get("content"), list):
        return read.field(message, "content", str), reasoning
    texts: list[str] = []
    thoughts: list[str] = []
    for part in read.items(message, "content", dict):
        kind = read.field(part, "type", str)
        if kind == "text":
            texts.append(read.field(part, "text", str) or "")
        elif kind == "thinking" and isinstance(part.get("thinking"), list):
            thoughts += [
                read.field(t, "text", str) or "" for t in read.items(part, "thinking", dict)
            ]
        elif kind == "thinking":
            thoughts.append(read.field(part, "thinking", str) or "")
    return "".join(texts), reasoning or ("".join(thoughts) or None)


def _arguments(read: Fields, function: dict[str, Any]) -> str | None:
    arguments = function.get("arguments")
    if isinstance(arguments, dict):  # some servers send the object itself
        return orjson.dumps(arguments).decode()
    return read.field(function, "arguments", str)


def tool_calls_of(read: Fields, message: dict[str, Any]) -> list[ToolCall]:
    """A message's tool calls."""
    calls = []
    for call in read.items(message, "tool_calls", dict):
        function = read.field(call, "function", dict) or {}
        name = read.field(function, "name", str) or ""
        arguments = _arguments(read, function) or ""
        calls.append(
            ToolCall(
                id=read.field(call, "id", str) or "",
                function=FunctionCall(name=name, arguments=arguments),
            )
        )
    return calls


def tool_deltas_of(read: Fields, delta: dict[str, Any]) -> list[ToolCallDelta]:
    """A stream delta's pieces of tool calls."""
    out = []
    for position, call in enumerate(read.items(delta, "tool_calls", dict)):
        function = read.field(call, "function", dict) or {}
        out.append(
            ToolCallDelta(
                index=read.count(call, "index", position),
                id=read.field(call, "id", str),
                name=read.field(function, "name", str),
                arguments=_arguments(read, function),
            )
        )
    return out


def logprobs_of(read: Fields, choice: dict[str, Any]) -> dict[str, Any] | None:
    """The choice's ``logprobs`` as sent; each token's ``logprob`` must be a number, as
    emulating ``best_of`` ranks choices by them."""
    logprobs = read.field(choice, "logprobs", dict)
    for entry in read.items(logprobs or {}, "content", dict):
        read.number(entry, "logprob")
    return logprobs


def finish_of(read: Fields, choice: dict[str, Any]) -> FinishReason | None:
    """A choice's ``finish_reason`` as one of ours."""
    raw = read.field(choice, "finish_reason", str)
    return None if raw is None else FINISH_REASONS.get(raw, "stop")


def usage_of(read: Fields, answer: dict[str, Any]) -> Usage | None:
    """The answer's token counts, if it has them."""
    raw = read.field(answer, "usage", dict)
    if raw is None:
        return None
    return Usage(read.count(raw, "prompt_tokens"), read.count(raw, "completion_tokens"))
