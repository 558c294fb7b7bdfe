"""Connection operations and upstream failures, against the fake over real sockets."""

from __future__ import annotations

import logging
import socket
from typing import Any

import pytest

from chatgate.config import Connection, Settings
from chatgate.errors import (
    ChatgateError,
    GatewayTimeoutError,
    InvalidRequestError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitError,
    UpstreamError,
)
from chatgate.gateway import Gateway
from tests.fakes.openai_server import MODELS, FakeOpenAI

KEY = "sk-test-ops-key-5555qrst"
HI = [{"role": "user", "content": "Hi"}]


def gateway(fake: FakeOpenAI, source: str = "custom", path: str = "/v1", **fields: Any) -> Gateway:
    fields.setdefault("api_key", KEY)
    conn = Connection(name="up", source=source, base_url=fake.url + path, **fields)
    return Gateway(Settings(connections=[conn], embedded=False))


async def test_models_merge_upstream_and_manual(fake: FakeOpenAI) -> None:
    async with gateway(fake, models=["my-own", "gpt-fake-1"]) as gw:
        report = await gw.backend("up").list_models()
        assert report["models"] == ["my-own", "gpt-fake-1", "gpt-fake-2"]
        assert report["upstream"] == MODELS
        await gw.backend("up").list_models()  # cached: no second request
        assert len([s for s in fake.seen if s.path.endswith("/models")]) == 1
        ids = [m.id for m in await gw.list_models()]
        assert ids == ["up/my-own", "up/gpt-fake-1", "up/gpt-fake-2"]
    assert fake.last("/models").headers["authorization"] == f"Bearer {KEY}"


async def test_fixed_list_sources_need_no_request(fake: FakeOpenAI) -> None:
    async with gateway(fake, source="perplexity", path="") as gw:
        report = await gw.backend("up").list_models()
        assert "sonar" in report["models"]
        status = await gw.backend("up").check_status()
        assert status["status"] == "unchecked"
    assert fake.seen == []


async def test_pasted_endpoint_suffix_is_stripped_with_a_warning(
    fake: FakeOpenAI, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING):
        gw = gateway(fake, path="/v1/chat/completions/")
    assert gw.connections()[0]["base_url"] == fake.url + "/v1"
    assert "removed '/chat/completions' from base_url" in caplog.text
    async with gw:
        assert (await gw.chat(model="up/gpt-fake-1", messages=HI)).text


async def test_models_404_retries_with_v1_and_says_so(fake: FakeOpenAI) -> None:
    fake.missing_models_prefixes = ("",)
    async with gateway(fake, path="") as gw:
        report = await gw.backend("up").list_models()
        assert report["upstream"] == MODELS
        assert f'base_url = "{fake.url}/v1"' in report["note"]
        await gw.chat(model="up/gpt-fake-1", messages=HI)
    assert fake.last("/chat/completions").path == "/v1/chat/completions"


async def test_status_ok_error_and_bypass(fake: FakeOpenAI) -> None:
    async with gateway(fake) as gw:
        ok = await gw.backend("up").check_status()
    assert ok["status"] == "ok" and ok["models"] == 2 and ok["latency_ms"] >= 0
    fake.missing_models_prefixes = ("/v1",)
    async with gateway(fake) as gw:
        failed = await gw.backend("up").check_status()
    assert failed["status"] == "error" and failed["http_status"] == 404
    async with gateway(fake, bypass_status_check=True) as gw:
        bypassed = await gw.backend("up").check_status()
    assert bypassed["status"] == "bypassed"
    assert "404" in bypassed["warning"]


async def test_send_test_is_real_and_says_it_is_billed(fake: FakeOpenAI) -> None:
    async with gateway(fake, models=["gpt-fake-1"]) as gw:
        result = await gw.send_test("up")
    assert result["ok"] is True
    assert result["reply"] == "Hello from the fake."
    assert result["billed"] is True
    assert "billed" in result["billing_note"]
    body = fake.last("/chat/completions").body
    assert body["messages"] == HI
    assert body["model"] == "gpt-fake-1"
    assert "stream" not in body


async def test_preview_masks_and_sends_nothing(fake: FakeOpenAI) -> None:
    async with gateway(fake, headers={"X-Team": "blue"}) as gw:
        shown = await gw.preview(model="up/gpt-fake-1", messages=HI, temperature=0.1)
    assert fake.seen == []
    assert shown["method"] == "POST"
    assert shown["url"] == fake.url + "/v1/chat/completions"
    assert shown["headers"]["Authorization"] == "Bearer sk-...qrst"
    assert shown["headers"]["X-Team"] == "blue"
    assert shown["body"] == {"model": "gpt-fake-1", "messages": HI, "temperature": 0.1}
    assert KEY not in str(shown)


@pytest.mark.parametrize(
    ("model", "error", "status"),
    [
        ("error-429", RateLimitError, 429),
        ("error-500", UpstreamError, 502),
        ("error-503", UpstreamError, 502),
        ("error-404", NotFoundError, 404),
        ("error-403", PermissionDeniedError, 403),
        ("error-400", InvalidRequestError, 400),
        ("error-422", InvalidRequestError, 400),
        ("lie-1", UpstreamError, 502),
    ],
)
async def test_upstream_failures(
    fake: FakeOpenAI, model: str, error: type[ChatgateError], status: int
) -> None:
    async with gateway(fake) as gw:
        with pytest.raises(error) as caught:
            await gw.chat(model=f"up/{model}", messages=HI)
    assert caught.value.status == status
    if status == 429:
        assert caught.value.headers == {"Retry-After": "7"}


async def test_stream_that_dies_is_a_502(fake: FakeOpenAI) -> None:
    async with gateway(fake) as gw:
        got: list[str] = []
        with pytest.raises(UpstreamError) as caught:
            async for chunk in gw.stream(model="up/die-now", messages=HI):
                got += [c.delta.content or "" for c in chunk.choices]
    assert caught.value.code == "upstream_stream_broken"
    assert "".join(got) == "Hello from"


async def test_error_event_inside_the_stream(fake: FakeOpenAI) -> None:
    async with gateway(fake) as gw:
        with pytest.raises(UpstreamError) as caught:
            async for _ in gw.stream(model="up/oops-1", messages=HI):
                pass
    assert "overloaded mid-stream" in caught.value.message


async def test_logprobs_pass_through(fake: FakeOpenAI) -> None:
    async with gateway(fake) as gw:
        answer = await gw.chat(model="up/gpt-fake-1", messages=HI, logprobs=True, top_logprobs=1)
    assert fake.last("/chat/completions").body["top_logprobs"] == 1
    logprobs = answer.choices[0].logprobs
    assert logprobs is not None and logprobs["content"][0]["logprob"] == -0.25


async def test_refused_connection_names_the_connection() -> None:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()  # nothing listens there now
    conn = Connection(name="gone", source="custom", base_url=f"http://127.0.0.1:{port}/v1")
    async with Gateway(Settings(connections=[conn], embedded=False)) as gw:
        with pytest.raises(UpstreamError) as caught:
            await gw.chat(model="gone/x", messages=HI)
    assert caught.value.status == 502
    assert "connection 'gone': cannot reach http://127.0.0.1" in caught.value.message
    assert "connection refused" in caught.value.message


async def test_timeout_is_a_504(fake: FakeOpenAI) -> None:
    async with gateway(fake, timeout=0.3) as gw:
        with pytest.raises(GatewayTimeoutError) as caught:
            await gw.chat(model="up/slow-1", messages=HI)
    assert caught.value.status == 504
    assert "within 0.3 s" in caught.value.message


async def test_a_first_byte_timeout_of_its_own(fake: FakeOpenAI) -> None:
    # A short wait for the first bytes, a long one between reads: a dead upstream is
    # noticed at once, a slow generation is not cut.
    async with gateway(fake, timeout=30, first_byte_timeout=0.3) as gw:
        with pytest.raises(GatewayTimeoutError) as caught:
            async for _ in gw.stream(model="up/slow-1", messages=HI):
                pass
        assert "within 0.3 s (first_byte timeout)" in caught.value.message
        with pytest.raises(GatewayTimeoutError) as caught:
            await gw.chat(model="up/slow-1", messages=HI)
        assert "(first_byte timeout)" in caught.value.message
        assert (await gw.chat(model="up/gpt-fake-1", messages=HI)).text


async def test_streams_time_out_per_read_not_in_total(fake: FakeOpenAI) -> None:
    async with gateway(fake, timeout=0.5) as gw:
        with pytest.raises(GatewayTimeoutError):
            async for _ in gw.stream(model="up/slow-1", messages=HI):
                pass  # no answer at all within the timeout
        got: list[str] = []
        with pytest.raises(GatewayTimeoutError) as caught:
            async for chunk in gw.stream(model="up/stall-1", messages=HI):
                got += [c.delta.content or "" for c in chunk.choices]
    # What came before the silence was delivered as it came, not held back.
    assert "".join(got) == "Hello from"
    assert "within 0.5 s" in caught.value.message


async def test_no_secret_in_logs_or_answers(
    fake: FakeOpenAI, caplog: pytest.LogCaptureFixture
) -> None:
    outputs: list[str] = []
    with caplog.at_level(logging.DEBUG):
        async with gateway(fake, path="/v1/chat/completions", proxy_password=None) as gw:
            outputs.append(str(gw.connections()))
            outputs.append(str(await gw.preview(model="up/gpt-fake-1", messages=HI)))
            outputs.append(str(await gw.backend("up").check_status()))
            for model in ("error-401", "error-500", "lie-1"):
                try:
                    await gw.chat(model=f"up/{model}", messages=HI)
                except ChatgateError as exc:
                    outputs.append(str(exc.to_dict()))
    assert outputs
    assert KEY not in caplog.text
    for text in outputs:
        assert KEY not in text
    assert "sk-...qrst" in outputs[0]
