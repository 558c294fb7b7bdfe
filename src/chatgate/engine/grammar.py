"""How the embedded engine enforces an output contract: one GBNF grammar per contract.

The engine worker (llama.cpp's server) enforces the grammar while it samples, so the
model cannot write anything outside it: JSON through `schema_to_gbnf`
(``response_format`` of either JSON kind, ``guided_json``), ``guided_choice`` as
alternatives, ``guided_regex`` through `regex_to_gbnf`, and ``guided_grammar`` as it
is. The worker's own ``json_schema`` route is not used: its LLGuidance compiler can hang
the whole engine on some schemas (an integer with ``"minimum": 10**17`` never
compiles). The schema grammar covers a subset of JSON Schema (bounds on numbers, for
one, are not enforced), so every finished output is also checked with
`chatgate.output.OutputContract.check` before it is returned.
"""

from __future__ import annotations

from chatgate.gbnf.regex import gbnf_string, regex_to_gbnf
from chatgate.gbnf.schema import JSON_OBJECT_GBNF, json_gbnf
from chatgate.output import OutputContract


def enforced(contract: OutputContract) -> OutputContract:
    """*contract* with the grammar that enforces it (a 400 naming its field when the
    schema or regex has no grammar)."""
    if contract.grammar is not None:
        return contract
    if contract.kind == "choice":
        grammar = "root ::= " + " | ".join(gbnf_string(c) for c in contract.choices) + "\n"
    elif contract.kind == "regex":
        grammar = regex_to_gbnf(contract.pattern or "")
    elif contract.schema is None:
        grammar = JSON_OBJECT_GBNF
    else:
        param = (
            "response_format.json_schema.schema"
            if contract.param == "response_format"
            else contract.param
        )
        grammar = json_gbnf(contract.schema, param=param)
    return contract.with_grammar(grammar)
