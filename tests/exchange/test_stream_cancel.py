"""The streams' cancel hook: sent when we stop before the upstream ended the stream (the
consumer closed it or was cancelled, a bound of ours passed), never when the stream
ended or the upstream failed; sent best effort, its failures logged and swallowed."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncGenerator
from typing import Any, Literal

import pytest

from chatgate.errors import GatewayTimeoutError, RateLimitError, UpstreamError
from chatgate.exchange import Timeouts, Transport
from chatgate.upstream import UpstreamRequest
from tests.fakes.job_server import JobState
from tests.fakes.raw_upstream import Mode, RawUpstream, unused_url

SECRET = "sk-test-stream-secret-5678efgh"
Framing = Literal["sse", "ndjson"]


def events(queue: JobState, framing: Framing = "sse", **query: object) -> UpstreamRequest:
    """A stream request to the fake queue's ``/events``."""
    params = "&".join(f"{k}={v}" for k, v in {**query, "framing": framing}.items())
    return UpstreamRequest("POST", f"{queue.url}/events?{params}", stream=True)


def hook(queue: JobState) -> UpstreamRequest:
    """The cancel request: recorded by the fake, nothing else."""
    return UpstreamRequest("POST", f"{queue.url}/cancel/gen-1", {"authorization": SECRET})


def opened(
    transport: Transport,
    request: UpstreamRequest,
    framing: Framing,
    on_cancel: UpstreamRequest | None,
    timeouts: Timeouts | float = 5.0,
) -> AsyncGenerator[Any, None]:
    """The stream of *request* in *framing*, with its cancel hook."""
    method = transport.stream_sse if framing == "sse" else transport.stream_ndjson
    return method(request, "up", timeouts, [SECRET], on_cancel=on_cancel)


@pytest.mark.parametrize("framing", ["sse", "ndjson"])
async def test_closing_a_stream_early_sends_the_cancel(
    transport: Transport, queue: JobState, framing: Framing
) -> None:
    stream = opened(transport, events(queue, framing, count=50, every=0.05), framing, hook(queue))
    assert await anext(stream) is not None
    async with asyncio.timeout(2):
        await stream.aclose()
    assert queue.saw("POST", "/cancel") == ["/cancel/gen-1"]


async def test_a_cancelled_consumer_sends_the_cancel(transport: Transport, queue: JobState) -> None:
    async def consume(got: list[Any]) -> None:
        async for item in opened(transport, events(queue, every=0.4, count=9), "sse", hook(queue)):
            got.append(item)

    got: list[Any] = []
    task = asyncio.create_task(consume(got))
    await asyncio.sleep(0.2)  # the first event came; the second is 0.4 s off
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert len(got) == 1
    assert queue.saw("POST", "/cancel") == ["/cancel/gen-1"]


@pytest.mark.parametrize("framing", ["sse", "ndjson"])
async def test_a_stream_read_to_its_end_sends_nothing(
    transport: Transport, queue: JobState, framing: Framing
) -> None:
    stream = opened(transport, events(queue, framing, count=3), framing, hook(queue))
    assert len([item async for item in stream]) == 3
    assert queue.saw("POST", "/cancel") == []


async def test_stopping_at_the_last_event_of_an_ended_stream_sends_nothing(
    transport: Transport, queue: JobState
) -> None:
    """A consumer that stops at the logical end ([DONE], say) leaves only the body's end
    unread: that is no abandoned stream."""
    stream = opened(transport, events(queue, count=3), "sse", hook(queue))
    got = [await anext(stream) for _ in range(3)]
    await stream.aclose()
    assert len(got) == 3
    assert queue.saw("POST", "/cancel") == []


@pytest.mark.parametrize(
    ("mode", "error"), [("rate_limited", RateLimitError), ("cut", UpstreamError)]
)
async def test_an_upstream_failure_sends_nothing(
    transport: Transport, queue: JobState, mode: Mode, error: type[Exception]
) -> None:
    async with RawUpstream(cut_after=2) as raw:
        raw.mode = mode
        request = UpstreamRequest("POST", raw.url + "/chat/completions", {}, {"stream": True})
        with pytest.raises(error):
            async for _ in opened(transport, request, "sse", hook(queue)):
                pass
    assert queue.saw("POST", "/cancel") == []


async def test_a_bound_of_ours_passing_sends_the_cancel(
    transport: Transport, queue: JobState
) -> None:
    request = events(queue, count=50, every=0.05)
    stream = opened(transport, request, "sse", hook(queue), Timeouts(read=2, total=0.1))
    with pytest.raises(GatewayTimeoutError) as caught:
        async for _ in stream:
            pass
    assert caught.value.code == "stream_deadline"
    assert queue.saw("POST", "/cancel") == ["/cancel/gen-1"]


async def test_without_a_hook_closing_early_sends_nothing(
    transport: Transport, queue: JobState
) -> None:
    stream = opened(transport, events(queue, count=50, every=0.05), "sse", None)
    await anext(stream)
    await stream.aclose()
    assert queue.saw("POST", "/cancel") == []


async def test_a_failed_cancel_is_swallowed_and_logged_masked(
    transport: Transport, queue: JobState, caplog: pytest.LogCaptureFixture
) -> None:
    unreachable = UpstreamRequest("POST", f"{unused_url()}/cancel?key={SECRET}")
    stream = opened(transport, events(queue, count=50, every=0.05), "sse", unreachable)
    await anext(stream)
    with caplog.at_level(logging.WARNING, "chatgate.exchange"):
        await stream.aclose()
    assert "connection 'up': the cancel request failed: connection 'up': cannot reach" in (
        caplog.text
    )
    assert SECRET not in caplog.text


async def test_a_cancel_answered_with_an_error_is_logged(
    transport: Transport, queue: JobState, caplog: pytest.LogCaptureFixture
) -> None:
    refused = UpstreamRequest("POST", f"{queue.url}/nowhere")
    stream = opened(transport, events(queue, count=50, every=0.05), "sse", refused)
    await anext(stream)
    with caplog.at_level(logging.WARNING, "chatgate.exchange"):
        await stream.aclose()
    assert "connection 'up': the cancel request answered 404" in caplog.text
