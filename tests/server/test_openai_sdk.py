"""The official `openai` client against a real `chatgate serve` with the embedded model."""

from __future__ import annotations

import json

import jsonschema
import openai
import pytest

from tests.conftest import MODEL, LiveServer

pytestmark = pytest.mark.model


@pytest.fixture()
def sdk(live: LiveServer) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{live.url}/v1", api_key=live.key, max_retries=0)


def test_non_stream_completion(sdk: openai.OpenAI) -> None:
    answer = sdk.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "What is 2 + 2?"}],
        max_tokens=8,
        seed=7,
        temperature=0,
    )
    assert answer.object == "chat.completion"
    assert answer.id.startswith("chatcmpl-")
    assert answer.model == MODEL
    assert answer.system_fingerprint
    choice = answer.choices[0]
    assert choice.index == 0
    assert choice.message.role == "assistant"
    assert choice.message.content
    assert choice.finish_reason in ("stop", "length")
    assert answer.usage is not None
    assert answer.usage.completion_tokens <= 8
    assert answer.usage.total_tokens == answer.usage.prompt_tokens + answer.usage.completion_tokens


def test_same_seed_same_answer(sdk: openai.OpenAI) -> None:
    def ask() -> str | None:
        return (
            sdk.chat.completions.create(
                model=MODEL,
                messages=[{"role": "user", "content": "Name a color."}],
                max_tokens=6,
                seed=42,
                temperature=0.9,
            )
            .choices[0]
            .message.content
        )

    assert ask() == ask()


def test_stream_with_usage(sdk: openai.OpenAI) -> None:
    chunks = list(
        sdk.chat.completions.create(
            model=MODEL,
            messages=[
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": "Say hello."},
            ],
            max_tokens=6,
            seed=1,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    assert chunks[0].choices[0].delta.role == "assistant"
    assert len({c.id for c in chunks}) == 1
    finishing = [c for c in chunks if c.choices and c.choices[0].finish_reason]
    assert len(finishing) == 1
    usage_chunk = chunks[-1]
    assert usage_chunk.choices == []
    assert usage_chunk.usage is not None
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text
    assert usage_chunk.usage.completion_tokens <= 6
    assert all(c.usage is None for c in chunks[:-1])


def test_models_list(sdk: openai.OpenAI) -> None:
    ids = [m.id for m in sdk.models.list()]
    assert MODEL in ids
    assert sdk.models.retrieve(MODEL).id == MODEL


def test_unknown_model_is_not_found(sdk: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as caught:
        sdk.chat.completions.create(
            model="nowhere/none", messages=[{"role": "user", "content": "x"}]
        )
    assert caught.value.code == "model_not_found"


def test_bad_value_is_bad_request(sdk: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        sdk.chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": "x"}], temperature=5
        )
    assert caught.value.param == "temperature"


def test_wrong_key_is_authentication_error(live: LiveServer) -> None:
    bad = openai.OpenAI(base_url=f"{live.url}/v1", api_key="sk-wrong-key-000000", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        bad.models.list()


SCHEMA = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "maxLength": 24},
        "age": {"type": "integer"},
        "likes_cats": {"type": "boolean"},
    },
    "required": ["name", "age", "likes_cats"],
    "additionalProperties": False,
}


@pytest.mark.parametrize("seed", range(10))
def test_json_schema_output_validates(sdk: openai.OpenAI, seed: int) -> None:
    answer = sdk.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "Describe a person as JSON."}],
        max_tokens=60,
        seed=seed,
        response_format={
            "type": "json_schema",
            "json_schema": {"name": "person", "schema": SCHEMA},
        },
    )
    assert answer.choices[0].finish_reason == "stop"
    jsonschema.validate(json.loads(answer.choices[0].message.content or ""), SCHEMA)


def test_json_object_output_parses(sdk: openai.OpenAI) -> None:
    answer = sdk.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "Give a JSON object with one key."}],
        max_tokens=40,
        seed=3,
        response_format={"type": "json_object"},
    )
    if answer.choices[0].finish_reason == "stop":
        assert isinstance(json.loads(answer.choices[0].message.content or ""), dict)
    else:
        assert answer.choices[0].finish_reason == "length"


def test_logprobs(sdk: openai.OpenAI) -> None:
    answer = sdk.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "Hi"}],
        max_tokens=3,
        seed=5,
        logprobs=True,
        top_logprobs=2,
    )
    content = answer.choices[0].logprobs.content  # type: ignore[union-attr]
    assert content is not None
    assert len(content) == answer.usage.completion_tokens  # type: ignore[union-attr]
    assert "".join(t.token for t in content) == answer.choices[0].message.content
    for entry in content:
        assert entry.logprob <= 0
        assert len(entry.top_logprobs) == 2
        assert entry.top_logprobs[0].logprob >= entry.top_logprobs[1].logprob


def test_n_choices(sdk: openai.OpenAI) -> None:
    answer = sdk.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "Hi"}],
        max_tokens=3,
        seed=5,
        n=2,
    )
    assert [c.index for c in answer.choices] == [0, 1]


def test_stop_sequence_cuts_output(sdk: openai.OpenAI) -> None:
    free = (
        sdk.chat.completions.create(
            model=MODEL,
            messages=[{"role": "user", "content": "Count: 1, 2, 3"}],
            max_tokens=12,
            seed=9,
            temperature=0,
        )
        .choices[0]
        .message.content
        or ""
    )
    assert len(free) > 2
    stop = free[2:4]
    cut = sdk.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "Count: 1, 2, 3"}],
        max_tokens=12,
        seed=9,
        temperature=0,
        stop=[stop],
    ).choices[0]
    assert cut.finish_reason == "stop"
    assert cut.message.content == free[: free.index(stop)]
