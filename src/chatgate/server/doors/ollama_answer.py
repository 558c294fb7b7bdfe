"""chatgate's answers in Ollama's shapes: one JSON object, or NDJSON lines.

A chat line carries ``message: {"role": "assistant", "content"}`` (``thinking`` for
reasoning, ``tool_calls`` with ``function.arguments`` as an object); a generate line
carries ``response`` (and ``thinking``). The last line says ``done: true`` with
``done_reason`` and Ollama's counts and durations. chatgate counts tokens from the
backend's usage; it times a stream itself (the wait for the first token is
``prompt_eval_duration``, the rest ``eval_duration``), but not a whole answer, whose
durations are 0. Nothing is ever loaded (``load_duration`` 0), and ``context`` (token
ids of the conversation) is never returned.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import orjson

from chatgate.errors import UpstreamError
from chatgate.server.doors.ollama_names import display_name
from chatgate.server.doors.ollama_request import now
from chatgate.server.responses import dumps
from chatgate.types import ChatChunk, ChatResponse, ToolCall, Usage

# chatgate's finish reasons as Ollama's done reasons (a tool call is "stop" in Ollama).
DONE_REASONS = {"stop": "stop", "length": "length", "tool_calls": "stop"}


def done_reason(finish: str | None) -> str:
    """Ollama's ``done_reason`` for chatgate's finish reason."""
    return DONE_REASONS.get(finish or "stop", finish or "stop")


def _arguments(text: str, name: str) -> dict[str, Any]:
    """Tool-call arguments as the object Ollama sends; a 502 when the model wrote
    something that is not a JSON object (Ollama's clients cannot take a string)."""
    try:
        value = orjson.loads(text) if text.strip() else {}
    except orjson.JSONDecodeError:
        value = None
    if not isinstance(value, dict):
        raise UpstreamError(
            f"the model's arguments for the tool call '{name}' are not a JSON object"
        )
    return value


def tool_call(index: int, call_id: str, name: str, arguments: str) -> dict[str, Any]:
    """One tool call in Ollama's shape."""
    out: dict[str, Any] = {"id": call_id} if call_id else {}
    out["function"] = {"index": index, "name": name, "arguments": _arguments(arguments, name)}
    return out


def metrics(usage: Usage | None, total: int = 0, prompt: int = 0) -> dict[str, Any]:
    """Ollama's counts and durations (nanoseconds) of a finished answer."""
    counts = usage or Usage(0, 0)
    return {
        "total_duration": total,
        "load_duration": 0,
        "prompt_eval_count": counts.prompt_tokens,
        "prompt_eval_duration": prompt,
        "eval_count": counts.completion_tokens,
        "eval_duration": max(total - prompt, 0),
    }


def _calls(calls: list[ToolCall] | None) -> list[dict[str, Any]]:
    return [
        tool_call(i, c.id, c.function.name, c.function.arguments) for i, c in enumerate(calls or [])
    ]


def chat_answer(answer: ChatResponse, model: str) -> dict[str, Any]:
    """A whole ``/api/chat`` answer."""
    choice = answer.choices[0] if answer.choices else None
    message: dict[str, Any] = {"role": "assistant", "content": ""}
    if choice is not None:
        message["content"] = choice.message.content or ""
        if choice.message.reasoning_content:
            message["thinking"] = choice.message.reasoning_content
        calls = _calls(choice.message.tool_calls)
        if calls:
            message["tool_calls"] = calls
    return {
        "model": display_name(model),
        "created_at": now(),
        "message": message,
        "done": True,
        "done_reason": done_reason(choice.finish_reason if choice else None),
        **metrics(answer.usage),
    }


def generate_answer(answer: ChatResponse, model: str) -> dict[str, Any]:
    """A whole ``/api/generate`` answer."""
    choice = answer.choices[0] if answer.choices else None
    out: dict[str, Any] = {
        "model": display_name(model),
        "created_at": now(),
        "response": (choice.message.content or "") if choice else "",
    }
    if choice is not None and choice.message.reasoning_content:
        out["thinking"] = choice.message.reasoning_content
    return {
        **out,
        "done": True,
        "done_reason": done_reason(choice.finish_reason if choice else None),
        **metrics(answer.usage),
    }


@dataclass
class _Call:
    id: str = ""
    name: str = ""
    arguments: list[str] = field(default_factory=list)


@dataclass
class _Progress:
    """What a stream has said so far: its tool calls, finish, usage and timings."""

    started: int = field(default_factory=time.monotonic_ns)
    first: int | None = None
    finish: str | None = None
    usage: Usage | None = None
    calls: dict[int, _Call] = field(default_factory=dict)

    def line(self, model: str, body: dict[str, Any]) -> bytes:
        """A ``done: false`` line (the first one ends the prompt's evaluation)."""
        if self.first is None:
            self.first = time.monotonic_ns()
        return dumps({"model": model, "created_at": now(), **body, "done": False}) + b"\n"

    def tool_calls(self) -> list[dict[str, Any]]:
        """The calls streamed so far, whole."""
        calls = [self.calls[i] for i in sorted(self.calls)]
        return [tool_call(i, c.id, c.name, "".join(c.arguments)) for i, c in enumerate(calls)]

    def last(self, model: str, body: dict[str, Any]) -> bytes:
        """The ``done: true`` line, with the counts and durations."""
        end = time.monotonic_ns()
        first = self.first if self.first is not None else end
        line = {
            "model": model,
            "created_at": now(),
            **body,
            "done": True,
            "done_reason": done_reason(self.finish),
            **metrics(self.usage, end - self.started, first - self.started),
        }
        return dumps(line) + b"\n"


async def ndjson(chunks: AsyncIterator[ChatChunk], model: str, shape: str) -> AsyncIterator[bytes]:
    """The chunks as NDJSON lines in *shape* (``chat`` or ``generate``); tool calls,
    which stream in pieces, come whole in one line once the model has finished them."""
    name = display_name(model)
    progress = _Progress()
    text = "content" if shape == "chat" else "response"
    async for chunk in chunks:
        if chunk.comment is not None:
            continue  # a keep-alive: NDJSON has no comment line that clients would skip
        if chunk.usage is not None:
            progress.usage = chunk.usage
        for choice in chunk.choices[:1]:
            delta = choice.delta
            for piece in delta.tool_calls or ():
                call = progress.calls.setdefault(piece.index, _Call())
                call.id = call.id or piece.id or ""
                call.name += piece.name or ""
                call.arguments.append(piece.arguments or "")
            if choice.finish_reason is not None:
                progress.finish = choice.finish_reason
            body: dict[str, Any] = {}
            if delta.content:
                body[text] = delta.content
            if delta.reasoning_content:
                body["thinking"] = delta.reasoning_content
            if body:
                body.setdefault(text, "")
                if shape == "chat":
                    body = {"message": {"role": "assistant", **body}}
                yield progress.line(name, body)
    if progress.calls and shape == "chat":
        message = {"role": "assistant", "content": "", "tool_calls": progress.tool_calls()}
        yield progress.line(name, {"message": message})
    empty = (
        {"message": {"role": "assistant", "content": ""}} if shape == "chat" else {"response": ""}
    )
    yield progress.last(name, empty)
