"""Prometheus metrics: an `Observer` of every attempt, plus two hooks the observer
cannot see for itself (a stream's first frame, and a limiter's 429).

Each `Metrics` owns a `CollectorRegistry` of its own, so several gateways in one process
(tests, the library) never share or collide on counters. The hot path pays a dict
lookup for the request's label children (cached per door, connection and model, never
rebuilt) and a few float additions; the engine's queue figures are read only when
``/metrics`` is scraped. docs/metrics.md lists every metric and its labels.
"""

from __future__ import annotations

import time
import weakref
from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from chatgate.plan import Attempt, Finished, Plan

if TYPE_CHECKING:
    from chatgate.gateway import Gateway

# Chat latency spans milliseconds (a cached mock) to minutes (a long local answer).
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)
# A plan whose end was never seen (an attempt said not final, and none followed) is
# forgotten once this many are open: memory stays bounded.
MAX_OPEN_PLANS = 10_000

_BY_GATEWAY: weakref.WeakKeyDictionary[Gateway, Metrics] = weakref.WeakKeyDictionary()


def status_class(result: Finished) -> str:
    """``2xx``, ``4xx``, ``5xx``, or ``cancelled`` (the client left)."""
    if result.outcome == "cancelled":
        return "cancelled"
    return f"{result.status // 100}xx"


class _Children:
    """The label children of one (door, connection, model): looked up once, kept."""

    __slots__ = ("duration", "requests", "stream_duration", "tokens_in", "tokens_out", "ttft")

    def __init__(self, metrics: Metrics, door: str, route: str, model: str) -> None:
        self.requests: dict[str, Counter] = {}
        self.duration = metrics.duration.labels(door, route, model, "false")
        self.stream_duration = metrics.duration.labels(door, route, model, "true")
        self.ttft = metrics.ttft.labels(door, route, model)
        self.tokens_in = metrics.tokens.labels(route, model, "in")
        self.tokens_out = metrics.tokens.labels(route, model, "out")


class _Flight:
    """One plan in flight: when it began, its attempts so far, the last one's route."""

    __slots__ = ("attempts", "first_frame", "model", "plan", "route", "started")

    def __init__(self, plan: Plan, route: str, model: str) -> None:
        self.plan = plan  # kept to tell a reused id() from the same plan
        self.started = time.perf_counter()
        self.attempts = 1
        self.route, self.model = route, model
        self.first_frame = False


class _EngineQueue(Collector):
    """The local engine's busy slots and waiting requests, read at scrape time."""

    def __init__(self, gateway: Gateway) -> None:
        self.gateway = weakref.ref(gateway)

    def collect(self) -> Iterator[Metric]:
        """One gauge family each for busy and waiting, a sample per engine connection."""
        busy = GaugeMetricFamily(
            "chatgate_engine_busy", "Engine slots generating now", labels=["connection"]
        )
        waiting = GaugeMetricFamily(
            "chatgate_engine_waiting", "Requests queued for an engine slot", labels=["connection"]
        )
        gateway = self.gateway()
        if gateway is not None:
            for name, status in gateway.health().items():
                if "busy" in status and "waiting" in status:
                    busy.add_metric([name], float(status["busy"]))
                    waiting.add_metric([name], float(status["waiting"]))
        yield busy
        yield waiting


class Metrics:
    """Every chatgate metric, in a registry of its own; an `Observer` of attempts."""

    def __init__(self, gateway: Gateway | None = None) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "chatgate_requests",
            "Chat requests that reached an upstream, counted when they end",
            ["door", "connection", "model", "status"],
            registry=r,
        )
        self.duration = Histogram(
            "chatgate_request_duration_seconds",
            "Whole request time, first attempt to last byte",
            ["door", "connection", "model", "streamed"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.ttft = Histogram(
            "chatgate_time_to_first_token_seconds",
            "Streams: request start to the first frame sent",
            ["door", "connection", "model"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.tokens = Counter(
            "chatgate_tokens",
            "Tokens the upstreams reported, in (prompt) and out (completion)",
            ["connection", "model", "direction"],
            registry=r,
        )
        self.upstream_errors = Counter(
            "chatgate_upstream_errors",
            "Attempts that failed, by the error's code (or its status)",
            ["connection", "code"],
            registry=r,
        )
        self.retries = Counter(
            "chatgate_retries",
            "Attempts beyond the first on the same connection and model",
            ["connection", "model"],
            registry=r,
        )
        self.fallbacks = Counter(
            "chatgate_fallbacks",
            "Attempts beyond the first on another connection or model (the one tried)",
            ["connection", "model"],
            registry=r,
        )
        self.rejections = Counter(
            "chatgate_rejections",
            "429s chatgate itself answered (its own limits), by door",
            ["door"],
            registry=r,
        )
        self.open_streams = Gauge(
            "chatgate_open_streams", "Streamed attempts in progress now", registry=r
        )
        self._children: dict[tuple[str, str, str], _Children] = {}
        self._flights: dict[int, _Flight] = {}
        if gateway is not None:
            r.register(_EngineQueue(gateway))
            _BY_GATEWAY[gateway] = self

    # --- the Observer ----------------------------------------------------------------

    def started(self, plan: Plan, attempt: Attempt) -> None:
        """A new plan begins its flight; a later attempt is a retry or a fallback."""
        route, model = attempt.route, attempt.request.model_name or plan.request.model
        if plan.request.stream:
            self.open_streams.inc()
        flight = self._flights.get(id(plan))
        if flight is None or flight.plan is not plan:
            if len(self._flights) >= MAX_OPEN_PLANS:
                self._flights.clear()
            self._flights[id(plan)] = _Flight(plan, route, model)
            return
        flight.attempts += 1
        same = route == flight.route and model == flight.model
        (self.retries if same else self.fallbacks).labels(route, model).inc()
        flight.route, flight.model = route, model

    def finished(self, plan: Plan, attempt: Attempt, result: Finished) -> None:
        """Count the attempt's tokens or error; the request's figures if it was the last."""
        if plan.request.stream:
            self.open_streams.dec()
        flight = self._flights.get(id(plan))
        route = attempt.route
        model = attempt.request.model_name or plan.request.model
        children = self._children.get((plan.door, route, model))
        if children is None:
            children = self._children[(plan.door, route, model)] = _Children(
                self, plan.door, route, model
            )
        usage = result.usage
        if usage is not None:
            children.tokens_in.inc(usage.prompt_tokens or 0)
            children.tokens_out.inc(usage.completion_tokens or 0)
        if result.outcome == "error":
            self.upstream_errors.labels(route, result.error_code or str(result.status)).inc()
        if not self._final(plan, attempt, result, flight):
            return
        if flight is not None and flight.plan is plan:
            del self._flights[id(plan)]
            seconds = time.perf_counter() - flight.started
        else:
            seconds = result.seconds
        status = status_class(result)
        counter = children.requests.get(status)
        if counter is None:
            counter = children.requests[status] = self.requests.labels(
                plan.door, route, model, status
            )
        counter.inc()
        (children.stream_duration if plan.request.stream else children.duration).observe(seconds)

    @staticmethod
    def _final(plan: Plan, attempt: Attempt, result: Finished, flight: _Flight | None) -> bool:
        """Whether no attempt follows this one: the runner says so (``final``), and a
        stream that has sent its first frame is never retried."""
        return result.final or (flight is not None and flight.first_frame)

    # --- the hooks -------------------------------------------------------------------

    def first_frame(self, plan: Plan) -> None:
        """A stream's first frame is leaving: time to first token."""
        flight = self._flights.get(id(plan))
        if flight is None or flight.plan is not plan or flight.first_frame:
            return
        flight.first_frame = True
        route, model = flight.route, flight.model
        children = self._children.get((plan.door, route, model))
        if children is None:
            children = self._children[(plan.door, route, model)] = _Children(
                self, plan.door, route, model
            )
        children.ttft.observe(time.perf_counter() - flight.started)

    def count_rejection(self, door: str) -> None:
        """One 429 chatgate answered itself (a key's or the server's limit)."""
        self.rejections.labels(door).inc()

    def exposition(self) -> bytes:
        """The registry in Prometheus' text format."""
        return generate_latest(self.registry)


def metrics_of(gateway: Gateway) -> Metrics | None:
    """The `Metrics` watching *gateway*, if any."""
    return _BY_GATEWAY.get(gateway)


def first_frame(gateway: Gateway, plan: Plan) -> None:
    """Tell *gateway*'s metrics that *plan*'s stream sent its first frame."""
    metrics = _BY_GATEWAY.get(gateway)
    if metrics is not None:
        metrics.first_frame(plan)


def count_rejection(gateway: Gateway, door: str) -> None:
    """Count a 429 chatgate raised itself on *door* (for the limits code to call)."""
    metrics = _BY_GATEWAY.get(gateway)
    if metrics is not None:
        metrics.count_rejection(door)


def install(gateway: Gateway) -> Metrics:
    """A `Metrics` for *gateway*, added to its observers (once)."""
    metrics = _BY_GATEWAY.get(gateway)
    if metrics is None:
        metrics = Metrics(gateway)
        gateway.observers.append(metrics)
    return metrics
