"""A fake Gemini API on loopback (AI Studio and Vertex AI paths), written from Google's
public API reference.

``POST .../models/{model}:generateContent`` and ``:streamGenerateContent?alt=sse`` under
any prefix (AI Studio's ``/v1beta/models``, Vertex's ``/v1/publishers/google/models``
and ``/v1/projects/{p}/locations/{r}/publishers/google/models``). It checks what the
real API checks: a key in ``x-goog-api-key`` or a bearer token, ``contents`` with roles
``user`` and ``model``, parts with one kind of data each, a ``functionResponse`` only
after a ``functionCall`` of the same name, and a ``responseSchema`` in Gemini's dialect
(no ``additionalProperties``, no ``$ref``). Streams send whole function calls, text in
pieces, and ``finishReason`` with ``usageMetadata`` last. ``POST /token`` plays Google's
OAuth token endpoint for service accounts.

Model names pick the behaviour as in the Anthropic fake: ``error-NNN``, ``oops-*``,
``tool-*``, ``think-*``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import parse_qs

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from tests.fakes.common import TEXT, WEATHER_ARGS, FakeState, json_response, pieces, sample
from tests.fakes.openai_server import Seen

KEY_REVOKED = "AIza-Hp4Ws7Jk2Ry"
TOKEN = "ya29.fake-access-token"
STATUS = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    429: "RESOURCE_EXHAUSTED",
}
PART_KINDS = ("text", "inlineData", "fileData", "functionCall", "functionResponse")


def error(status: int, message: str) -> Response:
    """A Google API error body."""
    payload = {
        "error": {"code": status, "message": message, "status": STATUS.get(status, "INTERNAL")}
    }
    return json_response(payload, status)


def _schema_problem(schema: Any) -> str | None:
    if isinstance(schema, dict):
        for bad in ("additionalProperties", "$ref", "$defs", "const"):
            if bad in schema:
                return f'Invalid JSON payload received. Unknown name "{bad}"'
        if isinstance(schema.get("type"), list):
            return "Invalid value at 'type': a list"
        for value in schema.values():
            problem = _schema_problem(value)
            if problem:
                return problem
    if isinstance(schema, list):
        for value in schema:
            problem = _schema_problem(value)
            if problem:
                return problem
    return None


def check(body: dict[str, Any]) -> str | None:
    """What the real API would refuse in *body*, if anything."""
    contents = body.get("contents") or []
    if not contents:
        return "contents is not specified"
    called: set[str] = set()
    for index, content in enumerate(contents):
        if content.get("role") not in ("user", "model"):
            return f"contents[{index}].role must be user or model"
        parts = content.get("parts") or []
        if not parts:
            return f"contents[{index}].parts must not be empty"
        for part in parts:
            kinds = [k for k in PART_KINDS if k in part]
            if len(kinds) != 1:
                return f"contents[{index}]: a part holds exactly one kind of data"
            if "functionResponse" in part and part["functionResponse"]["name"] not in called:
                return f"contents[{index}]: functionResponse without a matching functionCall"
            if "text" in part and not isinstance(part["text"], str):
                return f"contents[{index}]: text must be a string"
        called = {p["functionCall"]["name"] for p in parts if "functionCall" in p}
    config = body.get("generationConfig") or {}
    problem = _schema_problem(config.get("responseSchema"))
    for tool in body.get("tools") or []:
        for declaration in tool.get("functionDeclarations") or []:
            problem = problem or _schema_problem(declaration.get("parameters"))
    return problem


def answer(body: dict[str, Any], model: str) -> tuple[list[dict[str, Any]], str]:
    """The parts of the one candidate, and its finish reason."""
    parts_in = body["contents"][-1]["parts"]
    results = [p["functionResponse"] for p in parts_in if "functionResponse" in p]
    images = sum(1 for p in parts_in if "inlineData" in p or "fileData" in p)
    config = body.get("generationConfig") or {}
    out: list[dict[str, Any]] = []
    if model.startswith("think-"):
        out.append({"text": "Weighing it up.", "thought": True})
    if config.get("responseMimeType") == "application/json":
        value = sample(config.get("responseSchema") or {"type": "object"})
        out.append({"text": orjson.dumps(value).decode()})
    elif results:
        response = results[0]["response"]
        out.append({"text": f"The tool said: {response.get('content', response)}"})
    elif model.startswith("tool-") and body.get("tools"):
        out.append({"functionCall": {"name": "get_weather", "args": WEATHER_ARGS}})
    else:
        out.append({"text": f"I see {images} image(s)." if images else TEXT})
    return out, "STOP"


USAGE = {"promptTokenCount": 9, "candidatesTokenCount": 6, "totalTokenCount": 15}


def whole(body: dict[str, Any], model: str) -> dict[str, Any]:
    """A whole ``GenerateContentResponse``."""
    parts, reason = answer(body, model)
    count = int((body.get("generationConfig") or {}).get("candidateCount", 1))
    candidates = [
        {"content": {"role": "model", "parts": parts}, "finishReason": reason, "index": i}
        for i in range(count)
    ]
    return {
        "candidates": candidates,
        "usageMetadata": USAGE,
        "modelVersion": model,
        "responseId": "resp-fake",
    }


def _data(payload: dict[str, Any]) -> bytes:
    return b"data: " + orjson.dumps(payload) + b"\r\n\r\n"


async def events(body: dict[str, Any], model: str) -> AsyncIterator[bytes]:
    """The stream: one event per text piece or call, the finish reason last."""
    parts, reason = answer(body, model)
    for part in parts:
        if "text" in part and not part.get("thought"):
            for piece in pieces(part["text"]):
                yield _data(
                    {
                        "candidates": [
                            {"content": {"role": "model", "parts": [{"text": piece}]}, "index": 0}
                        ],
                        "responseId": "resp-fake",
                    }
                )
            if model.startswith("oops-"):
                yield _data(
                    {
                        "error": {
                            "code": 503,
                            "message": "The model is overloaded.",
                            "status": "UNAVAILABLE",
                        }
                    }
                )
                return
        else:
            yield _data(
                {
                    "candidates": [{"content": {"role": "model", "parts": [part]}, "index": 0}],
                    "responseId": "resp-fake",
                }
            )
    yield _data(
        {
            "candidates": [
                {
                    "content": {"role": "model", "parts": [{"text": ""}]},
                    "finishReason": reason,
                    "index": 0,
                }
            ],
            "usageMetadata": USAGE,
        }
    )


def build_app(state: FakeState) -> Starlette:
    """The fake's routes."""

    async def generate(request: Request) -> Response:
        body = await state.record(request)
        if "key" in request.query_params:
            return error(400, "the fake refuses keys in URLs")
        key = request.headers.get("x-goog-api-key")
        bearer = request.headers.get("authorization", "")
        if key == KEY_REVOKED or (not key and bearer != f"Bearer {TOKEN}"):
            return error(401, "API key not valid. Please pass a valid API key.")
        model, _, method = request.path_params["target"].partition(":")
        if model.startswith("error-"):
            status = int(model.split("-")[1].partition(":")[0])  # Ollama adds ":latest"
            return error(status, f"the fake says {status}")
        problem = check(body)
        if problem:
            return error(400, problem)
        if method == "streamGenerateContent":
            if request.query_params.get("alt") != "sse":
                return error(400, "the fake streams SSE only")
            return StreamingResponse(events(body, model), media_type="text/event-stream")
        return json_response(whole(body, model))

    async def models(request: Request) -> Response:
        await state.record(request)
        if not request.headers.get("x-goog-api-key"):
            return error(401, "API key not valid.")
        listed = [
            {
                "name": "models/gemini-fake-pro",
                "supportedGenerationMethods": ["generateContent", "countTokens"],
            },
            {"name": "models/embedding-fake", "supportedGenerationMethods": ["embedContent"]},
        ]
        return json_response({"models": listed})

    async def token(request: Request) -> Response:
        form = {k: v[0] for k, v in parse_qs((await request.body()).decode()).items()}
        state.seen.append(Seen("POST", "/token", dict(request.headers), dict(form)))
        if form.get("grant_type") != "urn:ietf:params:oauth:grant-type:jwt-bearer":
            return json_response({"error": "invalid_grant"}, 400)
        return json_response({"access_token": TOKEN, "expires_in": 3600, "token_type": "Bearer"})

    return Starlette(
        routes=[
            Route("/token", token, methods=["POST"]),
            Route("/{base:path}/models/{target}", generate, methods=["POST"]),
            Route("/{base:path}/models", models, methods=["GET"]),
        ]
    )
