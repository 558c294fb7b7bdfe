"""The Anthropic door in front of the embedded model, through the official SDK: a short
answer whole and streamed, its token count, and what the model cannot take."""

from __future__ import annotations

from collections.abc import Iterator

import anthropic
import pytest

from tests.conftest import MODEL, LiveServer
from tests.server.doors.test_anthropic_servers import user

pytestmark = pytest.mark.model
GREEDY = {"temperature": 0}


@pytest.fixture()
def client(live: LiveServer) -> Iterator[anthropic.Anthropic]:
    with anthropic.Anthropic(base_url=live.url, api_key=live.key, max_retries=0) as opened:
        yield opened


def test_a_short_answer(client: anthropic.Anthropic) -> None:
    message = client.messages.create(
        model=MODEL,
        max_tokens=8,
        system="Answer in one word.",
        messages=user("What color is the sky?"),
        extra_body=GREEDY,
    )
    assert message.model == MODEL and message.role == "assistant"
    assert message.content[0].type == "text" and message.content[0].text
    assert message.stop_reason in ("end_turn", "max_tokens")
    assert 0 < message.usage.output_tokens <= 8
    # The embedded tokenizer counts the prompt the engine rendered: the same number.
    counted = client.messages.with_raw_response.count_tokens(
        model=MODEL, system="Answer in one word.", messages=user("What color is the sky?")
    )
    assert counted.parse().input_tokens == message.usage.input_tokens
    assert "x-chatgate-token-count" not in counted.headers


def test_a_short_stream(client: anthropic.Anthropic) -> None:
    with client.messages.stream(
        model=MODEL, max_tokens=6, messages=user("Say hello."), extra_body=GREEDY
    ) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text and final.content[0].type == "text" and final.content[0].text == text
    assert final.stop_reason in ("end_turn", "max_tokens")
    assert final.usage.input_tokens > 0 and 0 < final.usage.output_tokens <= 6


def test_what_the_embedded_model_cannot_take_is_a_400(client: anthropic.Anthropic) -> None:
    tool: anthropic.types.ToolParam = {"name": "f", "input_schema": {"type": "object"}}
    with pytest.raises(anthropic.BadRequestError) as caught:
        client.messages.create(model=MODEL, max_tokens=4, messages=user("Hi"), tools=[tool])
    assert "tools" in caught.value.message
