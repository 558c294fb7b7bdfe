"""One row of the catalogue of sources (`chatgate.sources`): what chatgate knows about
one kind of backend, as typed data."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from chatgate.types import PostProcessingMode

Auth = Literal["bearer", "x-api-key", "x-goog-api-key"]
# The adapter name of the embedded engine, which is a backend of its own, not a protocol.
EMBEDDED = "local"
# The adapters of the text-completion sources: a chat becomes one prompt string.
TEXT_ADAPTERS = frozenset({"kobold", "llamacpp", "ollama", "openai_text", "horde", "novelai"})
# Where a wire carries a message's speaker name: on every message, on user messages
# only (xAI), or nowhere (the name then becomes a prefix, `chatgate.prompt.policy`).
NameField = Literal["all", "user", "none"]
# The name a client's ``max_completion_tokens`` is sent under. Servers older than that
# name (llama.cpp's, llama-cpp-python's) ignore it and would run unbounded.
MaxTokensName = Literal["max_completion_tokens", "max_tokens"]
# The forms a JSON-schema constraint can take on the wire, tried in a row's order until
# one is not refused: OpenAI's ``json_schema``, llama.cpp's ``json_object`` + ``schema``,
# or none (sent unconstrained, and chatgate checks the output against the schema).
SchemaForm = Literal["json_schema", "json_object", "none"]

# Parameters of the OpenAI request that most OpenAI-compatible servers accept. Anything
# else a client sends must be in a row's ``passthrough`` (or the source is ``custom``).
OPENAI_CORE = frozenset(
    {
        "model", "messages", "stream", "stream_options", "max_tokens",
        "max_completion_tokens", "temperature", "top_p", "stop", "seed", "n",
        "presence_penalty", "frequency_penalty", "logit_bias", "logprobs", "top_logprobs",
        "response_format", "user", "tools", "tool_choice", "parallel_tool_calls",
    }
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class ModelRule:
    """What sets some of a source's models apart (OpenAI's reasoning models): the
    request fields they refuse, and the name their token bound must go under."""

    pattern: str  # a regular expression, matched at the start of the model id
    refuses: frozenset[str] = frozenset()
    max_tokens_name: MaxTokensName | None = None
    why: str = ""  # said in a refusal: what these models are


@dataclass(frozen=True, slots=True)
class Source:
    """What chatgate knows about one kind of backend."""

    id: str
    display_name: str
    adapter: str = "openai_chat"
    default_base_url: str | None = None
    auth: Auth = "bearer"
    key_required: bool = True
    # Key sent when none is configured (Pollinations' anonymous tier).
    anonymous_key: str | None = None
    anonymous_base_url: str | None = None
    reverse_proxy: bool = False
    # How models are listed: the upstream list (GET models_url or {base}/models), a
    # fixed list, or only the connection's manual ``models``.
    models: Literal["list", "fixed", "manual"] = "list"
    models_url: str | None = None
    fixed_models: tuple[str, ...] = ()
    # Keep only list entries whose field (dotted path) has this value.
    models_filter: tuple[str, object] | None = None
    status: Literal["models", "none"] = "models"
    post_processing: PostProcessingMode = "none"
    post_processing_forced: bool = False
    rejects: frozenset[str] = frozenset()
    passthrough: frozenset[str] = frozenset()
    headers: tuple[tuple[str, str], ...] = ()
    name_field: NameField = "all"
    user_field: bool = True
    quirks: frozenset[str] = frozenset()
    max_tokens_name: MaxTokensName = "max_completion_tokens"
    schema_forms: tuple[SchemaForm, ...] = ("json_schema",)
    # Models that differ from the rest of the source (the first rule that matches).
    model_rules: tuple[ModelRule, ...] = ()
