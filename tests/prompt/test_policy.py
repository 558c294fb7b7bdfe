"""Where the post-processing mode comes from, the tools rule, and forced source modes."""

from __future__ import annotations

from typing import Any

import pytest

from chatgate.config import Connection, Settings
from chatgate.errors import InvalidRequestError
from chatgate.gateway import Gateway
from chatgate.prompt.policy import Shaping, choose
from chatgate.sources import SOURCES
from chatgate.validation import parse_chat_request

TOOL = {"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}
CHAT = [
    {"role": "assistant", "content": "Greeting"},
    {"role": "user", "name": "Bob", "content": "hi"},
    {"role": "user", "content": "there"},
]


def request(**fields: Any) -> Any:
    return parse_chat_request({"model": "c/m", "messages": CHAT, **fields})


def conn(source: str = "custom", **fields: Any) -> Connection:
    return Connection(name="c", source=source, base_url="http://127.0.0.1:9/v1", **fields)


# (request field, connection setting, source, tools?) -> (mode, set_by, forced)
CHOICES = [
    (None, None, "custom", False, ("none", "source", None)),
    (None, "merge", "custom", False, ("merge", "connection", None)),
    ("strict", "merge", "custom", False, ("strict", "request", None)),
    ("none", "merge", "custom", False, ("none", "request", None)),
    (None, None, "perplexity", False, ("none", "source", "strict")),
    ("single", None, "perplexity", False, ("single", "request", "strict")),
    (None, None, "deepseek", True, ("none", "source", "semi-strict-tools")),
    (None, None, "deepseek", False, ("none", "source", "semi-strict-tools")),
    (None, None, "ai21", False, ("none", "source", "merge")),
    # The source needs its shape and the client its tools: the tools variant is forced.
    (None, None, "ai21", True, ("none", "source", "merge-tools")),
    ("strict-tools", None, "ai21", True, ("strict-tools", "request", "merge-tools")),
    # SillyTavern's spellings are accepted.
    ("semi_tools", None, "custom", True, ("semi-strict-tools", "request", None)),
    ("", "merge", "custom", False, ("none", "request", None)),
]


@pytest.mark.parametrize(("asked", "configured", "source", "tools", "expected"), CHOICES)
def test_where_the_mode_comes_from(
    asked: str | None,
    configured: str | None,
    source: str,
    tools: bool,
    expected: tuple[str, str, str | None],
) -> None:
    fields: dict[str, Any] = {} if asked is None else {"prompt_post_processing": asked}
    if tools:
        fields["tools"] = [TOOL]
    shaping = choose(request(**fields), conn(source, post_processing=configured), SOURCES[source])
    assert (shaping.mode, shaping.set_by, shaping.forced) == expected


@pytest.mark.parametrize(
    ("mode", "variant"),
    [("merge", "merge-tools"), ("semi-strict", "semi-strict-tools"), ("strict", "strict-tools"),
     ("single", "none")],
)  # fmt: skip
def test_tools_under_a_plain_mode_are_refused_naming_the_variant(mode: str, variant: str) -> None:
    with pytest.raises(InvalidRequestError) as caught:
        choose(request(tools=[TOOL], prompt_post_processing=mode), conn(), SOURCES["custom"])
    assert caught.value.param == "prompt_post_processing"
    assert f"'{variant}'" in caught.value.message and f"'{mode}'" in caught.value.message
    with pytest.raises(InvalidRequestError) as caught:
        choose(request(tools=[TOOL]), conn(post_processing=mode), SOURCES["custom"])
    assert caught.value.param == "tools"
    assert "connection 'c'" in caught.value.message


def test_an_unknown_mode_is_a_400_naming_the_field() -> None:
    with pytest.raises(InvalidRequestError) as caught:
        request(prompt_post_processing="tidy")
    assert caught.value.param == "prompt_post_processing"


def test_applied_modes_skip_none_and_repeats() -> None:
    assert Shaping("none", "source", None).applied == []
    assert Shaping("strict", "request", "strict").applied == ["strict"]
    assert Shaping("single", "request", "strict").applied == ["single", "strict"]


def dumped(gateway: Gateway, **fields: Any) -> list[dict[str, Any]]:
    prepared = gateway.prepare({"model": "c/m", "messages": CHAT, **fields})
    return [m.model_dump(exclude_none=True) for m in prepared.request.messages]


def test_prepare_applies_placeholder_and_names_from_settings() -> None:
    settings = Settings(embedded=False, connections=[conn(models=["m"])], prompt_placeholder="[Go]")
    with Gateway(settings) as gw:
        assert dumped(gw, prompt_post_processing="strict") == [
            {"role": "user", "content": "[Go]"},
            {"role": "assistant", "content": "Greeting"},
            {"role": "user", "content": "Bob: hi\n\nthere"},
        ]
        assert dumped(gw) == [{k: v for k, v in m.items()} for m in CHAT]
    settings = Settings(embedded=False, connections=[conn(models=["m"], names="none")])
    with Gateway(settings) as gw:
        assert dumped(gw, prompt_post_processing="merge")[1] == {
            "role": "user",
            "content": "hi\n\nthere",
        }


def test_forced_mode_applies_even_when_the_client_asks_for_none() -> None:
    settings = Settings(embedded=False, connections=[conn("perplexity", api_key="pplx-123456")])
    with Gateway(settings) as gw:
        prepared = gw.prepare(
            {"model": "c/sonar", "messages": CHAT, "prompt_post_processing": "none"}
        )
    assert [m.role for m in prepared.request.messages] == ["user", "assistant", "user"]
    assert prepared.request.messages[0].content == "[Start a new chat]"


def test_the_embedded_engine_accepts_the_field_and_gets_the_shape() -> None:
    settings = Settings(embedded=False, connections=[Connection(name="local", source="local")])
    with Gateway(settings) as gw:
        prepared = gw.prepare(
            {"model": "local/smollm2-135m-instruct", "messages": CHAT,
             "prompt_post_processing": "single"}
        )  # fmt: skip
    assert prepared.dropped == []
    assert [m.role for m in prepared.request.messages] == ["user"]
