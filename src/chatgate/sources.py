"""The catalogue of sources, as data: one row per kind of backend.

A connection names a source; its row says which adapter speaks to it, where it lives,
how it authenticates, how its models are listed and its status checked, which prompt
post-processing it needs, and which request parameters it refuses. A new
OpenAI-compatible provider is one row here, not a new module.

Facts come from ``shared/reference/sillytavern-chat-completions.md`` §1 and the
providers' public API documentation. See ``docs/connections.md`` for the user's view.
"""

from __future__ import annotations

from chatgate.source_row import EMBEDDED as EMBEDDED
from chatgate.source_row import OPENAI_CORE as OPENAI_CORE
from chatgate.source_row import TEXT_ADAPTERS as TEXT_ADAPTERS
from chatgate.source_row import Auth as Auth
from chatgate.source_row import MaxTokensName as MaxTokensName
from chatgate.source_row import ModelRule as ModelRule
from chatgate.source_row import NameField as NameField
from chatgate.source_row import SchemaForm as SchemaForm
from chatgate.source_row import Source as Source
from chatgate.sources_text import TEXT_SOURCES

REASONING = frozenset({"reasoning_effort"})
# OpenAI's reasoning models (o1, o3, o4-mini, gpt-5) take no sampling controls and
# bound their answer only by max_completion_tokens (the reference's §1, "o-series/gpt-5
# rules"); the -chat variants of gpt-5 are chat models and take them.
OPENAI_REASONING = ModelRule(
    pattern=r"(o1|o3|o4)(-|$)|gpt-5(?!(\.\d+)?-chat)",
    refuses=frozenset(
        {"temperature", "top_p", "presence_penalty", "frequency_penalty"}
        | {"logit_bias", "logprobs", "top_logprobs"}
    ),
    max_tokens_name="max_completion_tokens",
    why="a reasoning model",
)
NO_SAMPLING_EXTRAS = frozenset({"logit_bias", "logprobs", "top_logprobs", "top_k"})

SOURCES: dict[str, Source] = {
    source.id: source
    for source in (
        Source(
            id="local",
            display_name="Embedded model (llama.cpp in process)",
            adapter=EMBEDDED,
            key_required=False,
            models="fixed",
            status="none",
        ),
        Source(
            id="openai",
            display_name="OpenAI",
            default_base_url="https://api.openai.com/v1",
            reverse_proxy=True,
            rejects=frozenset({"top_k"}),
            model_rules=(OPENAI_REASONING,),
            passthrough=frozenset(
                {
                    "reasoning_effort",
                    "verbosity",
                    "service_tier",
                    "store",
                    "metadata",
                    "prediction",
                    "modalities",
                    "audio",
                    "web_search_options",
                    "prompt_cache_key",
                    "safety_identifier",
                }
            ),
        ),
        Source(
            id="mistral",
            display_name="Mistral AI",
            default_base_url="https://api.mistral.ai/v1",
            reverse_proxy=True,
            models_filter=("capabilities.completion_chat", True),
            rejects=NO_SAMPLING_EXTRAS,
            passthrough=frozenset({"safe_prompt", "prompt_mode", "prediction"}),
            user_field=False,
            quirks=frozenset({"mistral_tool_ids", "mistral_prefix", "mistral_seed"}),
        ),
        Source(
            id="deepseek",
            display_name="DeepSeek",
            default_base_url="https://api.deepseek.com/beta",
            models_url="https://api.deepseek.com/models",
            reverse_proxy=True,
            post_processing="semi-strict-tools",
            post_processing_forced=True,
            rejects=frozenset({"top_k", "logit_bias", "n"}),
            passthrough=frozenset({"thinking", "reasoning_effort"}),
            quirks=frozenset({"deepseek_prefix", "deepseek_reasoning"}),
        ),
        Source(
            id="openrouter",
            display_name="OpenRouter",
            default_base_url="https://openrouter.ai/api/v1",
            headers=(("HTTP-Referer", "http://localhost"), ("X-Title", "chatgate")),
            passthrough=frozenset(
                {
                    "top_k",
                    "provider",
                    "transforms",
                    "route",
                    "models",
                    "plugins",
                    "reasoning",
                    "include_reasoning",
                    "min_p",
                    "top_a",
                    "repetition_penalty",
                    "usage",
                    "verbosity",
                    "reasoning_effort",
                }
            ),
        ),
        Source(
            id="perplexity",
            display_name="Perplexity",
            default_base_url="https://api.perplexity.ai",
            models="fixed",
            fixed_models=(
                "sonar",
                "sonar-pro",
                "sonar-reasoning",
                "sonar-reasoning-pro",
                "sonar-deep-research",
            ),
            status="none",
            post_processing="strict",
            post_processing_forced=True,
            rejects=frozenset(
                {
                    "stop",
                    "logit_bias",
                    "logprobs",
                    "top_logprobs",
                    "n",
                    "tools",
                    "tool_choice",
                    "seed",
                }
            ),
            passthrough=frozenset(
                {
                    "top_k",
                    "search_domain_filter",
                    "search_recency_filter",
                    "return_images",
                    "return_related_questions",
                    "web_search_options",
                    "search_mode",
                    "reasoning_effort",
                }
            ),
        ),
        Source(
            id="ai21",
            display_name="AI21 Studio",
            default_base_url="https://api.ai21.com/studio/v1",
            models="fixed",
            fixed_models=("jamba-large", "jamba-mini"),
            status="none",
            post_processing="merge",
            post_processing_forced=True,
            rejects=NO_SAMPLING_EXTRAS | {"presence_penalty", "frequency_penalty"},
            passthrough=frozenset({"documents"}),
        ),
        Source(
            id="aimlapi",
            display_name="AI/ML API",
            default_base_url="https://api.aimlapi.com/v1",
            headers=(("HTTP-Referer", "http://localhost"), ("X-Title", "chatgate")),
            models_filter=("type", "chat-completion"),
            passthrough=REASONING | {"top_k"},
        ),
        Source(
            id="pollinations",
            display_name="Pollinations",
            default_base_url="https://gen.pollinations.ai/v1",
            anonymous_base_url="https://text.pollinations.ai/v1",
            anonymous_key="anonymous",
            key_required=False,
            models_url="https://gen.pollinations.ai/text/models",
            passthrough=REASONING,
            quirks=frozenset({"random_seed"}),
        ),
        Source(
            id="groq",
            display_name="Groq",
            default_base_url="https://api.groq.com/openai/v1",
            rejects=frozenset({"logprobs", "logit_bias", "top_logprobs", "n", "top_k"}),
            passthrough=REASONING | {"reasoning_format", "service_tier"},
        ),
        Source(
            id="xai",
            display_name="xAI (Grok)",
            default_base_url="https://api.x.ai/v1",
            reverse_proxy=True,
            rejects=frozenset({"top_k"}),
            passthrough=REASONING | {"search_parameters"},
            name_field="user",
        ),
        Source(
            id="fireworks",
            display_name="Fireworks AI",
            default_base_url="https://api.fireworks.ai/inference/v1",
            models_filter=("supports_chat", True),
            passthrough=REASONING | {"top_k", "min_p", "repetition_penalty"},
        ),
        Source(
            id="claude",
            display_name="Claude (Anthropic)",
            adapter="anthropic",
            name_field="none",
            default_base_url="https://api.anthropic.com/v1",
            auth="x-api-key",
            reverse_proxy=True,
            fixed_models=(
                "claude-opus-4-5",
                "claude-sonnet-4-5",
                "claude-haiku-4-5",
                "claude-opus-4-1",
                "claude-sonnet-4-0",
                "claude-3-7-sonnet-latest",
                "claude-3-5-haiku-latest",
            ),
        ),
        Source(
            id="google",
            display_name="Google AI Studio (Gemini API)",
            adapter="gemini",
            name_field="none",
            default_base_url="https://generativelanguage.googleapis.com/v1beta",
            auth="x-goog-api-key",
            reverse_proxy=True,
        ),
        Source(
            id="vertexai",
            display_name="Google Vertex AI",
            adapter="gemini",
            name_field="none",
            default_base_url="https://aiplatform.googleapis.com/v1",
            auth="x-goog-api-key",
            key_required=False,  # a service account works instead
            reverse_proxy=True,
            models="fixed",
            fixed_models=(
                "gemini-2.5-pro",
                "gemini-2.5-flash",
                "gemini-2.5-flash-lite",
                "gemini-2.0-flash",
                "gemini-2.0-flash-lite",
            ),
            status="none",
        ),
        Source(
            id="cohere",
            display_name="Cohere",
            adapter="cohere",
            name_field="none",
            default_base_url="https://api.cohere.com/v2",
            models_url="https://api.cohere.com/v1/models?endpoint=chat&page_size=1000",
        ),
        Source(
            id="custom",
            display_name="Custom (OpenAI-compatible)",
            key_required=False,
            reverse_proxy=True,
            quirks=frozenset({"pass_all"}),
            max_tokens_name="max_tokens",
            schema_forms=("json_schema", "json_object", "none"),
        ),
        *TEXT_SOURCES,
    )
}

CHAT_SOURCES = tuple(s for s in SOURCES if SOURCES[s].adapter == "openai_chat")


def get_source(source_id: str) -> Source | None:
    """The catalogue row for *source_id*, if there is one."""
    return SOURCES.get(source_id)
