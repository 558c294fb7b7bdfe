"""The OpenAI Completions door against the embedded model, with the official `openai`
SDK: the prompt is continued as it is (no chat template), streamed or not."""

from __future__ import annotations

from collections.abc import Iterator

import openai
import pytest

from tests.conftest import MODEL, LiveServer

pytestmark = pytest.mark.model
PROMPT = "The capital of France is"


@pytest.fixture()
def sdk(live: LiveServer) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=f"{live.url}/v1", api_key=live.key, max_retries=0) as client:
        yield client


def test_the_embedded_model_continues_the_prompt(sdk: openai.OpenAI) -> None:
    answer = sdk.completions.create(
        model=MODEL, prompt=PROMPT, max_tokens=4, temperature=0, seed=1, echo=True
    )
    choice = answer.choices[0]
    assert choice.text.startswith(PROMPT) and len(choice.text) > len(PROMPT)
    assert choice.finish_reason in ("stop", "length")
    assert answer.usage is not None and 0 < answer.usage.completion_tokens <= 4
    # The raw prompt is a handful of tokens; a chat template would add a dozen more.
    assert answer.usage.prompt_tokens <= 8


def test_a_stream_with_logprobs_and_a_list_prompt(sdk: openai.OpenAI) -> None:
    stream = sdk.completions.create(
        model=MODEL,
        prompt=[PROMPT, "One, two,"],
        max_tokens=3,
        temperature=0,
        logprobs=1,
        stream=True,
    )
    texts: dict[int, str] = {0: "", 1: ""}
    tokens: dict[int, list[str]] = {0: [], 1: []}
    for chunk in stream:
        for choice in chunk.choices:
            texts[choice.index] += choice.text
            if choice.logprobs is not None and choice.logprobs.tokens:
                tokens[choice.index] += choice.logprobs.tokens
                assert all(len(top) <= 1 for top in choice.logprobs.top_logprobs or [])
    assert texts[0] and texts[1]
    assert "".join(tokens[0]) == texts[0] and "".join(tokens[1]) == texts[1]
