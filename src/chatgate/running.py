"""What happens around every attempt the gateway runs: the request's deadline
(``inference_timeout``) and the observers, told when an attempt starts and how it
ended (where usage records and metrics hook in)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from typing import Protocol

from chatgate.errors import ChatgateError, GatewayTimeoutError
from chatgate.plan import Attempt, Finished, Observer, Plan
from chatgate.types import ChatChunk, Usage

log = logging.getLogger("chatgate.gateway")


def past_deadline(seconds: float) -> GatewayTimeoutError:
    """The 504 of an answer that took longer than ``inference_timeout``."""
    return GatewayTimeoutError(
        f"no complete answer within inference_timeout ({seconds:g} s); raise "
        "inference_timeout or ask for less",
        param="inference_timeout",
        code="inference_timeout",
    )


async def within(chunks: AsyncIterator[ChatChunk], seconds: float) -> AsyncIterator[ChatChunk]:
    """*chunks*, cut with a 504 when the whole stream takes longer than *seconds*."""
    loop = asyncio.get_running_loop()
    end = loop.time() + seconds
    try:
        while True:
            try:
                async with asyncio.timeout_at(end):
                    chunk = await anext(chunks)
            except StopAsyncIteration:
                return
            except TimeoutError:
                raise past_deadline(seconds) from None
            yield chunk
    finally:
        aclose = getattr(chunks, "aclose", None)
        if aclose is not None:
            await aclose()


class Watch:
    """Tells the observers that one attempt started, and then how it ended."""

    def __init__(
        self, observers: list[Observer], plan: Plan, attempt: Attempt, streamed: bool
    ) -> None:
        self.observers, self.plan, self.attempt = observers, plan, attempt
        self.streamed = streamed
        self.started = time.perf_counter()
        for observer in observers:
            observer.started(plan, attempt)

    def done(self, usage: Usage | None) -> None:
        """The attempt answered."""
        self._tell(Finished("ok", self._seconds(), usage, streamed=self.streamed))

    def failed(self, exc: BaseException, final: bool = True) -> None:
        """The attempt raised *exc* (or was cancelled); *final* False when another
        attempt follows."""
        seconds, streamed = self._seconds(), self.streamed
        if isinstance(exc, ChatgateError):
            result = Finished(
                "error", seconds, None, exc.status, exc.code, streamed=streamed, final=final
            )
        elif isinstance(exc, asyncio.CancelledError | GeneratorExit):
            result = Finished("cancelled", seconds, None, 499, streamed=streamed)
        else:
            result = Finished("error", seconds, None, 500, streamed=streamed)
        self._tell(result)

    def _seconds(self) -> float:
        return time.perf_counter() - self.started

    def _tell(self, result: Finished) -> None:
        for observer in self.observers:
            try:
                observer.finished(self.plan, self.attempt, result)
            except Exception:  # an observer's bug must not fail the request
                log.exception("observer %r failed", observer)


class Told(Protocol):
    """What hears how a stream ended: a `Watch`, or a resilient request's current try."""

    def failed(self, exc: BaseException) -> None:
        """The stream raised *exc* (or was closed)."""
        ...

    def done(self, usage: Usage | None) -> None:
        """The stream ended, with its usage if it sent one."""
        ...


async def observed(chunks: AsyncIterator[ChatChunk], watch: Told) -> AsyncIterator[ChatChunk]:
    """*chunks*, with the observers told how the stream ended."""
    usage: Usage | None = None
    try:
        async for chunk in chunks:
            if chunk.usage is not None:
                usage = chunk.usage
            yield chunk
    except BaseException as exc:
        watch.failed(exc)
        raise
    finally:
        aclose = getattr(chunks, "aclose", None)
        if aclose is not None:
            await aclose()
    watch.done(usage)
