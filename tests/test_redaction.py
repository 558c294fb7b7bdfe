"""Secrets out of every text: whole, in fragments, and half-masked as providers echo them."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from chatgate.redaction import FRAGMENT, mask_secret, redact

KEY = "sk-proj-ABCDEFGHijklmnop1234wxyz"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (f"bad key {KEY}", "bad key sk-...wxyz"),
        (
            "Incorrect API key provided: sk-proj-****wxyz.",
            "Incorrect API key provided: sk-...wxyz.",
        ),
        ("key sk-proj-ABCD...1234wxyz was refused", "key sk-...wxyz was refused"),
        ("key sk-pr…wxyz", "key sk-...wxyz"),
        ("trace: ...ABCDEFGHijkl... end", "trace: ...sk-...wxyz... end"),
        ("Bearer sk-proj-ABCDEFGH", "Bearer sk-...wxyz"),
        ("nothing secret here", "nothing secret here"),
        ("short jklm and wxyz", "short jklm and wxyz"),  # under 8 characters: not a leak
        ("an ellipsis... and stars *** are fine", "an ellipsis... and stars *** are fine"),
        ("abc***xyz", "abc***xyz"),  # no secret starts with abc
    ],
)
def test_redact(text: str, expected: str) -> None:
    assert redact(text, [KEY]) == expected


def test_masked_form_is_stable() -> None:
    once = redact(f"{KEY} and {KEY}", [KEY])
    assert once == "sk-...wxyz and sk-...wxyz"
    assert redact(once, [KEY]) == once
    assert mask_secret("short") == "..."


@given(st.text(), st.integers(0, len(KEY) - FRAGMENT), st.integers(FRAGMENT, len(KEY)))
def test_no_fragment_survives(noise: str, start: int, length: int) -> None:
    piece = KEY[start : start + length]
    cleaned = redact(noise + piece + noise, [KEY])
    for i in range(len(KEY) - FRAGMENT + 1):
        assert KEY[i : i + FRAGMENT] not in cleaned
