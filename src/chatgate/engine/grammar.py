"""Output constraints as llama.cpp grammars, and the check of what came out.

A grammar makes the model unable to write anything outside the constraint:
``response_format`` (any JSON object, or JSON of a schema), ``guided_json``,
``guided_choice``, ``guided_regex`` and ``guided_grammar`` (GBNF, as llama.cpp reads it).
The JSON-Schema-to-GBNF converter covers a subset of JSON Schema (bounds on numbers, for
one, are not enforced), so every finished output is also checked — validated against
the schema, matched against the regex, looked up among the choices — before it is
returned; see `OutputContract.check`.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Literal

from chatgate.engine.regex_grammar import gbnf_string, regex_to_gbnf
from chatgate.errors import InvalidRequestError, UpstreamError
from chatgate.types import ChatRequest, JSONObjectFormat, JSONSchemaFormat


@dataclass(frozen=True, slots=True)
class OutputContract:
    """What the output must be, the grammar that makes it so, and the field that asked."""

    grammar: str
    kind: Literal["json", "schema", "choice", "regex", "grammar"]
    param: str
    schema: dict[str, Any] | None = None
    choices: tuple[str, ...] = ()
    pattern: str | None = None

    def check(self, text: str) -> None:
        """Raise `UpstreamError` unless *text* keeps the contract."""
        if self.kind == "choice":
            if text not in self.choices:
                raise _broken(f"the model's output {text[:80]!r} is not one of the choices")
            return
        if self.kind == "regex":
            if self.pattern is None or re.fullmatch(self.pattern, text) is None:
                raise _broken(f"the model's output {text[:80]!r} does not match guided_regex")
            return
        if self.kind == "grammar":
            return  # the grammar itself is the contract
        try:
            value = json.loads(text)
        except ValueError as exc:
            raise _broken(
                f"the model's output is not valid JSON ({exc}); raise max_tokens "
                "if it was cut short"
            ) from None
        if self.schema is None:
            if not isinstance(value, dict):
                raise _broken("the model's output is not a JSON object")
            return
        import jsonschema

        error = jsonschema.exceptions.best_match(_validator(_key(self.schema)).iter_errors(value))
        if error is not None:
            raise _broken(f"the model's output does not match the schema: {error.message}")


def _broken(message: str) -> UpstreamError:
    return UpstreamError(message, code="invalid_model_output")


def contract_for(request: ChatRequest) -> OutputContract | None:
    """The grammar and check for the request's constraint; None for free text."""
    if request.output_constraint() is None:
        return None
    fmt = request.response_format
    if request.guided_json is not None:
        schema = request.guided_json
        return OutputContract(
            _schema_grammar(_key(schema), "guided_json"), "schema", "guided_json", schema
        )
    if request.guided_choice is not None:
        choices = tuple(request.guided_choice)
        grammar = "root ::= " + " | ".join(gbnf_string(c) for c in choices) + "\n"
        return OutputContract(grammar, "choice", "guided_choice", choices=choices)
    if request.guided_regex is not None:
        pattern = request.guided_regex
        return OutputContract(regex_to_gbnf(pattern), "regex", "guided_regex", pattern=pattern)
    if request.guided_grammar is not None:
        return OutputContract(request.guided_grammar, "grammar", "guided_grammar")
    if isinstance(fmt, JSONObjectFormat):
        return OutputContract(_json_object_grammar(), "json", "response_format")
    if isinstance(fmt, JSONSchemaFormat):
        schema = fmt.json_schema.schema_ or {"type": "object"}
        param = "response_format.json_schema.schema"
        return OutputContract(
            _schema_grammar(_key(schema), param), "schema", "response_format", schema
        )
    raise AssertionError("unreachable: output_constraint named a field")


def _key(schema: dict[str, Any]) -> str:
    return json.dumps(schema, sort_keys=True, separators=(",", ":"))


def _json_object_grammar() -> str:
    from llama_cpp.llama_grammar import JSON_GBNF

    return str(JSON_GBNF)


@lru_cache(maxsize=128)
def _schema_grammar(schema_json: str, param: str) -> str:
    import jsonschema
    from llama_cpp.llama_grammar import json_schema_to_gbnf

    try:
        jsonschema.validators.validator_for(json.loads(schema_json)).check_schema(
            json.loads(schema_json)
        )
    except jsonschema.exceptions.SchemaError as exc:
        raise InvalidRequestError(f"invalid JSON schema: {exc.message}", param=param) from None
    try:
        return str(json_schema_to_gbnf(schema_json))
    except (ValueError, KeyError, TypeError, NotImplementedError, RecursionError) as exc:
        raise InvalidRequestError(
            f"this JSON schema cannot be enforced by the embedded engine: {exc}", param=param
        ) from None


@lru_cache(maxsize=128)
def _validator(schema_json: str) -> Any:
    import jsonschema

    schema = json.loads(schema_json)
    return jsonschema.validators.validator_for(schema)(schema)
