"""The embedded model: llama-cpp-python in the gateway's own process.

`Engine` owns one or more `LlamaSlot`s (``parallel`` in the connection), a thread per
slot, and a FIFO-fair queue in front of them. Generation never runs on the event loop.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import AsyncIterator, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from chatgate.config import Connection
from chatgate.engine.model_file import resolve_model_path
from chatgate.engine.scheduler import SlotPool, ThreadStream
from chatgate.engine.slot import Finished, LlamaSlot, Piece, Sampling
from chatgate.errors import ConfigError, ContextLengthError
from chatgate.prompt.chat_template import render_chat_template

__all__ = ["Engine", "Finished", "Piece", "Sampling"]

# Used only when a GGUF file carries no chat template of its own.
CHATML_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{{ message['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


class Engine:
    """Loads the model on first use and runs generations on it, fairly."""

    def __init__(self, connection: Connection) -> None:
        self.connection = connection
        self.model_name = connection.model_alias
        self._slots: list[LlamaSlot] = []
        self._pool: SlotPool[LlamaSlot] | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._load_lock = asyncio.Lock()
        self.path: Path | None = None
        self.fingerprint = "fp_local"

    @property
    def loaded(self) -> bool:
        """Whether the model is in memory."""
        return bool(self._slots)

    def load(self, progress: Callable[[str], None] | None = None) -> None:
        """Load every slot now (blocking); *progress* receives one line per step."""
        if self._slots:
            return
        conn = self.connection
        path = resolve_model_path(conn.model_path)
        size_mb = path.stat().st_size / 1e6
        started = time.perf_counter()
        slots: list[LlamaSlot] = []
        for index in range(conn.parallel):
            if progress:
                progress(
                    f"loading {path.name} ({size_mb:.0f} MB), slot {index + 1}/{conn.parallel}…"
                )
            try:
                slots.append(LlamaSlot(path, conn.context_size, conn.threads))
            except (ValueError, RuntimeError, OSError) as exc:
                raise ConfigError(f"cannot load model {path}: {exc}") from None
        if progress:
            progress(f"model ready in {time.perf_counter() - started:.1f} s")
        self.path = path
        self.fingerprint = "fp_" + hashlib.sha256(path.name.encode()).hexdigest()[:10]
        self._executor = ThreadPoolExecutor(len(slots), thread_name_prefix="chatgate-engine")
        self._pool = SlotPool(slots, max_waiting=conn.max_queue)
        self._slots = slots

    async def ensure_loaded(self) -> None:
        """Load the model off the event loop, once, however many callers ask."""
        if self._slots:
            return
        async with self._load_lock:
            if not self._slots:
                await asyncio.to_thread(self.load)

    @property
    def slot(self) -> LlamaSlot:
        """The first slot, for tokenizer and metadata questions."""
        if not self._slots:
            raise RuntimeError("the engine is not loaded")
        return self._slots[0]

    def status(self) -> dict[str, Any]:
        """Load and queue figures for ``/healthz``."""
        pool = self._pool
        return {
            "loaded": self.loaded,
            "model": self.model_name,
            "slots": self.connection.parallel,
            "busy": pool.busy if pool else 0,
            "waiting": pool.waiting if pool else 0,
        }

    def render(self, messages: Sequence[dict[str, Any]]) -> str:
        """The prompt text for *messages*, through the GGUF's own chat template."""
        slot = self.slot
        return render_chat_template(
            slot.chat_template or CHATML_TEMPLATE,
            messages,
            bos_token=slot.bos_text,
            eos_token=slot.eos_text,
        )

    def tokenize_prompt(self, prompt: str, max_tokens: int | None) -> list[int]:
        """Tokenize and check that prompt plus completion fit the context."""
        tokens = self.slot.tokenize(prompt)
        n_ctx = self.slot.n_ctx
        wanted = len(tokens) + (max_tokens or 1)
        if wanted > n_ctx:
            raise ContextLengthError(
                f"this model's maximum context length is {n_ctx} tokens, but the request "
                f"needs {wanted} ({len(tokens)} in the messages, "
                f"{max_tokens or 1} for the completion); shorten the messages or max_tokens",
                param="messages",
            )
        return tokens

    async def generate(
        self, prompt: Sequence[int], sampling: Sampling
    ) -> AsyncIterator[Piece | Finished]:
        """Wait for a slot in turn, then yield pieces as the thread makes them."""
        await self.ensure_loaded()
        assert self._pool is not None and self._executor is not None
        pool = self._pool
        slot = await pool.acquire()
        stream: ThreadStream[Piece | Finished] = ThreadStream(
            self._executor,
            lambda cancel: slot.generate(prompt, sampling, cancel),
            lambda: pool.release(slot),
        )
        try:
            async for event in stream:
                yield event
        finally:
            await stream.aclose()

    def close(self) -> None:
        """Stop the worker threads (after the current generations end)."""
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
