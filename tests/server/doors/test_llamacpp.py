"""The llama.cpp server door, by llama-server's published API (httpx against a real
chatgate server), in front of fakes of other protocols: a KoboldCpp server (its
samplers translated, its tokenizer used), an OpenAI chat API (no tokenizer: 501)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import orjson
import pytest

from chatgate.config import Connection
from chatgate.server.doors.llamacpp import stop_type
from tests.conftest import LiveServer
from tests.fakes.common import token_ids
from tests.fakes.kobold_server import KoboldState
from tests.fakes.openai_server import FakeOpenAI
from tests.server.doors.kobold_llamacpp_fixtures import client, door_server, sse_events

PROMPT = "<|im_start|>user\nSay it<|im_end|>\n<|im_start|>assistant\nthe quick brown fox jumps"


@pytest.fixture(scope="module")
def servers(
    kobold_fake_server: KoboldState, fake_openai: FakeOpenAI
) -> Iterator[dict[str, LiveServer]]:
    connections = [
        Connection(name="kcpp", source="kobold", base_url=kobold_fake_server.url),
        Connection(name="chat", source="custom", base_url=fake_openai.url + "/v1", models=["m"]),
    ]
    with (
        door_server(connections, "llamacpp", "kcpp/any") as kcpp,
        door_server(connections, "llamacpp", "chat/m") as chat,
        door_server(connections, "llamacpp", None) as none,
    ):
        yield {"kcpp": kcpp, "chat": chat, "none": none}


@pytest.fixture()
def kcpp(servers: dict[str, LiveServer], kobold_fake: KoboldState) -> Iterator[httpx.Client]:
    with client(servers["kcpp"]) as c:
        yield c


def test_a_completion_in_llama_server_s_shape(kcpp: httpx.Client, kobold_fake: KoboldState) -> None:
    answer = kcpp.post("/completion", json={"prompt": PROMPT, "n_predict": 3, "seed": 9})
    assert answer.status_code == 200, answer.text
    data = answer.json()
    assert data["content"] == "the quick brown"
    assert data["stop"] is True and data["stop_type"] == "limit" and data["stopping_word"] == ""
    assert data["tokens_predicted"] == 3 or data["tokens_predicted"] >= 0
    assert data["model"] == "kcpp/any" and data["prompt"] == PROMPT
    assert data["truncated"] is False
    assert data["generation_settings"]["n_predict"] == 3
    assert data["generation_settings"]["seed"] == 9
    assert set(data["timings"]) >= {"prompt_n", "predicted_n", "predicted_ms", "prompt_ms"}
    sent = kobold_fake.last("/api/v1/generate").body
    assert sent["prompt"] == PROMPT and sent["max_length"] == 3 and sent["sampler_seed"] == 9


# (llama.cpp field, value) → what the KoboldCpp server is sent (None: nothing).
MAPPING: list[tuple[dict[str, Any], dict[str, Any] | None]] = [
    ({"temperature": 0.2}, {"temperature": 0.2}),
    ({"top_k": 40}, {"top_k": 40}),
    ({"top_k": 0}, None),
    ({"top_p": 0.95}, {"top_p": 0.95}),
    ({"min_p": 0.05}, {"min_p": 0.05}),
    ({"repeat_penalty": 1.1, "repeat_last_n": 64}, {"rep_pen": 1.1, "rep_pen_range": 64}),
    ({"repeat_penalty": 1.0, "repeat_last_n": 64}, None),
    ({"typical_p": 0.8}, {"typical": 0.8}),
    ({"typical_p": 1.0}, None),
    ({"seed": -1}, None),
    ({"seed": 4294967295}, None),  # llama-server's "random"
    ({"ignore_eos": True}, {"use_default_badwordsids": True}),
    ({"dry_multiplier": 0.0, "dry_base": 1.75, "xtc_probability": 0, "mirostat": 0}, None),
    (
        {"xtc_probability": 0.3, "xtc_threshold": 0.1},
        {"xtc_probability": 0.3, "xtc_threshold": 0.1},
    ),
    ({"top_n_sigma": -1}, None),
    ({"top_n_sigma": 1.5}, {"nsigma": 1.5}),
    ({"cache_prompt": True, "samplers": ["top_k", "temperature"], "id_slot": 0}, None),  # hints
    ({"stop": ["\n", "User:", "a", "b", "c"]}, {"stop_sequence": ["\n", "User:", "a", "b", "c"]}),
    ({"grammar": 'root ::= "yes"'}, {"grammar": 'root ::= "yes"'}),
    ({"model": "whatever", "max_tokens": 9, "rep_pen": 2.0, "typical": 0.5}, None),  # ignored
]


@pytest.mark.parametrize(("fields", "sent"), MAPPING)
def test_fields_map_onto_a_koboldcpp_backend(
    kcpp: httpx.Client, kobold_fake: KoboldState, fields: dict[str, Any], sent: Any
) -> None:
    answer = kcpp.post("/completion", json={"prompt": PROMPT, "n_predict": 2, **fields})
    assert answer.status_code == 200, answer.text
    body = kobold_fake.last("/api/v1/generate").body
    watched = {"rep_pen", "rep_pen_range", "typical", "sampler_seed", "use_default_badwordsids"}
    watched |= {"nsigma", "samplers", "cache_prompt", "id_slot", "mirostat", "dry_base"}
    names = (set(fields) | watched | set(sent or {})) - {"max_length"}
    got = {
        k: v for k, v in body.items() if (k in names and k != "stop_sequence") or k in (sent or {})
    }
    assert got == (sent or {})


def test_a_stream_ends_with_the_whole_object(kcpp: httpx.Client) -> None:
    answer = kcpp.post("/completion", json={"prompt": PROMPT, "n_predict": 3, "stream": True})
    assert answer.headers["content-type"].startswith("text/event-stream")
    frames = [e.data for e in sse_events(answer.text)]
    assert all(f["stop"] is False for f in frames[:-1]) and frames[-1]["stop"] is True
    assert "".join(f["content"] for f in frames) == "the quick brown"
    last = frames[-1]
    assert last["content"] == "" and last["stop_type"] == "limit"
    assert "[DONE]" not in answer.text


def test_json_schema_becomes_chatgate_s_guided_json(
    kcpp: httpx.Client, kobold_fake: KoboldState
) -> None:
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]}
    answer = kcpp.post("/completion", json={"prompt": PROMPT, "json_schema": schema})
    # KoboldCpp gets the schema as a grammar; this fake ignores grammars that are not one
    # literal, so chatgate's own check of the output refuses what it made.
    assert '"\\"a\\""' in kobold_fake.last("/api/v1/generate").body["grammar"]
    assert answer.status_code == 502
    assert "not valid JSON" in answer.json()["error"]["message"]


def test_props_health_and_the_tokenizer(kcpp: httpx.Client, kobold_fake: KoboldState) -> None:
    props = kcpp.get("/props").json()
    assert props["default_generation_settings"]["n_ctx"] == kobold_fake.max_context
    assert props["chat_template"] == kobold_fake.chat_template
    assert props["model_path"] == "kcpp/any" and props["total_slots"] >= 1
    assert kcpp.get("/health").json() == {"status": "ok"}
    text = "the quick brown fox"
    assert kcpp.post("/tokenize", json={"content": text}).json() == {"tokens": token_ids(text)}
    pieces = kcpp.post("/tokenize", json={"content": text, "with_pieces": True}).json()
    assert [p["piece"] for p in pieces["tokens"]] == text.split()
    assert kcpp.post("/detokenize", json={"tokens": token_ids(text)}).json() == {"content": text}


def test_no_tokenizer_is_a_501_and_no_ids_are_invented(servers: dict[str, LiveServer]) -> None:
    with client(servers["chat"]) as c:
        for answer in (
            c.post("/tokenize", json={"content": "hi"}),
            c.post("/detokenize", json={"tokens": [1, 2]}),
        ):
            assert answer.status_code == 501
            error = answer.json()["error"]
            assert error["code"] == 501 and error["type"] == "not_supported_error"
            assert "no tokenizer" in error["message"]


def test_a_chat_backend_gets_the_prompt_as_a_user_message(
    servers: dict[str, LiveServer], fake: FakeOpenAI
) -> None:
    with client(servers["chat"]) as c:
        answer = c.post("/completion", json={"prompt": PROMPT, "n_predict": 8})
    assert answer.json()["content"] == "Hello from the fake."
    assert answer.json()["stop_type"] == "eos"
    assert fake.seen[-1].body["messages"] == [{"role": "user", "content": PROMPT}]


def test_without_a_default_model(servers: dict[str, LiveServer]) -> None:
    with client(servers["none"]) as c:
        completion = c.post("/completion", json={"prompt": "hi"})
        health = c.get("/health")
        props = c.get("/props")
    assert completion.status_code == 404 and props.status_code == 404
    assert completion.json()["error"]["type"] == "not_found_error"
    assert "[doors.llamacpp]" in completion.json()["error"]["message"]
    assert health.status_code == 503 and health.json()["error"]["type"] == "unavailable_error"


@pytest.mark.parametrize(
    ("finish", "word", "expected"),
    [("length", None, "limit"), ("stop", None, "eos"), ("stop", "\n", "word"), (None, None, "eos")],
)
def test_stop_type(finish: Any, word: str | None, expected: str) -> None:
    assert stop_type(finish, word) == expected


BAD: list[tuple[Any, str, str]] = [
    (b'{"prompt": ', "/completion", "not valid JSON"),
    (b'"just a string"', "/completion", "JSON object"),
    ({}, "/completion", '"prompt" must be provided'),
    ({"prompt": ""}, "/completion", "'prompt' is empty"),
    ({"prompt": 7}, "/completion", "'prompt' must be a string"),
    ({"prompt": [1, 2, 3]}, "/completion", "token ids"),
    ({"prompt": ["a", "b"]}, "/completion", "several prompts"),
    ({"prompt": "hi", "n_predict": -5}, "/completion", "'n_predict' must be -1"),
    ({"prompt": "hi", "n_predict": 0}, "/completion", "'n_predict' must be -1"),
    ({"prompt": "hi", "n_predict": 1e30}, "/completion", "'n_predict' must be between"),
    ({"prompt": "hi", "n_predict": "many"}, "/completion", "'n_predict' must be an integer"),
    ({"prompt": "hi", "temperature": -1}, "/completion", "'temperature' must be between"),
    ({"prompt": "hi", "stop": [1]}, "/completion", "'stop' must be an array of strings"),
    ({"prompt": "hi", "n_probs": 99}, "/completion", "'n_probs' must be between 0 and 20"),
    ({"prompt": "hi", "logit_bias": "x"}, "/completion", "'logit_bias' must be"),
    ({"prompt": "hi", "stream": "yes"}, "/completion", "'stream' must be a boolean"),
    ({"prompt": "hi", "image_data": [{"data": "x"}]}, "/completion", "'image_data'"),
    ({}, "/tokenize", "'content'"),
    ({"content": 5}, "/tokenize", "'content' must be a string"),
    ({"content": "hi", "with_pieces": "yes"}, "/tokenize", "'with_pieces' must be a boolean"),
    ({"tokens": "1 2"}, "/detokenize", "'tokens' must be an array of integers"),
]


@pytest.mark.parametrize(("body", "route", "words"), BAD)
def test_bad_input_is_a_400_in_llama_server_s_shape(
    kcpp: httpx.Client, body: Any, route: str, words: str
) -> None:
    raw = body if isinstance(body, bytes) else orjson.dumps(body)
    answer = kcpp.post(route, content=raw, headers={"content-type": "application/json"})
    assert answer.status_code == 400, answer.text
    error = answer.json()["error"]
    assert set(error) == {"code", "message", "type"} and error["code"] == 400
    assert error["type"] == "invalid_request_error"
    assert words in error["message"]


def test_a_route_that_does_not_exist_and_a_wrong_method(kcpp: httpx.Client) -> None:
    wrong = kcpp.get("/completion")
    assert wrong.status_code == 405 and wrong.json()["error"]["code"] == 405
    assert kcpp.get("/tokenize").json()["error"]["code"] == 405
