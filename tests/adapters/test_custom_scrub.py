"""An upstream's error text reaches a client without a Python traceback or file paths
(`chatgate.redaction.scrubbed`, applied to every upstream error message)."""

from __future__ import annotations

import orjson
import pytest

from chatgate.exchange.errors import UpstreamAnsweredError, classify_error
from chatgate.redaction import scrubbed

# What llama_cpp.server 0.3.36 answers a json_schema response_format with (a 500).
LLAMA_500 = (
    "1 validation error:\n  {'type': 'literal_error', 'loc': ('body', 'response_format', "
    "'type'), 'msg': \"Input should be 'text' or 'json_object'\", 'input': 'json_schema'}"
    '\n\n  File "/work/main/.venv-llamacpp/lib/python3.11/site-packages/llama_cpp/server/'
    'app.py", line 376, in create_chat_completion\n    POST /v1/chat/completions'
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            'Traceback (most recent call last):\n  File "/usr/lib/x.py", line 3, in f\n'
            "    boom()\nValueError: no such model",
            "ValueError: no such model",
        ),
        (
            'oops\nTraceback (most recent call last):\n  File "a.py", line 1, in <module>\n',
            "oops",
        ),
        ('Traceback (most recent call last):\n  File "a.py", line 1\n', "(a traceback, not shown)"),
        (
            "failed to load model from /root/models/smol.gguf",
            "failed to load model from <path>/smol.gguf",
        ),
        ("C:\\Users\\bob\\model.gguf is missing", "<path>/model.gguf is missing"),
        ("error in /home/u/app", "error in <path>/app"),
        # Not paths: an API path, a URL, a fraction.
        ("Not Found: /v1/chat/completions", "Not Found: /v1/chat/completions"),
        ("see http://127.0.0.1:8000/v1/models", "see http://127.0.0.1:8000/v1/models"),
        ("use 1/2 of it", "use 1/2 of it"),
    ],
)
def test_scrubbed(text: str, expected: str) -> None:
    assert scrubbed(text) == expected


def test_llama_cpp_servers_500_keeps_its_words_not_its_files() -> None:
    body = orjson.dumps({"error": {"message": LLAMA_500, "type": "internal_server_error"}})
    error = classify_error(500, body, {}, "llama", [])
    assert isinstance(error, UpstreamAnsweredError) and error.status == 502
    assert "Input should be 'text' or 'json_object'" in error.message
    assert "File " not in error.message and "/work/" not in error.message
    assert ".venv" not in error.message and "line 376" not in error.message


def test_a_raw_traceback_body_is_scrubbed_too() -> None:
    body = (
        b"Internal Server Error\nTraceback (most recent call last):\n"
        b"  File \"/srv/a.py\", line 9, in h\n    x()\nKeyError: 'k'"
    )
    error = classify_error(500, body, {}, "llama", [])
    assert error.message.endswith("upstream answered 500: Internal Server Error KeyError: 'k'")
