"""The official `openai` client → chatgate → the ``generic`` text source → a real
llama_cpp.server's ``/v1/completions`` (SmolLM2-135M). chatgate renders the chat with
SmolLM2's instruct template (ChatML) into one prompt string; the server only continues
text. A JSON answer is constrained with the GBNF grammar chatgate makes from the schema
(``grammar_field = "grammar"``, llama-cpp-python's field)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, cast

import jsonschema
import openai
import orjson
import pytest

from chatgate.config import TextOptions
from tests.conftest import LiveServer
from tests.real.conftest import MODEL, N_CTX, SCHEMA, RealServer, gateway_for

pytestmark = pytest.mark.model

ASK: list[Any] = [{"role": "user", "content": "What is the capital of France?"}]


@pytest.fixture(scope="module")
def generic(llama_cpp_server: RealServer) -> Iterator[LiveServer]:
    options = TextOptions(instruct_template="chatml", context_size=N_CTX, grammar_field="grammar")
    with gateway_for("generic", llama_cpp_server.url, text=options) as live:
        yield live


@pytest.fixture()
def sdk(generic: LiveServer) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{generic.url}/v1", api_key=generic.key, max_retries=0)


def test_non_stream(sdk: openai.OpenAI) -> None:
    answer = sdk.chat.completions.create(model=MODEL, messages=ASK, max_tokens=8, temperature=0)
    assert answer.choices[0].message.content
    assert answer.choices[0].finish_reason in ("stop", "length")
    assert answer.usage is not None and 0 < answer.usage.completion_tokens <= 8
    assert answer.usage.prompt_tokens > 0


def test_stream(sdk: openai.OpenAI) -> None:
    chunks = list(
        sdk.chat.completions.create(
            model=MODEL, messages=ASK, max_tokens=6, temperature=0, stream=True
        )
    )
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] in ("stop", "length")


def test_stop(sdk: openai.OpenAI) -> None:
    count: list[Any] = [{"role": "user", "content": "Count from 1 to 9."}]
    free = sdk.chat.completions.create(model=MODEL, messages=count, max_tokens=16, temperature=0)
    text = free.choices[0].message.content or ""
    words = text.split()
    assert len(words) >= 3, text
    stop = words[2]  # greedy decoding writes the same text: it stops where this comes
    stopped = sdk.chat.completions.create(
        model=MODEL, messages=count, max_tokens=16, temperature=0, stop=[stop]
    )
    assert stopped.choices[0].message.content == text.split(stop, 1)[0]
    assert stopped.choices[0].finish_reason == "stop"


def test_seed(sdk: openai.OpenAI) -> None:
    story: list[Any] = [{"role": "user", "content": "Write one sentence about a dragon."}]

    def once() -> str:
        answer = sdk.chat.completions.create(
            model=MODEL, messages=story, max_tokens=12, temperature=0.9, seed=42
        )
        return answer.choices[0].message.content or ""

    once()  # the first run of a prompt differs from later ones (its cache): warm it
    assert once() == once()


def test_json_schema_is_constrained_and_validates(sdk: openai.OpenAI) -> None:
    answer = sdk.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "Give me a JSON object with a number a."}],
        max_tokens=16,
        temperature=0,
        response_format=cast(
            Any, {"type": "json_schema", "json_schema": {"name": "a", "schema": SCHEMA}}
        ),
    )
    jsonschema.validate(orjson.loads(answer.choices[0].message.content or ""), SCHEMA)


def test_an_over_long_prompt_is_a_clear_400(sdk: openai.OpenAI) -> None:
    huge: list[Any] = [{"role": "user", "content": "lorem ipsum dolor " * 3000}]
    with pytest.raises(openai.BadRequestError) as caught:
        sdk.chat.completions.create(model=MODEL, messages=huge, max_tokens=8)
    error = caught.value.body
    assert isinstance(error, dict) and error.get("code") == "context_length_exceeded", error
    assert "Traceback" not in str(error)
