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
- A JSON schema in ``response_format`` takes the forms its source's row lists
  (``Source.schema_forms``). A custom OpenAI-compatible server may take OpenAI's
  ``json_schema``, llama.cpp's ``json_object`` + ``schema``, or neither; the remote
  backend tries them in that order (`in_form`) and remembers the one that works, and
  on such a source the answer is checked against the schema whatever form it was sent
  in. llama.cpp's form sent to a source that does not list it becomes ``json_schema``.
- ``guided_regex`` has no native form outside vLLM: the answer is checked with
  ``re.fullmatch``. ``guided_grammar`` needs vLLM or the embedded engine.

Every answer is checked (`chatgate.output.OutputContract.check`), and one that fails is
asked for again up to the connection's ``guided_retries``; after that the request fails
with a 502. An output that did not
keep its constraint is never returned as if it had. See ``docs/api-v4.md``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from chatgate.config import Connection
from chatgate.errors import InvalidRequestError
from chatgate.extensions import GUIDED_FIELDS
from chatgate.output import CHOICE_KEY, OutputContract
from chatgate.sources import SchemaForm, get_source
from chatgate.types import ChatRequest, JSONObjectFormat, JSONSchemaFormat, JSONSchemaSpec


@dataclass(frozen=True, slots=True)
class GuidedPlan:
    """What to send, the contract each answer is checked against, and whether a stream
    must be held back until it is checked."""

    request: ChatRequest
    contract: OutputContract | None = None
    buffered: bool = False


def plan(
    request: ChatRequest, connection: Connection, contract: OutputContract | None
) -> GuidedPlan:
    """The plan for *request* on *connection*, whose output *contract* was worked out
    once (`chatgate.output.contract_for`); the request unchanged when unguided."""
    forms = schema_forms(connection)
    fmt = request.response_format
    if isinstance(fmt, JSONObjectFormat) and fmt.schema_ is not None and "json_object" not in forms:
        request = in_form(request, "json_schema")
    if contract is not None and contract.param == "response_format" and len(forms) > 1:
        # A source whose server may honour the schema in another form, or not at all:
        # every answer is checked.
        return GuidedPlan(request, contract if contract.kind == "schema" else None)
    if request.model_fields_set.isdisjoint(GUIDED_FIELDS) or not any(
        getattr(request, name) is not None for name in GUIDED_FIELDS
    ):
        return GuidedPlan(request)
    guided = contract if contract is not None and contract.param != "response_format" else None
    kind = guided.kind if guided is not None else None
    if connection.vllm_guided == "legacy":
        return GuidedPlan(request, guided)  # the guided_* fields pass through as they are
    if connection.vllm_guided == "structured_outputs":
        outputs = _structured_outputs(request)
        return GuidedPlan(_rebuild(request, {"structured_outputs": outputs}), guided)
    for hint in ("guided_decoding_backend", "guided_whitespace_pattern"):
        if getattr(request, hint) is not None and not connection.drop_params:
            raise InvalidRequestError(
                f"'{hint}' is a vLLM setting; connection '{connection.name}' is not a vLLM "
                "connection (vllm_guided unset), so it cannot be honoured",
                param=hint,
            )
    if kind == "grammar":
        raise InvalidRequestError(
            f"guided_grammar needs a vLLM connection or the embedded engine; connection "
            f"'{connection.name}' cannot enforce or check a grammar",
            param="guided_grammar",
        )
    if kind == "schema" and guided is not None:
        fmt = _schema_format("guided_json", guided.schema or {})
        return GuidedPlan(_rebuild(request, {"response_format": fmt}), guided)
    if kind == "choice" and guided is not None:
        schema = {
            "type": "object",
            "properties": {CHOICE_KEY: {"type": "string", "enum": list(guided.choices)}},
            "required": [CHOICE_KEY],
            "additionalProperties": False,
        }
        fmt = _schema_format("guided_choice", schema)
        return GuidedPlan(_rebuild(request, {"response_format": fmt}), guided, buffered=True)
    return GuidedPlan(_rebuild(request, {}), guided, buffered=kind is not None)


def schema_forms(connection: Connection) -> tuple[SchemaForm, ...]:
    """The wire forms of a JSON schema *connection*'s source takes, in the order to try."""
    source = get_source(connection.source)
    return source.schema_forms if source is not None else ("json_schema",)


def schema_of(request: ChatRequest) -> dict[str, Any] | None:
    """The JSON schema *request*'s ``response_format`` carries, in either form."""
    fmt = request.response_format
    if isinstance(fmt, JSONSchemaFormat):
        return fmt.json_schema.schema_ or {"type": "object"}
    if isinstance(fmt, JSONObjectFormat):
        return fmt.schema_
    return None


def form_of(request: ChatRequest) -> SchemaForm | None:
    """The form *request* carries its schema in; None when it carries none."""
    if schema_of(request) is None:
        return None
    return "json_schema" if isinstance(request.response_format, JSONSchemaFormat) else "json_object"


def in_form(request: ChatRequest, form: SchemaForm) -> ChatRequest:
    """*request* with the schema of its ``response_format`` in *form*: OpenAI's
    ``json_schema``, llama.cpp's ``json_object`` + ``schema``, or none at all."""
    schema = schema_of(request)
    if schema is None or form == form_of(request):
        return request
    if form == "none":
        return request.without("response_format")
    if form == "json_object":
        return request.without(response_format=JSONObjectFormat(type="json_object", schema=schema))
    fmt = request.response_format
    name = fmt.json_schema.name if isinstance(fmt, JSONSchemaFormat) else "response_format"
    return request.without(response_format=_schema_format(name, schema))


def _schema_format(name: str, schema: dict[str, Any]) -> JSONSchemaFormat:
    # Built as the model itself: the rebuilt request is not validated again.
    return JSONSchemaFormat(
        type="json_schema", json_schema=JSONSchemaSpec(name=name, schema=schema)
    )


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
