"""KoboldCpp, KoboldAI Classic and llama-server through `chatgate serve`, with the
official `openai` client in front and each server's fake behind: the prompt string the
instruct template makes, the samplers under each server's names, streams, the abort a
client's leaving sends, the model's own template choosing the preset, and errors."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Generator, Iterator
from dataclasses import dataclass
from typing import Any, cast

import httpx
import jsonschema
import openai
import pytest

from chatgate.adapters.kobold import KoboldAdapter
from chatgate.adapters.registry import make_adapter
from chatgate.config import Connection, Settings, TextOptions
from chatgate.sources import SOURCES
from chatgate.types import ChatRequest
from chatgate.upstream import Credentials, UpstreamRequest
from tests.adapters.text_common import CHAT, CHATML_PROMPT, SCHEMA
from tests.conftest import LiveServer, start_server
from tests.fakes import kobold_server, llamacpp_server
from tests.fakes.openai_server import serve

LLAMA3_JINJA = (
    "{{ bos_token }}{% for m in messages %}<|start_header_id|>{{ m['role'] }}"
    "<|end_header_id|>\n\n{{ m['content'] }}<|eot_id|>{% endfor %}"
    "{% if add_generation_prompt %}<|start_header_id|>assistant<|end_header_id|>\n\n{% endif %}"
)
FORMAT = {"name": "city", "schema": SCHEMA}


@dataclass
class Fakes:
    kobold: kobold_server.KoboldState
    classic: kobold_server.KoboldState
    llama: llamacpp_server.LlamaCppState
    server: LiveServer


@pytest.fixture(scope="module")
def fakes() -> Iterator[Fakes]:
    kobold = kobold_server.KoboldState()
    classic = kobold_server.KoboldState(classic=True)
    llama = llamacpp_server.LlamaCppState(chat_template=LLAMA3_JINJA)
    runners: list[Generator[str, None, None]] = []
    apps = [
        (kobold, kobold_server.build_app(kobold)),
        (classic, kobold_server.build_app(classic)),
        (llama, llamacpp_server.build_app(llama)),
    ]
    for state, app in apps:
        runner = cast(Generator[str, None, None], serve(app))
        state.url = next(runner)
        runners.append(runner)
    connections = [
        Connection(name="kcpp", source="kobold", base_url=kobold.url),
        Connection(name="classic", source="koboldai", base_url=classic.url),
        Connection(name="llama", source="llamacpp", base_url=llama.url),
        Connection(
            name="llama-alpaca",
            source="llamacpp",
            base_url=llama.url,
            text=TextOptions(instruct_template="alpaca", context_size=2048),
        ),
        Connection(
            name="llama-jinja",
            source="llamacpp",
            base_url=llama.url,
            text=TextOptions(chat_template="backend"),
        ),
        Connection(name="kcpp-lenient", source="kobold", base_url=kobold.url, drop_params=True),
    ]
    info, server, thread = start_server(Settings(embedded=False, connections=connections))
    yield Fakes(kobold, classic, llama, info)
    server.should_exit = True
    thread.join(timeout=10)
    for runner in runners:
        runner.close()


@pytest.fixture
def sdk(fakes: Fakes) -> openai.OpenAI:
    for state in (fakes.kobold, fakes.classic, fakes.llama):
        state.seen.clear()
    return openai.OpenAI(base_url=f"{fakes.server.url}/v1", api_key="unused", max_retries=0)


def test_kobold_gets_the_instruct_prompt_and_its_own_sampler_names(
    sdk: openai.OpenAI, fakes: Fakes
) -> None:
    answer = sdk.chat.completions.create(
        model="kcpp/any",
        messages=CHAT,
        max_tokens=20,
        temperature=0.5,
        seed=7,
        extra_body={"min_p": 0.1, "repetition_penalty": 1.1, "top_k": 30},
    )
    body = fakes.kobold.last("/api/v1/generate").body
    # The fake's /props shows a ChatML template: the ChatML preset renders the prompt.
    assert body["prompt"] == CHATML_PROMPT
    assert body["max_length"] == 20 and body["temperature"] == 0.5 and body["top_k"] == 30
    assert body["sampler_seed"] == 7 and body["min_p"] == 0.1 and body["rep_pen"] == 1.1
    assert "<|im_end|>" in body["stop_sequence"] and body["max_context_length"] == 4096
    assert answer.choices[0].finish_reason in ("stop", "length")
    assert answer.choices[0].message.content


def test_kobold_streams_and_a_client_that_leaves_aborts_its_genkey(
    sdk: openai.OpenAI, fakes: Fakes
) -> None:
    chunks = list(sdk.chat.completions.create(model="kcpp/any", messages=CHAT, stream=True))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert chunks[0].choices[0].delta.role == "assistant" and text
    assert chunks[-1].choices[0].finish_reason in ("stop", "length")
    genkey = fakes.kobold.last("/api/extra/generate/stream").body["genkey"]
    assert genkey.startswith("KCPP")

    fakes.kobold.token_delay = 0.2
    fakes.kobold.aborts.clear()
    try:
        with httpx.Client(timeout=10) as client:
            # A prefill of many words: the fake's echo of it is a long generation.
            prefill = [*CHAT, {"role": "assistant", "content": "word " * 100}]
            body = {"model": "kcpp/any", "messages": prefill, "stream": True, "max_tokens": 200}
            with client.stream("POST", f"{fakes.server.url}/v1/chat/completions", json=body) as r:
                for _ in r.iter_lines():
                    break  # the first bytes came: leave
        deadline = time.monotonic() + 10
        while not fakes.kobold.aborts and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        fakes.kobold.token_delay = 0.0
    last = fakes.kobold.last("/api/extra/generate/stream").body["genkey"]
    assert fakes.kobold.aborts == [last]


def test_classic_kobold_answers_a_stream_whole(sdk: openai.OpenAI, fakes: Fakes) -> None:
    chunks = list(sdk.chat.completions.create(model="classic/any", messages=CHAT, stream=True))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text and chunks[-1].choices[0].finish_reason in ("stop", "length")
    paths = [s.path for s in fakes.classic.seen]
    assert "/api/v1/generate" in paths and not any("/api/extra" in p for p in paths)


def test_llamacpp_picks_the_preset_from_the_model_template(
    sdk: openai.OpenAI, fakes: Fakes
) -> None:
    sdk.chat.completions.create(model="llama/m", messages=CHAT, max_tokens=8, top_p=0.9)
    body = fakes.llama.last("/completion").body
    assert body["prompt"].startswith("<|start_header_id|>system<|end_header_id|>\n\nBe brief.")
    assert not body["prompt"].startswith("<|begin_of_text|>")  # the server adds BOS
    assert body["prompt"].endswith("<|start_header_id|>assistant<|end_header_id|>\n\n")
    assert body["n_predict"] == 8 and body["top_p"] == 0.9 and "<|eot_id|>" in body["stop"]


def test_llamacpp_json_schema_output_validates(sdk: openai.OpenAI, fakes: Fakes) -> None:
    answer = sdk.chat.completions.create(
        model="llama/m",
        messages=CHAT,
        response_format=cast(Any, {"type": "json_schema", "json_schema": FORMAT}),
    )
    assert fakes.llama.last("/completion").body["json_schema"] == SCHEMA
    jsonschema.validate(json.loads(answer.choices[0].message.content or ""), SCHEMA)


def test_llamacpp_stream_ends_with_usage(sdk: openai.OpenAI) -> None:
    chunks = list(
        sdk.chat.completions.create(
            model="llama/m",
            messages=CHAT,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    assert chunks[-1].usage is not None and chunks[-1].usage.prompt_tokens > 0
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] in ("stop", "length")


def test_a_configured_preset_wins_and_the_preview_says_why(fakes: Fakes) -> None:
    body = {"model": "llama-alpaca/m", "messages": CHAT, "max_tokens": 16}
    shown = httpx.post(f"{fakes.server.url}/api/preview", json=body, timeout=10).json()
    prompt = shown["upstream"]["prompt"] if "upstream" in shown else shown["prompt"]
    assert prompt["template"] == "alpaca" and "instruct template" in prompt["why"]
    assert "### Instruction:" in prompt["text"] and prompt["context_size"] == 2048


def test_the_backends_own_jinja_template_renders_the_prompt(
    sdk: openai.OpenAI, fakes: Fakes
) -> None:
    sdk.chat.completions.create(model="llama-jinja/m", messages=CHAT, max_tokens=4)
    prompt = fakes.llama.last("/completion").body["prompt"]
    assert prompt.startswith("<|start_header_id|>system")  # the BOS the template wrote is gone
    assert prompt.endswith("<|start_header_id|>assistant<|end_header_id|>\n\n")


def test_a_too_long_conversation_is_cut_from_the_oldest_turns(fakes: Fakes) -> None:
    long = [{"role": "system", "content": "Keep me."}]
    for i in range(60):
        long.append({"role": "user" if i % 2 == 0 else "assistant", "content": f"turn {i} " * 40})
    body = {"model": "llama-alpaca/m", "messages": long, "max_tokens": 16}
    shown = httpx.post(f"{fakes.server.url}/api/preview", json=body, timeout=10).json()
    prompt = shown["upstream"]["prompt"] if "upstream" in shown else shown["prompt"]
    assert prompt["messages_cut"] > 0 and "Keep me." in prompt["text"]
    assert "turn 59" in prompt["text"] and "turn 0 " not in prompt["text"]


def test_an_unknown_parameter_is_refused_or_dropped(sdk: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        sdk.chat.completions.create(model="kcpp/any", messages=CHAT, logit_bias={"1": 2})
    assert "logit_bias" in str(caught.value)
    answer = sdk.chat.completions.create(
        model="kcpp-lenient/any", messages=CHAT, logit_bias={"1": 2}
    )
    assert answer.choices[0].message.content


def test_a_wrong_sampler_type_is_a_400_naming_it(sdk: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        sdk.chat.completions.create(model="kcpp/any", messages=CHAT, extra_body={"min_p": "x"})
    assert "min_p" in str(caught.value)


def test_models_and_status(fakes: Fakes) -> None:
    listed = httpx.get(f"{fakes.server.url}/api/connections/kcpp/models", timeout=10).json()
    assert fakes.kobold.model in listed["models"]
    status = httpx.get(f"{fakes.server.url}/api/connections/llama/status", timeout=10).json()
    assert status["status"] == "ok"


def test_concurrent_requests_share_one_facts_lookup(fakes: Fakes) -> None:
    fakes.llama.seen.clear()
    url = f"{fakes.server.url}/v1/chat/completions"
    body = {"model": "llama/m2", "messages": CHAT, "max_tokens": 4}
    errors: list[httpx.HTTPError] = []

    def send() -> None:
        try:
            httpx.post(url, json=body, timeout=10).raise_for_status()
        except httpx.HTTPError as exc:
            errors.append(exc)

    threads = [threading.Thread(target=send) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert sum(1 for s in fakes.llama.seen if s.path == "/completion") == 4


def test_a_long_prompt_is_counted_once_with_the_servers_tokenizer(fakes: Fakes) -> None:
    fakes.llama.seen.clear()
    long = [{"role": "user", "content": "many words here " * 800}]
    url = f"{fakes.server.url}/v1/chat/completions"
    for model in ("llama/counted", "llama/counted"):
        body = {"model": model, "messages": long, "max_tokens": 4}
        assert httpx.post(url, json=body, timeout=10).status_code == 200
    assert [s.path for s in fakes.llama.seen].count("/tokenize") == 1


def test_a_requests_own_chat_template_renders_in_the_runner(
    sdk: openai.OpenAI, fakes: Fakes
) -> None:
    template = "{% for m in messages %}[{{ m.role }}] {{ m.content }}\n{% endfor %}[assistant]"
    sdk.chat.completions.create(
        model="kcpp/any", messages=CHAT, max_tokens=4, extra_body={"chat_template": template}
    )
    prompt = fakes.kobold.last("/api/v1/generate").body["prompt"]
    assert (
        prompt == "[system] Be brief.\n[user] Hi\n[assistant] Hello\n[user] Say Paris\n[assistant]"
    )
    with pytest.raises(openai.BadRequestError) as caught:
        sdk.chat.completions.create(
            model="kcpp/any",
            messages=CHAT,
            extra_body={"chat_template": "{{ raise_exception('no system role') }}"},
        )
    assert "no system role" in str(caught.value)


def test_the_v4_door_reaches_a_text_backend(fakes: Fakes) -> None:
    body = {"model": "llama/m", "messages": CHAT, "max_tokens": 4}
    answer = httpx.post(f"{fakes.server.url}/v4/beta/chat/completions", json=body, timeout=10)
    assert answer.status_code == 200, answer.text
    assert fakes.llama.last("/completion").body["n_predict"] == 4


def test_kobold_asks_its_true_context_when_props_tells_none() -> None:
    connection = Connection(name="k", source="kobold", base_url="http://kobold.test")
    adapter = make_adapter(connection, SOURCES["kobold"], Credentials())
    assert isinstance(adapter, KoboldAdapter)
    request = ChatRequest.model_validate({"model": "k/m", "messages": CHAT})
    facts = adapter.lookup(request)
    assert facts is not None and facts.topic == "template:m"
    adapter.learn(facts, {"chat_template": "<|im_start|>"}, None)  # /props without n_ctx
    asked = adapter.lookup(request)
    assert asked is not None and isinstance(asked.ask, UpstreamRequest)
    assert asked.ask.url == "http://kobold.test/api/extra/true_max_context_length"
    adapter.learn(asked, {"value": 8192}, None)
    assert adapter.lookup(request) is None  # asked once
    built = adapter.build(request, []).body
    assert built is not None and built["max_context_length"] == 8192


def test_upstream_errors_keep_their_words_and_a_lie_is_a_502(
    sdk: openai.OpenAI, fakes: Fakes
) -> None:
    fakes.kobold.password = "pw-Zr7Kq2Wm9Pv4"
    try:
        with pytest.raises(openai.AuthenticationError) as caught:
            sdk.chat.completions.create(model="kcpp/any", messages=CHAT, max_tokens=4)
        assert "401" in str(caught.value)
    finally:
        fakes.kobold.password = None
    huge: list[Any] = [{"role": "user", "content": "word " * 5000}]
    with pytest.raises(openai.BadRequestError) as too_long:
        sdk.chat.completions.create(model="llama/m", messages=huge, max_tokens=4)
    assert "context" in str(too_long.value)
