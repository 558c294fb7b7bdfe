"""The OpenAI-style text completion sources (text-generation-webui, TabbyAPI, vLLM,
Aphrodite, Mancer, DreamGen, a generic server) through `chatgate serve`, with the
official `openai` client in front and the fake text server behind, in each server's
flavour: the prompt string, the samplers and constraint fields each server knows (and
nothing it does not), streams with usage, errors, a client that leaves, the tokenizer
and context lookups, models and the preview. One row per flavour."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, cast

import httpx
import jsonschema
import openai
import orjson
import pytest

from chatgate.config import Connection, Settings, TextOptions
from chatgate.gbnf.schema import json_gbnf
from tests.adapters import text_common
from tests.adapters.text_common import CHAT, CHATML_PROMPT, SCHEMA
from tests.conftest import LiveServer, start_server
from tests.fakes.text_conftest import text_openai_fake_for, text_openai_fake_server
from tests.fakes.text_openai_server import REGEX_TEXT, TextOpenAIState

__all__ = ["text_openai_fake_for", "text_openai_fake_server"]  # the fixtures used here

MODEL = "fake-text-1"
KEY = "sk-text-test-4242abcd"
ECHO = "<|im_start|>assistant"  # the fake echoes the prompt's last line: the reply opener


@dataclass(frozen=True)
class Row:
    """One flavour: its source, where its API lives, a native field it takes, how it
    takes a JSON schema (None: refused), its tokenizer path and auth header."""

    source: str
    base: str = ""
    native: dict[str, Any] = field(default_factory=dict)
    schema_field: str | None = None
    tokenizer: str | None = None
    auth: str = "authorization"
    samplers: bool = True  # top_k, min_p, repetition_penalty


ROWS = [
    Row(
        "textgen",
        native={"typical_p": 0.9},
        schema_field="grammar_string",
        tokenizer="/v1/internal/encode",
    ),
    Row(
        "tabby",
        native={"typical": 0.9},
        schema_field="json_schema",
        tokenizer="/v1/token/encode",
        auth="x-api-key",
    ),
    Row("vllm", native={"min_tokens": 1}, schema_field="structured_outputs", tokenizer="/tokenize"),
    Row("aphrodite", native={"tfs": 0.9}, schema_field="guided_json", tokenizer="/v1/tokenize"),
    Row("mancer", "/oai/v1", native={"typical_p": 0.9}, auth="x-api-key"),
    Row("dreamgen", "/api/openai/v1"),
    Row("generic", "/v1", samplers=False),
]
IDS = [row.source for row in ROWS]


@dataclass
class Setup:
    fake: TextOpenAIState
    liar: text_common.Liar
    server: LiveServer


@pytest.fixture(scope="module")
def setup(text_openai_fake_server: TextOpenAIState) -> Iterator[Setup]:
    url = text_openai_fake_server.url
    liars = text_common.running()
    liar = next(liars)
    connections = []
    for row in ROWS:
        base = url + row.base
        connections.append(
            Connection(name=row.source, source=row.source, base_url=base, api_key=KEY)
        )
        connections.append(
            Connection(
                name=f"{row.source}-lenient",
                source=row.source,
                base_url=base,
                api_key=KEY,
                drop_params=True,
            )
        )
    connections += [
        Connection(name="vllm-legacy", source="vllm", base_url=url, vllm_guided="legacy"),
        Connection(name="vllm-so", source="vllm", base_url=url, vllm_guided="structured_outputs"),
        Connection(name="textgen-v1", source="textgen", base_url=url + "/v1"),
        Connection(
            name="textgen-alpaca",
            source="textgen",
            base_url=url,
            text=TextOptions(instruct_template="alpaca", context_size=2048),
        ),
        Connection(name="liar", source="generic", base_url=liar.url + "/v1"),
    ]
    info, server, thread = start_server(Settings(embedded=False, connections=connections))
    yield Setup(text_openai_fake_server, liar, info)
    server.should_exit = True
    thread.join(timeout=10)
    liars.close()


@pytest.fixture
def sdk(setup: Setup) -> openai.OpenAI:
    setup.liar.answer, setup.liar.lines, setup.liar.status = None, [], 200
    return openai.OpenAI(base_url=f"{setup.server.url}/v1", api_key="unused", max_retries=0)


@pytest.fixture
def flavoured(
    text_openai_fake_for: Callable[[str], TextOpenAIState],
) -> Callable[[str], TextOpenAIState]:
    """The fake in a flavour, requiring the test key."""

    def make(flavour: str, **knobs: Any) -> TextOpenAIState:
        state = text_openai_fake_for(flavour)
        state.api_key = KEY
        for name, value in knobs.items():
            setattr(state, name, value)
        return state

    return make


def completed(state: TextOpenAIState, row: Row) -> dict[str, Any]:
    body: dict[str, Any] = state.last(f"{row.base or '/v1'}/completions").body
    return body


@pytest.mark.parametrize("row", ROWS, ids=IDS)
def test_the_prompt_and_samplers_under_each_servers_names(
    sdk: openai.OpenAI, flavoured: Callable[..., TextOpenAIState], row: Row
) -> None:
    state = flavoured(row.source)
    extra: dict[str, Any] = dict(row.native)
    if row.samplers:
        extra.update({"top_k": 30, "min_p": 0.1, "repetition_penalty": 1.1})
    answer = sdk.chat.completions.create(
        model=f"{row.source}/{MODEL}",
        messages=CHAT,
        max_tokens=20,
        temperature=0.5,
        seed=7,
        stop=["END"],
        extra_body=extra,
    )
    body = completed(state, row)
    assert body["prompt"] == CHATML_PROMPT and body["model"] == MODEL
    assert body["max_tokens"] == 20 and body["temperature"] == 0.5 and body["seed"] == 7
    assert body["stop"][0] == "<|im_end|>" and "END" in body["stop"]
    for name, value in extra.items():
        assert body[name] == value, name
    assert not state.unknown_fields  # nothing the server does not know
    seen = state.last("/completions").headers
    assert (seen.get(row.auth) or "").endswith(KEY)
    assert answer.choices[0].message.content == ECHO
    assert answer.choices[0].finish_reason == "stop"
    assert answer.usage is not None and answer.usage.completion_tokens == 1


@pytest.mark.parametrize("row", ROWS, ids=IDS)
def test_streams_end_with_the_finish_and_usage(
    sdk: openai.OpenAI, flavoured: Callable[..., TextOpenAIState], row: Row
) -> None:
    state = flavoured(row.source)
    chunks = list(
        sdk.chat.completions.create(
            model=f"{row.source}/{MODEL}",
            messages=CHAT,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    assert completed(state, row)["stream"] is True and not state.unknown_fields
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == ECHO
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    usage = chunks[-1].usage
    assert usage is not None and usage.completion_tokens == len(chunks) - 3
    assert usage.prompt_tokens == len(CHATML_PROMPT.split()) + 1  # the server's own count


@pytest.mark.parametrize("row", ROWS, ids=IDS)
@pytest.mark.parametrize("stream", [False, True])
def test_a_json_schema_in_each_servers_form(
    sdk: openai.OpenAI, flavoured: Callable[..., TextOpenAIState], row: Row, stream: bool
) -> None:
    state = flavoured(row.source)
    fmt = cast(Any, {"type": "json_schema", "json_schema": {"name": "c", "schema": SCHEMA}})
    model = f"{row.source}/{MODEL}"
    if row.schema_field is None:
        with pytest.raises(openai.BadRequestError) as caught:
            sdk.chat.completions.create(model=model, messages=CHAT, response_format=fmt)
        assert "response_format" in str(caught.value)
        return
    made = sdk.chat.completions.create(
        model=model, messages=CHAT, response_format=fmt, stream=stream
    )
    if stream:
        text = "".join(c.choices[0].delta.content or "" for c in cast(Any, made) if c.choices)
    else:
        text = cast(Any, made).choices[0].message.content
    sent = completed(state, row)[row.schema_field]
    assert "response_format" not in completed(state, row)
    if row.schema_field == "grammar_string":
        # A GBNF grammar made from the schema (chatgate.gbnf), which the fake does not run.
        assert sent == json_gbnf(SCHEMA, param="response_format.json_schema.schema")
        assert "root ::=" in sent
        return
    assert sent == ({"json": SCHEMA} if row.schema_field == "structured_outputs" else SCHEMA)
    jsonschema.validate(json.loads(text), SCHEMA)


@pytest.mark.parametrize(
    ("connection", "legacy", "extra", "field", "expected"),
    [
        ("vllm-so", False, {"guided_regex": "[A-Za-z .]+"}, "structured_outputs", REGEX_TEXT),
        ("vllm-so", False, {"guided_choice": ["yes", "no"]}, "structured_outputs", "yes"),
        ("vllm-legacy", True, {"guided_choice": ["yes", "no"]}, "guided_choice", "yes"),
        ("vllm-legacy", True, {"guided_regex": "[A-Za-z .]+"}, "guided_regex", REGEX_TEXT),
        ("textgen", False, {"grammar_string": 'root ::= "yes"'}, "grammar_string", "yes"),
        ("tabby", False, {"regex_pattern": "[A-Za-z .]+"}, "regex_pattern", REGEX_TEXT),
    ],
)
def test_constraints_in_the_servers_own_fields(
    sdk: openai.OpenAI,
    flavoured: Callable[..., TextOpenAIState],
    connection: str,
    legacy: bool,
    extra: dict[str, Any],
    field: str,
    expected: str,
) -> None:
    flavour = connection.split("-")[0]
    state = flavoured(flavour, legacy_guided=legacy, api_key=None)
    answer = sdk.chat.completions.create(
        model=f"{connection}/{MODEL}", messages=CHAT, extra_body=extra
    )
    assert field in state.last("/v1/completions").body and not state.unknown_fields
    assert answer.choices[0].message.content == expected


def test_vllm_legacy_takes_json_as_guided_json(
    sdk: openai.OpenAI, flavoured: Callable[..., TextOpenAIState]
) -> None:
    state = flavoured("vllm", legacy_guided=True, api_key=None)
    fmt = cast(Any, {"type": "json_schema", "json_schema": {"name": "c", "schema": SCHEMA}})
    answer = sdk.chat.completions.create(
        model=f"vllm-legacy/{MODEL}", messages=CHAT, response_format=fmt
    )
    assert state.last("/v1/completions").body["guided_json"] == SCHEMA
    jsonschema.validate(json.loads(answer.choices[0].message.content or ""), SCHEMA)


def test_a_base_url_with_v1_is_the_same_server(
    sdk: openai.OpenAI, flavoured: Callable[..., TextOpenAIState]
) -> None:
    state = flavoured("textgen", api_key=None)
    sdk.chat.completions.create(model=f"textgen-v1/{MODEL}", messages=CHAT, max_tokens=4)
    assert state.seen[-1].path == "/v1/completions"


def test_generic_keeps_four_stops_and_says_which_it_left_out(
    setup: Setup, flavoured: Callable[..., TextOpenAIState]
) -> None:
    state = flavoured("generic")
    stops = ["A1", "B2", "C3", "D4"]
    body = {"model": f"generic/{MODEL}", "messages": CHAT, "stop": stops, "max_tokens": 4}
    headers = {"Authorization": "Bearer unused"}
    with httpx.Client(base_url=setup.server.url, timeout=10, headers=headers) as client:
        client.post("/v1/chat/completions", json=body).raise_for_status()
        shown = client.post("/api/preview", json=body).json()
    sent = state.last("/v1/completions").body["stop"]
    assert sent == ["<|im_end|>", "A1", "B2", "C3"] and not state.unknown_fields
    left = shown["prompt"]["stop_left_out"]
    assert left[0] == "D4" and "\n<|im_start|>user" in left and shown["body"]["stop"] == sent


@pytest.mark.parametrize("stream", [False, True])
def test_upstream_errors_keep_their_words(
    sdk: openai.OpenAI, flavoured: Callable[..., TextOpenAIState], stream: bool
) -> None:
    state = flavoured("vllm")
    state.api_key = "another-key"
    with pytest.raises(openai.AuthenticationError):
        made = sdk.chat.completions.create(model=f"vllm/{MODEL}", messages=CHAT, stream=stream)
        list(cast(Any, made)) if stream else None
    state.api_key = KEY
    with pytest.raises(openai.NotFoundError) as caught:
        made = sdk.chat.completions.create(model="vllm/other", messages=CHAT, stream=stream)
        list(cast(Any, made)) if stream else None
    assert "other" in str(caught.value)


def test_a_field_of_the_wrong_type_comes_back_as_a_400(
    sdk: openai.OpenAI, flavoured: Callable[..., TextOpenAIState]
) -> None:
    flavoured("textgen")
    with pytest.raises(openai.BadRequestError) as caught:
        sdk.chat.completions.create(
            model=f"textgen/{MODEL}", messages=CHAT, extra_body={"typical_p": "high"}
        )
    assert "422" in str(caught.value) and "valid number" in str(caught.value)


@pytest.mark.parametrize("status", [500, 503])
def test_a_5xx_is_a_502(sdk: openai.OpenAI, setup: Setup, status: int) -> None:
    setup.liar.answer, setup.liar.status = {"error": {"message": "it broke"}}, status
    with pytest.raises(openai.APIStatusError) as caught:
        sdk.chat.completions.create(model="liar/m", messages=CHAT)
    assert caught.value.status_code in (502, 503) and "it broke" in str(caught.value)


@pytest.mark.parametrize(
    "answer",
    [
        {"choices": [{"text": 5, "finish_reason": "stop"}]},
        {"choices": "many"},
        {"choices": []},
        {"choices": [{"text": "x", "finish_reason": 3}]},
        {"choices": [{"text": "x"}], "usage": {"prompt_tokens": "ten"}},
        "just text",
    ],
)
def test_a_lying_answer_is_a_502(sdk: openai.OpenAI, setup: Setup, answer: Any) -> None:
    setup.liar.answer = answer
    with pytest.raises(openai.APIStatusError) as caught:
        sdk.chat.completions.create(model="liar/m", messages=CHAT)
    assert caught.value.status_code == 502
    assert cast(Any, caught.value.body)["code"] == "bad_upstream_response"


@pytest.mark.parametrize(
    ("event", "said"),
    [
        ({"choices": [{"text": ["x"], "finish_reason": None}]}, "bad_upstream_response"),
        ({"error": {"message": "out of memory"}}, "out of memory"),
    ],
)
def test_a_bad_stream_event_ends_the_stream_with_an_error(
    setup: Setup, event: dict[str, Any], said: str
) -> None:
    first = {"choices": [{"text": "ok", "finish_reason": None}]}
    setup.liar.media_type = "text/event-stream"
    setup.liar.lines = [b"data: " + orjson.dumps(e) + b"\n\n" for e in (first, event)]
    body = {"model": "liar/m", "messages": CHAT, "stream": True}
    with httpx.Client(timeout=10) as client:
        text = client.post(f"{setup.server.url}/v1/chat/completions", json=body).text
    assert said in text and '"content":"ok"' in text


def test_a_client_that_leaves_stops_textgen(
    setup: Setup, flavoured: Callable[..., TextOpenAIState]
) -> None:
    state = flavoured("textgen", token_delay=0.2)
    prefill = [*CHAT, {"role": "assistant", "content": "word " * 100}]
    body = {"model": f"textgen/{MODEL}", "messages": prefill, "stream": True, "max_tokens": 200}
    with httpx.Client(timeout=10) as client:
        url = f"{setup.server.url}/v1/chat/completions"
        with client.stream("POST", url, json=body) as answer:
            for _ in answer.iter_lines():
                break
    deadline = time.monotonic() + 10
    while not state.stop_requests and time.monotonic() < deadline:
        time.sleep(0.05)
    assert state.stop_requests == 1
    assert state.last("/v1/internal/stop-generation").headers["authorization"].endswith(KEY)


@pytest.mark.parametrize(
    ("connection", "name"),
    [("textgen", "logit_bias"), ("generic", "top_k"), ("dreamgen", "typical_p")],
)
def test_an_unknown_parameter_is_refused_or_dropped(
    sdk: openai.OpenAI, flavoured: Callable[..., TextOpenAIState], connection: str, name: str
) -> None:
    state = flavoured(connection)
    value = {"1": 2} if name == "logit_bias" else 3
    with pytest.raises(openai.BadRequestError) as caught:
        sdk.chat.completions.create(
            model=f"{connection}/{MODEL}", messages=CHAT, extra_body={name: value}
        )
    assert f"'{name}'" in str(caught.value)
    answer = sdk.chat.completions.create(
        model=f"{connection}-lenient/{MODEL}", messages=CHAT, extra_body={name: value}
    )
    assert answer.choices[0].message.content and not state.unknown_fields
    assert name not in state.seen[-1].body


@pytest.mark.parametrize("row", [r for r in ROWS if r.tokenizer], ids=lambda r: r.source)
def test_a_long_prompt_is_counted_by_the_servers_tokenizer(
    setup: Setup, flavoured: Callable[..., TextOpenAIState], row: Row
) -> None:
    # A model of its own: what the server said of another is kept for minutes.
    state = flavoured(row.source, max_model_len=2048, model="fake-text-long")
    long = [{"role": "user", "content": "many words here " * 400}]
    body = {"model": f"{row.source}/fake-text-long", "messages": long, "max_tokens": 16}
    shown = httpx.post(f"{setup.server.url}/api/preview", json=body, timeout=10).json()
    asked = state.last(cast(str, row.tokenizer))
    assert asked.body.get("text", asked.body.get("prompt", "")).startswith("<|im_start|>user")
    told = row.source in ("vllm", "aphrodite", "tabby")  # the server tells the context
    assert shown["prompt"]["context_size"] == (2048 if told else 4096)
    # The estimate of 3 characters a token would not fit 2,048; the server's count does.
    assert shown["prompt"]["messages_cut"] == 0


@pytest.mark.parametrize("row", ROWS, ids=IDS)
def test_models_are_listed(
    setup: Setup, flavoured: Callable[..., TextOpenAIState], row: Row
) -> None:
    flavoured(row.source)
    listed = httpx.get(f"{setup.server.url}/api/connections/{row.source}/models", timeout=10).json()
    assert listed["upstream"] == [MODEL]


def test_the_preview_shows_the_prompt_and_why(
    setup: Setup, flavoured: Callable[..., TextOpenAIState]
) -> None:
    flavoured("textgen")
    body = {"model": f"textgen-alpaca/{MODEL}", "messages": CHAT, "max_tokens": 16}
    shown = httpx.post(f"{setup.server.url}/api/preview", json=body, timeout=10).json()
    prompt = shown["prompt"]
    assert prompt["template"] == "alpaca" and "instruct template" in prompt["why"]
    assert prompt["text"] == shown["body"]["prompt"] and "### Instruction:" in prompt["text"]
    assert prompt["context_size"] == 2048 and shown["url"].endswith("/v1/completions")
    default = {**body, "model": f"textgen/{MODEL}"}
    shown = httpx.post(f"{setup.server.url}/api/preview", json=default, timeout=10).json()
    assert shown["prompt"]["template"] == "chatml" and "ChatML" in shown["prompt"]["why"]
    assert shown["headers"]["Authorization"] != f"Bearer {KEY}"  # masked
