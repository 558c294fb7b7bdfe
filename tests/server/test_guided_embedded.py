"""Guided decoding on the embedded model, through the v4 door: every output keeps its
constraint, for 10 seeds each (one request with ``n = 10``: seeds ``seed + i``)."""

from __future__ import annotations

import json
import re
from typing import Any

import httpx
import jsonschema
import pytest

from tests.conftest import MODEL, LiveServer

pytestmark = pytest.mark.model

SCHEMA = {
    "type": "object",
    "properties": {"name": {"type": "string", "maxLength": 12}, "age": {"type": "integer"}},
    "required": ["name", "age"],
    "additionalProperties": False,
}


def outputs(live: LiveServer, **fields: Any) -> list[str]:
    answer = httpx.post(
        f"{live.url}/v4/beta/chat/completions",
        headers={"x-api-key": str(live.key)},
        json={
            "model": MODEL,
            "messages": [{"content": "Describe a person."}],
            "n": 10,
            "seed": 11,
            "temperature": 1.0,
            "max_tokens": 40,
            **fields,
        },
        timeout=120,
    )
    assert answer.status_code == 200, answer.text
    choices = answer.json()["choices"]
    assert len(choices) == 10
    return [c["message"]["content"] for c in choices]


def test_guided_json_is_schema_valid(live: LiveServer) -> None:
    for text in outputs(live, guided_json=SCHEMA):
        jsonschema.validate(json.loads(text), SCHEMA)


def test_guided_choice_is_one_of_the_choices(live: LiveServer) -> None:
    choices = ["red", "green", "blue sky"]
    texts = outputs(live, guided_choice=choices, max_tokens=8)
    assert all(t in choices for t in texts)


def test_guided_regex_matches_fully(live: LiveServer) -> None:
    pattern = r"[A-Z][a-z]{2,8} (is|was) \d{1,2}( years old)?\."
    for text in outputs(live, guided_regex=pattern):
        assert re.fullmatch(pattern, text), text


def test_guided_grammar_and_conflicts(live: LiveServer) -> None:
    grammar = 'root ::= "yes" | "no"'
    assert set(outputs(live, guided_grammar=grammar, max_tokens=4)) <= {"yes", "no"}
    clash = httpx.post(
        f"{live.url}/v4/beta/chat/completions",
        headers={"x-api-key": str(live.key)},
        json={"model": MODEL, "messages": [{"content": "Hi"}], "guided_regex": "a+",
              "guided_choice": ["a"]},
    )  # fmt: skip
    assert clash.status_code == 400
    assert "only one output constraint" in clash.json()["detail"]
    refused = httpx.post(
        f"{live.url}/v4/beta/chat/completions",
        headers={"x-api-key": str(live.key)},
        json={"model": MODEL, "messages": [{"content": "Hi"}], "guided_regex": r"(a)\1"},
    )
    assert refused.status_code == 400 and "back-references" in refused.json()["detail"]
