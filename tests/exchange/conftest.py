"""What the exchange's tests share: a transport of their own, the fake queue API."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest

from chatgate.exchange import Transport
from tests.fakes.job_server import JobState, build_app
from tests.fakes.openai_server import serve


@pytest.fixture()
async def transport() -> AsyncIterator[Transport]:
    """A transport of its own, closed after the test."""
    made = Transport()
    yield made
    await made.aclose()


@pytest.fixture(scope="module")
def queue_server() -> Iterator[JobState]:
    """The fake queue API (tests/fakes/job_server.py), one per module."""
    state = JobState()
    for url in serve(build_app(state)):
        state.url = url
        yield state


@pytest.fixture()
def queue(queue_server: JobState) -> JobState:
    """The fake queue API with its record cleared for this test."""
    queue_server.seen.clear()
    return queue_server
