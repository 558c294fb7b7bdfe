"""Rows written off the hot path, in batches, by one thread of their own.

A request's usage row is put on a queue, which costs the request a lock and an append;
a writer thread takes whatever is queued, at most `max_batch` at a time, and hands it
to the sink (one transaction for the whole batch). A batch the sink fails to take is
kept and tried again, so a database that is down for a moment loses nothing; past
`max_pending` rows the oldest are dropped and counted, so a database that is down for
good cannot take the process's memory with it. `close` writes everything still queued
before it returns: a clean shutdown loses no row that was put.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

from chatgate.redaction import redact

T = TypeVar("T")
log = logging.getLogger("chatgate.batch_writer")

RETRY_SECONDS = 1.0  # after a failed batch, before the next try


class BatchWriter(Generic[T]):
    """A queue of rows and the thread that writes them to *sink* in batches."""

    def __init__(
        self,
        sink: Callable[[Sequence[T]], object],
        *,
        max_batch: int = 500,
        max_delay: float = 0.2,
        max_pending: int = 100_000,
        name: str = "chatgate-batch-writer",
        secrets: Callable[[], list[str]] = list,
    ) -> None:
        self._sink = sink
        self._max_batch = max_batch
        self._max_delay = max_delay
        self._max_pending = max_pending
        self._rows: deque[T] = deque()
        self._wake = threading.Condition()
        self._closing = False
        self.written = 0
        self.dropped = 0
        self.failures = 0
        self._busy = False
        self._secrets = secrets  # a failure's message may quote the store URL
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def put(self, row: T) -> None:
        """Queue *row*; never blocks on the sink."""
        with self._wake:
            if self._closing:
                raise RuntimeError("the writer is closed")
            self._rows.append(row)
            if len(self._rows) > self._max_pending:
                self._rows.popleft()
                self.dropped += 1
            if len(self._rows) >= self._max_batch:
                self._wake.notify()

    @property
    def pending(self) -> int:
        """Rows queued and not yet written."""
        return len(self._rows)

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until every row queued so far is written; False on *timeout*."""
        deadline = time.monotonic() + timeout
        with self._wake:
            self._wake.notify()
            while self._rows or self._busy:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._wake.wait(min(left, 0.05))
        return True

    def close(self, timeout: float = 10.0) -> None:
        """Write what is queued, then stop the thread."""
        with self._wake:
            self._closing = True
            self._wake.notify()
        self._thread.join(timeout)
        if self._thread.is_alive():
            log.error("%d rows not written at shutdown: the store did not answer", self.pending)

    def _take(self) -> list[T] | None:
        """The next batch, or None when closed with nothing left."""
        with self._wake:
            if not self._rows and not self._closing:
                self._wake.wait(self._max_delay)
            if not self._rows:
                return None if self._closing else []
            batch = [self._rows.popleft() for _ in range(min(self._max_batch, len(self._rows)))]
            self._busy = True
            return batch

    def _run(self) -> None:
        while True:
            batch = self._take()
            if batch is None:
                return
            if not batch:
                continue
            try:
                self._sink(batch)
            except Exception as exc:  # the store's error, whatever the driver raised
                self.failures += 1
                reason = redact(f"{type(exc).__name__}: {exc}", self._secrets())
                log.warning("writing %d rows failed (%s); trying again", len(batch), reason)
                with self._wake:
                    self._rows.extendleft(reversed(batch))
                    self._busy = False
                    closing = self._closing
                if closing and self.failures > 3:
                    log.error("%d rows not written at shutdown: %s", self.pending, reason)
                    return
                time.sleep(RETRY_SECONDS)
                continue
            with self._wake:
                self.written += len(batch)
                self._busy = False
                self._wake.notify_all()
