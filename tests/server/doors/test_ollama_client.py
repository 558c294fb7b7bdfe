"""The Ollama door driven by the official ``ollama`` Python client, in front of the
Claude fake (another protocol) and the Ollama fake: list, show, chat, generate, streams,
JSON formats, tools, thinking, images, errors. No model runs here."""

from __future__ import annotations

from typing import Any

import jsonschema
import ollama
import orjson
import pytest

from tests.conftest import LiveServer
from tests.fakes.common import TEXT, WEATHER_ARGS
from tests.fakes.ollama_server import OllamaState
from tests.server.doors.ollama_servers import CLAUDE_KEY, PNG, WEATHER, claude_fake, door, oc

__all__ = ["claude_fake", "door", "oc"]  # the fixtures, used by name

SCHEMA = {
    "type": "object",
    "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
    "required": ["city", "days"],
}
HI = [{"role": "user", "content": "Hi"}]


def test_list_names_every_model_the_door_reaches(oc: ollama.Client) -> None:
    listed = {m.model: m for m in oc.list().models if m.model}
    assert {"claude/claude-fake-1:latest", "ol/qwen2.5:0.5b", "ol/llama3.2:latest"} <= set(listed)
    entry = listed["claude/claude-fake-1:latest"]
    assert entry.size == 0 and entry.digest and entry.modified_at is not None
    assert entry.details is not None and entry.details.format == ""
    # Every listed name comes back to its model.
    for name in listed:
        assert oc.show(name).modelfile is not None


def test_show_says_what_chatgate_knows(oc: ollama.Client) -> None:
    shown = oc.show("claude/claude-fake-1")
    assert shown.capabilities == ["completion", "tools", "vision"]
    assert shown.modelfile is not None and "FROM claude/claude-fake-1" in shown.modelfile
    assert shown.template == "" and shown.parameters == ""
    assert oc.show("ol/qwen2.5:0.5b").capabilities == ["completion"]
    with pytest.raises(ollama.ResponseError) as missing:
        oc.show("ol-nothing/x")
    assert missing.value.status_code == 404 and "not found" in missing.value.error


def test_version_and_ps(oc: ollama.Client, door: LiveServer) -> None:
    assert oc.ps().models == []  # nothing embedded here: remote models run elsewhere
    with door.client() as http:
        assert http.get("/api/version").json() == {"version": "0.12.6"}


def test_chat_whole_and_streamed(oc: ollama.Client) -> None:
    whole = oc.chat(model="claude/claude-fake-1", messages=HI)
    assert whole.message.content == TEXT and whole.done and whole.done_reason == "stop"
    assert whole.model == "claude/claude-fake-1:latest"
    assert whole.prompt_eval_count and whole.eval_count == 7
    parts = list(oc.chat(model="claude/claude-fake-1:latest", messages=HI, stream=True))
    assert "".join(p.message.content or "" for p in parts) == TEXT
    assert [p.done for p in parts] == [False] * (len(parts) - 1) + [True]
    last = parts[-1]
    assert last.done_reason == "stop" and last.eval_count == 7 and last.prompt_eval_count == 11
    assert last.total_duration and last.total_duration >= (last.eval_duration or 0)


def test_generate_whole_and_streamed(oc: ollama.Client) -> None:
    whole = oc.generate(model="claude/m", prompt="Hi", system="Be brief.")
    assert whole.response == TEXT and whole.done and whole.context is None
    parts = list(oc.generate(model="claude/m", prompt="Hi", stream=True))
    assert "".join(p.response or "" for p in parts) == TEXT
    assert parts[-1].done and parts[-1].eval_count == 7


@pytest.mark.parametrize("stream", [False, True])
def test_json_formats(oc: ollama.Client, stream: bool) -> None:
    def text(fmt: Any) -> str:
        if stream:
            return "".join(
                p.message.content or ""
                for p in oc.chat(model="claude/m", messages=HI, format=fmt, stream=True)
            )
        return oc.chat(model="claude/m", messages=HI, format=fmt).message.content or ""

    assert isinstance(orjson.loads(text("json")), dict)
    jsonschema.validate(orjson.loads(text(SCHEMA)), SCHEMA)
    generated = oc.generate(model="claude/m", prompt="Plan a trip", format=SCHEMA).response
    jsonschema.validate(orjson.loads(generated or ""), SCHEMA)


def test_tool_call_round_trip(oc: ollama.Client) -> None:
    asked = "Weather in Paris?"
    messages: list[Any] = [{"role": "user", "content": asked}]
    whole = oc.chat(model="claude/tool-1", messages=messages, tools=[WEATHER])
    calls = whole.message.tool_calls or []
    assert len(calls) == 1 and calls[0].function.name == "get_weather"
    assert dict(calls[0].function.arguments) == WEATHER_ARGS  # an object, as Ollama sends
    parts = list(oc.chat(model="claude/tool-1", messages=messages, tools=[WEATHER], stream=True))
    streamed = [c for p in parts for c in p.message.tool_calls or []]
    assert [(c.function.name, dict(c.function.arguments)) for c in streamed] == [
        ("get_weather", WEATHER_ARGS)
    ]
    history = [
        *messages,
        whole.message,
        {"role": "tool", "content": "20C and sunny", "tool_name": "get_weather"},
    ]
    final = oc.chat(model="claude/tool-1", messages=history, tools=[WEATHER])
    assert final.message.content == "The tool said: 20C and sunny"


def test_think_returns_the_reasoning(oc: ollama.Client) -> None:
    whole = oc.chat(model="claude/think-1", messages=HI, think=True)
    assert whole.message.thinking == "Weighing it up." and whole.message.content == TEXT
    parts = list(oc.chat(model="claude/think-1", messages=HI, think="high", stream=True))
    assert "".join(p.message.thinking or "" for p in parts) == "Weighing it up."


def test_images_in_chat_and_generate(oc: ollama.Client) -> None:
    message = {"role": "user", "content": "What is this?", "images": [PNG]}
    assert oc.chat(model="claude/m", messages=[message]).message.content == "I see 1 image(s)."
    answer = oc.generate(model="claude/m", prompt="What is this?", images=[PNG, PNG])
    assert answer.response == "I see 2 image(s)."


def test_a_request_with_nothing_to_generate_only_loads(oc: ollama.Client) -> None:
    loaded = oc.chat(model="claude/claude-fake-1", messages=[])
    assert loaded.done and loaded.done_reason == "load" and loaded.message.content == ""
    assert oc.generate(model="claude/m").done_reason == "load"
    assert oc.generate(model="claude/m", keep_alive=0).done_reason == "unload"


def test_upstream_errors_keep_their_status_and_hide_keys(oc: ollama.Client) -> None:
    with pytest.raises(ollama.ResponseError) as limited:
        oc.chat(model="claude/error-429", messages=HI)
    assert limited.value.status_code == 429 and "the fake says 429" in limited.value.error
    with pytest.raises(ollama.ResponseError) as denied:
        oc.chat(model="revoked/m", messages=HI)
    assert denied.value.status_code == 401 and CLAUDE_KEY not in str(denied.value)
    with pytest.raises(ollama.ResponseError) as mid_stream:
        for _ in oc.chat(model="claude/oops-1", messages=HI, stream=True):
            pass
    assert "verloaded" in mid_stream.value.error


def test_ollama_options_reach_an_ollama_connection(
    oc: ollama.Client, ollama_fake_server: OllamaState
) -> None:
    options = {"num_predict": 3, "num_ctx": 1024, "typical_p": 0.5, "mirostat": 2}
    answer = oc.generate(
        model="ol/qwen2.5:0.5b",
        prompt="one two three four",
        raw=True,
        options=options,
        keep_alive="5m",
    )
    assert answer.response == "one two three" and answer.done_reason == "length"
    sent = ollama_fake_server.last("/api/generate").body
    assert sent["raw"] is True and sent["keep_alive"] == "5m"
    assert sent["options"]["num_predict"] == 3 and sent["options"]["num_ctx"] == 1024
    assert sent["options"]["typical_p"] == 0.5 and "mirostat" not in sent["options"]


def test_tools_through_an_ollama_chat_connection(
    oc: ollama.Client, ollama_fake_server: OllamaState
) -> None:
    answer = oc.chat(model="olchat/tool-x:latest", messages=HI, tools=[WEATHER], think=False)
    calls = answer.message.tool_calls or []
    assert calls and calls[0].function.name == "get_weather"
    assert isinstance(calls[0].function.arguments, dict)
    sent = ollama_fake_server.last("/api/chat").body
    assert sent["think"] is False and sent["tools"][0]["function"]["name"] == "get_weather"


def test_a_stream_is_one_json_object_a_line(door: LiveServer) -> None:
    with (
        door.client() as http,
        http.stream("POST", "/api/generate", json={"model": "claude/m", "prompt": "Hi"}) as answer,
    ):
        raw = b"".join(answer.iter_bytes())
    assert raw.endswith(b"\n") and b"\n\n" not in raw and not raw.startswith(b"data:")
    lines = [orjson.loads(line) for line in raw.splitlines()]
    assert all(set(line) >= {"model", "created_at", "response", "done"} for line in lines)
    assert lines[-1]["done_reason"] == "stop" and "context" not in lines[-1]


def test_a_stream_is_sent_as_ndjson(door: LiveServer) -> None:
    with (
        door.client() as http,
        http.stream("POST", "/api/chat", json={"model": "claude/m", "messages": HI}) as answer,
    ):
        assert answer.headers["content-type"] == "application/x-ndjson"
