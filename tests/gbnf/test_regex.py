"""``guided_regex`` → GBNF: what each construct becomes, and what is refused."""

from __future__ import annotations

import pytest

from chatgate.errors import InvalidRequestError
from chatgate.gbnf.regex import gbnf_string, regex_to_gbnf


@pytest.mark.parametrize(
    ("pattern", "grammar"),
    [
        ("ab", '("a" "b")'),
        ("a|bc", '("a" | ("b" "c"))'),
        ("[a-z0-9_]+", "[a-z0-9_]+"),
        (r"\d{2,4}", "[0-9]{2,4}"),
        (r"\d{3}", "[0-9]{3}"),
        (r"x{2,}", '"x"{2,}'),
        ("a?b*", '("a"? "b"*)'),
        ("[^ab]", "[^ab]"),
        (".", "[^\\n]"),
        ("^a$", '"a"'),
        (r"\W", "[^a-zA-Z0-9_]"),
        ('"', '"\\""'),
        ("(?:ab)+", '("a" "b")+'),
    ],
)
def test_constructs(pattern: str, grammar: str) -> None:
    assert regex_to_gbnf(pattern) == f"root ::= {grammar}\n"


@pytest.mark.parametrize(
    ("pattern", "why"),
    [
        (r"(a)\1", "back-references"),
        (r"a(?=b)", "look-arounds"),
        (r"\bword", "word boundaries"),
        (r"(?i:a)", "inline flags"),
        (r"[\Wa]", "negated class"),
        ("(", "not a valid regex"),
    ],
)
def test_refusals_name_the_construct(pattern: str, why: str) -> None:
    with pytest.raises(InvalidRequestError) as caught:
        regex_to_gbnf(pattern)
    assert why in caught.value.message and caught.value.param == "guided_regex"


def test_strings_are_escaped() -> None:
    assert gbnf_string('say "hi"\n\\') == '"say \\"hi\\"\\n\\\\"'
