"""Turn a stream of token bytes into text that is safe to show, and find stop strings.

Two things can make the newest text unsafe to send yet: a UTF-8 character split across
tokens (held by the incremental decoder), and a tail that might be the start of a stop
string (held by `StopScanner`). Whatever is held is released as soon as it is known.
"""

from __future__ import annotations

import codecs
from collections.abc import Sequence


class StopScanner:
    """Release text as it arrives, minus any stop string and everything after it."""

    __slots__ = ("_decoder", "_held", "_include", "_longest", "_stops", "stopped")

    def __init__(self, stops: Sequence[str] = (), *, include: bool = False) -> None:
        self._stops = tuple(s for s in stops if s)
        self._include = include  # include_stop_str_in_output: keep the stop string itself
        self._longest = max((len(s) for s in self._stops), default=0)
        self._held = ""
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self.stopped = False

    def feed_bytes(self, data: bytes) -> str:
        """Add a token's bytes; return the text that can be shown now."""
        return self.feed(self._decoder.decode(data))

    def feed(self, text: str) -> str:
        """Add decoded text; return the text that can be shown now."""
        if self.stopped or not text:
            return ""
        buffer = self._held + text
        if not self._stops:
            self._held = ""
            return buffer
        found = [(i, s) for s in self._stops if (i := buffer.find(s)) >= 0]
        if found:
            cut, stop = min(found, key=lambda item: (item[0], -len(item[1])))
            self.stopped = True
            self._held = ""
            return buffer[: cut + len(stop)] if self._include else buffer[:cut]
        keep = self._partial_tail(buffer)
        self._held = buffer[len(buffer) - keep :] if keep else ""
        return buffer[: len(buffer) - keep]

    def flush(self) -> str:
        """End of generation: release whatever is still held."""
        if self.stopped:
            return ""
        rest = self._held + self._decoder.decode(b"", final=True)
        self._held = ""
        return rest

    def _partial_tail(self, buffer: str) -> int:
        """Length of the longest tail of *buffer* that begins some stop string."""
        for size in range(min(len(buffer), self._longest - 1), 0, -1):
            tail = buffer[-size:]
            if any(s.startswith(tail) for s in self._stops):
                return size
        return 0
