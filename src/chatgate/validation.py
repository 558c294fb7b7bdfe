"""Parse a request body into a `ChatRequest`, or explain exactly what is wrong with it."""

from __future__ import annotations

from typing import Any

import orjson
from pydantic import ValidationError
from pydantic_core import ErrorDetails

from chatgate.errors import InvalidRequestError
from chatgate.types import ChatRequest

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


def parse_chat_request(body: bytes | dict[str, Any]) -> ChatRequest:
    """Validate a JSON body (bytes) or a mapping into a `ChatRequest`."""
    try:
        if isinstance(body, dict):
            return ChatRequest.model_validate(body)
        return ChatRequest.model_validate_json(body)
    except ValidationError as exc:
        errors = exc.errors(include_url=False)
        if errors and errors[0]["type"] == "model_type":
            raise InvalidRequestError(
                "the body must be a JSON object", code="invalid_json"
            ) from None
        tree: Any = body
        if not isinstance(body, dict):
            try:
                tree = orjson.loads(body)
            except orjson.JSONDecodeError:
                tree = None
        # Within a union, the deepest error is the one about the branch the client meant.
        raise describe(max(errors, key=lambda e: len(e["loc"])), tree) from None
