"""Stream parsers for upstream answers, without I/O: SSE events and NDJSON lines.

Both take byte chunks as they arrive, however the stream is cut, and look at each byte
about once: a 10 MB event costs one pass, not one per read. One event (or line) larger
than the limit is refused while it is still arriving, with the connection and the limit
named and no upstream text. `chatgate.exchange.transport` feeds them; adapters read `SSEEvent`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

import orjson

from chatgate.errors import UpstreamError, redact
from chatgate.upstream import SSEEvent

# The defaults of the connection fields of the same names (chatgate.config.Connection),
# which the transport also takes when a caller passes none.
DEFAULT_MAX_EVENT_BYTES = 8 * 1024 * 1024
DEFAULT_MAX_RESPONSE_BYTES = 32 * 1024 * 1024
DEFAULT_STREAM_DEADLINE = 600.0

# A blank line ends an event: two line ends in a row, each CRLF, CR or LF. A CR counts
# alone only when no LF follows, so that a CRLF stays one line end ("a\r\nb" is not CR,
# then LF, then "b"). Not atomic groups: with them the search ran at about a quarter of
# the speed (22 against 84 MB/s here), and an 8 MiB event held the event loop that long.
_EVENT_END = re.compile(rb"(?:\r\n|\r(?!\n)|\n)(?:\r\n|\r|\n)")
# The longest event end is 4 bytes; a search that fails looks again at the last 3, which
# may be the start of one that the next read completes.
_OVERLAP = 3

Chunk = bytes | bytearray | memoryview


class _Splitter:
    """What both stream parsers share: the buffer, the resume point, the size limit."""

    unit = "stream event"

    def __init__(
        self,
        connection: str = "upstream",
        limit: int = DEFAULT_MAX_EVENT_BYTES,
        secrets: Iterable[str] = (),
    ) -> None:
        self.connection, self.limit, self.secrets = connection, limit, list(secrets)
        self.scanned = 0  # bytes the search for ends has looked at: the measure of work
        self._buffer = bytearray()
        self._scan = 0  # where the search resumes: the bytes before it hold no end

    def _check(self, size: int) -> None:
        if size > self.limit:
            raise too_large(self.connection, self.unit, self.limit, self.secrets)

    def _drop(self, start: int) -> None:
        # Only the bytes after the last end move, which came with this read: linear.
        if start:
            del self._buffer[:start]
            self._scan -= start

    def _rest(self) -> bytes:
        rest = bytes(self._buffer)
        self._buffer.clear()
        self._scan = 0
        return rest


class SSEParser(_Splitter):
    """Server-sent events from byte chunks, one event at most *limit* bytes; every cut of
    the same bytes gives the same events."""

    _cr = False  # the last read ended in the CR of an event end: an LF next belongs to it

    def feed(self, data: Chunk) -> list[SSEEvent]:
        """The events *data* completes."""
        self._buffer += data
        return self._split()

    def finish(self) -> list[SSEEvent]:
        """The events left when the stream ends (a last one needs no blank line)."""
        events = self._split()
        rest = self._rest().rstrip(b"\r\n")
        self._check(len(rest))
        event = _parse_event(rest)
        return [*events, event] if event is not None else events

    def _split(self) -> list[SSEEvent]:
        buffer = self._buffer
        events: list[SSEEvent] = []
        start = 0
        if self._cr and buffer:
            self._cr = False
            if buffer[0] == 0x0A:
                start = self._scan = 1
        while found := _EVENT_END.search(buffer, self._scan):
            self.scanned += found.end() - self._scan
            self._check(found.start() - start)
            event = _parse_event(buffer[start : found.start()])
            if event is not None:
                events.append(event)
            start = self._scan = found.end()
            self._cr = start == len(buffer) and buffer[-1] == 0x0D
        self.scanned += len(buffer) - self._scan
        self._scan = max(start, len(buffer) - _OVERLAP)
        # What is left may end in part of an event end, hence the slack.
        self._check(len(buffer) - start - _OVERLAP)
        self._drop(start)
        return events


class NDJSONParser(_Splitter):
    """JSON values from byte chunks, one per line, one line at most *limit* bytes; a line
    that is not JSON is a 502 ``bad_upstream_response``. Blank lines are skipped."""

    unit = "stream line"

    def feed(self, data: Chunk) -> list[Any]:
        """The values of the lines *data* completes."""
        buffer = self._buffer
        buffer += data
        values: list[Any] = []
        start = 0
        while (end := buffer.find(b"\n", self._scan)) >= 0:
            self.scanned += end + 1 - self._scan
            self._line(buffer[start:end], values)
            start = self._scan = end + 1
        self.scanned += len(buffer) - self._scan
        self._scan = len(buffer)
        self._check(len(buffer) - start - 1)  # a CR may wait for its LF
        self._drop(start)
        return values

    def finish(self) -> list[Any]:
        """The value of a last line without a newline, if any."""
        values: list[Any] = []
        self._line(self._rest(), values)
        return values

    def _line(self, line: bytes | bytearray, values: list[Any]) -> None:
        # The limit counts the line as sent (less a CR before its LF), not stripped: a
        # line that waits for its end is held to the same count.
        self._check(len(line) - line.endswith(b"\r"))
        line = line.strip(b" \t\r")
        if not line:
            return
        try:
            values.append(orjson.loads(line))
        except orjson.JSONDecodeError:
            snippet = redact(bytes(line[:200]).decode("utf-8", errors="replace"), self.secrets)
            raise UpstreamError(
                f"connection '{self.connection}': a stream line is not JSON: {snippet!r}",
                code="bad_upstream_response",
            ) from None


def _parse_event(block: bytes | bytearray) -> SSEEvent | None:
    name: str | None = None
    data: list[str] = []
    # bytes.splitlines ends lines at CRLF, CR and LF only: the three SSE line ends.
    for raw in block.splitlines():
        line = raw.decode("utf-8", errors="replace")
        if line.startswith("data:"):
            data.append(line[5:].removeprefix(" "))
        elif line.startswith("event:"):
            name = line[6:].strip()
        # Comments (":") and other fields (id:, retry:) carry nothing we use.
    return SSEEvent(name, "\n".join(data)) if data else None


def too_large(
    connection: str, what: str, limit: int, secrets: Iterable[str], field: str = "max_event_bytes"
) -> UpstreamError:
    code = "upstream_response_too_large" if what == "answer" else "upstream_event_too_large"
    return UpstreamError(
        redact(
            f"connection '{connection}': the upstream sent a {what} over the limit of "
            f"{limit} bytes ({field}); it was not read further",
            secrets,
        ),
        code=code,
    )
