"""An upstream's failures as our errors: a non-2xx answer in its own words with a fitting
status (`classify_error`), a connection that failed as a 502 (`transport_failure`)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import urlsplit

import orjson

from chatgate.errors import (
    AuthenticationError,
    ChatgateError,
    GatewayTimeoutError,
    InvalidRequestError,
    ModelNotFoundError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitError,
    RequestTooLargeError,
    UpstreamError,
    redact,
)
from chatgate.redaction import scrubbed

MAX_UPSTREAM_MESSAGE = 1000


class UpstreamAnsweredError(UpstreamError):
    """An upstream that answered 5xx: it was reached and refused (a 502 to our client,
    like every upstream failure), as opposed to one that could not be reached."""


def upstream_message(body: bytes) -> str:
    """The human message inside an upstream error body, whatever its dialect, without
    a Python traceback or file paths (`chatgate.redaction.scrubbed`)."""
    text = body.decode("utf-8", errors="replace").strip()
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        return scrubbed(text)[:MAX_UPSTREAM_MESSAGE] or "(empty body)"
    found = _find_message(data)
    return scrubbed(found or text)[:MAX_UPSTREAM_MESSAGE]


def _find_message(data: Any) -> str | None:
    if isinstance(data, list) and data:
        return _find_message(data[0])
    if not isinstance(data, dict):
        return str(data) if isinstance(data, str) else None
    for key in ("error", "detail", "message", "msg", "title"):
        value = data.get(key)
        if isinstance(value, str) and value:
            return value
        if isinstance(value, dict | list):
            inner = _find_message(value)
            if inner:
                return inner
    return None


def _upstream_code(body: bytes) -> str | None:
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    error = data.get("error") if isinstance(data, dict) else None
    if isinstance(error, dict):
        code = error.get("code") or error.get("type")
        return str(code) if code else None
    return None


def classify_error(
    status: int,
    body: bytes,
    headers: Mapping[str, str],
    connection: str,
    secrets: Iterable[str],
) -> ChatgateError:
    """An upstream non-2xx answer as our error: the upstream's words, a fitting status."""
    message = redact(upstream_message(body), secrets)
    said = f"connection '{connection}': upstream answered {status}: {message}"
    code = _upstream_code(body)
    if status == 401:
        return AuthenticationError(said, code="upstream_unauthorized")
    if status == 403:
        return PermissionDeniedError(said, code=code)
    if status == 404:
        if code == "model_not_found" or "model" in message.lower():
            return ModelNotFoundError(said, param="model")
        return NotFoundError(said, code=code)
    if status == 408:
        return GatewayTimeoutError(said)
    if status == 413:
        return RequestTooLargeError(said)
    # Retry-After means "come back then" on a 429 and a 503 (RFC 9110 10.2.3): kept on
    # both, for the retries to wait and for the client when the request fails.
    retry = None
    if status in (429, 503):
        retry = next((v for k, v in headers.items() if k.lower() == "retry-after"), None)
    waited = {"Retry-After": retry} if retry else {}
    if status == 429:
        return RateLimitError(said, code=code or "rate_limit_exceeded", headers=waited)
    if 400 <= status < 500:
        return InvalidRequestError(said, code=code)
    return UpstreamAnsweredError(said, code=code, headers=waited)


def transport_failure(
    connection: str, url: str, exc: Exception, secrets: Iterable[str], opened: bool
) -> UpstreamError:
    """A failed connection as a 502: after the answer began, a broken answer
    (``upstream_stream_broken``); before, an unreachable upstream (``upstream_unreachable``)."""
    from pyreqwest import exceptions as failed

    causes = (getattr(exc, "details", None) or {}).get("causes") or [{}]
    reason = str(causes[-1].get("message") or type(exc).__name__)[:200]
    if isinstance(exc, failed.ConnectError) and "refused" in reason.lower():
        reason = "connection refused"
    if opened:
        said = f"connection '{connection}': the upstream broke off the answer ({reason})"
        return UpstreamError(redact(said, secrets), code="upstream_stream_broken")
    where = urlsplit(url)
    port = f":{where.port}" if where.port else ""
    return UpstreamError(
        redact(
            f"connection '{connection}': cannot reach {where.scheme}://{where.hostname}{port} "
            f"({reason})",
            secrets,
        ),
        code="upstream_unreachable",
    )


def is_connect_timeout(exc: Exception) -> bool:
    """Whether a pyreqwest timeout is the connector's (TCP and TLS): pyreqwest calls every
    timeout before the answer's head a ``ConnectTimeoutError``, but only the connector's
    carries reqwest's ``(Connect)`` cause."""
    from pyreqwest import exceptions as failed

    if not isinstance(exc, failed.ConnectTimeoutError):
        return False
    causes = (getattr(exc, "details", None) or {}).get("causes") or []
    return any("(Connect)" in str(cause.get("message", "")) for cause in causes)
