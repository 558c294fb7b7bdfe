"""Reading recorded upstream answers (``tests/adapters/fixtures``) into comparable values.

A fixture is the upstream's bytes; what an adapter makes of them is reduced here to plain
lists and dicts (without the types' own renderers, which are moving), so a test row can
say exactly what it expects: every choice's text, reasoning, tool calls and finish reason,
the usage numbers, and a stream's chunks in order.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from chatgate.errors import ChatgateError
from chatgate.exchange.streams import SSEParser
from chatgate.types import ChatChunk, ChatResponse, Choice, ChunkChoice
from chatgate.upstream import SSEEvent

FIXTURES = Path(__file__).parent / "fixtures"


def fixture_bytes(name: str) -> bytes:
    """A fixture file, byte for byte."""
    return (FIXTURES / name).read_bytes()


def fixture_json(name: str) -> Any:
    """A ``.json`` fixture, decoded as the transport decodes an answer."""
    return orjson.loads(fixture_bytes(name))


def all_fixtures() -> set[str]:
    """Every recorded answer, as a path relative to the fixtures folder."""
    return {
        str(path.relative_to(FIXTURES))
        for path in FIXTURES.rglob("*")
        if path.suffix in (".json", ".sse")
    }


def sse_events(name: str) -> list[SSEEvent]:
    """A ``.sse`` fixture's events, as `SSEParser` makes them from the wire.

    The bytes are also fed in small pieces: a fixture must give the same events however
    the network cuts it, or it tests the cut rather than the adapter.
    """
    data = fixture_bytes(name)
    whole = _parse([data])
    for size in (1, 7):
        pieces = [data[i : i + size] for i in range(0, len(data), size)]
        assert _parse(pieces) == whole, f"{name}: cut into {size}-byte reads, other events"
    return whole


def _parse(pieces: Iterable[bytes]) -> list[SSEEvent]:
    parser = SSEParser("recorded")
    events: list[SSEEvent] = []
    for piece in pieces:
        events += parser.feed(piece)
    return events + parser.finish()


# --- what an answer says -----------------------------------------------------------


def answer(response: ChatResponse) -> dict[str, Any]:
    """A whole answer as plain values; members that are None are left out."""
    out: dict[str, Any] = {
        "id": response.id,
        "created": response.created,
        "model": response.model,
        "usage": [response.usage.prompt_tokens, response.usage.completion_tokens],
        "choices": [_choice(c) for c in response.choices],
    }
    if response.system_fingerprint is not None:
        out["fingerprint"] = response.system_fingerprint
    return out


def _choice(choice: Choice) -> dict[str, Any]:
    message = choice.message
    out: dict[str, Any] = {
        "index": choice.index,
        "content": message.content,
        "finish": choice.finish_reason,
    }
    if message.reasoning_content is not None:
        out["reasoning"] = message.reasoning_content
    if message.tool_calls is not None:
        out["tools"] = [[c.id, c.function.name, c.function.arguments] for c in message.tool_calls]
    if choice.logprobs is not None:
        out["logprobs"] = choice.logprobs
    return out


def chunk(item: ChatChunk) -> dict[str, Any]:
    """One stream chunk as plain values: its one choice's members that are set (``i``
    for a choice index other than 0), ``choices`` when there are several, ``usage``."""
    out: dict[str, Any] = {}
    if len(item.choices) == 1:
        out.update(_delta(item.choices[0]))
    elif item.choices:
        out["choices"] = [_delta(c) for c in item.choices]
    if item.usage is not None:
        out["usage"] = [item.usage.prompt_tokens, item.usage.completion_tokens]
    return out


def _delta(choice: ChunkChoice) -> dict[str, Any]:
    delta = choice.delta
    out: dict[str, Any] = {}
    if choice.index != 0:
        out["i"] = choice.index
    for name, value in (
        ("role", delta.role),
        ("content", delta.content),
        ("reasoning", delta.reasoning_content),
    ):
        if value is not None:
            out[name] = value
    if delta.tool_calls is not None:
        out["tools"] = [[t.index, t.id, t.name, t.arguments] for t in delta.tool_calls]
    if choice.finish_reason is not None:
        out["finish"] = choice.finish_reason
    if choice.logprobs is not None:
        out["logprobs"] = choice.logprobs
    return out


def assembled_calls(chunks: list[ChatChunk]) -> list[tuple[str, Any]]:
    """The tool calls a stream's pieces add up to, as (name, decoded arguments), in the
    order of (choice, tool index): what a client holds when the stream ends."""
    calls: dict[tuple[int, int], list[str]] = {}
    names: dict[tuple[int, int], str] = {}
    for item in chunks:
        for choice in item.choices:
            for piece in choice.delta.tool_calls or []:
                key = (choice.index, piece.index)
                calls.setdefault(key, [])
                if piece.name is not None:
                    names.setdefault(key, piece.name)
                if piece.arguments:
                    calls[key].append(piece.arguments)
    return [(names.get(k, ""), orjson.loads("".join(calls[k]) or "{}")) for k in sorted(calls)]


# --- reading a stream ------------------------------------------------------------------


@dataclass
class Streamed:
    """What a reader made of a stream: its chunks, and the error that stopped it."""

    chunks: list[ChatChunk] = field(default_factory=list)
    error: BaseException | None = None
    finished: bool = False
    done: bool = False


def read_stream(reader: Any, name: str) -> Streamed:
    """Feed a fixture's events to a `StreamReader` as `RemoteBackend` does: until the
    reader is done or the events run out. Only our own errors are caught; anything else
    (a raw TypeError from a broken answer) propagates, so that a test sees it."""
    out = Streamed()
    try:
        for event in sse_events(name):
            out.chunks += reader.feed(event)
            if reader.done:
                break
    except ChatgateError as exc:
        out.error = exc
    out.finished, out.done = bool(reader.finished), bool(reader.done)
    return out


# --- expectations ----------------------------------------------------------------------


@dataclass(frozen=True)
class Raises:
    """An error of ours: its class, its code, and words its message holds."""

    kind: type[ChatgateError]
    code: str | None
    says: str = ""

    def check(self, error: BaseException | None) -> None:
        assert error is not None, f"expected {self.kind.__name__}, nothing was raised"
        assert type(error) is self.kind, f"{type(error).__name__}: {error}"
        assert isinstance(error, ChatgateError)
        assert error.code == self.code, f"code {error.code!r}: {error}"
        assert self.says in str(error), str(error)


class Like:
    """Equal to any string matching a pattern (ids the adapter makes up)."""

    def __init__(self, pattern: str) -> None:
        self.pattern = re.compile(pattern)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, str) and self.pattern.fullmatch(other) is not None

    def __repr__(self) -> str:
        return f"Like({self.pattern.pattern!r})"


class Recent:
    """Equal to a Unix time of the last minute (``created`` stamped by the adapter)."""

    def __eq__(self, other: object) -> bool:
        return type(other) is int and abs(time.time() - other) < 60

    def __repr__(self) -> str:
        return "Recent()"


CALL_ID = Like(r"call_[0-9a-f]{24}")
RECENT = Recent()
