"""The sync half of `chatgate.gateway.Gateway`: the same pipeline for code without an
event loop, run on a private loop thread."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from typing import TYPE_CHECKING, Any, Self, TypeVar

from chatgate.sync_loop import LoopThread
from chatgate.types import ChatChunk, ChatRequest, ChatResponse

if TYPE_CHECKING:
    from chatgate.backends.base import Backend

T = TypeVar("T")


class SyncAPI:
    """Mixed into `Gateway`: ``start_sync``, ``chat_sync``, ``stream_sync``, ``close``
    and the context managers."""

    _runner: LoopThread | None
    backends: dict[str, Backend]

    if TYPE_CHECKING:  # Gateway's own, which these wrap

        async def start(self, progress: Callable[[str], None] | None = None) -> None: ...

        async def chat(
            self, request: ChatRequest | dict[str, Any] | None = None, /, **fields: Any
        ) -> ChatResponse: ...

        def stream(
            self, request: ChatRequest | dict[str, Any] | None = None, /, **fields: Any
        ) -> AsyncIterator[ChatChunk]: ...

        async def aclose(self) -> None: ...

    def start_sync(self, progress: Callable[[str], None] | None = None) -> None:
        """`start` for code without an event loop."""
        self._loop().call(self.start(progress))

    def chat_sync(
        self, request: ChatRequest | dict[str, Any] | None = None, /, **fields: Any
    ) -> ChatResponse:
        """`chat` for code without an event loop."""
        return self._loop().call(self.chat(request, **fields))

    def stream_sync(
        self, request: ChatRequest | dict[str, Any] | None = None, /, **fields: Any
    ) -> Iterator[ChatChunk]:
        """`stream` for code without an event loop."""
        agen = self.stream(request, **fields)
        loop = self._loop()
        try:
            while True:
                try:
                    yield loop.call(_anext(agen))
                except StopAsyncIteration:
                    return
        finally:
            aclose = getattr(agen, "aclose", None)
            if aclose is not None:
                loop.call(aclose())

    def close(self) -> None:
        """Release everything (sync code)."""
        if self._runner is not None:
            self._runner.call(self.aclose())
            self._runner.stop()
            self._runner = None
        else:
            for backend in self.backends.values():
                backend.terminate()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def _loop(self) -> LoopThread:
        if self._runner is None:
            self._runner = LoopThread()
        return self._runner


async def _anext(agen: AsyncIterator[T]) -> T:
    return await anext(agen)
