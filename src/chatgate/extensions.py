"""Request fields beyond OpenAI's: the SGP v4 extensions, accepted on both front doors.

Some are honoured by the gateway itself for every backend (``memory_strategy``,
``inference_timeout``, ``prompt_post_processing``); the others are translated by each
backend or refused by it with a 400 that names the field and the source
(``docs/parameters.md``).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from chatgate.adapters.extras import check_headers
from chatgate.errors import InvalidRequestError

# Handled by the gateway before any backend sees the request: never sent upstream,
# never refused by a backend.
GATEWAY_FIELDS = frozenset(
    {"memory_strategy", "inference_timeout", "prompt_post_processing", "raw_prompt"}
)
# Handled by the upstream transport for every remote connection.
UPSTREAM_FIELDS = frozenset({"inference_extra_params", "inference_extra_headers"})
# The four kinds of output constraint, then vLLM's hints about how to enforce them.
GUIDED_KINDS = ("guided_json", "guided_regex", "guided_choice", "guided_grammar")
GUIDED_FIELDS = (*GUIDED_KINDS, "guided_decoding_backend", "guided_whitespace_pattern")


class MemoryStrategy(BaseModel):
    """``memory_strategy``: keep the last *k* messages (leading system messages stay)."""

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)

    name: Literal["last_k"] = "last_k"
    k: int = Field(ge=0)

    @model_validator(mode="before")
    @classmethod
    def _flatten_legacy(cls, value: Any) -> Any:
        # The older nested shape {name, params: {k}} is the same strategy.
        if isinstance(value, dict) and isinstance(value.get("params"), dict):
            flat = {k: v for k, v in value.items() if k != "params"}
            return {**flat, **value["params"]}
        return value


class AudioOutput(BaseModel):
    """``audio``: the spoken answer's format and voice (OpenAI audio models)."""

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)

    format: Literal["wav", "mp3", "flac", "opus", "pcm16", "aac"]
    voice: str | dict[str, str]


class RequestExtensions(BaseModel):
    """The extension fields, mixed into `ChatRequest`."""

    memory_strategy: MemoryStrategy | None = None
    guided_json: dict[str, Any] | None = None
    guided_regex: str | None = None
    guided_choice: list[str] | None = Field(default=None, min_length=1)
    guided_grammar: str | None = None
    guided_decoding_backend: str | None = None
    guided_whitespace_pattern: str | None = None
    chat_template: str | None = None
    chat_template_kwargs: dict[str, Any] | None = None
    include_stop_str_in_output: bool | None = None
    best_of: int | None = Field(default=None, ge=1, le=20)
    suffix: str | None = None
    # A prompt text that a text-completion backend (and the embedded engine) takes as it
    # is, with no template: what the Completions, Ollama (raw), KoboldCpp and llama.cpp
    # doors carry. Chat backends read the messages instead, which hold the same text as
    # one user message.
    raw_prompt: str | None = None
    inference_timeout: float | str | None = None
    inference_extra_params: dict[str, Any] | None = None
    inference_extra_headers: dict[str, str] | None = None
    # OpenAI's output-side fields, typed here so both doors check them.
    audio: AudioOutput | None = None
    modalities: list[Literal["text", "audio"]] | None = None
    prediction: dict[str, Any] | None = None

    @field_validator("inference_timeout")
    @classmethod
    def _positive_seconds(cls, value: float | str | None) -> float | str | None:
        if value is None:
            return None
        try:
            seconds = float(value)
        except ValueError:
            raise ValueError("must be a number of seconds") from None
        if not seconds > 0:
            raise ValueError("must be more than 0 seconds")
        return seconds

    @field_validator("inference_extra_headers")
    @classmethod
    def _sendable_headers(cls, value: dict[str, str] | None) -> dict[str, str] | None:
        # Refused here, at the door, so that both doors name the field before any backend
        # work; our own error (pydantic lets it through) keeps the param exactly this field.
        problem = check_headers(value) if value else None
        if problem is not None:
            raise InvalidRequestError(
                f"inference_extra_headers: {problem}",
                param="inference_extra_headers",
                code="invalid_header",
            )
        return value

    @property
    def deadline(self) -> float | None:
        """``inference_timeout`` in seconds."""
        return None if self.inference_timeout is None else float(self.inference_timeout)
