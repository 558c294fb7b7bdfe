"""The embedded engine's load: the least busy serving worker takes a request (the first
on a tie), and past ``parallel + max_queue`` sequences a request is a 503."""

from __future__ import annotations

from types import SimpleNamespace
from typing import cast

import pytest

from chatgate.backends.local_load import WorkerLoad
from chatgate.config import Connection
from chatgate.config_sections import EngineOptions
from chatgate.engine.client import WorkerClient
from chatgate.errors import OverloadedError
from chatgate.types import ChatRequest


def workers(*serving: bool, parallel: int = 4) -> list[WorkerClient]:
    settings = SimpleNamespace(parallel=parallel)
    return [
        cast(
            WorkerClient, SimpleNamespace(supervisor=SimpleNamespace(serving=s, settings=settings))
        )
        for s in serving
    ]


def load(*serving: bool, parallel: int = 4, max_queue: int = 2) -> WorkerLoad:
    engine = EngineOptions(parallel=parallel, max_queue=max_queue)
    connection = Connection(name="local", source="local", engine=engine)
    return WorkerLoad(connection, workers(*serving, parallel=parallel))


def request(n: int | None = None, best_of: int | None = None) -> ChatRequest:
    return ChatRequest.model_validate(
        {"model": "m", "messages": [{"role": "user", "content": "hi"}], "n": n, "best_of": best_of}
    )


@pytest.mark.parametrize(
    ("serving", "per_worker", "picked"),
    [
        ((True, True, True), [0, 0, 0], 0),  # a tie: the first, for its prompt cache
        ((True, True, True), [2, 1, 1], 1),
        ((False, True, True), [0, 3, 2], 2),  # only serving workers count
        ((False, False), [5, 1], 1),  # none serves: the least busy of all
    ],
)
def test_pick_is_the_least_busy_serving_worker(
    serving: tuple[bool, ...], per_worker: list[int], picked: int
) -> None:
    spread = load(*serving)
    spread.per_worker = per_worker
    assert spread.pick() == picked


def test_a_request_is_counted_on_its_worker_while_it_runs() -> None:
    spread = load(True, True)
    with spread.least_busy(3) as first:
        assert first is spread.workers[0] and spread.per_worker == [3, 0]
        with spread.least_busy(1) as second:
            assert second is spread.workers[1] and spread.per_worker == [3, 1]
    assert spread.per_worker == [0, 0]


def test_past_parallel_and_the_queue_a_request_is_a_503() -> None:
    spread = load(True, parallel=2, max_queue=1)
    weights = [spread.admit(request()), spread.admit(request(n=2))]
    assert weights == [1, 2] and spread.inflight == 3
    with pytest.raises(OverloadedError) as refused:
        spread.admit(request())
    assert refused.value.status == 503 and refused.value.headers["Retry-After"] == "1"
    assert "3 sequences running or waiting" in refused.value.message
    spread.release(2)
    assert spread.admit(request(best_of=2)) == 2  # best_of counts its candidates


def test_one_request_bigger_than_the_engine_still_runs_alone() -> None:
    spread = load(True, parallel=1, max_queue=0)
    assert spread.admit(request(n=4)) == 4  # alone, it queues inside the engine
    with pytest.raises(OverloadedError):
        spread.admit(request())


def test_slots_are_the_fewest_of_any_worker() -> None:
    assert load(True, True, parallel=3).slots() == 3
