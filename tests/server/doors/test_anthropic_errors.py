"""Bad input of every kind is a clear 400 in Anthropic's error shape, never a 500; every
error status has Anthropic's error type, and the official SDK raises its own classes."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import anthropic
import httpx
import orjson
import pytest

from chatgate.config import Connection, DoorOptions, Settings
from chatgate.errors import (
    AuthenticationError,
    ChatgateError,
    ConflictError,
    GatewayTimeoutError,
    InvalidRequestError,
    ModelNotFoundError,
    OverloadedError,
    PermissionDeniedError,
    RateLimitError,
    RequestTooLargeError,
    UpstreamError,
)
from chatgate.server.doors.anthropic_encode import render_error, stop_reason
from tests.conftest import LiveServer, start_server
from tests.fakes.openai_server import FakeOpenAI
from tests.server.doors.test_anthropic_servers import (
    KEY,
    claude_fake,
    door_server,
    parse_events,
    post,
    sdk,
    user,
)

OK: dict[str, Any] = {"model": "chat/gpt-fake-1", "max_tokens": 9, "messages": user("Hi")}


@pytest.fixture(scope="module")
def server(fake_openai: FakeOpenAI) -> Iterator[LiveServer]:
    with claude_fake() as claude, door_server(fake_openai.url, claude.url) as info:
        yield info


def _with(**changes: Any) -> dict[str, Any]:
    body = {**OK, **changes}
    return {k: v for k, v in body.items() if v is not None}


def _blocks(*blocks: Any, role: str = "user") -> list[Any]:
    return [{"role": role, "content": list(blocks)}]


NESTED: Any = {"a": 1}
for _ in range(80):
    NESTED = {"a": NESTED}

# (body, words the message must hold)
BAD_BODIES: list[tuple[Any, str]] = [
    (b'{"model": "chat/m", ', "not valid JSON"),
    (b"[1, 2]", "must be a JSON object"),
    (b'"just a string"', "must be a JSON object"),
    (_with(max_tokens=None), "max_tokens: Field required"),
    (_with(model=None), "model: Field required"),
    (_with(messages=None), "messages: Field required"),
    (_with(max_tokens="20"), "max_tokens: Input should be a valid integer"),
    (_with(max_tokens=0), "max_tokens: Input should be greater than or equal to 1"),
    (_with(max_tokens=2**40), "max_tokens: Input should be less than or equal to"),
    (b'{"model": "chat/m", "max_tokens": 1000000000000000000000000000000}', "max_tokens"),
    (_with(temperature="hot"), "temperature: Input should be a valid number"),
    (_with(temperature=1.5), "temperature: Input should be less than or equal to 1"),
    (b'{"model": "chat/m", "max_tokens": 5, "temperature": 1e400, "messages": []}', "temperature"),
    (_with(top_k=-1), "top_k"),
    (_with(stream="yes"), "stream: Input should be a valid boolean"),
    (_with(messages=[]), "messages: List should have at least 1 item"),
    (_with(messages="Hi"), "messages: Input should be a valid list"),
    (_with(messages=[{"role": "robot", "content": "x"}]), "messages[0].role"),
    (_with(messages=[{"role": "user"}]), "messages[0].content: Field required"),
    (_with(messages=[{"role": "user", "content": 5}]), "messages[0].content"),
    (_with(messages=user("")), "messages[0].content: String should have at least 1 character"),
    (_with(messages=[{"role": "user", "content": []}]), "messages[0].content: List should have"),
    (_with(messages=_blocks({"type": "video", "url": "x"})), "messages[0].content[0]"),
    (_with(messages=_blocks({"type": "text"})), "messages[0].content[0].text: Field required"),
    (
        _with(messages=_blocks({"type": "text", "text": "x", "colour": "red"})),
        "messages[0].content[0].colour: Extra inputs are not permitted",
    ),
    (
        _with(
            messages=_blocks(
                {
                    "type": "image",
                    "source": {"type": "base64", "media_type": "image/bmp", "data": "x"},
                }
            )
        ),
        "media_type",
    ),
    (
        _with(messages=_blocks({"type": "image", "source": {"type": "url", "url": "ftp://x"}})),
        "url",
    ),
    (
        _with(messages=_blocks({"type": "tool_use", "id": "t", "name": "f", "input": {}})),
        "cannot hold a 'tool_use' block",
    ),
    (
        _with(
            messages=[
                *user("Hi"),
                *_blocks({"type": "tool_result", "tool_use_id": "t"}, role="assistant"),
            ]
        ),
        "cannot hold a 'tool_result' block",
    ),
    (
        _with(messages=_blocks({"type": "thinking", "thinking": "x"}, role="assistant")),
        "signature: Field required",
    ),
    (_with(system=5), "system"),
    (_with(stop_sequences=["a", "b", "c", "d", "e"]), "at most 4 stop sequences"),
    (_with(tools=[{"name": "f"}]), "tools[0].input_schema: Field required"),
    (
        _with(tools=[{"type": "web_search_20250305", "name": "web_search"}]),
        "server tools, which chatgate does not run",
    ),
    (_with(tool_choice={"type": "sometimes"}), "tool_choice"),
    (_with(tool_choice={"type": "tool"}), "tool_choice.name: Field required"),
    (_with(thinking={"type": "enabled", "budget_tokens": 10}), "budget_tokens"),
    (_with(thinking={"type": "enabled"}), "thinking.budget_tokens: Field required"),
    (_with(metadata={"user_id": "u", "org": "o"}), "metadata.org: Extra inputs"),
    (_with(frequency_penalty=1), "frequency_penalty: Extra inputs are not permitted"),
    (_with(n=2), "n: Extra inputs are not permitted"),
    (_with(container={"id": "c"}), "container: chatgate's Anthropic door does not implement"),
    (_with(nested=NESTED), "nest"),
]


@pytest.mark.parametrize(("body", "words"), BAD_BODIES)
def test_bad_input_is_a_clear_400(server: LiveServer, body: Any, words: str) -> None:
    answer = post(server, body)
    assert answer.status_code == 400, answer.text
    said = answer.json()
    assert said["type"] == "error"
    assert said["error"]["type"] == "invalid_request_error"
    assert words in said["error"]["message"]


def test_count_tokens_takes_no_max_tokens(server: LiveServer) -> None:
    answer = post(server, OK, "/v1/messages/count_tokens")
    assert answer.status_code == 400
    assert answer.json()["error"]["message"] == "max_tokens: Extra inputs are not permitted"
    counted = post(server, {"model": "chat/m", "messages": user("Hi")}, "/v1/messages/count_tokens")
    assert counted.status_code == 200 and counted.json()["input_tokens"] > 0


@pytest.mark.parametrize(
    ("error", "kind"),
    [
        (InvalidRequestError("x"), "invalid_request_error"),
        (AuthenticationError("x"), "authentication_error"),
        (PermissionDeniedError("x"), "permission_error"),
        (ModelNotFoundError("x"), "not_found_error"),
        (ConflictError("x"), "invalid_request_error"),
        (RequestTooLargeError("x"), "request_too_large"),
        (RateLimitError("x"), "rate_limit_error"),
        (ChatgateError("x"), "api_error"),
        (UpstreamError("x"), "api_error"),
        (OverloadedError("x"), "overloaded_error"),
        (GatewayTimeoutError("x"), "timeout_error"),
    ],
)
def test_error_types_by_status(error: ChatgateError, kind: str) -> None:
    assert render_error(error) == {"type": "error", "error": {"type": kind, "message": "x"}}


@pytest.mark.parametrize(
    ("finish", "stop_sequence", "tools", "reason"),
    [
        ("stop", None, False, "end_turn"),
        ("stop", "END", False, "stop_sequence"),
        ("length", None, False, "max_tokens"),
        ("tool_calls", None, True, "tool_use"),
        ("function_call", None, True, "tool_use"),
        ("stop", None, True, "tool_use"),
        ("content_filter", None, False, "refusal"),
        (None, None, False, "end_turn"),
    ],
)
def test_stop_reasons(finish: Any, stop_sequence: str | None, tools: bool, reason: str) -> None:
    assert stop_reason(finish, stop_sequence, tools) == reason


@pytest.mark.parametrize(
    ("model", "status", "kind", "raised"),
    [
        ("chat/error-400", 400, "invalid_request_error", anthropic.BadRequestError),
        ("chat/error-429", 429, "rate_limit_error", anthropic.RateLimitError),
        ("chat/error-500", 502, "api_error", anthropic.InternalServerError),
        ("chat/error-503", 502, "api_error", anthropic.InternalServerError),
        ("nowhere/m", 404, "not_found_error", anthropic.NotFoundError),
    ],
)
def test_the_sdk_raises_its_own_classes(
    server: LiveServer, model: str, status: int, kind: str, raised: type[Exception]
) -> None:
    with sdk(server) as client, pytest.raises(raised) as caught:
        client.messages.create(model=model, max_tokens=9, messages=user("Hi"))
    error = caught.value
    assert isinstance(error, anthropic.APIStatusError)
    assert error.status_code == status
    assert isinstance(error.body, dict) and error.body["error"]["type"] == kind


def test_a_bad_key_and_a_bad_body_in_the_sdk(server: LiveServer) -> None:
    with sdk(server, "gw-Wr0ngK3y9x") as wrong, sdk(server) as client:
        with pytest.raises(anthropic.AuthenticationError) as caught:
            wrong.messages.create(model="chat/gpt-fake-1", max_tokens=9, messages=user("Hi"))
        assert isinstance(caught.value.body, dict)
        assert caught.value.body["error"]["type"] == "authentication_error"
        with pytest.raises(anthropic.BadRequestError):
            client.messages.create(model="chat/gpt-fake-1", max_tokens=9, messages=[])
        with pytest.raises(anthropic.AuthenticationError):
            wrong.messages.count_tokens(model="chat/gpt-fake-1", messages=user("Hi"))


def test_a_missing_key_is_a_401_in_anthropic_s_shape(server: LiveServer) -> None:
    answer = httpx.post(server.url + "/v1/messages", json=OK, timeout=30)
    assert answer.status_code == 401
    assert answer.json()["error"]["type"] == "authentication_error"


def test_an_error_after_the_stream_began_is_an_error_event(server: LiveServer) -> None:
    answer = post(server, _with(model="chat/oops-1", stream=True))
    assert answer.status_code == 200
    events = parse_events(answer.text)
    assert events[0][0] == "message_start"
    kind, data = events[-1]
    assert kind == "error" and data["error"]["type"] in ("api_error", "overloaded_error")
    with sdk(server) as client, pytest.raises(anthropic.APIStatusError) as caught:
        for _ in client.messages.create(stream=True, **_with(model="chat/oops-1")):
            pass
    assert isinstance(caught.value.body, dict) and caught.value.body["type"] == "error"


def test_an_upstream_error_before_the_stream_is_an_http_error(server: LiveServer) -> None:
    answer = post(server, _with(model="chat/error-429", stream=True))
    assert answer.status_code == 429
    assert answer.json()["error"]["type"] == "rate_limit_error"
    assert answer.headers["retry-after"] == "7"


def test_routes_under_v1_messages_answer_in_anthropic_s_shape(server: LiveServer) -> None:
    headers = {"x-api-key": KEY}
    missing = httpx.post(server.url + "/v1/messages/batches", json={}, headers=headers)
    assert missing.status_code == 404
    assert missing.json()["error"]["type"] == "not_found_error"
    wrong_method = httpx.get(server.url + "/v1/messages", headers=headers)
    assert wrong_method.status_code == 405
    assert wrong_method.json()["error"]["type"] == "invalid_request_error"
    not_json = httpx.post(
        server.url + "/v1/messages",
        content=b"hi",
        headers={**headers, "content-type": "text/plain"},
    )
    assert not_json.status_code == 415
    assert not_json.json()["type"] == "error"


@pytest.fixture(scope="module")
def narrow(fake_openai: FakeOpenAI) -> Iterator[LiveServer]:
    """A server whose Anthropic door reaches only ``chat``, with a small body limit."""
    settings = Settings(
        embedded=False,
        connections=[
            Connection(name="chat", source="custom", base_url=f"{fake_openai.url}/v1"),
            Connection(name="other", source="custom", base_url=f"{fake_openai.url}/v1"),
        ],
        doors={"anthropic": DoorOptions(connections=["chat"])},
    )
    settings.server.api_keys = [KEY]
    settings.server.max_body_bytes = 4096
    info, uv, thread = start_server(settings)
    yield info
    uv.should_exit = True
    thread.join(timeout=10)


@pytest.mark.parametrize("path", ["/v1/messages", "/v1/messages/count_tokens"])
def test_a_connection_the_door_may_not_reach_is_a_404(narrow: LiveServer, path: str) -> None:
    body: dict[str, Any] = {"model": "other/gpt-fake-1", "messages": user("Hi")}
    if path == "/v1/messages":
        body["max_tokens"] = 9
    answer = post(narrow, body, path)
    assert answer.status_code == 404
    assert answer.json()["error"]["type"] == "not_found_error"
    assert "[doors.anthropic]" in answer.json()["error"]["message"]


@pytest.mark.parametrize("path", ["/v1/messages", "/v1/messages/count_tokens"])
def test_a_body_over_the_limit_is_request_too_large(narrow: LiveServer, path: str) -> None:
    body = orjson.dumps({**OK, "messages": user("x" * 5000)})
    answer = post(narrow, body, path)
    assert answer.status_code == 413
    assert answer.json()["error"]["type"] == "request_too_large"
    with sdk(narrow) as client, pytest.raises(anthropic.APIStatusError) as caught:
        client.messages.create(model="chat/gpt-fake-1", max_tokens=9, messages=user("x" * 5000))
    assert caught.value.status_code == 413
