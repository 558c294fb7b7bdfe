"""The minimal proxy the bench measures as the stack's floor (`bench.floor`): served as
the bench serves it, in front of the fake OpenAI upstream, it routes by the model's
prefix, strips it, and relays answers and streams."""

from __future__ import annotations

import http.client
import json
from collections.abc import Iterator

import orjson
import pytest
from bench import floor
from bench.peers import Process, free_port

from tests.fakes.openai_server import FakeOpenAI


@pytest.fixture()
def proxy(fake: FakeOpenAI) -> Iterator[int]:
    # The bench's routes ("mock", "mockstream") and one more, all to the fake.
    port = free_port()
    routes = floor.routes_for(fake.url.removesuffix("/v1"), other=fake.url)
    started: Process = floor.start(routes, port)
    try:
        yield port
    finally:
        started.stop()


def post(port: int, body: dict[str, object]) -> tuple[int, str, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("POST", "/v1/chat/completions", json.dumps(body).encode())
        response = conn.getresponse()
        return response.status, response.getheader("content-type") or "", response.read()
    finally:
        conn.close()


def test_an_answer_goes_to_the_prefixed_upstream_without_its_prefix(
    proxy: int, fake: FakeOpenAI
) -> None:
    messages = [{"role": "user", "content": "Hi"}]
    status, kind, body = post(proxy, {"model": "other/gpt-fake-1", "messages": messages})
    assert status == 200 and kind == "application/json"
    answer = orjson.loads(body)
    assert answer["choices"][0]["message"]["content"] == "Hello from the fake."
    sent = fake.last("/chat/completions").body
    assert sent["model"] == "gpt-fake-1" and sent["messages"] == messages


def test_a_stream_is_relayed_event_for_event(proxy: int) -> None:
    body = {"model": "other/gpt-fake-1", "messages": [{"role": "user", "content": "Hi"}]}
    status, kind, raw = post(proxy, {**body, "stream": True})
    assert status == 200 and kind == "text/event-stream"
    events = [line[6:] for line in raw.decode().split("\n") if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    text = "".join(
        choice["delta"].get("content") or ""
        for event in events[:-1]
        for choice in orjson.loads(event)["choices"]
    )
    assert text == "Hello from the fake."
