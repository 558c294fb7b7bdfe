"""What every HTTP adapter shares: the request it builds and how upstream errors map."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

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
    mask_secret,
    redact,
)

AUTH_HEADERS = frozenset({"authorization", "x-api-key", "api-key", "x-goog-api-key"})
MAX_UPSTREAM_MESSAGE = 1000
# Headers the HTTP client owns: they frame the body or manage the pooled connection, so
# one set by hand desynchronises a kept-alive upstream connection (or re-routes it).
TRANSPORT_HEADERS = frozenset(
    {"host", "content-length", "transfer-encoding", "connection", "upgrade", "te", "trailer",
     "keep-alive"}
)  # fmt: skip
# RFC 9110 5.1 (a token) and 5.5 (visible ASCII and obs-text, with SP/HTAB only inside).
_FIELD_NAME = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_FIELD_VALUE = re.compile(r"(?:[\x21-\x7e\x80-\xff](?:[ \t]*[\x21-\x7e\x80-\xff])*)?")


@dataclass(slots=True)
class UpstreamRequest:
    """One HTTP request to a provider, built without I/O."""

    method: str
    url: str
    headers: dict[str, str] = field(default_factory=dict)
    body: dict[str, Any] | None = None
    stream: bool = False

    def preview(self, secrets: Iterable[str]) -> dict[str, Any]:
        """The request as `POST /api/preview` shows it: every secret masked."""
        known = [s for s in secrets if s]
        headers = {name: _mask_header(name, value, known) for name, value in self.headers.items()}
        body = orjson.loads(redact(orjson.dumps(self.body).decode(), known)) if self.body else None
        return {
            "method": self.method,
            "url": redact(self.url, known),
            "headers": headers,
            "body": body,
            "stream": self.stream,
        }


def header_problem(name: str, value: str) -> str | None:
    """Why *name*: *value* may not be sent as a header we add, or None when it may."""
    if not _FIELD_NAME.fullmatch(name):
        return f"{name!r} is not a valid header name (RFC 9110 token characters only)"
    lowered = name.lower()
    if lowered in TRANSPORT_HEADERS or lowered.startswith("proxy-"):
        return f"'{name}' is a hop-by-hop or framing header; only the HTTP client sets it"
    if not _FIELD_VALUE.fullmatch(value):
        # The value is not echoed: it may be a credential.
        return (
            f"the value of '{name}' is not a valid header value (no control characters such "
            "as CR, LF or NUL, no characters beyond U+00FF, no leading or trailing space)"
        )
    return None


def check_headers(headers: Mapping[str, str]) -> str | None:
    """The first `header_problem` among *headers*, if any."""
    for name, value in headers.items():
        problem = header_problem(name, value)
        if problem is not None:
            return problem
    return None


def add_request_extras(
    upstream: UpstreamRequest,
    params: dict[str, Any] | None,
    headers: dict[str, str] | None,
    *,
    protected: dict[str, Any],
    excluded: list[str],
    allow_auth_override: bool,
) -> None:
    """Merge a request's ``inference_extra_params`` and ``inference_extra_headers``.

    The connection's own ``extra_body`` (*protected*) wins over the request's params and
    ``exclude_params`` (*excluded*) still has the last word. A header that would replace
    the connection's credentials is refused unless the connection allows it; one that is
    malformed or belongs to the transport (`header_problem`) always is.
    """
    if params and upstream.body is not None:
        for name, value in params.items():
            if name not in protected:
                upstream.body[name] = value
        for name in excluded:
            upstream.body.pop(name, None)
    if not headers:
        return
    # Checked again here, not only at validation: a request may be built without it.
    problem = check_headers(headers)
    if problem is not None:
        raise InvalidRequestError(
            f"inference_extra_headers: {problem}",
            param="inference_extra_headers",
            code="invalid_header",
        )
    for name, value in headers.items():
        lowered = name.lower()
        if lowered in AUTH_HEADERS and not allow_auth_override:
            raise InvalidRequestError(
                f"inference_extra_headers may not set '{name}': it would replace the "
                "connection's credentials (the connection can allow it with "
                "allow_auth_override = true)",
                param="inference_extra_headers",
                code="auth_header_not_allowed",
            )
        # Header names are case-insensitive: replace the header, never send it twice.
        for existing in [k for k in upstream.headers if k.lower() == lowered]:
            del upstream.headers[existing]
        upstream.headers[name] = value


def _mask_header(name: str, value: str, secrets: list[str]) -> str:
    if name.lower() in AUTH_HEADERS:
        scheme, _, token = value.partition(" ")
        if token and scheme.lower() == "bearer":
            return f"{scheme} {mask_secret(token)}"
        return mask_secret(value)
    return redact(value, secrets)


def upstream_message(body: bytes) -> str:
    """The human message inside an upstream error body, whatever its dialect."""
    text = body.decode("utf-8", errors="replace").strip()
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        return text[:MAX_UPSTREAM_MESSAGE] or "(empty body)"
    found = _find_message(data)
    return (found or text)[:MAX_UPSTREAM_MESSAGE]


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
    if status == 429:
        retry = next((v for k, v in headers.items() if k.lower() == "retry-after"), None)
        return RateLimitError(
            said,
            code=code or "rate_limit_exceeded",
            headers={"Retry-After": retry} if retry else {},
        )
    if 400 <= status < 500:
        return InvalidRequestError(said, code=code)
    return UpstreamError(said, code=code)
