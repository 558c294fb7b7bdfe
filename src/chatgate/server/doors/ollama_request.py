"""Ollama's ``/api/chat`` and ``/api/generate`` bodies as chatgate's `ChatRequest`.

As Ollama's Go server does, a field it does not know is ignored, a known one of the
wrong JSON type is a 400, ``stream`` is true unless set to false, and a request with
nothing to generate (no messages, an empty prompt) only loads the model: `Preloaded`.
"""

from __future__ import annotations

import base64
import binascii
import time
from typing import Any

import orjson

from chatgate.errors import ChatgateError, InvalidRequestError
from chatgate.gateway import Gateway
from chatgate.server.doors.ollama_names import display_name, model_id_for, not_found
from chatgate.server.doors.ollama_options import request_fields, with_origin
from chatgate.server.doors.reach import may_reach
from chatgate.types import ChatRequest
from chatgate.validation import load_body, parse_chat_request

ROLES = frozenset({"system", "user", "assistant", "tool"})
THINK_LEVELS = {"low": "low", "medium": "medium", "high": "high", "max": "high"}
# The first bytes of each image format chatgate's backends take, and its media type.
MAGIC = (
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"GIF87a", "image/gif"),
    (b"GIF89a", "image/gif"),
)
JSON_TYPES = {
    str: "a string",
    bool: "a boolean",
    int: "a number",
    float: "a number",
    list: "an array",
    dict: "an object",
    type(None): "null",
}


class Preloaded(ChatgateError):
    """Nothing to generate: Ollama's way to load (or, with ``keep_alive: 0``, unload) a
    model. chatgate's models are ready while it runs, so the answer comes at once, as a
    200; it travels as an error only because that is how a door answers from
    ``decode``."""

    status = 200

    def __init__(self, body: dict[str, Any]) -> None:
        super().__init__(f"done: {body['done_reason']}")
        self.body = body


def now() -> str:
    """The time now as Ollama writes it (RFC 3339, UTC)."""
    seconds = time.time()
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))
    return f"{stamp}.{int(seconds % 1 * 1_000_000):06d}Z"


def _kind(value: Any) -> str:
    return JSON_TYPES.get(type(value), type(value).__name__)


def field(body: dict[str, Any], name: str, *types: type, default: Any = None) -> Any:
    """``body[name]`` if it is one of *types* (null counts as unset), else a 400."""
    value = body.get(name)
    if value is None:
        return default
    if isinstance(value, types) and not (isinstance(value, bool) and bool not in types):
        return value
    wanted = " or ".join(dict.fromkeys(JSON_TYPES[t] for t in types))
    raise InvalidRequestError(
        f"invalid type for '{name}': expected {wanted}, but got {_kind(value)}",
        param=name,
        code="invalid_type",
    )


def load(raw: bytes) -> dict[str, Any]:
    """The body as a JSON object, or a 400 (``missing request body`` when empty)."""
    if not raw.strip():
        raise InvalidRequestError("missing request body", code="invalid_json")
    body = load_body(raw)
    if not isinstance(body, dict):
        raise InvalidRequestError("the body must be a JSON object", code="invalid_json")
    return body


def image_part(data: Any, param: str) -> dict[str, Any]:
    """One of Ollama's base64 images as an ``image_url`` part with a ``data:`` URL."""
    if not isinstance(data, str) or not data:
        raise InvalidRequestError(f"{param} must be a base64 string", param=param)
    if data.startswith("data:"):  # some clients send a data URL; it says its type
        return {"type": "image_url", "image_url": {"url": data}}
    data = data.replace("\r", "").replace("\n", "")  # Go's decoder skips line breaks too
    try:
        head = base64.b64decode(data, validate=True)[:16]
    except (binascii.Error, ValueError):
        raise InvalidRequestError(f"{param} is not valid base64", param=param) from None
    media_type = next((t for magic, t in MAGIC if head.startswith(magic)), None)
    if media_type is None and head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        media_type = "image/webp"
    if media_type is None:
        raise InvalidRequestError(
            f"{param} is not a PNG, JPEG, GIF or WebP image", param=param, code="invalid_image"
        )
    return {"type": "image_url", "image_url": {"url": f"data:{media_type};base64,{data}"}}


def user_content(text: str, images: Any, param: str) -> str | list[dict[str, Any]]:
    """A user message's content: the text, with the images after it as parts."""
    if images is None or images == []:
        return text
    if not isinstance(images, list):
        raise InvalidRequestError(f"{param} must be an array", param=param, code="invalid_type")
    parts = [image_part(data, f"{param}[{i}]") for i, data in enumerate(images)]
    return [{"type": "text", "text": text}, *parts] if text else parts


def _arguments(value: Any, param: str) -> str:
    """Tool-call arguments (an object, as Ollama sends them) as chatgate's JSON text."""
    if isinstance(value, str):  # an OpenAI habit: accepted when it is an object's JSON
        try:
            value = orjson.loads(value) if value.strip() else {}
        except orjson.JSONDecodeError:
            value = None
    elif value is None:
        value = {}
    if not isinstance(value, dict):
        raise InvalidRequestError(f"{param} must be an object", param=param, code="invalid_type")
    return orjson.dumps(value).decode()


def _tool_calls(message: dict[str, Any], i: int, pending: list[tuple[str, str]]) -> list[Any]:
    """An assistant message's tool calls, each given an id if it has none (Ollama's
    often do not), and noted as *pending* until a tool message answers it."""
    out = []
    for j, call in enumerate(field(message, "tool_calls", list, default=[])):
        where = f"messages[{i}].tool_calls[{j}]"
        if not isinstance(call, dict) or not isinstance(call.get("function"), dict):
            raise InvalidRequestError(f"{where} must be an object with a function", param=where)
        function = call["function"]
        name = field(function, "name", str, default="")
        call_id = field(call, "id", str, default="") or f"call_{i}_{j}"
        arguments = _arguments(function.get("arguments"), f"{where}.function.arguments")
        out.append(
            {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}
        )
        pending.append((call_id, name))
    return out


def _answered(message: dict[str, Any], i: int, pending: list[tuple[str, str]]) -> str:
    """The id of the call a tool message answers: its ``tool_call_id``, else the
    earliest unanswered call of its ``tool_name``, else the earliest unanswered one."""
    given = field(message, "tool_call_id", str, default="")
    tool = field(message, "tool_name", str, default="")
    if given:
        pick = next((p for p in pending if p[0] == given), (given, tool))
    else:
        named = [p for p in pending if p[1] == tool] if tool else []
        pick = (named or pending or [(f"call_{i}", tool)])[0]
    if pick in pending:
        pending.remove(pick)
    return pick[0]


def _message(message: Any, i: int, pending: list[tuple[str, str]]) -> dict[str, Any]:
    at = f"messages[{i}]"
    if not isinstance(message, dict):
        raise InvalidRequestError(f"{at} must be an object", param=at, code="invalid_type")
    role = field(message, "role", str, default="").lower()  # Ollama lowercases roles
    if role not in ROLES:
        raise InvalidRequestError(
            f"invalid role {role[:40]!r} in {at}: one of system, user, assistant, tool",
            param=f"{at}.role",
        )
    text = field(message, "content", str, default="")
    images = message.get("images")
    if images and role != "user":
        raise InvalidRequestError(f"only user messages may hold images ({at})", param=at)
    out: dict[str, Any] = {"role": role, "content": user_content(text, images, f"{at}.images")}
    if role == "assistant":
        calls = _tool_calls(message, i, pending)
        if calls:
            out["tool_calls"] = calls
            out["content"] = text or None  # no empty text block beside the calls
        thinking = field(message, "thinking", str)
        if thinking:
            out["reasoning_content"] = thinking
    elif role == "tool":
        out["tool_call_id"] = _answered(message, i, pending)
    return out


def messages_of(raw: Any) -> list[dict[str, Any]]:
    """Ollama's messages as chatgate's (OpenAI's) message objects."""
    if not isinstance(raw, list):
        raise InvalidRequestError("messages must be an array", param="messages")
    pending: list[tuple[str, str]] = []
    return [_message(message, i, pending) for i, message in enumerate(raw)]


def tools_of(raw: Any) -> list[dict[str, Any]] | None:
    """Ollama's tools (OpenAI's shape; ``type`` defaults to ``function``)."""
    if raw is None or raw == []:
        return None
    if not isinstance(raw, list):
        raise InvalidRequestError("tools must be an array", param="tools", code="invalid_type")
    out = []
    for i, tool in enumerate(raw):
        function = tool.get("function") if isinstance(tool, dict) else None
        if not isinstance(function, dict):
            raise InvalidRequestError(f"tools[{i}] needs a function", param=f"tools[{i}]")
        spec = {
            k: function[k]
            for k in ("name", "description", "parameters")
            if function.get(k) is not None
        }
        out.append({"type": tool.get("type") or "function", "function": spec})
    return out


def format_of(raw: Any) -> dict[str, Any] | None:
    """``format`` (``"json"`` or a JSON schema) as a ``response_format``."""
    if raw is None or raw == "":
        return None
    if raw == "json":
        return {"type": "json_object"}
    if isinstance(raw, dict):
        return {"type": "json_schema", "json_schema": {"name": "format", "schema": raw}}
    raise InvalidRequestError(
        'invalid format: expected "json" or a JSON schema object', param="format"
    )


def _source(gateway: Gateway, model: str) -> str | None:
    backend = gateway.routes.get(model.partition("/")[0])
    return backend.connection.source if backend is not None else None


def think_of(body: dict[str, Any]) -> bool | str | None:
    """``think``: a boolean or a level, as Ollama takes it; a 400 for anything else."""
    think = body.get("think")
    if isinstance(think, str) and think in THINK_LEVELS:
        return think
    if think is None or isinstance(think, bool):
        return think
    shown = repr(think[:40]) if isinstance(think, str) else _kind(think)
    raise InvalidRequestError(
        f'invalid think value: {shown} (must be "high", "medium", "low", "max", true, or false)',
        param="think",
    )


def common(body: dict[str, Any], model: str, gateway: Gateway) -> dict[str, Any]:
    """What both routes share: ``stream``, ``format``, ``options``, ``think``,
    ``keep_alive``; Ollama's own ones pass on to an Ollama connection."""
    to_ollama = _source(gateway, model) == "ollama"
    out: dict[str, Any] = {
        "model": model,
        **request_fields(body.get("options"), to_ollama=to_ollama),
    }
    if field(body, "stream", bool, default=True):
        out["stream"] = True
        out["stream_options"] = {"include_usage": True}
    response_format = format_of(body.get("format"))
    if response_format is not None:
        out["response_format"] = response_format
    think = think_of(body)
    keep_alive = field(body, "keep_alive", str, int, float)
    if to_ollama:
        out.update(
            {k: v for k, v in (("think", think), ("keep_alive", keep_alive)) if v is not None}
        )
    elif think:
        out["reasoning_effort"] = "medium" if think is True else THINK_LEVELS[think]
    if field(body, "logprobs", bool, default=False):
        raise InvalidRequestError(
            "logprobs are not supported on chatgate's Ollama door", param="logprobs"
        )
    return out


def preload(body: dict[str, Any], name: str, model: str, gateway: Gateway, shape: str) -> Preloaded:
    """The answer to a request with nothing to generate (``shape``: chat or generate)."""
    if not may_reach(gateway, "ollama", model.partition("/")[0]):
        raise not_found(name)
    keep_alive = body.get("keep_alive")
    reason = "unload" if keep_alive in (0, "0", "0s", "0m") else "load"
    answer: dict[str, Any] = {"model": display_name(model), "created_at": now()}
    if shape == "chat":
        answer["message"] = {"role": "assistant", "content": ""}
    else:
        answer["response"] = ""
    return Preloaded({**answer, "done": True, "done_reason": reason})


def validated(fields: dict[str, Any]) -> ChatRequest:
    """*fields* as a `ChatRequest`, errors naming Ollama's fields."""
    try:
        return parse_chat_request(fields)
    except InvalidRequestError as exc:
        raise with_origin(exc) from None


def chat_request(raw: bytes, gateway: Gateway) -> ChatRequest:
    """An ``/api/chat`` body."""
    body = load(raw)
    name = field(body, "model", str, default="")
    if not name:
        raise InvalidRequestError("model is required", param="model")
    model = model_id_for(name, gateway)
    messages = body.get("messages")
    fields = common(body, model, gateway)
    if not messages:
        raise preload(body, name, model, gateway, "chat")
    fields["messages"] = messages_of(messages)
    tools = tools_of(body.get("tools"))
    if tools:
        fields["tools"] = tools
    return validated(fields)


def generate_request(raw: bytes, gateway: Gateway) -> ChatRequest:
    """An ``/api/generate`` body: with ``raw``, the prompt as it is (``raw_prompt``, and
    one user message for chat backends); without, ``system`` and the prompt as a chat."""
    body = load(raw)
    name = field(body, "model", str, default="")
    if not name:
        raise InvalidRequestError("model is required", param="model")
    model = model_id_for(name, gateway)
    fields = common(body, model, gateway)
    prompt = field(body, "prompt", str, default="")
    system = field(body, "system", str, default="")
    suffix = field(body, "suffix", str, default="")
    context = field(body, "context", list, default=[])
    is_raw = field(body, "raw", bool, default=False)
    if field(body, "template", str, default=""):
        raise InvalidRequestError(
            "template is not supported: chatgate renders prompts itself (an instruct "
            "template, or the backend's own); send raw: true with a prompt you formatted",
            param="template",
        )
    if context:
        raise InvalidRequestError(
            "context is not supported: chatgate returns no context token ids; send the "
            "conversation to /api/chat instead",
            param="context",
        )
    if is_raw and system:
        raise InvalidRequestError(
            "raw mode does not support template, system, or context", param="system"
        )
    if not prompt:
        raise preload(body, name, model, gateway, "generate")
    content = user_content(prompt, body.get("images"), "images")
    fields["messages"] = [*([{"role": "system", "content": system}] if system else []),
                          {"role": "user", "content": content}]  # fmt: skip
    if is_raw:
        fields["raw_prompt"] = prompt
    if suffix:
        fields["suffix"] = suffix
    return validated(fields)
