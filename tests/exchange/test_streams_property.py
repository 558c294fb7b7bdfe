"""Properties of the stream parsers (`chatgate.exchange.streams`) over arbitrary bytes.

Whatever an upstream sends, however the network cuts it: the only exception is an
`UpstreamError` (an event or line over the limit, a line that is not JSON), nothing hangs,
the cut changes nothing, well-formed streams give back what was sent, and the work (the
parser's own `scanned` count) stays linear in the bytes fed.
"""

from __future__ import annotations

import signal
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from itertools import pairwise
from types import FrameType
from typing import Any

import orjson
from hypothesis import example, given, settings
from hypothesis import strategies as st

from chatgate.errors import UpstreamError
from chatgate.exchange.streams import DEFAULT_MAX_EVENT_BYTES, Chunk, NDJSONParser, SSEParser
from chatgate.upstream import SSEEvent

Parser = SSEParser | NDJSONParser
HANG = 5.0  # seconds one example may take before it counts as a hang
# Explicit budgets: the module stays well under 15 s on a noisy 2-core machine, and a
# deadline generous enough that only a real stall (not the machine) trips it.
FAST = settings(max_examples=250, deadline=2000)
SLOW = settings(max_examples=40, deadline=3000)


@contextmanager
def no_hang(seconds: float = HANG) -> Iterator[None]:
    """Fail with TimeoutError, rather than stall the run, if the body takes *seconds*."""

    def expired(signum: int, frame: FrameType | None) -> None:
        raise TimeoutError(f"the parser took over {seconds} s: a hang")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def run(parser: Parser, chunks: Sequence[Chunk]) -> list[Any]:
    """Everything *parser* gives for *chunks*, then for the end of the stream."""
    out: list[Any] = []
    with no_hang():
        for piece in chunks:
            out += parser.feed(piece)
        return out + parser.finish()


def outcome(parser: Parser, chunks: Sequence[Chunk]) -> Any:
    """The items, or the code of the `UpstreamError`; any other exception fails the test."""
    try:
        return run(parser, chunks)
    except UpstreamError as exc:
        assert "connection 'c'" in exc.message, exc.message
        return exc.code


def cut(data: bytes, points: list[int]) -> list[bytes]:
    """*data* cut at *points* (taken modulo its length; repeats give empty chunks)."""
    edges = [0, *sorted(p % (len(data) + 1) for p in points), len(data)]
    return [data[a:b] for a, b in pairwise(edges)]


points = st.lists(st.integers(min_value=0, max_value=100_000), max_size=20)
# Bytes dense in what the parsers look for, mixed with anything at all.
SEPARATORS = [b"\r", b"\n", b"\r\n", b"data:", b"data: ", b"event:", b":", b" ", b"\t"]
JSONISH = [b"{", b"}", b'"', b"[1]", b"null", b"\xff", b"\xe2\x82", b"\x00", b"[" * 600]
tokens = st.sampled_from([*SEPARATORS, *JSONISH])
wire = st.lists(tokens | st.binary(max_size=10), max_size=60).map(b"".join)
anything = wire | st.binary(max_size=600)
limits = st.sampled_from([8, 64, 1024, DEFAULT_MAX_EVENT_BYTES])


# --- any bytes, any cut --------------------------------------------------------------


@FAST
@given(data=anything, at=points, limit=limits)
@example(data=b"data: a\r\n\r\n", at=[8], limit=8)  # a CRLF cut between its CR and LF
@example(data=b"data: a\r\r\ndata: b", at=[8, 9], limit=64)
def test_sse_any_bytes_only_upstream_errors_and_the_cut_changes_nothing(
    data: bytes, at: list[int], limit: int
) -> None:
    whole = outcome(SSEParser("c", limit), [data])
    assert whole == outcome(SSEParser("c", limit), cut(data, at))
    assert whole == outcome(SSEParser("c", limit), [bytes([b]) for b in data])
    # The transport feeds memoryviews; a bytearray is a chunk type too.
    assert whole == outcome(SSEParser("c", limit), [memoryview(data)])
    assert whole == outcome(SSEParser("c", limit), [bytearray(p) for p in cut(data, at)])
    if not isinstance(whole, str):
        assert all(isinstance(e, SSEEvent) and e.data is not None for e in whole)
    else:
        assert whole == "upstream_event_too_large"


@FAST
@given(data=anything, at=points, limit=limits)
@example(data=b"[" * 5000, at=[], limit=DEFAULT_MAX_EVENT_BYTES)  # past orjson's depth
@example(data=b"1" * 400 + b"\n", at=[], limit=DEFAULT_MAX_EVENT_BYTES)  # past 64 bits
def test_ndjson_any_bytes_only_upstream_errors_and_the_cut_changes_nothing(
    data: bytes, at: list[int], limit: int
) -> None:
    whole = outcome(NDJSONParser("c", limit), [data])
    assert whole == outcome(NDJSONParser("c", limit), cut(data, at))
    assert whole == outcome(NDJSONParser("c", limit), [bytes([b]) for b in data])
    assert whole == outcome(NDJSONParser("c", limit), [memoryview(data)])
    if isinstance(whole, str):
        assert whole in ("upstream_event_too_large", "bad_upstream_response")


# --- well-formed streams round-trip ----------------------------------------------------

END = st.sampled_from(["\n", "\r\n", "\r"])
value_text = st.text(st.characters(exclude_characters="\r\n", codec="utf-8"), max_size=16)
name_text = st.text("abcdefghij_-.", min_size=1, max_size=8)
# One line of an event, as (kind, text): data lines carry the event, the rest is ignored.
line = st.one_of(
    st.tuples(st.just("data"), value_text),
    st.tuples(st.just("comment"), value_text),
    st.tuples(st.sampled_from(["id", "retry", "other"]), name_text),
)
event = st.tuples(
    st.none() | name_text,
    st.lists(line, min_size=1, max_size=5).filter(lambda ls: any(k == "data" for k, _ in ls)),
)


@st.composite
def sse_stream(draw: st.DrawFn) -> tuple[bytes, list[SSEEvent]]:
    """A well-formed SSE stream of random events, line ends mixed line by line."""
    text, expected = "", []
    for name, lines in draw(st.lists(event, max_size=8)):
        rows: list[str] = []
        if name is not None:
            rows.append(f"event:{draw(st.sampled_from(['', ' ']))}{name}")
        data: list[str] = []
        for kind, value in lines:
            if kind == "data":
                spaced = draw(st.booleans())
                rows.append(f"data:{' ' if spaced else ''}{value}")
                # One space after the colon is not part of the value (the SSE rule).
                data.append(value if spaced else value.removeprefix(" "))
            else:
                rows.append(f":{value}" if kind == "comment" else f"{kind}: {value}")
        ends = [draw(END) for _ in rows]
        blank = draw(END)
        if ends[-1] == "\r" and blank == "\n":
            blank = "\r"  # CR then LF is one CRLF, not a blank line: not an event end
        text += "".join(r + e for r, e in zip(rows, ends, strict=True)) + blank
        if draw(st.booleans()):
            text += draw(END)  # an extra blank line between events changes nothing
        expected.append(SSEEvent(name, "\n".join(data)))
    return text.encode(), expected


@FAST
@given(stream=sse_stream(), at=points)
def test_sse_well_formed_streams_round_trip(
    stream: tuple[bytes, list[SSEEvent]], at: list[int]
) -> None:
    data, expected = stream
    assert run(SSEParser("c"), [data]) == expected
    assert run(SSEParser("c"), cut(data, at)) == expected
    assert run(SSEParser("c"), [bytes([b]) for b in data]) == expected


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner),
    max_leaves=12,
)


@FAST
@given(
    sent=st.lists(
        st.tuples(json_values, st.sampled_from(["", " ", "\t", " \t "]), st.booleans()),
        max_size=8,
    ),
    end=st.sampled_from([b"\n", b"\r\n"]),
    last_newline=st.booleans(),
    at=points,
)
def test_ndjson_well_formed_streams_round_trip(
    sent: list[tuple[Any, str, bool]], end: bytes, last_newline: bool, at: list[int]
) -> None:
    lines = [
        pad.encode() + orjson.dumps(value) + pad.encode() + end + (b" \r\n" if blank else b"")
        for value, pad, blank in sent
    ]
    data = b"".join(lines)
    if not last_newline:
        data = data.rstrip(b" \r\n")  # a last line needs no newline
    expected = [value for value, _, _ in sent]
    assert run(NDJSONParser("c"), [data]) == expected
    assert run(NDJSONParser("c"), cut(data, at)) == expected


# --- linear work -----------------------------------------------------------------------

# Streams built to make a naive parser rescan: line ends that never pair into an event
# end, lone CRs, no line ends at all, events of one byte each.
adversarial = st.tuples(
    st.sampled_from([b"\r", b"\n", b"\r\n", b"x", b"data: x\r", b"\r\r\n", b"a\nb\r", b" "]),
    st.integers(min_value=1, max_value=20_000),
).map(lambda unit_times: unit_times[0] * unit_times[1])


@SLOW
@given(data=adversarial, size=st.integers(min_value=1, max_value=512), at=points)
@example(data=b"x" * 50_000, size=1, at=[])  # no line end at all, one byte a read
@example(data=b"\r" * 50_000, size=1, at=[])
def test_the_work_is_linear_in_the_bytes_fed(data: bytes, size: int, at: list[int]) -> None:
    """`scanned` is at most the bytes fed plus the 3-byte overlap per read (SSE), or
    the bytes fed (NDJSON): whatever the input, under 4 passes over it."""
    steady = [data[i : i + size] for i in range(0, len(data), size)]
    for chunks in (steady, cut(data, at)):
        sse = SSEParser("c", 2 * len(data) + 16)
        run(sse, chunks)
        assert sse.scanned <= len(data) + 3 * len(chunks)
        # Reads of at least a byte: under 4 passes however small they are.
        assert chunks is not steady or sse.scanned <= 4 * len(data)
        ndjson = NDJSONParser("c", 2 * len(data) + 16)
        outcome(ndjson, chunks)  # the bytes are rarely JSON; the work counts all the same
        assert ndjson.scanned <= len(data)
