"""Large CPU work off the event loop, one piece at a time.

Decoding a megabyte-sized upstream answer, redacting it and encoding it is Python (or
orjson, which holds the interpreter lock) work of tens to hundreds of milliseconds. On
the event loop it would stall every other client; in a thread per answer, four large
answers at once are four threads contending for the interpreter lock with the event
loop, which then waits up to a switch interval behind each (measured: `/healthz` at
116–142 ms under the test suite's load). So large work runs in one thread of its own:
the event loop has a single rival for the lock, large answers take turns, and small
ones never come here.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")
_EXECUTOR: ThreadPoolExecutor | None = None


def _executor() -> ThreadPoolExecutor:
    global _EXECUTOR
    if _EXECUTOR is None:
        _EXECUTOR = ThreadPoolExecutor(max_workers=1, thread_name_prefix="chatgate-large")
    return _EXECUTOR


async def off_loop(work: Callable[[], T]) -> T:
    """*work*'s result, computed in the large-work thread."""
    return await asyncio.get_running_loop().run_in_executor(_executor(), work)
