"""Ollama through `chatgate serve`, with the official `openai` client in front and the
fake Ollama behind: ``/api/generate`` with the raw prompt chatgate renders (the preset
guessed from the model's Go template, the samplers in ``options``, ``num_ctx``, an
explicit ``stream``), NDJSON streams, ``format``, ``/api/chat`` mode, errors, a client
that leaves, models and the preview."""

from __future__ import annotations

import json
import time
from collections.abc import Generator, Iterator
from dataclasses import dataclass
from typing import Any, cast

import httpx
import jsonschema
import openai
import orjson
import pytest

from chatgate.config import Connection, Settings, TextOptions
from tests.adapters import text_common
from tests.adapters.text_common import CHAT, CHATML_PROMPT, SCHEMA
from tests.conftest import LiveServer, start_server
from tests.fakes import ollama_server
from tests.fakes.openai_server import serve

PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk"
WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
}


@dataclass
class Setup:
    ollama: ollama_server.OllamaState
    liar: text_common.Liar
    server: LiveServer


@pytest.fixture(scope="module")
def setup() -> Iterator[Setup]:
    state = ollama_server.OllamaState()
    runner = cast(Generator[str, None, None], serve(ollama_server.build_app(state)))
    state.url = next(runner)
    liars = text_common.running()
    liar = next(liars)
    connections = [
        Connection(
            name="ol", source="ollama", base_url=state.url, text=TextOptions(keep_alive="10m")
        ),
        Connection(name="ol-lenient", source="ollama", base_url=state.url, drop_params=True),
        Connection(
            name="ol-chat",
            source="ollama",
            base_url=state.url,
            text=TextOptions(ollama_api="chat", context_size=8192),
        ),
        Connection(
            name="ol-backend",
            source="ollama",
            base_url=state.url,
            text=TextOptions(chat_template="backend"),
        ),
        Connection(
            name="liar", source="ollama", base_url=liar.url, text=TextOptions(context_size=2048)
        ),
    ]
    info, server, thread = start_server(Settings(embedded=False, connections=connections))
    yield Setup(state, liar, info)
    server.should_exit = True
    thread.join(timeout=10)
    for gen in (runner, liars):
        gen.close()


@pytest.fixture
def sdk(setup: Setup) -> openai.OpenAI:
    setup.ollama.seen.clear()
    setup.ollama.disconnects.clear()
    setup.ollama.ignored_options.clear()
    setup.liar.answer, setup.liar.lines = None, []
    return openai.OpenAI(base_url=f"{setup.server.url}/v1", api_key="unused", max_retries=0)


def generated(setup: Setup) -> dict[str, Any]:
    body: dict[str, Any] = setup.ollama.last("/api/generate").body
    return body


def test_generate_gets_the_raw_prompt_and_options(sdk: openai.OpenAI, setup: Setup) -> None:
    answer = sdk.chat.completions.create(
        model="ol/qwen2.5:0.5b",
        messages=CHAT,
        max_tokens=20,
        temperature=0.5,
        top_p=0.9,
        seed=7,
        stop=["END"],
        extra_body={"min_p": 0.1, "repetition_penalty": 1.1, "top_k": 30, "num_keep": 5},
    )
    body = generated(setup)
    assert body["prompt"] == CHATML_PROMPT  # the Go template's telltales: ChatML
    assert body["raw"] is True and body["stream"] is False and body["keep_alive"] == "10m"
    options = body["options"]
    assert options["num_predict"] == 20 and options["temperature"] == 0.5
    assert options["top_p"] == 0.9 and options["top_k"] == 30 and options["min_p"] == 0.1
    assert options["repeat_penalty"] == 1.1 and options["seed"] == 7
    assert options["stop"][0] == "<|im_end|>" and "END" in options["stop"]
    assert options["num_ctx"] == 4096 and options["num_keep"] == 5  # capped at Ollama's own
    assert set(body) <= {"model", "prompt", "raw", "stream", "keep_alive", "options"}
    assert not setup.ollama.ignored_options
    # The fake echoes the prompt's last line: the reply opener.
    assert answer.choices[0].message.content == "<|im_start|>assistant"
    assert answer.choices[0].finish_reason == "stop"
    assert answer.usage is not None and answer.usage.completion_tokens == 1


def test_a_llama3_template_picks_the_llama3_preset(sdk: openai.OpenAI, setup: Setup) -> None:
    sdk.chat.completions.create(model="ol/llama3.2", messages=CHAT, max_tokens=4)
    body = generated(setup)
    assert body["prompt"].startswith("<|start_header_id|>system<|end_header_id|>\n\nBe brief.")
    assert body["options"]["num_ctx"] == 4096 and "<|eot_id|>" in body["options"]["stop"]
    assert [s.path for s in setup.ollama.seen].count("/api/show") == 1


def test_stream_is_ndjson_with_usage(sdk: openai.OpenAI, setup: Setup) -> None:
    chunks = list(
        sdk.chat.completions.create(
            model="ol/qwen2.5:0.5b",
            messages=CHAT,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    assert generated(setup)["stream"] is True
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "<|im_start|>assistant"
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 1


def test_max_tokens_ends_with_length(sdk: openai.OpenAI) -> None:
    answer = sdk.chat.completions.create(
        model="ol-chat/qwen2.5:0.5b",
        messages=[{"role": "user", "content": "one two three four five"}],
        max_tokens=2,
    )
    assert answer.choices[0].message.content == "one two"
    assert answer.choices[0].finish_reason == "length"


@pytest.mark.parametrize(
    ("fmt", "sent"),
    [
        ({"type": "json_schema", "json_schema": {"name": "c", "schema": SCHEMA}}, SCHEMA),
        ({"type": "json_object"}, "json"),
    ],
)
@pytest.mark.parametrize("stream", [False, True])
def test_response_format_becomes_format(
    sdk: openai.OpenAI, setup: Setup, fmt: dict[str, Any], sent: Any, stream: bool
) -> None:
    made = sdk.chat.completions.create(
        model="ol/qwen2.5:0.5b", messages=CHAT, response_format=cast(Any, fmt), stream=stream
    )
    if stream:
        text = "".join(c.choices[0].delta.content or "" for c in cast(Any, made) if c.choices)
    else:
        text = cast(Any, made).choices[0].message.content
    assert generated(setup)["format"] == sent
    value = json.loads(text)
    if sent == SCHEMA:
        jsonschema.validate(value, SCHEMA)


def test_chat_mode_sends_the_messages(sdk: openai.OpenAI, setup: Setup) -> None:
    messages: list[Any] = [
        {"role": "developer", "content": "Be brief."},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "What is this?"},
                {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}},
            ],
        },
    ]
    answer = sdk.chat.completions.create(
        model="ol-chat/qwen2.5:0.5b", messages=messages, max_tokens=10, stop=["END"]
    )
    body = setup.ollama.last("/api/chat").body
    assert body["messages"][0] == {"role": "system", "content": "Be brief."}
    assert body["messages"][1]["images"] == [PNG]
    assert body["stream"] is False and "prompt" not in body and "raw" not in body
    assert body["options"] == {"num_predict": 10, "stop": ["END"], "num_ctx": 8192}
    assert answer.choices[0].message.content == "What is this?"
    assert not any(s.path == "/api/show" for s in setup.ollama.seen)


def test_chat_mode_tool_call_round_trip(sdk: openai.OpenAI, setup: Setup) -> None:
    asked = [{"role": "user", "content": "Weather in Paris?"}]
    answer = sdk.chat.completions.create(
        model="ol-chat/tool-x", messages=cast(Any, asked), tools=cast(Any, [WEATHER_TOOL])
    )
    call = cast(Any, answer.choices[0].message.tool_calls)
    assert call is not None and answer.choices[0].finish_reason == "tool_calls"
    assert json.loads(call[0].function.arguments) == {"city": "Paris"}
    chunks = list(
        sdk.chat.completions.create(
            model="ol-chat/tool-x",
            messages=cast(Any, asked),
            tools=cast(Any, [WEATHER_TOOL]),
            stream=True,
        )
    )
    deltas = [d for c in chunks if c.choices for d in c.choices[0].delta.tool_calls or []]
    assert deltas and deltas[0].function is not None and deltas[0].function.name == "get_weather"
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "tool_calls"
    back = [
        *asked,
        {"role": "assistant", "content": None, "tool_calls": [call[0].model_dump()]},
        {"role": "tool", "tool_call_id": call[0].id, "content": "sunny"},
    ]
    final = sdk.chat.completions.create(
        model="ol-chat/tool-x", messages=cast(Any, back), tools=cast(Any, [WEATHER_TOOL])
    )
    sent = setup.ollama.last("/api/chat").body["messages"]
    assert sent[1]["tool_calls"][0]["function"]["arguments"] == {"city": "Paris"}
    assert sent[2]["tool_name"] == "get_weather"
    assert final.choices[0].message.content == "The tool said: sunny"


def test_a_go_template_is_not_rendered_as_jinja(sdk: openai.OpenAI, setup: Setup) -> None:
    body = {"model": "ol-backend/qwen2.5:0.5b", "messages": CHAT, "max_tokens": 4}
    shown = httpx.post(f"{setup.server.url}/api/preview", json=body, timeout=10).json()
    assert shown["prompt"]["template"] == "chatml" and "Go text/template" in shown["prompt"]["why"]


@pytest.mark.parametrize(("model", "status"), [("error-400", 400), ("error-500", 502)])
@pytest.mark.parametrize("stream", [False, True])
def test_upstream_errors_keep_their_words(
    sdk: openai.OpenAI, model: str, status: int, stream: bool
) -> None:
    with pytest.raises(openai.APIStatusError) as caught:
        made = sdk.chat.completions.create(model=f"ol/{model}", messages=CHAT, stream=stream)
        list(cast(Any, made)) if stream else None
    assert caught.value.status_code == status
    assert "the fake says" in str(caught.value)


def test_an_unknown_model_is_a_404(sdk: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as caught:
        sdk.chat.completions.create(model="ol/nope", messages=CHAT)
    assert "nope" in str(caught.value)


def test_an_error_line_mid_stream_ends_it(setup: Setup) -> None:
    words = [{"role": "user", "content": "one two three four"}]
    body = {"model": "ol-chat/oops-x", "messages": words, "stream": True}
    with httpx.Client(timeout=10) as client:
        text = client.post(f"{setup.server.url}/v1/chat/completions", json=body).text
    assert "unexpected EOF" in text and "[DONE]" not in text.split("unexpected EOF")[-1]


@pytest.mark.parametrize(
    "answer",
    [
        {"response": 5, "done": True},
        {"response": "x", "done": "yes"},
        {"response": "x", "done": True, "eval_count": "many"},
        ["not", "an", "object"],
        {"response": "x", "done": False},
    ],
)
def test_a_lying_answer_is_a_502(sdk: openai.OpenAI, setup: Setup, answer: Any) -> None:
    setup.liar.answer = answer
    with pytest.raises(openai.APIStatusError) as caught:
        sdk.chat.completions.create(model="liar/m", messages=CHAT)
    assert caught.value.status_code == 502
    assert cast(Any, caught.value.body)["code"] == "bad_upstream_response"


def test_a_lying_stream_line_is_a_502_frame(setup: Setup) -> None:
    setup.liar.lines = [
        orjson.dumps({"response": "ok", "done": False}) + b"\n",
        orjson.dumps({"response": ["x"], "done": False}) + b"\n",
    ]
    body = {"model": "liar/m", "messages": CHAT, "stream": True}
    with httpx.Client(timeout=10) as client:
        text = client.post(f"{setup.server.url}/v1/chat/completions", json=body).text
    assert "bad_upstream_response" in text


def test_a_client_that_leaves_closes_the_connection(setup: Setup) -> None:
    body = {"model": "ol/slow-x", "messages": CHAT, "stream": True}
    with httpx.Client(timeout=10) as client:
        url = f"{setup.server.url}/v1/chat/completions"
        with client.stream("POST", url, json=body) as answer:
            for _ in answer.iter_lines():
                break
    deadline = time.monotonic() + 10
    while not setup.ollama.disconnects and time.monotonic() < deadline:
        time.sleep(0.05)
    assert setup.ollama.disconnects and setup.ollama.disconnects[0].model == "slow-x"


def test_an_unknown_parameter_is_refused_or_dropped(sdk: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        sdk.chat.completions.create(model="ol/qwen2.5:0.5b", messages=CHAT, logit_bias={"1": 2})
    assert "logit_bias" in str(caught.value)
    answer = sdk.chat.completions.create(
        model="ol-lenient/qwen2.5:0.5b", messages=CHAT, logit_bias={"1": 2}
    )
    assert answer.choices[0].message.content
    with pytest.raises(openai.BadRequestError) as caught:
        sdk.chat.completions.create(
            model="ol/qwen2.5:0.5b", messages=CHAT, tools=cast(Any, [WEATHER_TOOL])
        )
    assert "tools" in str(caught.value)


def test_models_come_from_tags(setup: Setup) -> None:
    listed = httpx.get(f"{setup.server.url}/api/connections/ol/models", timeout=10).json()
    assert {"qwen2.5:0.5b", "llama3.2:latest"} <= set(listed["upstream"])
    status = httpx.get(f"{setup.server.url}/api/connections/ol/status", timeout=10).json()
    assert status["status"] == "ok"


@pytest.mark.parametrize(
    ("connection", "template", "why"),
    [
        ("ol", "chatml", "guessed"),
        ("ol-chat", "ollama", "Ollama's own template"),
    ],
)
def test_the_preview_shows_the_prompt_and_why(
    setup: Setup, connection: str, template: str, why: str
) -> None:
    body = {"model": f"{connection}/qwen2.5:0.5b", "messages": CHAT, "max_tokens": 16}
    shown = httpx.post(f"{setup.server.url}/api/preview", json=body, timeout=10).json()
    assert shown["url"].endswith("/api/chat" if connection == "ol-chat" else "/api/generate")
    prompt = shown["prompt"]
    assert prompt["template"] == template and why in prompt["why"]
    if connection == "ol":
        assert prompt["text"] == CHATML_PROMPT == shown["body"]["prompt"]
