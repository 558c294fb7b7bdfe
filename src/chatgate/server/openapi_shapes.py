"""The answer and error shapes of the OpenAPI document, written out by hand: they are
rendered from dataclasses (`chatgate.server.doors.chat_shapes`) that pydantic does not
describe. `chatgate.server.openapi` and the doors' own ``*_openapi`` modules build on
them, and on `json_object`.
"""

from __future__ import annotations

from typing import Any

REF = "#/components/schemas/{model}"


def schema_ref(name: str) -> dict[str, str]:
    """A reference to one of the document's component schemas."""
    return {"$ref": REF.format(model=name)}


def _nullable(schema: dict[str, Any]) -> dict[str, Any]:
    return {"anyOf": [schema, {"type": "null"}]}


def json_object(properties: dict[str, Any], *optional: str) -> dict[str, Any]:
    """An object whose fields are required but *optional*; it may grow fields, which
    clients must ignore (no ``additionalProperties: false``)."""
    required = [name for name in properties if name not in optional]
    return {"type": "object", "required": required, "properties": properties}


STRING = {"type": "string"}
INTEGER = {"type": "integer"}
MAYBE_STRING = _nullable(STRING)
MAYBE_OBJECT = _nullable({"type": "object"})
USAGE = json_object(
    {"prompt_tokens": INTEGER, "completion_tokens": INTEGER, "total_tokens": INTEGER}
)
TOOL_CALL = json_object(
    {
        "id": STRING,
        "type": {"const": "function"},
        "function": json_object({"name": STRING, "arguments": STRING}),
    }
)
MESSAGE = json_object(
    {
        "role": {"const": "assistant"},
        "content": MAYBE_STRING,
        "refusal": MAYBE_STRING,
        "tool_calls": {"type": "array", "items": TOOL_CALL},
        "reasoning_content": STRING,
    },
    *("refusal", "tool_calls", "reasoning_content"),
)
CHOICE = json_object(
    {"index": INTEGER, "message": MESSAGE, "logprobs": MAYBE_OBJECT, "finish_reason": MAYBE_STRING},
    "logprobs",
)
HEAD = {"id": STRING, "created": INTEGER, "model": STRING, "system_fingerprint": MAYBE_STRING}
COMPLETION = json_object(
    {
        **HEAD,
        "object": {"const": "chat.completion"},
        "choices": {"type": "array", "items": CHOICE},
        "usage": schema_ref("Usage"),
    },
    "system_fingerprint",
)
CHUNK_CHOICE = json_object(
    {
        "index": INTEGER,
        "delta": {"type": "object"},
        "logprobs": MAYBE_OBJECT,
        "finish_reason": MAYBE_STRING,
    },
    "logprobs",
)
CHUNK = json_object(
    {
        **HEAD,
        "object": {"const": "chat.completion.chunk"},
        "choices": {"type": "array", "items": CHUNK_CHOICE},
        "usage": _nullable(schema_ref("Usage")),
    },
    *("system_fingerprint", "usage"),
)
OPENAI_ERROR = json_object(
    {
        "error": json_object(
            {"message": STRING, "type": STRING, "param": MAYBE_STRING, "code": MAYBE_STRING}
        )
    }
)
LOCATION = {"type": "array", "items": {"type": ["string", "integer"]}}
DETAIL = json_object({"loc": LOCATION, "msg": STRING, "type": STRING})
V4_ERROR = json_object({"detail": {"anyOf": [STRING, {"type": "array", "items": DETAIL}]}})
MODEL = json_object(
    {"id": STRING, "object": {"const": "model"}, "created": INTEGER, "owned_by": STRING}
)
# The admin answers are plain JSON that grows with the sources; the keys named are stable.
ANY_OBJECT: dict[str, Any] = {"type": "object"}
CONNECTION_MODELS = json_object(
    {"connection": STRING, "models": {"type": "array", "items": STRING}}
)
CONNECTION_STATUS = json_object({"connection": STRING, "status": STRING})
CONNECTION_TEST = json_object({"connection": STRING, "model": STRING, "ok": {"type": "boolean"}})
HEALTH = json_object({"status": {"const": "ok"}, "connections": ANY_OBJECT}, "connections")
MODELS = json_object(
    {"object": {"const": "list"}, "data": {"type": "array", "items": schema_ref("Model")}}
)
NOT_ASSISTANT = {"properties": {"role": {"enum": ["system", "developer", "user", "tool"]}}}
TOOL = {"required": ["role"], "properties": {"role": {"const": "tool"}}}
