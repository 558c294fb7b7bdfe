"""OpenTelemetry spans through the fake upstream, caught by the SDK's in-memory exporter:
the GenAI attribute names and values, the parent-child shape, and no prompt or key."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from chatgate.config import Connection, Settings
from chatgate.errors import ChatgateError
from chatgate.gateway import Gateway
from chatgate.tracing import Tracing, wanted
from tests.fakes.openai_server import FakeOpenAI

PROMPT = "the secret plans for tuesday"
KEY = "sk-tracing-key-0123456789"


def traced(fake: FakeOpenAI) -> tuple[Gateway, InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    connection = Connection(name="fake", source="openai", base_url=f"{fake.url}/v1", api_key=KEY)
    gateway = Gateway(Settings(connections=[connection], embedded=False))
    gateway.observers.append(Tracing(provider.get_tracer("test")))
    return gateway, exporter


def no_secrets(spans: tuple[ReadableSpan, ...]) -> None:
    for span in spans:
        for value in (span.attributes or {}).values():
            assert PROMPT not in str(value) and KEY not in str(value)


def test_a_request_and_its_attempt_carry_the_genai_attributes(fake: FakeOpenAI) -> None:
    gateway, exporter = traced(fake)
    body: dict[str, Any] = {
        "model": "fake/gpt-fake-1",
        "messages": [{"role": "user", "content": PROMPT}],
        "max_tokens": 32,
        "temperature": 0.5,
    }
    asyncio.run(gateway.chat(body))
    spans = exporter.get_finished_spans()
    attempt, request = spans  # the child ends first
    assert request.kind is SpanKind.SERVER and attempt.kind is SpanKind.CLIENT
    assert attempt.parent is not None and attempt.parent.span_id == request.context.span_id
    assert request.name == "chat fake/gpt-fake-1" and attempt.name == "chat gpt-fake-1"
    a = dict(attempt.attributes or {})
    assert a["gen_ai.operation.name"] == "chat"
    assert a["gen_ai.provider.name"] == "openai"
    assert a["gen_ai.request.model"] == "gpt-fake-1"
    assert a["gen_ai.response.model"] == "gpt-fake-1"
    assert a["gen_ai.request.max_tokens"] == 32
    assert a["gen_ai.request.temperature"] == 0.5
    assert a["gen_ai.usage.input_tokens"] == 11 and a["gen_ai.usage.output_tokens"] == 4
    assert a["server.address"] == "127.0.0.1"
    r = dict(request.attributes or {})
    assert r["gen_ai.request.model"] == "fake/gpt-fake-1" and r["chatgate.attempts"] == 1
    assert r["gen_ai.usage.output_tokens"] == 4
    no_secrets(spans)


def test_a_failed_stream_has_error_type(fake: FakeOpenAI) -> None:
    gateway, exporter = traced(fake)

    async def run() -> None:
        plan = gateway.prepare(
            {
                "model": "fake/error-503",
                "messages": [{"role": "user", "content": PROMPT}],
                "stream": True,
            }
        )
        with pytest.raises(ChatgateError):
            async for _ in gateway.run_stream(plan):
                pass

    asyncio.run(run())
    spans = exporter.get_finished_spans()
    assert len(spans) == 2
    for span in spans:
        assert span.status.status_code is StatusCode.ERROR
        assert (span.attributes or {})["error.type"]
    no_secrets(spans)


def test_traces_are_off_unless_asked_for() -> None:
    assert not wanted(False, {})
    assert wanted(True, {})
    assert wanted(False, {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"})
    assert not wanted(True, {"OTEL_TRACES_EXPORTER": "none"})
