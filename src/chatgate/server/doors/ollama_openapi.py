"""The OpenAPI path items of the Ollama door's routes (``DoorEntry.openapi``).

The request schemas say what the door takes (Ollama's fields; one it does not know is
ignored, as Ollama ignores it), the answers what it sends; errors are
``{"error": "..."}``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from chatgate.server.openapi import EDGE, error_responses, json_content, operation
from chatgate.server.openapi_shapes import INTEGER, STRING, json_object

BOOLEAN = {"type": "boolean"}
NUMBER = {"type": "number"}
ERROR = json_object({"error": STRING})
CHAT_STATUSES = (400, *EDGE, 404, 413, 415, 429, 502, 503, 504)
IMAGES = {
    "type": "array",
    "items": {"type": "string", "contentEncoding": "base64"},
    "description": "Base64 PNG, JPEG, GIF or WebP images.",
}
OPTIONS = {
    "type": "object",
    "description": "Ollama's options; those chatgate cannot honour are ignored, as "
    "docs/doors/ollama.md lists.",
    "properties": {
        **dict.fromkeys(
            ("num_predict", "top_k", "seed", "num_ctx", "repeat_last_n", "num_keep"), INTEGER
        ),
        **dict.fromkeys(
            ("temperature", "top_p", "min_p", "typical_p", "repeat_penalty", "presence_penalty",
             "frequency_penalty"),
            NUMBER,
        ),
        "stop": {"type": "array", "items": STRING},
    },
}  # fmt: skip
COMMON = {
    "model": {**STRING, "description": "`connection/model[:tag]`, or a bare name."},
    "stream": {"type": ["boolean", "null"], "description": "Unset or null: true."},
    "format": {
        "anyOf": [{"enum": ["", "json"]}, {"type": "object"}, {"type": "null"}],
        "description": '`"json"`, or a JSON schema the answer follows.',
    },
    "options": OPTIONS,
    "think": {"anyOf": [BOOLEAN, {"enum": ["low", "medium", "high", "max"]}, {"type": "null"}]},
    "keep_alive": {"type": ["string", "number", "null"]},
}
TOOL_CALL = {
    "type": "object",
    "required": ["function"],
    "properties": {
        "id": STRING,
        "function": json_object(
            {"index": INTEGER, "name": STRING, "arguments": {"type": "object"}}, "index"
        ),
    },
}
MESSAGE = {
    "type": "object",
    "required": ["role"],
    "properties": {
        "role": {**STRING, "description": "system, user, assistant or tool (any case)."},
        "content": STRING,
        "images": IMAGES,
        "thinking": STRING,
        "tool_calls": {"type": "array", "items": TOOL_CALL},
        "tool_name": STRING,
        "tool_call_id": STRING,
    },
}
CHAT_REQUEST = {
    "type": "object",
    "required": ["model"],
    "properties": {
        **COMMON,
        "messages": {"type": "array", "items": MESSAGE, "description": "None: a load answer."},
        "tools": {"type": ["array", "null"], "items": {"type": "object"}},
    },
}
GENERATE_REQUEST = {
    "type": "object",
    "required": ["model"],
    "properties": {
        **COMMON,
        "prompt": {**STRING, "description": "Empty: a load answer."},
        "suffix": STRING,
        "system": STRING,
        "template": {**STRING, "description": "Only empty: chatgate renders prompts."},
        "context": {"type": "array", "items": INTEGER, "description": "Only empty."},
        "raw": BOOLEAN,
        "images": IMAGES,
    },
}
METRICS = dict.fromkeys(
    ("total_duration", "load_duration", "prompt_eval_count", "prompt_eval_duration",
     "eval_count", "eval_duration"),
    INTEGER,
)  # fmt: skip
HEAD = {"model": STRING, "created_at": STRING, "done": BOOLEAN, "done_reason": STRING}
ANSWER_MESSAGE = json_object(
    {
        "role": {"const": "assistant"},
        "content": STRING,
        "thinking": STRING,
        "tool_calls": {"type": "array", "items": TOOL_CALL},
    },
    "thinking",
    "tool_calls",
)
CHAT_ANSWER = json_object({**HEAD, "message": ANSWER_MESSAGE, **METRICS}, "done_reason", *METRICS)
GENERATE_ANSWER = json_object(
    {**HEAD, "response": STRING, "thinking": STRING, **METRICS},
    "done_reason",
    "thinking",
    *METRICS,
)
DETAILS = json_object(
    {
        "parent_model": STRING,
        "format": STRING,
        "family": STRING,
        "families": {"type": ["array", "null"], "items": STRING},
        "parameter_size": STRING,
        "quantization_level": STRING,
        "context_length": INTEGER,
    },
    "context_length",
)
MODEL = json_object(
    {
        "name": STRING,
        "model": STRING,
        "modified_at": STRING,
        "size": INTEGER,
        "digest": STRING,
        "details": DETAILS,
    }
)
RUNNING = json_object(
    {
        "name": STRING,
        "model": STRING,
        "size": INTEGER,
        "digest": STRING,
        "details": DETAILS,
        "expires_at": STRING,
        "size_vram": INTEGER,
        "context_length": {"type": ["integer", "null"]},
    }
)
SHOW = json_object(
    {
        "modelfile": STRING,
        "parameters": STRING,
        "template": STRING,
        "details": DETAILS,
        "model_info": {"type": "object"},
        "capabilities": {"type": "array", "items": STRING},
        "modified_at": STRING,
    }
)


def _ndjson(description: str) -> dict[str, Any]:
    return {"application/x-ndjson": {"schema": {**STRING, "description": description}}}


def _chat(summary: str, body: dict[str, Any], answer: dict[str, Any], line: str) -> dict[str, Any]:
    stream = (
        f"Unless `stream` is false: one JSON object a line, {line}; the last has `done: true` "
        'and the counts. An error after the start is a last line `{"error": "..."}`.'
    )
    content = {**json_content(answer), **_ndjson(stream)}
    return operation(summary, content, CHAT_STATUSES, body=body, error_schema=ERROR)


def path_items(not_here: Mapping[tuple[str, str], str]) -> dict[str, Any]:
    """The Ollama door's path items; *not_here* are the routes answered with a 400."""
    items: dict[str, Any] = {
        "/api/chat": {
            "post": _chat(
                "Chat (Ollama)", CHAT_REQUEST, CHAT_ANSWER, "each with a piece of `message`"
            )
        },
        "/api/generate": {
            "post": _chat(
                "Generate (Ollama)", GENERATE_REQUEST, GENERATE_ANSWER, "each with a `response`"
            )
        },
        "/api/tags": {
            "get": operation(
                "Every model the door may reach (Ollama)",
                json_content(json_object({"models": {"type": "array", "items": MODEL}})),
                EDGE,
                error_schema=ERROR,
            )
        },
        "/api/show": {
            "post": operation(
                "One model's details (Ollama)",
                json_content(SHOW),
                (400, *EDGE, 404, 413, 415),
                body=json_object({"model": STRING, "name": STRING}, "model", "name"),
                error_schema=ERROR,
            )
        },
        "/api/ps": {
            "get": operation(
                "The models loaded in memory: the embedded ones (Ollama)",
                json_content(json_object({"models": {"type": "array", "items": RUNNING}})),
                EDGE,
                error_schema=ERROR,
            )
        },
        "/api/version": {
            "get": operation(
                "The Ollama API version the door follows",
                json_content(json_object({"version": STRING})),
                EDGE,
                error_schema=ERROR,
            )
        },
    }
    for (method, path), what in not_here.items():
        responses = error_responses((*EDGE, 415) if method == "POST" else EDGE, schema=ERROR)
        always = {"description": f"Always: chatgate does not {what} models; its models "
                  "are configured as connections.", "content": json_content(ERROR)}  # fmt: skip
        items.setdefault(path, {})[method.lower()] = {
            "summary": f"Ollama's {what}: not in chatgate",
            "responses": {"400": always, **responses},
        }
    return items
