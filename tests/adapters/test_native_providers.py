"""Claude, Gemini (AI Studio and Vertex) and Cohere through `chatgate serve`, with the
official `openai` client in front and each provider's fake behind.

Every provider gets the same checks: text, stream, an image, a tool-call round trip
(streamed arguments assemble to the non-stream ones), JSON-schema output, upstream
400/401/429 with the upstream's words, and an error in the middle of a stream.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass
from typing import Any, cast

import jsonschema
import openai
import orjson
import pytest

from chatgate.config import Connection, GoogleOptions, Settings
from chatgate.types import ChatRequest
from tests.conftest import start_server
from tests.fakes import anthropic_server, cohere_server, gemini_server
from tests.fakes.common import TEXT, WEATHER_ARGS, FakeState
from tests.fakes.openai_server import serve

KEY = "sk-ant-test-7Qm2x9Rk0042wxyz"
PNG = "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk"
WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather in a city.",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}, "unit": {"type": "string"}},
            "required": ["city"],
        },
    },
}
SCHEMA = {
    "type": "object",
    "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
    "required": ["city", "days"],
    "additionalProperties": False,
}


@dataclass(frozen=True)
class Provider:
    """One provider under test: its connection, its fake, how it records a request."""

    name: str
    source: str
    fake: str
    base_path: str
    revoked_key: str
    request_suffix: str
    image_in: Callable[[Any], bool]


def _claude_image(body: Any) -> bool:
    blocks = body["messages"][-1]["content"]
    return any(b["type"] == "image" and b["source"]["type"] == "base64" for b in blocks)


def _gemini_image(body: Any) -> bool:
    return any("inlineData" in part for part in body["contents"][-1]["parts"])


PROVIDERS = [
    Provider(
        "claude",
        "claude",
        "anthropic",
        "/v1",
        anthropic_server.KEY_REVOKED,
        "/messages",
        _claude_image,
    ),
]
PROVIDERS += [
    Provider(
        name,
        source,
        "gemini",
        base,
        gemini_server.KEY_REVOKED,
        "Content",
        _gemini_image,
    )
    for name, source, base in (
        ("google", "google", "/v1beta"),
        ("vertex", "vertexai", "/v1"),
        ("vertex-sa", "vertexai", "/v1"),
    )
]


def _cohere_image(body: Any) -> bool:
    parts = body["messages"][-1]["content"]
    return any(p["type"] == "image_url" and p["image_url"]["url"] == PNG for p in parts)


PROVIDERS.append(
    Provider("cohere", "cohere", "cohere", "/v2", cohere_server.KEY_REVOKED, "/chat", _cohere_image)
)
APPS = {
    "anthropic": anthropic_server.build_app,
    "gemini": gemini_server.build_app,
    "cohere": cohere_server.build_app,
}


def service_account(token_uri: str) -> bytes:
    """A Google service-account key file with a fresh RSA key and the fake's token URI."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    return orjson.dumps(
        {
            "type": "service_account",
            "project_id": "fake-project",
            "private_key_id": "key-1",
            "private_key": pem,
            "client_email": "chatgate@fake-project.iam.gserviceaccount.com",
            "client_id": "1",
            "token_uri": token_uri,
        }
    )


@pytest.fixture(scope="module")
def fakes() -> Iterator[dict[str, FakeState]]:
    states: dict[str, FakeState] = {}
    servers: list[Generator[str, None, None]] = []
    for name, build in APPS.items():
        state = FakeState()
        runner = cast(Generator[str, None, None], serve(build(state)))
        state.url = next(runner)
        states[name] = state
        servers.append(runner)
    yield states
    for runner in servers:
        runner.close()


@pytest.fixture(scope="module")
def sdk(fakes: dict[str, FakeState], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    account = tmp_path_factory.mktemp("vertex") / "service-account.json"
    account.write_bytes(service_account(fakes["gemini"].url + "/token"))
    connections = []
    for p in PROVIDERS:
        base = fakes[p.fake].url + p.base_path
        if p.name == "vertex-sa":
            connections.append(
                Connection(
                    name=p.name,
                    source=p.source,
                    base_url=base,
                    google=GoogleOptions(service_account_file=str(account), region="europe-west4"),
                )
            )
        else:
            connections.append(Connection(name=p.name, source=p.source, base_url=base, api_key=KEY))
        connections.append(
            Connection(
                name=f"{p.name}-revoked", source=p.source, base_url=base, api_key=p.revoked_key
            )
        )
    info, server, thread = start_server(Settings(embedded=False, connections=connections))
    yield openai.OpenAI(base_url=f"{info.url}/v1", api_key="unused", max_retries=0)
    server.should_exit = True
    thread.join(timeout=10)


def user(text: str) -> list[dict[str, Any]]:
    return [{"role": "system", "content": "Be brief."}, {"role": "user", "content": text}]


@pytest.mark.parametrize("p", PROVIDERS, ids=lambda p: p.name)
def test_text_and_stream(sdk: Any, p: Provider) -> None:
    answer = sdk.chat.completions.create(model=f"{p.name}/m-1", messages=user("Hi"))
    assert answer.choices[0].message.content == TEXT
    assert answer.choices[0].finish_reason == "stop"
    assert answer.usage is not None and answer.usage.completion_tokens > 0
    chunks = list(
        sdk.chat.completions.create(
            model=f"{p.name}/m-1",
            messages=user("Hi"),
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == TEXT
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].choices == [] and chunks[-1].usage is not None


@pytest.mark.parametrize("p", PROVIDERS, ids=lambda p: p.name)
def test_image_input(sdk: Any, fakes: dict[str, FakeState], p: Provider) -> None:
    content = [
        {"type": "text", "text": "What is this?"},
        {"type": "image_url", "image_url": {"url": PNG}},
    ]
    answer = sdk.chat.completions.create(
        model=f"{p.name}/m-1",
        messages=[{"role": "user", "content": content}],
    )
    assert answer.choices[0].message.content == "I see 1 image(s)."
    assert p.image_in(fakes[p.fake].last(p.request_suffix).body)


def assemble(stream: Any) -> tuple[list[dict[str, str]], str | None]:
    calls: dict[int, dict[str, str]] = {}
    finish = None
    for chunk in stream:
        for choice in chunk.choices:
            finish = choice.finish_reason or finish
            for delta in choice.delta.tool_calls or []:
                call = calls.setdefault(delta.index, {"id": "", "name": "", "arguments": ""})
                call["id"] += delta.id or ""
                if delta.function:
                    call["name"] += delta.function.name or ""
                    call["arguments"] += delta.function.arguments or ""
    return list(calls.values()), finish


@pytest.mark.parametrize("p", PROVIDERS, ids=lambda p: p.name)
def test_tool_call_round_trip(sdk: Any, p: Provider) -> None:
    asked = {
        "model": f"{p.name}/tool-1",
        "messages": user("Weather in Paris?"),
        "tools": [WEATHER_TOOL],
    }
    whole = sdk.chat.completions.create(**asked)
    assert whole.choices[0].finish_reason == "tool_calls"
    call = whole.choices[0].message.tool_calls[0]
    assert call.function.name == "get_weather"
    assert orjson.loads(call.function.arguments) == WEATHER_ARGS
    streamed, finish = assemble(sdk.chat.completions.create(**asked, stream=True))
    assert finish == "tool_calls"
    assert len(streamed) == 1 and streamed[0]["name"] == "get_weather" and streamed[0]["id"]
    assert orjson.loads(streamed[0]["arguments"]) == orjson.loads(call.function.arguments)
    history = [
        *asked["messages"],
        whole.choices[0].message.model_dump(exclude_none=True),
        {"role": "tool", "tool_call_id": call.id, "content": "20C and sunny"},
    ]
    final = sdk.chat.completions.create(
        model=f"{p.name}/tool-1", messages=history, tools=[WEATHER_TOOL]
    )
    assert final.choices[0].message.content == "The tool said: 20C and sunny"


@pytest.mark.parametrize("p", PROVIDERS, ids=lambda p: p.name)
@pytest.mark.parametrize("stream", [False, True])
def test_json_schema_output(sdk: Any, p: Provider, stream: bool) -> None:
    fmt = {"type": "json_schema", "json_schema": {"name": "trip", "schema": SCHEMA}}
    asked = {"model": f"{p.name}/m-1", "messages": user("Plan a trip"), "response_format": fmt}
    if stream:
        chunks = sdk.chat.completions.create(**asked, stream=True)
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    else:
        text = sdk.chat.completions.create(**asked).choices[0].message.content
    jsonschema.validate(orjson.loads(text), SCHEMA)


@pytest.mark.parametrize("p", PROVIDERS, ids=lambda p: p.name)
def test_upstream_errors_keep_their_words(sdk: Any, p: Provider) -> None:
    for status, kind in ((400, openai.BadRequestError), (429, openai.RateLimitError)):
        with pytest.raises(kind) as caught:
            sdk.chat.completions.create(model=f"{p.name}/error-{status}", messages=user("Hi"))
        assert f"the fake says {status}" in str(caught.value)
    with pytest.raises(openai.AuthenticationError) as denied:
        sdk.chat.completions.create(model=f"{p.name}-revoked/m-1", messages=user("Hi"))
    assert p.revoked_key not in str(denied.value)
    said = str(denied.value).lower()
    assert "upstream answered 401" in said and ("invalid" in said or "not valid" in said)


@pytest.mark.parametrize("p", PROVIDERS, ids=lambda p: p.name)
def test_an_error_mid_stream_reaches_the_client(sdk: Any, p: Provider) -> None:
    stream = sdk.chat.completions.create(model=f"{p.name}/oops-1", messages=user("Hi"), stream=True)
    with pytest.raises(openai.APIError) as caught:
        for _ in stream:
            pass
    assert "verloaded" in str(caught.value) or "fake" in str(caught.value)


def test_google_keys_travel_in_headers_and_vertex_paths(
    sdk: Any, fakes: dict[str, FakeState]
) -> None:
    gemini = fakes["gemini"]
    sdk.chat.completions.create(model="google/m-1", messages=user("Hi"))
    seen = gemini.last(":generateContent")
    assert seen.path == "/v1beta/models/m-1:generateContent"
    assert seen.headers["x-goog-api-key"] == KEY and KEY not in seen.path
    assert seen.body["systemInstruction"] == {"parts": [{"text": "Be brief."}]}
    assert {s["threshold"] for s in seen.body["safetySettings"]} == {"OFF"}
    sdk.chat.completions.create(model="vertex/m-1", messages=user("Hi"))
    assert (
        gemini.last(":generateContent").path == "/v1/publishers/google/models/m-1:generateContent"
    )
    sdk.chat.completions.create(model="vertex-sa/m-1", messages=user("Hi"))
    seen = gemini.last(":generateContent")
    assert seen.path == (
        "/v1/projects/fake-project/locations/europe-west4/publishers/google/models/"
        "m-1:generateContent"
    )
    assert seen.headers["authorization"] == f"Bearer {gemini_server.TOKEN}"
    assert "x-goog-api-key" not in seen.headers


def test_claude_request_shape(sdk: Any, fakes: dict[str, FakeState]) -> None:
    messages = [
        {"role": "system", "content": "Rule one."},
        {"role": "system", "content": "Rule two."},
        {"role": "assistant", "content": "Welcome!"},
        {"role": "system", "content": "[OOC: be terse]"},
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Well,  "},
    ]
    sdk.chat.completions.create(
        model="claude/m-1", messages=messages, stop=["END"], max_tokens=50, temperature=1.5
    )
    body = fakes["anthropic"].last("/messages").body
    assert body["system"] == [
        {"type": "text", "text": "Rule one."},
        {"type": "text", "text": "Rule two."},
    ]
    assert [m["role"] for m in body["messages"]] == ["user", "assistant", "user", "assistant"]
    assert body["messages"][0]["content"][0]["text"] == "[Start a new chat]"
    assert body["messages"][2]["content"] == [
        {"type": "text", "text": "[OOC: be terse]"},
        {"type": "text", "text": "Hi"},
    ]
    assert body["messages"][-1]["content"] == [{"type": "text", "text": "Well,"}]  # prefill
    assert body["stop_sequences"] == ["END"] and body["max_tokens"] == 50
    assert body["temperature"] == 1.0
    assert fakes["anthropic"].last("/messages").headers["anthropic-version"] == "2023-06-01"


@pytest.mark.parametrize(
    ("name", "models"),
    [
        ("claude", ["claude-fake-1"]),
        ("google", ["gemini-fake-pro"]),
        ("cohere", ["command-fake"]),
    ],
)
def test_models_come_from_the_provider(
    sdk: Any, fakes: dict[str, FakeState], name: str, models: list[str]
) -> None:
    listed = [m.id for m in sdk.models.list()]
    for model in models:
        assert f"{name}/{model}" in listed
    assert "google/embedding-fake" not in listed  # only models that can generateContent


async def test_preview_shows_the_translated_body() -> None:
    from chatgate.gateway import Gateway

    conn = Connection(
        name="c", source="claude", base_url="http://127.0.0.1:9/v1", api_key=KEY, models=["m"]
    )
    async with Gateway(Settings(embedded=False, connections=[conn])) as gateway:
        shown = await gateway.preview(
            {
                "model": "c/m",
                "messages": user("Hi"),
                "tools": [WEATHER_TOOL],
                "tool_choice": "required",
            }
        )
    assert shown["url"] == "http://127.0.0.1:9/v1/messages"
    assert shown["headers"]["x-api-key"] == "sk-...wxyz"
    assert shown["body"]["system"] == [{"type": "text", "text": "Be brief."}]
    assert shown["body"]["tool_choice"] == {"type": "any"}
    assert shown["body"]["tools"][0]["input_schema"] == WEATHER_TOOL["function"]["parameters"]  # type: ignore[index]
    assert KEY not in orjson.dumps(shown).decode()


@pytest.mark.parametrize(
    ("source", "header", "value"),
    [
        ("claude", "x-api-key", "proxy-pass-1234"),
        ("google", "authorization", "Bearer proxy-pass-1234"),
        ("google", "x-goog-api-key", "proxy-pass-1234"),
    ],
)
def test_reverse_proxies_get_the_proxy_password(source: str, header: str, value: str) -> None:
    from chatgate.adapters.registry import make_adapter
    from chatgate.sources import SOURCES
    from chatgate.upstream import Credentials

    conn = Connection(
        name="p",
        source=source,
        base_url="https://proxy.example/v1",
        api_key="real-provider-key",
        proxy_password="proxy-pass-1234",
    )
    adapter = make_adapter(conn, SOURCES[source], Credentials(key="real-provider-key"))
    request = ChatRequest.model_validate({"model": "p/m", "messages": user("Hi")})
    built = adapter.build(request, [])
    assert built.url.startswith("https://proxy.example/v1/")
    headers = {k.lower(): v for k, v in built.headers.items()}
    assert headers[header] == value
    assert "real-provider-key" not in orjson.dumps(built.headers).decode()


@pytest.mark.parametrize("name", ["claude", "google"])
def test_reasoning_comes_back_as_reasoning_content(sdk: Any, name: str) -> None:
    answer = sdk.chat.completions.create(model=f"{name}/think-1", messages=user("Hi"))
    message = answer.choices[0].message
    assert message.model_extra["reasoning_content"] == "Weighing it up."
    assert message.content == TEXT
    chunks = list(
        sdk.chat.completions.create(model=f"{name}/think-1", messages=user("Hi"), stream=True)
    )
    thought = "".join(
        (c.choices[0].delta.model_extra or {}).get("reasoning_content") or ""
        for c in chunks
        if c.choices
    )
    assert thought == "Weighing it up."


def test_cohere_tool_plan_is_reasoning(sdk: Any) -> None:
    answer = sdk.chat.completions.create(
        model="cohere/tool-1", messages=user("Weather?"), tools=[WEATHER_TOOL]
    )
    assert (
        answer.choices[0].message.model_extra["reasoning_content"] == "I will look up the weather."
    )


def test_gemini_safety_settings_are_per_connection() -> None:
    from chatgate.adapters.registry import make_adapter
    from chatgate.sources import SOURCES
    from chatgate.upstream import Credentials

    request = ChatRequest.model_validate({"model": "g/m", "messages": user("Hi")})
    chosen = [{"category": "HARM_CATEGORY_HARASSMENT", "threshold": "BLOCK_ONLY_HIGH"}]
    for setting, expected in ((chosen, chosen), ([], None)):
        options = GoogleOptions(safety_settings=setting)
        conn = Connection(name="g", source="google", api_key="AIza-1", google=options)
        body = (
            make_adapter(conn, SOURCES["google"], Credentials(key="AIza-1")).build(request, []).body
        )
        assert body is not None and body.get("safetySettings") == expected


async def test_providers_use_the_configured_placeholder() -> None:
    from chatgate.gateway import Gateway

    conn = Connection(name="c", source="claude", base_url="http://127.0.0.1:9/v1", api_key=KEY)
    settings = Settings(embedded=False, connections=[conn], prompt_placeholder="[Go on]")
    async with Gateway(settings) as gateway:
        shown = await gateway.preview(
            {"model": "c/m", "messages": [{"role": "assistant", "content": "Welcome."}]}
        )
    assert shown["body"]["messages"][0]["content"] == [{"type": "text", "text": "[Go on]"}]


@pytest.mark.parametrize("p", PROVIDERS, ids=lambda p: p.name)
def test_guided_json_and_choice(sdk: Any, p: Provider) -> None:
    answer = sdk.chat.completions.create(
        model=f"{p.name}/m-1", messages=user("Plan"), extra_body={"guided_json": SCHEMA}
    )
    jsonschema.validate(orjson.loads(answer.choices[0].message.content), SCHEMA)
    picked = sdk.chat.completions.create(
        model=f"{p.name}/m-1",
        messages=user("Pick"),
        extra_body={"guided_choice": ["north", "south"]},
    )
    assert picked.choices[0].message.content in ("north", "south")


@pytest.mark.parametrize("name", ["claude", "cohere"])
def test_n_is_emulated_with_parallel_requests(
    sdk: Any, fakes: dict[str, FakeState], name: str
) -> None:
    answer = sdk.chat.completions.create(model=f"{name}/m-1", messages=user("Hi"), n=3)
    assert [c.index for c in answer.choices] == [0, 1, 2]
    assert all(c.message.content == TEXT for c in answer.choices)
    fake = fakes["anthropic" if name == "claude" else "cohere"]
    recent = [s.body for s in fake.seen[-3:]]
    assert all("n" not in b for b in recent)
    assert answer.usage.completion_tokens == 3 * (7 if name == "claude" else 5)
    chunks = list(
        sdk.chat.completions.create(
            model=f"{name}/m-1",
            messages=user("Hi"),
            n=2,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    texts = {0: "", 1: ""}
    for chunk in chunks:
        for choice in chunk.choices:
            texts[choice.index] += choice.delta.content or ""
    assert texts == {0: TEXT, 1: TEXT}
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
