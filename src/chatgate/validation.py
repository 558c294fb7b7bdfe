"""Parse a request body into a `ChatRequest`, or explain exactly what is wrong with it.

Every body, on either door, is loaded by `load_body` and checked by `check_values`
before validation: anywhere in it (typed fields, extra fields, schemas, extra params)

- an integer must fit a signed 64-bit integer (``-2**63 .. 2**63 - 1``): upstreams parse
  them as such, and orjson cannot encode a larger one when the request is sent;
- a number must be finite (no ``NaN``, ``Infinity`` or an overflowing ``1e400``), which
  JSON cannot carry;
- arrays and objects nest at most `MAX_DEPTH` deep, the body itself being level 1.

A value that breaks one is a 400 naming its path (``messages[0].content``).
"""

from __future__ import annotations

import json
import math
from typing import Any, NoReturn

import pydantic_core
from pydantic import ValidationError
from pydantic_core import ErrorDetails

from chatgate.errors import InvalidRequestError
from chatgate.types import ChatRequest

MAX_DEPTH = 64
INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1
_CONTAINERS = (dict, list, tuple)

_TYPE_NAMES = {
    "int_type": "an integer",
    "float_type": "a number",
    "string_type": "a string",
    "bool_type": "a boolean",
    "list_type": "an array",
    "dict_type": "an object",
    "model_type": "an object",
    "model_attributes_type": "an object",
}


def param_path(loc: tuple[int | str, ...], body: Any) -> str | None:
    """``("messages", 0, "content")`` → ``"messages[0].content"``.

    Pydantic puts union-member labels and discriminator tags into a location; they are
    not part of the client's JSON. Walking the body along the location keeps exactly the
    parts that are.
    """
    out = ""
    node = body
    tag_seen = False  # a discriminated union names the object's "type" once, before its fields
    for part in loc:
        if isinstance(part, int) and isinstance(node, list) and 0 <= part < len(node):
            out += f"[{part}]"
            node = node[part]
            tag_seen = False
        elif isinstance(node, dict) and not tag_seen and node.get("type") == part:
            tag_seen = True
        elif isinstance(part, str) and isinstance(node, dict) and part in node:
            out += f".{part}" if out else part
            node = node[part]
            tag_seen = False
        elif isinstance(part, str) and not isinstance(node, dict | list) and _is_label(part):
            continue
        elif isinstance(part, str) and isinstance(node, dict) and not _is_label(part):
            # A missing field: the last part of the path, absent from the body.
            out += f".{part}" if out else part
            node = None
    return out or None


def _is_label(part: str) -> bool:
    """Union-member labels such as ``str``, ``list[...]`` or ``TextPart``."""
    return (
        part in ("str", "int", "float", "bool", "none")
        or part.startswith(("list[", "function-", "literal[", "dict[", "tagged-union["))
        or part[:1].isupper()
    )


def describe(error: ErrorDetails, body: Any) -> InvalidRequestError:
    """One pydantic error as the OpenAI-style 400 a client would get."""
    param = param_path(tuple(error["loc"]), body)
    kind = error["type"]
    name = f"'{param}'" if param else "the request"
    if kind == "missing":
        return InvalidRequestError(
            f"missing required parameter: {name}", param=param, code="missing_required_parameter"
        )
    if kind in _TYPE_NAMES:
        got = type(error.get("input")).__name__
        got = {
            "NoneType": "null",
            "str": "a string",
            "int": "an integer",
            "dict": "an object",
            "list": "an array",
            "bool": "a boolean",
            "float": "a number",
        }.get(got, got)
        return InvalidRequestError(
            f"invalid type for {name}: expected {_TYPE_NAMES[kind]}, but got {got}",
            param=param,
            code="invalid_type",
        )
    if kind == "json_invalid":
        return InvalidRequestError(
            f"the body is not valid JSON: {error['msg']}", code="invalid_json"
        )
    if kind == "extra_forbidden":
        return InvalidRequestError(
            f"unrecognized parameter: {name}", param=param, code="unknown_parameter"
        )
    message = error["msg"].removeprefix("Value error, ")
    return InvalidRequestError(
        f"invalid value for {name}: {message}", param=param, code="invalid_value"
    )


class BodyValueError(InvalidRequestError):
    """A value that no upstream can take, with its location for the v4 door's list."""

    def __init__(self, message: str, loc: tuple[str | int, ...], *, code: str) -> None:
        super().__init__(message, param=_render(loc) or None, code=code)
        self.loc = loc


def load_body(raw: bytes) -> Any:
    """The JSON *raw* as Python values, checked by `check_values`.

    Parsed with jiter rather than orjson: it keeps an integer of any size an integer and
    reads ``NaN``/``Infinity``, so the check can name them where orjson would quietly
    make a float of the one and refuse the other as bad JSON.
    """
    try:
        tree = pydantic_core.from_json(raw)
    except ValueError as exc:
        raise _unparsable(raw, str(exc)) from None
    check_values(tree)
    return tree


def check_values(tree: Any) -> None:
    """Refuse what `load_body`'s rules forbid, naming the first offender's path."""
    # Level by level, paths untracked: this runs on every request. The rare offender is
    # then found again by `_locate`, which does keep the path.
    level = [tree] if isinstance(tree, _CONTAINERS) else []
    depth = 1
    while level:
        if depth > MAX_DEPTH:
            _raise(tree)
        below = []
        for node in level:
            for value in node.values() if isinstance(node, dict) else node:
                kind = type(value)
                if kind is str:
                    continue
                if kind is dict or kind is list or kind is tuple:
                    below.append(value)
                elif (kind is int and not INT64_MIN <= value <= INT64_MAX) or (
                    kind is float and not math.isfinite(value)
                ):
                    _raise(tree)
        level = below
        depth += 1


def _raise(tree: Any) -> NoReturn:
    found = _locate(tree, ())
    if found is None:  # unreachable while the two walks agree; say so rather than pass
        raise InvalidRequestError("the body holds a value no upstream can take")
    loc, value = found
    raise _offence(loc, value)


def _locate(node: Any, loc: tuple[str | int, ...]) -> tuple[tuple[str | int, ...], Any] | None:
    """The first offending value in document order, and its location."""
    if isinstance(node, _CONTAINERS):
        if len(loc) >= MAX_DEPTH:
            return loc, node
        items = node.items() if isinstance(node, dict) else enumerate(node)
        for key, value in items:
            found = _locate(value, (*loc, key))
            if found is not None:
                return found
        return None
    if type(node) is int and not INT64_MIN <= node <= INT64_MAX:
        return loc, node
    if type(node) is float and not math.isfinite(node):
        return loc, node
    return None


def _offence(loc: tuple[str | int, ...], value: Any) -> BodyValueError:
    where = f"'{_render(loc)}'" if loc else "the body"
    if isinstance(value, _CONTAINERS):
        return BodyValueError(
            f"{where} is nested too deep: arrays and objects may nest at most {MAX_DEPTH} "
            "levels (the body is level 1)",
            loc,
            code="nested_too_deep",
        )
    if isinstance(value, float):
        return BodyValueError(
            f"invalid value for {where}: {value} is not a finite number (JSON has no "
            "NaN or Infinity, and the number must fit a 64-bit float)",
            loc,
            code="invalid_value",
        )
    # The value is not echoed: it may have thousands of digits.
    sign = "below" if value < 0 else "above"
    return BodyValueError(
        f"invalid value for {where}: the integer is {sign} the signed 64-bit range "
        f"({INT64_MIN} to {INT64_MAX})",
        loc,
        code="invalid_value",
    )


def _unparsable(raw: bytes, reason: str) -> InvalidRequestError:
    """Why jiter refused *raw*; its own limits are this module's rules, so named as such."""
    if "recursion limit exceeded" not in reason and "number out of range" not in reason:
        return InvalidRequestError(f"the body is not valid JSON: {reason}", code="invalid_json")
    # jiter stops at about 200 levels and 4300 digits. The standard parser, slower but
    # only ever run here, reads past both far enough to point at the place.
    try:
        tree = json.loads(raw, parse_int=_bounded_int)
    except (ValueError, RecursionError):
        tree = None
    found = _locate(tree, ()) if tree is not None else None
    if found is not None:
        return _offence(*found)
    if "recursion" in reason:
        return _offence((), [])
    return BodyValueError(
        "invalid value for the body: a number in it is out of range", (), code="invalid_value"
    )


def _bounded_int(digits: str) -> int:
    # Not int(): Python refuses to convert more than 4300 digits. Any stand-in outside
    # the range is as good for locating it.
    if len(digits.lstrip("-")) > 19:
        return INT64_MIN - 1 if digits.startswith("-") else INT64_MAX + 1
    return int(digits)


def _render(loc: tuple[str | int, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def parse_chat_request(body: bytes | dict[str, Any]) -> ChatRequest:
    """Validate a JSON body (bytes) or a mapping into a `ChatRequest`."""
    if isinstance(body, dict):
        check_values(body)
        tree: Any = body
    else:
        tree = load_body(body)
    try:
        return ChatRequest.model_validate(tree)
    except ValidationError as exc:
        errors = exc.errors(include_url=False)
        if errors and errors[0]["type"] == "model_type":
            raise InvalidRequestError(
                "the body must be a JSON object", code="invalid_json"
            ) from None
        # Within a union, the deepest error is the one about the branch the client meant.
        raise describe(max(errors, key=lambda e: len(e["loc"])), tree) from None
