"""The OpenAI-style text servers chatgate knows, as a table: each one's path prefix,
auth header, samplers and own fields, constrained-decoding fields, ``response_format``
form, tokenizer and abort endpoints (`chatgate.adapters.openai_text` reads it)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from chatgate.adapters.text_base import Samplers

Auth = Literal["bearer", "x-api-key", "both"]
# response_format's native form: Tabby's json_schema, vLLM's structured_outputs or the
# legacy guided_json (as the connection's vllm_guided says), Aphrodite's guided_json.
# "grammar": a GBNF grammar (`chatgate.gbnf`) in the flavour's `grammar_field`.
JSONForm = Literal["json_schema", "vllm", "guided_json", "grammar"]
# Where the model's context is told: an entry of the models list (max_model_len), or
# TabbyAPI's /v1/model (parameters.max_seq_len).
ContextFrom = Literal["models", "tabby"]

FULL = Samplers(
    max_tokens="max_tokens",
    presence_penalty="presence_penalty",
    frequency_penalty="frequency_penalty",
)
OPENAI_ONLY = Samplers(
    max_tokens="max_tokens",
    top_k=None,
    min_p=None,
    repetition_penalty=None,
    presence_penalty="presence_penalty",
    frequency_penalty="frequency_penalty",
)
OOBA = frozenset(
    {
        "typical_p", "tfs", "top_a", "top_n_sigma", "epsilon_cutoff", "eta_cutoff",
        "dry_multiplier", "dry_base", "dry_allowed_length", "dry_sequence_breakers",
        "xtc_threshold", "xtc_probability", "dynatemp_low", "dynatemp_high",
        "dynatemp_exponent", "dynamic_temperature", "smoothing_factor", "smoothing_curve",
        "mirostat_mode", "mirostat_tau", "mirostat_eta", "repetition_penalty_range",
        "encoder_repetition_penalty", "no_repeat_ngram_size", "penalty_alpha",
        "guidance_scale", "negative_prompt", "do_sample", "temperature_last",
        "sampler_priority", "ban_eos_token", "add_bos_token", "skip_special_tokens",
        "truncation_length", "custom_token_bans", "auto_max_new_tokens", "preset",
    }
)  # fmt: skip
TABBY = frozenset(
    {
        "typical", "typical_p", "tfs", "top_a", "skew", "max_temp", "min_temp",
        "temp_exponent", "mirostat_mode", "mirostat", "mirostat_tau", "mirostat_eta",
        "dry_multiplier", "dry_base", "dry_range", "dry_allowed_length", "xtc_threshold",
        "xtc_probability", "smoothing_factor", "penalty_range", "min_tokens",
        "ban_eos_token", "ignore_eos", "add_bos_token", "token_healing", "temperature_last",
        "banned_strings", "banned_tokens", "allowed_tokens",
    }
)  # fmt: skip
VLLM = frozenset(
    {
        "length_penalty", "min_tokens", "truncate_prompt_tokens", "ignore_eos",
        "skip_special_tokens", "spaces_between_special_tokens", "add_special_tokens",
        "stop_token_ids", "allowed_token_ids", "bad_words", "include_stop_str_in_output",
        "prompt_logprobs", "priority",
    }
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class Flavour:
    """What sets one OpenAI-style text server apart."""

    prefix: str  # before /completions and /models, after the base URL
    auth: Auth = "bearer"
    samplers: Samplers = FULL
    natives: frozenset[str] = frozenset()  # the server's own sampler fields
    constraints: frozenset[str] = frozenset()  # its constrained-decoding fields
    json_form: JSONForm | None = None  # response_format's native form; None: refused
    grammar_field: str | None = None  # where a grammar goes (json_form "grammar")
    guided: bool = False  # takes vLLM's guided_* / structured_outputs forms
    tokenizer: str | None = None  # root-relative path of the token count endpoint
    tokenize_key: Literal["text", "prompt"] = "text"  # the field the text goes in
    abort: str | None = None  # root-relative path that stops a running generation
    context_from: ContextFrom | None = None
    refuses_unknown: bool = False  # a field it does not know is a 400 there
    max_stops: int | None = None
    adds_bos: bool = True


FLAVOURS: dict[str, Flavour] = {
    "textgen": Flavour(
        "/v1",
        natives=OOBA,
        constraints=frozenset({"grammar_string"}),
        json_form="grammar",
        grammar_field="grammar_string",
        tokenizer="/v1/internal/encode",
        abort="/v1/internal/stop-generation",
    ),
    "tabby": Flavour(
        "/v1",
        auth="both",
        natives=TABBY,
        constraints=frozenset({"json_schema", "regex_pattern", "grammar_string"}),
        json_form="json_schema",
        tokenizer="/v1/token/encode",
        context_from="tabby",
    ),
    "vllm": Flavour(
        "/v1",
        natives=VLLM,
        constraints=frozenset({"structured_outputs"}),
        json_form="vllm",
        guided=True,
        tokenizer="/tokenize",
        tokenize_key="prompt",
        context_from="models",
    ),
    "aphrodite": Flavour(
        "/v1",
        natives=VLLM | OOBA,
        constraints=frozenset({"grammar_string"}),
        json_form="guided_json",
        guided=True,
        tokenizer="/v1/tokenize",
        tokenize_key="prompt",
        context_from="models",
    ),
    "mancer": Flavour(
        "", auth="x-api-key", natives=OOBA, constraints=frozenset({"grammar_string"})
    ),
    "dreamgen": Flavour(""),
    "generic": Flavour("", samplers=OPENAI_ONLY, refuses_unknown=True, max_stops=4),
}
