"""The parameter support matrix: for every request parameter and every source, what
chatgate does with it. Computed from the same code that serves requests (each backend
is asked whether it would refuse the parameter), so ``docs/parameters.md`` cannot drift
from the behaviour; a test regenerates it and compares.

Run ``python -m chatgate.parameters > docs/parameters.md`` after changing a source.
"""

from __future__ import annotations

from typing import Any

from chatgate.config import Connection, Settings
from chatgate.errors import InvalidRequestError
from chatgate.extensions import GATEWAY_FIELDS, UPSTREAM_FIELDS
from chatgate.sources import EMBEDDED, SOURCES

SCHEMA = {"type": "object", "properties": {"a": {"type": "string"}}}
TOOL = {"type": "function", "function": {"name": "f", "parameters": SCHEMA}}
# One valid value per parameter: the request that asks the question.
SAMPLES: dict[str, Any] = {
    "stream": True,
    "stream_options": {"include_usage": True},
    "max_tokens": 16,
    "max_completion_tokens": 16,
    "temperature": 0.5,
    "top_p": 0.9,
    "top_k": 20,
    "stop": ["END"],
    "seed": 7,
    "n": 2,
    "best_of": 2,
    "presence_penalty": 0.5,
    "frequency_penalty": 0.5,
    "logit_bias": {"42": 1.0},
    "logprobs": True,
    "top_logprobs": 2,
    "response_format": {"type": "json_schema", "json_schema": {"name": "s", "schema": SCHEMA}},
    "user": "u-1",
    "tools": [TOOL],
    "tool_choice": "required",
    "parallel_tool_calls": False,
    "guided_json": SCHEMA,
    "guided_choice": ["a", "b"],
    "guided_regex": "[a-z]+",
    "guided_grammar": 'root ::= "a"',
    "guided_decoding_backend": "outlines",
    "guided_whitespace_pattern": " ?",
    "chat_template": "{{ messages[0].content }}",
    "chat_template_kwargs": {"enable_thinking": False},
    "include_stop_str_in_output": True,
    "suffix": "end",
    "memory_strategy": {"name": "last_k", "k": 4},
    "inference_timeout": 30,
    "inference_extra_params": {"x": 1},
    "inference_extra_headers": {"X-Trace": "1"},
    "prompt_post_processing": "merge",
    "prediction": {"type": "content", "content": "x"},
    "audio": {"format": "wav", "voice": "alloy"},
    "modalities": ["text"],
}
NATIVE_ADAPTERS = ("anthropic", "gemini", "cohere")
# Parameters chatgate itself honours with a check on sources that cannot enforce them.
CHECKED = frozenset({"guided_regex"})
TRANSLATED_GUIDED = frozenset({"guided_json", "guided_choice"})
COLUMNS = ("local", *(s for s in SOURCES if SOURCES[s].adapter != EMBEDDED), "custom+vllm")


def _gateway() -> Any:
    from chatgate.gateway import Gateway

    connections = []
    for column in COLUMNS:
        source = "custom" if column == "custom+vllm" else column
        fields: dict[str, Any] = {"name": column.replace("+", "-"), "source": source}
        if SOURCES[source].adapter != EMBEDDED:
            fields.update(base_url="http://127.0.0.1:9/v1", api_key="k-000000")
        if column == "custom+vllm":
            fields["vllm_guided"] = "structured_outputs"
        if source == "vertexai":
            fields["api_key"] = "AIza-000000"
        connections.append(Connection(**fields))
    return Gateway(Settings(embedded=False, connections=connections))


def cell(gateway: Any, column: str, name: str) -> str:
    """What happens to parameter *name* on the connection of *column*."""
    source = SOURCES["custom" if column == "custom+vllm" else column]
    body: dict[str, Any] = {
        "model": f"{column.replace('+', '-')}/smollm2-135m-instruct",
        "messages": [{"role": "user", "content": "Hi"}],
        name: SAMPLES[name],
    }
    if name == "top_logprobs":
        body["logprobs"] = True
    if name == "stream_options":
        body["stream"] = True
    if name == "tool_choice":
        body["tools"] = [TOOL]
    try:
        fan = gateway.prepare(body).first.fanout
    except InvalidRequestError:
        return "refused"
    if (name == "n" and fan.copies > 1) or (name == "best_of" and fan.candidates):
        return "emulated"
    if name in GATEWAY_FIELDS:
        return "gateway"
    if name in UPSTREAM_FIELDS:
        return "gateway"
    if source.adapter == EMBEDDED:
        return "enforced" if name.startswith("guided_") else "native"
    if name.startswith("guided_") and column != "custom+vllm":
        return "checked" if name in CHECKED else "translated"
    if source.adapter in NATIVE_ADAPTERS:
        return "translated"
    return "native"


def matrix() -> dict[str, dict[str, str]]:
    """Parameter → column → cell."""
    gateway = _gateway()
    try:
        return {name: {col: cell(gateway, col, name) for col in COLUMNS} for name in SAMPLES}
    finally:
        gateway.close()


LEGEND = {
    "native": "sent as it is",
    "translated": "converted to the source's own field",
    "enforced": "enforced by the embedded engine's grammar",
    "checked": "not enforceable there: chatgate checks the answer and retries",
    "emulated": "done by chatgate: n by parallel requests, best_of by ranking candidates",
    "gateway": "handled by chatgate itself, never sent",
    "refused": "a 400 naming the parameter and the source (or dropped with drop_params)",
}
SHORT = {
    "native": "✓",
    "translated": "T",
    "enforced": "G",
    "checked": "C",
    "emulated": "E",
    "gateway": "gw",
    "refused": "—",
}


def render() -> str:
    """``docs/parameters.md``."""
    table = matrix()
    lines = [
        "# Parameter support",
        "",
        "Generated by `python -m chatgate.parameters` from the code that serves requests:",
        "each cell is what a connection of that source does with the parameter.",
        "",
        *(f"- **{SHORT[k]}** {k}: {v}" for k, v in LEGEND.items()),
        "",
        "`custom+vllm` is a `custom` connection with `vllm_guided` set. `model` and",
        "`messages` go everywhere. See [api-v4.md](api-v4.md) for the v4 fields.",
        "",
        "| parameter | " + " | ".join(COLUMNS) + " |",
        "| --- |" + " :---: |" * len(COLUMNS),
    ]
    for name, row in table.items():
        lines.append(f"| `{name}` | " + " | ".join(SHORT[row[c]] for c in COLUMNS) + " |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(render(), end="")
