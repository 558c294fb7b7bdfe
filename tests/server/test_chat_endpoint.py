"""`/v1/chat/completions` over real sockets: bad input, SSE framing, concurrency, disconnects."""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

import httpx
import orjson
import pytest

from chatgate.backends.local import LocalBackend
from tests.conftest import GATEWAY_KEY, MODEL, LiveServer

pytestmark = pytest.mark.model

USER = [{"role": "user", "content": "Hi"}]
# SmolLM2's end-of-generation tokens are 0, 2 and 4 (<|endoftext|>, <|im_end|>, ...):
# banning them keeps a generation going to max_tokens.
NO_END_OF_TURN = {"0": -100, "2": -100, "4": -100}


def body(**fields: Any) -> bytes:
    return orjson.dumps({"model": MODEL, "messages": USER, **fields})


JSON = {"content-type": "application/json"}  # raw bodies need it (a 415 otherwise)


# (case, raw body or None for the default, headers override, status, type, param, code)
MALFORMED: list[tuple[str, bytes, dict[str, str] | None, int, str, str | None, str | None]] = [
    ("not json", b"{bad", None, 400, "invalid_request_error", None, "invalid_json"),
    ("not utf-8", b"\xff\xfe", None, 400, "invalid_request_error", None, "invalid_json"),
    ("array body", b"[]", None, 400, "invalid_request_error", None, "invalid_json"),
    (
        "missing model",
        orjson.dumps({"messages": USER}),
        None,
        400,
        "invalid_request_error",
        "model",
        "missing_required_parameter",
    ),
    (
        "missing messages",
        orjson.dumps({"model": MODEL}),
        None,
        400,
        "invalid_request_error",
        "messages",
        "missing_required_parameter",
    ),
    (
        "empty messages",
        body(messages=[]),
        None,
        400,
        "invalid_request_error",
        "messages",
        "invalid_value",
    ),
    (
        "model not a string",
        body(model=5),
        None,
        400,
        "invalid_request_error",
        "model",
        "invalid_type",
    ),
    (
        "max_tokens a string",
        body(max_tokens="5"),
        None,
        400,
        "invalid_request_error",
        "max_tokens",
        "invalid_type",
    ),
    (
        "temperature too high",
        body(temperature=3),
        None,
        400,
        "invalid_request_error",
        "temperature",
        "invalid_value",
    ),
    (
        "five stop strings",
        body(stop=["a", "b", "c", "d", "e"]),
        None,
        400,
        "invalid_request_error",
        "stop",
        "invalid_value",
    ),
    (
        "unknown role",
        body(messages=[{"role": "wizard", "content": "x"}]),
        None,
        400,
        "invalid_request_error",
        "messages[0].role",
        "invalid_value",
    ),
    (
        "user without content",
        body(messages=[{"role": "user"}]),
        None,
        400,
        "invalid_request_error",
        "messages[0]",
        "invalid_value",
    ),
    (
        "tool without id",
        body(messages=[{"role": "tool", "content": "x"}]),
        None,
        400,
        "invalid_request_error",
        "messages[0]",
        "invalid_value",
    ),
    (
        "text part without text",
        body(messages=[{"role": "user", "content": [{"type": "text"}]}]),
        None,
        400,
        "invalid_request_error",
        "messages[0].content[0].text",
        "missing_required_parameter",
    ),
    ("n zero", body(n=0), None, 400, "invalid_request_error", "n", "invalid_value"),
    (
        "bad response_format",
        body(response_format={"type": "xml"}),
        None,
        400,
        "invalid_request_error",
        "response_format",
        "invalid_value",
    ),
    (
        "top_logprobs alone",
        body(top_logprobs=2),
        None,
        400,
        "invalid_request_error",
        "top_logprobs",
        "invalid_value",
    ),
    (
        "unknown model",
        body(model="nowhere/x"),
        None,
        404,
        "invalid_request_error",
        "model",
        "model_not_found",
    ),
    (
        "unknown model on local",
        body(model="local/gpt-4"),
        None,
        404,
        "invalid_request_error",
        "model",
        "model_not_found",
    ),
    (
        "unknown parameter",
        body(foo=1),
        None,
        400,
        "invalid_request_error",
        "foo",
        "unsupported_parameter",
    ),
    (
        "tools on the embedded model",
        body(tools=[{"type": "function", "function": {"name": "f"}}]),
        None,
        400,
        "invalid_request_error",
        "tools",
        "unsupported_parameter",
    ),
    (
        "image on the embedded model",
        body(
            messages=[
                {
                    "role": "user",
                    "content": [
                        {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}
                    ],
                }
            ]
        ),
        None,
        400,
        "invalid_request_error",
        "messages",
        "unsupported_parameter",
    ),
    (
        "logit_bias not a token id",
        body(logit_bias={"abc": 1}),
        None,
        400,
        "invalid_request_error",
        "logit_bias",
        "invalid_value",
    ),
    (
        "context overflow",
        body(max_tokens=100_000),
        None,
        400,
        "invalid_request_error",
        "messages",
        "context_length_exceeded",
    ),
    (
        "invalid json schema",
        body(
            response_format={
                "type": "json_schema",
                "json_schema": {"name": "x", "schema": {"type": "nonsense"}},
            }
        ),
        None,
        400,
        "invalid_request_error",
        "response_format.json_schema.schema",
        None,
    ),
    (
        "body over the limit",
        body(messages=[{"role": "user", "content": "x" * 70_000}]),
        None,
        413,
        "invalid_request_error",
        None,
        "request_too_large",
    ),
    ("no key", body(), {}, 401, "authentication_error", None, "missing_api_key"),
    (
        "wrong key",
        body(),
        {"x-api-key": "sk-nope-000000000"},
        401,
        "authentication_error",
        None,
        "invalid_api_key",
    ),
]


@pytest.mark.parametrize(
    ("raw", "headers", "status", "etype", "param", "code"),
    [case[1:] for case in MALFORMED],
    ids=[case[0] for case in MALFORMED],
)
def test_malformed_request(
    live: LiveServer,
    raw: bytes,
    headers: dict[str, str] | None,
    status: int,
    etype: str,
    param: str | None,
    code: str | None,
) -> None:
    sent = {**({"Authorization": f"Bearer {GATEWAY_KEY}"} if headers is None else headers), **JSON}
    with httpx.Client(base_url=live.url, timeout=30) as c:
        answer = c.post("/v1/chat/completions", content=raw, headers=sent)
        assert answer.status_code == status, answer.text
        error = answer.json()["error"]
        assert set(error) == {"message", "type", "param", "code"}
        assert error["type"] == etype
        assert error["param"] == param
        if code is not None:
            assert error["code"] == code
        assert error["message"]
        assert GATEWAY_KEY not in answer.text
        # Still healthy, and still answering.
        assert c.get("/healthz").json()["status"] == "ok"


def test_server_answers_after_bad_input(client: httpx.Client) -> None:
    for raw in (b"{", b"null", b'{"model": 1}'):
        client.post("/v1/chat/completions", content=raw, headers=JSON)
    ok = client.post("/v1/chat/completions", content=body(max_tokens=2), headers=JSON)
    assert ok.status_code == 200
    assert ok.json()["choices"][0]["message"]["content"]


def test_unknown_route_and_method(client: httpx.Client) -> None:
    missing = client.get("/v1/nothing")
    assert missing.status_code == 404
    assert missing.json()["error"]["type"] == "invalid_request_error"
    wrong = client.get("/v1/chat/completions")
    assert wrong.status_code == 405
    assert "error" in wrong.json()


def parse_sse(raw: str) -> list[dict[str, Any] | str]:
    """Every frame's data, as JSON (or the literal ``[DONE]``)."""
    frames: list[dict[str, Any] | str] = []
    for block in raw.split("\n\n"):
        if not block.strip():
            continue
        lines = block.split("\n")
        assert all(line.startswith(("data: ", "event: ")) for line in lines), block
        data = "".join(line[6:] for line in lines if line.startswith("data: "))
        frames.append(data if data == "[DONE]" else orjson.loads(data))
    return frames


def check_framing(frames: list[dict[str, Any] | str], max_tokens: int) -> None:
    """The order OpenAI sends: role, content deltas, one finish chunk, usage, [DONE]."""
    assert frames[-1] == "[DONE]"
    chunks = [f for f in frames[:-1] if isinstance(f, dict)]
    assert len(chunks) == len(frames) - 1
    assert len({c["id"] for c in chunks}) == 1
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    *body_chunks, finish, usage = chunks
    assert all(c["choices"][0]["finish_reason"] is None for c in body_chunks)
    assert all(set(c["choices"][0]["delta"]) <= {"role", "content"} for c in body_chunks)
    assert finish["choices"][0]["finish_reason"] in ("stop", "length")
    assert finish["choices"][0]["delta"] == {}
    assert usage["choices"] == []
    assert 0 < usage["usage"]["completion_tokens"] <= max_tokens


async def test_twenty_concurrent_streams(live: LiveServer) -> None:
    headers = {"Authorization": f"Bearer {GATEWAY_KEY}", **JSON}

    async def one(c: httpx.AsyncClient, seed: int) -> list[dict[str, Any] | str]:
        answer = await c.post(
            "/v1/chat/completions",
            content=body(
                stream=True, max_tokens=4, seed=seed, stream_options={"include_usage": True}
            ),
            headers=headers,
        )
        assert answer.status_code == 200
        assert answer.headers["content-type"].startswith("text/event-stream")
        return parse_sse(answer.text)

    async with httpx.AsyncClient(base_url=live.url, timeout=120) as c:
        results = await asyncio.gather(*(one(c, seed) for seed in range(20)))
    for frames in results:
        check_framing(frames, 4)


def engine_status(c: httpx.Client) -> dict[str, Any]:
    status: dict[str, Any] = c.get("/healthz").json()["connections"]["local"]
    return status


def wait_until_idle(c: httpx.Client, limit: float) -> float:
    """Seconds until the engine has no busy slot and no queue (fails after *limit*)."""
    started = time.monotonic()
    while time.monotonic() - started < limit:
        status = engine_status(c)
        if status["busy"] == 0 and status["waiting"] == 0:
            return time.monotonic() - started
        time.sleep(0.02)
    raise AssertionError(f"the engine is still busy after {limit} s: {engine_status(c)}")


def test_disconnect_frees_the_engine(live: LiveServer, client: httpx.Client) -> None:
    # 1,500 tokens would take the engine tens of seconds; a disconnect must end it at once.
    long_stream = body(stream=True, max_tokens=1500, seed=1, logit_bias=NO_END_OF_TURN)
    with (
        live.client() as streaming,
        streaming.stream(
            "POST", "/v1/chat/completions", content=long_stream, headers=JSON
        ) as answer,
    ):
        lines = answer.iter_lines()
        for line in lines:
            if '"content":"' in line and '"content":""' not in line:
                break
        assert engine_status(client)["busy"] == 1
    freed_after = wait_until_idle(client, limit=5)
    # The promise: a disconnect stops the generation within a second — in the
    # engine worker itself, not only in the gateway's count.
    assert freed_after < 1.0, freed_after
    backend = live.gateway.backends["local"]
    assert isinstance(backend, LocalBackend)
    started = time.monotonic()
    processing = -1.0
    while time.monotonic() - started < 1.0:
        processing = 0.0
        for worker in backend.workers:
            metrics = f"{worker.supervisor.base_url}/metrics"
            token = {"Authorization": f"Bearer {worker.supervisor.token}"}
            for line in httpx.get(metrics, headers=token).text.splitlines():
                if line.startswith("llamacpp:requests_processing "):
                    processing += float(line.split()[1])
        if processing == 0:
            break
        time.sleep(0.05)
    assert processing == 0
    after = client.post("/v1/chat/completions", content=body(max_tokens=2), headers=JSON)
    assert after.status_code == 200


def test_disconnect_while_queued_leaves_the_queue(live: LiveServer, client: httpx.Client) -> None:
    long_stream = body(stream=True, max_tokens=1500, seed=2, logit_bias=NO_END_OF_TURN)
    slots = engine_status(client)["slots"]
    with contextlib.ExitStack() as stack:
        # Fill every sequence, then one more request has to wait.
        lines = []
        for _ in range(slots + 1):
            c = stack.enter_context(live.client())
            response = stack.enter_context(
                c.stream("POST", "/v1/chat/completions", content=long_stream, headers=JSON)
            )
            # Keep the line iterators referenced: a dropped one closes its response.
            lines.append(response.iter_lines())
            next(lines[-1])  # the role chunk comes before the request's turn
        deadline = time.monotonic() + 5
        while engine_status(client)["waiting"] != 1 and time.monotonic() < deadline:
            time.sleep(0.02)
        status = engine_status(client)
        assert (status["busy"], status["waiting"]) == (slots, 1)
    wait_until_idle(client, limit=5)


# A grammar cannot say "no two items alike", so uniqueItems is checked after generation;
# three items drawn from two values can never pass that check.
UNENFORCEABLE = {
    "type": "json_schema",
    "json_schema": {
        "name": "impossible",
        "schema": {
            "type": "object",
            "properties": {
                "a": {
                    "type": "array",
                    "items": {"enum": [0, 1]},
                    "minItems": 3,
                    "maxItems": 3,
                    "uniqueItems": True,
                }
            },
            "required": ["a"],
            "additionalProperties": False,
        },
    },
}


def test_unchecked_output_is_never_returned(client: httpx.Client) -> None:
    answer = client.post(
        "/v1/chat/completions",
        content=body(response_format=UNENFORCEABLE, max_tokens=80, seed=4),
        headers=JSON,
    )
    assert answer.status_code == 502, answer.text
    error = answer.json()["error"]
    assert error["code"] == "invalid_model_output"
    assert "schema" in error["message"]


def test_error_after_stream_start_is_an_sse_error_event(client: httpx.Client) -> None:
    answer = client.post(
        "/v1/chat/completions",
        content=body(stream=True, response_format=UNENFORCEABLE, max_tokens=30, seed=4),
        headers=JSON,
    )
    assert answer.status_code == 200
    frames = answer.text.strip().split("\n\n")
    assert frames[0].startswith("data: {")
    last = frames[-1].split("\n")
    assert last[0] == "event: error"
    assert orjson.loads(last[1][len("data: ") :])["error"]["code"] == "invalid_model_output"
    assert "[DONE]" not in answer.text


def test_n_choices_stream_side_by_side(client: httpx.Client) -> None:
    # The engine generates the choices together; as OpenAI does, their chunks interleave,
    # and each choice has one role chunk first and one finish chunk last.
    answer = client.post(
        "/v1/chat/completions", content=body(stream=True, n=2, max_tokens=2, seed=1), headers=JSON
    )
    frames = parse_sse(answer.text)
    chunks = [f for f in frames if isinstance(f, dict) and f["choices"]]
    for index in (0, 1):
        mine = [c["choices"][0] for c in chunks if c["choices"][0]["index"] == index]
        assert mine[0]["delta"].get("role") == "assistant"
        assert [c["finish_reason"] is not None for c in mine].count(True) == 1
        assert mine[-1]["finish_reason"] in ("stop", "length")
