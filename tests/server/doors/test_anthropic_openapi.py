"""The Anthropic door's OpenAPI items are honest: the request schema takes what the door
takes and refuses what it refuses, and what the server answers matches the answer and
error schemas."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import jsonschema
import pytest

from chatgate.server.openapi import build_document
from tests.conftest import LiveServer
from tests.fakes.openai_server import FakeOpenAI
from tests.server.doors.test_anthropic_claude import HISTORY, SYSTEM, TOOL
from tests.server.doors.test_anthropic_servers import claude_fake, door_server, post, user


def _schema(path: str, where: str) -> dict[str, Any]:
    operation = build_document()["paths"][path]["post"]
    if where == "request":
        found: dict[str, Any] = operation["requestBody"]["content"]["application/json"]["schema"]
    elif where == "error":
        found = operation["responses"]["400"]["content"]["application/json"]["schema"]
    else:
        found = operation["responses"]["200"]["content"]["application/json"]["schema"]
    return found


def _valid(schema: dict[str, Any], value: Any) -> bool:
    return jsonschema.Draft202012Validator(schema).is_valid(value)


FULL = {
    "model": "claude/m",
    "max_tokens": 2048,
    "system": SYSTEM,
    "messages": HISTORY,
    "tools": [TOOL],
    "tool_choice": {"type": "any", "disable_parallel_tool_use": True},
    "thinking": {"type": "enabled", "budget_tokens": 1024},
    "metadata": {"user_id": "u"},
    "stop_sequences": ["END"],
    "temperature": 0.5,
    "top_p": 0.9,
    "top_k": 3,
    "stream": True,
}


def test_the_request_schema_takes_a_full_body_and_refuses_strangers() -> None:
    schema = _schema("/v1/messages", "request")
    assert _valid(schema, FULL)
    assert not _valid(schema, {**FULL, "frequency_penalty": 1})
    assert not _valid(schema, {k: v for k, v in FULL.items() if k != "max_tokens"})
    assert not _valid(schema, {**FULL, "messages": [{"role": "user", "content": [{"type": "x"}]}]})
    count = _schema("/v1/messages/count_tokens", "request")
    assert _valid(count, {"model": "m", "messages": user("Hi"), "tools": [TOOL]})
    assert not _valid(count, {"model": "m", "messages": user("Hi"), "max_tokens": 5})


@pytest.fixture(scope="module")
def server(fake_openai: FakeOpenAI) -> Iterator[LiveServer]:
    with claude_fake() as claude, door_server(fake_openai.url, claude.url) as info:
        yield info


@pytest.mark.parametrize("model", ["chat/gpt-fake-1", "chat/tool-weather", "claude/redacted-1"])
def test_answers_match_the_answer_schema(server: LiveServer, model: str) -> None:
    body = {"model": model, "max_tokens": 2048, "messages": user("Hi"), "tools": [TOOL]}
    answer = post(server, body)
    assert answer.status_code == 200
    assert _valid(_schema("/v1/messages", "answer"), answer.json())
    counted = post(server, {"model": model, "messages": user("Hi")}, "/v1/messages/count_tokens")
    assert _valid(_schema("/v1/messages/count_tokens", "answer"), counted.json())


def test_errors_match_the_error_schema(server: LiveServer) -> None:
    answer = post(server, {"model": "chat/m", "messages": []})
    assert answer.status_code == 400
    assert _valid(_schema("/v1/messages", "error"), answer.json())
    assert not _valid(_schema("/v1/messages", "error"), {"error": {"message": "openai's"}})
