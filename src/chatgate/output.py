"""Output constraints: what a request demands of the model's output, and the one check
of what came out.

A request constrains its output with one of ``guided_json``, ``guided_choice``,
``guided_regex``, ``guided_grammar`` or a JSON ``response_format``. `contract_for` turns
that field into an `OutputContract` once, when the request is planned: an invalid JSON
Schema or regex is a 400 then, before anything is sent. Each backend enforces the
contract its own way (the embedded engine with a grammar, vLLM natively, other providers
through their JSON-schema mode) and the finished output is checked here with
`OutputContract.check`, the same rule for every backend.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from functools import lru_cache
from typing import Any, Literal

import orjson

from chatgate.errors import InvalidRequestError, UpstreamError
from chatgate.types import ChatRequest, JSONObjectFormat, JSONSchemaFormat

# The property a choice is wrapped in where a provider can only be asked for a JSON
# object (``{"choice": ...}``); the check unwraps it.
CHOICE_KEY = "choice"

Kind = Literal["json", "schema", "choice", "regex", "grammar"]


@dataclass(frozen=True, slots=True)
class OutputContract:
    """What the output must be, and the field that asked for it.

    ``grammar`` is the GBNF grammar that enforces the contract on the embedded engine,
    set when a request is planned for it.
    """

    kind: Kind
    param: str
    schema: dict[str, Any] | None = None
    choices: tuple[str, ...] = ()
    pattern: str | None = None
    grammar: str | None = None

    def with_grammar(self, grammar: str) -> OutputContract:
        """This contract, enforced by *grammar*."""
        return replace(self, grammar=grammar)

    def engine_fields(self) -> dict[str, Any]:
        """The fields of an engine request that enforce this contract."""
        if self.grammar is None:
            raise AssertionError("an engine contract is planned with its grammar")
        return {"grammar": self.grammar}

    def check(self, text: str) -> str:
        """The output to return for *text* (a wrapped choice unwrapped); an
        `UpstreamError` ``invalid_model_output`` unless *text* keeps the contract."""
        if self.kind == "choice":
            return _choice(text, self.choices)
        if self.kind == "regex":
            if self.pattern is None or _compiled(self.pattern).fullmatch(text) is None:
                raise broken(f"the model's output {text[:80]!r} does not match guided_regex")
            return text
        if self.kind == "grammar":
            return text  # the grammar itself is the contract, enforced while sampling
        try:
            value = orjson.loads(text)
        except orjson.JSONDecodeError as exc:
            raise broken(
                f"the model's output is not valid JSON ({exc}); raise max_tokens "
                "if it was cut short"
            ) from None
        if self.schema is None:
            if not isinstance(value, dict):
                raise broken("the model's output is not a JSON object")
            return text
        import jsonschema

        error = jsonschema.exceptions.best_match(
            _validator(schema_key(self.schema)).iter_errors(value)
        )
        if error is not None:
            raise broken(
                f"the model's output does not match the schema of {self.param}: {error.message}"
            )
        return text


def broken(message: str) -> UpstreamError:
    """The error of an output that broke its contract."""
    return UpstreamError(message, code="invalid_model_output")


def contract_for(request: ChatRequest) -> OutputContract | None:
    """The contract of *request*'s output constraint; None for free text. A schema or
    regex that is not valid is a 400 naming its field."""
    if request.output_constraint() is None:
        return None
    fmt = request.response_format
    if request.guided_json is not None:
        return OutputContract(
            "schema", "guided_json", schema=valid_schema(request.guided_json, "guided_json")
        )
    if request.guided_choice is not None:
        return OutputContract("choice", "guided_choice", choices=tuple(request.guided_choice))
    if request.guided_regex is not None:
        _compiled(request.guided_regex)
        return OutputContract("regex", "guided_regex", pattern=request.guided_regex)
    if request.guided_grammar is not None:
        return OutputContract("grammar", "guided_grammar", grammar=request.guided_grammar)
    if isinstance(fmt, JSONObjectFormat) and fmt.schema_ is not None:  # llama.cpp's form
        schema = valid_schema(fmt.schema_, "response_format.schema")
        return OutputContract("schema", "response_format", schema=schema)
    if isinstance(fmt, JSONObjectFormat):
        return OutputContract("json", "response_format")
    if isinstance(fmt, JSONSchemaFormat):
        param = "response_format.json_schema.schema"
        schema = valid_schema(fmt.json_schema.schema_ or {"type": "object"}, param)
        return OutputContract("schema", "response_format", schema=schema)
    raise AssertionError("unreachable: output_constraint named a field")


def schema_key(schema: dict[str, Any]) -> str:
    """A schema as a canonical string: the key of the caches below."""
    return orjson.dumps(schema, option=orjson.OPT_SORT_KEYS).decode()


def valid_schema(schema: dict[str, Any], param: str) -> dict[str, Any]:
    """*schema*, once it is valid JSON Schema (else a 400 naming *param*)."""
    _check_schema(schema_key(schema), param)
    return schema


def _choice(text: str, choices: tuple[str, ...]) -> str:
    if text in choices:
        return text
    try:
        value: Any = orjson.loads(text)
    except orjson.JSONDecodeError:
        value = text
    if isinstance(value, dict):
        value = value.get(CHOICE_KEY)
    if not isinstance(value, str) or value not in choices:
        raise broken(f"the model's output {text[:80]!r} is not one of guided_choice")
    return value


@lru_cache(maxsize=128)
def _compiled(pattern: str) -> re.Pattern[str]:
    try:
        return re.compile(pattern)
    except re.error as exc:
        raise InvalidRequestError(
            f"guided_regex is not a valid regex: {exc}", param="guided_regex"
        ) from None


@lru_cache(maxsize=128)
def _check_schema(schema_json: str, param: str) -> None:
    import jsonschema

    schema = orjson.loads(schema_json)
    try:
        jsonschema.validators.validator_for(schema).check_schema(schema)
    except jsonschema.exceptions.SchemaError as exc:
        raise InvalidRequestError(
            f"{param} is not a valid JSON schema: {exc.message}", param=param
        ) from None


@lru_cache(maxsize=128)
def _validator(schema_json: str) -> Any:
    import jsonschema

    schema = orjson.loads(schema_json)
    return jsonschema.validators.validator_for(schema)(schema)
