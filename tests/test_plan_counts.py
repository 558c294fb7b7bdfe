"""The plan is made once and the request validated once, however it fans out.

A request used to be worked out again in every layer: with groq and ``n=3`` the
parameter table was consulted five times and the request validated four times. Now
`Gateway.prepare` decides everything once and the backends only execute.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from chatgate.adapters import guided
from chatgate.adapters.openai_chat import OpenAIChatAdapter
from chatgate.backends.remote import RemoteBackend
from chatgate.config import Connection, Settings
from chatgate.gateway import Gateway
from chatgate.types import ChatRequest
from tests.fakes.openai_server import FakeOpenAI

HI = [{"role": "user", "content": "Say yes"}]


@pytest.fixture()
def counts(monkeypatch: pytest.MonkeyPatch) -> Iterator[Counter[str]]:
    seen: Counter[str] = Counter()

    def counting(name: str, wrapped: Callable[..., Any]) -> Callable[..., Any]:
        def call(*args: Any, **kwargs: Any) -> Any:
            seen[name] += 1
            return wrapped(*args, **kwargs)

        return call

    monkeypatch.setattr(RemoteBackend, "plan", counting("plan", RemoteBackend.plan))
    monkeypatch.setattr(guided, "plan", counting("guided", guided.plan))
    monkeypatch.setattr(
        OpenAIChatAdapter, "unsupported", counting("unsupported", OpenAIChatAdapter.unsupported)
    )
    # Read on the class, the bound classmethod; set back as a plain function, which the
    # class then calls unbound.
    monkeypatch.setattr(
        ChatRequest, "model_validate", counting("validate", ChatRequest.model_validate)
    )
    original_init = ChatRequest.__init__
    monkeypatch.setattr(ChatRequest, "__init__", counting("validate", original_init))
    yield seen


def gateway(fake: FakeOpenAI, source: str) -> Gateway:
    conn = Connection(name="up", source=source, base_url=fake.url + "/v1", api_key="sk-count-1")
    return Gateway(Settings(connections=[conn], embedded=False))


@pytest.mark.parametrize(
    ("source", "fields", "upstream_calls"),
    [
        ("custom", {}, 1),
        ("groq", {"n": 3}, 3),  # groq has no n: three requests at once
        ("groq", {"n": 3, "guided_regex": "Hello.*"}, 3),  # checked, and fanned out
        ("custom", {"n": 3, "guided_choice": ["yes", "no"]}, 1),
    ],
)
async def test_once_each(
    fake: FakeOpenAI,
    counts: Counter[str],
    source: str,
    fields: dict[str, Any],
    upstream_calls: int,
) -> None:
    async with gateway(fake, source) as gw:
        counts.clear()  # building the gateway reads each source's table once, not per request
        answer = await gw.chat({"model": "up/gpt-fake-1", "messages": HI, **fields})
    assert len(answer.choices) == fields.get("n", 1)
    assert len(fake.seen) == upstream_calls
    assert counts == {"plan": 1, "guided": 1, "unsupported": 1, "validate": 1}


async def test_a_stream_is_planned_once_too(fake: FakeOpenAI, counts: Counter[str]) -> None:
    async with gateway(fake, "groq") as gw:
        counts.clear()
        chunks = [c async for c in gw.stream(model="up/gpt-fake-1", messages=HI, n=2)]
    assert {c.index for chunk in chunks for c in chunk.choices} == {0, 1}
    assert counts == {"plan": 1, "guided": 1, "unsupported": 1, "validate": 1}
