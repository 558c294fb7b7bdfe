"""The OpenAPI path items of the KoboldCpp door (``docs/doors/kobold.md``)."""

from __future__ import annotations

from typing import Any

from chatgate.server.doors.text_doors import sse_schema
from chatgate.server.openapi import CHAT, EDGE, UPSTREAM, json_content, operation
from chatgate.server.openapi_shapes import json_object

STRING: dict[str, Any] = {"type": "string"}
INTEGER: dict[str, Any] = {"type": "integer"}
NUMBER: dict[str, Any] = {"type": "number"}
BOOLEAN: dict[str, Any] = {"type": "boolean"}
STRINGS: dict[str, Any] = {"type": "array", "items": STRING}
ERROR = json_object(
    {"detail": json_object({"msg": STRING, "type": STRING, "error": STRING}, "error")}
)
# Every route's answer is computed from the door's default model: a 404 when none is set.
INFO = (*EDGE, 404, *UPSTREAM)
GENERATE = {
    "type": "object",
    "required": ["prompt"],
    "description": "KoboldCpp's generate body. Fields of the KoboldAI API that KoboldCpp "
    "ignores are ignored; a sampler set to a value that turns it on is refused by a "
    "backend without it.",
    "properties": {
        "prompt": {**STRING, "description": "The text to continue (with `memory`, not empty)."},
        "memory": STRING,
        "max_length": {"type": "integer", "minimum": 1, "maximum": 2**31 - 1},
        "max_context_length": {"type": "integer", "minimum": 1, "maximum": 2**31 - 1},
        "temperature": {"type": "number", "minimum": 0, "maximum": 2},
        "top_p": {"type": "number", "minimum": 0, "maximum": 1},
        "top_k": {"type": "integer", "minimum": 0, "maximum": 2**31 - 1},
        "min_p": {"type": "number", "minimum": 0, "maximum": 1},
        "rep_pen": {"type": "number", "minimum": 0, "maximum": 10},
        "rep_pen_range": INTEGER,
        "rep_pen_slope": NUMBER,
        "typical": {"type": "number", "minimum": 0, "maximum": 1},
        "tfs": {"type": "number", "minimum": 0, "maximum": 1},
        "top_a": {"type": "number", "minimum": 0},
        "sampler_order": {"type": "array", "items": INTEGER},
        "sampler_seed": INTEGER,
        "stop_sequence": {**STRINGS, "maxItems": 256},
        "trim_stop": BOOLEAN,
        "grammar": STRING,
        "banned_tokens": STRINGS,
        "genkey": {"type": "string", "maxLength": 256},
        "n": {"type": "integer", "minimum": 1, "maximum": 128},
        "logprobs": BOOLEAN,
    },
}
RESULT = json_object(
    {
        "text": STRING,
        "finish_reason": {"enum": ["stop", "length"]},
        "tool_calls": {"type": "array"},
        "logprobs": {"anyOf": [{"type": "object"}, {"type": "null"}]},
        "prompt_tokens": INTEGER,
        "completion_tokens": INTEGER,
    }
)
RESULTS = json_object({"results": {"type": "array", "items": RESULT}})
SSE = (
    'Server-sent events: `event: message` with `data: {"token", "finish_reason": null}` '
    'per piece of text, the last `{"token": "", "finish_reason": "stop"|"length"}`. An '
    'error after the start is `event: error` with `{"detail": ...}`.'
)
VALUE = json_object({"value": INTEGER})
GENKEY = {"type": "object", "properties": {"genkey": STRING}}


def _op(summary: str, answer: dict[str, Any], statuses: tuple[int, ...], **kw: Any) -> Any:
    return operation(summary, answer, statuses, error_schema=ERROR, **kw)


def path_items() -> dict[str, Any]:
    """Every route of the door."""
    stream = {"text/event-stream": {"schema": sse_schema(SSE)}}
    check = _op(
        "The text the caller's generation has made so far",
        json_content(
            json_object({"results": {"type": "array", "items": json_object({"text": STRING})}})
        ),
        (400, *EDGE, 413, 415),
    )
    return {
        "/api/v1/generate": {
            "post": _op(
                "Generate (the text made so far, if aborted)",
                json_content(RESULTS),
                CHAT,
                body=GENERATE,
            )
        },
        "/api/extra/generate/stream": {
            "post": _op("Generate, streamed", stream, CHAT, body=GENERATE)
        },
        "/api/extra/generate/check": {"get": check, "post": {**check, "requestBody": _genkey()}},
        "/api/extra/abort": {
            "post": _op(
                "Stop the caller's generation with this genkey (or their latest)",
                json_content(json_object({"success": {"enum": ["true", "false"]}, "done": STRING})),
                (400, *EDGE, 413, 415),
                body=GENKEY,
            )
        },
        "/api/extra/tokencount": {
            "post": _op(
                "Count tokens by the default model's tokenizer (ids where it has one)",
                json_content(
                    json_object({"value": INTEGER, "ids": {"type": "array", "items": INTEGER}})
                ),
                (400, *EDGE, 404, 413, 415, *UPSTREAM),
                body={"type": "object", "properties": {"prompt": STRING, "special": BOOLEAN}},
            )
        },
        "/api/v1/model": {
            "get": _op("The default model", json_content(json_object({"result": STRING})), INFO)
        },
        "/api/v1/info/version": {
            "get": _op(
                "The KoboldAI API level", json_content(json_object({"result": STRING})), EDGE
            )
        },
        "/api/extra/version": {
            "get": _op(
                "KoboldCpp's identity and version",
                json_content(json_object({"result": {"const": "KoboldCpp"}, "version": STRING})),
                EDGE,
            )
        },
        "/api/v1/config/max_context_length": {
            "get": _op("The default model's context", json_content(VALUE), INFO)
        },
        "/api/extra/true_max_context_length": {
            "get": _op("The default model's context", json_content(VALUE), INFO)
        },
    }


def _genkey() -> dict[str, Any]:
    return {"required": False, "content": json_content(GENKEY)}
