"""The gateway's chunk stream as Anthropic's event stream.

``message_start`` (and a ``ping``) on the first chunk; then content blocks, one open at
a time: ``content_block_start``, its deltas (``thinking_delta`` and ``signature_delta``,
``text_delta``, ``input_json_delta`` for a tool call's arguments), ``content_block_stop``;
``message_delta`` with ``stop_reason`` and the usage once the usage chunk has come;
``message_stop``. A keep-alive chunk is a ``ping``. Every frame is
``event: <type>\\ndata: <json>\\n\\n``, the type repeated inside.

Nothing is sent before the gateway's first chunk: an error before it is still an HTTP
error (`chatgate.server.dispatch`), after it an ``event: error`` frame.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import AsyncIterator
from typing import Any, Literal

from chatgate.answers import ChatChunk, Delta, ToolCallDelta, Usage
from chatgate.server.doors.anthropic_encode import (
    message_id,
    render_usage,
    stop_reason,
    tool_use_id,
)
from chatgate.server.responses import dumps
from chatgate.types import FinishReason

log = logging.getLogger("chatgate.server")

Json = dict[str, Any]
Kind = Literal["text", "thinking", "tool"]


def frame(kind: str, data: Json) -> bytes:
    """One SSE event as Anthropic sends it."""
    return b"event: " + kind.encode() + b"\ndata: " + dumps({"type": kind, **data}) + b"\n\n"


class EventWriter:
    """The events of one answer, block by block."""

    def __init__(self, model: str) -> None:
        self.model = model
        self.started = False
        self.index = -1  # of the block last opened
        self.open: Kind | None = None
        self.signed = False  # the open thinking block has its signature: it is complete
        self.tools: dict[int, int] = {}  # tool call index -> its block's index
        self.finish: FinishReason | None = None
        self.stop_sequence: str | None = None
        self.usage: Usage | None = None
        self.called = False

    def start(self, chunk_id: str) -> list[bytes]:
        """``message_start`` and a ``ping``, once."""
        if self.started:
            return []
        self.started = True
        message: Json = {
            "id": message_id(chunk_id),
            "type": "message",
            "role": "assistant",
            "model": self.model,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            # The counts come with message_delta: the gateway reports usage last.
            "usage": render_usage(None),
        }
        return [frame("message_start", {"message": message}), frame("ping", {})]

    def chunk(self, chunk: ChatChunk) -> list[bytes]:
        """The events one chunk makes."""
        out = self.start(chunk.id)
        if chunk.comment is not None:
            return [*out, frame("ping", {})]
        if chunk.usage is not None:
            self.usage = chunk.usage
        for choice in chunk.choices:
            if choice.index != 0:
                continue  # Anthropic answers one message; n > 1 is the OpenAI door's
            out += self._delta(choice.delta)
            if choice.finish_reason is not None:
                self.finish = choice.finish_reason
                self.stop_sequence = choice.stop_sequence
        return out

    def end(self, chunk_id: str) -> list[bytes]:
        """The last block's stop, ``message_delta`` and ``message_stop``."""
        out = [*self.start(chunk_id), *self._close()]
        reason = stop_reason(self.finish, self.stop_sequence, self.called)
        delta = {
            "stop_reason": reason,
            "stop_sequence": self.stop_sequence if reason == "stop_sequence" else None,
        }
        out.append(frame("message_delta", {"delta": delta, "usage": render_usage(self.usage)}))
        out.append(frame("message_stop", {}))
        return out

    def _delta(self, delta: Delta) -> list[bytes]:
        # In the order a Claude stream had them: the signature and redacted blocks
        # belong to the reasoning before this delta's own.
        out: list[bytes] = []
        if delta.reasoning_signature is not None:
            if self.open != "thinking" or self.signed:
                out += self._open("thinking", {"type": "thinking", "thinking": "", "signature": ""})
            out.append(self._block_delta("signature_delta", signature=delta.reasoning_signature))
            self.signed = True
        for data in delta.redacted_reasoning or ():
            out += self._open(None, {"type": "redacted_thinking", "data": data})
        if delta.reasoning_content:
            if self.open != "thinking" or self.signed:
                out += self._open("thinking", {"type": "thinking", "thinking": "", "signature": ""})
            out.append(self._block_delta("thinking_delta", thinking=delta.reasoning_content))
        if delta.content:
            if self.open != "text":
                out += self._open("text", {"type": "text", "text": ""})
            out.append(self._block_delta("text_delta", text=delta.content))
        for call in delta.tool_calls or ():
            out += self._tool(call)
        return out

    def _tool(self, call: ToolCallDelta) -> list[bytes]:
        out: list[bytes] = []
        if call.index not in self.tools:
            self.called = True
            block = {
                "type": "tool_use",
                "id": tool_use_id(call.id),
                "name": call.name or "",
                "input": {},
            }
            out += self._open("tool", block)
            self.tools[call.index] = self.index
        if call.arguments:
            if self.tools[call.index] != self.index:
                # A block once closed cannot be reopened in Anthropic's stream.
                log.warning("a backend streamed arguments of an earlier tool call; left out")
                return out
            out.append(self._block_delta("input_json_delta", partial_json=call.arguments))
        return out

    def _open(self, kind: Kind | None, block: Json) -> list[bytes]:
        """Close the open block, start *block*; a block of no *kind* (redacted
        thinking) is whole at its start and closed at once."""
        out = self._close()
        self.index += 1
        out.append(frame("content_block_start", {"index": self.index, "content_block": block}))
        self.open, self.signed = kind, False
        if kind is None:
            out.append(frame("content_block_stop", {"index": self.index}))
        return out

    def _close(self) -> list[bytes]:
        if self.open is None:
            return []
        self.open = None
        return [frame("content_block_stop", {"index": self.index})]

    def _block_delta(self, kind: str, **fields: str) -> bytes:
        return frame(
            "content_block_delta", {"index": self.index, "delta": {"type": kind, **fields}}
        )


async def events(chunks: AsyncIterator[ChatChunk], model: str) -> AsyncIterator[bytes]:
    """The whole event stream of *chunks*."""
    writer = EventWriter(model)
    last_id = "msg_" + secrets.token_hex(12)  # for a stream that ends before any chunk
    async for chunk in chunks:
        last_id = chunk.id
        made = writer.chunk(chunk)
        if made:
            yield b"".join(made)  # one write per chunk, however many events it makes
    yield b"".join(writer.end(last_id))
