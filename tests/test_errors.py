"""The error tree renders OpenAI error objects and never leaks a secret."""

from __future__ import annotations

import pytest

from chatgate import errors


@pytest.mark.parametrize(
    ("cls", "status", "etype", "code"),
    [
        (errors.InvalidRequestError, 400, "invalid_request_error", None),
        (errors.UnsupportedParameterError, 400, "invalid_request_error", "unsupported_parameter"),
        (errors.ContextLengthError, 400, "invalid_request_error", "context_length_exceeded"),
        (errors.AuthenticationError, 401, "authentication_error", "invalid_api_key"),
        (errors.PermissionDeniedError, 403, "permission_error", None),
        (errors.ModelNotFoundError, 404, "invalid_request_error", "model_not_found"),
        (errors.RequestTooLargeError, 413, "invalid_request_error", "request_too_large"),
        (errors.RateLimitError, 429, "rate_limit_error", "rate_limit_exceeded"),
        (errors.UpstreamError, 502, "upstream_error", None),
        (errors.OverloadedError, 503, "server_error", "engine_overloaded"),
        (errors.GatewayTimeoutError, 504, "timeout_error", "timeout"),
    ],
)
def test_each_error_renders_itself(
    cls: type[errors.ChatgateError], status: int, etype: str, code: str | None
) -> None:
    error = cls("it went wrong", param="p")
    assert error.status == status
    assert error.to_dict() == {
        "error": {"message": "it went wrong", "type": etype, "param": "p", "code": code}
    }


def test_explicit_code_wins() -> None:
    assert errors.InvalidRequestError("x", code="c").to_dict()["error"]["code"] == "c"


@pytest.mark.parametrize(
    ("secret", "masked"),
    [
        ("sk-abcdefghijklmnop1234", "sk-...1234"),
        ("short", "..."),
        ("AIzaSyXXXXXXXXwxyz", "AIz...wxyz"),
    ],
)
def test_mask_secret(secret: str, masked: str) -> None:
    assert errors.mask_secret(secret) == masked


def test_redact_replaces_every_secret() -> None:
    text = "key sk-abcdefghijklmnop1234 and again sk-abcdefghijklmnop1234, other tok-99999999zz"
    out = errors.redact(text, ["sk-abcdefghijklmnop1234", "tok-99999999zz", ""])
    assert "abcdefghijklmnop" not in out
    assert "99999999" not in out
    assert out.count("sk-...1234") == 2
