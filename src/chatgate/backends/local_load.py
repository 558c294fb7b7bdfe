"""How the embedded engine's work is spread and bounded: which worker process a request
goes to, and how many sequences the engine holds at once (`chatgate.backends.local`).

A sequence is one choice being generated (``n`` and ``best_of`` count each). The engine
admits up to ``parallel + max_queue`` of them; past that a request is a 503 with
``Retry-After: 1`` rather than a wait nobody bounded.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence

from chatgate.config import Connection
from chatgate.engine.client import WorkerClient
from chatgate.errors import OverloadedError
from chatgate.types import ChatRequest


class WorkerLoad:
    """The sequences each worker is running or queueing, and the engine's total."""

    def __init__(self, connection: Connection, workers: Sequence[WorkerClient]) -> None:
        self.connection = connection
        self.workers = workers
        self.per_worker = [0] * len(workers)
        self.inflight = 0

    def pick(self) -> int:
        """The least busy serving worker (the first on a tie, which keeps a quiet
        conversation on one worker and its prompt cache); any, if none serves."""
        serving = [i for i, w in enumerate(self.workers) if w.supervisor.serving]
        return min(serving or range(len(self.workers)), key=lambda i: (self.per_worker[i], i))

    @contextlib.contextmanager
    def least_busy(self, weight: int) -> Iterator[WorkerClient]:
        """The least busy worker, with *weight* sequences counted on it meanwhile."""
        index = self.pick()
        self.per_worker[index] += weight
        try:
            yield self.workers[index]
        finally:
            self.per_worker[index] -= weight

    def slots(self) -> int:
        """The fewest parallel slots of any worker: the most choices one batch can take."""
        return min(w.supervisor.settings.parallel for w in self.workers)

    def admit(self, request: ChatRequest) -> int:
        """Count the sequences *request* takes (its weight); past the queue's end, a 503.
        Give the weight back with `release`."""
        weight = max(request.n or 1, request.best_of or 1)
        engine = self.connection.engine
        if self.inflight + weight > max(engine.parallel + engine.max_queue, weight):
            raise OverloadedError(
                f"the embedded engine is busy: {self.inflight} sequences running or "
                f"waiting (parallel = {engine.parallel}, max_queue = {engine.max_queue}); "
                "retry shortly",
                headers={"Retry-After": "1"},
            )
        self.inflight += weight
        return weight

    def release(self, weight: int) -> None:
        """A request's sequences are done (answered, failed or abandoned)."""
        self.inflight -= weight
