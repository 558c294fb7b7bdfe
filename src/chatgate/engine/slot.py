"""One loaded llama.cpp context and the token loop that runs on it.

The loop is ours rather than ``Llama.create_completion``'s: it samples with llama.cpp's
native sampler chain (logit bias and grammar included), counts tokens exactly, checks
for cancellation between tokens and between prompt batches, and reuses the longest
cached prompt prefix from the previous request on the same slot.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from chatgate.engine.textstream import StopScanner
from chatgate.errors import InvalidRequestError

RANDOM_SEED = 0xFFFFFFFF  # llama.cpp's LLAMA_DEFAULT_SEED: pick a fresh random seed


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
    logit_bias: dict[int, float] = field(default_factory=dict)
    grammar: str | None = None
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


class LlamaSlot:
    """A llama-cpp-python model with its own context; used by one thread at a time."""

    def __init__(self, path: Path, context_size: int, threads: int | None) -> None:
        from llama_cpp import Llama

        self.llm: Any = Llama(
            model_path=str(path),
            n_ctx=context_size,
            n_threads=threads,
            n_batch=min(512, context_size),
            verbose=False,
        )
        self.n_ctx: int = self.llm.n_ctx()
        self.n_vocab: int = self.llm.n_vocab()
        model = self.llm._model
        self.bos_text = _special_text(model, model.token_bos())
        self.eos_text = _special_text(model, model.token_eos())
        self.add_bos: bool = bool(model.add_bos_token())
        metadata: dict[str, str] = dict(self.llm.metadata)
        self.chat_template: str | None = metadata.get("tokenizer.chat_template")
        self.metadata = metadata

    def tokenize(self, prompt: str) -> list[int]:
        """Tokens of a rendered prompt; special tokens in the text are parsed as such."""
        add_bos = self.add_bos and not (self.bos_text and prompt.startswith(self.bos_text))
        tokens: list[int] = self.llm.tokenize(prompt.encode("utf-8"), add_bos=add_bos, special=True)
        return tokens

    def check_logit_bias(self, bias: dict[str, float]) -> dict[int, float]:
        """Token-id keys as integers, each checked against the vocabulary."""
        out: dict[int, float] = {}
        for key, value in bias.items():
            if not key.isdigit() or int(key) >= self.n_vocab:
                raise InvalidRequestError(
                    f"logit_bias key {key!r} is not a token id of this model "
                    f"(0 to {self.n_vocab - 1})",
                    param="logit_bias",
                    code="invalid_value",
                )
            out[int(key)] = value
        return out

    def generate(
        self, prompt: Sequence[int], sampling: Sampling, cancel: threading.Event
    ) -> Iterator[Piece | Finished]:
        """Yield pieces of text as tokens are made, then one `Finished`."""
        llm = self.llm
        sampler = self._sampler(sampling)
        try:
            if not self._load_prompt(prompt, cancel):
                return
            scanner = StopScanner(sampling.stop)
            room = self.n_ctx - len(prompt)
            limit = min(sampling.max_tokens or room, room)
            produced = 0
            finish: Literal["stop", "length"] = "length"
            pending: list[dict[str, Any]] = []
            while produced < limit:
                if cancel.is_set():
                    return
                if sampling.logprobs:
                    logits = self._logits()
                token = sampler.sample(llm._ctx, -1)
                if _is_eog(llm, token):
                    finish = "stop"
                    break
                produced += 1
                text = scanner.feed_bytes(llm.detokenize([token]))
                if sampling.logprobs:
                    pending.append(self._logprob_entry(logits, token, sampling.top_logprobs))
                if text:
                    yield Piece(text, pending or None)
                    pending = []
                if scanner.stopped:
                    finish = "stop"
                    break
                llm.eval([token])
            rest = scanner.flush()
            if rest or pending:
                yield Piece(rest, pending or None)
            yield Finished(finish, len(prompt), produced)
        finally:
            sampler.close()

    def _logits(self) -> Any:
        import numpy as np

        pointer = self.llm._ctx.get_logits_ith(-1)
        return np.ctypeslib.as_array(pointer, shape=(self.n_vocab,)).astype(np.float64)

    def _token_info(self, token: int, logprob: float) -> dict[str, Any]:
        raw: bytes = self.llm.detokenize([token], special=True)
        return {
            "token": raw.decode("utf-8", errors="replace"),
            "logprob": logprob,
            "bytes": list(raw),
        }

    def _logprob_entry(self, logits: Any, token: int, top: int) -> dict[str, Any]:
        """OpenAI's ``logprobs.content[i]``, from the model's raw distribution."""
        import numpy as np

        peak = float(logits.max())
        log_total = peak + float(np.log(np.exp(logits - peak).sum()))
        entry = self._token_info(token, float(logits[token]) - log_total)
        best: list[dict[str, Any]] = []
        if top:
            ids = np.argpartition(-logits, top)[:top]
            ids = ids[np.argsort(-logits[ids])]
            best = [self._token_info(int(i), float(logits[i]) - log_total) for i in ids]
        entry["top_logprobs"] = best
        return entry

    def _load_prompt(self, prompt: Sequence[int], cancel: threading.Event) -> bool:
        """Evaluate the prompt, keeping the cached prefix; False if cancelled."""
        llm = self.llm
        cached = llm.n_tokens
        common = 0
        if not (llm._is_recurrent or llm._is_hybrid):
            for old, new in zip(llm.input_ids[:cached], prompt, strict=False):
                if old != new:
                    break
                common += 1
        # The last prompt token is always evaluated again: its logits start sampling.
        common = min(common, len(prompt) - 1)
        if common > 0:
            llm.n_tokens = common
        else:
            llm.reset()
        rest = list(prompt[common:])
        step = llm.n_batch
        for start in range(0, len(rest), step):
            if cancel.is_set():
                return False
            llm.eval(rest[start : start + step])
        return True

    def _sampler(self, s: Sampling) -> Any:
        import llama_cpp
        from llama_cpp._internals import LlamaSampler

        llm = self.llm
        sampler = LlamaSampler()
        if s.logit_bias:
            sampler.add_logit_bias(self.n_vocab, s.logit_bias)
        sampler.add_penalties(
            self.n_vocab,
            llm.last_n_tokens_size,
            s.repeat_penalty,
            s.frequency_penalty,
            s.presence_penalty,
        )
        if s.grammar is not None:
            grammar = llama_cpp.llama_sampler_init_grammar(
                llm._model.vocab, s.grammar.encode("utf-8"), b"root"
            )
            if not grammar:
                sampler.close()
                raise InvalidRequestError(
                    "the output grammar could not be parsed", param="response_format"
                )
            llama_cpp.llama_sampler_chain_add(sampler.sampler, grammar)
        seed = RANDOM_SEED if s.seed is None else s.seed & 0xFFFFFFFF
        if s.temperature <= 0:
            sampler.add_greedy()
        else:
            sampler.add_top_k(s.top_k)
            sampler.add_top_p(s.top_p, 1)
            sampler.add_min_p(s.min_p, 1)
            sampler.add_temp(s.temperature)
            sampler.add_dist(seed)
        return sampler


def _is_eog(llm: Any, token: int) -> bool:
    import llama_cpp

    return bool(llama_cpp.llama_vocab_is_eog(llm._model.vocab, token))


def _special_text(model: Any, token: int) -> str:
    return str(model.token_get_text(token)) if token >= 0 else ""
