"""The fuzzing job's rules, as schemathesis checks (loaded through ``SCHEMATHESIS_HOOKS``).

- No 5xx from chatgate's own code: 502, 503 and 504 say the upstream failed, was
  unavailable or too slow, and are fine; a 500 (or any other 5xx) is a bug in chatgate.
- Every answer is JSON in its door's shape: ``{"detail": str | list}`` under ``/v4``,
  elsewhere the shape the path's door gives its errors (`chatgate.server.app.door_for`):
  OpenAI's error object, Anthropic's, Ollama's, KoboldCpp's, llama.cpp's; a stream is SSE
  whose every frame is JSON, or NDJSON whose every line is.

A generated ``model`` is almost never one that exists, so most bodies would stop at the
404; `map_body` points three bodies in four at models the fake upstream knows,
including the ones that make it fail (``tests/fakes/openai_server.py``).
"""

from __future__ import annotations

import zlib
from typing import Any

import orjson
import schemathesis
from schemathesis import CheckContext, HookContext, Response
from schemathesis.generation.case import Case

from chatgate.errors import ChatgateError
from chatgate.server.app import door_for

UPSTREAM_STATUSES = frozenset({502, 503, 504})
# `connection/model` on /v1 and `vendor/model` on /v4 are spelled the same for these.
MODELS = [
    "fake/gpt-fake-1",
    "fake/tool-weather",
    "fake/reason-1",
    "fake/lie-1",
    "fake/die-1",
    "fake/oops-1",
    "fake/error-500",
    "fake/error-429",
    "down/gpt-4o",
]


@schemathesis.hook
def map_body(context: HookContext, body: Any) -> Any:
    """*body* with a model that exists, three times in four (by a stable hash of the
    body, so the seed alone decides)."""
    if not isinstance(body, dict) or not isinstance(body.get("model"), str):
        return body
    pick = zlib.crc32(repr(body).encode("utf-8", "surrogatepass")) % (len(MODELS) * 4 // 3)
    return {**body, "model": MODELS[pick]} if pick < len(MODELS) else body


@schemathesis.check
def no_own_server_error(ctx: CheckContext, response: Response, case: Case[Any]) -> bool | None:
    """A 5xx is allowed only when it says the upstream failed."""
    status = response.status_code
    if status < 500:
        return None
    if status not in UPSTREAM_STATUSES:
        raise AssertionError(f"chatgate's own {status}: {response.content[:300]!r}")
    if b"internal error in chatgate" in response.content:
        raise AssertionError(f"a bug reported as a {status}: {response.content[:300]!r}")
    return None


@schemathesis.check
def door_shaped_json(ctx: CheckContext, response: Response, case: Case[Any]) -> bool | None:
    """The answer is JSON (or a stream of JSON frames or lines), and an error is in the
    door's shape."""
    content_type = (response.headers.get("content-type") or [""])[0]
    path = case.path
    if content_type.startswith(("text/event-stream", "application/x-ndjson")):
        if response.status_code != 200:
            raise AssertionError(f"a {response.status_code} sent as a stream")
        if content_type.startswith("application/x-ndjson"):
            _check_lines(response.content, path)
        else:
            _check_frames(response.content, path)
        return None
    if not content_type.startswith("application/json"):
        raise AssertionError(f"not JSON: content-type {content_type!r}")
    try:
        body = orjson.loads(response.content)
    except orjson.JSONDecodeError:
        raise AssertionError(f"invalid JSON: {response.content[:300]!r}") from None
    if response.status_code >= 400:
        _check_error(body, path)
    elif not isinstance(body, dict | list):
        raise AssertionError(f"an answer that is neither an object nor a list: {body!r}")
    return None


def _skeleton(value: Any) -> Any:
    """The shape of a JSON value: an object's keys (each with its value's shape), and
    the kind of anything else (a null and a string are both "text-like")."""
    if isinstance(value, dict):
        return {key: _skeleton(item) for key, item in value.items()}
    if isinstance(value, list):
        return "list"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "number"
    return "text"


def _check_error(body: Any, path: str) -> None:
    """*body* is an error in the shape of the door *path* belongs to: the shape that
    door's own codec gives an error (``Door.encode_error``), key for key."""
    door = door_for(path)
    if door.name == "sgp":
        if not isinstance(body, dict) or set(body) != {"detail"}:
            raise AssertionError(f"a /v4 error not shaped {{'detail': ...}}: {body!r}")
        if not isinstance(body["detail"], str | list):
            raise AssertionError(f"a /v4 detail that is neither text nor a list: {body!r}")
        return
    expected = _skeleton(door.encode_error(ChatgateError("a sample")))
    got = _skeleton(body)
    if not _same_keys(expected, got):
        raise AssertionError(f"an error not shaped as the {door.name} door's: {body!r}")


def _same_keys(expected: Any, got: Any) -> bool:
    """Whether *got* has exactly *expected*'s keys, at every depth (leaf kinds may
    differ: a ``param`` or ``code`` is null or text)."""
    if isinstance(expected, dict):
        return (
            isinstance(got, dict)
            and set(got) == set(expected)
            and all(_same_keys(expected[k], got[k]) for k in expected)
        )
    return not isinstance(got, dict)


def _check_lines(content: bytes, path: str) -> None:
    """Every NDJSON line is a JSON object; an error line is in the door's shape."""
    for line in content.splitlines():
        if not line.strip():
            continue
        try:
            value = orjson.loads(line)
        except orjson.JSONDecodeError:
            raise AssertionError(f"a stream line that is not JSON: {line[:300]!r}") from None
        if not isinstance(value, dict):
            raise AssertionError(f"a stream line that is not an object: {line[:300]!r}")
        if "error" in value and "done" not in value:
            _check_error(value, path)


def _check_frames(content: bytes, path: str) -> None:
    """Every ``data:`` frame is JSON (OpenAI's streams end with ``[DONE]``, others do
    not)."""
    sgp = door_for(path).name == "sgp"
    for frame in content.replace(b"\r\n", b"\n").split(b"\n\n"):
        lines = [line for line in frame.split(b"\n") if line]
        data = b"".join(line.removeprefix(b"data: ") for line in lines if line.startswith(b"data:"))
        if not data or (data == b"[DONE]" and not sgp):
            continue
        try:
            value = orjson.loads(data)
        except orjson.JSONDecodeError:
            raise AssertionError(f"a stream frame that is not JSON: {frame[:300]!r}") from None
        if lines[0] == b"event: error":
            _check_error(value, path)
