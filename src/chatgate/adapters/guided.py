"""Guided decoding (``guided_json``, ``guided_choice``, ``guided_regex``,
``guided_grammar``) for remote connections: enforced natively where the backend can,
checked by chatgate where it cannot.

- A vLLM connection (``vllm_guided``) gets the constraint in vLLM's own form:
  ``structured_outputs`` (vLLM 0.10.2 and later) or the legacy ``guided_*`` fields, which
  newer vLLM silently ignores, hence the per-connection choice.
- Every other source gets ``guided_json`` as a JSON-schema ``response_format``, which each
  adapter translates natively (OpenAI's ``json_schema``, Gemini's ``responseSchema``,
  Claude's forced tool, Cohere's ``json_schema``), and ``guided_choice`` as a schema of
  one enum property whose value becomes the answer.
- ``guided_regex`` has no native form outside vLLM: the answer is checked with
  ``re.fullmatch``. ``guided_grammar`` needs vLLM or the embedded engine.

Every answer is checked, and one that fails is asked for again up to the connection's
``guided_retries``; after that the request fails with a 502. An output that did not
keep its constraint is never returned as if it had. See ``docs/api-v4.md``.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import orjson

from chatgate.config import Connection
from chatgate.errors import InvalidRequestError, UpstreamError
from chatgate.extensions import GUIDED_FIELDS
from chatgate.types import ChatRequest

CHOICE_KEY = "choice"


@dataclass(frozen=True, slots=True)
class GuidedPlan:
    """What to send, how to check (and unwrap) each answer, and whether a stream must be
    held back until it is checked."""

    request: ChatRequest
    check: Callable[[str], str] | None = None
    buffered: bool = False


def plan(request: ChatRequest, connection: Connection) -> GuidedPlan:
    """The plan for *request* on *connection* (the request unchanged when unguided)."""
    if request.model_fields_set.isdisjoint(GUIDED_FIELDS) or not any(
        getattr(request, name) is not None for name in GUIDED_FIELDS
    ):
        return GuidedPlan(request)
    kind = request.output_constraint()
    if kind == "response_format":  # not guided: the hints below are all it sets
        kind = None
    check = _checker(request)
    if connection.vllm_guided == "legacy":
        return GuidedPlan(request, check)  # the guided_* fields pass through as they are
    if connection.vllm_guided == "structured_outputs":
        outputs = _structured_outputs(request)
        return GuidedPlan(_rebuild(request, {"structured_outputs": outputs}), check)
    for hint in ("guided_decoding_backend", "guided_whitespace_pattern"):
        if getattr(request, hint) is not None and not connection.drop_params:
            raise InvalidRequestError(
                f"'{hint}' is a vLLM setting; connection '{connection.name}' is not a vLLM "
                "connection (vllm_guided unset), so it cannot be honoured",
                param=hint,
            )
    if kind == "guided_grammar":
        raise InvalidRequestError(
            f"guided_grammar needs a vLLM connection or the embedded engine; connection "
            f"'{connection.name}' cannot enforce or check a grammar",
            param="guided_grammar",
        )
    if kind == "guided_json":
        fmt = _schema_format("guided_json", request.guided_json or {})
        return GuidedPlan(_rebuild(request, {"response_format": fmt}), check)
    if kind == "guided_choice":
        schema = {
            "type": "object",
            "properties": {CHOICE_KEY: {"type": "string", "enum": request.guided_choice}},
            "required": [CHOICE_KEY],
            "additionalProperties": False,
        }
        fmt = _schema_format("guided_choice", schema)
        return GuidedPlan(_rebuild(request, {"response_format": fmt}), check, buffered=True)
    return GuidedPlan(_rebuild(request, {}), check, buffered=kind is not None)


def _schema_format(name: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"type": "json_schema", "json_schema": {"name": name, "schema": schema}}


def _rebuild(request: ChatRequest, updates: dict[str, Any]) -> ChatRequest:
    """*request* without its ``guided_*`` fields, with *updates*."""
    return request.without(*GUIDED_FIELDS, **updates)


def _structured_outputs(request: ChatRequest) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for ours, theirs in (
        ("guided_json", "json"),
        ("guided_regex", "regex"),
        ("guided_choice", "choice"),
        ("guided_grammar", "grammar"),
        ("guided_whitespace_pattern", "whitespace_pattern"),
    ):
        value = getattr(request, ours)
        if value is not None:
            out[theirs] = value
    return out


def _checker(request: ChatRequest) -> Callable[[str], str] | None:
    if request.guided_json is not None:
        return _json_check(orjson.dumps(request.guided_json, option=orjson.OPT_SORT_KEYS))
    if request.guided_choice is not None:
        choices = tuple(request.guided_choice)
        return lambda text: _choice_check(text, choices)
    if request.guided_regex is not None:
        pattern = _compile(request.guided_regex)
        return lambda text: _regex_check(text, pattern)
    return None


def _compile(pattern: str) -> re.Pattern[str]:
    try:
        return re.compile(pattern)
    except re.error as exc:
        raise InvalidRequestError(
            f"guided_regex is not a valid regex: {exc}", param="guided_regex"
        ) from None


def _broken(message: str) -> UpstreamError:
    return UpstreamError(message, code="invalid_model_output")


@lru_cache(maxsize=64)
def _validator(schema_json: bytes) -> Any:
    import jsonschema

    schema = orjson.loads(schema_json)
    try:
        jsonschema.validators.validator_for(schema).check_schema(schema)
    except jsonschema.exceptions.SchemaError as exc:
        raise InvalidRequestError(
            f"guided_json is not a valid JSON schema: {exc.message}", param="guided_json"
        ) from None
    return jsonschema.validators.validator_for(schema)(schema)


def _json_check(schema_json: bytes) -> Callable[[str], str]:
    validator = _validator(schema_json)  # a bad schema is a 400 before anything is sent

    def check(text: str) -> str:
        try:
            value = orjson.loads(text)
        except orjson.JSONDecodeError:
            raise _broken("the model's output is not valid JSON") from None
        import jsonschema

        error = jsonschema.exceptions.best_match(validator.iter_errors(value))
        if error is not None:
            raise _broken(f"the model's output does not match guided_json: {error.message}")
        return text

    return check


def _choice_check(text: str, choices: tuple[str, ...]) -> str:
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError:
        value = text  # a vLLM server answers with the bare choice
    if isinstance(value, dict):
        value = value.get(CHOICE_KEY)
    if value not in choices:
        raise _broken(f"the model's output {str(value)[:80]!r} is not one of guided_choice")
    return str(value)


def _regex_check(text: str, pattern: re.Pattern[str]) -> str:
    if pattern.fullmatch(text) is None:
        raise _broken(f"the model's output {text[:80]!r} does not match guided_regex")
    return text
