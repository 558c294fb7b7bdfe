"""The one exception tree of chatgate.

Every error knows its HTTP status and renders itself as an OpenAI error object::

    ChatgateError                      500 server_error
    ├── InvalidRequestError            400 invalid_request_error
    │   ├── UnsupportedParameterError  400 (names the parameter)
    │   └── ContextLengthError         400 context_length_exceeded
    ├── AuthenticationError            401 authentication_error
    ├── PermissionDeniedError          403 permission_error
    ├── NotFoundError                  404 invalid_request_error
    │   └── ModelNotFoundError         404 model_not_found
    ├── RequestTooLargeError           413 invalid_request_error
    ├── RateLimitError                 429 rate_limit_exceeded
    ├── UpstreamError                  502 upstream_error
    ├── OverloadedError                503 engine_overloaded
    ├── GatewayTimeoutError            504 timeout
    └── ConfigError                    (start-up only; never reaches a client)

The message of an error is shown to the client as it is, so it must never contain a
secret; code that builds one from upstream text passes it through `redact()` first.
"""

from __future__ import annotations

from typing import Any, ClassVar

# Re-exported: every error message that quotes an upstream goes through them.
from chatgate.redaction import mask_secret as mask_secret
from chatgate.redaction import redact as redact


class ChatgateError(Exception):
    """Base of every error chatgate raises on purpose."""

    status: ClassVar[int] = 500
    error_type: ClassVar[str] = "server_error"
    default_code: ClassVar[str | None] = None

    def __init__(
        self,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self.code = code if code is not None else self.default_code
        self.headers: dict[str, str] = headers or {}

    def to_dict(self) -> dict[str, Any]:
        """The OpenAI error object: ``{"error": {message, type, param, code}}``."""
        return {
            "error": {
                "message": self.message,
                "type": self.error_type,
                "param": self.param,
                "code": self.code,
            }
        }


class InvalidRequestError(ChatgateError):
    """The request is malformed or asks for something impossible."""

    status = 400
    error_type = "invalid_request_error"


class UnsupportedParameterError(InvalidRequestError):
    """A parameter (or one of its values) that the chosen backend cannot honour."""

    default_code = "unsupported_parameter"


class ContextLengthError(InvalidRequestError):
    """The prompt plus the requested completion does not fit the model's context."""

    default_code = "context_length_exceeded"


class AuthenticationError(ChatgateError):
    """A missing or wrong gateway key (or an upstream that refused ours)."""

    status = 401
    error_type = "authentication_error"
    default_code = "invalid_api_key"


class PermissionDeniedError(ChatgateError):
    """Authenticated, but not allowed."""

    status = 403
    error_type = "permission_error"


class NotFoundError(ChatgateError):
    """A route or object that does not exist."""

    status = 404
    error_type = "invalid_request_error"
    default_code = "not_found"


class ModelNotFoundError(NotFoundError):
    """A model id that no configured connection serves."""

    default_code = "model_not_found"


class ConflictError(ChatgateError):
    """A change that collides with what exists (a name taken, a read-only object)."""

    status = 409
    error_type = "invalid_request_error"
    default_code = "conflict"


class RequestTooLargeError(ChatgateError):
    """A body over the configured size limit."""

    status = 413
    error_type = "invalid_request_error"
    default_code = "request_too_large"


class RateLimitError(ChatgateError):
    """Too many requests, here or upstream (``Retry-After`` is kept in headers)."""

    status = 429
    error_type = "rate_limit_error"
    default_code = "rate_limit_exceeded"


class UpstreamError(ChatgateError):
    """The upstream failed, lied, or died mid-answer."""

    status = 502
    error_type = "upstream_error"


class OverloadedError(ChatgateError):
    """The embedded engine's queue is full."""

    status = 503
    error_type = "server_error"
    default_code = "engine_overloaded"


class ShuttingDownError(ChatgateError):
    """The server is stopping and cut a request that had not finished."""

    status = 503
    error_type = "server_error"
    default_code = "server_shutting_down"

    def __init__(
        self,
        message: str = "chatgate is shutting down and cut this request before it finished; "
        "ask again",
    ) -> None:
        super().__init__(message, headers={"Retry-After": "1"})


class GatewayTimeoutError(ChatgateError):
    """A deadline passed before the upstream answered."""

    status = 504
    error_type = "timeout_error"
    default_code = "timeout"


class ConfigError(ChatgateError):
    """The configuration is unusable; raised at start-up, shown as one line."""
