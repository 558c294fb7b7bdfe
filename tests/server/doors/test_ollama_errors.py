"""Bad input on the Ollama door: always ``{"error": "..."}`` with Ollama's status, never a
500; errors after a stream began are a last NDJSON line; the routes chatgate does not
have say why."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from typing import Any

import httpx
import orjson
import pytest

from tests.conftest import LiveServer
from tests.server.doors.ollama_servers import PNG, claude_fake, door

__all__ = ["claude_fake", "door"]  # the fixtures, used by name

HI = [{"role": "user", "content": "Hi"}]
CHAT = {"model": "claude/m", "messages": HI, "stream": False}


@pytest.fixture()
def http(door: LiveServer) -> Iterator[httpx.Client]:
    with door.client() as client:
        yield client


def error_of(answer: httpx.Response, status: int) -> str:
    """The message of an Ollama-shaped error with *status*."""
    assert answer.status_code == status, answer.text
    assert answer.headers["content-type"].startswith("application/json")
    body = answer.json()
    assert set(body) == {"error"} and isinstance(body["error"], str), body
    message: str = body["error"]
    return message


BAD_CHATS: list[tuple[Any, str]] = [
    ({"messages": HI}, "model is required"),
    ({**CHAT, "model": 7}, "invalid type for 'model'"),
    ({**CHAT, "messages": "hi"}, "messages must be an array"),
    ({**CHAT, "messages": [{"role": "robot", "content": "x"}]}, "invalid role 'robot'"),
    ({**CHAT, "messages": [{"role": "user", "content": 5}]}, "'content'"),
    ({**CHAT, "stream": "yes"}, "invalid type for 'stream'"),
    ({**CHAT, "options": "hot"}, "options must be an object"),
    ({**CHAT, "options": {"temperature": "hot"}}, 'option "temperature" must be of type float'),
    ({**CHAT, "options": {"num_predict": True}}, 'option "num_predict" must be of type integer'),
    ({**CHAT, "options": {"stop": [1]}}, 'option "stop" must be of type array of strings'),
    ({**CHAT, "options": {"num_predict": 1e300}}, 'option "num_predict" is out of range'),
    ({**CHAT, "options": {"seed": 2**70}}, "'options.seed'"),
    ({**CHAT, "options": {"temperature": 1e308}}, "'options.temperature'"),
    ({**CHAT, "options": {"top_p": 7}}, "'options.top_p'"),
    ({**CHAT, "format": 5}, 'expected "json" or a JSON schema'),
    ({**CHAT, "think": "very"}, "invalid think value"),
    ({**CHAT, "keep_alive": [1]}, "invalid type for 'keep_alive'"),
    ({**CHAT, "logprobs": True}, "logprobs are not supported"),
    ({**CHAT, "tools": "x"}, "tools must be an array"),
    ({**CHAT, "tools": [{"type": "function"}]}, "tools[0] needs a function"),
    (
        {**CHAT, "messages": [{"role": "user", "content": "x", "images": ["%%%"]}]},
        "messages[0].images[0] is not valid base64",
    ),
    (
        {
            **CHAT,
            "messages": [
                {"role": "user", "content": "x", "images": [base64.b64encode(b"text").decode()]}
            ],
        },
        "is not a PNG, JPEG, GIF or WebP image",
    ),
    (
        {**CHAT, "messages": [{"role": "assistant", "content": "x", "images": [PNG]}]},
        "only user messages may hold images",
    ),
    (
        {
            **CHAT,
            "messages": [
                {"role": "assistant", "tool_calls": [{"function": {"name": "f", "arguments": 3}}]}
            ],
        },
        "arguments must be an object",
    ),
]


@pytest.mark.parametrize(("body", "said"), BAD_CHATS)
def test_bad_chat_bodies_are_400s_in_ollama_s_shape(
    http: httpx.Client, body: Any, said: str
) -> None:
    assert said in error_of(http.post("/api/chat", json=body), 400)


BAD_GENERATES: list[tuple[Any, str]] = [
    ({"model": "claude/m", "prompt": 3}, "invalid type for 'prompt'"),
    ({"model": "claude/m", "prompt": "x", "raw": True, "system": "s"}, "raw mode does not"),
    ({"model": "claude/m", "prompt": "x", "template": "{{ .Prompt }}"}, "template is not"),
    ({"model": "claude/m", "prompt": "x", "context": [1, 2]}, "context is not supported"),
    ({"model": "claude/m", "prompt": "x", "images": "abc"}, "images must be an array"),
    ({"model": "claude/m", "prompt": "x", "images": [""]}, "images[0] must be a base64"),
    ({"model": "claude/m", "prompt": "x", "options": {"num_ctx": "big"}}, '"num_ctx" must be'),
]


@pytest.mark.parametrize(("body", "said"), BAD_GENERATES)
def test_bad_generate_bodies_are_400s(http: httpx.Client, body: Any, said: str) -> None:
    assert said in error_of(http.post("/api/generate", json=body), 400)


@pytest.mark.parametrize("path", ["/api/chat", "/api/generate", "/api/show"])
@pytest.mark.parametrize(
    ("raw", "said"),
    [
        (b"", "missing request body"),
        (b"{not json", "not valid JSON"),
        (b"[1, 2]", "must be a JSON object"),
        (b'{"model": "claude/m", "options": {"top_k": 1e999}}', "finite"),
        (b'{"model": "claude/m", "options": {"top_k": 123456789012345678901234}}', "64-bit"),
    ],
)
def test_bodies_that_are_not_json_objects(
    http: httpx.Client, path: str, raw: bytes, said: str
) -> None:
    answer = http.post(path, content=raw, headers={"content-type": "application/json"})
    assert said in error_of(answer, 400)


def test_an_unknown_model_is_ollama_s_404_saying_how_to_configure_it(http: httpx.Client) -> None:
    for path, body in (
        ("/api/chat", {**CHAT, "model": "llama3.2"}),
        ("/api/generate", {"model": "llama3.2", "prompt": "x"}),
        ("/api/show", {"model": "llama3.2"}),
        ("/api/chat", {"model": "nowhere/x", "messages": []}),
    ):
        said = error_of(http.post(path, json=body), 404)
        assert said.startswith(f"model '{body['model']}' not found")
        assert "default_connection" in said


def test_an_error_after_the_stream_began_is_a_last_line(http: httpx.Client) -> None:
    body = {"model": "claude/oops-1", "messages": HI}  # stream: true is the default
    with http.stream("POST", "/api/chat", json=body) as answer:
        assert answer.status_code == 200
        lines = [orjson.loads(line) for line in answer.iter_lines() if line]
    assert lines[0]["done"] is False and lines[0]["message"]["role"] == "assistant"
    assert set(lines[-1]) == {"error"} and "verloaded" in lines[-1]["error"]


def test_an_error_before_the_stream_is_plain_json(http: httpx.Client) -> None:
    answer = http.post("/api/chat", json={"model": "claude/error-400", "messages": HI})
    assert "the fake says 400" in error_of(answer, 400)


@pytest.mark.parametrize(
    ("method", "path", "what"),
    [
        ("POST", "/api/pull", "pull"),
        ("POST", "/api/push", "push"),
        ("POST", "/api/create", "create"),
        ("POST", "/api/copy", "copy"),
        ("DELETE", "/api/delete", "delete"),
    ],
)
def test_model_management_says_models_are_configured(
    http: httpx.Client, method: str, path: str, what: str
) -> None:
    said = error_of(http.request(method, path, json={"model": "llama3.2"}), 400)
    assert f"chatgate does not {what} models" in said and "configure a connection" in said


def test_other_routes_and_methods_answer_in_ollama_s_shape(http: httpx.Client) -> None:
    assert "no such route" in error_of(http.post("/api/embed", json={"model": "x"}), 404)
    assert error_of(http.get("/api/chat"), 405)
    assert error_of(http.post("/api/tags", json={}), 405)
    unsent = http.post("/api/chat", content=b"{}", headers={"content-type": "text/plain"})
    assert error_of(unsent, 415)
    # The admin API next door keeps its own shape.
    assert isinstance(http.get("/api/connections/nope/models").json()["error"], dict)


def test_a_missing_key_is_a_401_in_ollama_s_shape(door: LiveServer) -> None:
    answer = httpx.post(f"{door.url}/api/chat", json=CHAT, timeout=10)
    assert error_of(answer, 401)
