"""``response_format`` as a llama.cpp grammar, and the check of what came out.

The grammar makes the model unable to write anything but JSON of the right shape. The
JSON-Schema-to-GBNF converter covers a subset of JSON Schema (bounds on numbers, for
one, are not enforced), so every finished output is also validated with ``jsonschema``
before it is returned; see `OutputContract.check`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from chatgate.errors import InvalidRequestError, UpstreamError
from chatgate.types import JSONObjectFormat, JSONSchemaFormat, ResponseFormat


@dataclass(frozen=True, slots=True)
class OutputContract:
    """What the output must be: any JSON object, or JSON valid against a schema."""

    grammar: str
    schema: dict[str, Any] | None

    def check(self, text: str) -> None:
        """Raise `UpstreamError` unless *text* parses (and validates, with a schema)."""
        try:
            value = json.loads(text)
        except ValueError as exc:
            raise UpstreamError(
                f"the model's output is not valid JSON ({exc}); raise max_tokens "
                "if it was cut short",
                code="invalid_model_output",
            ) from None
        if self.schema is None:
            if not isinstance(value, dict):
                raise UpstreamError(
                    "the model's output is not a JSON object", code="invalid_model_output"
                )
            return
        import jsonschema

        error = jsonschema.exceptions.best_match(_validator(_key(self.schema)).iter_errors(value))
        if error is not None:
            raise UpstreamError(
                f"the model's output does not match the schema: {error.message}",
                code="invalid_model_output",
            )


def contract_for(response_format: ResponseFormat | None) -> OutputContract | None:
    """The grammar and check for a ``response_format``; None for plain text."""
    if isinstance(response_format, JSONObjectFormat):
        return OutputContract(grammar=_json_object_grammar(), schema=None)
    if isinstance(response_format, JSONSchemaFormat):
        schema = response_format.json_schema.schema_ or {"type": "object"}
        return OutputContract(grammar=_schema_grammar(_key(schema)), schema=schema)
    return None


def _key(schema: dict[str, Any]) -> str:
    return json.dumps(schema, sort_keys=True, separators=(",", ":"))


def _json_object_grammar() -> str:
    from llama_cpp.llama_grammar import JSON_GBNF

    return str(JSON_GBNF)


@lru_cache(maxsize=128)
def _schema_grammar(schema_json: str) -> str:
    import jsonschema
    from llama_cpp.llama_grammar import json_schema_to_gbnf

    param = "response_format.json_schema.schema"
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
