"""Turn a chat into one prompt string with an instruct template, for text-completion backends.

The template format is SillyTavern's instruct preset (its field names, so that a user's
preset file loads as it is); the bundled presets live in ``presets/<id>.json``. No preset
holds a BOS token: every backend we send text prompts to adds its own. See
``docs/instruct.md``.

Rendering, in short: the system and developer messages before the first other message
form the system part, wrapped in the story string prefix and suffix; every later message
gets the prefix and suffix of its role (tool results count as user turns); the prompt
ends with the reply opener, unless a final assistant message is continued.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from functools import cache
from importlib import resources
from typing import Any, Literal, get_args

import orjson

from chatgate.errors import ConfigError, InvalidRequestError
from chatgate.types import Message, RefusalPart, TextPart

NamesBehavior = Literal["none", "force", "always"]


@dataclass(frozen=True, slots=True)
class InstructTemplate:
    """An instruct template: SillyTavern's preset field set, under the same names."""

    name: str
    input_sequence: str = ""
    input_suffix: str = ""
    output_sequence: str = ""
    output_suffix: str = ""
    system_sequence: str = ""
    system_suffix: str = ""
    first_input_sequence: str = ""
    last_input_sequence: str = ""
    first_output_sequence: str = ""
    last_output_sequence: str = ""
    story_string_prefix: str = ""
    story_string_suffix: str = ""
    stop_sequence: str = ""
    sequences_as_stop_strings: bool = True
    user_alignment_message: str = ""
    wrap: bool = False
    names_behavior: NamesBehavior = "force"
    system_same_as_user: bool = False


@dataclass(frozen=True, slots=True)
class RenderedPrompt:
    """A rendered prompt, the stop strings its template implies, and the template's name."""

    text: str
    stop: list[str]
    template: str


PRESET_NAMES: tuple[str, ...] = (
    "chatml",
    "llama3",
    "mistral-v1",
    "mistral-v2v3",
    "mistral-v3-tekken",
    "mistral-v7",
    "mistral-v7-tekken",
    "alpaca",
    "vicuna",
    "gemma2",
    "phi3",
    "command-r",
    "deepseek-v2.5",
    "llama2",
    "glm4",
)

_FIELDS = {f.name: f for f in fields(InstructTemplate)}
_BOOL_FIELDS = frozenset(name for name, f in _FIELDS.items() if isinstance(f.default, bool))
_SEQUENCE_FIELDS = frozenset(_FIELDS) - _BOOL_FIELDS - {"name", "names_behavior"}
# SillyTavern writes these too; none of them changes how we render a chat (UI state,
# example dialogues, quiet prompts, model matching), so a file carrying them still loads.
_IGNORED_FIELDS = frozenset(
    {
        "enabled",
        "bind_to_context",
        "preset",
        "macro",
        "skip_examples",
        "activation_regex",
        "last_system_sequence",
        "system_sequence_prefix",
        "system_sequence_suffix",
        "system_prompt",
        "derived",
    }
)
_SEPARATOR = "\n\n"  # between the texts of the messages that make up the system part


def preset(name: str) -> InstructTemplate:
    """The bundled preset *name*; a `ConfigError` listing the known ids otherwise."""
    if name not in PRESET_NAMES:
        raise ConfigError(
            f"unknown instruct template '{name}'; the presets are: {', '.join(PRESET_NAMES)}"
        )
    return _load_preset(name)


@cache
def _load_preset(name: str) -> InstructTemplate:
    source = resources.files("chatgate.prompt").joinpath("presets", f"{name}.json")
    return load_template(json.loads(source.read_text(encoding="utf-8")))


def load_template(data: Mapping[str, Any]) -> InstructTemplate:
    """An instruct template from a SillyTavern preset's JSON, obsolete fields migrated."""
    if not isinstance(data, Mapping):
        raise ConfigError("an instruct template must be a JSON object")
    values = dict(data)
    _migrate(values)
    kwargs: dict[str, Any] = {}
    for key, value in values.items():
        if key not in _FIELDS:
            # Ignored (listed or not): a preset from a newer SillyTavern should still load.
            continue
        expected = bool if key in _BOOL_FIELDS else str
        if type(value) is not expected:
            wanted = "true or false" if expected is bool else "a string"
            raise ConfigError(
                f"instruct template field '{key}' must be {wanted}, not {type(value).__name__}"
            )
        kwargs[key] = value
    behavior = kwargs.get("names_behavior", "force")
    if behavior not in get_args(NamesBehavior):
        raise ConfigError(
            f"instruct template field 'names_behavior' must be one of "
            f"{', '.join(get_args(NamesBehavior))}, not '{behavior}'"
        )
    if values.get("macro") is not False:
        for key in sorted(_SEQUENCE_FIELDS & kwargs.keys()):
            if "{{" in kwargs[key]:
                # Sending a literal {{char}} to the model would be worse than refusing.
                raise ConfigError(
                    f"instruct template field '{key}' uses a macro ({kwargs[key]!r}); "
                    "chatgate does not substitute SillyTavern macros"
                )
    kwargs.setdefault("name", "custom")
    return InstructTemplate(**kwargs)


def _migrate(values: dict[str, Any]) -> None:
    """Rewrite the fields SillyTavern renamed into their current names, in place."""
    if "separator_sequence" in values:
        separator = values.pop("separator_sequence")
        if not isinstance(separator, str):
            raise ConfigError("instruct template field 'separator_sequence' must be a string")
        values.setdefault("output_suffix", separator)
    if "names" in values or "names_force_groups" in values:
        names = values.pop("names", False)
        force_groups = values.pop("names_force_groups", True)
        for key, value in (("names", names), ("names_force_groups", force_groups)):
            if not isinstance(value, bool):
                raise ConfigError(f"instruct template field '{key}' must be true or false")
        behavior = "always" if names else "force" if force_groups else "none"
        values.setdefault("names_behavior", behavior)


def stop_strings(template: InstructTemplate) -> list[str]:
    """The stop strings *template* implies: its stop sequence, then its sequences' lines."""
    stops = [template.stop_sequence] if template.stop_sequence else []
    if template.sequences_as_stop_strings:
        sequences = [
            template.input_sequence,
            template.output_sequence,
            template.first_input_sequence,
            template.last_input_sequence,
            template.first_output_sequence,
            template.last_output_sequence,
        ]
        if not template.system_same_as_user:  # else the system sequence is never written
            sequences.append(template.system_sequence)
        for sequence in sequences:
            for line in sequence.split("\n"):
                if line.strip():
                    stops.append("\n" + line if template.wrap else line)
    return list(dict.fromkeys(stops))


def render(
    messages: Sequence[Message], template: InstructTemplate, *, continue_last: bool = False
) -> RenderedPrompt:
    """*messages* as one prompt string ending with the reply opener (or, with
    *continue_last*, inside the final assistant message, left open for the model)."""
    t = template
    head = 0
    while head < len(messages) and messages[head].role in ("system", "developer"):
        head += 1
    chat = messages[head:]
    if continue_last and (not chat or chat[-1].role != "assistant"):
        raise InvalidRequestError(
            "only a final assistant message can be continued", param="messages"
        )
    pieces: list[str] = []
    if head:
        system = _SEPARATOR.join(_name(t, m) + _text(m) for m in messages[:head])
        if t.story_string_prefix or t.story_string_suffix:
            prefix, suffix = t.story_string_prefix, t.story_string_suffix
        else:
            prefix, suffix = _system_sequences(t)
        pieces.append(_turn(t, prefix, suffix, system))
    if t.user_alignment_message and (not chat or chat[0].role not in ("user", "tool")):
        # Templates such as Mistral's and Llama 2's break unless a user turn comes first.
        pieces.append(_turn(t, t.input_sequence, t.input_suffix, t.user_alignment_message))
    for index, message in enumerate(chat):
        first, last = index == 0, index == len(chat) - 1
        is_open = continue_last and last
        prefix, suffix = _sequences(t, message, first=first, last=last, is_open=is_open)
        text = _name(t, message) + _text(message)
        pieces.append(_turn(t, prefix, suffix, text, is_open=is_open))
    history = "".join(pieces)
    if continue_last:
        text = history
    elif t.wrap:
        # As SillyTavern does: the opener goes on its own line and ends with a newline.
        opener = (t.last_output_sequence or t.output_sequence).rstrip()
        text = "\n".join(p for p in (history.removesuffix("\n"), opener) if p) + "\n"
    else:
        text = history + (t.last_output_sequence or t.output_sequence)
    return RenderedPrompt(text=text, stop=stop_strings(t), template=t.name)


def _system_sequences(t: InstructTemplate) -> tuple[str, str]:
    if t.system_same_as_user:
        return t.input_sequence, t.input_suffix
    return t.system_sequence, t.system_suffix


def _sequences(
    t: InstructTemplate, message: Message, *, first: bool, last: bool, is_open: bool
) -> tuple[str, str]:
    """The prefix and suffix of one message of the conversation."""
    if message.role in ("system", "developer"):
        return _system_sequences(t)
    if message.role in ("user", "tool"):
        if last and t.last_input_sequence:
            return t.last_input_sequence, t.input_suffix
        if first and t.first_input_sequence:
            return t.first_input_sequence, t.input_suffix
        return t.input_sequence, t.input_suffix
    if is_open:
        return t.last_output_sequence or t.output_sequence, ""
    if first and t.first_output_sequence:
        return t.first_output_sequence, t.output_suffix
    return t.output_sequence, t.output_suffix


def _turn(
    t: InstructTemplate, prefix: str, suffix: str, text: str, *, is_open: bool = False
) -> str:
    if t.wrap and not suffix and not is_open:
        suffix = "\n"
    body = text + suffix
    if t.wrap:
        return "\n".join(p for p in (prefix, body) if p)
    return prefix + body


def _name(t: InstructTemplate, message: Message) -> str:
    """The ``Name: `` that goes before a message's text, or nothing."""
    if not message.name or message.role == "tool" or t.names_behavior == "none":
        return ""
    if t.names_behavior == "force" and message.role == "user":
        return ""
    prefix = f"{message.name}: "
    # A message that already went through the names policy may carry its prefix.
    content = message.content
    if isinstance(content, str) and content.startswith(prefix):
        return ""
    return prefix


def _text(message: Message) -> str:
    """A message's text; tool results and tool calls spelt out for a text-only model."""
    content = message.content
    pieces: list[str] = []
    if isinstance(content, str):
        pieces.append(content)
    elif content is not None:
        for part in content:
            if isinstance(part, TextPart):
                pieces.append(part.text)
            elif isinstance(part, RefusalPart):
                pieces.append(part.refusal)
            else:
                raise InvalidRequestError(
                    f"a message carries '{part.type}' content, but text-completion backends "
                    "take text only",
                    param="messages",
                    code="unsupported_content",
                )
    text = "\n\n".join(pieces)
    if message.role == "tool":
        return f"Tool result ({message.tool_call_id or message.name}): {text}"
    if message.tool_calls:
        calls = orjson.dumps([call.model_dump() for call in message.tool_calls]).decode()
        return f"{text}\n{calls}" if text else calls
    return text


# Telltale substrings of a model's Jinja chat template (must have, must not have), most
# specific first: a Llama 2 template also has "[INST] ", a GLM-4 template also "<|user|>".
_GUESSES: tuple[tuple[str, tuple[str, ...], tuple[str, ...]], ...] = (
    ("llama3", ("<|start_header_id|>",), ()),
    ("chatml", ("<|im_start|>",), ()),
    ("command-r", ("<|START_OF_TURN_TOKEN|>",), ()),
    ("gemma2", ("<start_of_turn>",), ()),
    ("deepseek-v2.5", ("<｜User｜>",), ()),
    ("glm4", ("[gMASK]<sop>",), ()),
    ("phi3", ("<|user|>", "<|end|>"), ()),
    ("llama2", ("[INST]", "<<SYS>>"), ()),
    ("mistral-v7", ("[SYSTEM_PROMPT] ",), ()),
    ("mistral-v7-tekken", ("[SYSTEM_PROMPT]",), ()),
    ("mistral-v2v3", ("[INST] ",), ()),
    ("mistral-v3-tekken", ("[INST]",), ("[INST] ",)),
    ("alpaca", ("### Instruction:",), ()),
    ("vicuna", ("USER:", "ASSISTANT:"), ()),
)


def guess(chat_template: str) -> tuple[str, str] | None:
    """The preset a model's Jinja chat template calls for, and why; None if none fits."""
    for name, present, absent in _GUESSES:
        if all(s in chat_template for s in present) and not any(s in chat_template for s in absent):
            reason = "the chat template contains " + " and ".join(repr(s) for s in present)
            if absent:
                reason += ", never " + " or ".join(repr(s) for s in absent)
            return name, reason
    return None
