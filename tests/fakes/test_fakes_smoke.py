"""Each text-completion fake driven through its real HTTP port: a whole answer, a stream,
an error, and abort or cancel where the protocol has one."""

from __future__ import annotations

import time
from collections.abc import Callable

import httpx
import orjson

from tests.fakes.common import sample, token_ids
from tests.fakes.horde_server import HordeState
from tests.fakes.kobold_server import KoboldState
from tests.fakes.llamacpp_server import LlamaCppState
from tests.fakes.novelai_server import NovelAIState, encode
from tests.fakes.ollama_server import OllamaState
from tests.fakes.text_conftest import *  # noqa: F403
from tests.fakes.text_openai_server import REGEX_TEXT, TextOpenAIState

PROMPT = "You are helpful.\nUser: say it\nthe quick brown fox jumps"


def sse_data(lines: list[str]) -> list[str]:
    return [line.removeprefix("data: ") for line in lines if line.startswith("data: ")]


def test_kobold(kobold_fake: KoboldState) -> None:
    with httpx.Client(base_url=kobold_fake.url) as client:
        body = {"prompt": PROMPT, "max_length": 3, "max_context_length": 2048}
        got = client.post("/api/v1/generate", json=body).json()["results"][0]
        assert got["text"] == "the quick brown" and got["finish_reason"] == "length"
        body = {"prompt": PROMPT, "stop_sequence": ["fox"]}
        with client.stream("POST", "/api/extra/generate/stream", json=body) as reply:
            events = [orjson.loads(d) for d in sse_data(list(reply.iter_lines()))]
        assert "".join(e["token"] for e in events) == "the quick brown "
        assert events[-1]["finish_reason"] == "stop" and events[0]["finish_reason"] is None
        wrong = client.post("/api/v1/generate", json={"prompt": PROMPT, "max_length": "3"})
        assert wrong.status_code == 422 and "max_length" in wrong.json()["detail"]
        assert client.get("/api/v1/model").json() == {"result": "koboldcpp/Llama-3-8B-Fake"}
        count = client.post("/api/extra/tokencount", json={"prompt": "a b c"}).json()
        assert count == {"value": 3, "ids": token_ids("a b c")}
        kobold_fake.token_delay = 0.1
        body = {"prompt": "one two three four five six seven eight", "genkey": "KCPP1"}
        with client.stream("POST", "/api/extra/generate/stream", json=body) as reply:
            lines = reply.iter_lines()
            next(line for line in lines if line.startswith("data: "))
            aborted = client.post("/api/extra/abort", json={"genkey": "KCPP1"}).json()
            rest = [orjson.loads(d) for d in sse_data(list(lines))]
        assert aborted["success"] == "true" and kobold_fake.aborts == ["KCPP1"]
        assert len(rest) < 8 and rest[-1]["finish_reason"] == "stop"


def test_koboldai_classic_and_password(
    koboldai_fake: KoboldState, kobold_fake: KoboldState
) -> None:
    with httpx.Client(base_url=koboldai_fake.url) as client:
        assert client.get("/api/extra/version").status_code == 404
        assert client.get("/api/v1/model").json() == {"result": "Llama-3-8B-Fake"}
    kobold_fake.password = "pw"
    with httpx.Client(base_url=kobold_fake.url) as client:
        assert client.post("/api/v1/generate", json={"prompt": "hi"}).status_code == 401
        ok = client.post(
            "/api/v1/generate", json={"prompt": "hi"}, headers={"Authorization": "Bearer pw"}
        )
        assert ok.json()["results"][0]["text"] == "hi"


def test_llamacpp(llamacpp_fake: LlamaCppState) -> None:
    with httpx.Client(base_url=llamacpp_fake.url) as client:
        got = client.post("/completion", json={"prompt": PROMPT, "n_predict": 2}).json()
        assert got["content"] == "the quick" and got["stop_type"] == "limit"
        got = client.post("/completion", json={"prompt": PROMPT, "stop": [" fox"]}).json()
        assert got["content"] == "the quick brown" and got["stopping_word"] == " fox"
        schema = {"type": "object", "properties": {"city": {"type": "string"}}}
        got = client.post("/completion", json={"prompt": "x", "json_schema": schema}).json()
        assert orjson.loads(got["content"]) == sample(schema)
        with client.stream("POST", "/completion", json={"prompt": PROMPT, "stream": True}) as reply:
            events = [orjson.loads(d) for d in sse_data(list(reply.iter_lines()))]
        assert "".join(e["content"] for e in events) == "the quick brown fox jumps"
        assert events[-1]["stop"] is True and events[-1]["stop_type"] == "eos"
        llamacpp_fake.n_ctx = 3
        too_long = client.post("/completion", json={"prompt": PROMPT})
        assert too_long.status_code == 400
        assert too_long.json()["error"]["type"] == "exceed_context_size_error"
        llamacpp_fake.loading = True
        assert client.get("/health").status_code == 503


def test_ollama(ollama_fake: OllamaState) -> None:
    with httpx.Client(base_url=ollama_fake.url) as client:
        body = {"model": "qwen2.5:0.5b", "prompt": PROMPT, "raw": True, "stream": False}
        got = client.post("/api/generate", json={**body, "options": {"num_predict": 2}}).json()
        assert got["response"] == "the quick" and got["done_reason"] == "length"
        with client.stream("POST", "/api/generate", json={**body, "stream": True}) as reply:
            assert reply.headers["content-type"].startswith("application/x-ndjson")
            lines = [orjson.loads(line) for line in reply.iter_lines() if line]
        assert "".join(line["response"] for line in lines) == "the quick brown fox jumps"
        assert lines[-1]["done"] is True and "eval_count" in lines[-1]
        missing = client.post("/api/generate", json={"model": "nope", "prompt": "x"})
        assert missing.status_code == 404 and missing.json() == {"error": "model 'nope' not found"}
        call = {"function": {"name": "f", "arguments": "{}"}}
        bad = {
            "model": "qwen2.5:0.5b",
            "messages": [{"role": "assistant", "content": "", "tool_calls": [call]}],
        }
        assert client.post("/api/chat", json=bad).status_code == 400
        shown = client.post("/api/show", json={"model": "qwen2.5:0.5b"}).json()
        assert "{{" in shown["template"] and "model_info" in shown
        assert client.get("/api/tags").json()["models"][0]["model"]
        with client.stream(
            "POST", "/api/generate", json={"model": "slow-1", "prompt": PROMPT}
        ) as reply:
            next(reply.iter_lines())
        deadline = time.monotonic() + 2
        while not ollama_fake.disconnects and time.monotonic() < deadline:
            time.sleep(0.02)
        assert ollama_fake.disconnects and ollama_fake.disconnects[0].model == "slow-1"


def test_text_openai(text_openai_fake_for: Callable[[str], TextOpenAIState]) -> None:
    fake = text_openai_fake_for("vllm")
    with httpx.Client(base_url=fake.url) as client:
        body = {"model": "fake-text-1", "prompt": PROMPT, "max_tokens": 2, "min_p": 0.1}
        got = client.post("/v1/completions", json=body).json()
        assert got["object"] == "text_completion"
        assert got["choices"][0]["text"] == "the quick"
        assert got["choices"][0]["finish_reason"] == "length"
        regex = client.post(
            "/v1/completions", json={"prompt": "x", "structured_outputs": {"regex": ".*"}}
        )
        assert regex.json()["choices"][0]["text"] == REGEX_TEXT
        legacy = client.post("/v1/completions", json={"prompt": "x y", "guided_choice": ["a"]})
        assert legacy.json()["choices"][0]["text"] == "x y" and fake.unknown_fields == [
            "guided_choice"
        ]
        with client.stream(
            "POST", "/v1/completions", json={"prompt": PROMPT, "stream": True}
        ) as reply:
            data = sse_data(list(reply.iter_lines()))
        assert data[-1] == "[DONE]"
        chunks = [orjson.loads(d)["choices"][0] for d in data[:-1]]
        assert "".join(c["text"] for c in chunks) == "the quick brown fox jumps"
        assert chunks[-1]["finish_reason"] == "stop"
        assert (
            client.post("/v1/completions", json={"prompt": "x", "suffix": "y"}).status_code == 400
        )
    generic = text_openai_fake_for("generic")
    with httpx.Client(base_url=generic.url) as client:
        refused = client.post("/v1/completions", json={"prompt": "x", "min_p": 0.1})
        assert refused.status_code == 400 and "min_p" in refused.json()["error"]["message"]
    textgen = text_openai_fake_for("textgen")
    with httpx.Client(base_url=textgen.url) as client:
        wrong = client.post("/v1/completions", json={"prompt": "x", "truncation_length": "big"})
        assert wrong.status_code == 422
        textgen.token_delay = 0.1
        body = {"prompt": "one two three four five six seven eight", "stream": True}
        with client.stream("POST", "/v1/completions", json=body) as reply:
            lines = reply.iter_lines()
            next(line for line in lines if line.startswith("data: "))
            assert client.post("/v1/internal/stop-generation").json() == "OK"
            rest = sse_data(list(lines))
        assert len(rest) < 9 and textgen.stop_requests == 1
    mancer = text_openai_fake_for("mancer")
    mancer.api_key = "mk"
    with httpx.Client(base_url=mancer.url) as client:
        assert client.post("/oai/v1/completions", json={"prompt": "x"}).status_code == 401
        ok = client.post("/oai/v1/completions", json={"prompt": "x"}, headers={"X-API-KEY": "mk"})
        assert ok.status_code == 200
        assert client.post("/v1/completions", json={"prompt": "x"}).status_code == 404


def test_horde(horde_fake: HordeState) -> None:
    horde_fake.polls_to_finish = 2
    with httpx.Client(base_url=horde_fake.url, headers={"apikey": "0000000000"}) as client:
        body = {"prompt": PROMPT, "params": {"max_length": 16, "stop_sequence": [" fox"]}}
        job = client.post("/api/v2/generate/text/async", json=body)
        assert job.status_code == 202
        url = f"/api/v2/generate/text/status/{job.json()['id']}"
        first = client.get(url).json()
        assert first["done"] is False and first["processing"] == 1
        done = client.get(url).json()
        assert done["done"] is True and done["generations"][0]["text"] == "the quick brown fox"
        low = client.post(
            "/api/v2/generate/text/async", json={"prompt": "x", "params": {"max_length": 8}}
        )
        assert low.status_code == 400 and "params.max_length" in low.json()["errors"]
        bad = client.post("/api/v2/generate/text/async", json=body, headers={"apikey": "bad-key"})
        assert bad.status_code == 401 and bad.json()["rc"] == "InvalidAPIKey"
        other = client.post("/api/v2/generate/text/async", json=body).json()["id"]
        assert client.delete(f"/api/v2/generate/text/status/{other}").json()["done"] is False
        assert horde_fake.cancelled == [other]


def test_novelai(novelai_fake: NovelAIState) -> None:
    auth = {"Authorization": f"Bearer {novelai_fake.token}"}
    with httpx.Client(base_url=novelai_fake.url, headers=auth) as client:
        params = {"use_string": True, "max_length": 40, "stop_sequences": [token_ids("fox")]}
        body = {"input": PROMPT, "model": "kayra-v1", "parameters": params}
        got = client.post("/ai/generate", json=body)
        assert got.status_code == 201 and got.json() == {"output": "the quick brown fox"}
        with client.stream("POST", "/ai/generate-stream", json=body) as reply:
            events = [orjson.loads(d) for d in sse_data(list(reply.iter_lines()))]
        assert "".join(e["token"] for e in events) == "the quick brown fox"
        assert events[-1]["final"] is True and events[0]["final"] is False
        assert client.post("/ai/generate", json={**body, "model": "gpt-4"}).status_code == 400
        tokens = client.post("/ai/generate", json={**body, "input": encode("a"), "parameters": {}})
        assert tokens.status_code == 201
        assert client.get("/user/subscription").json()["perks"]["contextTokens"] == 8192
    refused = httpx.post(f"{novelai_fake.url}/ai/generate", json=body)
    assert refused.status_code == 401 and refused.json()["statusCode"] == 401
