"""The OpenAI Completions door against fakes of other protocols: the official `openai`
SDK's ``completions.create`` (stream and not; echo, logprobs, n, a list prompt), the
prompt sent verbatim to a text server and as one user message to a chat API, and bad
input answered with a 400 in OpenAI's shape."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest

from chatgate.config import Connection, Settings
from tests.conftest import LiveServer, start_server
from tests.fakes.llamacpp_server import LlamaCppState
from tests.fakes.openai_server import FakeOpenAI

PROMPT = "Once upon a time"


@pytest.fixture(scope="module")
def server(fake_openai: FakeOpenAI, llamacpp_fake_server: LlamaCppState) -> Iterator[LiveServer]:
    settings = Settings(
        embedded=False,
        connections=[
            Connection(
                name="chat", source="custom", base_url=fake_openai.url + "/v1", models=["m"]
            ),
            Connection(name="text", source="llamacpp", base_url=llamacpp_fake_server.url),
        ],
    )
    info, uvicorn_server, thread = start_server(settings)
    yield info
    uvicorn_server.should_exit = True
    thread.join(timeout=10)


@pytest.fixture()
def sdk(
    server: LiveServer, fake: FakeOpenAI, llamacpp_fake: LlamaCppState
) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=f"{server.url}/v1", api_key="none", max_retries=0) as client:
        yield client


def test_a_chat_api_gets_the_prompt_as_one_user_message(
    sdk: openai.OpenAI, fake: FakeOpenAI
) -> None:
    answer = sdk.completions.create(model="chat/m", prompt=PROMPT, max_tokens=5, temperature=0)
    assert answer.object == "text_completion"
    assert answer.id.startswith("cmpl-")
    assert answer.model == "chat/m"
    choice = answer.choices[0]
    assert (choice.index, choice.text, choice.finish_reason) == (0, "Hello from the fake.", "stop")
    assert choice.logprobs is None
    assert answer.usage is not None and answer.usage.total_tokens > 0
    sent = fake.seen[-1].body
    assert sent["messages"] == [{"role": "user", "content": PROMPT}]
    assert sent["max_tokens"] == 5 and "prompt" not in sent and "raw_prompt" not in sent


def test_max_tokens_defaults_to_16_as_openai(sdk: openai.OpenAI, fake: FakeOpenAI) -> None:
    sdk.completions.create(model="chat/m", prompt=PROMPT)
    assert fake.seen[-1].body["max_tokens"] == 16


def test_a_text_server_gets_the_prompt_verbatim(
    sdk: openai.OpenAI, llamacpp_fake: LlamaCppState
) -> None:
    prompt = "### Instruction:\nSay the magic words\n### Response:\nabra cadabra"
    answer = sdk.completions.create(model="text/any", prompt=prompt, max_tokens=1, stop=["\n"])
    sent = llamacpp_fake.last("/completion").body
    assert sent["prompt"] == prompt  # no template, nothing added
    assert sent["n_predict"] == 1 and sent["stop"] == ["\n"]
    assert answer.choices[0].text == "abra"
    assert answer.choices[0].finish_reason == "length"


def test_a_stream_with_usage(sdk: openai.OpenAI) -> None:
    stream = sdk.completions.create(
        model="chat/m",
        prompt=PROMPT,
        max_tokens=5,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    assert all(c.object == "text_completion" for c in chunks)
    assert len({c.id for c in chunks}) == 1
    text = "".join(c.choices[0].text for c in chunks if c.choices)
    assert text == "Hello from the fake."
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert all(c.usage is None for c in chunks[:-1])


def test_echo_puts_the_prompt_first(sdk: openai.OpenAI) -> None:
    whole = sdk.completions.create(model="chat/m", prompt=PROMPT, max_tokens=5, echo=True)
    assert whole.choices[0].text == PROMPT + "Hello from the fake."
    stream = sdk.completions.create(model="chat/m", prompt=PROMPT, echo=True, stream=True)
    pieces = [c.choices[0].text for c in stream if c.choices]
    assert pieces[0].startswith(PROMPT) and "".join(pieces) == PROMPT + "Hello from the fake."


def test_logprobs_in_the_completions_shape(sdk: openai.OpenAI, fake: FakeOpenAI) -> None:
    answer = sdk.completions.create(model="chat/m", prompt=PROMPT, max_tokens=5, logprobs=2)
    logprobs = answer.choices[0].logprobs
    assert logprobs is not None
    assert logprobs.tokens == ["Hello"]
    assert logprobs.token_logprobs == [-0.25]
    assert logprobs.top_logprobs == [{"Hello": -0.25}]
    assert logprobs.text_offset == [0]
    assert fake.seen[-1].body["logprobs"] is True and fake.seen[-1].body["top_logprobs"] == 2


def test_a_list_prompt_with_n_runs_prompt_by_prompt(sdk: openai.OpenAI, fake: FakeOpenAI) -> None:
    answer = sdk.completions.create(
        model="chat/m", prompt=["one", "two"], n=2, max_tokens=3, echo=True
    )
    assert [c.index for c in answer.choices] == [0, 1, 2, 3]
    assert [c.text.split("Hello")[0] for c in answer.choices] == ["one", "one", "two", "two"]
    contents = sorted(s.body["messages"][0]["content"] for s in fake.seen[-2:])
    assert contents == ["one", "two"] and all(s.body["n"] == 2 for s in fake.seen[-2:])
    assert answer.usage is not None
    stream = sdk.completions.create(model="chat/m", prompt=["one", "two"], stream=True)
    finished = [c.choices[0].index for c in stream if c.choices and c.choices[0].finish_reason]
    assert finished == [0, 1]


def test_the_root_path_answers_too(server: LiveServer) -> None:
    body = {"model": "chat/m", "prompt": PROMPT, "max_tokens": 3}
    answer = httpx.post(server.url + "/completions", json=body, timeout=30)
    assert answer.status_code == 200 and answer.json()["object"] == "text_completion"


def test_suffix_goes_where_the_backend_takes_it_and_is_refused_elsewhere(
    sdk: openai.OpenAI, fake: FakeOpenAI
) -> None:
    # A custom OpenAI-compatible server may take it (vLLM does): it is passed on.
    sdk.completions.create(model="chat/m", prompt=PROMPT, suffix=" The end.")
    assert fake.seen[-1].body["suffix"] == " The end."
    with pytest.raises(openai.BadRequestError) as caught:
        sdk.completions.create(model="text/any", prompt=PROMPT, suffix=" The end.")
    error = caught.value.body
    assert isinstance(error, dict) and error["param"] == "suffix"
    assert caught.value.status_code == 400


def test_an_unknown_model_is_a_404(sdk: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError):
        sdk.completions.create(model="nowhere/m", prompt=PROMPT)


BAD: list[tuple[Any, str | None, str]] = [
    (b'{"model": "chat/m", "prompt": ', None, "not valid JSON"),
    ([1, 2], None, "JSON object"),
    ({"model": "chat/m"}, "prompt", "missing required parameter"),
    ({"model": "chat/m", "prompt": ""}, "prompt", "is empty"),
    ({"model": "chat/m", "prompt": []}, "prompt", "not an empty array"),
    ({"model": "chat/m", "prompt": ["a", ""]}, "prompt", "'prompt[1]' is empty"),
    ({"model": "chat/m", "prompt": {"text": "a"}}, "prompt", "a string or an array"),
    ({"model": "chat/m", "prompt": [1, 2, 3]}, "prompt", "token-id prompts"),
    ({"model": "chat/m", "prompt": [[1, 2], [3]]}, "prompt", "token-id prompts"),
    ({"model": "chat/m", "prompt": ["a", None]}, "prompt", "'prompt[1]' must be a string"),
    ({"model": "chat/m", "prompt": "a", "logprobs": 6}, "logprobs", "from 0 to 5"),
    ({"model": "chat/m", "prompt": "a", "logprobs": True}, "logprobs", "an integer"),
    ({"model": "chat/m", "prompt": "a", "echo": "yes"}, "echo", "a boolean"),
    ({"model": "chat/m", "prompt": "a", "echo": True, "logprobs": 1}, "echo", "log-prob"),
    ({"model": "chat/m", "prompt": "a", "max_tokens": 0}, "max_tokens", "max_tokens"),
    ({"model": "chat/m", "prompt": "a", "max_tokens": 1e30}, "max_tokens", "integer"),
    ({"model": "chat/m", "prompt": "a", "max_tokens": 10**30}, "max_tokens", "64-bit"),
    ({"model": "chat/m", "prompt": "a", "temperature": "hot"}, "temperature", "number"),
    ({"model": "chat/m", "prompt": ["a"] * 65, "n": 2}, "prompt", "the limit is 128"),
    ({"model": "chat/m", "prompt": "a", "messages": []}, "messages", "/v1/chat/completions"),
    ({"model": "chat/m", "prompt": "a", "best_of": 2, "stream": True}, "best_of", "stream"),
    ({"model": "chat/m", "prompt": "a", "stop": ["1", "2", "3", "4", "5"]}, "stop", "at most 4"),
]


@pytest.mark.parametrize(("body", "param", "words"), BAD)
def test_bad_input_is_a_400_in_openai_s_shape(
    server: LiveServer, body: Any, param: str | None, words: str
) -> None:
    content = body if isinstance(body, bytes) else None
    payload = None if isinstance(body, bytes) else body
    answer = httpx.post(
        server.url + "/v1/completions",
        content=content,
        json=payload,
        headers={"content-type": "application/json"},
        timeout=30,
    )
    assert answer.status_code == 400, answer.text
    error = answer.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["type"] == "invalid_request_error"
    assert error["param"] == param
    assert words in error["message"]
