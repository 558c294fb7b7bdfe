"""Token ids and counts by a model's own tokenizer (`chatgate.tokens`): the embedded
engine, llama.cpp and KoboldCpp servers, Claude's count_tokens; an estimate elsewhere."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from chatgate.config import Connection, Settings, load_settings
from chatgate.gateway import Gateway
from chatgate.prompt.fitting import estimate_tokens
from chatgate.tokens import count_chat_tokens, count_tokens, detokenize, tokenize
from chatgate.types import ChatRequest
from tests.conftest import MODEL
from tests.fakes import kobold_server, llamacpp_server
from tests.fakes.common import json_response, token_ids
from tests.fakes.openai_server import FakeOpenAI, serve

TEXT = "the quick brown fox"


def _request(model: str, **fields: Any) -> ChatRequest:
    messages = [{"role": "user", "content": TEXT}]
    return ChatRequest.model_validate({"model": model, "messages": messages, **fields})


@pytest.fixture()
async def text_gateway(
    kobold_fake: kobold_server.KoboldState,
    llamacpp_fake: llamacpp_server.LlamaCppState,
    fake: FakeOpenAI,
) -> AsyncIterator[Gateway]:
    connections = [
        Connection(name="kcpp", source="kobold", base_url=kobold_fake.url),
        Connection(name="classic", source="koboldai", base_url=kobold_fake.url),
        Connection(name="llama", source="llamacpp", base_url=llamacpp_fake.url),
        Connection(name="oai", source="custom", base_url=fake.url + "/v1", models=["m"]),
    ]
    async with Gateway(Settings(embedded=False, connections=connections)) as gateway:
        yield gateway


@pytest.mark.parametrize("model", ["llama/any", "kcpp/any"])
async def test_a_text_server_tokenizes_and_turns_ids_back(
    text_gateway: Gateway, model: str
) -> None:
    ids = await tokenize(text_gateway, model, TEXT)
    assert ids == token_ids(TEXT)
    assert ids is not None
    assert await detokenize(text_gateway, model, ids) == TEXT
    assert await count_tokens(text_gateway, model, TEXT) == (len(ids), True)


async def test_without_a_tokenizer_no_ids_are_invented(text_gateway: Gateway) -> None:
    # KoboldAI Classic has no tokenizer route; an OpenAI chat API has none either.
    for model in ("classic/any", "oai/m"):
        assert await tokenize(text_gateway, model, TEXT) is None
        assert await detokenize(text_gateway, model, [1, 2]) is None
        assert await count_tokens(text_gateway, model, TEXT) == (estimate_tokens(TEXT), False)


async def test_a_chat_on_a_text_server_counts_the_rendered_prompt(
    text_gateway: Gateway, llamacpp_fake: llamacpp_server.LlamaCppState
) -> None:
    counted = await count_chat_tokens(text_gateway, _request("llama/any", max_tokens=5))
    assert counted.exact
    sent = llamacpp_fake.last("/tokenize").body
    # The whole instruct prompt is counted, not only the user's words.
    assert TEXT in sent["content"] and sent["content"] != TEXT
    assert counted.tokens == len(token_ids(sent["content"]))


async def test_a_chat_api_without_a_count_gets_an_estimate_of_everything(
    text_gateway: Gateway,
) -> None:
    tool = {"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}}
    plain = await count_chat_tokens(text_gateway, _request("oai/m"))
    with_tools = await count_chat_tokens(text_gateway, _request("oai/m", tools=[tool]))
    assert not plain.exact and plain.tokens >= estimate_tokens(TEXT)
    assert with_tools.tokens > plain.tokens


class ClaudeCounter:
    """A Claude API that counts: records the count_tokens bodies it gets."""

    def __init__(self) -> None:
        self.url = ""
        self.bodies: list[dict[str, Any]] = []
        self.missing = False

    def app(self) -> Starlette:
        async def count(request: Request) -> Response:
            if self.missing:
                return json_response({"type": "error", "error": {"type": "not_found_error"}}, 404)
            self.bodies.append(await request.json())
            return json_response({"input_tokens": 42})

        return Starlette(routes=[Route("/v1/messages/count_tokens", count, methods=["POST"])])


@pytest.fixture(scope="module")
def claude_counter() -> Iterator[ClaudeCounter]:
    state = ClaudeCounter()
    for url in serve(state.app()):
        state.url = url
        yield state


async def test_claude_counts_its_own_messages_body(claude_counter: ClaudeCounter) -> None:
    claude_counter.missing = False
    conn = Connection(
        name="claude",
        source="claude",
        base_url=claude_counter.url + "/v1",
        api_key="sk-ant-test-0001",
    )
    async with Gateway(Settings(embedded=False, connections=[conn])) as gateway:
        counted = await count_chat_tokens(
            gateway, _request("claude/claude-sonnet-4", max_tokens=9, temperature=0.5)
        )
        assert counted == (42, True)
        body = claude_counter.bodies[-1]
        # Only the fields count_tokens takes: it refuses max_tokens and the samplers.
        assert set(body) == {"model", "messages"}
        assert body["model"] == "claude-sonnet-4"
        claude_counter.missing = True  # a proxy that passes only /v1/messages
        counted = await count_chat_tokens(gateway, _request("claude/claude-sonnet-4"))
        assert not counted.exact and counted.tokens > 0


@pytest.mark.model
async def test_the_embedded_model_tokenizes_round_trip() -> None:
    settings = load_settings(env={})
    async with Gateway(settings) as gateway:
        await gateway.start()
        ids = await tokenize(gateway, MODEL, TEXT)
        assert ids and all(type(i) is int for i in ids)
        assert await detokenize(gateway, MODEL, ids) == TEXT
        assert await count_tokens(gateway, MODEL, TEXT) == (len(ids), True)
        counted = await count_chat_tokens(gateway, _request(MODEL))
        # The chat template's markers count too.
        assert counted.exact and counted.tokens > len(ids)
