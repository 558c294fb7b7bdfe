"""The protocol adapters by name: a catalogue row's ``adapter`` picks one here.

An adapter module is imported when a connection first needs it, so ``import chatgate``
stays light. A name that is not registered is a configuration error, never a silent
fallback to OpenAI's protocol.
"""

from __future__ import annotations

import importlib

from chatgate.adapters.wire import WireAdapter
from chatgate.config import Connection
from chatgate.errors import ConfigError
from chatgate.prompt.postprocess import DEFAULT_PLACEHOLDER
from chatgate.sources import Source
from chatgate.upstream import Credentials

# adapter name → (module, class). "local" is not here: the embedded engine is a backend
# of its own, not an HTTP protocol.
ADAPTERS: dict[str, tuple[str, str]] = {
    "openai_chat": ("chatgate.adapters.openai_chat", "OpenAIChatAdapter"),
    "anthropic": ("chatgate.adapters.anthropic", "AnthropicAdapter"),
    "gemini": ("chatgate.adapters.gemini", "GeminiAdapter"),
    "cohere": ("chatgate.adapters.cohere", "CohereAdapter"),
    "kobold": ("chatgate.adapters.kobold", "KoboldAdapter"),
    "llamacpp": ("chatgate.adapters.llamacpp", "LlamaCppAdapter"),
    "ollama": ("chatgate.adapters.ollama", "OllamaAdapter"),
    "openai_text": ("chatgate.adapters.openai_text", "OpenAITextAdapter"),
    "horde": ("chatgate.adapters.horde", "HordeAdapter"),
    "novelai": ("chatgate.adapters.novelai", "NovelAIAdapter"),
}


def make_adapter(
    connection: Connection,
    source: Source,
    credentials: Credentials,
    placeholder: str = DEFAULT_PLACEHOLDER,
) -> WireAdapter:
    """The adapter the source's row names, for *connection*."""
    where = ADAPTERS.get(source.adapter)
    if where is None:
        known = ", ".join(sorted(ADAPTERS))
        raise ConfigError(
            f"connection '{connection.name}': source '{source.id}' names adapter "
            f"'{source.adapter}', which does not exist (known: {known})"
        )
    module, name = where
    adapter_class = getattr(importlib.import_module(module), name)
    adapter: WireAdapter = adapter_class(connection, source, credentials, placeholder)
    return adapter
