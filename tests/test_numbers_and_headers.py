"""Values no upstream can take (64-bit integers, finite numbers, nesting depth) and
headers no upstream should get: refused at both doors with the param named, the
server healthy after; the same rules for a connection's configured headers."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from pydantic import ValidationError

from chatgate.adapters.extras import add_request_extras, header_problem
from chatgate.config import Connection, Settings, load_settings
from chatgate.errors import ConfigError, InvalidRequestError
from chatgate.types import ChatRequest
from chatgate.upstream import UpstreamRequest
from chatgate.validation import INT64_MAX, INT64_MIN, MAX_DEPTH, parse_chat_request
from tests.conftest import LiveServer, start_server
from tests.fakes.openai_server import FakeOpenAI

MODEL = "fake/gpt-fake-1"
HEAD = b'{"model": "fake/gpt-fake-1", "messages": [{"role": "user", "content": "Hi"}]'


def body(tail: bytes) -> bytes:
    """The minimal request with *tail* (raw JSON members) appended."""
    return HEAD + (b", " + tail if tail else b"") + b"}"


def nested(levels: int) -> bytes:
    """An extra field whose value nests *levels* objects (the body is one more)."""
    return b'"deep": ' + b'{"a": ' * (levels - 1) + b"{}" + b"}" * (levels - 1)


# The first object past the limit inside `nested(MAX_DEPTH)`: the body is level 1,
# "deep" level 2, and each "a" one more.
DEEP_PARAM = "deep" + ".a" * (MAX_DEPTH - 1)


# (case, body tail, param on /v1 (the loc on /v4 follows it), code)
REFUSED: list[tuple[str, bytes, str | None, str]] = [
    ("max_tokens 1e23 as an integer", b'"max_tokens": 100000000000000000000000', "max_tokens",
     "invalid_value"),
    ("seed 2**70", b'"seed": %d' % 2**70, "seed", "invalid_value"),
    ("seed 2**63, inside uint64", b'"seed": %d' % 2**63, "seed", "invalid_value"),
    ("seed below int64", b'"seed": %d' % (INT64_MIN - 1), "seed", "invalid_value"),
    ("5000 digits", b'"seed": 1' + b"0" * 5000, "seed", "invalid_value"),
    ("NaN literal", b'"temperature": NaN', "temperature", "invalid_value"),
    ("Infinity literal", b'"top_p": -Infinity', "top_p", "invalid_value"),
    ("1e400 overflows", b'"presence_penalty": 1e400', "presence_penalty", "invalid_value"),
    ("inference_timeout Infinity", b'"inference_timeout": Infinity', "inference_timeout",
     "invalid_value"),
    ("extra field", b'"mystery": {"x": [1, %d]}' % 2**64, "mystery.x[1]", "invalid_value"),
    ("inference_extra_params", b'"inference_extra_params": {"n_probs": 1e999}',
     "inference_extra_params.n_probs", "invalid_value"),
    ("message extra field", b'"messages": [{"role": "user", "content": "Hi", "w": NaN}]',
     "messages[0].w", "invalid_value"),
    ("tool schema", b'"tools": [{"type": "function", "function": {"name": "f", '
     b'"parameters": {"type": "integer", "maximum": %d}}}]' % 2**64,
     "tools[0].function.parameters.maximum", "invalid_value"),
    ("response_format schema", b'"response_format": {"type": "json_schema", "json_schema": '
     b'{"name": "x", "schema": {"type": "number", "minimum": -Infinity}}}',
     "response_format.json_schema.schema.minimum", "invalid_value"),
    ("logit_bias value", b'"logit_bias": {"42": NaN}', "logit_bias.42", "invalid_value"),
    ("65 levels", nested(MAX_DEPTH), DEEP_PARAM, "nested_too_deep"),
    ("300 levels, past the JSON parser's own limit", nested(300), DEEP_PARAM, "nested_too_deep"),
    ("5000 levels", b'"deep": ' + b"[" * 5000 + b"]" * 5000, None, "nested_too_deep"),
    ("header name with CR LF", b'"inference_extra_headers": {"X-A\\r\\nHost: evil": "1"}',
     "inference_extra_headers", "invalid_header"),
    ("header value with LF", b'"inference_extra_headers": {"X-A": "1\\nX-B: 2"}',
     "inference_extra_headers", "invalid_header"),
    ("header value with NUL", b'"inference_extra_headers": {"X-A": "1\\u0000"}',
     "inference_extra_headers", "invalid_header"),
    ("header value beyond latin-1", b'"inference_extra_headers": {"X-A": "\\u20ac"}',
     "inference_extra_headers", "invalid_header"),
    ("header value with a leading space", b'"inference_extra_headers": {"X-A": " 1"}',
     "inference_extra_headers", "invalid_header"),
    ("empty header name", b'"inference_extra_headers": {"": "1"}', "inference_extra_headers",
     "invalid_header"),
    *[
        (f"{name} header", b'"inference_extra_headers": {"%s": "1"}' % name.encode(),
         "inference_extra_headers", "invalid_header")
        for name in ("Host", "content-length", "Transfer-Encoding", "Connection", "Upgrade",
                     "TE", "Trailer", "Keep-Alive", "Proxy-Authorization", "proxy-connection")
    ],
]  # fmt: skip

# (case, body tail) that must reach the upstream unchanged.
ACCEPTED: list[tuple[str, bytes]] = [
    ("int64 bounds", b'"seed": %d, "mystery": [%d]' % (INT64_MAX, INT64_MIN)),
    ("large finite float", b'"mystery": [1.7976931348623157e308, -1e-400]'),
    ("64 levels", nested(MAX_DEPTH - 1)),
    ("header with obs-text and inner space",
     b'"inference_extra_headers": {"X-Note": "a \\u00e9 b"}'),
    ("header with token punctuation", b'"inference_extra_headers": {"X-A.b_c~1!": ""}'),
]  # fmt: skip


@pytest.fixture(scope="module")
def gate(fake_openai: FakeOpenAI) -> Iterator[LiveServer]:
    settings = Settings(
        connections=[Connection(name="fake", source="custom", base_url=f"{fake_openai.url}/v1")],
        embedded=False,
    )
    info, server, thread = start_server(settings)
    yield info
    server.should_exit = True
    thread.join(timeout=10)


def post(gate: LiveServer, path: str, raw: bytes) -> httpx.Response:
    headers = {"content-type": "application/json"}
    return httpx.post(f"{gate.url}{path}", content=raw, headers=headers, timeout=30)


def loc_of(param: str | None) -> list[str | int]:
    """``"tools[0].function"`` → ``["tools", 0, "function"]`` (no key here has a dot)."""
    out: list[str | int] = []
    for part in (param or "").replace("[", ".[").split("."):
        if part:
            out.append(int(part[1:-1]) if part.startswith("[") else part)
    return out


@pytest.mark.parametrize(("case", "tail", "param", "code"), REFUSED, ids=[c[0] for c in REFUSED])
def test_refused_on_v1(
    gate: LiveServer, fake: FakeOpenAI, case: str, tail: bytes, param: str | None, code: str
) -> None:
    answer = post(gate, "/v1/chat/completions", body(tail))
    assert answer.status_code == 400, answer.text
    assert answer.headers["content-type"] == "application/json"
    error = answer.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert (error["type"], error["param"], error["code"]) == ("invalid_request_error", param, code)
    assert error["message"]
    assert not fake.seen, "a refused request must not reach the upstream"
    assert httpx.get(f"{gate.url}/healthz").status_code == 200


@pytest.mark.parametrize(("case", "tail", "param", "code"), REFUSED, ids=[c[0] for c in REFUSED])
def test_refused_on_v4(
    gate: LiveServer, fake: FakeOpenAI, case: str, tail: bytes, param: str | None, code: str
) -> None:
    answer = post(gate, "/v4/beta/chat/completions", body(tail))
    assert answer.status_code == 422, answer.text
    assert answer.headers["content-type"] == "application/json"
    detail = answer.json()["detail"]
    assert isinstance(detail, list) and len(detail) == 1
    assert detail[0]["loc"] == ["body", *loc_of(param)]
    assert detail[0]["msg"] and detail[0]["type"] == "value_error"
    assert not fake.seen
    assert httpx.get(f"{gate.url}/healthz").status_code == 200


@pytest.mark.parametrize("path", ["/v1/chat/completions", "/v4/beta/chat/completions"])
@pytest.mark.parametrize(("case", "tail"), ACCEPTED, ids=[c[0] for c in ACCEPTED])
def test_accepted_and_sent_unchanged(
    gate: LiveServer, fake: FakeOpenAI, path: str, case: str, tail: bytes
) -> None:
    answer = post(gate, path, body(tail))
    assert answer.status_code == 200, answer.text
    sent = fake.last("/chat/completions")
    extra = orjson.loads(b"{" + tail + b"}")
    headers = extra.pop("inference_extra_headers", {})
    for name, value in extra.items():
        assert sent.body[name] == value
    for name, value in headers.items():
        # The client sends a str as its UTF-8 octets (obs-text above ASCII); the fake
        # reads each octet as one latin-1 character.
        assert sent.headers[name.lower()].encode("latin-1") == value.encode("utf-8")


# --- the same rules without a server -------------------------------------------------


@pytest.mark.parametrize(
    ("name", "value", "refused"),
    [
        ("X-Trace", "abc", False),
        ("x-trace", "a\tb c", False),
        ("X-Empty", "", False),
        ("X-Latin", "caf\u00e9", False),
        ("Content-Type", "application/json", False),
        ("Authorization", "Bearer k", False),  # refused or not by allow_auth_override
        ("X Trace", "1", True),
        ("X-Trace:", "1", True),
        ("X-\u00e9", "1", True),
        ("X-A", "1\r", True),
        ("X-A", "\x7f", True),
        ("X-A", "1 ", True),
        ("X-A", "\t1", True),
        ("X-A", "\U0001f600", True),
        ("HOST", "h", True),
        ("Proxy-Anything", "1", True),
        ("Keep-Alive", "timeout=5", True),
    ],
)
def test_header_rules(name: str, value: str, refused: bool) -> None:
    assert (header_problem(name, value) is not None) is refused


def test_library_dicts_are_checked_too() -> None:
    base = {"model": "a/b", "messages": [{"role": "user", "content": "x"}]}
    with pytest.raises(InvalidRequestError) as caught:
        parse_chat_request({**base, "extra": {"k": (1, float("nan"))}})
    assert caught.value.param == "extra.k[1]"
    with pytest.raises(InvalidRequestError) as header:
        ChatRequest.model_validate({**base, "inference_extra_headers": {"Host": "h"}})
    assert header.value.param == "inference_extra_headers"


def test_merge_refuses_unvalidated_headers_and_replaces_by_any_case() -> None:
    upstream = UpstreamRequest("POST", "http://x", {"X-Title": "chatgate"}, {})
    options: dict[str, Any] = {"protected": {}, "excluded": [], "allow_auth_override": False}
    with pytest.raises(InvalidRequestError) as caught:
        add_request_extras(upstream, None, {"Transfer-Encoding": "chunked"}, **options)
    assert caught.value.param == "inference_extra_headers"
    add_request_extras(upstream, None, {"x-title": "mine"}, **options)
    assert upstream.headers == {"x-title": "mine"}


@pytest.mark.parametrize(
    ("headers", "words"),
    [
        ({"Host": "upstream.example"}, "'Host' is a hop-by-hop or framing header"),
        ({"Content-Length": "0"}, "'Content-Length'"),
        ({"Proxy-Authorization": "Basic x"}, "'Proxy-Authorization'"),
        ({"X-Bad\nName": "1"}, "not a valid header name"),
        ({"X-Key": "secret\r\n"}, "the value of 'X-Key' is not a valid header value"),
    ],
)
def test_connection_headers_are_a_config_error(
    tmp_path: Path, headers: dict[str, str], words: str
) -> None:
    with pytest.raises(ValidationError) as direct:
        Connection(name="c", source="custom", headers=headers)
    assert words in str(direct.value)
    lines = "".join(
        f"{orjson.dumps(k).decode()} = {orjson.dumps(v).decode()}\n" for k, v in headers.items()
    )
    config = tmp_path / "chatgate.toml"
    config.write_text(
        f'embedded = false\n[[connections]]\nname = "c"\nsource = "custom"\n'
        f"[connections.headers]\n{lines}",
        encoding="utf-8",
    )
    with pytest.raises(ConfigError) as loaded:
        load_settings(config, env={})
    assert "connections.0.headers" in str(loaded.value) and words in str(loaded.value)
    assert "secret" not in str(loaded.value)


def test_connection_headers_that_are_fine_still_load() -> None:
    conn = Connection(name="c", source="custom", headers={"X-Title": "my app", "api-key": "k"})
    assert conn.headers == {"X-Title": "my app", "api-key": "k"}
