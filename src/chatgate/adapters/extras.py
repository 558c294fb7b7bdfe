"""What a request may add to the upstream request: ``inference_extra_params`` and
``inference_extra_headers``, and the header rules both the config and requests obey."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from chatgate.errors import InvalidRequestError
from chatgate.upstream import AUTH_HEADERS, UpstreamRequest

if TYPE_CHECKING:  # annotations only: the request types import this module's checks
    from chatgate.config import Connection
    from chatgate.types import ChatRequest

# Headers the HTTP client owns: they frame the body or manage the pooled connection, so
# one set by hand desynchronises a kept-alive upstream connection (or re-routes it).
TRANSPORT_HEADERS = frozenset(
    {"host", "content-length", "transfer-encoding", "connection", "upgrade", "te", "trailer",
     "keep-alive"}
)  # fmt: skip
# RFC 9110 5.1 (a token) and 5.5 (visible ASCII and obs-text, with SP/HTAB only inside).
_FIELD_NAME = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_FIELD_VALUE = re.compile(r"(?:[\x21-\x7e\x80-\xff](?:[ \t]*[\x21-\x7e\x80-\xff])*)?")


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


def finish_request(
    upstream: UpstreamRequest, request: ChatRequest, connection: Connection
) -> UpstreamRequest:
    """*upstream* with *request*'s extras added under *connection*'s rules
    (`add_request_extras`)."""
    add_request_extras(
        upstream,
        request.inference_extra_params,
        request.inference_extra_headers,
        protected=connection.extra_body,
        excluded=connection.exclude_params,
        allow_auth_override=connection.allow_auth_override,
    )
    return upstream


def add_request_extras(
    upstream: UpstreamRequest,
    params: dict[str, Any] | None,
    headers: dict[str, str] | None,
    *,
    protected: dict[str, Any],
    excluded: list[str],
    allow_auth_override: bool,
) -> None:
    """Finish an upstream body and headers, in this order, for every adapter alike:
    the connection's ``extra_body`` (*protected*), then the request's
    ``inference_extra_params`` where they do not override it, then the connection's
    ``exclude_params`` (*excluded*), which has the last word; then the request's
    ``inference_extra_headers``.

    A header that would replace the connection's credentials is refused unless the
    connection allows it; one that is malformed or belongs to the transport
    (`header_problem`) always is.
    """
    if not (protected or params or excluded or headers):
        return  # most requests: nothing to add
    body = upstream.body
    if body is not None:
        body.update(protected)
        for name, value in (params or {}).items():
            if name not in protected:
                body[name] = value
        for name in excluded:
            body.pop(name, None)
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
