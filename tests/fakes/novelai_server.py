"""A fake NovelAI text API on loopback (what SillyTavern's client relies on; NovelAI
publishes no text API reference, so some shapes below are this fake's choice).

Routes:

- ``POST /ai/generate`` ``{"input", "model", "parameters": {"use_string", "max_length",
  "min_length", "temperature", "top_p", "top_k", "repetition_penalty",
  "stop_sequences", …}}`` → **201** ``{"output": "..."}`` (NovelAI's POST routes answer
  201 Created).
- ``POST /ai/generate-stream`` → SSE, one event a token: ``event: newToken``, ``id: <n>``
  (from 1), ``data: {"token": "...", "ptr": <n−1>, "final": false, "logprobs": null}``;
  the last token's event has ``"final": true`` (chosen here: the reference confirms only
  ``token``); no end marker.
- ``GET /user/subscription`` → ``{"tier", "active": true, "expiresAt", "perks":
  {"contextTokens", "maxPriorityActions", "unlimitedMaxPriority", …},
  "trainingStepsLeft", "accountType"}`` from `NovelAIState.tier` and ``context_tokens``.

Every route needs ``Authorization: Bearer <NovelAIState.token>``, else 401
``{"statusCode": 401, "message": "Access Token is incorrect."}``. Models: ``clio-v1``,
``kayra-v1``, ``llama-3-erato-v1``; another → 400 ``{"statusCode": 400, "message":
"Invalid model: x"}``. Validation (class-validator style) → 400 ``{"statusCode": 400,
"message": "<what is wrong>"}``: ``input`` a string, ``parameters`` an object,
``max_length`` and ``min_length`` integers 1–2048 with ``min_length`` ≤ ``max_length``,
``stop_sequences`` and ``bad_words_ids`` lists of **token-id lists**, the samplers numbers.

The text: the input's last non-blank line, a word a token (`common.echo_pieces`), cut at
``max_length`` words (default 40) and **after** the first stop sequence (kept in the output). Stop
sequences are token ids, matched against the fake's word tokenizer
(`common.token_ids`, one id a word: ``token_ids("Bob:")`` stops at the word ``Bob:``).
Without ``use_string: true`` the input is taken as base64 of little-endian uint16 token
ids and the output (and every streamed token) is given the same way.
"""

from __future__ import annotations

import base64
import struct
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from tests.fakes.common import (
    FakeState,
    bearer,
    echo_pieces,
    generate,
    json_response,
    sse,
    token_ids,
    type_problems,
)

MODELS = ("clio-v1", "kayra-v1", "llama-3-erato-v1")
PARAMETERS = {
    "use_string": "bool",
    "max_length": "int",
    "min_length": "int",
    "temperature": "number",
    "top_p": "number",
    "top_k": "int",
    "top_a": "number",
    "typical_p": "number",
    "tail_free_sampling": "number",
    "min_p": "number",
    "repetition_penalty": "number",
    "repetition_penalty_range": "int",
    "repetition_penalty_slope": "number",
    "repetition_penalty_frequency": "number",
    "repetition_penalty_presence": "number",
    "stop_sequences": "list[list[int]]",
    "bad_words_ids": "list[list[int]]",
    "order": "list[int]",
    "prefix": "str",
    "num_logprobs": "int",
    "generate_until_sentence": "bool",
    "use_cache": "bool",
    "return_full_text": "bool",
}


@dataclass
class NovelAIState(FakeState):
    """What the fake saw, and the knobs tests turn."""

    token: str = "pst-fake-novelai-token"
    tier: int = 3
    context_tokens: int = 8192


def refusal(status: int, message: str) -> Response:
    return json_response({"statusCode": status, "message": message}, status)


def problem(body: Any) -> str | None:
    """What NovelAI's validation refuses in *body*, if anything."""
    if not isinstance(body, dict) or not isinstance(body.get("input"), str):
        return "input must be a string"
    if body.get("model") not in MODELS:
        return f"Invalid model: {body.get('model')}"
    params = body.get("parameters")
    if not isinstance(params, dict):
        return "parameters must be an object"
    wrong = type_problems(params, PARAMETERS)
    if wrong:
        name, kind = next(iter(wrong.items()))
        return f"parameters.{name} must be of type {kind}"
    for name in ("max_length", "min_length"):
        value = params.get(name)
        if value is not None and not 1 <= value <= 2048:
            return f"parameters.{name} must be between 1 and 2048"
    if params.get("min_length", 1) > params.get("max_length", 40):
        return "parameters.min_length must not be greater than max_length"
    return None


def encode(text: str) -> str:
    ids = [i % 65536 for i in token_ids(text)]
    return base64.b64encode(struct.pack(f"<{len(ids)}H", *ids)).decode()


def decoded_count(data: str) -> int:
    return len(base64.b64decode(data)) // 2


def answer(body: dict[str, Any]) -> list[str]:
    """The generated tokens, as the client will read them."""
    params = body["parameters"]
    use_string = params.get("use_string") is True
    words = echo_pieces(body["input"]) if use_string else echo_pieces("")
    ids = [token_ids(w)[0] for w in words]
    stops = []
    for sequence in params.get("stop_sequences") or []:
        for start in range(len(ids) - len(sequence) + 1):
            if sequence and ids[start : start + len(sequence)] == sequence:
                stops.append("".join(words[start : start + len(sequence)]).strip())
                break
    made = generate(words, params.get("max_length", 40), stops, keep_stop=True)
    return made.pieces if use_string else [encode(piece) for piece in made.pieces]


def build_app(state: NovelAIState) -> Starlette:
    """The fake's routes."""

    async def checked(request: Request) -> dict[str, Any] | Response:
        body = await state.record(request)
        if bearer(request) != state.token:
            return refusal(401, "Access Token is incorrect.")
        wrong = problem(body)
        if wrong:
            return refusal(400, wrong)
        if body["parameters"].get("use_string") is not True:
            try:
                decoded_count(body["input"])
            except ValueError:
                return refusal(400, "input must be base64-encoded tokens without use_string")
        return dict(body)

    async def generate_route(request: Request) -> Response:
        body = await checked(request)
        if isinstance(body, Response):
            return body
        tokens = answer(body)
        if body["parameters"].get("use_string") is True:
            return json_response({"output": "".join(tokens)}, 201)
        ids = b"".join(base64.b64decode(t) for t in tokens)
        return json_response({"output": base64.b64encode(ids).decode()}, 201)

    async def stream_route(request: Request) -> Response:
        body = await checked(request)
        if isinstance(body, Response):
            return body

        async def events(tokens: list[str]) -> AsyncIterator[bytes]:
            for ptr, token in enumerate(tokens):
                data = {
                    "token": token,
                    "ptr": ptr,
                    "final": ptr == len(tokens) - 1,
                    "logprobs": None,
                }
                yield sse(data, "newToken", str(ptr + 1))

        return StreamingResponse(events(answer(body)), media_type="text/event-stream")

    async def subscription(request: Request) -> Response:
        await state.record(request)
        if bearer(request) != state.token:
            return refusal(401, "Access Token is incorrect.")
        perks = {
            "maxPriorityActions": 1000,
            "startPriority": 10,
            "moduleTrainingSteps": 10000,
            "unlimitedMaxPriority": state.tier >= 3,
            "voiceGeneration": True,
            "imageGeneration": True,
            "unlimitedImageGeneration": state.tier >= 3,
            "unlimitedImageGenerationLimits": [],
            "contextTokens": state.context_tokens,
        }
        return json_response(
            {
                "tier": state.tier,
                "active": True,
                "expiresAt": 4_102_444_800,
                "perks": perks,
                "paymentProcessorData": None,
                "trainingStepsLeft": {"fixedTrainingStepsLeft": 10000, "purchasedTrainingSteps": 0},
                "accountType": 0,
            }
        )

    return Starlette(
        routes=[
            Route("/ai/generate", generate_route, methods=["POST"]),
            Route("/ai/generate-stream", stream_route, methods=["POST"]),
            Route("/user/subscription", subscription, methods=["GET"]),
        ]
    )
