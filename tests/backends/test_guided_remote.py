"""Guided decoding on remote connections: vLLM's two forms chosen per connection,
JSON-schema translation elsewhere, and chatgate's own check with retries."""

from __future__ import annotations

from typing import Any

import jsonschema
import orjson
import pytest

from chatgate.config import Connection, Settings
from chatgate.errors import InvalidRequestError, UpstreamError
from chatgate.gateway import Gateway
from tests.fakes.openai_server import FakeOpenAI

SCHEMA = {
    "type": "object",
    "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
    "required": ["city", "days"],
}
HI = [{"role": "user", "content": "Hi"}]


def gateway(fake: FakeOpenAI, source: str = "custom", **fields: Any) -> Gateway:
    conn = Connection(
        name="up", source=source, base_url=f"{fake.url}/v1", api_key="sk-guided-0000", **fields
    )
    return Gateway(Settings(embedded=False, connections=[conn]))


@pytest.mark.parametrize(
    ("field", "value", "native"),
    [
        ("guided_json", SCHEMA, {"json": SCHEMA}),
        ("guided_choice", ["red", "green"], {"choice": ["red", "green"]}),
        ("guided_regex", r"Hello .+\.", {"regex": r"Hello .+\."}),
        ("guided_grammar", 'root ::= "a"', {"grammar": 'root ::= "a"'}),
    ],
)
async def test_vllm_forms_by_connection(
    fake: FakeOpenAI, field: str, value: Any, native: dict[str, Any]
) -> None:
    async with gateway(fake, vllm_guided="structured_outputs") as gw:
        await gw.chat(model="up/qwen", messages=HI, **{field: value})
    body = fake.last("/chat/completions").body
    assert body["structured_outputs"] == native and field not in body
    async with gateway(fake, vllm_guided="legacy") as gw:
        await gw.chat(model="up/qwen", messages=HI, **{field: value})
    body = fake.last("/chat/completions").body
    assert body[field] == value and "structured_outputs" not in body


async def test_openai_gets_json_schema_and_choices_come_back_bare(fake: FakeOpenAI) -> None:
    async with gateway(fake, source="openai") as gw:
        answer = await gw.chat(model="up/gpt-fake-1", messages=HI, guided_json=SCHEMA)
        jsonschema.validate(orjson.loads(answer.text), SCHEMA)
        sent = fake.last("/chat/completions").body
        assert sent["response_format"]["json_schema"]["schema"] == SCHEMA
        assert "guided_json" not in sent
        picked = await gw.chat(model="up/gpt-fake-1", messages=HI, guided_choice=["red", "green"])
        assert picked.text == "red"  # the wrapped enum, unwrapped
        chunks = [c async for c in gw.stream(model="up/gpt-fake-1", messages=HI,
                                             guided_choice=["red", "green"])]  # fmt: skip
        assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "red"
        assert chunks[-1].choices[0].finish_reason == "stop"


async def test_unenforceable_output_is_checked_and_retried(fake: FakeOpenAI) -> None:
    async with gateway(fake, source="openai", guided_retries=2) as gw:
        matched = await gw.chat(model="up/gpt-fake-1", messages=HI, guided_regex=r"Hello .+\.")
        assert matched.text == "Hello from the fake."
        fake.seen.clear()
        with pytest.raises(UpstreamError) as caught:
            await gw.chat(model="up/wrong-1", messages=HI, guided_regex=r"\d+")
        assert "does not match guided_regex (after 3 attempts)" in caught.value.message
        assert len([s for s in fake.seen if s.path.endswith("/chat/completions")]) == 3
        with pytest.raises(UpstreamError):
            await gw.chat(model="up/wrong-1", messages=HI, guided_json=SCHEMA)


async def test_refusals_name_the_field(fake: FakeOpenAI) -> None:
    async with gateway(fake, source="openai") as gw:
        for fields, param in (
            ({"guided_grammar": 'root ::= "a"'}, "guided_grammar"),
            (
                {"guided_json": SCHEMA, "guided_decoding_backend": "outlines"},
                "guided_decoding_backend",
            ),
            ({"guided_json": SCHEMA, "guided_regex": "a"}, "guided_regex"),
        ):
            with pytest.raises(InvalidRequestError) as caught:
                await gw.chat(model="up/gpt-fake-1", messages=HI, **fields)
            assert caught.value.param == param
    assert not fake.seen  # refused before anything was sent


async def test_best_of_is_emulated_where_log_probabilities_exist(fake: FakeOpenAI) -> None:
    async with gateway(fake, source="openai") as gw:
        answer = await gw.chat(model="up/gpt-fake-1", messages=HI, best_of=3)
        assert len(answer.choices) == 1 and answer.choices[0].logprobs is None
        sent = fake.last("/chat/completions").body
        assert sent["n"] == 3 and sent["logprobs"] is True and "best_of" not in sent
        with pytest.raises(InvalidRequestError, match="cannot be streamed"):
            async for _ in gw.stream(model="up/gpt-fake-1", messages=HI, best_of=3):
                pass
    async with gateway(fake, source="groq") as gw:  # no logprobs there: nothing to rank by
        with pytest.raises(InvalidRequestError) as caught:
            await gw.chat(model="up/m", messages=HI, best_of=3)
        assert caught.value.param == "best_of"
