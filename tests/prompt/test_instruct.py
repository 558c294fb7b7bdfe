"""Instruct templates: presets, rendering, stop strings, preset files and guessing."""

from __future__ import annotations

import json
from dataclasses import fields, replace
from importlib import resources
from pathlib import Path
from typing import Any

import pytest

from chatgate.errors import ConfigError, InvalidRequestError
from chatgate.prompt.instruct import (
    PRESET_NAMES,
    InstructTemplate,
    guess,
    load_template,
    preset,
    render,
    stop_strings,
)
from chatgate.types import Message

GOLDEN = Path(__file__).parent / "golden"
CHAT = [
    Message(role="system", content="S"),
    Message(role="user", content="Hi"),
    Message(role="assistant", content="Hello"),
    Message(role="user", content="How?"),
]
# A template whose every sequence is visible, for the rules that do not depend on a model.
PLAIN = InstructTemplate(
    name="plain",
    input_sequence="<u>",
    input_suffix="</u>",
    output_sequence="<a>",
    output_suffix="</a>",
    system_sequence="<s>",
    system_suffix="</s>",
)


def msg(role: str, content: Any = "x", **extra: Any) -> Message:
    return Message.model_validate({"role": role, "content": content, **extra})


@pytest.mark.parametrize("name", PRESET_NAMES)
def test_the_conversation_through_every_preset_matches_its_golden_file(name: str) -> None:
    expected = (GOLDEN / f"{name}.txt").read_bytes()
    assert render(CHAT, preset(name)).text.encode() == expected


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        (
            "chatml",
            "<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n"
            "<|im_start|>assistant\nHello<|im_end|>\n<|im_start|>user\nHow?<|im_end|>\n"
            "<|im_start|>assistant\n",
        ),
        (
            "llama3",
            "<|start_header_id|>system<|end_header_id|>\n\nS<|eot_id|>"
            "<|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>"
            "<|start_header_id|>assistant<|end_header_id|>\n\nHello<|eot_id|>"
            "<|start_header_id|>user<|end_header_id|>\n\nHow?<|eot_id|>"
            "<|start_header_id|>assistant<|end_header_id|>\n\n",
        ),
        (
            "mistral-v7-tekken",
            "[SYSTEM_PROMPT]S[/SYSTEM_PROMPT][INST]Hi[/INST]Hello</s>[INST]How?[/INST]",
        ),
        (
            "mistral-v3-tekken",
            "[INST]S[/INST]Understood.</s>[INST]Hi[/INST]Hello</s>[INST]How?[/INST]",
        ),
    ],
)
def test_worked_renderings_of_the_reference(name: str, expected: str) -> None:
    assert render(CHAT, preset(name)).text == expected
    assert (GOLDEN / f"{name}.txt").read_text(encoding="utf-8") == expected


def test_every_preset_has_a_file_and_every_file_a_preset() -> None:
    folder = resources.files("chatgate.prompt").joinpath("presets")
    files = {p.name.removesuffix(".json") for p in folder.iterdir() if p.name.endswith(".json")}
    assert files == set(PRESET_NAMES)
    assert {p.stem for p in GOLDEN.glob("*.txt")} == set(PRESET_NAMES)


@pytest.mark.parametrize("name", PRESET_NAMES)
def test_no_preset_carries_a_bos(name: str) -> None:
    template = preset(name)
    assert template.name == name
    for field in fields(InstructTemplate):
        value = getattr(template, field.name)
        if isinstance(value, str):
            assert "<|begin_of_text|>" not in value
            assert "<s>" not in value, field.name


def test_deepseek_tokens_are_the_fullwidth_characters() -> None:
    template = preset("deepseek-v2.5")
    assert template.input_sequence == "<\uff5cUser\uff5c>"
    assert template.output_suffix == "<\uff5cend\u2581of\u2581sentence\uff5c>"


def test_an_unknown_preset_lists_the_known_ones() -> None:
    with pytest.raises(ConfigError, match="unknown instruct template 'chatml2'") as caught:
        preset("chatml2")
    assert all(name in caught.value.message for name in PRESET_NAMES)


@pytest.mark.parametrize(
    ("name", "stops"),
    [
        (
            "chatml",
            ["<|im_end|>", "\n<|im_start|>user", "\n<|im_start|>assistant", "\n<|im_start|>system"],
        ),
        (
            "llama3",
            [
                "<|eot_id|>",
                "<|start_header_id|>user<|end_header_id|>",
                "<|start_header_id|>assistant<|end_header_id|>",
                "<|start_header_id|>system<|end_header_id|>",
            ],
        ),
        ("alpaca", ["\n### Instruction:", "\n### Response:", "\n### Input:"]),
        ("vicuna", ["USER: ", "ASSISTANT: "]),
        # Its output sequence is a lone space: blank, so no stop string.
        ("mistral-v7", ["</s>", "[INST] ", "[SYSTEM_PROMPT] "]),
        # The last output sequence is a line of its own; duplicates are dropped.
        ("mistral-v2v3", ["[INST] ", "[/INST] ", "[/INST]"]),
        # system_same_as_user: the system sequence in the file is never written, nor a stop.
        ("gemma2", ["<end_of_turn>", "\n<start_of_turn>user", "\n<start_of_turn>model"]),
    ],
)
def test_stop_strings(name: str, stops: list[str]) -> None:
    assert render(CHAT, preset(name)).stop == stops
    assert stop_strings(preset(name)) == stops


def test_stop_strings_without_the_sequences() -> None:
    template = replace(preset("chatml"), sequences_as_stop_strings=False)
    assert stop_strings(template) == ["<|im_end|>"]
    assert stop_strings(replace(template, stop_sequence="")) == []


def test_stop_strings_are_deduplicated_in_order() -> None:
    template = replace(PLAIN, stop_sequence="<u>", first_input_sequence="<u>\n<a>")
    assert stop_strings(template) == ["<u>", "<a>", "<s>"]


NAMED = [
    msg("user", "hi", name="Ann"),
    msg("assistant", "yo", name="Bot"),
    msg("user", "plain"),
    msg("assistant", "plain"),
]


@pytest.mark.parametrize(
    ("behavior", "expected"),
    [
        ("always", "<u>Ann: hi</u><a>Bot: yo</a><u>plain</u><a>plain</a><a>"),
        ("force", "<u>hi</u><a>Bot: yo</a><u>plain</u><a>plain</a><a>"),
        ("none", "<u>hi</u><a>yo</a><u>plain</u><a>plain</a><a>"),
    ],
)
def test_names_behaviors(behavior: Any, expected: str) -> None:
    template = replace(PLAIN, names_behavior=behavior)
    assert render(NAMED, template).text == expected


def test_a_name_already_in_the_text_is_not_repeated() -> None:
    messages = [msg("assistant", "Bot: yo", name="Bot")]
    assert render(messages, replace(PLAIN, names_behavior="always")).text == "<a>Bot: yo</a><a>"


ALIGN = (
    "Let's get started. Please respond based on the information and instructions provided above."
)


@pytest.mark.parametrize(
    ("messages", "expected"),
    [
        (
            [msg("system", "S"), msg("assistant", "Hello"), msg("user", "Hi")],
            f"[INST]S[/INST]Understood.</s>[INST]{ALIGN}[/INST]Hello</s>[INST]Hi[/INST]",
        ),
        ([msg("system", "S")], f"[INST]S[/INST]Understood.</s>[INST]{ALIGN}[/INST]"),
        ([msg("system", "S"), msg("user", "Hi")], "[INST]S[/INST]Understood.</s>[INST]Hi[/INST]"),
        ([msg("assistant", "Hello")], f"[INST]{ALIGN}[/INST]Hello</s>[/INST]"),
    ],
)
def test_the_alignment_message_opens_a_chat_that_does_not_start_with_the_user(
    messages: list[Message], expected: str
) -> None:
    assert render(messages, preset("mistral-v3-tekken")).text == expected


def test_no_alignment_message_without_one_in_the_template() -> None:
    text = render([msg("assistant", "Hello")], preset("chatml")).text
    assert text == "<|im_start|>assistant\nHello<|im_end|>\n<|im_start|>assistant\n"


@pytest.mark.parametrize(
    ("name", "expected_end"),
    [
        ("chatml", "<|im_start|>user\nHow?<|im_end|>\n<|im_start|>assistant\nSure, "),
        ("mistral-v2v3", "[INST] How?[/INST]Sure, "),
        ("llama3", "How?<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\nSure, "),
    ],
)
def test_continue_last_leaves_the_final_assistant_message_open(
    name: str, expected_end: str
) -> None:
    text = render([*CHAT, msg("assistant", "Sure, ")], preset(name), continue_last=True).text
    assert text.endswith(expected_end)


def test_continue_last_needs_a_final_assistant_message() -> None:
    with pytest.raises(InvalidRequestError, match="final assistant message"):
        render(CHAT, preset("chatml"), continue_last=True)


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("chatml", "<|im_start|>user\nHi<|im_end|>\n<|im_start|>system\nLater<|im_end|>\n"),
        ("gemma2", "<start_of_turn>user\nHi<end_of_turn>\n<start_of_turn>user\nLater<end_of_turn>"),
    ],
)
def test_a_later_system_message_uses_the_system_or_the_user_sequences(
    name: str, expected: str
) -> None:
    messages = [msg("user", "Hi"), msg("developer", "Later")]
    assert render(messages, preset(name)).text.startswith(expected)


def test_leading_system_and_developer_messages_form_one_system_part() -> None:
    messages = [msg("system", "A"), msg("developer", "B"), msg("user", "Hi")]
    assert render(messages, PLAIN).text == "<s>A\n\nB</s><u>Hi</u><a>"


def test_without_story_string_wrappers_the_system_part_uses_the_user_sequences() -> None:
    template = replace(PLAIN, system_same_as_user=True)
    assert render([msg("system", "S"), msg("user", "Hi")], template).text == (
        "<u>S</u><u>Hi</u><a>"
    )


def test_first_and_last_sequences() -> None:
    template = replace(
        PLAIN,
        first_input_sequence="<u1>",
        last_input_sequence="<uN>",
        first_output_sequence="<a1>",
        last_output_sequence="<aN>",
    )
    user_first = [msg("user", "1"), msg("assistant", "2"), msg("user", "3"), msg("user", "4")]
    assert render(user_first, template).text == "<u1>1</u><a>2</a><u>3</u><uN>4</u><aN>"
    assistant_first = [msg("assistant", "1"), msg("user", "2")]
    assert render(assistant_first, template).text == "<a1>1</a><uN>2</u><aN>"


def test_wrap_puts_sequences_on_their_own_lines() -> None:
    template = replace(PLAIN, wrap=True, input_suffix="", output_suffix="")
    text = render([msg("user", "Hi"), msg("assistant", "Yo")], template).text
    assert text == "<u>\nHi\n<a>\nYo\n<a>\n"


def test_tool_calls_and_results_become_text() -> None:
    call = {"id": "call_1", "type": "function", "function": {"name": "f", "arguments": "{}"}}
    messages = [
        msg("user", "Go"),
        msg("assistant", "Calling.", tool_calls=[call]),
        msg("tool", "42", tool_call_id="call_1"),
        msg("assistant", None, tool_calls=[call]),
    ]
    text = render(messages, PLAIN).text
    calls = '[{"id":"call_1","type":"function","function":{"name":"f","arguments":"{}"}}]'
    assert text == (
        f"<u>Go</u><a>Calling.\n{calls}</a><u>Tool result (call_1): 42</u><a>{calls}</a><a>"
    )


def test_text_parts_are_joined() -> None:
    parts = [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]
    assert render([msg("user", parts)], PLAIN).text == "<u>a\n\nb</u><a>"


@pytest.mark.parametrize(
    "part",
    [
        {"type": "image_url", "image_url": {"url": "https://example.com/a.png"}},
        {"type": "input_audio", "input_audio": {"data": "AAAA", "format": "wav"}},
    ],
)
def test_media_content_is_refused(part: dict[str, Any]) -> None:
    with pytest.raises(InvalidRequestError, match="take text only") as caught:
        render([msg("user", [{"type": "text", "text": "look"}, part])], PLAIN)
    assert (caught.value.param, caught.value.code, caught.value.status) == (
        "messages",
        "unsupported_content",
        400,
    )


@pytest.mark.parametrize("name", PRESET_NAMES)
def test_each_preset_file_round_trips_through_load_template(name: str) -> None:
    path = resources.files("chatgate.prompt").joinpath("presets", f"{name}.json")
    assert load_template(json.loads(path.read_text(encoding="utf-8"))) == preset(name)


@pytest.mark.parametrize(
    ("data", "field", "expected"),
    [
        ({"name": "a", "separator_sequence": "\n"}, "output_suffix", "\n"),
        ({"name": "a", "separator_sequence": "x", "output_suffix": "y"}, "output_suffix", "y"),
        ({"name": "a", "names": True}, "names_behavior", "always"),
        ({"name": "a", "names": False}, "names_behavior", "force"),
        ({"name": "a", "names": False, "names_force_groups": False}, "names_behavior", "none"),
        ({"name": "a", "names": True, "names_behavior": "none"}, "names_behavior", "none"),
        ({"name": "a"}, "names_behavior", "force"),
        ({"name": "a"}, "sequences_as_stop_strings", True),
        ({}, "name", "custom"),
        (
            {"name": "a", "enabled": True, "activation_regex": "", "macro": True, "new": 1},
            "name",
            "a",
        ),
        ({"name": "a", "macro": False, "input_sequence": "{{user}}"}, "input_sequence", "{{user}}"),
    ],
)
def test_load_template_migrates_and_ignores(
    data: dict[str, Any], field: str, expected: Any
) -> None:
    assert getattr(load_template(data), field) == expected


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"name": 3}, "'name' must be a string, not int"),
        ({"name": "a", "wrap": "yes"}, "'wrap' must be true or false, not str"),
        ({"name": "a", "input_sequence": None}, "'input_sequence' must be a string"),
        ({"name": "a", "sequences_as_stop_strings": 1}, "'sequences_as_stop_strings' must be"),
        ({"name": "a", "names_behavior": "sometimes"}, "'names_behavior' must be one of"),
        ({"name": "a", "separator_sequence": 1}, "'separator_sequence' must be a string"),
        ({"name": "a", "names": "yes"}, "'names' must be true or false"),
        ({"name": "a", "input_sequence": "<|im_start|>{{user}}"}, "'input_sequence' uses a macro"),
    ],
)
def test_load_template_refuses_wrong_types(data: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("|", r"\|")):
        load_template(data)


def test_load_template_refuses_a_non_object() -> None:
    with pytest.raises(ConfigError, match="JSON object"):
        load_template(["chatml"])  # type: ignore[arg-type]


def test_an_old_sillytavern_chatml_preset_renders_like_the_bundled_one() -> None:
    # The 1.12 format: no story string wrappers, names always, a separator sequence.
    old = {
        "name": "ChatML",
        "system_prompt": "You are a helpful assistant.",
        "input_sequence": "<|im_start|>user",
        "output_sequence": "<|im_start|>assistant",
        "system_sequence": "<|im_start|>system",
        "stop_sequence": "<|im_end|>",
        "separator_sequence": "<|im_end|>\n",
        "input_suffix": "<|im_end|>\n",
        "system_suffix": "<|im_end|>\n",
        "wrap": True,
        "macro": True,
        "names": False,
        "names_force_groups": True,
        "activation_regex": "",
        "system_sequence_prefix": "",
        "system_sequence_suffix": "",
        "first_output_sequence": "",
        "skip_examples": False,
    }
    assert render(CHAT, load_template(old)).text == render(CHAT, preset("chatml")).text


# Snippets of real chat templates, one file a preset (templates/guess-<id>.jinja), plus
# the whole stored templates of test_chat_template_hf.py.
TEMPLATES = Path(__file__).parent / "templates"
GUESSES = [
    ("guess-chatml", "chatml", "<|im_start|>"),
    ("guess-llama3", "llama3", "<|start_header_id|>"),
    ("guess-mistral-v7-tekken", "mistral-v7-tekken", "[SYSTEM_PROMPT]"),
    ("guess-mistral-v7", "mistral-v7", "[SYSTEM_PROMPT] "),
    ("guess-mistral-v3-tekken", "mistral-v3-tekken", "never '[INST] '"),
    ("guess-mistral-v2v3", "mistral-v2v3", "[INST] "),
    ("guess-llama2", "llama2", "<<SYS>>"),
    ("guess-gemma2", "gemma2", "<start_of_turn>"),
    ("guess-phi3", "phi3", "'<|user|>' and '<|end|>'"),
    ("guess-command-r", "command-r", "<|START_OF_TURN_TOKEN|>"),
    ("guess-deepseek-v2.5", "deepseek-v2.5", "<｜User｜>"),
    ("guess-glm4", "glm4", "[gMASK]<sop>"),
    ("guess-alpaca", "alpaca", "### Instruction:"),
    ("guess-vicuna", "vicuna", "'USER:' and 'ASSISTANT:'"),
    ("gemma2", "gemma2", "<start_of_turn>"),
    ("qwen2.5", "chatml", "<|im_start|>"),
    ("llama3.1", "llama3", "<|start_header_id|>"),
    ("mistral-v0.3", "mistral-v2v3", "[INST] "),
]


@pytest.mark.parametrize(("file", "name", "telltale"), GUESSES)
def test_guess_names_the_preset_and_the_telltale(file: str, name: str, telltale: str) -> None:
    found = guess((TEMPLATES / f"{file}.jinja").read_text(encoding="utf-8"))
    assert found is not None
    assert found[0] == name
    assert telltale in found[1]


def test_guess_finds_nothing_in_a_plain_template() -> None:
    assert guess("{% for m in messages %}{{ m.role }}: {{ m.content }}\n{% endfor %}") is None
