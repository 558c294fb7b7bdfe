"""Jobs against the fake queue API: submit, poll, and the cancel request on every way out
but a finished poll (the caller's cancellation, the total, a failed poll)."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any

import pytest

from chatgate.errors import GatewayTimeoutError, NotFoundError, RateLimitError, UpstreamError
from chatgate.exchange import Job, Timeouts, Transport
from chatgate.exchange.jobs import run_job
from chatgate.upstream import UpstreamRequest
from tests.fakes.job_server import JobState
from tests.fakes.raw_upstream import unused_url

SECRET = "sk-test-queue-secret-1234abcd"
QUICK = Timeouts(read=2, total=2)


@dataclass
class QueueJob:
    """A job of the fake queue, as an adapter would describe it."""

    base: str
    spec: dict[str, Any]
    interval: float = 0.02
    cancel_url: str | None = None  # where the cancel goes (None: the queue's DELETE)
    cancels: bool = True

    @property
    def submit(self) -> UpstreamRequest:
        """Queue the job."""
        return UpstreamRequest("POST", f"{self.base}/jobs", {"apikey": SECRET}, self.spec)

    def poll(self, submitted: Any) -> UpstreamRequest:
        """Ask how it stands."""
        return UpstreamRequest("GET", f"{self.base}/jobs/{submitted['id']}", {"apikey": SECRET})

    def finished(self, polled: Any) -> bool:
        """Done when the queue says so."""
        return bool(polled["done"])

    def cancel(self, submitted: Any) -> UpstreamRequest | None:
        """Withdraw it, if this job may be withdrawn."""
        if not self.cancels:
            return None
        url = self.cancel_url or f"{self.base}/jobs/{submitted['id']}"
        return UpstreamRequest("DELETE", url, {"apikey": SECRET})

    def progress(self, polled: Any) -> str | None:
        """How many polls it has had."""
        return f"polled {polled['polls']} times"


def test_the_description_is_a_job() -> None:
    job: Job = QueueJob("http://q", {})  # mypy checks the protocol here
    assert job.interval == 0.02


async def test_polls_until_finished_and_returns_the_last_answer(
    transport: Transport, queue: JobState
) -> None:
    job = QueueJob(queue.url, {"polls": 3})
    answer = await transport.run_job(job, "horde", QUICK, [SECRET])
    assert answer == {"id": answer["id"], "done": True, "polls": 3, "result": "the answer"}
    assert queue.saw("GET") == [f"/jobs/{answer['id']}"] * 3
    assert queue.saw("DELETE") == []


async def test_a_bare_number_works_too(transport: Transport, queue: JobState) -> None:
    answer = await run_job(transport, QueueJob(queue.url, {"polls": 1}), "horde", 5, [], 1 << 20)
    assert answer["done"] is True


async def test_a_job_that_never_finishes_ends_at_its_total_and_is_withdrawn(
    transport: Transport, queue: JobState
) -> None:
    job = QueueJob(queue.url, {"polls": None})
    with pytest.raises(GatewayTimeoutError) as caught:
        await transport.run_job(job, "horde", Timeouts(read=2, total=0.2), [SECRET])
    assert (caught.value.status, caught.value.code) == (504, "upstream_deadline")
    assert caught.value.message == (
        "connection 'horde': the job did not finish within its total timeout (0.2 s)"
    )
    polled = queue.saw("GET")
    assert polled and queue.saw("DELETE") == [polled[0]]


async def test_the_total_also_ends_a_poll_under_way(transport: Transport, queue: JobState) -> None:
    job = QueueJob(queue.url, {"polls": 1, "poll_delay": 0.6})
    with pytest.raises(GatewayTimeoutError) as caught:
        await transport.run_job(job, "horde", Timeouts(read=5, total=0.2), [])
    assert caught.value.code == "upstream_deadline"
    assert len(queue.saw("DELETE")) == 1


async def test_a_poll_slower_than_first_byte_is_a_504_and_the_job_is_withdrawn(
    transport: Transport, queue: JobState
) -> None:
    job = QueueJob(queue.url, {"polls": 1, "poll_delay": 0.8})
    with pytest.raises(GatewayTimeoutError) as caught:
        await transport.run_job(job, "horde", Timeouts(first_byte=0.1, read=5), [])
    assert caught.value.code == "timeout"
    assert "within 0.1 s (first_byte timeout)" in caught.value.message
    assert len(queue.saw("DELETE")) == 1


async def test_the_callers_cancellation_withdraws_the_job_then_goes_on(
    transport: Transport, queue: JobState
) -> None:
    job = QueueJob(queue.url, {"polls": None})
    task = asyncio.create_task(transport.run_job(job, "horde", QUICK, []))
    await asyncio.sleep(0.2)  # submitted and polled a few times by now
    assert queue.saw("GET")
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    # The withdrawal was sent before the cancellation went on.
    assert len(queue.saw("DELETE")) == 1


@pytest.mark.parametrize(("status", "error"), [(429, RateLimitError), (404, NotFoundError)])
async def test_an_error_answer_to_a_poll_is_classified(
    transport: Transport, queue: JobState, status: int, error: type[Exception]
) -> None:
    job = QueueJob(queue.url, {"polls": 1, "poll_status": status})
    with pytest.raises(error) as caught:
        await transport.run_job(job, "horde", QUICK, [])
    assert "connection 'horde': upstream answered" in str(caught.value)
    assert "the queue is unhappy" in str(caught.value)
    if isinstance(caught.value, RateLimitError):
        assert caught.value.headers == {"Retry-After": "3"}
    assert len(queue.saw("DELETE")) == 1


async def test_an_error_answer_to_the_submit_needs_no_withdrawal(
    transport: Transport, queue: JobState
) -> None:
    job = QueueJob(queue.url + "/nowhere", {"polls": 1})
    with pytest.raises(NotFoundError):
        await transport.run_job(job, "horde", QUICK, [])
    assert queue.saw("DELETE") == [] and queue.saw("GET") == []


async def test_a_job_without_a_cancel_request_just_ends(
    transport: Transport, queue: JobState
) -> None:
    job = QueueJob(queue.url, {"polls": None}, cancels=False)
    with pytest.raises(GatewayTimeoutError):
        await transport.run_job(job, "horde", Timeouts(read=2, total=0.1), [])
    assert queue.saw("DELETE") == []


async def test_a_failed_cancel_is_logged_masked_and_never_hides_the_cause(
    transport: Transport, queue: JobState, caplog: pytest.LogCaptureFixture
) -> None:
    job = QueueJob(queue.url, {"polls": None}, cancel_url=unused_url() + "/jobs/x")
    with (
        caplog.at_level(logging.WARNING, "chatgate.exchange"),
        pytest.raises(GatewayTimeoutError) as caught,
    ):
        await transport.run_job(job, "horde", Timeouts(read=2, total=0.1), [SECRET])
    assert caught.value.code == "upstream_deadline"
    assert "connection 'horde': the cancel request failed: connection 'horde': cannot reach" in (
        caplog.text
    )


async def test_a_cancel_that_cannot_even_be_built_is_logged_masked(
    transport: Transport, queue: JobState, caplog: pytest.LogCaptureFixture
) -> None:
    class Broken(QueueJob):
        def cancel(self, submitted: Any) -> UpstreamRequest | None:
            raise ValueError(f"no cancel for key {SECRET}")

    job = Broken(queue.url, {"polls": 1, "poll_status": 500})
    with caplog.at_level(logging.WARNING, "chatgate.exchange"), pytest.raises(UpstreamError):
        await transport.run_job(job, "horde", QUICK, [SECRET])
    assert "the cancel request failed: no cancel for key sk-" in caplog.text
    assert SECRET not in caplog.text
