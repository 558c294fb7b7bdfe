"""Render a Jinja chat template the way Hugging Face's ``apply_chat_template`` does.

The template comes from a GGUF file's ``tokenizer.chat_template`` (or, later, from a
request). It runs in Jinja2's immutable sandbox, so a template cannot reach Python
internals, with the same settings transformers uses: ``trim_blocks``,
``lstrip_blocks``, the ``loopcontrols`` extension, a ``tojson`` that does not escape
HTML, and the callables ``raise_exception`` and ``strftime_now``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import datetime
from functools import lru_cache
from typing import Any, NoReturn

from chatgate.errors import InvalidRequestError


class ChatTemplateError(InvalidRequestError):
    """The template refused the conversation or could not be rendered."""

    default_code = "chat_template_error"


def _raise_exception(message: str) -> NoReturn:
    raise ChatTemplateError(f"the model's chat template refused the request: {message}")


def _tojson(
    value: Any,
    indent: int | None = None,
    separators: tuple[str, str] | None = None,
    sort_keys: bool = False,
    ensure_ascii: bool = False,
) -> str:
    return json.dumps(
        value, indent=indent, separators=separators, sort_keys=sort_keys, ensure_ascii=ensure_ascii
    )


def _strftime_now(fmt: str) -> str:
    return datetime.now().strftime(fmt)


@lru_cache(maxsize=32)
def _compile(source: str) -> Any:
    from jinja2 import TemplateError
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    env = ImmutableSandboxedEnvironment(
        trim_blocks=True, lstrip_blocks=True, extensions=["jinja2.ext.loopcontrols"]
    )
    env.filters["tojson"] = _tojson
    env.globals["raise_exception"] = _raise_exception
    env.globals["strftime_now"] = _strftime_now
    try:
        return env.from_string(source)
    except TemplateError as exc:
        raise ChatTemplateError(f"the chat template does not compile: {exc}") from None


def render_chat_template(
    source: str,
    messages: Sequence[Mapping[str, Any]],
    *,
    bos_token: str = "",
    eos_token: str = "",
    add_generation_prompt: bool = True,
    extra: Mapping[str, Any] | None = None,
    param: str | None = None,
) -> str:
    """Render *messages* with the template *source*; extra kwargs become variables.
    *param* names the request field the template came from, for errors."""
    from jinja2 import TemplateError

    try:
        template = _compile(source)
    except ChatTemplateError as exc:
        exc.param = param
        raise
    variables: dict[str, Any] = dict(extra or {})
    variables.update(
        messages=list(messages),
        bos_token=bos_token,
        eos_token=eos_token,
        add_generation_prompt=add_generation_prompt,
    )
    try:
        return str(template.render(**variables))
    except ChatTemplateError as exc:
        exc.param = param
        raise
    except TemplateError as exc:
        raise ChatTemplateError(f"the chat template failed to render: {exc}", param=param) from None
