"""Per-source rules of the OpenAI dialect, checked on the built request (no I/O).

`build` asks the adapter alone; `sent` goes through the backend, which also drops
parameters and adds the connection's ``extra_body`` and ``exclude_params``.
"""

from __future__ import annotations

from typing import Any

import pytest

from chatgate.adapters.openai_chat import OpenAIChatAdapter
from chatgate.adapters.registry import make_adapter
from chatgate.backends.remote import RemoteBackend
from chatgate.config import Connection, Settings
from chatgate.errors import ConfigError, UnsupportedParameterError
from chatgate.exchange.transport import Transport
from chatgate.secrets import EnvSecrets
from chatgate.sources import SOURCES
from chatgate.upstream import Credentials
from chatgate.validation import parse_chat_request

KEY = "sk-test-quirks-key-1111abcd"


def connection(source: str, **fields: Any) -> Connection:
    fields.setdefault("api_key", KEY)
    return Connection(name="c", source=source, **fields)


def backend(source: str, **fields: Any) -> RemoteBackend:
    conn = connection(source, **fields)
    secrets = EnvSecrets(Settings(embedded=False, connections=[conn]), env={})
    return RemoteBackend(conn, SOURCES[source], Transport(), secrets)


def build(source: str, request: dict[str, Any], **fields: Any) -> Any:
    conn = connection(source, **fields)
    adapter = make_adapter(conn, SOURCES[source], Credentials(key=conn.api_key))
    return adapter.build(parse_chat_request({"model": "c/m", **request}), [])


def sent(source: str, request: dict[str, Any], **fields: Any) -> Any:
    chosen = backend(source, **fields)
    return chosen.build(chosen.plan(parse_chat_request({"model": "c/m", **request}), "c"))


TOOL_HISTORY = [
    {"role": "user", "content": "Weather?"},
    {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {
                "id": "call_abcdefghijkl",
                "type": "function",
                "function": {"name": "w", "arguments": "{}"},
            }
        ],
    },
    {"role": "tool", "tool_call_id": "call_abcdefghijkl", "content": "sunny"},
]


def test_mistral_tool_ids_are_nine_characters_and_consistent() -> None:
    body = build("mistral", {"messages": TOOL_HISTORY}).body
    call_id = body["messages"][1]["tool_calls"][0]["id"]
    assert len(call_id) == 9 and call_id.isalnum()
    assert body["messages"][2]["tool_call_id"] == call_id
    kept = build(
        "mistral",
        {
            "messages": [
                {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [
                        {
                            "id": "Ab3dE6gH9",
                            "type": "function",
                            "function": {"name": "w", "arguments": "{}"},
                        }
                    ],
                },
                {"role": "tool", "tool_call_id": "Ab3dE6gH9", "content": "x"},
            ]
        },
    ).body
    assert kept["messages"][0]["tool_calls"][0]["id"] == "Ab3dE6gH9"


def test_mistral_seed_prefix_and_user() -> None:
    body = build(
        "mistral",
        {
            "messages": [
                {"role": "user", "content": "Hi"},
                {"role": "assistant", "content": "Sure,"},
            ],
            "seed": 5,
            "user": "u1",
        },
    ).body
    assert body["random_seed"] == 5 and "seed" not in body
    assert body["messages"][-1] == {"role": "assistant", "content": "Sure,", "prefix": True}
    assert "user" not in body


def test_deepseek_prefix_only_without_tools_and_reasoning_on_tool_turns() -> None:
    prefill = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Well"}]
    assert build("deepseek", {"messages": prefill}).body["messages"][-1]["prefix"] is True
    with_tools = build(
        "deepseek",
        {"messages": prefill, "tools": [{"type": "function", "function": {"name": "w"}}]},
    ).body
    assert "prefix" not in with_tools["messages"][-1]
    history = build("deepseek", {"messages": TOOL_HISTORY}).body["messages"]
    assert history[1]["reasoning_content"] == ""


def test_reasoning_content_is_dropped_from_history_elsewhere() -> None:
    messages = [
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Yo", "reasoning_content": "hmm"},
        {"role": "user", "content": "And?"},
    ]
    assert "reasoning_content" not in build("openai", {"messages": messages}).body["messages"][1]


def test_xai_names_only_on_user_messages() -> None:
    # Where a name may not go, the prompt's names policy has already made it a prefix
    # (or dropped it) before the adapter; the adapter only keeps a stray one off the wire.
    body = build(
        "xai",
        {
            "messages": [
                {"role": "user", "name": "Bob", "content": "Hi"},
                {"role": "assistant", "name": "Alice", "content": "Hello"},
            ]
        },
    ).body
    assert body["messages"][0]["name"] == "Bob"
    assert body["messages"][1] == {"role": "assistant", "content": "Hello"}


def test_names_pass_through_where_the_wire_has_them() -> None:
    messages = [
        {"role": "user", "name": "Bob", "content": "Hi"},
        {"role": "assistant", "name": "Alice", "content": "Hello"},
    ]
    body = build("openai", {"messages": messages}).body
    assert [m.get("name") for m in body["messages"]] == ["Bob", "Alice"]
    assert [m["content"] for m in body["messages"]] == ["Hi", "Hello"]


def test_openrouter_passes_its_routing_options_through() -> None:
    up = build(
        "openrouter",
        {
            "messages": [{"role": "user", "content": "Hi"}],
            "provider": {"order": ["a"], "allow_fallbacks": False},
            "transforms": ["middle-out"],
            "top_k": 3,
        },
    )
    assert up.body["provider"] == {"order": ["a"], "allow_fallbacks": False}
    assert up.body["transforms"] == ["middle-out"]
    assert up.body["top_k"] == 3
    assert up.headers["X-Title"] == "chatgate"


@pytest.mark.parametrize(
    ("source", "param", "value"),
    [
        ("groq", "logprobs", True),
        ("groq", "logit_bias", {"1": 2}),
        ("perplexity", "stop", "x"),
        ("openai", "top_k", 5),
        ("mistral", "logit_bias", {"1": 2}),
        ("openai", "mystery", 1),
        ("deepseek", "top_k", 3),
    ],
)
def test_rejected_parameters_are_named(source: str, param: str, value: Any) -> None:
    request = parse_chat_request(
        {"model": "c/m", "messages": [{"role": "user", "content": "x"}], param: value}
    )
    with pytest.raises(UnsupportedParameterError) as caught:
        backend(source).plan(request, "c")
    assert caught.value.param == param
    assert SOURCES[source].display_name in caught.value.message


@pytest.mark.parametrize("source", ["groq", "deepseek", "perplexity"])
def test_n_is_emulated_not_refused(source: str) -> None:
    request = parse_chat_request(
        {"model": "c/m", "messages": [{"role": "user", "content": "x"}], "n": 3}
    )
    chosen = backend(source)
    attempt = chosen.plan(request, "c")
    assert attempt.dropped == () and attempt.fanout.copies == 3
    assert "n" not in (chosen.build(attempt).body or {})  # each copy asks for one


def test_drop_params_drops_instead() -> None:
    up = sent(
        "groq",
        {"messages": [{"role": "user", "content": "x"}], "logprobs": True, "top_logprobs": 2},
        drop_params=True,
    )
    assert "logprobs" not in up.body and "top_logprobs" not in up.body


def test_custom_extra_body_headers_and_exclude() -> None:
    asked = {"messages": [{"role": "user", "content": "x"}], "min_p": 0.1, "temperature": 0.2}
    fields: dict[str, Any] = {
        "base_url": "http://127.0.0.1:5000/v1",
        "extra_body": {"temperature": 0.9, "repetition_penalty": 1.1},
        "exclude_params": ["min_p", "max_tokens"],
        "headers": {"X-Extra": "1", "Authorization": "Bearer other-token-5678"},
    }
    # The adapter leaves extra_body and exclude_params to the runner, which applies
    # them once for every adapter alike.
    built = build("custom", asked, **fields)
    assert built.body["temperature"] == 0.2 and built.body["min_p"] == 0.1
    assert "repetition_penalty" not in built.body
    up = sent("custom", asked, **fields)
    assert up.url == "http://127.0.0.1:5000/v1/chat/completions"
    assert up.body["temperature"] == 0.9  # extra_body overrides the client
    assert up.body["repetition_penalty"] == 1.1
    assert "min_p" not in up.body  # exclude_params is the very last step
    assert up.headers["X-Extra"] == "1"
    assert up.headers["Authorization"] == "Bearer other-token-5678"


def test_custom_without_key_sends_no_authorization() -> None:
    up = build(
        "custom",
        {"messages": [{"role": "user", "content": "x"}]},
        base_url="http://127.0.0.1:5000/v1",
        api_key=None,
    )
    assert "Authorization" not in up.headers


def test_reverse_proxy_password_replaces_the_key() -> None:
    up = build(
        "openai",
        {"messages": [{"role": "user", "content": "x"}]},
        base_url="https://proxy.example/v1",
        proxy_password="proxy-pass-4321",
    )
    assert up.url == "https://proxy.example/v1/chat/completions"
    assert up.headers["Authorization"] == "Bearer proxy-pass-4321"


def test_pollinations_is_anonymous_without_a_key() -> None:
    up = build("pollinations", {"messages": [{"role": "user", "content": "x"}]}, api_key=None)
    assert up.url == "https://text.pollinations.ai/v1/chat/completions"
    assert up.headers["Authorization"] == "Bearer anonymous"
    assert isinstance(up.body["seed"], int)


def test_missing_key_is_a_config_error_that_names_the_fix() -> None:
    with pytest.raises(ConfigError, match='api_key_env = "C_API_KEY"'):
        backend("openai", api_key=None)


def test_api_key_env() -> None:
    conn = Connection(name="c", source="openai", api_key_env="MY_OPENAI_KEY")
    secrets = EnvSecrets(
        Settings(embedded=False, connections=[conn]), env={"MY_OPENAI_KEY": "sk-1"}
    )
    adapter = OpenAIChatAdapter(conn, SOURCES["openai"], secrets.credentials(conn))
    assert adapter.headers()["Authorization"] == "Bearer sk-1"


def test_models_filter_and_shapes() -> None:
    mistral = backend("mistral").adapter
    assert mistral.parse_models(
        {
            "data": [
                {"id": "chatty", "capabilities": {"completion_chat": True}},
                {"id": "embedder", "capabilities": {"completion_chat": False}},
            ]
        }
    ) == ["chatty"]
    pollinations = backend("pollinations").adapter
    assert pollinations.parse_models([{"name": "openai"}, {"name": "mistral"}]) == [
        "openai",
        "mistral",
    ]
    assert backend("deepseek").adapter.models_request().url == "https://api.deepseek.com/models"
