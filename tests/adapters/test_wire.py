"""The pieces every protocol adapter shares (`chatgate.adapters.wire`)."""

from __future__ import annotations

from typing import Any

import pytest

from chatgate.adapters.wire import stream_error
from chatgate.config import Connection

CONNECTION = Connection(name="up", source="custom", base_url="http://up.test/v1")
TRACEBACK = (
    "Traceback (most recent call last):\n"
    '  File "/srv/app/.venv/lib/python3.11/site-packages/server/app.py", line 88, in run\n'
    "    raise ValueError(x)\n"
    "ValueError: the model is not loaded"
)


@pytest.mark.parametrize(
    ("said", "shown"),
    [
        ({"message": "overloaded"}, "overloaded"),
        ("plain words", "plain words"),
        ({"message": TRACEBACK}, "ValueError: the model is not loaded"),
        ({"message": "cannot open /srv/models/llama.gguf"}, "cannot open <path>/llama.gguf"),
        ({"code": 7}, "{'code': 7}"),
    ],
)
def test_an_error_in_a_stream_keeps_its_words_not_a_traceback(said: Any, shown: str) -> None:
    error = stream_error(CONNECTION, said)
    assert error.message == f"connection 'up': upstream error in the stream: {shown}"
    assert "/srv/" not in error.message and "Traceback" not in error.message
