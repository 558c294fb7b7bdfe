"""JSON Schema → GBNF: the language of each grammar, read by a small matcher written here,
and (marked ``model``) the real engine's parser and sampler on a few of them."""

from __future__ import annotations

import json
import re
from typing import Any

import jsonschema
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chatgate.errors import InvalidRequestError
from chatgate.gbnf.schema import JSON_OBJECT_GBNF, schema_to_gbnf

Node = tuple[Any, ...]

# The escapes llama.cpp's grammar parser knows; any other is a parse error there too.
ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "\\": "\\", '"': '"', "[": "[", "]": "]"}
TOKEN = re.compile(
    r'\s*(?:(?P<lit>"(?:\\.|[^"\\])*")|(?P<cls>\[(?:\\.|[^\]\\])*\])|(?P<name>[a-zA-Z0-9-]+)'
    r"|(?P<rep>\{\d+(?:,\d*)?\})|(?P<op>[()|*+?]))"
)
CHAR = re.compile(r"\\(?:x[0-9A-Fa-f]{2}|u[0-9A-Fa-f]{4}|U[0-9A-Fa-f]{8}|.)|.", re.DOTALL)


def unescape(unit: str) -> str:
    if len(unit) == 1:
        return unit
    if unit[1] in "xuU" and len(unit) > 2:
        return chr(int(unit[2:], 16))
    if unit[1] not in ESCAPES:
        raise AssertionError(f"llama.cpp rejects the escape {unit!r}")
    return ESCAPES[unit[1]]


class Grammar:
    """A GBNF grammar (the subset chatgate.gbnf.schema emits) that can tell whether it matches."""

    def __init__(self, text: str) -> None:
        self.rules: dict[str, Node] = {}
        for line in text.splitlines():
            name, _, body = line.partition(" ::= ")
            assert re.fullmatch(r"[a-zA-Z0-9-]+", name), line
            assert name not in self.rules, f"rule {name} defined twice"
            self.tokens = [m for m in TOKEN.finditer(body)]
            assert "".join(m.group(0) for m in self.tokens).strip() == body.strip(), body
            self.at = 0
            self.rules[name] = self.alternatives()
            assert self.at == len(self.tokens), f"trailing tokens in {line}"
        for node in self.rules.values():
            self.check_refs(node)
        assert "root" in self.rules

    def check_refs(self, node: Node) -> None:
        if node[0] == "ref":
            assert node[1] in self.rules, f"undefined rule {node[1]}"
        for child in (
            node[1] if node[0] in ("seq", "alt") else [node[1]] if node[0] == "rep" else []
        ):
            self.check_refs(child)

    def peek(self) -> str | None:
        return self.tokens[self.at].group(0).strip() if self.at < len(self.tokens) else None

    def alternatives(self) -> Node:
        options = [self.sequence()]
        while self.peek() == "|":
            self.at += 1
            options.append(self.sequence())
        return options[0] if len(options) == 1 else ("alt", options)

    def sequence(self) -> Node:
        items: list[Node] = []
        while self.peek() not in (None, "|", ")"):
            items.append(self.postfix())
        return ("seq", items)

    def postfix(self) -> Node:
        node = self.atom()
        while True:
            token = self.peek()
            if token in ("*", "+", "?"):
                low, high = {"*": (0, None), "+": (1, None), "?": (0, 1)}[token]
            elif token is not None and token.startswith("{"):
                low_text, comma, high_text = token[1:-1].partition(",")
                low = int(low_text)
                high = int(high_text) if high_text else (None if comma else low)
            else:
                return node
            self.at += 1
            node = ("rep", node, low, high)

    def atom(self) -> Node:
        match = self.tokens[self.at]
        self.at += 1
        if match.group("lit"):
            return ("lit", "".join(unescape(u) for u in CHAR.findall(match.group("lit")[1:-1])))
        if match.group("cls"):
            body = match.group("cls")[1:-1]
            negate = body.startswith("^")
            units = CHAR.findall(body[1:] if negate else body)
            ranges, i = [], 0
            while i < len(units):
                low = high = unescape(units[i])
                if i + 2 < len(units) and units[i + 1] == "-":
                    high, i = unescape(units[i + 2]), i + 3
                else:
                    i += 1
                ranges.append((ord(low), ord(high)))
            return ("cls", negate, ranges)
        if match.group("name"):
            return ("ref", match.group("name"))
        assert match.group("op") == "(", f"unexpected {match.group(0)!r}"
        inner = self.alternatives()
        assert self.peek() == ")"
        self.at += 1
        return inner

    def matches(self, text: str) -> bool:
        self.text = text
        self.memo: dict[tuple[str, int], frozenset[int]] = {}
        return len(text) in self.ends(("ref", "root"), 0)

    def ends(self, node: Node, pos: int) -> frozenset[int]:
        kind = node[0]
        if kind == "lit":
            return frozenset([pos + len(node[1])]) if self.text.startswith(node[1], pos) else _NONE
        if kind == "cls":
            if pos >= len(self.text):
                return _NONE
            code = ord(self.text[pos])
            inside = any(a <= code <= b for a, b in node[2])
            return frozenset([pos + 1]) if inside != node[1] else _NONE
        if kind == "ref":
            key = (node[1], pos)
            if key not in self.memo:
                self.memo[key] = _NONE  # a left-recursive call would see this; none is emitted
                self.memo[key] = self.ends(self.rules[node[1]], pos)
            return self.memo[key]
        if kind == "alt":
            return frozenset().union(*(self.ends(option, pos) for option in node[1]))
        if kind == "seq":
            here = frozenset([pos])
            for item in node[1]:
                here = frozenset().union(*(self.ends(item, p) for p in here))
            return here
        _, item, low, high = node
        found = frozenset([pos]) if low == 0 else _NONE
        here, count = frozenset([pos]), 0
        while here and (high is None or count < high):
            here = frozenset().union(*(self.ends(item, p) for p in here))
            count += 1
            if count >= low:
                if high is None:
                    here -= found
                found |= here
        return found


_NONE: frozenset[int] = frozenset()


def compact(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def grammar_for(schema: dict[str, Any]) -> Grammar:
    return Grammar(schema_to_gbnf(schema))


PERSON: dict[str, Any] = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "maxLength": 5},
        "age": {"type": "integer"},
        "tags": {"type": "array", "items": {"type": "string"}},
    },
    "required": ["name"],
    "additionalProperties": False,
}
TREE = {
    "$defs": {
        "node": {
            "type": "object",
            "properties": {
                "value": {"type": "integer"},
                "children": {"type": "array", "items": {"$ref": "#/$defs/node"}},
            },
            "required": ["value"],
            "additionalProperties": False,
        }
    },
    "$ref": "#/$defs/node",
}
ODD_STRINGS = ['say "hi"', "back\\slash", "new\nline", "ünï", "tab\there"]

# (schema, values whose compact JSON must match, JSON texts that must not)
CASES: list[tuple[dict[str, Any], list[Any], list[str]]] = [
    (
        PERSON,
        [{"name": "Al"}, {"name": "Al", "age": 3}, {"name": "", "age": -7, "tags": ["x", ""]}],
        ["{}", '{"age":3,"name":"Al"}', '{"name":"Al","x":1}', '{"name":"toolong"}',
         '{"name":"Al","age":1.5}', '{"name":"Al",}', '{"name":"Al"',
         '{"name":"Al","age":3,"age":3}'],
    ),
    (
        {"properties": {"a": {"type": "integer"}, "ab": {"type": "string"}}},
        [{}, {"a": 1}, {"ab": "x"}, {"a": 1, "ab": "x"}, {"a": 1, "zz": [1]}, {"abc": None},
         {"": 0}, {"b": 1, "c": {}}],
        ['{"a":"x"}', '{"ab":"x","a":1}', '{"ab":1}', '{"a":1,"a":2}', "[]"],
    ),
    (
        {"properties": {"x": {"type": "null"}}, "additionalProperties": {"type": "boolean"}},
        [{}, {"x": None}, {"y": True}, {"x": None, "y": False, "z": True}],
        ['{"y":1}', '{"x":true}', '{"y":true,"x":null}'],
    ),
    (
        {"enum": [*ODD_STRINGS, 3, None, [1, "a"], {"k": "v"}]},
        [*ODD_STRINGS, 3, None, [1, "a"], {"k": "v"}],
        ['"say hi"', '"back\\\\\\\\slash"', '"say \\\\"hi\\\\""', "4", '"new\nline"', '["a",1]'],
    ),
    (
        {"type": "array", "minItems": 1,
         "items": {"type": "array", "items": {"type": "integer"}, "maxItems": 2}},
        [[[]], [[1, 2], [3]], [[], [], [0]]],
        ["[]", "[[1,2,3]]", "[[1.5]]", "[1]", "[[],]"],
    ),
    (
        TREE,
        [{"value": 1}, {"value": 1, "children": [{"value": 2, "children": []}, {"value": 3}]},
         {"value": 1, "children": [{"value": 2, "children": [{"value": 4}]}]}],
        ['{"value":1,"children":[{"children":[]}]}', '{"value":1,"children":[1]}'],
    ),
    (
        {"anyOf": [{"type": "string", "maxLength": 2}, {"type": "integer"}, {"type": "null"}]},
        ["ab", "", 5, None],
        ['"abc"', "1.5", "true", "{}"],
    ),
    (
        {"type": "object", "required": ["kind"],
         "oneOf": [{"properties": {"kind": {"const": "a"}, "n": {"type": "integer"}}},
                   {"properties": {"kind": {"const": "b"}, "s": {"type": "string"}}}]},
        [{"kind": "a"}, {"kind": "a", "n": 1}, {"kind": "b", "s": "x"}],
        ['{"kind":"c"}', '{"kind":"a","n":"x"}', '{"kind":"b","s":1}', "{}"],
    ),
    (
        {"type": "string", "pattern": r"^[A-Z][a-z]{1,3}-\d{2}$"},
        ["Abc-12", "Ab-00"],
        ['"abc-12"', '"Abcde-12"', '"Abc-1"', "Abc-12"],
    ),
    (
        {"type": "string", "pattern": r'a"b\\c'},
        ['a"b\\c'],
        ['"a"b\\c"', '"a\\"b\\c"', '"a"b\\\\c"'],
    ),
    (
        {"type": "string", "pattern": r"x.y"},
        ["x-y", 'x"y', "x\\y", "x\ty", "xéy"],
        ['"x\ny"', '"x\\ny"', '"xy"', '"x\\u0001y"'],
    ),
    (
        {"type": "string", "pattern": r"[\^\-a\t\"]+"},
        ["^-a", "\t", '"a'],
        ['"b"', '""'],
    ),
    (
        {"type": "array", "items": {"type": "boolean"}, "minItems": 2, "maxItems": 3},
        [[True, False], [True, True, True]],
        ["[true]", "[true,true,true,true]", "[]"],
    ),
    (
        {"type": "string", "minLength": 2, "maxLength": 4},
        ["ab", "abcd", "a\nb", "ünï"],
        ['"a"', '"abcde"', '""'],
    ),
    (
        {"type": "array", "prefixItems": [{"type": "integer"}, {"type": "string"}], "items": False},
        [[], [1], [1, "a"]],
        ['[1,"a",2]', '["a"]', '[1,2]'],
    ),
    (
        {"type": "array", "prefixItems": [{"type": "integer"}], "items": {"type": "null"},
         "minItems": 2, "maxItems": 3},
        [[1, None], [1, None, None]],
        ["[1]", "[1,null,null,null]", "[null,null]"],
    ),
    ({"type": ["integer", "null"]}, [1, -20, None], ['"1"', "1.0", "true"]),
    ({"const": {"a": [1, 2]}}, [{"a": [1, 2]}], ['{"a":[1]}', "{}"]),
    (
        {"allOf": [{"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]},
                   {"properties": {"b": {"type": "string"}}, "required": ["b"]}],
         "additionalProperties": False},
        [{"a": 1, "b": "x"}],
        ['{"a":1}', '{"a":1,"b":"x","c":1}', '{"b":"x","a":1}'],
    ),
    (
        {"type": "integer", "minimum": 10**17},
        [10**17, 10**17 + 5, 0],
        ["-1", "1.5", "1" + "0" * 40],
    ),
    (
        {"type": "number"},
        [1.5, -0.25e-3, 0, 12, 1e-7, 123456789012345.67, 0.30000000000000004],
        ["01", "1.", ".5", '"1"', "--1", "1e", "1" * 17, "NaN"],
    ),
    (
        {"properties": {'we"ird\\key\n': {"type": "integer"}, "ü": {"type": "boolean"}},
         "required": ['we"ird\\key\n', "ü"], "additionalProperties": False},
        [{'we"ird\\key\n': 1, "ü": True}],
        ['{"we"ird":1}', '{"ü":true}'],
    ),
    (
        {"definitions": {"a/b": {"type": "boolean"}}, "type": "array",
         "items": {"$ref": "#/definitions/a~1b"}},
        [[], [True, False]],
        ["[1]"],
    ),
    (
        {"type": "string", "format": "date-time", "not": {"const": "x"}},
        ["x", "2024-01-01T00:00:00Z"],
        ["1"],
    ),
    (
        {"type": "array", "uniqueItems": True, "items": {"type": "integer", "multipleOf": 2}},
        [[1, 1], []],
        ['["a"]'],
    ),
    (
        {"type": "object", "properties": {"a": False}},
        [{}, {"b": 1}],
        ['{"a":1}'],
    ),
]  # fmt: skip


@pytest.mark.parametrize(("schema", "good", "bad"), CASES)
def test_grammar_language(schema: dict[str, Any], good: list[Any], bad: list[str]) -> None:
    grammar = grammar_for(schema)
    for value in good:
        assert grammar.matches(compact(value)), compact(value)
    for text in bad:
        assert not grammar.matches(text), text


def test_whitespace_is_allowed_but_bounded() -> None:
    grammar = grammar_for(PERSON)
    value = {"name": "Al", "age": 3, "tags": ["a", "b"]}
    assert grammar.matches(json.dumps(value, indent=2))
    assert grammar.matches(json.dumps(value))
    assert not grammar.matches('{"name":' + " " * 40 + '"Al"}')
    assert not grammar.matches(' {"name":"Al"}')
    objects = Grammar(JSON_OBJECT_GBNF)
    assert objects.matches('{ "a" : [ 1 ,\n  2 ] }')
    assert not objects.matches("{" + "\n" * 3 + "}")


JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(10**15), 10**15)
    | st.floats(-1e15, 1e15).filter(lambda x: x == 0 or abs(x) > 1e-90)
    | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=10,
)
ANY = Grammar(schema_to_gbnf({}))
OBJECT = Grammar(JSON_OBJECT_GBNF)


@settings(max_examples=150, deadline=None)
@given(JSON_VALUES, st.sampled_from([None, 1]), st.booleans())
def test_any_json_value_matches(value: Any, indent: int | None, ascii_only: bool) -> None:
    text = json.dumps(value, indent=indent, ensure_ascii=ascii_only)
    assert ANY.matches(text)
    assert OBJECT.matches(text) == isinstance(value, dict)


PERSON_GRAMMAR = grammar_for(PERSON)
PERSON_LIKE = st.dictionaries(
    st.sampled_from(["name", "age", "tags", "x"]),
    st.one_of(st.text(max_size=7), st.integers(-5, 5), st.lists(st.text(max_size=2), max_size=2)),
    max_size=4,
)


@settings(max_examples=200, deadline=None)
@given(PERSON_LIKE)
def test_grammar_agrees_with_the_schema(value: dict[str, Any]) -> None:
    # The grammar is exact for PERSON, up to property order (it asks for the given one).
    in_order = list(value) == [key for key in PERSON["properties"] if key in value]
    valid = jsonschema.Draft202012Validator(PERSON).is_valid(value)
    assert PERSON_GRAMMAR.matches(compact(value)) == (valid and in_order)


@pytest.mark.parametrize(
    ("schema", "why"),
    [
        ({"type": "object", "patternProperties": {"^a": {}}}, "'patternProperties'"),
        ({"if": {"type": "string"}, "then": {"maxLength": 2}}, "'if'"),
        ({"dependentRequired": {"a": ["b"]}}, "'dependentRequired'"),
        ({"$ref": "https://example.com/schema.json"}, "only local"),
        ({"$ref": "#/$defs/missing"}, "points to nothing"),
        ({"allOf": [{"type": "string"}, {"type": "integer"}]}, "no value has"),
        ({"allOf": [{"enum": [1]}, {"enum": [2]}]}, "two different 'enum'"),
        ({"type": "string", "pattern": r"(a)\1"}, "back-references"),
        ({"type": "string", "pattern": "("}, "not a valid regex"),
        ({"$defs": {"a": {"anyOf": [{"$ref": "#/$defs/a"}, {"type": "null"}]}},
          "$ref": "#/$defs/a"}, "refers to itself"),
        ({"anyOf": [{"$ref": "#"}, {"type": "null"}]}, "refers to itself"),
        ({"properties": {"a": False}, "required": ["a"]}, "forbidden"),
        ({"required": ["a"], "additionalProperties": False}, "not allowed"),
        ({"type": "frog"}, "not a JSON type"),
        ({"type": "string", "minLength": 5, "maxLength": 2}, "greater than"),
        ({"type": "array", "items": False, "minItems": 1}, "more items"),
        ({"anyOf": []}, "empty"),
        ({"properties": {f"p{i}": {"type": "string"} for i in range(3000)}}, "too large"),
        ({"properties": {f"p{i}": {"type": "string", "maxLength": 200} for i in range(100)}},
         "too large"),
        ({"type": "string", "pattern": "a{5000}b{5000}c{9000}"}, "too large"),
        (json.loads('{"items":' * 100 + "{}" + "}" * 100), "nested"),
    ],
)  # fmt: skip
def test_refusals(schema: dict[str, Any], why: str) -> None:
    with pytest.raises(InvalidRequestError) as caught:
        schema_to_gbnf(schema, param="response_format")
    assert why in caught.value.message, caught.value.message
    assert caught.value.param == "response_format" and caught.value.status == 400


def test_recursion_and_bounds_stay_small() -> None:
    grammar = schema_to_gbnf({"type": "string", "maxLength": 10**9, "minLength": 10**6})
    assert "char{256,}" in grammar
    assert len(schema_to_gbnf(TREE).splitlines()) < 10
    assert "root ::= object\n" in JSON_OBJECT_GBNF


MODEL_SCHEMAS: list[dict[str, Any] | None] = [
    None,  # JSON_OBJECT_GBNF
    PERSON,
    TREE,
    {"enum": [*ODD_STRINGS, 3, None]},
    {"type": "string", "pattern": r"^[A-Z][a-z]{1,3}-\d{2}$"},
    {"type": "array", "items": {"type": "integer"}, "minItems": 1, "maxItems": 3},
    {"type": "object", "properties": {"n": {"type": "number"}, "ok": {"type": "boolean"}},
     "required": ["ok"]},
]  # fmt: skip


@pytest.mark.model
def test_the_engine_parses_and_keeps_the_grammars() -> None:
    xlc = pytest.importorskip("xllamacpp")
    from chatgate.engine.model_file import default_model_path

    params = xlc.CommonParams()
    params.model.path = str(default_model_path())
    params.n_ctx = 512
    params.n_parallel = 1
    params.cpuparams.n_threads = 1
    params.cpuparams_batch.n_threads = 1
    server = xlc.Server(params)
    validated = 0
    for schema in MODEL_SCHEMAS:
        grammar = JSON_OBJECT_GBNF if schema is None else schema_to_gbnf(schema)
        result = server.handle_completions(
            {"prompt": "JSON:", "n_predict": 40, "grammar": grammar, "seed": 1, "temperature": 0}
        )
        assert "error" not in result, (result, grammar)
        choice = result["choices"][0]
        if choice.get("finish_reason") == "length" or result.get("stop_type") == "limit":
            continue  # cut short by n_predict: not a whole value yet
        value = json.loads(choice["text"])
        if schema is None:
            assert isinstance(value, dict)
        else:
            jsonschema.validate(value, schema)
        validated += 1
    assert validated >= 2  # the short schemas finish well within n_predict
