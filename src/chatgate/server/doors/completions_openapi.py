"""The OpenAPI path item of ``POST /v1/completions`` (and ``/completions``)."""

from __future__ import annotations

from typing import Any

from chatgate.server.doors.text_doors import sse_schema
from chatgate.server.openapi import CHAT, json_content, operation
from chatgate.server.openapi_shapes import json_object, schema_ref

STRING: dict[str, Any] = {"type": "string"}
INTEGER: dict[str, Any] = {"type": "integer"}
NUMBER: dict[str, Any] = {"type": "number"}


def _maybe(schema: dict[str, Any]) -> dict[str, Any]:
    return {"anyOf": [schema, {"type": "null"}]}


TEXT = {"type": "string", "minLength": 1}
REQUEST: dict[str, Any] = {
    "type": "object",
    "required": ["model", "prompt"],
    "description": "OpenAI's Completions request. Every other field of a chat request "
    "(chatgate's extensions, a text server's samplers such as `top_k` or `min_p`) is "
    "taken as on `/v1/chat/completions`; a backend refuses what it cannot honour. "
    "Token-id prompts are refused.",
    "properties": {
        "model": {**TEXT, "description": "`connection/model`."},
        "prompt": {
            "anyOf": [TEXT, {"type": "array", "minItems": 1, "maxItems": 128, "items": TEXT}],
            "description": "The text to continue, or several (one answer, their choices "
            "prompt by prompt).",
        },
        "suffix": _maybe(STRING),
        "echo": _maybe({"type": "boolean"}),
        "logprobs": _maybe({"type": "integer", "minimum": 0, "maximum": 5}),
        "best_of": _maybe({"type": "integer", "minimum": 1, "maximum": 20}),
        "n": _maybe({"type": "integer", "minimum": 1, "maximum": 128}),
        "max_tokens": _maybe({"type": "integer", "minimum": 1, "description": "Default 16."}),
        "stop": _maybe(
            {"anyOf": [STRING, {"type": "array", "maxItems": 4, "items": STRING}]},
        ),
        "stream": {"type": "boolean"},
        "stream_options": _maybe(
            {"type": "object", "properties": {"include_usage": {"type": "boolean"}}}
        ),
        "temperature": _maybe({"type": "number", "minimum": 0, "maximum": 2}),
        "top_p": _maybe({"type": "number", "minimum": 0, "maximum": 1}),
        "seed": _maybe(INTEGER),
        "presence_penalty": _maybe({"type": "number", "minimum": -2, "maximum": 2}),
        "frequency_penalty": _maybe({"type": "number", "minimum": -2, "maximum": 2}),
        "logit_bias": _maybe(
            {"type": "object", "additionalProperties": {"type": "number", "minimum": -100}}
        ),
        "user": _maybe(STRING),
    },
}
LOGPROBS = json_object(
    {
        "tokens": {"type": "array", "items": STRING},
        "token_logprobs": {"type": "array", "items": _maybe(NUMBER)},
        "top_logprobs": {"type": "array", "items": {"type": "object"}},
        "text_offset": {"type": "array", "items": INTEGER},
    }
)
CHOICE = json_object(
    {
        "text": STRING,
        "index": INTEGER,
        "logprobs": _maybe(LOGPROBS),
        "finish_reason": _maybe({"enum": ["stop", "length", "content_filter"]}),
    }
)
ANSWER = json_object(
    {
        "id": STRING,
        "object": {"const": "text_completion"},
        "created": INTEGER,
        "model": STRING,
        "system_fingerprint": STRING,
        "choices": {"type": "array", "items": CHOICE},
        "usage": schema_ref("Usage"),
    },
    "system_fingerprint",
)
SSE = (
    "With `stream: true`: one `data: {text_completion}` frame per piece of text, then "
    "`data: [DONE]`; with `stream_options.include_usage`, a last frame with no choices "
    "holds the usage. An error after the start is `event: error` with the error object."
)


def path_item() -> dict[str, Any]:
    """``POST``: a completion of a text prompt."""
    stream = {"schema": sse_schema(SSE)}
    answer = {**json_content(ANSWER), "text/event-stream": stream}
    post = operation("Text completion (OpenAI Completions)", answer, CHAT, body=REQUEST)
    post["responses"]["200"]["headers"] = {
        "x-chatgate-dropped-params": {
            "description": "The parameters dropped under `drop_params`, comma-separated.",
            "schema": STRING,
        }
    }
    return {"post": post}
