"""The catalogue's text-completion sources: a chat becomes one prompt string
(`chatgate.adapters.text_base`). Facts from
``shared/reference/text-completion-backends.md`` §1."""

from __future__ import annotations

from chatgate.source_row import Source

TEXT_SOURCES: tuple[Source, ...] = (
    Source(
        id="kobold",
        display_name="KoboldCpp",
        adapter="kobold",
        default_base_url="http://127.0.0.1:5001",
        key_required=False,
    ),
    Source(
        id="koboldai",
        display_name="KoboldAI Classic",
        adapter="kobold",
        default_base_url="http://127.0.0.1:5000",
        key_required=False,
        quirks=frozenset({"classic"}),
    ),
    Source(
        id="llamacpp",
        display_name="llama.cpp (llama-server)",
        adapter="llamacpp",
        default_base_url="http://127.0.0.1:8080",
        key_required=False,
    ),
    Source(
        id="ollama",
        display_name="Ollama",
        adapter="ollama",
        default_base_url="http://127.0.0.1:11434",
        key_required=False,
    ),
    Source(
        id="textgen",
        display_name="text-generation-webui",
        adapter="openai_text",
        default_base_url="http://127.0.0.1:5000",
        key_required=False,
    ),
    Source(
        id="tabby",
        display_name="TabbyAPI",
        adapter="openai_text",
        default_base_url="http://127.0.0.1:5000",
        key_required=False,
    ),
    Source(
        id="vllm",
        display_name="vLLM (text completion)",
        adapter="openai_text",
        default_base_url="http://127.0.0.1:8000",
        key_required=False,
    ),
    Source(
        id="aphrodite",
        display_name="Aphrodite Engine",
        adapter="openai_text",
        default_base_url="http://127.0.0.1:2242",
        key_required=False,
    ),
    Source(
        id="mancer",
        display_name="Mancer",
        adapter="openai_text",
        default_base_url="https://neuro.mancer.tech/oai/v1",
        auth="x-api-key",
    ),
    Source(
        id="dreamgen",
        display_name="DreamGen",
        adapter="openai_text",
        default_base_url="https://dreamgen.com/api/openai/v1",
    ),
    Source(
        id="generic",
        display_name="Generic OpenAI-style text completion",
        adapter="openai_text",
        key_required=False,
    ),
    Source(
        id="horde",
        display_name="AI Horde",
        adapter="horde",
        default_base_url="https://aihorde.net/api/v2",
        # The adapter sends the key as the Horde's ``apikey`` header (Auth has no such
        # value); without one, the anonymous key.
        key_required=False,
        anonymous_key="0000000000",
    ),
    Source(
        id="novelai",
        display_name="NovelAI",
        adapter="novelai",
        default_base_url="https://text.novelai.net",
        # Fixed ids; the "list" is GET /user/subscription, which proves the token.
        models="list",
        fixed_models=("clio-v1", "kayra-v1", "llama-3-erato-v1"),
    ),
)
