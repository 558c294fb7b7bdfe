"""Prompt post-processing: reshape a conversation for endpoints that restrict its shape.

Modes, from least to most restrictive (``docs/post-processing.md``):

- ``none``: untouched.
- ``merge``: consecutive messages of the same role become one.
- ``semi-strict``: merge, and only one system message, at the start; later system
  messages become user messages.
- ``strict``: semi-strict, and a user message comes first after the optional system
  message (the placeholder is inserted when there is none).
- ``single``: everything in one user message.

``merge``, ``semi-strict`` and ``strict`` have ``-tools`` variants that keep assistant
tool calls and tool results as they are and never merge across them. The plain modes
are for endpoints without tools: there, a tool call becomes a line of assistant text
and a tool result a user message, so nothing the conversation said is lost.

Fixed on purpose, compared with the reference implementation: an empty message never
splits a merge (no two same-role neighbours survive); merging never drops tool calls;
and names follow the ``names`` policy instead of always becoming prefixes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, cast, get_args

from chatgate.types import (
    ContentPart,
    Message,
    NamesPolicy,
    PostProcessingMode,
    TextPart,
    ToolCall,
)

Mode = PostProcessingMode
MODES: tuple[str, ...] = get_args(Mode)
DEFAULT_PLACEHOLDER = "[Start a new chat]"
SEPARATOR = "\n\n"
RESTRICTIVENESS = {"none": 0, "merge": 1, "semi-strict": 2, "strict": 3, "single": 4}


@dataclass(frozen=True, slots=True)
class Rules:
    """What a mode does, as flags."""

    merge: bool
    one_system: bool
    user_first: bool
    single: bool
    tools: bool


def rules(mode: Mode) -> Rules:
    """The flags of *mode*."""
    base = mode.removesuffix("-tools")
    level = RESTRICTIVENESS[base]
    return Rules(
        merge=level >= 1,
        one_system=level >= 2,
        user_first=base == "strict",
        single=base == "single",
        tools=mode.endswith("-tools"),
    )


def keeps_tools(mode: Mode) -> bool:
    """Whether requests with ``tools`` may use *mode*."""
    return mode == "none" or mode.endswith("-tools")


def tools_variant(mode: Mode) -> Mode:
    """The tools-keeping variant of *mode* (``single`` has none: it gives ``none``)."""
    if keeps_tools(mode):
        return mode
    return "none" if mode == "single" else cast(Mode, f"{mode}-tools")


@dataclass(slots=True)
class _Draft:
    """A message being built: role, ordered parts, tool calls, name, tool call id."""

    role: str
    parts: list[ContentPart]
    name: str | None = None
    tool_calls: list[ToolCall] | None = None
    tool_call_id: str | None = None

    @property
    def empty(self) -> bool:
        if self.role == "tool" or self.tool_calls:  # a result or a call is never empty
            return False
        return all(isinstance(p, TextPart) and not p.text for p in self.parts)


def postprocess(
    messages: list[Message],
    mode: Mode,
    *,
    placeholder: str = DEFAULT_PLACEHOLDER,
    names: NamesPolicy = "prefix",
) -> list[Message]:
    """Reshape *messages* for *mode*; a pure function (the input is not changed)."""
    if mode == "none":
        return list(messages)
    flags = rules(mode)
    calls_by_id = {c.id: c for m in messages for c in (m.tool_calls or [])}
    drafts = [_normalise(m, flags, names, calls_by_id) for m in messages]
    drafts = [d for d in drafts if not d.empty]  # empty messages never split a merge
    if flags.single:
        drafts = [_Draft("user", _join([d.parts for d in drafts]))] if drafts else []
    else:
        drafts = _merge(drafts, names)
        if flags.one_system:
            for draft in drafts[1:]:
                if draft.role == "system":
                    draft.role = "user"
            drafts = _merge(drafts, names)
        if flags.user_first:
            start = 1 if drafts and drafts[0].role == "system" else 0
            if len(drafts) == start or drafts[start].role != "user":
                drafts.insert(start, _Draft("user", [TextPart(type="text", text=placeholder)]))
    if not drafts:
        drafts = [_Draft("user", [TextPart(type="text", text=placeholder)])]
    return [_finish(d) for d in drafts]


def _normalise(
    message: Message, flags: Rules, names: NamesPolicy, calls: dict[str, ToolCall]
) -> _Draft:
    role = "system" if message.role == "developer" else message.role
    parts = _parts(message)
    draft = _Draft(role, parts, message.name, message.tool_calls, message.tool_call_id)
    if not flags.tools or flags.single:
        if draft.tool_calls:  # the call, as text the model can read
            lines = [
                f"[tool call {c.function.name}({c.function.arguments})]" for c in draft.tool_calls
            ]
            draft.parts = _join(
                [draft.parts, [TextPart(type="text", text="\n".join(lines))]], separator="\n"
            )
            draft.tool_calls = None
        if draft.role == "tool":
            called = calls.get(draft.tool_call_id or "")
            label = called.function.name if called else draft.tool_call_id
            draft.parts = _prefix(draft.parts, f"[tool result {label}] ")
            draft.role, draft.tool_call_id = "user", None
    if names == "none":
        draft.name = None
    elif draft.name and (names == "prefix" or flags.single):
        draft.parts = _prefix(draft.parts, f"{draft.name}: ")
        draft.name = None
    return draft


def _parts(message: Message) -> list[ContentPart]:
    if message.content is None:
        return []
    if isinstance(message.content, str):
        return [TextPart(type="text", text=message.content)] if message.content else []
    return [p for p in message.content if not (isinstance(p, TextPart) and not p.text)]


def _prefix(parts: list[ContentPart], prefix: str) -> list[ContentPart]:
    """*prefix* in front of the first text, unless it is there already."""
    if parts and isinstance(parts[0], TextPart):
        if parts[0].text.startswith(prefix):
            return parts
        return [TextPart(type="text", text=prefix + parts[0].text), *parts[1:]]
    return [TextPart(type="text", text=prefix.rstrip()), *parts]


def _join(groups: list[list[ContentPart]], separator: str = SEPARATOR) -> list[ContentPart]:
    """Concatenate part lists; neighbouring texts become one, joined by *separator*."""
    out: list[ContentPart] = []
    boundary = False
    for group in groups:
        for index, part in enumerate(group):
            last = out[-1] if out else None
            if isinstance(part, TextPart) and isinstance(last, TextPart):
                glue = separator if boundary and index == 0 else ""
                out[-1] = TextPart(type="text", text=last.text + glue + part.text)
            else:
                out.append(part)
        boundary = True
    return out


def _can_absorb(first: _Draft, second: _Draft) -> bool:
    """Whether *second* may be merged into *first* without losing or reordering."""
    return (
        first.role == second.role
        and first.role != "tool"
        and not first.tool_calls  # calls end a message: nothing may follow them in it
    )


def _merge(drafts: list[_Draft], names: NamesPolicy) -> list[_Draft]:
    out: list[_Draft] = []
    for draft in drafts:
        previous = out[-1] if out else None
        if previous is None or not _can_absorb(previous, draft):
            out.append(draft)
            continue
        if previous.name != draft.name:  # a merged message cannot carry two names
            if previous.name:
                previous.parts = _prefix(previous.parts, f"{previous.name}: ")
            if draft.name:
                draft.parts = _prefix(draft.parts, f"{draft.name}: ")
            previous.name = None
        previous.parts = _join([previous.parts, draft.parts])
        previous.tool_calls = draft.tool_calls
    return out


def _finish(draft: _Draft) -> Message:
    content: str | list[ContentPart] | None
    if all(isinstance(p, TextPart) for p in draft.parts):
        content = "".join(p.text for p in draft.parts if isinstance(p, TextPart))
    else:
        content = draft.parts
    if draft.tool_calls and content == "":
        content = None
    fields: dict[str, Any] = {"role": draft.role, "content": content}
    if draft.name:
        fields["name"] = draft.name
    if draft.tool_calls:
        fields["tool_calls"] = draft.tool_calls
    if draft.tool_call_id:
        fields["tool_call_id"] = draft.tool_call_id
    return Message.model_validate(fields)
