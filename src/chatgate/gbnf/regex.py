"""``guided_regex`` as a llama.cpp grammar (GBNF), so the model can only write a match.

The pattern is parsed by Python's own regex parser (so the dialect is exactly Python's)
and its tree translated: literals, ``.``, classes (ranges, ``\\d \\w \\s``, negation),
alternation, groups and every kind of repetition. Constructs a grammar cannot express —
back-references, look-arounds, word boundaries, inline flags — are refused with a 400
rather than silently loosened. The whole output must match (``re.fullmatch``), so
``^`` and ``$`` at the ends are accepted and mean nothing more.
"""

from __future__ import annotations

import importlib
import re
from typing import Any

from chatgate.errors import InvalidRequestError

PARAM = "guided_regex"
# Python's regex parser; private, but the only exact reading of Python's dialect.
_parser: Any = importlib.import_module("re._parser")
_c: Any = importlib.import_module("re._constants")

CATEGORIES = {
    "CATEGORY_DIGIT": "0-9",
    "CATEGORY_WORD": "a-zA-Z0-9_",
    "CATEGORY_SPACE": " \\t\\n\\r\\x0B\\x0C",
}
NEGATED = {
    "CATEGORY_NOT_DIGIT": "0-9",
    "CATEGORY_NOT_WORD": "a-zA-Z0-9_",
    "CATEGORY_NOT_SPACE": " \\t\\n\\r\\x0B\\x0C",
}


def regex_to_gbnf(pattern: str) -> str:
    """A GBNF grammar whose language is the strings *pattern* fully matches."""
    try:
        tree = _parser.parse(pattern)
    except re.error as exc:
        raise InvalidRequestError(
            f"guided_regex is not a valid regex: {exc}", param=PARAM
        ) from None
    return f"root ::= {_sequence(list(tree))}\n"


def _refuse(what: str) -> InvalidRequestError:
    return InvalidRequestError(
        f"guided_regex uses {what}, which a grammar (GBNF) cannot enforce", param=PARAM
    )


def _sequence(items: list[Any]) -> str:
    parts = [_item(op, av) for op, av in items]
    parts = [p for p in parts if p]
    if len(parts) == 1:
        return parts[0]
    return "(" + " ".join(parts) + ")" if parts else '""'


def _item(op: Any, av: Any) -> str:
    name = str(op)
    if name == "LITERAL":
        return _literal(chr(av))
    if name == "NOT_LITERAL":
        return f"[^{_class_char(chr(av))}]"
    if name == "ANY":
        return "[^\\n]"
    if name == "IN":
        return _class(av)
    if name == "BRANCH":
        return "(" + " | ".join(_sequence(list(alt)) for alt in av[1]) + ")"
    if name == "SUBPATTERN":
        _group, add_flags, del_flags, inner = av
        if add_flags or del_flags:
            raise _refuse("inline flags")
        return _sequence(list(inner))
    if name in ("MAX_REPEAT", "MIN_REPEAT", "POSSESSIVE_REPEAT"):
        low, high, inner = av
        body = _sequence(list(inner))
        if high == _c.MAXREPEAT:
            return {0: f"{body}*", 1: f"{body}+"}.get(low, f"{body}{{{low},}}")
        if (low, high) == (0, 1):
            return f"{body}?"
        return f"{body}{{{low}}}" if low == high else f"{body}{{{low},{high}}}"
    if name == "AT":
        if str(av) in ("AT_BEGINNING", "AT_BEGINNING_STRING", "AT_END", "AT_END_STRING"):
            return ""
        raise _refuse("word boundaries")
    if name in ("GROUPREF", "GROUPREF_EXISTS"):
        raise _refuse("back-references")
    if name in ("ASSERT", "ASSERT_NOT"):
        raise _refuse("look-arounds")
    if name == "ATOMIC_GROUP":
        return _sequence(list(av))
    raise _refuse(f"'{name.lower()}'")


def _class(items: list[Any]) -> str:
    negate = False
    out = ""
    for op, av in items:
        name = str(op)
        if name == "NEGATE":
            negate = True
        elif name == "LITERAL":
            out += _class_char(chr(av))
        elif name == "RANGE":
            out += f"{_class_char(chr(av[0]))}-{_class_char(chr(av[1]))}"
        elif name == "CATEGORY" and str(av) in CATEGORIES:
            out += CATEGORIES[str(av)]
        elif name == "CATEGORY" and str(av) in NEGATED and len(items) == 1:
            return f"[^{NEGATED[str(av)]}]"
        else:
            raise _refuse("a negated class inside a class")
    return f"[{'^' if negate else ''}{out}]"


def gbnf_string(text: str) -> str:
    """*text* as a GBNF string literal."""
    return '"' + "".join(_escape(char, '"\\') for char in text) + '"'


def _literal(char: str) -> str:
    return gbnf_string(char)


def _class_char(char: str) -> str:
    # Hex, not a backslash: llama.cpp's grammar parser knows no escape such as "\^".
    if char in "]\\^-[":
        return f"\\x{ord(char):02X}"
    return _escape(char, "")


def _escape(char: str, special: str) -> str:
    if char in special:
        return "\\" + char
    if char == "\n":
        return "\\n"
    if char == "\t":
        return "\\t"
    if char == "\r":
        return "\\r"
    if not char.isprintable():
        return f"\\x{ord(char):02X}" if ord(char) < 256 else f"\\u{ord(char):04X}"
    return char
