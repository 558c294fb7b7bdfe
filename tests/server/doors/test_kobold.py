"""The KoboldCpp door, by KoboldCpp's published API (httpx against a real chatgate
server), in front of fakes of other protocols: a llama.cpp server (its samplers
translated), a KoboldCpp server (passed through), an OpenAI chat API."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import orjson
import pytest

from chatgate.config import Connection
from tests.conftest import LiveServer
from tests.fakes.common import token_ids
from tests.fakes.kobold_server import KoboldState
from tests.fakes.llamacpp_server import LlamaCppState
from tests.fakes.openai_server import FakeOpenAI
from tests.server.doors.kobold_llamacpp_fixtures import (
    KEY_A,
    KEY_B,
    client,
    door_server,
    sse_events,
)

SECRET = "sk-llama-upstream-secret-0123456789"
PROMPT = "### Instruction:\nSay it\n### Response:\nthe quick brown fox jumps over the lazy dog"


@pytest.fixture(scope="module")
def servers(
    llamacpp_fake_server: LlamaCppState, kobold_fake_server: KoboldState, fake_openai: FakeOpenAI
) -> Iterator[dict[str, LiveServer]]:
    connections = [
        Connection(
            name="llama", source="llamacpp", base_url=llamacpp_fake_server.url, api_key=SECRET
        ),
        Connection(name="kcpp", source="kobold", base_url=kobold_fake_server.url),
        Connection(name="chat", source="custom", base_url=fake_openai.url + "/v1", models=["m"]),
    ]
    with (
        door_server(connections, "kobold", "llama/any", keys=[KEY_A, KEY_B]) as llama,
        door_server(connections, "kobold", "kcpp/any") as kcpp,
        door_server(connections, "kobold", "chat/m") as chat,
        door_server(connections, "kobold", None) as none,
    ):
        yield {"llama": llama, "kcpp": kcpp, "chat": chat, "none": none}


@pytest.fixture()
def llama(servers: dict[str, LiveServer], llamacpp_fake: LlamaCppState) -> Iterator[httpx.Client]:
    with client(servers["llama"], KEY_A) as c:
        yield c


def test_generate_goes_to_the_default_model_with_the_prompt_verbatim(
    llama: httpx.Client, llamacpp_fake: LlamaCppState
) -> None:
    answer = llama.post("/api/v1/generate", json={"prompt": PROMPT, "max_length": 3})
    assert answer.status_code == 200, answer.text
    result = answer.json()["results"][0]
    assert result["text"] == "the quick brown"
    assert result["finish_reason"] == "length"
    assert result["completion_tokens"] == 3 and result["prompt_tokens"] > 0
    sent = llamacpp_fake.last("/completion").body
    assert sent["prompt"] == PROMPT and sent["n_predict"] == 3


# (KoboldCpp field, value) → what the llama.cpp server is sent (None: nothing).
MAPPING: list[tuple[dict[str, Any], dict[str, Any] | None]] = [
    ({"temperature": 0.5}, {"temperature": 0.5}),
    ({"top_p": 0.9}, {"top_p": 0.9}),
    ({"top_p": 1}, None),  # off
    ({"top_k": 40}, {"top_k": 40}),
    ({"top_k": 0}, None),
    ({"min_p": 0.05}, {"min_p": 0.05}),
    ({"min_p": 0}, None),
    ({"rep_pen": 1.1, "rep_pen_range": 64}, {"repeat_penalty": 1.1, "repeat_last_n": 64}),
    ({"rep_pen": 1, "rep_pen_range": 64}, None),  # a range without a penalty means nothing
    ({"typical": 0.9}, {"typical_p": 0.9}),
    ({"typical": 1}, None),
    ({"tfs": 1, "top_a": 0, "smoothing_factor": 0, "nsigma": 0}, None),
    ({"mirostat": 2, "mirostat_tau": 4.0}, {"mirostat": 2, "mirostat_tau": 4.0}),
    ({"mirostat": 0, "mirostat_tau": 4.0}, None),
    ({"dry_multiplier": 0.8, "dry_base": 1.75}, {"dry_multiplier": 0.8, "dry_base": 1.75}),
    ({"dry_multiplier": 0, "dry_base": 1.75, "dry_sequence_breakers": "[]"}, None),
    (
        {"dry_multiplier": 0.8, "dry_sequence_breakers": '["\\n", ":"]'},
        {"dry_multiplier": 0.8, "dry_sequence_breakers": ["\n", ":"]},
    ),
    (
        {"xtc_probability": 0.5, "xtc_threshold": 0.1},
        {"xtc_probability": 0.5, "xtc_threshold": 0.1},
    ),
    ({"sampler_order": [6, 0, 1, 3, 4, 2, 5]}, None),  # KoboldCpp's own order: a hint
    ({"sampler_order": [0, 1, 2, 3, 4, 5, 6]}, None),
    ({"sampler_seed": 42}, {"seed": 42}),
    ({"sampler_seed": -1}, None),  # random
    ({"use_default_badwordsids": True}, {"ignore_eos": True}),
    ({"presence_penalty": 0.3}, {"presence_penalty": 0.3}),
    (
        {"stop_sequence": ["\nYou:", "\nMe:", "a", "b", "c", "d"]},
        {"stop": ["\nYou:", "\nMe:", "a", "b", "c", "d"]},
    ),
    ({"max_context_length": 2048, "quiet": True, "use_story": False}, None),  # ignored
    ({"grammar": 'root ::= "yes" | "no"'}, {"grammar": 'root ::= "yes" | "no"'}),
]


@pytest.mark.parametrize(("fields", "sent"), MAPPING)
def test_fields_map_onto_a_llamacpp_backend(
    llama: httpx.Client, llamacpp_fake: LlamaCppState, fields: dict[str, Any], sent: Any
) -> None:
    answer = llama.post("/api/v1/generate", json={"prompt": PROMPT, "max_length": 2, **fields})
    assert answer.status_code == 200, answer.text
    body = llamacpp_fake.last("/completion").body
    names = set(fields) | {"repeat_penalty", "repeat_last_n", "typical_p", "seed", "ignore_eos"}
    got = {k: v for k, v in body.items() if k in names | set(sent or {})}
    assert got == (sent or {})


def test_a_refusal_names_the_field_as_the_client_wrote_it(llama: httpx.Client) -> None:
    # llama.cpp cannot keep the stop string (chatgate's include_stop_str_in_output):
    # refused, in KoboldCpp's word for it.
    answer = llama.post("/api/v1/generate", json={"prompt": PROMPT, "trim_stop": False})
    assert answer.status_code == 400
    message = answer.json()["detail"]["msg"]
    assert "'trim_stop'" in message and "include_stop_str_in_output" not in message


def test_a_sampler_the_backend_lacks_is_refused_by_name(llama: httpx.Client) -> None:
    answer = llama.post("/api/v1/generate", json={"prompt": PROMPT, "top_a": 0.2})
    assert answer.status_code == 400
    detail = answer.json()["detail"]
    assert detail["type"] == "bad_input" and "'top_a'" in detail["msg"]


def test_a_koboldcpp_backend_gets_its_own_fields_as_they_are(
    servers: dict[str, LiveServer], kobold_fake: KoboldState
) -> None:
    fields = {
        "tfs": 0.9,
        "top_a": 0.2,
        "rep_pen": 1.2,
        "rep_pen_range": 128,
        "sampler_order": [0, 1, 2, 3, 4, 5, 6],
        "memory": "Memory first.\n",
        "trim_stop": False,
        "stop_sequence": ["dog"],
    }
    with client(servers["kcpp"]) as c:
        answer = c.post("/api/v1/generate", json={"prompt": PROMPT, "max_length": 20, **fields})
    assert answer.status_code == 200, answer.text
    sent = kobold_fake.last("/generate/stream").body
    for name in ("tfs", "top_a", "rep_pen", "rep_pen_range", "sampler_order", "memory"):
        assert sent[name] == fields[name], name
    assert sent["prompt"] == PROMPT and sent["trim_stop"] is False and sent["max_length"] == 20
    assert answer.json()["results"][0]["text"].endswith("dog")


def test_a_chat_backend_gets_the_prompt_as_a_user_message(
    servers: dict[str, LiveServer], fake: FakeOpenAI
) -> None:
    with client(servers["chat"]) as c:
        answer = c.post("/api/v1/generate", json={"prompt": PROMPT, "memory": "M. "})
    assert answer.json()["results"][0]["text"] == "Hello from the fake."
    sent = fake.seen[-1].body
    assert sent["messages"] == [{"role": "user", "content": "M. " + PROMPT}]
    assert sent["max_tokens"] == 180  # KoboldCpp's default max_length


def test_a_stream_is_koboldcpp_s_events(llama: httpx.Client) -> None:
    answer = llama.post("/api/extra/generate/stream", json={"prompt": PROMPT, "max_length": 4})
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/event-stream")
    events = sse_events(answer.text)
    assert {e.name for e in events} == {"message"}
    assert [e.data["finish_reason"] for e in events[:-1]] == [None] * (len(events) - 1)
    assert "".join(e.data["token"] for e in events) == "the quick brown fox"
    assert events[-1].data == {"token": "", "finish_reason": "length"}


def _in_thread(work: Any) -> tuple[threading.Thread, list[Any]]:
    out: list[Any] = []
    thread = threading.Thread(target=lambda: out.append(work()), daemon=True)
    thread.start()
    return thread, out


def _wait_for_text(c: httpx.Client, genkey: str) -> str:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        text: str = c.post("/api/extra/generate/check", json={"genkey": genkey}).json()["results"][
            0
        ]["text"]
        if text:
            return text
        time.sleep(0.05)
    raise AssertionError("the generation made no text")


@pytest.mark.parametrize("route", ["/api/v1/generate", "/api/extra/generate/stream"])
def test_abort_stops_a_generation_which_returns_the_text_so_far(
    servers: dict[str, LiveServer], llamacpp_fake: LlamaCppState, route: str
) -> None:
    llamacpp_fake.token_delay = 0.2
    body = {"prompt": PROMPT, "max_length": 50, "genkey": "KCPP1234"}
    with client(servers["llama"], KEY_A) as c, client(servers["llama"], KEY_B) as other:
        thread, out = _in_thread(lambda: c.post(route, json=body))
        assert _wait_for_text(c, "KCPP1234")
        # Another key's caller can neither read nor stop it.
        assert other.post("/api/extra/generate/check", json={}).json()["results"][0]["text"] == ""
        assert other.post("/api/extra/abort", json={"genkey": "KCPP1234"}).json()["success"] == (
            "false"
        )
        stopped = c.post("/api/extra/abort", json={"genkey": "KCPP1234"})
        thread.join(timeout=10)
    assert stopped.json() == {"success": "true", "done": "true"}
    answer = out[0]
    assert answer.status_code == 200
    if route.endswith("stream"):
        events = sse_events(answer.text)
        text = "".join(e.data["token"] for e in events)
        assert events[-1].data == {"token": "", "finish_reason": "stop"}
    else:
        result = answer.json()["results"][0]
        text = result["text"]
        assert result["finish_reason"] == "stop"
    assert text and "the quick brown fox jumps over the lazy dog".startswith(text)
    assert len(text.split()) < 9
    deadline = time.monotonic() + 5
    while not llamacpp_fake.disconnects and time.monotonic() < deadline:
        time.sleep(0.05)
    assert llamacpp_fake.disconnects, "the upstream generation was not stopped"


def test_an_abort_with_nothing_running(llama: httpx.Client) -> None:
    assert llama.post("/api/extra/abort", json={}).json() == {"success": "false", "done": "false"}
    assert llama.post("/api/extra/abort", json={"genkey": "nope"}).json()["success"] == "false"


def test_the_info_routes(llama: httpx.Client, llamacpp_fake: LlamaCppState) -> None:
    assert llama.get("/api/v1/model").json() == {"result": "koboldcpp/llama/any"}
    assert llama.get("/api/v1/info/version").json() == {"result": "1.2.5"}
    version = llama.get("/api/extra/version").json()
    assert version["result"] == "KoboldCpp" and version["protected"] is True
    assert tuple(int(p) for p in version["version"].split(".")) >= (1, 48)  # SillyTavern's gates
    for path in ("/api/v1/config/max_context_length", "/api/extra/true_max_context_length"):
        assert llama.get(path).json() == {"value": llamacpp_fake.n_ctx}


def test_tokencount_by_the_model_s_tokenizer_or_an_estimate(
    servers: dict[str, LiveServer], llama: httpx.Client
) -> None:
    counted = llama.post("/api/extra/tokencount", json={"prompt": "the quick brown fox"})
    assert counted.json() == {"value": 4, "ids": token_ids("the quick brown fox")}
    assert counted.headers["x-chatgate-token-count"] == "exact"
    with client(servers["chat"]) as c:
        estimated = c.post("/api/extra/tokencount", json={"prompt": "the quick brown fox"})
    assert estimated.json()["ids"] == [] and estimated.json()["value"] > 0
    assert estimated.headers["x-chatgate-token-count"] == "estimate"


def test_without_a_default_model_every_route_says_what_to_set(
    servers: dict[str, LiveServer],
) -> None:
    with client(servers["none"]) as c:
        for answer in (
            c.get("/api/v1/model"),
            c.post("/api/v1/generate", json={"prompt": "hi"}),
            c.get("/api/extra/true_max_context_length"),
        ):
            assert answer.status_code == 404
            detail = answer.json()["detail"]
            assert detail["type"] == "not_found" and "[doors.kobold]" in detail["msg"]


BAD: list[tuple[Any, int, str]] = [
    (b'{"prompt": ', 400, "not valid JSON"),
    (b"[1, 2]", 400, "JSON object"),
    ({}, 400, "missing required parameter: 'prompt'"),
    ({"prompt": ""}, 400, "'prompt' is empty"),
    ({"prompt": 5}, 400, "'prompt' must be a string"),
    ({"prompt": "hi", "max_length": 1e30}, 400, "'max_length' must be between 1 and 2147483647"),
    ({"prompt": "hi", "max_length": -5}, 400, "'max_length' must be between 1"),
    ({"prompt": "hi", "max_length": "ten"}, 400, "'max_length' must be an integer"),
    ({"prompt": "hi", "temperature": 9}, 400, "'temperature' must be between 0 and 2"),
    ({"prompt": "hi", "stop_sequence": "END"}, 400, "'stop_sequence' must be an array"),
    ({"prompt": "hi", "stop_sequence": ["x"] * 257}, 400, "at most 256"),
    ({"prompt": "hi", "images": ["aGk="]}, 400, "'images' is not supported"),
    ({"prompt": "hi", "genkey": 7}, 400, "'genkey' must be a string"),
    (b'{"prompt": "hi", "rep_pen": 1e400}', 400, "not a finite number"),
]


@pytest.mark.parametrize(("body", "status", "words"), BAD)
def test_bad_input_is_a_4xx_in_koboldcpp_s_shape(
    llama: httpx.Client, body: Any, status: int, words: str
) -> None:
    for route in ("/api/v1/generate", "/api/extra/generate/stream"):
        raw = body if isinstance(body, bytes) else orjson.dumps(body)
        answer = llama.post(route, content=raw, headers={"content-type": "application/json"})
        assert answer.status_code == status, answer.text
        detail = answer.json()["detail"]
        assert set(detail) == {"msg", "type"} and detail["type"] == "bad_input"
        assert words in detail["msg"]


def test_n_above_one_is_not_streamed_but_answered_whole(
    servers: dict[str, LiveServer], fake: FakeOpenAI
) -> None:
    with client(servers["chat"]) as c:
        whole = c.post("/api/v1/generate", json={"prompt": "hi", "n": 2})
        streamed = c.post("/api/extra/generate/stream", json={"prompt": "hi", "n": 2})
    assert len(whole.json()["results"]) == 2
    assert streamed.status_code == 400 and "'n'" in streamed.json()["detail"]["msg"]


def test_routes_and_methods_that_do_not_exist(llama: httpx.Client) -> None:
    missing = llama.get("/api/v1/nothing")
    assert missing.status_code == 404 and missing.json()["detail"]["type"] == "not_found"
    wrong = llama.get("/api/v1/generate")
    assert wrong.status_code == 405 and "detail" in wrong.json()
    unauthorized = httpx.post(llama.base_url.join("/api/v1/generate"), json={"prompt": "hi"})
    assert unauthorized.status_code == 401
    assert unauthorized.json()["detail"]["type"] == "unauthorized"


def test_a_secret_the_model_repeats_is_redacted(llama: httpx.Client) -> None:
    # The fake repeats the prompt's last line: here, the upstream's own key.
    body = {"prompt": f"Repeat it:\nthe key is {SECRET}", "max_length": 10}
    whole = llama.post("/api/v1/generate", json=body).json()["results"][0]["text"]
    streamed = llama.post("/api/extra/generate/stream", json=body).text
    assert whole.startswith("the key is") and SECRET not in whole
    assert SECRET not in streamed
