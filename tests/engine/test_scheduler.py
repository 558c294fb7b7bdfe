"""SlotPool fairness and ThreadStream cancellation, without a model."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest

from chatgate.engine.scheduler import SlotPool, ThreadStream
from chatgate.errors import OverloadedError


async def test_waiters_are_served_in_arrival_order() -> None:
    pool: SlotPool[str] = SlotPool(["slot"], max_waiting=10)
    held = await pool.acquire()
    order: list[int] = []

    async def waiter(i: int) -> None:
        slot = await pool.acquire()
        order.append(i)
        await asyncio.sleep(0)
        pool.release(slot)

    tasks = [asyncio.create_task(waiter(i)) for i in range(5)]
    await asyncio.sleep(0)
    assert pool.waiting == 5
    pool.release(held)
    await asyncio.gather(*tasks)
    assert order == [0, 1, 2, 3, 4]
    assert pool.busy == 0


async def test_cancelled_waiter_leaves_the_line() -> None:
    pool: SlotPool[str] = SlotPool(["slot"], max_waiting=10)
    held = await pool.acquire()
    gone = asyncio.create_task(pool.acquire())
    stays = asyncio.create_task(pool.acquire())
    await asyncio.sleep(0)
    gone.cancel()
    await asyncio.sleep(0)
    assert pool.waiting == 1
    pool.release(held)
    assert await stays == "slot"


async def test_full_line_is_refused() -> None:
    pool: SlotPool[str] = SlotPool(["slot"], max_waiting=1)
    await pool.acquire()
    first = asyncio.create_task(pool.acquire())
    await asyncio.sleep(0)
    with pytest.raises(OverloadedError) as caught:
        await pool.acquire()
    assert caught.value.status == 503
    assert caught.value.headers["Retry-After"] == "1"
    first.cancel()


def counting(limit: int, made: list[int]) -> Callable[[threading.Event], Iterator[int]]:
    def produce(cancel: threading.Event) -> Iterator[int]:
        for i in range(limit):
            if cancel.is_set():
                return
            time.sleep(0.01)
            made.append(i)
            yield i

    return produce


async def test_items_arrive_and_slot_is_released_after() -> None:
    released = asyncio.Event()
    with ThreadPoolExecutor(1) as pool:
        stream: ThreadStream[int] = ThreadStream(
            pool,
            counting(5, []),
            released.set,
        )
        assert [i async for i in stream] == [0, 1, 2, 3, 4]
        await asyncio.wait_for(released.wait(), 5)


async def test_closing_early_stops_the_thread_before_release() -> None:
    released = asyncio.Event()
    made: list[int] = []
    with ThreadPoolExecutor(1) as pool:
        stream: ThreadStream[int] = ThreadStream(
            pool,
            counting(10_000, made),
            released.set,
        )
        assert await anext(stream) == 0
        await stream.aclose()
        await asyncio.wait_for(released.wait(), 5)
        # 10,000 items would take 100 s; the thread stopped after a handful.
        assert len(made) < 50


async def test_producer_error_reaches_the_consumer() -> None:
    def broken(cancel: threading.Event) -> Iterator[int]:
        yield 1
        raise RuntimeError("boom")

    with ThreadPoolExecutor(1) as pool:
        stream: ThreadStream[int] = ThreadStream(pool, broken, lambda: None)
        assert await anext(stream) == 1
        with pytest.raises(RuntimeError, match="boom"):
            await anext(stream)
