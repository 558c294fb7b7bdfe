"""KoboldCpp's generations in flight, so that ``POST /api/extra/abort`` can stop one and
``/api/extra/generate/check`` can tell what it has made so far.

A generation is known by its ``genkey`` and by its caller: an abort (or a check) reaches
only the caller's own generations, so that on a gateway shared by several keys nobody
stops, or reads, another's; without keys every caller is the same one, as on
KoboldCpp. An abort with no genkey stops the caller's latest generation.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import AsyncIterator
from contextlib import suppress
from dataclasses import dataclass, field

from chatgate.gateway import Gateway
from chatgate.plan import Caller
from chatgate.types import ChatChunk

MAX_RUNNING = 4096  # generations remembered at once; past it, the oldest is forgotten


@dataclass(eq=False, slots=True)
class Live:
    """One generation in flight: who runs it, whether it was aborted, its text so far."""

    genkey: str
    caller: Caller
    aborted: asyncio.Event = field(default_factory=asyncio.Event)
    pieces: list[str] = field(default_factory=list)

    @property
    def text(self) -> str:
        """What it has made so far (every choice's text, in order of arrival)."""
        return "".join(self.pieces)


class Generations:
    """The generations in flight on one gateway, oldest first."""

    def __init__(self) -> None:
        self.running: list[Live] = []

    def start(self, live: Live) -> None:
        """*live* runs from now on."""
        self.running.append(live)
        if len(self.running) > MAX_RUNNING:
            del self.running[0]

    def end(self, live: Live) -> None:
        """*live* is over."""
        with suppress(ValueError):
            self.running.remove(live)

    def find(self, genkey: str, caller: Caller) -> Live | None:
        """The caller's latest generation with *genkey* (any of theirs for an empty key)."""
        for live in reversed(self.running):
            if live.caller == caller and (not genkey or live.genkey == genkey):
                return live
        return None


_BY_GATEWAY: weakref.WeakKeyDictionary[Gateway, Generations] = weakref.WeakKeyDictionary()


def generations(gateway: Gateway) -> Generations:
    """The generations in flight on *gateway*."""
    found = _BY_GATEWAY.get(gateway)
    if found is None:
        found = _BY_GATEWAY[gateway] = Generations()
    return found


async def _next(iterator: AsyncIterator[ChatChunk]) -> ChatChunk:
    return await anext(iterator)


async def until_aborted(chunks: AsyncIterator[ChatChunk], live: Live) -> AsyncIterator[ChatChunk]:
    """*chunks* until they end or *live* is aborted; then the upstream is closed (which
    stops the generation: the embedded engine's slot, an upstream's connection, or a
    KoboldCpp upstream's own abort). Every text piece is kept in ``live.pieces``."""
    iterator = aiter(chunks)
    stop = asyncio.ensure_future(live.aborted.wait())
    step: asyncio.Future[ChatChunk] | None = None
    try:
        while True:
            step = asyncio.ensure_future(_next(iterator))
            await asyncio.wait((step, stop), return_when=asyncio.FIRST_COMPLETED)
            if not step.done():
                return
            try:
                chunk = step.result()
            except StopAsyncIteration:
                return
            for choice in chunk.choices:
                if choice.delta.content:
                    live.pieces.append(choice.delta.content)
            yield chunk
            if live.aborted.is_set():
                return
    finally:
        stop.cancel()
        if step is not None and not step.done():
            # The chunk being waited for (an abort, or this task cancelled): stopping it
            # ends the upstream's generator where it waits.
            step.cancel()
            with suppress(asyncio.CancelledError, StopAsyncIteration, Exception):
                await step
        aclose = getattr(iterator, "aclose", None)
        if aclose is not None:
            await aclose()
