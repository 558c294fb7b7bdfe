"""JSON Schema as a llama.cpp grammar (GBNF), so a model can only write that shape.

The engine's own ``json_schema`` conversion can freeze its main loop on some schemas, so
every JSON constraint goes to it as a plain ``grammar`` built here. The grammar enforces
structure: types, ``enum``/``const``, properties in their given order (optional ones may
be left out), ``additionalProperties``, ``items``/``prefixItems``, length and count
bounds up to `MAX_REPEAT`, string ``pattern`` (as a full match, which implies JSON
Schema's search match), ``anyOf``/``oneOf``, simple ``allOf`` and local ``$ref``.
What it leaves out — numeric bounds, ``format``, ``not``, ``uniqueItems``, larger length
bounds, ``oneOf`` exclusivity — the finished output is validated against afterwards.
Keywords it could neither enforce nor safely leave to that check are refused with a 400,
as are schemas whose grammar would be too big for the engine.
"""

from __future__ import annotations

import math
from functools import lru_cache
from typing import Any
from urllib.parse import unquote

import orjson

from chatgate.errors import InvalidRequestError
from chatgate.gbnf.pieces import (
    RuleSet,
    alt,
    assemble,
    dump,
    json_string_body,
    lit,
    other_key,
    seq,
)
from chatgate.gbnf.regex import regex_to_gbnf

# Bounds above this are only checked afterwards: llama.cpp expands x{m,n} into ~n rules.
MAX_REPEAT = 256
MAX_DEPTH = 64
DIGITS = 16  # integral digits of a number; more only when a bound in the schema needs them
MAX_DIGITS = 64

_INFER = {
    "object": {"properties", "required", "additionalProperties"},
    "array": {"items", "prefixItems", "minItems", "maxItems", "additionalItems"},
    "string": {"pattern", "minLength", "maxLength"},
}
_REFUSED = {
    "if", "patternProperties", "dependentRequired", "dependentSchemas", "dependencies",
    "unevaluatedProperties", "unevaluatedItems", "contains", "$dynamicRef", "$recursiveRef",
}  # fmt: skip
# Keywords the grammar does not need: annotations, and what the check afterwards covers.
_PASSIVE = {
    "title", "description", "default", "examples", "$comment", "$schema", "$id", "$anchor",
    "$defs", "definitions", "deprecated", "readOnly", "writeOnly", "format", "contentMediaType",
    "contentEncoding", "contentSchema", "minimum", "maximum", "exclusiveMinimum",
    "exclusiveMaximum", "multipleOf", "not", "uniqueItems", "minProperties", "maxProperties",
    "propertyNames", "then", "else", "minContains", "maxContains",
}  # fmt: skip
_LOWER = {"minLength", "minItems"}
_UPPER = {"maxLength", "maxItems"}


def schema_to_gbnf(schema: dict[str, Any], *, param: str | None = None) -> str:
    """A GBNF grammar whose root matches JSON text of *schema* (400 if it cannot be built)."""
    return _Converter(schema, param).grammar()


JSON_OBJECT_GBNF: str = assemble({"root": "object"})


def json_gbnf(schema: dict[str, Any] | None, *, param: str | None = None) -> str:
    """The grammar of JSON text of *schema* (None: any JSON object), made once per
    schema: the same few schemas come back on request after request."""
    if schema is None:
        return JSON_OBJECT_GBNF
    return _cached(orjson.dumps(schema, option=orjson.OPT_SORT_KEYS).decode(), param)


@lru_cache(maxsize=128)
def _cached(schema_json: str, param: str | None) -> str:
    return schema_to_gbnf(orjson.loads(schema_json), param=param)


class _Converter(RuleSet):
    def __init__(self, schema: Any, param: str | None) -> None:
        super().__init__(param)
        self.schema = schema
        self.refs: dict[str, str] = {"#": "root"}
        # The nesting (objects/arrays entered) at which each $ref being converted began:
        # a reference back to it at the same nesting would be left recursion.
        self.open: dict[str, int] = {"#": 0}
        self.nesting = self.depth = 0

    def grammar(self) -> str:
        self.rules["root"] = self.expr(self.schema)
        return self.text()

    def enter(self) -> None:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise self.error(f"nested (or referred to in a cycle) more than {MAX_DEPTH} deep")

    def expr(self, schema: Any) -> str:
        if schema is True or schema == {}:
            return "value"
        if not isinstance(schema, dict):
            raise self.error("a schema that nothing matches (false) cannot be generated")
        self.enter()
        try:
            out = self.dispatch(schema)
        finally:
            self.depth -= 1
        self.spend(len(out), 0)
        return out

    def dispatch(self, schema: dict[str, Any]) -> str:
        refused = sorted(_REFUSED & schema.keys())
        if refused:
            raise self.refuse(f"'{refused[0]}'")
        if "$ref" in schema:
            rest = _without(schema, "$ref")
            if not rest.keys() - _PASSIVE:
                return self.ref(schema["$ref"])
            return self.expr(self.merge([{"$ref": schema["$ref"]}, rest]))
        if "allOf" in schema:
            return self.expr(self.merge([*_list(schema["allOf"]), _without(schema, "allOf")]))
        for key in ("anyOf", "oneOf"):
            if key in schema:
                rest = _without(schema, key)
                plain = not rest.keys() - _PASSIVE
                branches = _list(schema[key])
                if not branches:
                    raise self.error(f"'{key}' is empty")
                return alt([self.expr(b if plain else self.merge([rest, b])) for b in branches])
        if "const" in schema or "enum" in schema:
            values = [schema["const"]] if "const" in schema else _list(schema["enum"])
            if not values:
                raise self.error("'enum' is empty")
            return alt([lit(dump(value)) for value in values])
        declared = schema.get("type")
        types = [t for t, keys in _INFER.items() if keys & schema.keys()]
        if declared is None and not types:
            return "value"
        types = types if declared is None else _list(declared)
        if not types:
            raise self.error("'type' is empty")
        if "number" in types:
            types = [t for t in types if t != "integer"]
        return alt([self.typed(t, schema) for t in dict.fromkeys(types)])

    def typed(self, kind: Any, schema: dict[str, Any]) -> str:
        if kind in ("null", "boolean"):
            return '"null"' if kind == "null" else '( "true" | "false" )'
        if kind in ("integer", "number"):
            return self.number(schema, kind == "integer")
        build = {"string": self.string, "array": self.array, "object": self.object}.get(kind)
        if build is None:
            raise self.error(f"type {kind!r} is not a JSON type")
        return build(schema)

    def resolve(self, ref: Any) -> Any:
        if not isinstance(ref, str) or not ref.startswith("#") or ref[1:2] not in ("", "/"):
            raise self.refuse(f"the $ref {ref!r} (only local ones like '#/$defs/name')")
        node = self.schema
        for part in ref[2:].split("/") if len(ref) > 1 else []:
            key = unquote(part).replace("~1", "/").replace("~0", "~")
            if isinstance(node, dict) and key in node:
                node = node[key]
            elif isinstance(node, list) and key.isdigit() and int(key) < len(node):
                node = node[int(key)]
            else:
                raise self.error(f"the $ref {ref!r} points to nothing")
        return node

    def ref(self, ref: Any) -> str:
        if not isinstance(ref, str):
            raise self.error("'$ref' must be a string")
        if ref in self.open:
            if self.open[ref] == self.nesting:
                raise self.refuse(f"the $ref {ref!r}, which refers to itself without nesting,")
            return self.refs[ref]
        if ref in self.refs:
            return self.refs[ref]
        target = self.resolve(ref)
        name = self.refs[ref] = self.fresh("ref-" + ref.rsplit("/", 1)[-1])
        self.rules[name] = ""
        self.open[ref] = self.nesting
        try:
            self.rules[name] = self.expr(target)
        finally:
            del self.open[ref]
        return name

    def merge(self, schemas: list[Any]) -> dict[str, Any]:
        """The conjunction of *schemas* as one schema, when it is a simple union of keys."""
        self.enter()
        try:
            out: dict[str, Any] = {}
            for schema in schemas:
                if schema is True:
                    continue
                if not isinstance(schema, dict):
                    raise self.error("'allOf' includes a schema that nothing matches")
                if "$ref" in schema:
                    schema = self.merge([self.resolve(schema["$ref"]), _without(schema, "$ref")])
                for key, value in schema.items():
                    out[key] = self.merge_key(key, out[key], value) if key in out else value
            return out
        finally:
            self.depth -= 1

    def merge_key(self, key: str, a: Any, b: Any) -> Any:
        if a == b or key in _PASSIVE:
            return a
        if key == "type":
            both = [t for t in _list(a) if t in _list(b)]
            if not both:
                raise self.error("'allOf' asks for types that no value has at once")
            return both
        if key == "required" and isinstance(a, list) and isinstance(b, list):
            return a + [name for name in b if name not in a]
        if key == "properties" and isinstance(a, dict) and isinstance(b, dict):
            union = {**a, **b}
            return {k: {"allOf": [a[k], b[k]]} if k in a and k in b else union[k] for k in union}
        if key in _LOWER | _UPPER and isinstance(a, int) and isinstance(b, int):
            return max(a, b) if key in _LOWER else min(a, b)
        if key == "allOf" and isinstance(a, list) and isinstance(b, list):
            return a + b
        if key in ("additionalProperties", "items"):
            if a is False or b is False:
                return False
            return b if a is True else a if b is True else {"allOf": [a, b]}
        raise self.refuse(f"'allOf' with two different '{key}'")

    def bounds(self, schema: dict[str, Any], low_key: str, high_key: str) -> tuple[int, int | None]:
        low, high = _count(schema.get(low_key)) or 0, _count(schema.get(high_key))
        if high is not None and low > high:
            raise self.error(f"'{low_key}' is greater than '{high_key}'")
        return min(low, MAX_REPEAT), high if high is not None and high <= MAX_REPEAT else None

    def number(self, schema: dict[str, Any], integral: bool) -> str:
        digits, signed = DIGITS, True
        for key in ("minimum", "exclusiveMinimum", "maximum", "exclusiveMaximum"):
            bound = schema.get(key)
            if not isinstance(bound, int | float) or isinstance(bound, bool):
                continue
            if math.isfinite(bound):  # room for the bound's digits, so it can be reached
                digits = max(digits, len(str(int(abs(bound)))) + 1)
            if key.endswith("inimum") and bound >= 0:
                signed = False
        digits = min(digits, MAX_DIGITS)
        if digits == DIGITS and signed:
            return "integer" if integral else "number"
        sign = '"-"? ' if signed else ""
        body = f'{sign}( "0" | [1-9] [0-9]{{0,{digits - 1}}} )'
        return self.rule(
            "integer" if integral else "number", seq(body, "" if integral else "fraction")
        )

    def string(self, schema: dict[str, Any]) -> str:
        if "pattern" in schema:
            return f'( "\\"" {self.pattern(schema["pattern"])} "\\"" )'
        low, high = self.bounds(schema, "minLength", "maxLength")
        if (low, high) == (0, None):
            return "string"
        return seq('( "\\""', self.repeat("char", low, high), '"\\"" )')

    def pattern(self, pattern: Any) -> str:
        """The JSON string contents (without quotes) whose decoded text fully matches."""
        if not isinstance(pattern, str):
            raise self.error("'pattern' must be a string")
        try:
            expr = regex_to_gbnf(pattern).removeprefix("root ::= ").rstrip("\n")
        except InvalidRequestError as exc:
            detail = exc.message.replace("guided_regex", "it")
            raise self.error(f"the pattern {pattern!r} cannot be used: {detail}") from None
        body, repeats = json_string_body(expr)
        self.spend(0, repeats)
        return body

    def array(self, schema: dict[str, Any]) -> str:
        prefix, items = _list(schema.get("prefixItems", [])), schema.get("items", True)
        if isinstance(items, list):  # the tuple form of drafts before 2020-12
            prefix, items = items, schema.get("additionalItems", True)
        low, high = self.bounds(schema, "minItems", "maxItems")
        if prefix == [] and items is True and (low, high) == (0, None):
            return "array"
        self.nesting += 1
        try:
            elems = [self.expr(p) for p in prefix[:high]]
            item = None if items is False or high == len(elems) else self.expr(items)
        finally:
            self.nesting -= 1
        if item is None and low > len(elems):
            raise self.error("'minItems' asks for more items than the schema allows")
        if item is None and not elems:
            return '( "[" ws "]" )'
        known = len(elems) or 1  # the items before the repeated tail: the prefix, or one
        elems = elems or [str(item)]
        rest = (
            ""
            if item is None
            else self.repeat(
                f'( "," ws {item} ws )', max(low - known, 0), None if high is None else high - known
            )
        )
        for i in reversed(range(1, len(elems))):  # item i is there only if all before it are
            inner = seq('"," ws', elems[i], "ws", rest)
            rest = f"( {inner} )" if i < low else f"( {inner} )?"
        body = seq(elems[0], "ws", rest)
        return f'( "[" ws {body} "]" )' if low else f'( "[" ws ( {body} )? "]" )'

    def object(self, schema: dict[str, Any]) -> str:
        props = schema.get("properties", {})
        required = [name for name in _list(schema.get("required", [])) if isinstance(name, str)]
        extra = schema.get("additionalProperties", True)
        if not props and not required and extra is True:
            return "object"
        if not isinstance(props, dict):
            raise self.error("'properties' must be an object")
        self.nesting += 1
        try:
            members = []
            for name, sub in props.items():
                if sub is not False:
                    members.append((self.member(name, sub), name in required))
                elif name in required:
                    raise self.error(f"the required property {name!r} is forbidden")
            for name in required:
                if name not in props:
                    if extra is False:
                        raise self.error(f"the required property {name!r} is not allowed")
                    members.append((self.member(name, extra), True))
            names = [*props, *required]
            other = None if extra is False else self.member(names, extra)
        finally:
            self.nesting -= 1
        return seq('( "{" ws', self.members(members, other), '"}" )')

    def member(self, name: str | list[str], schema: Any) -> str:
        """A key and its value; a list of names means any other key."""
        key = lit(dump(name)) if isinstance(name, str) else other_key(name)
        value = self.expr(schema)
        return "member" if (key, value) == ("string", "value") else f'{key} ws ":" ws {value} ws'

    def members(self, members: list[tuple[str, bool]], other: str | None) -> str:
        """Members in order, a comma between any two, then any number of *other* ones."""
        tail = "" if other is None else self.rule("more", f'( "," ws {self.rule("kv", other)} )*')
        first = next((i for i, (_, required) in enumerate(members) if required), None)
        if first is not None:  # each optional member before the first required one owns a comma
            parts = [f'( {kv} "," ws )?' for kv, _ in members[:first]] + [members[first][0]]
            parts += [
                f'"," ws {kv}' if req else f'( "," ws {kv} )?' for kv, req in members[first + 1 :]
            ]
            return seq(*parts, tail)
        # All optional: the first present member has no comma; rules keep this linear.
        alts, after = [], tail
        for i, (kv, _) in reversed(list(enumerate(members))):
            name = self.rule("kv", kv)
            alts.append(seq(name, after))
            if i:
                after = self.rule("rest", seq(f'( "," ws {name} )?', after))
        if other is not None:
            alts.append(seq(self.rule("kv", other), tail))
        return f"( {' | '.join(reversed(alts))} )?" if alts else ""


def _without(schema: dict[str, Any], key: str) -> dict[str, Any]:
    return {k: v for k, v in schema.items() if k != key}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _count(value: Any) -> int | None:
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    ok = isinstance(value, int) and not isinstance(value, bool) and value >= 0
    return int(value) if ok else None
