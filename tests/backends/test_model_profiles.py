"""A profile per source and model: OpenAI's reasoning models refuse the sampling
controls (or have them dropped with ``drop_params``) and bound their answer with
``max_completion_tokens``; the source's other models keep the source's profile."""

from __future__ import annotations

import re
from typing import Any

import pytest

from chatgate.capabilities import Profile
from chatgate.config import Connection, Settings
from chatgate.errors import UnsupportedParameterError
from chatgate.gateway import Gateway
from chatgate.sources import OPENAI_REASONING, SOURCES
from tests.fakes.openai_server import FakeOpenAI

KEY = "sk-test-profile-key-8888wxyz"
HI = [{"role": "user", "content": "Hi"}]


def gateway(fake: FakeOpenAI, **fields: Any) -> Gateway:
    conn = Connection(name="oa", source="openai", base_url=fake.url + "/v1", api_key=KEY, **fields)
    return Gateway(Settings(connections=[conn], embedded=False))


@pytest.mark.parametrize(
    ("model", "reasoning"),
    [
        ("o1", True),
        ("o1-mini", True),
        ("o3-mini", True),
        ("o4-mini", True),
        ("gpt-5", True),
        ("gpt-5-mini", True),
        ("gpt-5.2", True),
        ("gpt-5-chat-latest", False),
        ("gpt-5.2-chat-latest", False),
        ("gpt-4o", False),
        ("gpt-4.1-mini", False),
        ("o1x", False),
    ],
)
def test_which_models_the_rule_sets_apart(model: str, reasoning: bool) -> None:
    assert bool(re.match(OPENAI_REASONING.pattern, model)) is reasoning
    base = Profile(n=True, best_of=False, logprobs=True)
    profile = base.for_model(SOURCES["openai"].model_rules, model)
    assert (profile.refuses == OPENAI_REASONING.refuses) is reasoning
    assert (profile == base) is not reasoning


async def test_a_reasoning_model_refuses_temperature_naming_the_model(fake: FakeOpenAI) -> None:
    async with gateway(fake) as gw:
        with pytest.raises(UnsupportedParameterError) as caught:
            await gw.chat(model="oa/o3-mini", messages=HI, temperature=0.7)
        assert caught.value.param == "temperature"
        assert "model 'o3-mini' (a reasoning model)" in caught.value.message
        assert fake.seen == []  # refused before any upstream call
        await gw.chat(model="oa/gpt-4o", messages=HI, temperature=0.7)  # others take it
    assert fake.last("/chat/completions").body["temperature"] == 0.7


async def test_dropped_with_drop_params_and_the_bound_renamed(fake: FakeOpenAI) -> None:
    async with gateway(fake, drop_params=True) as gw:
        plan = gw.prepare(model="oa/o3-mini", messages=HI, temperature=0.7, top_p=0.5)
        assert plan.dropped == ["temperature", "top_p"]
        await gw.chat(model="oa/o3-mini", messages=HI, temperature=0.7, max_tokens=50)
    body = fake.last("/chat/completions").body
    assert "temperature" not in body and "max_tokens" not in body
    assert body["max_completion_tokens"] == 50


async def test_the_tighter_bound_when_both_come(fake: FakeOpenAI) -> None:
    async with gateway(fake) as gw:
        await gw.chat(model="oa/gpt-5", messages=HI, max_tokens=30, max_completion_tokens=80)
    body = fake.last("/chat/completions").body
    assert body["max_completion_tokens"] == 30 and "max_tokens" not in body
