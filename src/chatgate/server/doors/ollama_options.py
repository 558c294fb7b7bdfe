"""Ollama's ``options`` as chatgate's request fields.

Ollama checks the type of each option it knows (``option "x" must be of type
integer``), truncates a number given to an integer option, skips a null, and ignores an
option it does not know with a warning in its log. This door does the same, and then:

- the sampling options every text backend shares go to chatgate's fields
  (`MAPPED`; ``repeat_penalty`` is ``repetition_penalty``, ``min_p`` stays ``min_p``,
  the concepts of `chatgate.adapters.text_base.Samplers`), which each backend honours
  or refuses as it does on every door;
- the options about loading and running the model (`RUNNER`: ``num_ctx``, ``num_gpu``…)
  go to an Ollama connection, whose server has them; elsewhere they say nothing about
  the answer and are ignored (a hosted model's context is its provider's);
- ``typical_p`` and ``repeat_last_n``, samplers without a chatgate name, pass under
  their own names: the Ollama and llama.cpp backends take them, the others refuse them
  (or drop them under ``drop_params``), unless they are at the value that changes
  nothing (`NEUTRAL`);
- everything else, the options Ollama itself no longer reads (``mirostat``, ``tfs_z``,
  ``penalize_newline``, ``low_vram``…) among them, is ignored with a warning, as Ollama
  does.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any, TypeVar

from chatgate.errors import ChatgateError, InvalidRequestError
from chatgate.model_info import OLLAMA_OPTIONS as OPTION_NATIVES
from chatgate.validation import INT64_MAX, INT64_MIN

log = logging.getLogger("chatgate.server")
E = TypeVar("E", bound=ChatgateError)

INTEGER, FLOAT, BOOLEAN, STRINGS = "integer", "float", "boolean", "array of strings"
# Ollama's option → chatgate's request field.
MAPPED = {
    "num_predict": "max_tokens",
    "temperature": "temperature",
    "top_p": "top_p",
    "top_k": "top_k",
    "min_p": "min_p",
    "seed": "seed",
    "stop": "stop",
    "repeat_penalty": "repetition_penalty",
    "presence_penalty": "presence_penalty",
    "frequency_penalty": "frequency_penalty",
}
RUNNER = frozenset(
    {"num_ctx", "num_batch", "num_gpu", "main_gpu", "use_mmap", "num_thread", "num_keep",
     "draft_num_predict"}
)  # fmt: skip
SAMPLERS = frozenset({"typical_p", "repeat_last_n"})
# Values at which an option changes nothing (Ollama's own defaults).
NEUTRAL: dict[str, float] = {"typical_p": 1.0}
TYPES: dict[str, str] = {
    **dict.fromkeys(
        ("num_predict", "top_k", "seed", "repeat_last_n", "num_ctx", "num_batch", "num_gpu",
         "main_gpu", "num_thread", "num_keep", "draft_num_predict"),
        INTEGER,
    ),
    **dict.fromkeys(
        ("temperature", "top_p", "min_p", "typical_p", "repeat_penalty", "presence_penalty",
         "frequency_penalty"),
        FLOAT,
    ),
    "use_mmap": BOOLEAN,
    "stop": STRINGS,
}  # fmt: skip
# The request field chatgate names in an error → what the Ollama client wrote.
ORIGINS = {
    **{field: f"options.{option}" for option, field in MAPPED.items() if option != field},
    **{field: f"options.{field}" for option, field in MAPPED.items() if option == field},
    "response_format": "format",
    "reasoning_effort": "think",
}


def _typed(name: str, value: Any, kind: str) -> Any:
    """*value* as option *name*'s type, as Ollama converts it; a 400 when it cannot be."""
    if kind == INTEGER and isinstance(value, int | float) and not isinstance(value, bool):
        number = int(value)
        if not INT64_MIN <= number <= INT64_MAX:
            raise InvalidRequestError(
                f'option "{name}" is out of range: it must fit a 64-bit integer',
                param=f"options.{name}",
            )
        return number
    if kind == FLOAT and isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if kind == BOOLEAN and isinstance(value, bool):
        return value
    if kind == STRINGS:
        if isinstance(value, str):  # one stop string, as a list of one
            return [value]
        if isinstance(value, list) and all(isinstance(s, str) for s in value):
            return value
    raise InvalidRequestError(
        f'option "{name}" must be of type {kind}', param=f"options.{name}", code="invalid_type"
    )


def _mapped(option: str, value: Any) -> Any:
    """A mapped option's value in chatgate's terms; None where it means "unset"."""
    if option == "num_predict" and value <= 0:
        return None  # -1 is "no limit", -2 "fill the context": chatgate's default
    if option == "seed" and value < 0:
        return None  # -1 is "a random seed", as no seed is
    return value


def request_fields(options: Any, *, to_ollama: bool) -> dict[str, Any]:
    """The request fields *options* set; *to_ollama* when the model is on an Ollama
    connection, which takes Ollama's own options as they are."""
    if options is None:
        return {}
    if not isinstance(options, Mapping):
        raise InvalidRequestError("options must be an object", param="options", code="invalid_type")
    fields: dict[str, Any] = {}
    ignored: list[str] = []
    for name, raw in options.items():
        kind = TYPES.get(name)
        if kind is None or raw is None:
            if kind is None:
                ignored.append(name)
            continue
        value = _typed(name, raw, kind)
        if name in MAPPED:
            mapped = _mapped(name, value)
            if mapped is not None:
                fields[MAPPED[name]] = mapped
        elif (to_ollama and name in OPTION_NATIVES) or (
            name in SAMPLERS and NEUTRAL.get(name) != value
        ):
            fields[name] = value
        elif name not in RUNNER and name not in SAMPLERS:
            ignored.append(name)
    if ignored:
        # Quoted and cut short: the names are the client's, and a log line is not.
        shown = ", ".join(repr(name[:40]) for name in sorted(ignored)[:20])
        log.warning("ollama door: options ignored: %s", shown)
    return fields


def with_origin(exc: E) -> E:
    """*exc* naming the field as the Ollama client wrote it, where the two differ."""
    origin = ORIGINS.get(exc.param or "")
    if origin is not None and exc.param is not None:
        exc.message = exc.message.replace(f"'{exc.param}'", f"'{origin}'")
        exc.param = origin
    return exc
