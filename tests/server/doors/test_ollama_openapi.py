"""The Ollama door's OpenAPI items describe what it really answers."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import jsonschema
import orjson
import pytest

from chatgate.server.openapi import build_document
from tests.conftest import LiveServer
from tests.server.doors.ollama_servers import WEATHER, claude_fake, door

__all__ = ["claude_fake", "door"]  # the fixtures, used by name

HI = [{"role": "user", "content": "Hi"}]


@pytest.fixture(scope="module")
def document() -> dict[str, Any]:
    return build_document()


@pytest.fixture()
def http(door: LiveServer) -> Iterator[httpx.Client]:
    with door.client() as client:
        yield client


def schema_of(document: dict[str, Any], method: str, path: str, status: str, kind: str) -> Any:
    operation = document["paths"][path][method]
    return operation["responses"][status]["content"][kind]["schema"]


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("get", "/api/tags", None),
        ("get", "/api/ps", None),
        ("get", "/api/version", None),
        ("post", "/api/show", {"model": "claude/claude-fake-1"}),
        ("post", "/api/chat", {"model": "claude/m", "messages": HI, "stream": False}),
        (
            "post",
            "/api/chat",
            {"model": "claude/tool-1", "messages": HI, "tools": [WEATHER], "stream": False},
        ),
        ("post", "/api/chat", {"model": "claude/m"}),
        (
            "post",
            "/api/generate",
            {"model": "claude/think-1", "prompt": "Hi", "stream": False, "think": True},
        ),
    ],
)
def test_answers_match_their_schemas(
    http: httpx.Client, document: dict[str, Any], method: str, path: str, body: Any
) -> None:
    answer = http.request(method.upper(), path, json=body)
    assert answer.status_code == 200, answer.text
    jsonschema.validate(answer.json(), schema_of(document, method, path, "200", "application/json"))


def test_stream_lines_match_the_answer_schema(http: httpx.Client, document: dict[str, Any]) -> None:
    schema = schema_of(document, "post", "/api/chat", "200", "application/json")
    body = {"model": "claude/tool-1", "messages": HI, "tools": [WEATHER]}
    with http.stream("POST", "/api/chat", json=body) as answer:
        lines = [orjson.loads(line) for line in answer.iter_lines() if line]
    for line in lines:
        jsonschema.validate(line, schema)
    assert "ndjson" in str(document["paths"]["/api/chat"]["post"]["responses"]["200"]["content"])


def test_errors_match_the_error_schema(http: httpx.Client, document: dict[str, Any]) -> None:
    for method, path, body, status in (
        ("post", "/api/chat", {"model": "nowhere"}, "404"),
        ("post", "/api/generate", {"model": 3}, "400"),
        ("post", "/api/pull", {"model": "x"}, "400"),
        ("delete", "/api/delete", {"model": "x"}, "400"),
    ):
        answer = http.request(method.upper(), path, json=body)
        assert str(answer.status_code) == status
        schema = schema_of(document, method, path, status, "application/json")
        jsonschema.validate(answer.json(), schema)
