"""Queued upstream tasks: submit, poll until finished, cancel when abandoned.

A queue API (AI Horde's, say) answers a submit with an id, a poll with the state of the
task, and withdraws a task on request. The adapter describes that as a `Job` (pure, in
`chatgate.upstream`); `run_job` does the I/O. Every request of a job is bounded by the
job's connect, first_byte and read timeouts, and all of them together, with the pauses
between polls, by its total (`JOB_DEADLINE` when none is given): past it, a 504
``upstream_deadline``.

Once the submit has been answered, every way out but a finished poll sends the job's
cancel request (best effort, `CANCEL_TIMEOUTS`, failures logged and never raised): the
caller cancelled (the client left), the total passed, a poll failed or ``finished``
raised. Then the original outcome goes on: the cancellation, the 504, the error.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from chatgate.exchange.timeouts import JOB_DEADLINE, Clock, Timeouts
from chatgate.upstream import Job

if TYPE_CHECKING:
    from chatgate.exchange.transport import Transport

__all__ = ["JOB_DEADLINE", "Job", "run_job"]


async def run_job(
    transport: Transport,
    job: Job,
    connection: str,
    timeouts: float | Timeouts,
    secrets: list[str],
    max_response_bytes: int,
    on_progress: Callable[[str], None] | None = None,
) -> Any:
    """Submit *job*, poll it every ``job.interval`` seconds until ``job.finished``, and
    return that poll's JSON answer; a non-2xx answer raises as `classify_error` says.
    After each unfinished poll, *on_progress* hears ``job.progress``."""
    clock = Clock.of(timeouts, "job")
    submitted = await transport.exchange_json(
        job.submit, connection, clock, secrets, max_response_bytes
    )
    try:
        while True:
            polled = await transport.exchange_json(
                job.poll(submitted), connection, clock, secrets, max_response_bytes
            )
            if job.finished(polled):
                return polled
            if on_progress is not None:
                said = job.progress(polled)
                if said:
                    on_progress(said)
            try:
                # Only the total bounds a pause: its own length is the job's choice.
                async with clock.wait("read", bounded=False):
                    await asyncio.sleep(job.interval)
            except TimeoutError:
                raise clock.past_end(connection) from None
    except (Exception, asyncio.CancelledError):
        await transport.fire(lambda: job.cancel(submitted), connection, secrets)
        raise
