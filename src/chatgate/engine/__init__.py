"""The embedded model: llama.cpp in the gateway's own process.

`Engine` owns the loaded model and a `Batcher`: one context with ``parallel``
sequences, stepped by one thread that decodes all active sequences together.
Generation never runs on the event loop.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import time
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from chatgate.config import Connection
from chatgate.engine.model_file import resolve_model_path
from chatgate.engine.sequence import Finished, Piece, Sampling
from chatgate.engine.sequence import Sequence as Generation
from chatgate.errors import ConfigError, ContextLengthError
from chatgate.prompt.chat_template import render_chat_template

if TYPE_CHECKING:
    from chatgate.engine.batcher import Batcher
    from chatgate.engine.model import LoadedModel

__all__ = ["Engine", "Finished", "Piece", "Sampling"]

# Used only when a GGUF file carries no chat template of its own.
CHATML_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{{ message['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


class Engine:
    """Loads the model on first use and runs generations on it, batched and fair."""

    def __init__(self, connection: Connection) -> None:
        self.connection = connection
        self.model_name = connection.model_alias
        self._model: LoadedModel | None = None
        self._batcher: Batcher | None = None
        self._load_lock = asyncio.Lock()
        self.path: Path | None = None
        self.fingerprint = "fp_local"

    @property
    def threads(self) -> int:
        """CPU threads for the one context: configured, or every core.

        llama-cpp-python's own default is half the cores; on this 2-core machine one
        stream then makes about 65 tokens/s instead of 86 (docs/performance.md).
        """
        return self.connection.threads or max(1, os.cpu_count() or 1)

    @property
    def loaded(self) -> bool:
        """Whether the model is in memory."""
        return self._batcher is not None

    def load(self, progress: Callable[[str], None] | None = None) -> None:
        """Load the model and create its context now (blocking)."""
        if self._batcher is not None:
            return
        conn = self.connection
        path = resolve_model_path(conn.model_path)
        started = time.perf_counter()
        if progress:
            progress(
                f"loading {path.name} ({path.stat().st_size / 1e6:.0f} MB), "
                f"{conn.parallel} parallel sequences of {conn.context_size} tokens…"
            )
        from chatgate.engine.batcher import Batcher  # llama.cpp and numpy: only now
        from chatgate.engine.model import LoadedModel

        try:
            model = LoadedModel(path)
            batcher = Batcher(model, conn.context_size, conn.parallel, self.threads, conn.max_queue)
        except (ValueError, RuntimeError, OSError) as exc:
            raise ConfigError(f"cannot load model {path}: {exc}") from None
        if progress:
            progress(f"model ready in {time.perf_counter() - started:.1f} s")
        self.path = path
        self.fingerprint = "fp_" + hashlib.sha256(path.name.encode()).hexdigest()[:10]
        self._model, self._batcher = model, batcher

    async def ensure_loaded(self) -> None:
        """Load the model off the event loop, once, however many callers ask."""
        if self._batcher is not None:
            return
        async with self._load_lock:
            if self._batcher is None:
                await asyncio.to_thread(self.load)

    @property
    def model(self) -> LoadedModel:
        """The loaded model (tokenizer and metadata)."""
        if self._model is None:
            raise RuntimeError("the engine is not loaded")
        return self._model

    def status(self) -> dict[str, Any]:
        """Load and queue figures for ``/healthz``."""
        batcher = self._batcher
        return {
            "loaded": self.loaded,
            "model": self.model_name,
            "slots": self.connection.parallel,
            "busy": batcher.busy if batcher else 0,
            "waiting": batcher.waiting if batcher else 0,
        }

    def render(
        self,
        messages: Sequence[dict[str, Any]],
        template: str | None = None,
        kwargs: dict[str, Any] | None = None,
    ) -> str:
        """The prompt text for *messages*: through the request's ``chat_template`` if it
        has one, else the GGUF's own; ``chat_template_kwargs`` become template variables,
        as in Hugging Face's ``apply_chat_template``."""
        model = self.model
        return render_chat_template(
            template or model.chat_template or CHATML_TEMPLATE,
            messages,
            bos_token=model.bos_text,
            eos_token=model.eos_text,
            extra=kwargs,
            param="chat_template" if template else None,
        )

    def tokenize_prompt(self, prompt: str, max_tokens: int | None) -> list[int]:
        """Tokenize and check that prompt plus completion fit one sequence's context."""
        tokens = self.model.tokenize(prompt)
        n_ctx = self.connection.context_size
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
        """Queue for a sequence in turn, then yield pieces as the batcher makes them."""
        await self.ensure_loaded()
        assert self._batcher is not None
        room = self.connection.context_size - len(prompt)
        generation = Generation(prompt, sampling, min(sampling.max_tokens or room, room))
        self._batcher.submit(generation)
        try:
            while True:
                item = await generation.queue.get()
                if isinstance(item, BaseException):
                    raise item
                yield item
                if isinstance(item, Finished):
                    return
        finally:
            self._batcher.withdraw(generation)

    def close(self) -> None:
        """Stop the batcher thread and free the model."""
        if self._batcher is not None:
            self._batcher.close()
            self._batcher = None
        if self._model is not None:
            self._model.close()
            self._model = None
