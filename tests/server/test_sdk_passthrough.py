"""The official `openai` client gets the same results through chatgate as directly.

One client talks to the fake upstream itself; another talks to chatgate, which talks to
the same fake. Text, stream, tools and streamed tools must come out identical (except
for the model id, which carries the connection prefix through chatgate).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import openai
import pytest

from chatgate.config import Connection, Settings
from tests.conftest import start_server
from tests.fakes.openai_server import FakeOpenAI

TOOLS: Any = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
        },
    }
]
ASK: Any = [{"role": "user", "content": "Weather in Paris?"}]


@pytest.fixture()
def clients(fake: FakeOpenAI) -> Iterator[tuple[openai.OpenAI, openai.OpenAI]]:
    settings = Settings(
        embedded=False,
        connections=[
            Connection(
                name="fake",
                source="custom",
                base_url=f"{fake.url}/v1",
                api_key="sk-upstream-pass-0000",
            )
        ],
    )
    info, server, thread = start_server(settings)
    direct = openai.OpenAI(
        base_url=f"{fake.url}/v1", api_key="sk-upstream-pass-0000", max_retries=0
    )
    gateway = openai.OpenAI(base_url=f"{info.url}/v1", api_key="unused", max_retries=0)
    yield direct, gateway
    server.should_exit = True
    thread.join(timeout=10)


def dump(value: Any) -> Any:
    data = value.model_dump()
    data.pop("model", None)
    return data


@pytest.mark.parametrize(
    ("model", "extra"), [("gpt-fake-1", {}), ("tool-fake", {"tools": TOOLS}), ("reason-fake", {})]
)
def test_non_stream_identical(
    clients: tuple[openai.OpenAI, openai.OpenAI], model: str, extra: dict[str, Any]
) -> None:
    direct, gateway = clients
    a = direct.chat.completions.create(model=model, messages=ASK, **extra)
    b = gateway.chat.completions.create(model=f"fake/{model}", messages=ASK, **extra)
    assert b.model == f"fake/{model}"
    assert dump(a) == dump(b)


@pytest.mark.parametrize(
    ("model", "extra"), [("gpt-fake-1", {}), ("tool-fake", {"tools": TOOLS}), ("reason-fake", {})]
)
def test_stream_identical(
    clients: tuple[openai.OpenAI, openai.OpenAI], model: str, extra: dict[str, Any]
) -> None:
    direct, gateway = clients
    options: Any = {"include_usage": True}
    a = [
        dump(c)
        for c in direct.chat.completions.create(
            model=model, messages=ASK, stream=True, stream_options=options, **extra
        )
    ]
    b = [
        dump(c)
        for c in gateway.chat.completions.create(
            model=f"fake/{model}", messages=ASK, stream=True, stream_options=options, **extra
        )
    ]
    assert a == b
    assert len(a) > 3
