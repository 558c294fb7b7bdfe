"""``GET /metrics`` after real requests through the fake upstream: counts, histograms,
tokens, errors, the open-streams gauge, and the key it needs."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace

import pytest
from prometheus_client.parser import text_string_to_metric_families

from chatgate.config import Connection, Settings
from chatgate.gateway import Gateway
from chatgate.metrics import Metrics
from chatgate.plan import Finished, Plan
from tests.conftest import GATEWAY_KEY, LiveServer, start_server
from tests.fakes.openai_server import FakeOpenAI

USER = [{"role": "user", "content": "Hi"}]


@pytest.fixture(scope="module")
def server(fake_openai: FakeOpenAI) -> Iterator[LiveServer]:
    connection = Connection(
        name="fake", source="openai", base_url=f"{fake_openai.url}/v1", api_key="sk-fake-123456"
    )
    retrying = connection.model_copy(update={"name": "retry", "retries": 2})
    settings = Settings(connections=[connection, retrying], embedded=False)
    settings.server.api_keys = [GATEWAY_KEY]
    info, uv, thread = start_server(settings)
    yield info
    uv.should_exit = True
    thread.join(timeout=10)


def samples(server: LiveServer) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample of /metrics, by name and labels."""
    with server.client() as client:
        answer = client.get("/metrics")
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"].startswith("text/plain")
    out = {}
    for family in text_string_to_metric_families(answer.text):
        for sample in family.samples:
            out[sample.name, frozenset(sample.labels.items())] = sample.value
    return out


def value(
    found: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str
) -> float:
    """The sample *name* with exactly *labels*, 0 when absent."""
    return found.get((name, frozenset(labels.items())), 0.0)


def test_requests_tokens_latency_and_streams_are_counted(server: LiveServer) -> None:
    before = samples(server)
    with server.client() as client:
        for _ in range(3):
            answer = client.post(
                "/v1/chat/completions", json={"model": "fake/gpt-fake-1", "messages": USER}
            )
            assert answer.status_code == 200, answer.text
        with client.stream(
            "POST",
            "/v1/chat/completions",
            json={
                "model": "fake/gpt-fake-1",
                "messages": USER,
                "stream": True,
                "stream_options": {"include_usage": True},
            },
        ) as stream:
            assert stream.status_code == 200
            assert b"[DONE]" in b"".join(stream.iter_bytes())
        failed = client.post(
            "/v1/chat/completions", json={"model": "fake/error-500", "messages": USER}
        )
        assert failed.status_code >= 500
    after = samples(server)

    def grew(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    ok = {"door": "openai", "connection": "fake", "model": "gpt-fake-1", "status": "2xx"}
    assert grew("chatgate_requests_total", **ok) == 4
    bad = {**ok, "model": "error-500", "status": "5xx"}
    assert grew("chatgate_requests_total", **bad) == 1
    plain = {"door": "openai", "connection": "fake", "model": "gpt-fake-1", "streamed": "false"}
    assert grew("chatgate_request_duration_seconds_count", **plain) == 3
    assert grew("chatgate_request_duration_seconds_bucket", **plain, le="+Inf") == 3
    assert grew("chatgate_request_duration_seconds_sum", **plain) > 0
    streamed = {**plain, "streamed": "true"}
    assert grew("chatgate_request_duration_seconds_count", **streamed) == 1
    first = {"door": "openai", "connection": "fake", "model": "gpt-fake-1"}
    assert grew("chatgate_time_to_first_token_seconds_count", **first) == 1
    tokens = {"connection": "fake", "model": "gpt-fake-1"}
    assert grew("chatgate_tokens_total", **tokens, direction="in") == 4 * 11
    assert grew("chatgate_tokens_total", **tokens, direction="out") == 4 * 4
    errors = [k for k in after if k[0] == "chatgate_upstream_errors_total"]
    assert errors and all(dict(k[1])["connection"] == "fake" for k in errors)
    assert value(after, "chatgate_open_streams") == 0
    # Buckets are cumulative: each one at least the one before.
    counts = sorted(
        (float(dict(k[1])["le"]), v)
        for k, v in after.items()
        if k[0] == "chatgate_request_duration_seconds_bucket" and k[1] >= frozenset(plain.items())
    )
    assert [v for _, v in counts] == sorted(v for _, v in counts)


def test_metrics_need_the_key(server: LiveServer) -> None:
    with server.client() as client:
        client.headers.pop("Authorization")
        assert client.get("/metrics").status_code == 401


def three_attempts() -> Plan:
    """A plan of connection a's model m twice, then b's m2 (the retry and fallback shape)."""
    connections = [
        Connection(name=n, source="custom", base_url="http://127.0.0.1:9/v1", models=[m])
        for n, m in (("a", "m"), ("b", "m2"))
    ]
    gateway = Gateway(Settings(connections=connections, embedded=False))
    plan = gateway.prepare({"model": "a/m", "messages": USER})
    first = plan.first
    other = replace(first, route="b", request=first.request.model_copy(update={"model": "b/m2"}))
    plan.attempts = (first, replace(first), other)
    return plan


def test_retries_fallbacks_and_rejections_count_from_the_observer_calls() -> None:
    metrics = Metrics()
    plan = three_attempts()
    other = plan.attempts[-1]
    for attempt in plan.attempts[:-1]:
        metrics.started(plan, attempt)
        failed = Finished("error", 0.01, status=503, error_code="busy", final=False)
        metrics.finished(plan, attempt, failed)
    metrics.started(plan, other)
    metrics.finished(plan, other, Finished("ok", 0.01))
    metrics.count_rejection("openai")
    text = metrics.exposition().decode()
    assert 'chatgate_retries_total{connection="a",model="m"} 1.0' in text
    assert 'chatgate_fallbacks_total{connection="b",model="m2"} 1.0' in text
    assert 'chatgate_upstream_errors_total{code="busy",connection="a"} 2.0' in text
    assert 'chatgate_rejections_total{door="openai"} 1.0' in text
    # One request, counted once, by the attempt that answered.
    assert (
        'chatgate_requests_total{connection="b",door="library",model="m2",status="2xx"} 1.0' in text
    )
    assert "chatgate_requests_total{" + 'connection="a"' not in text


def test_retries_through_the_resilient_runner_count_once_per_request(server: LiveServer) -> None:
    before = samples(server)
    with server.client() as client:
        failed = client.post(
            "/v1/chat/completions", json={"model": "retry/error-503", "messages": USER}
        )
    assert failed.status_code == 502, failed.text  # an upstream error, as chatgate says it
    after = samples(server)

    def grew(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert grew("chatgate_retries_total", connection="retry", model="error-503") == 2
    request = {"door": "openai", "connection": "retry", "model": "error-503", "status": "5xx"}
    assert grew("chatgate_requests_total", **request) == 1
    errors = sum(
        v - before.get(k, 0.0)
        for k, v in after.items()
        if k[0] == "chatgate_upstream_errors_total" and ("connection", "retry") in k[1]
    )
    assert errors == 3
