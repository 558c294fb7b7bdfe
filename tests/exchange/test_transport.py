"""The transport's stream parsers on their own (fed chunks, no HTTP) and its bounds
against a raw loopback upstream: event and answer sizes, the stream deadline."""

from __future__ import annotations

from collections.abc import AsyncIterator
from itertools import pairwise
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chatgate.config import Connection
from chatgate.errors import ChatgateError, GatewayTimeoutError, RateLimitError, UpstreamError
from chatgate.exchange.streams import (
    DEFAULT_MAX_EVENT_BYTES,
    DEFAULT_MAX_RESPONSE_BYTES,
    DEFAULT_STREAM_DEADLINE,
    NDJSONParser,
    SSEParser,
)
from chatgate.exchange.transport import Transport
from chatgate.upstream import SSEEvent, UpstreamRequest
from tests.fakes.raw_upstream import Mode, RawUpstream

SECRET = "sk-test-transport-secret-9999wxyz"
TEN_MB = 10 * 1024 * 1024
Parser = SSEParser | NDJSONParser


def run(parser: Parser, chunks: list[bytes]) -> list[Any]:
    """Everything *parser* yields for *chunks*, then the end of the stream."""
    out: list[Any] = []
    for piece in chunks:
        out += parser.feed(piece)
    return out + parser.finish()


def cut(data: bytes, points: list[int]) -> list[bytes]:
    """*data* cut at *points* (any order, repeats allowed: empty chunks are fine)."""
    edges = [0, *sorted(p % (len(data) + 1) for p in points), len(data)]
    return [data[a:b] for a, b in pairwise(edges)]


def outcome(make: type[Parser], chunks: list[bytes], limit: int) -> Any:
    """What parsing *chunks* gives: the items, or the error's code and message."""
    try:
        return run(make("c", limit, [SECRET]), chunks)
    except ChatgateError as exc:  # anything else fails the test
        return (exc.code, exc.message)


# --- SSE, by example -------------------------------------------------------------------


def test_sse_events_names_comments_and_multiline_data() -> None:
    data = b": hello\nevent: delta\ndata: one\ndata:two\nid: 7\n\ndata: [DONE]\n\n"
    assert run(SSEParser(), [data]) == [SSEEvent("delta", "one\ntwo"), SSEEvent(None, "[DONE]")]


@pytest.mark.parametrize("end", [b"\n", b"\r\n", b"\r"])
def test_sse_every_line_end(end: bytes) -> None:
    data = b"data: a" + end + b"data: b" + end + end + b"data: c" + end + end
    events = [SSEEvent(None, "a\nb"), SSEEvent(None, "c")]
    assert run(SSEParser(), [data]) == events
    assert run(SSEParser(), [bytes([b]) for b in data]) == events


def test_sse_a_crlf_cut_between_cr_and_lf() -> None:
    parser = SSEParser()
    # "\r\n\r" ends the event at once; the LF that follows belongs to it.
    assert parser.feed(b"data: a\r\n\r") == [SSEEvent(None, "a")]
    assert parser.feed(b"\n") == []
    assert parser.feed(b"data: b\r\n\r\n") == [SSEEvent(None, "b")]
    assert parser.finish() == []
    # Not a byte of the next event either: one of exactly the limit still fits.
    exact = b"data: " + b"x" * 1018
    assert run(SSEParser("up", 1024), [b"data: a\r\n\r", b"\n" + exact + b"\n\n"])[1:] == [
        SSEEvent(None, "x" * 1018)
    ]


def test_sse_last_event_needs_no_blank_line_and_events_without_data_are_dropped() -> None:
    assert run(SSEParser(), [b"event: ping\n\n", b"data: tail"]) == [SSEEvent(None, "tail")]


def test_sse_event_over_the_limit_names_connection_and_limit() -> None:
    parser = SSEParser("up", 1024, [SECRET])
    parser.feed(b"data: " + b"x" * 1000)
    with pytest.raises(UpstreamError) as caught:
        parser.feed(b"x" * 100)
    assert caught.value.code == "upstream_event_too_large"
    assert caught.value.status == 502
    assert "connection 'up'" in caught.value.message
    assert "1024 bytes (max_event_bytes)" in caught.value.message
    assert "xxx" not in caught.value.message  # no upstream text


def test_sse_big_event_is_stopped_at_the_limit_not_read_whole() -> None:
    parser = SSEParser("up", DEFAULT_MAX_EVENT_BYTES)
    piece = b"x" * 65536
    parser.feed(b"data: ")
    with pytest.raises(UpstreamError):
        for _ in range(TEN_MB // len(piece)):
            parser.feed(piece)
    assert parser.scanned <= DEFAULT_MAX_EVENT_BYTES + 2 * len(piece)


# --- NDJSON, by example ----------------------------------------------------------------


def test_ndjson_lines_blank_lines_crlf_and_a_last_line_without_newline() -> None:
    data = b'{"a": 1}\n\n  \r\n[2, 3]\r\n"four"'
    assert run(NDJSONParser(), [data]) == [{"a": 1}, [2, 3], "four"]
    assert run(NDJSONParser(), [bytes([b]) for b in data]) == [{"a": 1}, [2, 3], "four"]


def test_ndjson_bad_line_is_a_502_with_the_secret_masked() -> None:
    parser = NDJSONParser("up", 1024, [SECRET])
    with pytest.raises(UpstreamError) as caught:
        parser.feed(b'{"ok": true}\n{"key": "' + SECRET.encode() + b'"\n')
    assert caught.value.code == "bad_upstream_response"
    assert "connection 'up'" in caught.value.message
    assert SECRET not in caught.value.message
    assert "sk-...wxyz" in caught.value.message


def test_ndjson_line_over_the_limit() -> None:
    with pytest.raises(UpstreamError) as caught:
        run(NDJSONParser("up", 1024), [b'"' + b"x" * 2000 + b'"\n'])
    assert caught.value.code == "upstream_event_too_large"
    assert "1024 bytes (max_event_bytes)" in caught.value.message


# --- properties: any bytes, any cut ----------------------------------------------------

points = st.lists(st.integers(min_value=0, max_value=10_000), max_size=12)
# Bytes rich in what matters to the parsers: line ends, field names, JSON punctuation.
wire = st.lists(
    st.one_of(
        st.sampled_from([b"\r", b"\n", b"\r\n", b"data:", b"data: ", b"event:", b":", b" "]),
        st.sampled_from([b"{", b"}", b'"', b"[1]", b"null", b"\xff", b"\xe2\x82"]),
        st.binary(max_size=8),
    ),
    max_size=40,
).map(b"".join)
limits = st.sampled_from([16, 64, DEFAULT_MAX_EVENT_BYTES])


@settings(max_examples=300, deadline=None)
@given(data=wire | st.binary(max_size=300), at=points, limit=limits)
def test_sse_any_bytes_any_cut_same_outcome_as_whole(
    data: bytes, at: list[int], limit: int
) -> None:
    assert outcome(SSEParser, cut(data, at), limit) == outcome(SSEParser, [data], limit)


@settings(max_examples=300, deadline=None)
@given(data=wire | st.binary(max_size=300), at=points, limit=limits)
def test_ndjson_any_bytes_any_cut_same_outcome_as_whole(
    data: bytes, at: list[int], limit: int
) -> None:
    assert outcome(NDJSONParser, cut(data, at), limit) == outcome(NDJSONParser, [data], limit)


line_text = st.text(st.characters(exclude_characters="\r\n", codec="utf-8"), max_size=20)
events = st.lists(
    st.tuples(
        st.none() | st.text("abcdefghij_", min_size=1, max_size=8),
        st.lists(line_text, min_size=1, max_size=3),
    ),
    max_size=8,
)


@settings(max_examples=200, deadline=None)
@given(
    sent=events,
    end=st.sampled_from(["\n", "\r\n", "\r"]),
    comments=st.booleans(),
    at=points,
)
def test_sse_well_formed_streams_give_their_events(
    sent: list[tuple[str | None, list[str]]], end: str, comments: bool, at: list[int]
) -> None:
    text = ""
    for name, lines in sent:
        text += f": keep-alive{end}" if comments else ""
        text += f"event: {name}{end}" if name else ""
        text += "".join(f"data: {line}{end}" for line in lines) + end
    data = text.encode()
    expected = [SSEEvent(name, "\n".join(lines)) for name, lines in sent]
    assert run(SSEParser(), cut(data, at)) == expected == run(SSEParser(), [data])


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner),
    max_leaves=10,
)


@settings(max_examples=200, deadline=None)
@given(
    sent=st.lists(json_values, max_size=8),
    end=st.sampled_from([b"\n", b"\r\n"]),
    blank=st.booleans(),
    at=points,
)
def test_ndjson_well_formed_streams_give_their_values(
    sent: list[Any], end: bytes, blank: bool, at: list[int]
) -> None:
    data = b"".join(orjson.dumps(v) + end + (end if blank else b"") for v in sent)
    assert run(NDJSONParser(), cut(data, at)) == sent == run(NDJSONParser(), [data])


# --- linear work -----------------------------------------------------------------------


@pytest.mark.parametrize("size", [1024, 65536])
@pytest.mark.parametrize("end", [b"\n", b"\r\n"])
def test_a_10_mb_event_is_parsed_in_linear_work(size: int, end: bytes) -> None:
    """Each byte is looked at about once: at most the data plus a few bytes per read.
    Searching the whole buffer on each read, as before, would count about
    n²/(2·size): 50 000 MB for 1 KiB reads."""
    data = b"data: " + b"x" * TEN_MB + end + end
    chunks = cut(data, list(range(size, len(data), size)))
    parser = SSEParser("up", 2 * TEN_MB)
    got = run(parser, chunks)
    assert len(got) == 1 and len(got[0].data) == TEN_MB
    assert parser.scanned <= len(data) + 3 * len(chunks)


def test_a_10_mb_json_line_is_parsed_in_linear_work() -> None:
    data = b'"' + b"x" * TEN_MB + b'"\n'
    chunks = cut(data, list(range(1024, len(data), 1024)))
    parser = NDJSONParser("up", 2 * TEN_MB)
    assert run(parser, chunks) == ["x" * TEN_MB]
    assert parser.scanned <= len(data)


# --- over HTTP: the bounds of a real request -------------------------------------------


def test_connection_defaults_are_the_transport_defaults() -> None:
    conn = Connection(name="c", source="custom")
    assert conn.max_event_bytes == DEFAULT_MAX_EVENT_BYTES
    assert conn.max_response_bytes == DEFAULT_MAX_RESPONSE_BYTES
    assert conn.stream_deadline == DEFAULT_STREAM_DEADLINE
    # A longer timeout takes the deadline with it; a shorter one leaves it.
    assert Connection(name="c", source="custom", timeout=1800).stream_deadline == 1800
    assert Connection(name="c", source="custom", timeout=5).stream_deadline == 600
    assert Connection(name="c", source="custom", stream_deadline=30).stream_deadline == 30


@pytest.fixture()
async def transport() -> AsyncIterator[Transport]:
    """A transport of its own, closed after the test."""
    made = Transport()
    yield made
    await made.aclose()


def chat(raw: RawUpstream, mode: Mode, stream: bool = False) -> UpstreamRequest:
    """A chat request to *raw*, which answers as *mode*."""
    raw.mode = mode
    return UpstreamRequest(
        "POST", raw.url + "/chat/completions", {}, {"model": "m", "stream": stream}
    )


async def test_an_answer_over_max_response_bytes_is_a_502(transport: Transport) -> None:
    async with RawUpstream(big_bytes=200_000) as raw:
        with pytest.raises(UpstreamError) as caught:
            await transport.send_json(
                chat(raw, "big_event"), "up", 5, [], max_response_bytes=100_000
            )
        assert caught.value.code == "upstream_response_too_large"
        assert "100000 bytes (max_response_bytes)" in caught.value.message
        # Under the limit the same answer is read whole.
        data = await transport.send_json(chat(raw, "big_event"), "up", 5, [])
        assert len(data["choices"][0]["message"]["content"]) == 200_000


async def test_an_error_answer_is_read_in_part_and_keeps_retry_after(transport: Transport) -> None:
    async with RawUpstream() as raw:
        with pytest.raises(RateLimitError) as caught:
            await transport.send_json(chat(raw, "rate_limited"), "up", 5, [])
        assert caught.value.headers == {"Retry-After": "7"}
        with pytest.raises(RateLimitError):
            async for _ in transport.stream_sse(chat(raw, "rate_limited", True), "up", 5, []):
                pass


async def test_stream_ndjson_yields_each_line(transport: Transport) -> None:
    async with RawUpstream() as raw:
        got = [v async for v in transport.stream_ndjson(chat(raw, "ndjson", True), "up", 5, [])]
    assert got == [{"n": 0}, {"n": 1}, {"n": 2}]


@pytest.mark.parametrize("kind", ["sse", "ndjson"])
async def test_a_dripping_stream_ends_at_its_deadline(transport: Transport, kind: str) -> None:
    """Each byte comes well within the read timeout; the deadline still ends it."""
    opened = transport.stream_sse if kind == "sse" else transport.stream_ndjson
    async with RawUpstream(drip_interval=0.02) as raw:
        with pytest.raises(GatewayTimeoutError) as caught:
            async for _ in opened(chat(raw, "drip", True), "up", 2.0, [], stream_deadline=0.3):
                pass
    assert caught.value.code == "stream_deadline"
    assert "connection 'up'" in caught.value.message
    assert "stream_deadline (0.3 s)" in caught.value.message
