"""Render a Jinja chat template the way Hugging Face's ``apply_chat_template`` does.

The template comes from a GGUF file's ``tokenizer.chat_template`` (or, later, from a
request). It runs in Jinja2's immutable sandbox, so a template cannot reach Python
internals, with the same settings transformers uses: ``trim_blocks``,
``lstrip_blocks``, the ``loopcontrols`` extension, a ``tojson`` that does not escape
HTML, and the callables ``raise_exception`` and ``strftime_now``.

Whatever goes wrong inside a template (a syntax error, ``1/0``, a range too big for the
sandbox, endless recursion) is a `ChatTemplateError`, a 400: the template is the
client's code, so its failures are the client's. A request's own template is rendered
through `chatgate.prompt.template_runner`, in a process that can be killed.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from datetime import datetime
from functools import lru_cache
from typing import Any, NoReturn

from chatgate.errors import InvalidRequestError

MAX_ERROR_CHARS = 1000  # a template's error text is quoted to the client, clipped to this


class ChatTemplateError(InvalidRequestError):
    """The template refused the conversation or could not be rendered."""

    default_code = "chat_template_error"


def _clip(text: str) -> str:
    return text if len(text) <= MAX_ERROR_CHARS else text[:MAX_ERROR_CHARS] + "…"


def _describe(exc: BaseException) -> str:
    # str() of an exception raised by template code can itself fail (or be huge).
    try:
        detail = str(exc)
    except Exception:
        detail = ""
    name = type(exc).__name__
    return _clip(f"{name}: {detail}" if detail else name)


def _raise_exception(message: str) -> NoReturn:
    raise ChatTemplateError(_clip(f"the model's chat template refused the request: {message}"))


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
        raise ChatTemplateError(_clip(f"the chat template does not compile: {exc}")) from None
    except Exception as exc:  # e.g. RecursionError on deeply nested brackets
        raise ChatTemplateError(f"the chat template does not compile: {_describe(exc)}") from None


def render_chat_template(
    source: str,
    messages: Sequence[Mapping[str, Any]],
    *,
    bos_token: str = "",
    eos_token: str = "",
    add_generation_prompt: bool = True,
    tools: Sequence[Mapping[str, Any]] | None = None,
    documents: Sequence[Mapping[str, Any]] | None = None,
    extra: Mapping[str, Any] | None = None,
    param: str | None = None,
    max_chars: int | None = None,
) -> str:
    """Render *messages* with the template *source*; extra kwargs become variables.
    *tools* and *documents* are always defined, None when absent, as transformers passes
    them; *param* names the request field the template came from, for errors; more than
    *max_chars* characters of output is refused."""
    from jinja2 import TemplateError

    try:
        template = _compile(source)
    except ChatTemplateError as exc:
        exc.param = param
        raise
    variables: dict[str, Any] = {"tools": None, "documents": None, **(extra or {})}
    if tools is not None:
        variables["tools"] = list(tools)
    if documents is not None:
        variables["documents"] = list(documents)
    variables.update(
        messages=list(messages),
        bos_token=bos_token,
        eos_token=eos_token,
        add_generation_prompt=add_generation_prompt,
    )
    try:
        if max_chars is None:
            return str(template.render(**variables))
        return _bounded(template.generate(**variables), max_chars)
    except ChatTemplateError as exc:
        exc.param = param
        raise
    except TemplateError as exc:
        message = _clip(f"the chat template failed to render: {exc}")
        raise ChatTemplateError(message, param=param) from None
    except Exception as exc:  # 1/0, a range too big, recursion, MemoryError: all the template's
        message = f"the chat template failed to render: {_describe(exc)}"
        raise ChatTemplateError(message, param=param) from None


def _bounded(pieces: Iterator[str], max_chars: int) -> str:
    # Jinja yields the output piece by piece: stop at the limit rather than hold a
    # gigabyte that a loop would go on to produce.
    out: list[str] = []
    size = 0
    for piece in pieces:
        size += len(piece)
        if size > max_chars:
            raise ChatTemplateError(
                f"the chat template rendered more than {max_chars:,} characters"
            )
        out.append(piece)
    return "".join(out)
