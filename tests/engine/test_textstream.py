"""StopScanner: text comes out as soon as it is safe, and never past a stop string."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from chatgate.engine.textstream import StopScanner


def run(pieces: list[str], stops: list[str]) -> tuple[list[str], bool]:
    scanner = StopScanner(stops)
    out = [scanner.feed(p) for p in pieces]
    out.append(scanner.flush())
    return out, scanner.stopped


@pytest.mark.parametrize(
    ("pieces", "stops", "emitted", "stopped"),
    [
        (["Hello", " world"], [], ["Hello", " world", ""], False),
        (["Hello", " wor", "ld"], ["world"], ["Hello", " ", "", ""], True),
        (["ab", "c"], ["bc"], ["a", "", ""], True),
        (["a<", "/s", ">b"], ["</s>"], ["a", "", "", ""], True),
        (["a<", "x"], ["</s>"], ["a", "<x", ""], False),
        (["tail <"], ["<end>"], ["tail ", "<"], False),
        (["STOP now"], ["STOP"], ["", ""], True),
        (["x", "yz"], ["z", "yz"], ["x", "", ""], True),
    ],
)
def test_table(pieces: list[str], stops: list[str], emitted: list[str], stopped: bool) -> None:
    assert run(pieces, stops) == (emitted, stopped)


def test_split_utf8_character_is_held_until_complete() -> None:
    scanner = StopScanner()
    data = "é!".encode()
    assert scanner.feed_bytes(data[:1]) == ""
    assert scanner.feed_bytes(data[1:]) == "é!"
    assert scanner.flush() == ""


def test_nothing_after_stop() -> None:
    scanner = StopScanner(["x"])
    assert scanner.feed("axb") == "a"
    assert scanner.feed("more") == ""
    assert scanner.flush() == ""


text = st.text(alphabet="abc<>/ ", max_size=40)


@given(
    text=text,
    cuts=st.lists(st.integers(0, 40), max_size=8),
    stops=st.lists(st.text(alphabet="abc<>/", min_size=1, max_size=4), max_size=3),
)
def test_output_is_the_text_up_to_the_first_stop(
    text: str, cuts: list[int], stops: list[str]
) -> None:
    points = sorted({min(c, len(text)) for c in cuts})
    pieces = [text[a:b] for a, b in zip([0, *points], [*points, len(text)], strict=True)]
    out, stopped = run(pieces, stops)
    found = [i for i in (text.find(s) for s in stops) if i >= 0]
    expected = text[: min(found)] if found else text
    assert "".join(out) == expected
    assert stopped == bool(found)


@given(st.text(max_size=30), st.lists(st.integers(0, 200), max_size=6))
def test_bytes_split_anywhere_decode_the_same(text: str, cuts: list[int]) -> None:
    data = text.encode()
    points = sorted({min(c, len(data)) for c in cuts})
    scanner = StopScanner()
    out = "".join(
        scanner.feed_bytes(data[a:b])
        for a, b in zip([0, *points], [*points, len(data)], strict=True)
    )
    assert out + scanner.flush() == text


def test_include_stop_keeps_the_stop_string_and_stops_at_the_earliest() -> None:
    scanner = StopScanner(["END", "EN", "."], include=True)
    assert scanner.feed("one. END") == "one."
    assert scanner.stopped and scanner.feed("more") == ""
    longest_first = StopScanner(["EN", "END"], include=True)
    assert longest_first.feed("xxENDyy") == "xxEND"  # same start: the longer stop wins
    assert StopScanner(["END"]).feed("abcENDdef") == "abc"
