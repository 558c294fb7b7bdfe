"""Output constraints for the embedded engine, and the check of what came out.

The engine worker (llama.cpp's server) enforces each constraint while it samples, so
the model cannot write anything outside it. Every constraint goes as a GBNF ``grammar``:
JSON through `schema_to_gbnf` (``response_format`` of either JSON kind, ``guided_json``),
``guided_choice`` as alternatives, ``guided_regex`` through `regex_to_gbnf`, and
``guided_grammar`` as it is. The worker's own ``json_schema`` route is not used: its
LLGuidance compiler can hang the whole engine on some schemas (an integer with
``"minimum": 10**17`` never compiles). The schema grammar covers a subset of JSON
Schema (bounds on numbers, for one, are not enforced), so every finished
output is also checked — validated against the schema, matched against the regex,
looked up among the choices — before it is returned; see `OutputContract.check`.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Literal

from chatgate.engine.regex_grammar import gbnf_string, regex_to_gbnf
from chatgate.engine.schema_grammar import JSON_OBJECT_GBNF, schema_to_gbnf
from chatgate.errors import InvalidRequestError, UpstreamError
from chatgate.types import ChatRequest, JSONObjectFormat, JSONSchemaFormat


@dataclass(frozen=True, slots=True)
class OutputContract:
    """What the output must be, how the engine enforces it, and the field that asked."""

    kind: Literal["json", "schema", "choice", "regex", "grammar"]
    param: str
    grammar: str | None = None
    schema: dict[str, Any] | None = None
    choices: tuple[str, ...] = ()
    pattern: str | None = None

    def engine_fields(self) -> dict[str, Any]:
        """The fields of the engine request that enforce this contract."""
        if self.grammar is not None:
            return {"grammar": self.grammar}
        if self.schema is None:
            return {"grammar": JSON_OBJECT_GBNF}
        return {"grammar": _schema_grammar(_key(self.schema), self.param)}

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
        schema = _checked_schema(request.guided_json, "guided_json")
        return OutputContract("schema", "guided_json", schema=schema)
    if request.guided_choice is not None:
        choices = tuple(request.guided_choice)
        grammar = "root ::= " + " | ".join(gbnf_string(c) for c in choices) + "\n"
        return OutputContract("choice", "guided_choice", grammar, choices=choices)
    if request.guided_regex is not None:
        pattern = request.guided_regex
        return OutputContract("regex", "guided_regex", regex_to_gbnf(pattern), pattern=pattern)
    if request.guided_grammar is not None:
        return OutputContract("grammar", "guided_grammar", request.guided_grammar)
    if isinstance(fmt, JSONObjectFormat):
        return OutputContract("json", "response_format")
    if isinstance(fmt, JSONSchemaFormat):
        param = "response_format.json_schema.schema"
        schema = _checked_schema(fmt.json_schema.schema_ or {"type": "object"}, param)
        return OutputContract("schema", "response_format", schema=schema)
    raise AssertionError("unreachable: output_constraint named a field")


def _key(schema: dict[str, Any]) -> str:
    return json.dumps(schema, sort_keys=True, separators=(",", ":"))


def _checked_schema(schema: dict[str, Any], param: str) -> dict[str, Any]:
    """*schema*, once it is valid JSON Schema that a grammar can enforce (else a 400
    naming *param*)."""
    _valid_schema(_key(schema), param)
    _schema_grammar(_key(schema), param)
    return schema


@lru_cache(maxsize=128)
def _schema_grammar(schema_json: str, param: str) -> str:
    return schema_to_gbnf(json.loads(schema_json), param=param)


@lru_cache(maxsize=128)
def _valid_schema(schema_json: str, param: str) -> None:
    import jsonschema

    schema = json.loads(schema_json)
    try:
        jsonschema.validators.validator_for(schema).check_schema(schema)
    except jsonschema.exceptions.SchemaError as exc:
        raise InvalidRequestError(f"invalid JSON schema: {exc.message}", param=param) from None


@lru_cache(maxsize=128)
def _validator(schema_json: str) -> Any:
    import jsonschema

    schema = json.loads(schema_json)
    return jsonschema.validators.validator_for(schema)(schema)
