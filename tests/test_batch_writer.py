"""`BatchWriter`: rows written off the hot path in batches, none lost on a clean close
or a sink that fails for a while."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence

import pytest

from chatgate.batch_writer import BatchWriter


class Sink:
    """Takes batches; fails the first *failing* calls."""

    def __init__(self, failing: int = 0) -> None:
        self.batches: list[list[int]] = []
        self.failing = failing
        self.lock = threading.Lock()

    def __call__(self, rows: Sequence[int]) -> None:
        with self.lock:
            if self.failing:
                self.failing -= 1
                raise OSError("database is locked for postgresql://u:pw-secret-99@db")
            self.batches.append(list(rows))

    @property
    def rows(self) -> list[int]:
        return [row for batch in self.batches for row in batch]


def test_close_writes_every_row_put_in_batches_no_bigger_than_asked() -> None:
    sink = Sink()
    writer = BatchWriter(sink, max_batch=7, max_delay=0.01)
    for i in range(100):
        writer.put(i)
    writer.close()
    assert sink.rows == list(range(100))
    assert max(len(b) for b in sink.batches) <= 7
    assert writer.written == 100 and writer.pending == 0
    with pytest.raises(RuntimeError):
        writer.put(101)


def test_flush_waits_for_the_rows_so_far() -> None:
    sink = Sink()
    writer = BatchWriter(sink, max_delay=5.0)  # left alone, it would wait 5 s
    writer.put(1)
    writer.put(2)
    assert writer.flush(timeout=5)
    assert sink.rows == [1, 2]
    writer.close()


def test_a_failing_sink_loses_nothing_and_the_log_shows_no_secret(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr("chatgate.batch_writer.RETRY_SECONDS", 0.01)
    sink = Sink(failing=2)
    writer = BatchWriter(sink, max_delay=0.01, secrets=lambda: ["pw-secret-99"])
    for i in range(10):
        writer.put(i)
    assert writer.flush(timeout=5)
    writer.close()
    assert sorted(sink.rows) == list(range(10)) and sink.rows == list(range(10))
    assert writer.failures == 2
    assert "database is locked" in caplog.text and "pw-secret-99" not in caplog.text


def test_past_max_pending_the_oldest_rows_are_dropped_and_counted() -> None:
    gate = threading.Event()

    def blocked(rows: Sequence[int]) -> None:
        gate.wait(5)

    writer = BatchWriter(blocked, max_batch=1, max_delay=0.01, max_pending=5)
    writer.put(0)  # taken by the thread, which then waits at the gate
    time.sleep(0.1)
    for i in range(1, 11):
        writer.put(i)
    assert writer.dropped == 5 and writer.pending == 5
    gate.set()
    writer.close()


def test_rows_from_many_threads_are_all_written() -> None:
    sink = Sink()
    writer = BatchWriter(sink, max_batch=50, max_delay=0.01)

    def put_many(start: int) -> None:
        for i in range(start, start + 500):
            writer.put(i)

    threads = [threading.Thread(target=put_many, args=(n * 1000,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    writer.close()
    assert sorted(sink.rows) == sorted(n * 1000 + i for n in range(4) for i in range(500))
