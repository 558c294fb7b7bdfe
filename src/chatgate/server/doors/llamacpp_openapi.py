"""The OpenAPI path items of the llama.cpp server door (``docs/doors/llamacpp.md``)."""

from __future__ import annotations

from typing import Any

from chatgate.server.doors.text_doors import sse_schema
from chatgate.server.openapi import CHAT, EDGE, UPSTREAM, json_content, operation
from chatgate.server.openapi_shapes import json_object

STRING: dict[str, Any] = {"type": "string"}
INTEGER: dict[str, Any] = {"type": "integer"}
BOOLEAN: dict[str, Any] = {"type": "boolean"}
ERROR = json_object({"error": json_object({"code": INTEGER, "message": STRING, "type": STRING})})
NOT_SUPPORTED = "The default model's backend has no tokenizer (or not that option)."
COMPLETION_BODY = {
    "type": "object",
    "required": ["prompt"],
    "description": "llama-server's `/completion` body. Fields it does not know are "
    "ignored; a sampler set to a value that turns it on is refused by a backend "
    "without it.",
    "properties": {
        "prompt": {"type": "string", "minLength": 1},
        "n_predict": {"type": "integer", "minimum": -1, "maximum": 2**31 - 1, "not": {"const": 0}},
        "stream": BOOLEAN,
        "stop": {"type": "array", "items": STRING, "maxItems": 256},
        "temperature": {"type": "number", "minimum": 0, "maximum": 2},
        "top_k": {"type": "integer", "minimum": 0, "maximum": 2**31 - 1},
        "top_p": {"type": "number", "minimum": 0, "maximum": 1},
        "min_p": {"type": "number", "minimum": 0, "maximum": 1},
        "repeat_penalty": {"type": "number", "minimum": 0, "maximum": 10},
        "seed": {"type": "integer", "minimum": -1, "maximum": 0xFFFFFFFF},
        "grammar": STRING,
        "json_schema": {"type": "object"},
        "n_probs": {"type": "integer", "minimum": 0, "maximum": 20},
        "cache_prompt": BOOLEAN,
    },
}
TIMINGS = {"type": "object", "additionalProperties": {"type": "number"}}
ANSWER = json_object(
    {
        "content": STRING,
        "stop": {"const": True},
        "stop_type": {"enum": ["eos", "limit", "word"]},
        "stopping_word": STRING,
        "tokens_predicted": INTEGER,
        "tokens_evaluated": INTEGER,
        "model": STRING,
        "prompt": STRING,
        "timings": TIMINGS,
        "truncated": BOOLEAN,
        "generation_settings": {"type": "object"},
        "completion_probabilities": {"type": "array"},
    },
    "completion_probabilities",
)
SSE = (
    'With `stream: true`: `data: {"content", "stop": false}` frames, then the whole '
    'answer object with `"stop": true`. An error after the start is a `data:` frame '
    'holding `{"error": ...}`.'
)
PROPS = json_object(
    {
        "default_generation_settings": json_object({"n_ctx": INTEGER}),
        "total_slots": INTEGER,
        "model_path": STRING,
        "chat_template": STRING,
    }
)
TOKENS = {
    "type": "array",
    "items": {"anyOf": [INTEGER, json_object({"id": INTEGER, "piece": STRING})]},
}


def _op(summary: str, answer: dict[str, Any], statuses: tuple[int, ...], **kw: Any) -> Any:
    return operation(summary, answer, statuses, error_schema=ERROR, **kw)


def _with_501(item: dict[str, Any]) -> dict[str, Any]:
    item["responses"]["501"] = {"description": NOT_SUPPORTED, "content": json_content(ERROR)}
    return item


def path_items() -> dict[str, Any]:
    """Every route of the door."""
    answer = {
        **json_content(ANSWER),
        "text/event-stream": {"schema": sse_schema(SSE)},
    }
    tokenize_body = {
        "type": "object",
        "required": ["content"],
        "properties": {
            "content": STRING,
            "add_special": BOOLEAN,
            "parse_special": BOOLEAN,
            "with_pieces": BOOLEAN,
        },
    }
    detokenize_body = {
        "type": "object",
        "properties": {"tokens": {"type": "array", "items": INTEGER}},
    }
    token_statuses = (400, *EDGE, 404, 413, 415, *UPSTREAM)
    return {
        "/completion": {
            "post": _op("Complete a prompt (llama-server)", answer, CHAT, body=COMPLETION_BODY)
        },
        "/props": {"get": _op("The default model", json_content(PROPS), (*EDGE, 404, *UPSTREAM))},
        "/health": {
            "get": _op(
                "Whether the default model can answer",
                json_content(json_object({"status": {"const": "ok"}})),
                (*EDGE, 503),
            )
        },
        "/tokenize": {
            "post": _with_501(
                _op(
                    "Token ids of a text, by the default model's tokenizer",
                    json_content(json_object({"tokens": TOKENS})),
                    token_statuses,
                    body=tokenize_body,
                )
            )
        },
        "/detokenize": {
            "post": _with_501(
                _op(
                    "The text of token ids",
                    json_content(json_object({"content": STRING})),
                    token_statuses,
                    body=detokenize_body,
                )
            )
        },
    }
