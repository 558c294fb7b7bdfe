"""``docs/parameters.md`` is generated from the code that serves requests: it must match."""

from __future__ import annotations

from pathlib import Path

from chatgate.parameters import COLUMNS, SAMPLES, matrix, render

DOC = Path(__file__).parent.parent / "docs" / "parameters.md"


def test_the_published_matrix_is_current() -> None:
    assert DOC.read_text() == render(), "run: python -m chatgate.parameters > docs/parameters.md"


def test_every_cell_is_decided() -> None:
    table = matrix()
    assert set(table) == set(SAMPLES)
    assert all(set(row) == set(COLUMNS) for row in table.values())


def test_every_seed_parameter_is_honoured_or_refused_clearly() -> None:
    """On the embedded engine and on OpenAI: a refusal names the parameter and the
    source; an accepted parameter reaches OpenAI's body natively, translated, or not at
    all when chatgate handles it itself."""
    import asyncio

    from chatgate.errors import InvalidRequestError
    from chatgate.parameters import _gateway, cell

    gateway = _gateway()
    try:
        for name, value in SAMPLES.items():
            for column, display in (("local", "embedded engine"), ("openai", "OpenAI")):
                verdict = cell(gateway, column, name)
                body = {
                    "model": f"{column}/smollm2-135m-instruct",
                    "messages": [{"role": "user", "content": "Hi"}],
                    name: value,
                }
                if name == "top_logprobs":
                    body["logprobs"] = True
                if name == "stream_options":
                    body["stream"] = True
                if name == "tool_choice":
                    body["tools"] = SAMPLES["tools"]
                if verdict == "refused":
                    try:
                        gateway.prepare(body)
                    except InvalidRequestError as exc:
                        named = {name, "tools"} if name == "tool_choice" else {name}
                        assert exc.param in named, exc.message
                        assert f"'{exc.param}'" in exc.message or exc.param in exc.message
                        assert display in exc.message or f"'{column}'" in exc.message
                    continue
                if column != "openai":
                    continue
                sent = asyncio.run(gateway.preview(body))["body"]
                if verdict == "native":
                    assert name in sent, name
                else:
                    assert name not in sent, name
    finally:
        gateway.close()
