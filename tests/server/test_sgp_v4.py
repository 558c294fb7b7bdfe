"""``POST /v4/beta/chat/completions`` with the official SGP SDK (scale-gp 0.1.0a56) as
the client: against the embedded model, and against the fake OpenAI upstream for the
parameters the gateway handles itself."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, cast

import httpx
import pytest
import scale_gp

from chatgate.config import Connection, Settings
from tests.conftest import MODEL, LiveServer, start_server
from tests.fakes.openai_server import FakeOpenAI

KEY = "sk-test-sgp-upstream-5555qrst"
GATEWAY_KEY = "gw-sgp-test-key-0002"


def field(item: Any, name: str) -> Any:
    """A field of an SDK object; the a56 SDK keeps a choice as a plain dict (its schema
    types ``index`` as a string, so an OpenAI choice falls to the dict branch)."""
    return item.get(name) if isinstance(item, dict) else getattr(item, name, None)


@pytest.fixture()
def embedded(live: LiveServer) -> Any:
    return scale_gp.SGPClient(api_key=live.key, base_url=live.url, max_retries=0)


@pytest.mark.model
def test_non_stream_every_role_and_part_shape(embedded: Any) -> None:
    answer = embedded.beta.chat.completions.create(
        model=MODEL,
        messages=[
            {"role": "system", "content": "You answer briefly."},
            {"content": "What is 2 + 2?"},  # no role: a user message
            {"role": "assistant", "content": "4."},
            {"role": "user", "content": {"type": "text", "text": "And 3 + 3?"}},  # one part
            {"role": "user", "content": [{"type": "text", "text": "Answer with a number."}]},
        ],
        max_tokens=8,
        seed=3,
        temperature=0,
    )
    message = field(answer.choices[0], "message")
    assert isinstance(field(message, "content"), str) and field(message, "content")
    assert answer.usage is not None and answer.usage.completion_tokens <= 8


@pytest.mark.model
def test_stream_has_no_done_frame(embedded: Any, live: LiveServer) -> None:
    chunks = list(
        embedded.beta.chat.completions.create(
            model=MODEL,
            messages=[{"role": "user", "content": "Count to three."}],
            max_tokens=8,
            seed=3,
            stream=True,
        )
    )
    text = "".join(
        field(field(c.choices[0], "delta"), "content") or "" for c in chunks if c.choices
    )
    assert text
    raw = httpx.post(
        f"{live.url}/v4/beta/chat/completions",
        headers={"x-api-key": str(live.key)},
        json={"model": MODEL, "messages": [{"content": "Hi"}], "max_tokens": 4, "stream": True},
        timeout=60,
    )
    assert raw.headers["content-type"].startswith("text/event-stream")
    assert "[DONE]" not in raw.text and raw.text.startswith("data: {")


def test_errors_are_the_sdks_own(embedded: Any, live: LiveServer) -> None:
    with pytest.raises(scale_gp.AuthenticationError):
        scale_gp.SGPClient(
            api_key="wrong", base_url=live.url, max_retries=0
        ).beta.chat.completions.create(model=MODEL, messages=[{"content": "Hi"}])
    with pytest.raises(scale_gp.NotFoundError) as missing:
        embedded.beta.chat.completions.create(model="nowhere/m", messages=[{"content": "Hi"}])
    assert "unknown vendor 'nowhere'" in str(missing.value)
    with pytest.raises(scale_gp.UnprocessableEntityError) as invalid:
        embedded.beta.chat.completions.create(model=MODEL, messages=[{"content": 5}])
    detail = cast(dict[str, Any], invalid.value.body)["detail"]
    assert detail[0]["loc"][:3] == ["body", "messages", 0]
    with pytest.raises(scale_gp.UnprocessableEntityError) as strategy:
        embedded.beta.chat.completions.create(
            model=MODEL,
            messages=[{"content": "Hi"}],
            memory_strategy={"name": "first_k", "k": 1},
        )
    body = cast(dict[str, Any], strategy.value.body)
    assert body["detail"][0]["loc"][:2] == ["body", "memory_strategy"]


@pytest.mark.parametrize(
    ("body", "status", "loc"),
    [
        (b"{not json", 422, ["body", 0]),
        (b"[]", 422, ["body"]),
        (
            b'{"model": "local/x", "messages": [{"content": "Hi"}], '
            b'"audio": {"format": "ogg", "voice": "x"}}',
            422,
            ["body", "audio", "format"],
        ),
        (
            b'{"model": "local/x", "messages": [{"content": "Hi"}], "modalities": ["video"]}',
            422,
            ["body", "modalities", 0],
        ),
        (
            b'{"model": "local/x", "messages": [{"content": "Hi"}], "inference_timeout": "soon"}',
            422,
            ["body", "inference_timeout"],
        ),
        (
            b'{"model": "local/x", "messages": [{"content": "Hi"}], "guided_choice": []}',
            422,
            ["body", "guided_choice"],
        ),
        (b'{"messages": [{"content": "Hi"}]}', 422, ["body", "model"]),
        (b'{"model": "local/x", "messages": "Hi"}', 422, ["body", "messages"]),
        (
            b'{"model": "local/x", "messages": [{"content": "Hi"}], "top_logprobs": 2}',
            422,
            ["body", "top_logprobs"],
        ),
    ],
)
def test_validation_errors_are_fastapi_shaped(
    live: LiveServer, body: bytes, status: int, loc: list[Any]
) -> None:
    answer = httpx.post(
        f"{live.url}/v4/beta/chat/completions",
        headers={"x-api-key": str(live.key), "content-type": "application/json"},
        content=body,
    )
    assert answer.status_code == status
    detail = answer.json()["detail"]
    assert detail[0]["loc"] == loc and detail[0]["msg"] and detail[0]["type"]


# --- gateway-handled parameters, against the fake upstream ---------------------------


@pytest.fixture()
def sgp(fake: FakeOpenAI) -> Iterator[Any]:
    connections = [
        Connection(
            name="fake",
            source="custom",
            base_url=f"{fake.url}/v1",
            api_key=KEY,
            models=["gpt-fake-1"],
            deployments={"eu": f"{fake.url}/eu/v1"},
        ),
        Connection(name="mistral-main", source="mistral", base_url=f"{fake.url}/v1", api_key=KEY),
    ]
    settings = Settings(embedded=False, connections=connections)
    settings.server.api_keys = [GATEWAY_KEY]
    info, server, thread = start_server(settings)
    yield scale_gp.SGPClient(api_key=GATEWAY_KEY, base_url=info.url, max_retries=0)
    server.should_exit = True
    thread.join(timeout=10)


HISTORY = [
    {"role": "system", "content": "Rules."},
    {"role": "user", "content": "one"},
    {"role": "assistant", "content": "two"},
    {"role": "user", "content": "three"},
    {"role": "assistant", "content": "four"},
    {"role": "user", "content": "five"},
]


@pytest.mark.parametrize(
    "strategy", [{"name": "last_k", "k": 2}, {"name": "last_k", "params": {"k": 2}}, {"k": 2}]
)
def test_memory_strategy_keeps_system_and_last_k(
    sgp: Any, fake: FakeOpenAI, strategy: dict[str, Any]
) -> None:
    sgp.post(
        "/v4/beta/chat/completions",
        body={"model": "fake/gpt-fake-1", "messages": HISTORY, "memory_strategy": strategy},
        cast_to=object,
    )
    sent = fake.last("/chat/completions").body
    assert [m["content"] for m in sent["messages"]] == ["Rules.", "four", "five"]
    assert "memory_strategy" not in sent


def test_vendor_source_and_deployment_resolution(sgp: Any, fake: FakeOpenAI) -> None:
    sgp.with_options(
        default_headers={"x-selected-account-id": "acct-1"}
    ).beta.chat.completions.create(model="fake/gpt-fake-1/eu", messages=[{"content": "Hi"}])
    assert fake.last("/chat/completions").path == "/eu/v1/chat/completions"
    sgp.beta.chat.completions.create(model="mistral/mistral-small", messages=[{"content": "Hi"}])
    seen = fake.last("/chat/completions")
    assert seen.path == "/v1/chat/completions" and seen.body["model"] == "mistral-small"


def test_inference_extras_and_timeout(sgp: Any, fake: FakeOpenAI) -> None:
    sgp.beta.chat.completions.create(
        model="fake/gpt-fake-1",
        messages=[{"content": "Hi"}],
        inference_extra_params={"min_p": 0.1},
        inference_extra_headers={"X-Trace": "abc"},
    )
    seen = fake.last("/chat/completions")
    assert seen.body["min_p"] == 0.1 and seen.headers["x-trace"] == "abc"
    assert "inference_extra_params" not in seen.body
    with pytest.raises(scale_gp.BadRequestError) as refused:
        sgp.beta.chat.completions.create(
            model="fake/gpt-fake-1",
            messages=[{"content": "Hi"}],
            inference_extra_headers={"Authorization": "Bearer other"},
        )
    assert "allow_auth_override" in str(refused.value)
    with pytest.raises(scale_gp.APIStatusError) as late:
        sgp.beta.chat.completions.create(
            model="fake/slow-1", messages=[{"content": "Hi"}], inference_timeout=0.3
        )
    assert late.value.status_code == 504 and "inference_timeout" in str(late.value)


def test_error_mid_stream_is_an_error_event(sgp: Any) -> None:
    stream = sgp.beta.chat.completions.create(
        model="fake/oops-1", messages=[{"content": "Hi"}], stream=True
    )
    with pytest.raises(scale_gp.APIStatusError) as caught:
        for _ in stream:
            pass
    assert "overloaded mid-stream" in str(caught.value)


def test_memory_strategy_on_v1_and_in_the_preview(fake: FakeOpenAI) -> None:
    from chatgate.gateway import Gateway

    conn = Connection(name="fake", source="custom", base_url=f"{fake.url}/v1", api_key=KEY)
    with Gateway(Settings(embedded=False, connections=[conn])) as gateway:
        shown = gateway._loop().call(
            gateway.preview(
                model="fake/m", messages=HISTORY, memory_strategy={"name": "last_k", "k": 1}
            )
        )
    assert [m["content"] for m in shown["body"]["messages"]] == ["Rules.", "five"]
    assert shown["memory_strategy"] == {"name": "last_k", "k": 1, "dropped_messages": 4}


def test_an_internal_failure_keeps_the_v4_error_shape(
    sgp: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from chatgate.gateway import Gateway

    def boom(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("a bug, with secret sk-test-sgp-upstream-5555qrst")

    monkeypatch.setattr(Gateway, "prepare", boom)
    with pytest.raises(scale_gp.InternalServerError) as caught:
        sgp.beta.chat.completions.create(model="fake/gpt-fake-1", messages=[{"content": "Hi"}])
    body = cast(dict[str, Any], caught.value.body)
    assert body == {"detail": "internal error in chatgate; see the server log"}
