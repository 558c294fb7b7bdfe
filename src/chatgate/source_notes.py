"""The advice a person needs beside each source when making a connection: where a key
comes from, and what to try when connecting fails.

Drawn from the seed documents (the API Connections pages a person reads at a screen)
and put in our own words; ``GET /api/sources`` gives each row's note as ``notes``.
Every source in `chatgate.sources.SOURCES` has one (``tests/web/test_web_server.py``).
"""

from __future__ import annotations

from dataclasses import dataclass

# Said beside every key field, whatever the source: providers show a key once.
KEY_WARNING = (
    "A lost key cannot be shown again: the provider displays it only when it is made, and "
    "chatgate shows only its masked form once saved. Keep your own copy somewhere safe."
)

# The seeds' hint for any OpenAI-compatible endpoint, in chatgate's terms.
_V1_HINT = (
    "Give the server's base URL. If connecting fails, add /v1 at the end (chatgate also "
    "tries /v1 once by itself); never add /chat/completions, which chatgate strips."
)
_LOCAL = "Runs on your own machine; no key is needed unless you started it with one. "


@dataclass(frozen=True, slots=True)
class SourceNote:
    """Where to get a key for a source (``key_url``, None when it needs none) and the
    advice shown under its fields (``hint``)."""

    key_url: str | None
    hint: str


NOTES: dict[str, SourceNote] = {
    "local": SourceNote(
        None,
        "The small model bundled with chatgate, run in its own worker process. Nothing to "
        "configure here and nothing is billed.",
    ),
    "openai": SourceNote(
        "https://platform.openai.com/api-keys",
        "Sign in to the OpenAI platform and create a key under API keys. To go through a "
        "reverse proxy instead, give its URL and, if it asks for one, its password.",
    ),
    "mistral": SourceNote(
        "https://console.mistral.ai/api-keys/",
        "Create an account on La Plateforme, pick a plan (there is a free tier), then "
        "create a key. A new key may take a few minutes before it works.",
    ),
    "deepseek": SourceNote(
        "https://platform.deepseek.com/",
        "Buy credits on the DeepSeek platform, then create a key there. chatgate always "
        "applies the semi-strict post-processing DeepSeek requires.",
    ),
    "openrouter": SourceNote(
        "https://openrouter.ai/keys",
        "One key reaches the models of many vendors; credits are per token, and some "
        "models are free with a daily limit.",
    ),
    "perplexity": SourceNote(
        "https://www.perplexity.ai/",
        "Set up billing and buy credits first. Perplexity has no free status call, so "
        "send a test message to check the key; strict post-processing is always applied.",
    ),
    "ai21": SourceNote(
        "https://ai21.com/",
        "Sign in to AI21 Studio and create a key in the account settings (a free trial "
        "exists). There is no free status call: send a test message to check the key.",
    ),
    "aimlapi": SourceNote(
        "https://aimlapi.com/",
        "One key for several hundred models; a free tier with rate limits exists.",
    ),
    "pollinations": SourceNote(
        "https://pollinations.ai/",
        "Works without a key (the anonymous tier); a key gives the authenticated tier. "
        "Answers may contain advertising links.",
    ),
    "groq": SourceNote(
        "https://console.groq.com/keys",
        "Create a key in the Groq console.",
    ),
    "xai": SourceNote(
        "https://console.x.ai/",
        "Create a key in the xAI console. A reverse proxy URL and password may be given instead.",
    ),
    "fireworks": SourceNote(
        "https://fireworks.ai/",
        "Create a key in your Fireworks account settings.",
    ),
    "claude": SourceNote(
        "https://console.anthropic.com/",
        "Paste a key from the Anthropic console and connect. Credits are bought in "
        "advance. A reverse proxy URL and its password may be given instead.",
    ),
    "google": SourceNote(
        "https://aistudio.google.com/",
        "Create a key in Google AI Studio; the free tier has rate limits and may ask for "
        "billing details.",
    ),
    "vertexai": SourceNote(
        "https://console.cloud.google.com/vertex-ai/studio",
        "Harder to set up than AI Studio, but steadier. An express-mode key works here; a "
        "service account goes in the config file. No free status call: send a test message.",
    ),
    "cohere": SourceNote(
        "https://dashboard.cohere.com/",
        "Trial keys are free, with rate limits enough for casual use.",
    ),
    "custom": SourceNote(
        None,
        "Any server that speaks OpenAI's Chat Completions (LM Studio, LiteLLM, LocalAI, "
        "vLLM, ...). A key only if the server wants one. " + _V1_HINT,
    ),
    "kobold": SourceNote(
        None,
        _LOCAL + "Give the address KoboldCpp prints at start-up (port 5001 by default), "
        "without /v1 or /api.",
    ),
    "koboldai": SourceNote(
        None,
        _LOCAL + "KoboldAI Classic is abandoned upstream; prefer KoboldCpp where you can.",
    ),
    "llamacpp": SourceNote(
        None,
        _LOCAL + "Give llama-server's address (port 8080 by default), without /v1.",
    ),
    "ollama": SourceNote(
        None,
        _LOCAL + "Give Ollama's address (port 11434 by default); models come from `ollama pull`.",
    ),
    "textgen": SourceNote(
        None,
        _LOCAL + "Start text-generation-webui with --api, then give http://127.0.0.1:5000; "
        "the /v1 its console prints may be left off.",
    ),
    "tabby": SourceNote(
        None,
        "TabbyAPI makes an API key at its first start (in its api_tokens file): paste it "
        "here. Port 5000 by default.",
    ),
    "vllm": SourceNote(None, _LOCAL + _V1_HINT),
    "aphrodite": SourceNote(None, _LOCAL + _V1_HINT),
    "mancer": SourceNote(
        "https://mancer.tech/",
        "Credits pay for tokens; prompts are not logged unless you opt in for a discount.",
    ),
    "dreamgen": SourceNote(
        "https://dreamgen.com/",
        "Models tuned for steerable creative writing; free monthly credits, or a subscription.",
    ),
    "generic": SourceNote(
        None,
        "Any server with an OpenAI-style /completions route (llama-cpp-python, LM Studio, "
        "...). " + _V1_HINT,
    ),
    "horde": SourceNote(
        "https://aihorde.net/register",
        "Volunteers' GPUs answer, so waits and models vary. Works with the anonymous key; "
        "a registered key gets priority in the queue.",
    ),
    "novelai": SourceNote(
        "https://novelai.net/",
        "A paid subscription is needed; its tier sets the longest context. Paste the "
        "persistent API token from the account settings.",
    ),
}


def note_for(source_id: str) -> SourceNote | None:
    """The note for *source_id*, if there is one."""
    return NOTES.get(source_id)
