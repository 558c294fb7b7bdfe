"""The OpenAPI 3.1 document of every route, served at ``GET /openapi.json``.

The request bodies are generated from `chatgate.types.ChatRequest`, so a field added to
the model appears here without anyone remembering; the SGP v4 door's looser shapes
(``chatgate.server.doors.sgp._normalise``) are derived from the same schema. The answers
and error shapes are written out by hand, in `chatgate.server.openapi_shapes`.
``tests/server/test_openapi.py`` keeps the paths equal to the routes the app serves.

The document is read behind the same gateway-key rule as every route but ``/healthz``:
it names the admin routes (``/api``), and whoever reads it (a user's tooling, the
fuzzing job) is about to call those routes with a key anyway. Opening it would also
add a second exception to the edge's one authentication step for no caller who needs it.
"""

from __future__ import annotations

import copy
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from chatgate.server.openapi_shapes import (
    ANY_OBJECT,
    CHUNK,
    COMPLETION,
    CONNECTION_MODELS,
    CONNECTION_STATUS,
    CONNECTION_TEST,
    HEALTH,
    MODEL,
    MODELS,
    NOT_ASSISTANT,
    OPENAI_ERROR,
    REF,
    STRING,
    TOOL,
    USAGE,
    V4_ERROR,
    json_object,
    schema_ref,
)
from chatgate.server.responses import dumps
from chatgate.types import ChatRequest

PATH = "/openapi.json"

# A reason per status, shared by both doors; the body shape is the door's.
REASONS: dict[int, str] = {
    400: "Invalid request: a bad body or a parameter the backend refuses (named in `param`).",
    401: "A gateway key is configured and the request has none, or a wrong one.",
    403: "The Host or the CORS Origin is not allowed.",
    404: "No such model, connection or route.",
    409: "A name that exists, or a connection of the config file (read-only while running).",
    405: "The path exists, but not with this method (`Allow` lists the methods it takes).",
    413: "The body is over `max_body_bytes`.",
    415: "A JSON route called without `Content-Type: application/json`.",
    422: "The body does not match the v4 schema (FastAPI's list of details).",
    429: "Too many requests, upstream (`Retry-After` is passed on).",
    502: "The upstream failed, or answered something that is not a valid answer.",
    503: "The engine's queue is full, or the upstream is unavailable.",
    504: "The upstream did not answer within the deadline.",
}
EDGE = (401, 403)
CHAT = (400, *EDGE, 404, 413, 415, 429, 502, 503, 504)
V4_CHAT = (400, *EDGE, 404, 413, 415, 422, 429, 502, 503, 504)
UPSTREAM = (502, 503, 504)


def _message_rules(content_types: list[str]) -> list[dict[str, Any]]:
    """Message's validator as schema: only an assistant may leave out `content`, and a
    tool message names its call."""
    content = {"required": ["content"], "properties": {"content": {"type": content_types}}}
    call = {"required": ["tool_call_id"], "properties": {"tool_call_id": {"minLength": 1}}}
    return [{"if": NOT_ASSISTANT, "then": content}, {"if": TOOL, "then": call}]


SSE_DESCRIPTION = {
    "openai": "With `stream: true`: one `data: {chat.completion.chunk}` frame per chunk, then "
    "`data: [DONE]`. An error after the start is `event: error` with the error object.",
    "sgp": "With `stream: true`: one `data: {chat.completion.chunk}` frame per chunk, without "
    '`[DONE]`. An error after the start is `event: error` with `{"detail": ...}`.',
}


def request_schemas() -> dict[str, Any]:
    """The component schemas of both doors' chat bodies, from `ChatRequest`."""
    generated = ChatRequest.model_json_schema(ref_template=REF)
    schemas: dict[str, Any] = generated.pop("$defs")
    schemas["ChatRequest"] = generated
    # Message's model validator is code, not schema: its rules are added by hand (an
    # `if` on a missing role also holds: that is SGP's user message).
    schemas["Message"]["allOf"] = _message_rules(["string", "array"])
    schemas.update(_sgp_schemas(schemas))
    return schemas


def _sgp_schemas(schemas: dict[str, Any]) -> dict[str, Any]:
    """SGP v4's looser shapes: ``role`` may be missing (a user message), ``content`` may be
    one part object, and an image URL may be bare base64 with its ``media_type``."""
    image_url = copy.deepcopy(schemas["ImageURL"])
    image_url["title"] = "SGPImageURL"
    image_url["properties"]["media_type"] = {
        "type": "string",
        "description": "The media type of a bare base64 `url` (SGP's shape).",
    }
    image_part = copy.deepcopy(schemas["ImagePart"])
    image_part["title"] = "SGPImagePart"
    image_part["properties"]["image_url"] = schema_ref("SGPImageURL")
    message = copy.deepcopy(schemas["Message"])
    message["title"] = "SGPMessage"
    message["required"] = []
    message["allOf"] = _message_rules(["string", "array", "object"])
    message["properties"]["role"]["description"] = "Missing means a user message."
    content = message["properties"]["content"]["anyOf"]
    parts = next(option for option in content if option.get("type") == "array")
    union = parts["items"]
    union["oneOf"] = [
        schema_ref("SGPImagePart") if r == schema_ref("ImagePart") else r for r in union["oneOf"]
    ]
    union["discriminator"]["mapping"]["image_url"] = REF.format(model="SGPImagePart")
    content.insert(1, copy.deepcopy(union))  # one part object instead of a list
    request = copy.deepcopy(schemas["ChatRequest"])
    request["title"] = "SGPChatRequest"
    request["description"] = "SGP v4's chat request (docs/api-v4.md)."
    request["properties"]["messages"]["items"] = schema_ref("SGPMessage")
    request["properties"]["model"]["description"] = (
        "`vendor/model_name` or `vendor/model_name/deployment`."
    )
    return {
        "SGPImageURL": image_url,
        "SGPImagePart": image_part,
        "SGPMessage": message,
        "SGPChatRequest": request,
    }


def json_content(schema: dict[str, Any]) -> dict[str, Any]:
    """A JSON body of *schema*, as an OpenAPI content map."""
    return {"application/json": {"schema": schema}}


def error_responses(
    statuses: tuple[int, ...], door: str = "openai", schema: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The error answers of *statuses*, each with its reason and the door's shape."""
    shape = schema or schema_ref("V4Error" if door == "sgp" else "Error")
    return {str(s): {"description": REASONS[s], "content": json_content(shape)} for s in statuses}


def operation(
    summary: str,
    answer: dict[str, Any],
    statuses: tuple[int, ...],
    *,
    body: dict[str, Any] | None = None,
    params: list[dict[str, Any]] | None = None,
    door: str = "openai",
    error_schema: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """One operation: its 200 *answer* (content by media type), and the error answers
    of *statuses* in the door's shape (*error_schema*, else OpenAI's or SGP's)."""
    errors = error_responses(statuses, door, error_schema)
    result: dict[str, Any] = {
        "summary": summary,
        "responses": {"200": {"description": "OK", "content": answer}, **errors},
    }
    if body is not None:
        result["requestBody"] = {"required": True, "content": json_content(body)}
    if params:
        result["parameters"] = params
    return result


def parameter(where: str, name: str, schema: dict[str, Any], description: str) -> dict[str, Any]:
    """A path or query parameter."""
    param = {"name": name, "in": where, "schema": schema, "description": description}
    return {**param, "required": where == "path"}


def _chat(door: str, body: str, statuses: tuple[int, ...]) -> dict[str, Any]:
    answer = {
        **json_content(schema_ref("ChatCompletion")),
        "text/event-stream": {"schema": {**STRING, "description": SSE_DESCRIPTION[door]}},
    }
    summary = "Chat completion (SGP v4)" if door == "sgp" else "Chat completion (OpenAI)"
    chat = operation(summary, answer, statuses, body=schema_ref(body), door=door)
    chat["responses"]["200"]["headers"] = {
        "x-chatgate-dropped-params": {
            "description": "The parameters dropped under `drop_params`, comma-separated.",
            "schema": STRING,
        }
    }
    return chat


def build_document() -> dict[str, Any]:
    """The whole OpenAPI 3.1 document, as a JSON value."""
    name = parameter("path", "name", STRING, "A connection's name.")
    schemas = {
        **request_schemas(),
        "ChatCompletion": COMPLETION,
        "ChatCompletionChunk": CHUNK,
        "Usage": USAGE,
        "Error": OPENAI_ERROR,
        "V4Error": V4_ERROR,
        "Model": MODEL,
    }
    paths: dict[str, Any] = {
        "/v1/chat/completions": {"post": _chat("openai", "ChatRequest", CHAT)},
        "/chat/completions": {"post": _chat("openai", "ChatRequest", CHAT)},
        "/v1/models": {
            "get": operation(
                "Every `connection/model` id",
                json_content(MODELS),
                (*EDGE, *UPSTREAM),
            )
        },
        "/v1/models/{model_id}": {
            "get": operation(
                "One model",
                json_content(schema_ref("Model")),
                (*EDGE, 404, *UPSTREAM),
                params=[
                    parameter(
                        "path", "model_id", STRING, "`connection/model`; it may hold slashes."
                    )
                ],
            )
        },
        "/v4/beta/chat/completions": {"post": _chat("sgp", "SGPChatRequest", V4_CHAT)},
        "/healthz": {
            "get": {
                **operation(
                    "Up; with a key, each connection's state too", json_content(HEALTH), (403,)
                ),
                # Load balancers probe without a key: it is optional here.
                "security": [{}, {"bearer": []}, {"apiKey": []}],
            }
        },
        "/api/connections/{name}/models": {
            "get": operation(
                "A connection's models: the upstream list merged with manual ids",
                json_content(CONNECTION_MODELS),
                (*EDGE, 404, *UPSTREAM),
                params=[
                    name,
                    parameter("query", "refresh", {"enum": ["1", "true"]}, "Skip the cache."),
                ],
            )
        },
        "/api/connections/{name}/status": {
            "get": operation(
                "A free status probe",
                json_content(CONNECTION_STATUS),
                (*EDGE, 404, *UPSTREAM),
                params=[name],
            )
        },
        "/api/connections/{name}/test": {
            "post": operation(
                "A real minimal request (billed upstream)",
                json_content(CONNECTION_TEST),
                CHAT,
                body=json_object({"model": STRING}, "model"),
                params=[name, parameter("query", "model", STRING, "The model to test.")],
            )
        },
        "/api/preview": {
            "post": operation(
                "The upstream request a chat request would produce; nothing is sent",
                json_content(ANY_OBJECT),
                (400, *EDGE, 404, 413, 415),
                body=schema_ref("ChatRequest"),
            )
        },
        **_doors(),
        PATH: {
            "get": operation("This document", {"application/json": {"schema": ANY_OBJECT}}, EDGE)
        },
    }
    # The OpenAI routes answer at the root too, for base URLs typed without /v1.
    paths["/models"] = paths["/v1/models"]
    paths["/models/{model_id}"] = paths["/v1/models/{model_id}"]
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "chatgate",
            "version": "1",
            "description": "One front door for every chat model. Errors are JSON in the "
            'door\'s shape: `{"detail": ...}` under `/v4`, the OpenAI error object '
            "everywhere else. Without gateway keys configured, no key is needed.",
        },
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer"},
                "apiKey": {"type": "apiKey", "in": "header", "name": "x-api-key"},
            },
            # Any path answers another method with this; no operation lists it as its own.
            "responses": {"MethodNotAllowed": {"description": REASONS[405]}},
        },
        "security": [{"bearer": []}, {"apiKey": []}],
    }


def _doors() -> dict[str, Any]:
    """The path items each door module describes itself (``DoorEntry.openapi``), and
    the admin API's store routes and the page's."""
    from chatgate.server.admin_openapi import path_items  # they import this module
    from chatgate.server.app import ENTRIES

    found = {path: item for entry in ENTRIES for path, item in entry.openapi.items()}
    return {**found, **path_items()}


def route() -> Route:
    """``GET /openapi.json``, with the document built now, once, not per request."""
    body = dumps(build_document())

    async def openapi_json(request: Request) -> Response:
        return Response(body, media_type="application/json")

    return Route(PATH, openapi_json, methods=["GET"])
