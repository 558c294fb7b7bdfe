"""GBNF text for JSON: the base rules every schema grammar shares, literals, character
classes, and JSON string contents that spell a given text (`chatgate.gbnf.schema` walks the
schema and builds its rules from these pieces).

llama.cpp's grammar parser knows few escapes, so anything unusual in a literal or a class
is written as a hex escape.
"""

from __future__ import annotations

import json
import re
from typing import Any

from chatgate.errors import InvalidRequestError

MAX_GRAMMAR_BYTES = 64 * 1024
MAX_RULES = 2000
MAX_REPEAT_TOTAL = 16384  # llama.cpp expands x{m,n} into about n rules
_NAME = re.compile(r'"(?:\\.|[^"\\])*"|\[(?:\\.|[^\]\\])*\]|([a-zA-Z][a-zA-Z0-9-]*)')
_TOKEN = re.compile(r'("(?:\\.|[^"\\])*")|(\[(?:\\.|[^\]\\])*\])|([^"\[]+)', re.DOTALL)
_UNIT = re.compile(r"\\(?:x[0-9A-Fa-f]{2}|u[0-9A-Fa-f]{4}|U[0-9A-Fa-f]{8}|.)|.", re.DOTALL)
_JSON_SPECIAL = [*range(0x20), 0x22, 0x5C]
TOO_BIG = "the schema is too large for a grammar (GBNF)"


# One slot of whitespace between tokens, bounded so the model cannot loop on it.
BASE = {
    "value": 'object | array | string | number | "true" | "false" | "null"',
    "object": '"{" ws ( member ( "," ws member )* )? "}"',
    "member": 'string ws ":" ws value ws',
    "array": '"[" ws ( value ws ( "," ws value ws )* )? "]"',
    "string": r'"\"" string-end',
    "string-end": r'char* "\""',
    "char": r'[^"\\\x00-\x1F] | escape',
    "escape": r'"\\" ( ["\\/bfnrt] | "u" [0-9a-fA-F]{4} )',
    "number": "integer fraction",
    "fraction": '( "." [0-9]{1,20} )? ( [eE] [-+]? [0-9]{1,2} )?',
    "integer": '"-"? ( "0" | [1-9] [0-9]{0,15} )',
    "ws": r'( " " | "\n" [ \t]{0,16} )?',
}


def assemble(rules: dict[str, str]) -> str:
    """The rules reachable from root, base rules included, one per line."""
    every = {**BASE, **rules}
    order, seen = ["root"], {"root"}
    for name in order:
        for match in _NAME.finditer(every[name]):
            ref = match.group(1)
            if ref and ref not in seen:
                seen.add(ref)
                order.append(ref)
    return "".join(f"{name} ::= {every[name]}\n" for name in order)


class RuleSet:
    """The rules of one grammar being built, each body named once, within the size the
    engine takes; its errors are 400s about the JSON schema in *param*."""

    def __init__(self, param: str | None) -> None:
        self.param = param
        self.rules: dict[str, str] = {"root": ""}
        self.by_body: dict[str, str] = {}
        self.repeats = self.work = 0

    def error(self, message: str) -> InvalidRequestError:
        """A 400 about the schema."""
        return InvalidRequestError(f"JSON schema: {message}", param=self.param)

    def refuse(self, what: str) -> InvalidRequestError:
        """A 400 for a part of the schema the grammar cannot enforce."""
        return self.error(f"{what} cannot be enforced by a grammar (GBNF)")

    def spend(self, work: int, repeats: int) -> None:
        """Count text made and repetitions asked for; a 400 once either is too much."""
        self.work += work
        self.repeats += repeats
        if self.work > 4 * MAX_GRAMMAR_BYTES or self.repeats > MAX_REPEAT_TOTAL:
            raise self.error(TOO_BIG)

    def text(self) -> str:
        """The grammar: every rule reachable from root, one per line."""
        text = assemble(self.rules)
        if len(text.encode()) > MAX_GRAMMAR_BYTES or text.count("\n") > MAX_RULES:
            raise self.error(TOO_BIG)
        return text

    def rule(self, prefix: str, body: str) -> str:
        """A rule name for *body* (the same body always gets the same name)."""
        if re.fullmatch(r"[a-zA-Z][a-zA-Z0-9-]*", body):
            return body
        if body not in self.by_body:
            self.by_body[body] = self.fresh(prefix)
            self.rules[self.by_body[body]] = body
        return self.by_body[body]

    def fresh(self, prefix: str) -> str:
        """A rule name not used yet."""
        if len(self.rules) >= MAX_RULES:
            raise self.error(TOO_BIG)
        stem = re.sub(r"[^a-zA-Z0-9]+", "-", prefix).strip("-")[:32] or "r"
        return f"{stem}-{len(self.rules)}"

    def repeat(self, item: str, low: int, high: int | None) -> str:
        """*item* repeated *low* to *high* (None: any number of) times."""
        self.spend(0, low if high is None else high)
        if high is None:
            return {0: f"{item}*", 1: f"{item}+"}.get(low, f"{item}{{{low},}}")
        if high == 0:
            return ""
        if (low, high) == (0, 1):
            return f"{item}?"
        return f"{item}{{{low}}}" if low == high else f"{item}{{{low},{high}}}"


def json_string_body(expr: str) -> tuple[str, int]:
    """A GBNF expression over decoded text (as `regex_to_gbnf` writes it) as one over the
    JSON string contents that decode to it, and the repetitions its bounds expand to."""
    out, repeats = [], 0
    for literal, char_class, other in _TOKEN.findall(expr):
        if literal:
            text = "".join(_unit(unit) for unit in _UNIT.findall(literal[1:-1]))
            out.append(lit(dump(text)[1:-1]))
        elif char_class:
            out.append(_json_class(char_class[1:-1]))
        else:
            for low, high in re.findall(r"\{(\d+)(?:,(\d*))?\}", other):
                repeats += int(high or low)
            out.append(other)
    return "".join(out), repeats


def other_key(names: list[str]) -> str:
    """A JSON string that spells none of *names* plainly (an escaped spelling is checked)."""
    trie: dict[str, Any] = {}
    for name in dict.fromkeys(names):
        if dump(name)[1:-1] == name and len(name) <= 64:  # others are left to the check
            node = trie
            for char in name:
                node = node.setdefault(char, {})
            node[""] = {}
    return f'"\\"" {_trie(trie)}' if trie else "string"


def _trie(node: dict[str, Any]) -> str:
    # At each point the key may end (unless a name does), differ, or follow a name on.
    chars = "".join(_class_char(char) for char in node if char)
    options = [] if "" in node else ['"\\""']
    options.append(f'( [^{chars}"\\x5C\\x00-\\x1F] | escape ) string-end')
    options += [f"{lit(char)} {_trie(child)}" for char, child in node.items() if char]
    return alt(options)


def seq(*parts: str) -> str:
    return " ".join(part for part in parts if part)


def alt(options: list[str]) -> str:
    unique = list(dict.fromkeys(options))
    return unique[0] if len(unique) == 1 else f"( {' | '.join(unique)} )"


def dump(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def lit(text: str) -> str:
    """*text* as a GBNF string literal."""
    return '"' + "".join(_escape(char, '"\\') for char in text) + '"'


def _escape(char: str, special: str) -> str:
    if char in special:
        return "\\" + char
    if char.isprintable():
        return char
    code = ord(char)
    width = 2 if code < 0x100 else 4 if code < 0x10000 else 8
    return {9: "\\t", 10: "\\n", 13: "\\r"}.get(code, f"\\{'xuU'[width // 4]}{code:0{width}X}")


def _class_char(char: str) -> str:
    # llama.cpp knows no escape for ^ or -, so specials go as hex.
    return f"\\x{ord(char):02X}" if char in "[]\\^-" else _escape(char, "")


def _unit(unit: str) -> str:
    """The character a GBNF character or escape stands for."""
    if len(unit) > 2:
        return chr(int(unit[2:], 16))
    return unit if len(unit) == 1 else {"n": "\n", "t": "\t", "r": "\r"}.get(unit[1], unit[1])


def _json_class(body: str) -> str:
    """A GBNF class's characters as JSON string contents: specials become their escapes."""
    negate = body.startswith("^")
    units = _UNIT.findall(body[1:] if negate else body)
    ranges, i = [], 0
    while i < len(units):  # a bare "-" between units is a range; gbnf.regex escapes others
        low = high = _unit(units[i])
        if i + 2 < len(units) and units[i + 1] == "-":
            high, i = _unit(units[i + 2]), i + 3
        else:
            i += 1
        ranges.append((ord(low), ord(high)))
    inside = [c for c in _JSON_SPECIAL if any(a <= c <= b for a, b in ranges) != negate]
    # A negated class loses the control characters JSON can only write as \u00XX: a safe
    # narrowing that keeps the grammar small (any other character still fits).
    options = [lit(dump(chr(c))[1:-1]) for c in inside if not negate or c in b'\b\t\n\f\r"\\']
    if negate:
        return alt([f'[^{_ranges(ranges)}\\x00-\\x1F"\\x5C]', *options])
    pieces = []
    for a, b in ranges:
        a = max(a, 0x20)
        for cut in (0x22, 0x5C):
            if a <= cut <= b:
                pieces += [(a, cut - 1)] if a < cut else []
                a = cut + 1
        pieces += [(a, b)] if a <= b else []
    return alt(([f"[{_ranges(pieces)}]"] if pieces else []) + options)


def _ranges(ranges: list[tuple[int, int]]) -> str:
    return "".join(
        _class_char(chr(a)) if a == b else f"{_class_char(chr(a))}-{_class_char(chr(b))}"
        for a, b in ranges
    )
