"""A GGUF model loaded through llama-cpp-python's low-level bindings: vocabulary side.

The model's weights are shared by every sequence of the engine's one context; this
module covers what needs no context: tokenizing, token text, special tokens, metadata.
"""

from __future__ import annotations

import ctypes
from pathlib import Path
from typing import Any

from chatgate.errors import InvalidRequestError


class LoadedModel:
    """The weights and vocabulary of one GGUF file."""

    def __init__(self, path: Path) -> None:
        import llama_cpp
        from llama_cpp._internals import LlamaModel
        from llama_cpp._logger import set_verbose

        set_verbose(False)  # llama.cpp's own log lines to stderr: errors only
        self.path = path
        self.raw: Any = LlamaModel(
            path_model=str(path), params=llama_cpp.llama_model_default_params(), verbose=False
        )
        self.vocab = self.raw.vocab
        self.n_vocab: int = self.raw.n_vocab()
        self.n_ctx_train: int = self.raw.n_ctx_train()
        self.bos_text = self._special(self.raw.token_bos())
        self.eos_text = self._special(self.raw.token_eos())
        self.add_bos: bool = bool(self.raw.add_bos_token())
        self.metadata: dict[str, str] = dict(self.raw.metadata())
        self.chat_template: str | None = self.metadata.get("tokenizer.chat_template")
        self._buffer = ctypes.create_string_buffer(256)
        self._is_eog = llama_cpp.llama_vocab_is_eog
        self._to_piece = llama_cpp.llama_token_to_piece

    def _special(self, token: int) -> str:
        return str(self.raw.token_get_text(token)) if token >= 0 else ""

    def tokenize(self, prompt: str) -> list[int]:
        """Tokens of a rendered prompt; special tokens in the text are parsed as such."""
        add_bos = self.add_bos and not (self.bos_text and prompt.startswith(self.bos_text))
        tokens: list[int] = self.raw.tokenize(prompt.encode("utf-8"), add_bos, True)
        return tokens

    def piece(self, token: int, *, special: bool = False) -> bytes:
        """The bytes one token stands for (a UTF-8 character may span two tokens)."""
        size = self._to_piece(self.vocab, token, self._buffer, 256, 0, special)
        return bytes(self._buffer.raw[:size]) if size > 0 else b""

    def is_end(self, token: int) -> bool:
        """Whether *token* ends generation (end of turn, end of text)."""
        return bool(self._is_eog(self.vocab, token))

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

    def close(self) -> None:
        """Free the weights."""
        self.raw.close()
