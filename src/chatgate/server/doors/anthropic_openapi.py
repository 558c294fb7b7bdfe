"""The Anthropic door's OpenAPI path items: ``POST /v1/messages`` and
``POST /v1/messages/count_tokens``.

The request bodies are the door's own pydantic models
(`chatgate.server.doors.anthropic_shapes`), inlined: a door adds path items to the
document, not component schemas. The answers and the error are written out by hand,
as `chatgate.server.doors.anthropic_encode` and ``anthropic_stream`` render them.
"""

from __future__ import annotations

import copy
from typing import Any

from pydantic import BaseModel

from chatgate.server.doors.anthropic_shapes import AnthropicCountRequest, AnthropicRequest
from chatgate.server.openapi import CHAT, EDGE, json_content, operation, parameter
from chatgate.server.openapi_shapes import json_object

DEFS = "#/$defs/"
STRING = {"type": "string"}
INTEGER = {"type": "integer"}
NULLABLE_STRING = {"anyOf": [STRING, {"type": "null"}]}
BLOCK = json_object({"type": STRING})  # text, thinking, redacted_thinking, tool_use
USAGE = json_object(
    {
        "input_tokens": INTEGER,
        "output_tokens": INTEGER,
        "cache_creation_input_tokens": INTEGER,
        "cache_read_input_tokens": INTEGER,
    },
    "cache_creation_input_tokens",
    "cache_read_input_tokens",
)
MESSAGE = json_object(
    {
        "id": STRING,
        "type": {"const": "message"},
        "role": {"const": "assistant"},
        "model": STRING,
        "content": {"type": "array", "items": BLOCK},
        "stop_reason": NULLABLE_STRING,
        "stop_sequence": NULLABLE_STRING,
        "usage": USAGE,
    }
)
COUNT = json_object({"input_tokens": INTEGER})
ERROR = json_object(
    {"type": {"const": "error"}, "error": json_object({"type": STRING, "message": STRING})}
)
EVENT_TYPES = [
    "message_start",
    "content_block_start",
    "content_block_delta",
    "content_block_stop",
    "message_delta",
    "message_stop",
    "ping",
    "error",
]
# A text/event-stream schema describes one event (as schemathesis reads it too).
EVENT = {
    "type": "object",
    "required": ["event", "data"],
    "properties": {
        "event": {"enum": EVENT_TYPES},
        "data": {
            "type": "string",
            "contentMediaType": "application/json",
            "contentSchema": json_object({"type": {"enum": EVENT_TYPES}}),
        },
    },
    "description": "With `stream: true`: Anthropic's event stream, each frame `event: <type>` "
    "and `data: {json}` with the type repeated: `message_start`, `content_block_start` / "
    "`content_block_delta` / `content_block_stop`, `message_delta` (stop reason, usage), "
    "`message_stop`, and `ping`. An error after the start is `event: error` with the error "
    "object.",
}
VERSION = parameter(
    "header", "anthropic-version", STRING, "Accepted with any value, and never required."
)


def inlined(model: type[BaseModel]) -> dict[str, Any]:
    """*model*'s JSON schema with every ``$ref`` replaced by what it names (the models
    are not recursive), and the discriminators' mappings, which name refs, left out."""
    schema = model.model_json_schema(ref_template=DEFS + "{model}")
    defs: dict[str, Any] = schema.pop("$defs", {})

    def resolve(node: Any) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str) and ref.startswith(DEFS):
                return resolve(copy.deepcopy(defs[ref.removeprefix(DEFS)]))
            out = {k: resolve(v) for k, v in node.items() if k != "discriminator"}
            if "discriminator" in node:
                out["discriminator"] = {"propertyName": node["discriminator"]["propertyName"]}
            return out
        if isinstance(node, list):
            return [resolve(item) for item in node]
        return node

    resolved: dict[str, Any] = resolve(schema)
    return resolved


def path_items() -> dict[str, Any]:
    """The door's two path items."""
    answer = {
        **json_content(MESSAGE),
        "text/event-stream": {"schema": EVENT},
    }
    messages = operation(
        "Create a message (Anthropic Messages)",
        answer,
        CHAT,
        body=inlined(AnthropicRequest),
        params=[VERSION],
        error_schema=ERROR,
    )
    messages["responses"]["200"]["headers"] = {
        "x-chatgate-dropped-params": {
            "description": "The parameters dropped under `drop_params`, comma-separated.",
            "schema": STRING,
        }
    }
    count = operation(
        "Count a message's input tokens",
        json_content(COUNT),
        (400, *EDGE, 404, 413, 415, 429, 502, 503, 504),
        body=inlined(AnthropicCountRequest),
        params=[VERSION],
        error_schema=ERROR,
    )
    count["responses"]["200"]["headers"] = {
        "x-chatgate-token-count": {
            "description": "`estimate` when the backend has no tokenizer chatgate can ask "
            "and the count is chatgate's estimate.",
            "schema": STRING,
        }
    }
    return {"/v1/messages": {"post": messages}, "/v1/messages/count_tokens": {"post": count}}
