"""One request's generation: its prompt, sampler, position and output channel.

A `Sequence` is created on the event loop and handed to the batcher thread, which
advances it one token per step; what it makes travels back with
``loop.call_soon_threadsafe`` so the event loop never waits on the model.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence as Seq
from dataclasses import dataclass, field
from typing import Any, Literal

from chatgate.engine.model import LoadedModel
from chatgate.engine.textstream import StopScanner
from chatgate.errors import InvalidRequestError

RANDOM_SEED = 0xFFFFFFFF  # llama.cpp's LLAMA_DEFAULT_SEED: a fresh random seed


@dataclass(frozen=True, slots=True)
class Sampling:
    """How to pick tokens; unset request fields take llama.cpp's usual defaults."""

    max_tokens: int | None = None
    temperature: float = 0.8
    top_p: float = 0.95
    top_k: int = 40
    min_p: float = 0.05
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    repeat_penalty: float = 1.0
    seed: int | None = None
    stop: tuple[str, ...] = ()
    include_stop: bool = False
    logit_bias: dict[int, float] = field(default_factory=dict)
    grammar: str | None = None
    grammar_param: str = "response_format"  # the request field the grammar came from
    logprobs: bool = False
    top_logprobs: int = 0


@dataclass(frozen=True, slots=True)
class Piece:
    """Text made by one or more tokens, with their log-probabilities when asked for."""

    text: str
    logprobs: list[dict[str, Any]] | None = None


@dataclass(frozen=True, slots=True)
class Finished:
    """The last event of a generation."""

    finish_reason: Literal["stop", "length"]
    prompt_tokens: int
    completion_tokens: int


PENALTY_WINDOW = 64


def build_sampler(model: LoadedModel, s: Sampling) -> Any:
    """llama.cpp's native sampler chain for *s* (bias, penalties, grammar, then pick)."""
    import llama_cpp
    from llama_cpp._internals import LlamaSampler

    sampler = LlamaSampler()
    if s.logit_bias:
        sampler.add_logit_bias(model.n_vocab, s.logit_bias)
    sampler.add_penalties(
        model.n_vocab, PENALTY_WINDOW, s.repeat_penalty, s.frequency_penalty, s.presence_penalty
    )
    if s.grammar is not None:
        grammar = llama_cpp.llama_sampler_init_grammar(model.vocab, s.grammar.encode(), b"root")
        if not grammar:
            sampler.close()
            raise InvalidRequestError(
                "the output grammar could not be parsed", param=s.grammar_param
            )
        llama_cpp.llama_sampler_chain_add(sampler.sampler, grammar)
    if s.temperature <= 0:
        sampler.add_greedy()
    else:
        sampler.add_top_k(s.top_k)
        sampler.add_top_p(s.top_p, 1)
        sampler.add_min_p(s.min_p, 1)
        sampler.add_temp(s.temperature)
        sampler.add_dist(RANDOM_SEED if s.seed is None else s.seed & 0xFFFFFFFF)
    return sampler


class Sequence:
    """The state of one generation, shared by its coroutine and the batcher thread."""

    def __init__(self, prompt: Seq[int], sampling: Sampling, limit: int) -> None:
        self.prompt = list(prompt)
        self.sampling = sampling
        self.limit = limit  # most completion tokens: max_tokens and the context room
        self.cancel = threading.Event()
        self.loop = asyncio.get_running_loop()
        self.queue: asyncio.Queue[Piece | Finished | BaseException] = asyncio.Queue()
        # Batcher-side state.
        self.seq_id = -1
        self.sampler: Any = None
        self.scanner = StopScanner(sampling.stop, include=sampling.include_stop)
        self.evaluated = 0  # prompt tokens already in the KV cache
        self.cached: list[int] = []  # every token of this sequence in the KV cache
        self.next_token = -1  # the sampled token to evaluate in the next step
        self.produced = 0
        self.pending_logprobs: list[dict[str, Any]] = []

    @property
    def prefilling(self) -> bool:
        """Whether part of the prompt is still to be evaluated."""
        return self.evaluated < len(self.prompt)

    def emit(self, item: Piece | Finished | BaseException) -> None:
        """Hand *item* to the waiting coroutine (called from the batcher thread)."""
        try:
            self.loop.call_soon_threadsafe(self.queue.put_nowait, item)
        except RuntimeError:  # the loop is closed: nobody is listening any more
            self.cancel.set()
