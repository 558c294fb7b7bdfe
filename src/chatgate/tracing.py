"""Optional OpenTelemetry traces, with the GenAI semantic conventions' attribute names.

`Tracing` is a `chatgate.plan.Observer`: one span per request (kind SERVER, covering
every attempt, as the conventions ask of a retried operation) and a child span per
upstream attempt (kind CLIENT). Attributes are names, numbers and codes only: never a
prompt, an answer or a key. `install` turns it on only when ``opentelemetry`` imports
and tracing is asked for (``[server] otel = true``, or ``OTEL_EXPORTER_OTLP_ENDPOINT`` /
``OTEL_TRACES_EXPORTER`` set); without the package, chatgate runs as before.
docs/metrics.md lists the spans and their attributes.
"""

from __future__ import annotations

import importlib
import logging
import weakref
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from chatgate.plan import Attempt, Finished, Plan

if TYPE_CHECKING:
    from opentelemetry.trace import Span, Tracer

    from chatgate.backends.base import Backend
    from chatgate.gateway import Gateway

log = logging.getLogger("chatgate.tracing")

# chatgate's source names where the conventions have a well-known provider value.
PROVIDERS = {
    "openai": "openai",
    "azure": "azure.ai.openai",
    "anthropic": "anthropic",
    "gemini": "gcp.gemini",
    "vertex": "gcp.vertex_ai",
    "cohere": "cohere",
    "mistral": "mistral_ai",
    "groq": "groq",
    "deepseek": "deepseek",
    "xai": "x_ai",
    "perplexity": "perplexity",
}
MAX_OPEN_SPANS = 10_000  # request spans whose end was never seen are dropped past this


def _backend_attributes(backend: Backend) -> dict[str, Any]:
    """The provider and the upstream's address, from the backend's connection."""
    connection = getattr(backend, "connection", None)
    source = str(getattr(connection, "source", "") or "chatgate")
    provider = PROVIDERS.get(source, source)
    out: dict[str, Any] = {"gen_ai.provider.name": provider, "gen_ai.system": provider}
    adapter = getattr(backend, "adapter", None)
    base_url = getattr(adapter, "base_url", None) or getattr(connection, "base_url", None)
    if isinstance(base_url, str) and base_url:
        parts = urlsplit(base_url)
        if parts.hostname:  # never the userinfo: it may hold a key
            out["server.address"] = parts.hostname
            if parts.port:
                out["server.port"] = parts.port
    return out


def _request_attributes(attempt: Attempt) -> dict[str, Any]:
    request = attempt.request
    out: dict[str, Any] = {
        "gen_ai.operation.name": "chat",
        "gen_ai.request.model": request.model_name or request.model,
    }
    max_tokens = request.max_completion_tokens or request.max_tokens
    if max_tokens is not None:
        out["gen_ai.request.max_tokens"] = max_tokens
    if request.temperature is not None:
        out["gen_ai.request.temperature"] = request.temperature
    if request.top_p is not None:
        out["gen_ai.request.top_p"] = request.top_p
    return out


def _ended(span: Span, attempt: Attempt, result: Finished) -> None:
    """The outcome's attributes and status on *span*, then end it."""
    from opentelemetry.trace import Status, StatusCode

    usage = result.usage
    if usage is not None:
        span.set_attribute("gen_ai.usage.input_tokens", usage.prompt_tokens or 0)
        span.set_attribute("gen_ai.usage.output_tokens", usage.completion_tokens or 0)
    if result.outcome == "ok":
        span.set_attribute("gen_ai.response.model", attempt.request.model_name)
    else:
        kind = "cancelled" if result.outcome == "cancelled" else result.error_code
        span.set_attribute("error.type", kind or str(result.status))
        span.set_attribute("http.response.status_code", result.status)
        span.set_status(Status(StatusCode.ERROR))
    span.end()


class Tracing:
    """Spans for each request and each of its attempts."""

    def __init__(self, tracer: Tracer) -> None:
        self.tracer = tracer
        self._requests: dict[int, tuple[Plan, Span, int]] = {}
        self._attempts: dict[tuple[int, int], Span] = {}
        self._backends: dict[int, dict[str, Any]] = {}

    def started(self, plan: Plan, attempt: Attempt) -> None:
        """Open the request's span (on its first attempt), then the attempt's."""
        from opentelemetry.trace import SpanKind, set_span_in_context

        entry = self._requests.get(id(plan))
        if entry is None or entry[0] is not plan:
            if len(self._requests) >= MAX_OPEN_SPANS:
                self._requests.clear()
            attributes: dict[str, Any] = {
                "gen_ai.operation.name": "chat",
                "gen_ai.request.model": plan.request.model,
                "chatgate.door": plan.door,
                "gen_ai.request.stream": bool(plan.request.stream),
            }
            span = self.tracer.start_span(
                f"chat {plan.request.model}", kind=SpanKind.SERVER, attributes=attributes
            )
            entry = (plan, span, 0)
        entry = (plan, entry[1], entry[2] + 1)
        self._requests[id(plan)] = entry
        backend = self._backends.get(id(attempt.backend))
        if backend is None:
            backend = self._backends[id(attempt.backend)] = _backend_attributes(attempt.backend)
        attempt_attributes: dict[str, Any] = {
            **_request_attributes(attempt),
            **backend,
            "chatgate.connection": attempt.route,
            "chatgate.attempt": entry[2],
        }
        self._attempts[id(attempt), entry[2]] = self.tracer.start_span(
            f"chat {attempt_attributes['gen_ai.request.model']}",
            context=set_span_in_context(entry[1]),
            kind=SpanKind.CLIENT,
            attributes=attempt_attributes,
        )

    def finished(self, plan: Plan, attempt: Attempt, result: Finished) -> None:
        """End the attempt's span; the request's too when no attempt follows."""
        entry = self._requests.get(id(plan))
        number = entry[2] if entry is not None and entry[0] is plan else 1
        span = self._attempts.pop((id(attempt), number), None)
        if span is not None:
            _ended(span, attempt, result)
        if entry is None or entry[0] is not plan:
            return
        if result.final:  # no attempt follows (the runner's word)
            del self._requests[id(plan)]
            entry[1].set_attribute("chatgate.attempts", number)
            _ended(entry[1], attempt, result)


def wanted(enabled: bool, env: Mapping[str, str]) -> bool:
    """Whether traces are asked for: the config flag or the standard variables."""
    exporter = env.get("OTEL_TRACES_EXPORTER", "").strip().lower()
    if exporter == "none":
        return False
    return enabled or bool(exporter) or bool(env.get("OTEL_EXPORTER_OTLP_ENDPOINT"))


def _tracer(env: Mapping[str, str]) -> Tracer | None:
    """The process's tracer: the provider already set up (opentelemetry-instrument, a
    host application), else an SDK provider with the exporter the variables name."""
    try:
        from opentelemetry import trace
    except ImportError:
        log.warning("tracing is on but opentelemetry is not installed: pip install chatgate[otel]")
        return None
    if not isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider):
        return trace.get_tracer("chatgate")
    try:
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter
    except ImportError:
        log.warning("tracing is on but opentelemetry-sdk is not installed")
        return None
    exporter: Any
    if env.get("OTEL_TRACES_EXPORTER", "").strip().lower() == "console":
        exporter = ConsoleSpanExporter()
    else:
        try:  # an optional package of its own, not a dependency (no stubs to check)
            otlp = importlib.import_module("opentelemetry.exporter.otlp.proto.http.trace_exporter")
        except ImportError:
            log.warning("no OTLP exporter: pip install opentelemetry-exporter-otlp-proto-http")
            return None
        exporter = otlp.OTLPSpanExporter()  # reads OTEL_EXPORTER_OTLP_* itself
    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    return trace.get_tracer("chatgate")


_INSTALLED: weakref.WeakKeyDictionary[Gateway, Tracing] = weakref.WeakKeyDictionary()


def install(gateway: Gateway, enabled: bool, env: Mapping[str, str]) -> Tracing | None:
    """A `Tracing` observer on *gateway* when traces are asked for and possible."""
    if not wanted(enabled, env) or gateway in _INSTALLED:
        return _INSTALLED.get(gateway)
    tracer = _tracer(env)
    if tracer is None:
        return None
    tracing = _INSTALLED[gateway] = Tracing(tracer)
    gateway.observers.append(tracing)
    return tracing
