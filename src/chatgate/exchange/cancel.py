"""Cancel requests: a courtesy to an upstream whose work we abandon (a stream the
consumer left, a job past its total). Each is sent best effort, within
`CANCEL_TIMEOUTS`, as a task of its own; every failure is logged with the secrets
masked, and none is raised over the outcome it follows.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING

from chatgate.errors import redact
from chatgate.exchange.timeouts import Timeouts
from chatgate.upstream import UpstreamRequest

if TYPE_CHECKING:
    from pyreqwest.response import Response

log = logging.getLogger("chatgate.exchange")

# A cancel request may delay the error it follows by this much at most.
CANCEL_TIMEOUTS = Timeouts(connect=5.0, read=5.0, total=5.0)
# A consumer that stops right after the last event usually leaves only the body's end
# unread; this long a look for it tells such a stream from one that was cut short.
END_GRACE = 0.05

Send = Callable[
    [UpstreamRequest, str, Timeouts, list[str]], Awaitable[tuple[int, Mapping[str, str], bytes]]
]


class Cancels:
    """The cancel requests under way, so that closing the transport can wait for them."""

    def __init__(self, send: Send) -> None:
        self._send = send
        self._tasks: set[asyncio.Task[None]] = set()

    async def fire(
        self, make: Callable[[], UpstreamRequest | None], connection: str, secrets: list[str]
    ) -> None:
        """Send the request *make* builds (None: there is none); a caller cancelled again
        meanwhile stops waiting for it, but does not cut it off."""
        task = asyncio.get_running_loop().create_task(self._cancel(make, connection, secrets))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        await asyncio.shield(task)

    async def drain(self) -> None:
        """Wait for the cancel requests under way (each is bounded)."""
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _cancel(
        self, make: Callable[[], UpstreamRequest | None], connection: str, secrets: list[str]
    ) -> None:
        try:
            request = make()
            if request is None:
                return
            status, _, _ = await self._send(request, connection, CANCEL_TIMEOUTS, secrets)
        except Exception as exc:  # a courtesy: nothing it does may hide the real outcome
            reason = redact(str(exc) or type(exc).__name__, secrets)
            log.warning("connection '%s': the cancel request failed: %s", connection, reason)
            return
        if not 200 <= status < 300:
            log.warning("connection '%s': the cancel request answered %d", connection, status)


async def at_end(response: Response) -> bool:
    """Whether the body had ended when its consumer stopped (a short look, `END_GRACE`)."""
    from pyreqwest import exceptions as failed

    try:
        async with asyncio.timeout(END_GRACE):
            return await response.body_reader.read_chunk() is None
    except TimeoutError:
        return False
    except failed.PyreqwestError:
        return True  # the upstream broke it off: nothing left to cancel
