"""The fuzzing job's rules, as schemathesis checks (loaded through ``SCHEMATHESIS_HOOKS``).

- No 5xx from chatgate's own code: 502, 503 and 504 say the upstream failed, was
  unavailable or too slow, and are fine; a 500 (or any other 5xx) is a bug in chatgate.
- Every answer is JSON in its door's shape: ``{"detail": str | list}`` under ``/v4``, the
  OpenAI error object everywhere else; a stream is SSE whose every frame is JSON.

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

UPSTREAM_STATUSES = frozenset({502, 503, 504})
OPENAI_ERROR_KEYS = {"message", "type", "param", "code"}
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
    """The answer is JSON (or SSE of JSON frames), and an error is in the door's shape."""
    content_type = (response.headers.get("content-type") or [""])[0]
    sgp = case.path.startswith("/v4/")
    if content_type.startswith("text/event-stream"):
        if response.status_code != 200:
            raise AssertionError(f"a {response.status_code} sent as a stream")
        _check_frames(response.content, sgp)
        return None
    if not content_type.startswith("application/json"):
        raise AssertionError(f"not JSON: content-type {content_type!r}")
    try:
        body = orjson.loads(response.content)
    except orjson.JSONDecodeError:
        raise AssertionError(f"invalid JSON: {response.content[:300]!r}") from None
    if response.status_code >= 400:
        _check_error(body, sgp)
    elif not isinstance(body, dict):
        raise AssertionError(f"an answer that is not an object: {body!r}")
    return None


def _check_error(body: Any, sgp: bool) -> None:
    """*body* is an error in the v4 door's shape if *sgp*, else in OpenAI's."""
    if sgp:
        if not isinstance(body, dict) or set(body) != {"detail"}:
            raise AssertionError(f"a /v4 error not shaped {{'detail': ...}}: {body!r}")
        if not isinstance(body["detail"], str | list):
            raise AssertionError(f"a /v4 detail that is neither text nor a list: {body!r}")
        return
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, dict) or set(error) != OPENAI_ERROR_KEYS:
        raise AssertionError(f"an error not shaped like OpenAI's: {body!r}")
    if not isinstance(error["message"], str) or not isinstance(error["type"], str):
        raise AssertionError(f"an OpenAI error whose message or type is not text: {body!r}")


def _check_frames(content: bytes, sgp: bool) -> None:
    """Every ``data:`` frame is JSON (OpenAI's stream ends with ``[DONE]``, SGP's does not)."""
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
            _check_error(value, sgp)
