"""Fair access to the engine's slots, and the bridge from a generation thread to asyncio.

A slot is one loaded model context; it serves one generation at a time. Requests wait
in strict arrival order (first come, first served), so no request can be starved by
later ones, and a request that gives up while waiting leaves the queue at once.
"""

from __future__ import annotations

import asyncio
import threading
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Generic, TypeVar

from chatgate.errors import OverloadedError

T = TypeVar("T")
P = TypeVar("P")


class SlotPool(Generic[T]):
    """A FIFO-fair pool of interchangeable slots with a bounded waiting line."""

    def __init__(self, slots: list[T], max_waiting: int) -> None:
        self._free: list[T] = list(slots)
        self._size = len(slots)
        self._waiters: deque[asyncio.Future[T]] = deque()
        self._max_waiting = max_waiting

    @property
    def waiting(self) -> int:
        """How many requests are queued for a slot."""
        return sum(1 for w in self._waiters if not w.done())

    @property
    def busy(self) -> int:
        """How many slots are generating now."""
        return self._size - len(self._free)

    async def acquire(self) -> T:
        """Wait for a slot in arrival order; raise `OverloadedError` if the line is full."""
        if self._free and not self._waiters:
            return self._free.pop()
        if self.waiting >= self._max_waiting:
            raise OverloadedError(
                f"the embedded engine is busy: {self.waiting} requests are already "
                "waiting; try again shortly",
                headers={"Retry-After": "1"},
            )
        waiter: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            return await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self.release(waiter.result())
            else:
                try:
                    self._waiters.remove(waiter)
                except ValueError:
                    pass
            raise

    def release(self, slot: T) -> None:
        """Hand *slot* to the oldest waiter, or put it back."""
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(slot)
                return
        self._free.append(slot)


class _End:
    __slots__ = ("error",)

    def __init__(self, error: BaseException | None) -> None:
        self.error = error


class ThreadStream(Generic[P]):
    """Run a generator in an executor thread and iterate its items on this loop.

    The thread starts at construction. *produce* receives a cancel event that it must
    check between items; `aclose` (or leaving an ``async for`` early) sets it. The
    callback *on_finished* runs on the loop only once the thread has really stopped, so
    the slot it frees is never handed on while still in use.
    """

    def __init__(
        self,
        executor: ThreadPoolExecutor,
        produce: Callable[[threading.Event], Iterator[P]],
        on_finished: Callable[[], None],
    ) -> None:
        loop = asyncio.get_running_loop()
        self._queue: asyncio.Queue[P | _End] = asyncio.Queue()
        self._cancel = threading.Event()
        self._done = False
        queue, cancel = self._queue, self._cancel

        def put(item: P | _End) -> None:
            try:
                loop.call_soon_threadsafe(queue.put_nowait, item)
            except RuntimeError:  # the loop is closed: nobody is listening any more
                cancel.set()

        def run() -> None:
            error: BaseException | None = None
            try:
                for item in produce(cancel):
                    put(item)
                    if cancel.is_set():
                        break
            except BaseException as exc:
                error = exc
            put(_End(error))

        future = loop.run_in_executor(executor, run)
        future.add_done_callback(lambda _f: on_finished())

    def __aiter__(self) -> ThreadStream[P]:
        return self

    async def __anext__(self) -> P:
        if self._done:
            raise StopAsyncIteration
        try:
            item = await self._queue.get()
        except BaseException:
            self._cancel.set()
            raise
        if isinstance(item, _End):
            self._done = True
            if item.error is not None:
                raise item.error
            raise StopAsyncIteration
        return item

    async def aclose(self) -> None:
        """Ask the thread to stop; the slot is freed when it has."""
        self._cancel.set()
        self._done = True
