"""The Ollama door in front of the real embedded model, through the official client:
few requests, each a handful of tokens."""

from __future__ import annotations

from collections.abc import Iterator

import jsonschema
import ollama
import orjson
import pytest

from tests.conftest import GATEWAY_KEY, MODEL, LiveServer

pytestmark = pytest.mark.model

SHORT = {"num_predict": 8, "temperature": 0, "seed": 1}
NAME = MODEL + ":latest"


@pytest.fixture()
def oc(live: LiveServer) -> Iterator[ollama.Client]:
    with ollama.Client(host=live.url, headers={"Authorization": f"Bearer {GATEWAY_KEY}"}) as client:
        yield client


def test_the_embedded_model_is_listed_running_and_shown(oc: ollama.Client) -> None:
    assert NAME in [m.model for m in oc.list().models]
    running = [m for m in oc.ps().models if m.model == NAME]
    assert running and running[0].context_length == 2048
    shown = oc.show(NAME)
    assert shown.capabilities == ["completion"]
    assert shown.details is not None and shown.details.format == "gguf"
    assert shown.modelinfo == {"general.architecture": "chatgate", "chatgate.context_length": 2048}


def test_chat_and_its_stream(oc: ollama.Client) -> None:
    messages = [{"role": "user", "content": "Say hello."}]
    whole = oc.chat(model="smollm2-135m-instruct", messages=messages, options=SHORT, stream=False)
    assert whole.message.content and whole.model == NAME
    assert whole.eval_count is not None and 0 < whole.eval_count <= 8
    assert whole.done_reason in ("stop", "length")
    parts = list(oc.chat(model=NAME, messages=messages, options=SHORT, stream=True))
    assert "".join(p.message.content or "" for p in parts) == whole.message.content
    assert parts[-1].done and parts[-1].eval_count == whole.eval_count


def test_raw_generate_continues_the_text(oc: ollama.Client) -> None:
    prompt = "<|im_start|>user\nName a colour.<|im_end|>\n<|im_start|>assistant\n"
    parts = list(oc.generate(model=NAME, prompt=prompt, raw=True, options=SHORT, stream=True))
    assert "".join(p.response or "" for p in parts).strip()
    assert parts[-1].done and parts[-1].prompt_eval_count


def test_a_schema_format_is_enforced(oc: ollama.Client) -> None:
    schema = {
        "type": "object",
        "properties": {"n": {"type": "integer"}},
        "required": ["n"],
        "additionalProperties": False,
    }
    answer = oc.generate(
        model=NAME,
        # Not "a number": SmolLM2 says 1234567890, which the gateway key's digits redact.
        prompt="Count the days of a week, in JSON.",
        format=schema,
        options={**SHORT, "num_predict": 40},
    )
    assert answer.done_reason == "stop", answer.response
    jsonschema.validate(orjson.loads(answer.response or ""), schema)
