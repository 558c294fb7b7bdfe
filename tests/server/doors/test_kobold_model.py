"""The KoboldCpp door against the embedded model (its requests go to the default model):
generate, the stream, the tokenizer, and an abort that returns the text so far."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.conftest import MODEL, LiveServer
from tests.server.doors.kobold_llamacpp_fixtures import sse_events

pytestmark = pytest.mark.model
PROMPT = "<|im_start|>user\nWrite a long story about a dragon.<|im_end|>\n<|im_start|>assistant\n"


@pytest.fixture()
def kobold(live: LiveServer) -> Iterator[httpx.Client]:
    with live.client() as c:
        yield c


def test_generate_and_stream_on_the_embedded_model(kobold: httpx.Client) -> None:
    body = {"prompt": PROMPT, "max_length": 4, "temperature": 0, "sampler_seed": 1}
    result = kobold.post("/api/v1/generate", json=body).json()["results"][0]
    assert result["text"] and result["finish_reason"] in ("stop", "length")
    assert 0 < result["completion_tokens"] <= 4
    events = sse_events(kobold.post("/api/extra/generate/stream", json=body).text)
    assert "".join(e.data["token"] for e in events) == result["text"]
    assert events[-1].data["finish_reason"] in ("stop", "length")


def test_the_info_and_the_tokenizer_are_the_model_s(kobold: httpx.Client) -> None:
    assert kobold.get("/api/v1/model").json() == {"result": "koboldcpp/" + MODEL}
    assert kobold.get("/api/extra/true_max_context_length").json()["value"] == 2048
    counted = kobold.post("/api/extra/tokencount", json={"prompt": "Hello world"}).json()
    assert counted["value"] == len(counted["ids"]) > 0


def test_an_abort_returns_the_text_so_far(kobold: httpx.Client, live: LiveServer) -> None:
    body = {"prompt": PROMPT, "max_length": 1000, "temperature": 0.8, "genkey": "KCPP-model"}
    out: list[Any] = []
    with live.client() as worker:
        thread = threading.Thread(
            target=lambda: out.append(worker.post("/api/v1/generate", json=body)), daemon=True
        )
        thread.start()
        deadline = time.monotonic() + 30
        check = {"genkey": "KCPP-model"}
        while time.monotonic() < deadline:
            if kobold.post("/api/extra/generate/check", json=check).json()["results"][0]["text"]:
                break
            time.sleep(0.05)
        stopped_at = time.monotonic()
        assert kobold.post("/api/extra/abort", json=check).json()["success"] == "true"
        thread.join(timeout=30)
    assert time.monotonic() - stopped_at < 10
    result = out[0].json()["results"][0]
    assert result["text"] and result["finish_reason"] == "stop"
