"""Which post-processing mode a request gets, and applying it to the request.

The mode is the request's ``prompt_post_processing``, else the connection's
``post_processing``, else the source's default. A source that demands a shape (its
catalogue row says ``post_processing_forced``) has its own mode applied after the chosen
one, so a client can ask for more than the source needs, never less. See
``docs/post-processing.md``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from chatgate.config import Connection, Settings
from chatgate.errors import InvalidRequestError
from chatgate.prompt.postprocess import Mode, keeps_tools, postprocess, tools_variant
from chatgate.sources import NameField, Source
from chatgate.types import ChatRequest, Message, NamesPolicy, TextPart

SetBy = Literal["request", "connection", "source"]


@dataclass(frozen=True, slots=True)
class Shaping:
    """The modes one request gets: the chosen one, where it came from, the forced one."""

    mode: Mode
    set_by: SetBy
    forced: Mode | None

    @property
    def applied(self) -> list[Mode]:
        """The modes that change anything, in the order they run."""
        modes = [m for m in (self.mode, self.forced) if m is not None and m != "none"]
        return list(dict.fromkeys(modes))

    def describe(self) -> dict[str, object]:
        """For the preview."""
        return {"mode": self.mode, "set_by": self.set_by, "forced": self.forced}


def choose(request: ChatRequest, connection: Connection, source: Source | None) -> Shaping:
    """The modes for *request* on *connection*; a 400 when they cannot keep its tools."""
    forced_by_source = source is not None and source.post_processing_forced
    mode: Mode
    set_by: SetBy
    if request.prompt_post_processing is not None:
        mode, set_by = request.prompt_post_processing, "request"
    elif connection.post_processing is not None:
        mode, set_by = connection.post_processing, "connection"
    else:
        default = source.post_processing if source is not None and not forced_by_source else None
        mode, set_by = default or "none", "source"
    has_tools = bool(request.tools)
    if has_tools and not keeps_tools(mode):
        where = "this request" if set_by == "request" else f"connection '{connection.name}'"
        raise InvalidRequestError(
            f"tool calling is not supported with prompt post-processing mode '{mode}' "
            f"(set by {where}): use '{tools_variant(mode)}', which keeps tool calls and "
            "results intact, or 'none'",
            param="prompt_post_processing" if set_by == "request" else "tools",
            code="unsupported_value",
        )
    forced: Mode | None = None
    if forced_by_source and source is not None and source.post_processing != "none":
        forced = source.post_processing
        if has_tools and not keeps_tools(forced):
            # The source needs the shape, the client needs its tools: keep both.
            forced = tools_variant(forced)
    return Shaping(mode, set_by, forced)


def shape(
    request: ChatRequest,
    shaping: Shaping,
    connection: Connection,
    settings: Settings,
    source: Source | None = None,
) -> ChatRequest:
    """*request* with its messages reshaped by every mode *shaping* applies, then each
    speaker name the source's wire cannot carry turned into a ``Name: `` prefix (or
    dropped, with ``names = "none"``): the one place names are handled."""
    names = connection.names or settings.names
    messages = request.messages
    for mode in shaping.applied:
        messages = postprocess(messages, mode, placeholder=settings.prompt_placeholder, names=names)
    field = source.name_field if source is not None else "all"
    if field != "all" and any(m.name for m in messages):
        messages = [_without_name(m, names) if _loses_name(m, field) else m for m in messages]
    if messages is request.messages:
        return request
    return request.model_copy(update={"messages": messages})


def _loses_name(message: Message, field: NameField) -> bool:
    return bool(message.name) and (field == "none" or message.role != "user")


def _without_name(message: Message, names: NamesPolicy) -> Message:
    """*message* without its name: as a prefix of its text, unless names are dropped."""
    if names == "none" or message.content is None:
        return message.model_copy(update={"name": None})
    prefix = f"{message.name}: "
    content = message.content
    if isinstance(content, str):
        text = content if content.startswith(prefix) else prefix + content
        return message.model_copy(update={"name": None, "content": text})
    parts = list(content)
    for index, part in enumerate(parts):
        if isinstance(part, TextPart):
            if not part.text.startswith(prefix):
                parts[index] = TextPart(type="text", text=prefix + part.text)
            break
    else:
        parts.insert(0, TextPart(type="text", text=prefix.rstrip()))
    return message.model_copy(update={"name": None, "content": parts})
