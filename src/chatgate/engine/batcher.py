"""Continuous batching: every active sequence advances in one llama.cpp decode per step.

One context holds ``parallel`` sequences, each with ``context_size`` tokens of KV cache.
Each step puts the next token of every generating sequence, plus a slice of any new
prompt, into one batch: four streams cost far less than four separate passes. New
requests wait in strict arrival order for a free sequence; a sequence whose client has
gone is dropped at the next step. A free sequence keeps its tokens, so a follow-up
request that shares the prefix (the same conversation, one turn longer) only evaluates
the new part.
"""

from __future__ import annotations

import threading
from collections import deque
from typing import Any

from chatgate.engine.logprobs import logprob_entry, raw_logits
from chatgate.engine.model import LoadedModel
from chatgate.engine.sequence import Finished, Piece, Sequence, build_sampler
from chatgate.errors import ChatgateError, OverloadedError, UpstreamError

BATCH = 512  # tokens per decode
PREFILL_PER_STEP = 256  # prompt tokens per step, so running streams keep flowing


class Batcher:
    """The engine's one context and the thread that steps it."""

    def __init__(
        self, model: LoadedModel, context_size: int, parallel: int, threads: int, max_waiting: int
    ) -> None:
        import llama_cpp
        from llama_cpp._internals import LlamaContext
        from llama_cpp._utils import suppress_stdout_stderr

        self.model = model
        self.context_size = context_size
        self.parallel = parallel
        params = llama_cpp.llama_context_default_params()
        params.n_ctx = context_size * parallel
        params.n_batch = params.n_ubatch = BATCH
        params.n_seq_max = parallel
        params.n_threads = params.n_threads_batch = threads
        params.kv_unified = False
        with suppress_stdout_stderr(disable=False):
            self.ctx: Any = LlamaContext(model=model.raw, params=params, verbose=False)
        self._llama = llama_cpp
        self._batch = llama_cpp.llama_batch_init(BATCH, 0, 1)
        self._max_waiting = max_waiting
        self._free = list(range(parallel))
        self._cached: dict[int, list[int]] = {i: [] for i in range(parallel)}
        self._pending: deque[Sequence] = deque()
        self._active: list[Sequence] = []
        self._cond = threading.Condition()
        self._stopping = False
        self._thread = threading.Thread(target=self._run, daemon=True, name="chatgate-engine")
        self._thread.start()

    # --- the event loop's side -----------------------------------------------------

    @property
    def busy(self) -> int:
        """Sequences generating now."""
        return len(self._active)

    @property
    def waiting(self) -> int:
        """Requests waiting for a free sequence."""
        return len(self._pending)

    def submit(self, seq: Sequence) -> None:
        """Queue *seq*; `OverloadedError` if the line is already full."""
        with self._cond:
            if not self._free and len(self._pending) >= self._max_waiting:
                raise OverloadedError(
                    f"the embedded engine is busy: {len(self._pending)} requests are already "
                    "waiting; try again shortly",
                    headers={"Retry-After": "1"},
                )
            self._pending.append(seq)
            self._cond.notify()

    def withdraw(self, seq: Sequence) -> None:
        """Stop *seq*: leave the queue now, or be dropped at the next step."""
        seq.cancel.set()
        with self._cond:
            try:
                self._pending.remove(seq)
            except ValueError:
                pass

    def close(self) -> None:
        """Stop the thread after the current step, and free the context."""
        with self._cond:
            self._stopping = True
            self._cond.notify()
        self._thread.join(timeout=10)
        self._llama.llama_batch_free(self._batch)
        self.ctx.close()

    # --- the batcher thread --------------------------------------------------------

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._stopping and not self._active and not self._pending:
                    self._cond.wait()
                if self._stopping:
                    break
                self._admit()
            try:
                self._step()
            except Exception as exc:  # a failed decode fails every sequence in it
                error = (
                    exc
                    if isinstance(exc, ChatgateError)
                    else UpstreamError(f"the embedded engine failed: {exc}")
                )
                for seq in list(self._active):
                    seq.emit(error)
                    self._retire(seq, keep_cache=False)
        for seq in [*self._active, *self._pending]:
            seq.emit(UpstreamError("the embedded engine is shutting down"))

    def _admit(self) -> None:
        """Move waiting requests onto free sequences, in arrival order."""
        while self._pending and self._free:
            seq = self._pending.popleft()
            if seq.cancel.is_set():
                continue
            seq_id = max(self._free, key=lambda i: _common(self._cached[i], seq.prompt))
            reuse = min(_common(self._cached[seq_id], seq.prompt), len(seq.prompt) - 1)
            memory = self.ctx.memory
            if reuse <= 0 or not self._llama.llama_memory_seq_rm(memory, seq_id, reuse, -1):
                self._llama.llama_memory_seq_rm(memory, seq_id, -1, -1)
                reuse = 0
            try:
                seq.sampler = build_sampler(self.model, seq.sampling)
            except ChatgateError as exc:
                seq.emit(exc)
                continue
            self._free.remove(seq_id)
            seq.seq_id = seq_id
            seq.evaluated = reuse
            seq.cached = seq.prompt[:reuse]
            self._active.append(seq)

    def _add(self, n: int, token: int, pos: int, seq_id: int, logits: bool) -> None:
        batch = self._batch
        batch.token[n] = token
        batch.pos[n] = pos
        batch.n_seq_id[n] = 1
        batch.seq_id[n][0] = seq_id
        batch.logits[n] = logits

    def _step(self) -> None:
        for seq in [s for s in self._active if s.cancel.is_set()]:
            self._retire(seq)
        n = 0
        wanted: list[tuple[Sequence, int]] = []
        decoding = [s for s in self._active if not s.prefilling]
        for seq in decoding:
            self._add(n, seq.next_token, len(seq.cached), seq.seq_id, True)
            wanted.append((seq, n))
            n += 1
        budget = min(PREFILL_PER_STEP, BATCH - n)
        chunks: list[tuple[Sequence, list[int]]] = []
        for seq in self._active:
            if not seq.prefilling or budget <= 0:
                continue
            chunk = seq.prompt[seq.evaluated : seq.evaluated + budget]
            for offset, token in enumerate(chunk):
                last = seq.evaluated + offset == len(seq.prompt) - 1
                self._add(n, token, seq.evaluated + offset, seq.seq_id, last)
                if last:
                    wanted.append((seq, n))
                n += 1
            budget -= len(chunk)
            chunks.append((seq, chunk))
        if n == 0:
            return
        self._batch.n_tokens = n
        code = self._llama.llama_decode(self.ctx.ctx, self._batch)
        if code != 0:
            raise UpstreamError(f"llama_decode failed (code {code}): the context is full")
        for seq in decoding:
            seq.cached.append(seq.next_token)
        for seq, chunk in chunks:
            seq.cached += chunk
            seq.evaluated += len(chunk)
        for seq, index in wanted:
            self._sample(seq, index)

    def _sample(self, seq: Sequence, index: int) -> None:
        sampling = seq.sampling
        logits = raw_logits(self.ctx, index, self.model.n_vocab) if sampling.logprobs else None
        token = self._llama.llama_sampler_sample(seq.sampler.sampler, self.ctx.ctx, index)
        if self.model.is_end(token):
            self._finish(seq, "stop")
            return
        seq.produced += 1
        text = seq.scanner.feed_bytes(self.model.piece(token))
        if logits is not None:
            seq.pending_logprobs.append(
                logprob_entry(self.model, logits, token, sampling.top_logprobs)
            )
        if text:
            seq.emit(Piece(text, seq.pending_logprobs or None))
            seq.pending_logprobs = []
        if seq.scanner.stopped:
            self._finish(seq, "stop")
        elif seq.produced >= seq.limit or len(seq.cached) + 1 >= self.context_size:
            self._finish(seq, "length")
        else:
            seq.next_token = token

    def _finish(self, seq: Sequence, reason: Any) -> None:
        # Retire first: whoever sees Finished also sees the sequence free again.
        self._retire(seq)
        rest = seq.scanner.flush()
        if rest or seq.pending_logprobs:
            seq.emit(Piece(rest, seq.pending_logprobs or None))
        seq.emit(Finished(reason, len(seq.prompt), seq.produced))

    def _retire(self, seq: Sequence, *, keep_cache: bool = True) -> None:
        self._active.remove(seq)
        self._cached[seq.seq_id] = seq.cached if keep_cache else []
        if not keep_cache:
            self._llama.llama_memory_seq_rm(self.ctx.memory, seq.seq_id, -1, -1)
        self._free.append(seq.seq_id)
        if seq.sampler is not None:
            seq.sampler.close()
            seq.sampler = None
        with self._cond:
            self._cond.notify()


def _common(a: list[int], b: list[int]) -> int:
    size = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        size += 1
    return size
