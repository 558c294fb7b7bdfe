"""JSON Schema → the OpenAPI subset Gemini takes in ``responseSchema`` and function
``parameters``.

Gemini refuses ``$ref``, ``$defs``, ``additionalProperties``, ``const`` and type lists.
References are inlined (recursion is cut at a fixed depth, where the schema becomes a
plain object); ``const`` becomes a one-value ``enum`` (enums are kept on strings only,
as Gemini's enums are strings); ``["string", "null"]`` becomes ``type: string`` with
``nullable: true``; every keyword Gemini does not know is left out rather than sent to
be refused.
"""

from __future__ import annotations

from typing import Any

from chatgate.errors import InvalidRequestError

KEPT = frozenset(
    {
        "type", "format", "title", "description", "nullable", "enum", "items", "minItems",
        "maxItems", "properties", "required", "minProperties", "maxProperties", "minimum",
        "maximum", "minLength", "maxLength", "pattern", "anyOf", "propertyOrdering",
        "default", "example",
    }
)  # fmt: skip
MAX_DEPTH = 8


def to_gemini(schema: dict[str, Any], param: str) -> dict[str, Any]:
    """*schema* as Gemini's schema dialect."""
    if not isinstance(schema, dict):
        raise InvalidRequestError("a schema must be a JSON object", param=param)
    defs = {**schema.get("definitions", {}), **schema.get("$defs", {})}
    return _convert(schema, defs, 0, param)


def _convert(node: Any, defs: dict[str, Any], depth: int, param: str) -> dict[str, Any]:
    if not isinstance(node, dict):
        return {}
    ref = node.get("$ref")
    if isinstance(ref, str):
        name = ref.rsplit("/", 1)[-1]
        if name not in defs:
            raise InvalidRequestError(f"the schema refers to an unknown '{ref}'", param=param)
        if depth >= MAX_DEPTH:
            return {"type": "object"}
        return _convert(defs[name], defs, depth + 1, param)
    out: dict[str, Any] = {}
    kind = node.get("type")
    if isinstance(kind, list):
        real = [k for k in kind if k != "null"]
        if len(real) == 1:
            out["type"] = real[0]
        elif real:
            out["anyOf"] = [{"type": k} for k in real]
        if "null" in kind:
            out["nullable"] = True
    elif isinstance(kind, str):
        out["type"] = kind
    if "const" in node:
        out["enum"] = [node["const"]]
    for key, value in node.items():
        if key not in KEPT or key in out:
            continue
        if key == "properties" and isinstance(value, dict):
            out[key] = {k: _convert(v, defs, depth + 1, param) for k, v in value.items()}
        elif key == "items":
            out[key] = _convert(value, defs, depth + 1, param)
        elif key == "anyOf" and isinstance(value, list):
            options = [_convert(v, defs, depth + 1, param) for v in value]
            nulls = [o for o in options if o.get("type") == "null"]
            out[key] = [o for o in options if o.get("type") != "null"]
            if nulls:
                out["nullable"] = True
        elif key == "enum" and isinstance(value, list):
            out[key] = list(value)
        else:
            out[key] = value
    if "enum" in out:
        if out.get("type", "string") != "string":
            del out["enum"]  # Gemini's enums are strings only; the type still holds
        else:
            out["type"] = "string"
            out.setdefault("format", "enum")
    return out
