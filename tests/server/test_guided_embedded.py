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
    assert len(choices) == fields.get("n", 10)
    return [c["message"]["content"] for c in choices]


def test_guided_json_is_schema_valid(live: LiveServer) -> None:
    for text in outputs(live, guided_json=SCHEMA):
        jsonschema.validate(json.loads(text), SCHEMA)


def test_guided_choice_is_one_of_the_choices(live: LiveServer) -> None:
    choices = ["red", "green", "blue sky"]
    texts = outputs(live, guided_choice=choices, max_tokens=8)
    assert all(t in choices for t in texts)


def test_guided_regex_with_class_metacharacters(live: LiveServer) -> None:
    # Characters that are special inside a class reach llama.cpp's grammar parser as
    # hex escapes (it knows no "\\^" or "\\]").
    pattern = r"[\^\]\[\-a]{3,6}"
    for text in outputs(live, guided_regex=pattern, n=3, max_tokens=8):
        assert re.fullmatch(pattern, text), text


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


def test_include_stop_str_in_output_and_chat_template(live: LiveServer) -> None:
    def first(**fields: Any) -> str:
        return outputs(live, n=1, max_tokens=6, **fields)[0]

    grammar = 'root ::= "yes." " more"'
    assert first(guided_grammar=grammar, stop=["."]) == "yes"
    assert first(guided_grammar=grammar, stop=["."], include_stop_str_in_output=True) == "yes."
    template = "{% for m in messages %}[{{ m.role }}] {{ m.content }}\n{% endfor %}{{ cue }}"
    shown = httpx.post(
        f"{live.url}/api/preview",
        headers={"Authorization": f"Bearer {live.key}"},
        json={
            "model": MODEL,
            "messages": [{"role": "user", "content": "Hi"}],
            "chat_template": template,
            "chat_template_kwargs": {"cue": "Answer:"},
        },
    ).json()
    assert shown["body"]["prompt"] == "[user] Hi\nAnswer:"
    broken = httpx.post(
        f"{live.url}/v1/chat/completions",
        headers={"Authorization": f"Bearer {live.key}"},
        json={"model": MODEL, "messages": [{"role": "user", "content": "Hi"}],
              "chat_template": "{% for %}"},
    )  # fmt: skip
    assert broken.status_code == 400 and broken.json()["error"]["param"] == "chat_template"


def test_best_of_returns_the_most_likely_candidates(live: LiveServer) -> None:
    def ask(**fields: Any) -> httpx.Response:
        return httpx.post(
            f"{live.url}/v4/beta/chat/completions",
            headers={"x-api-key": str(live.key)},
            json={"model": MODEL, "messages": [{"content": "Name a colour."}], "max_tokens": 6,
                  "seed": 4, "temperature": 1.2, **fields},
            timeout=120,
        )  # fmt: skip

    best = ask(best_of=4, n=1, logprobs=True).json()
    assert len(best["choices"]) == 1
    chosen = best["choices"][0]["logprobs"]["content"]
    mean = sum(t["logprob"] for t in chosen) / len(chosen)
    singles = [ask(seed=4 + i, logprobs=True).json() for i in range(4)]
    means = []
    for single in singles:
        tokens = single["choices"][0]["logprobs"]["content"]
        means.append(sum(t["logprob"] for t in tokens) / len(tokens))
    assert mean >= max(means) - 1e-6  # the best of the same four candidates
    assert best["usage"]["completion_tokens"] > singles[0]["usage"]["completion_tokens"]
    assert ask(best_of=2, n=3).status_code == 400
    assert "cannot be streamed" in ask(best_of=3, stream=True).json()["detail"]
