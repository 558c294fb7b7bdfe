"""The llama.cpp server door against the embedded model (its requests go to the default
model): a completion, its stream, /props and the model's own tokenizer."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.conftest import MODEL, LiveServer
from tests.server.doors.kobold_llamacpp_fixtures import sse_events

pytestmark = pytest.mark.model
PROMPT = "The capital of France is"


@pytest.fixture()
def llama(live: LiveServer) -> Iterator[httpx.Client]:
    with live.client() as c:
        yield c


def test_a_completion_and_its_stream(llama: httpx.Client) -> None:
    body = {"prompt": PROMPT, "n_predict": 4, "temperature": 0, "seed": 3}
    whole = llama.post("/completion", json=body).json()
    assert whole["content"] and whole["stop"] is True
    assert whole["stop_type"] in ("eos", "limit", "word")
    assert 0 < whole["tokens_predicted"] <= 4 and 0 < whole["tokens_evaluated"] <= 8
    frames = [
        e.data for e in sse_events(llama.post("/completion", json={**body, "stream": True}).text)
    ]
    assert "".join(f["content"] for f in frames) == whole["content"]
    assert (
        frames[-1]["stop"] is True and frames[-1]["tokens_predicted"] == whole["tokens_predicted"]
    )


def test_props_and_the_tokenizer(llama: httpx.Client) -> None:
    props = llama.get("/props").json()
    assert props["default_generation_settings"]["n_ctx"] == 2048
    assert "im_start" in props["chat_template"] and props["model_path"] == MODEL
    assert llama.get("/health").json() == {"status": "ok"}
    ids = llama.post("/tokenize", json={"content": "Hello world"}).json()["tokens"]
    assert ids and all(type(i) is int for i in ids)
    assert llama.post("/detokenize", json={"tokens": ids}).json()["content"] == "Hello world"
    pieces = llama.post("/tokenize", json={"content": "Hello world", "with_pieces": True}).json()
    assert [p["id"] for p in pieces["tokens"]] == ids
    assert "".join(p["piece"] for p in pieces["tokens"]).strip() == "Hello world"
