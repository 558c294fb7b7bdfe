"""The SGP v4 front door: ``POST /v4/beta/chat/completions``.

The same core as ``/v1``, with SGP's edges (``docs/api-v4.md``):

- ``model`` is ``vendor/model_name`` or ``vendor/model_name/deployment``; the vendor is a
  connection name, or a source id that exactly one connection uses;
- messages may omit ``role`` (a user message) and a user message may hold one part
  object instead of a list; an image part may carry bare base64 with ``media_type``;
- errors are ``{"detail": ...}``, validation errors a FastAPI-style 422 list;
- streams are SSE without ``[DONE]``; an error after the start is ``event: error``.
"""

from __future__ import annotations

import logging
import re
from collections.abc import AsyncIterator
from typing import Any

from pydantic import ValidationError

from chatgate.errors import ChatgateError, InvalidRequestError, ModelNotFoundError
from chatgate.gateway import Gateway
from chatgate.plan import Plan
from chatgate.routing import model_id
from chatgate.server.doors.base import DoorEntry
from chatgate.server.doors.chat_shapes import render_response, sse_chunks
from chatgate.server.responses import dumps
from chatgate.types import ChatChunk, ChatRequest, ChatResponse
from chatgate.validation import BodyValueError, describe, load_body, param_path

log = logging.getLogger("chatgate.server")


class ValidationFailed(ChatgateError):
    """A v4 request that does not match the schema: FastAPI's 422 list."""

    status = 422
    error_type = "invalid_request_error"

    def __init__(self, details: list[dict[str, Any]]) -> None:
        super().__init__(details[0]["msg"] if details else "invalid request")
        self.details = details


def sgp_error(exc: ChatgateError) -> dict[str, Any]:
    """The body of an error on the v4 front door."""
    if isinstance(exc, ValidationFailed):
        return {"detail": exc.details}
    return {"detail": exc.message}


class SGPDoor:
    """SGP v4 chat completions: the OpenAI answer shapes, SGP's requests and errors."""

    name = "sgp"

    def decode(self, raw: bytes, gateway: Gateway) -> ChatRequest:
        """A v4 body as our request, or a 422 in FastAPI's shape."""
        return parse_v4(raw, gateway)

    def encode_answer(self, answer: ChatResponse, plan: Plan) -> Any:
        """The ``chat.completion`` object, as on ``/v1``."""
        return render_response(answer)

    def encode_stream(self, chunks: AsyncIterator[ChatChunk], plan: Plan) -> AsyncIterator[bytes]:
        """``data:`` frames of chunks, without OpenAI's ``[DONE]``."""
        return sse_chunks(chunks, plan)

    def encode_error(self, exc: ChatgateError) -> Any:
        """``{"detail": ...}``."""
        return sgp_error(exc)

    def error_frame(self, exc: ChatgateError) -> bytes:
        """An ``event: error`` frame holding ``{"detail": ...}``."""
        return b"event: error\ndata: " + dumps(sgp_error(exc)) + b"\n\n"


def parse_v4(raw: bytes, gateway: Gateway) -> ChatRequest:
    """A v4 body as our `ChatRequest`, or a 422 in FastAPI's shape."""
    try:
        body = load_body(raw)
    except BodyValueError as exc:
        raise ValidationFailed(
            [{"loc": ["body", *exc.loc], "msg": exc.message, "type": "value_error"}]
        ) from None
    except InvalidRequestError as exc:
        reason = exc.message.removeprefix("the body is not valid JSON: ")
        raise ValidationFailed(
            [{"loc": ["body", 0], "msg": f"JSON decode error: {reason}", "type": "json_invalid"}]
        ) from None
    if not isinstance(body, dict):
        raise ValidationFailed(
            [{"loc": ["body"], "msg": "Input should be a valid dictionary", "type": "dict_type"}]
        )
    body = _normalise(body)
    try:
        request = ChatRequest.model_validate(body)
    except ValidationError as exc:
        raise ValidationFailed([_detail(e, body) for e in exc.errors(include_url=False)]) from None
    except InvalidRequestError as exc:
        raise ValidationFailed(
            [{"loc": ["body", *_loc(exc.param)], "msg": exc.message, "type": "value_error"}]
        ) from None
    return request.model_copy(update={"model": resolve_v4_model(request.model, gateway)})


def _normalise(body: dict[str, Any]) -> dict[str, Any]:
    """SGP's looser message shapes, as the OpenAI shapes the core takes."""
    messages = body.get("messages")
    if not isinstance(messages, list):
        return body
    fixed = []
    for message in messages:
        if isinstance(message, dict):
            message = dict(message)
            message.setdefault("role", "user")
            content = message.get("content")
            if isinstance(content, dict):  # one part object instead of a list
                content = [content]
            if isinstance(content, list):
                content = [_part(p) for p in content]
                message["content"] = content
        fixed.append(message)
    return {**body, "messages": fixed}


def _part(part: Any) -> Any:
    if not isinstance(part, dict) or part.get("type") != "image_url":
        return part
    image = part.get("image_url")
    if not isinstance(image, dict) or "media_type" not in image:
        return part
    image = dict(image)
    media_type = image.pop("media_type")
    url = image.get("url")
    if isinstance(url, str) and not url.startswith(("http://", "https://", "data:")):
        image["url"] = f"data:{media_type};base64,{url}"  # bare base64, as SGP allows
    return {**part, "image_url": image}


def _detail(error: Any, body: Any) -> dict[str, Any]:
    param = param_path(tuple(error["loc"]), body)
    message = describe(error, body).message if error["type"] != "missing" else "Field required"
    return {"loc": ["body", *_loc(param)], "msg": message, "type": error["type"]}


def _loc(param: str | None) -> list[str | int]:
    """``"messages[0].content"`` → ``["messages", 0, "content"]``."""
    if not param:
        return []
    out: list[str | int] = []
    for name, index in re.findall(r"([^.\[\]]+)|\[(\d+)\]", param):
        out.append(int(index) if index else name)
    return out


def resolve_v4_model(model: str, gateway: Gateway) -> str:
    """``vendor/model[/deployment]`` → our ``connection[@deployment]/model``."""
    vendor, _, rest = model.partition("/")
    if not rest:
        raise ModelNotFoundError(
            f"the model '{model}' is not 'vendor/model_name' or 'vendor/model_name/deployment'",
            param="model",
        )
    connections = gateway.settings.connections
    by_name = {c.name: c for c in connections}
    conn = by_name.get(vendor)
    if conn is None:
        users = [c for c in connections if c.source == vendor]
        if len(users) > 1:
            names = ", ".join(c.name for c in users)
            raise ModelNotFoundError(
                f"vendor '{vendor}' is ambiguous: connections {names} all use that "
                "source; name the connection instead",
                param="model",
            )
        conn = users[0] if users else None
    if conn is None:
        known = ", ".join(sorted({c.name for c in connections} | {c.source for c in connections}))
        raise ModelNotFoundError(
            f"unknown vendor '{vendor}' (known: {known or 'none'})", param="model"
        )
    head, _, last = rest.rpartition("/")
    if head and last in conn.deployments:
        return model_id(conn.name, head, last)
    return model_id(conn.name, rest)


DOOR = SGPDoor()
ENTRY = DoorEntry(
    errors=DOOR, chat={("POST", "/v4/beta/chat/completions"): DOOR}, paths=("/v4", "/v4/")
)
