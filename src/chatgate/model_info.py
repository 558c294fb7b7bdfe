"""What chatgate knows of a model beyond its id, for the doors that report it or shape
a request by it: which backend serves it, which fields that backend takes under their
own names, whether it speaks the Messages API itself, and its context, template and
special tokens (`model_facts`). Doors ask here rather than reach into a backend.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from chatgate.adapters.anthropic import AnthropicAdapter
from chatgate.adapters.ollama import OPTION_NATIVES
from chatgate.adapters.text_base import TextAdapter
from chatgate.adapters.text_prompt import DEFAULT_CONTEXT
from chatgate.backends.base import Backend
from chatgate.backends.local import LocalBackend
from chatgate.backends.remote import RemoteBackend
from chatgate.errors import ChatgateError
from chatgate.gateway import Gateway
from chatgate.routing import resolve

log = logging.getLogger("chatgate.model_info")

FACTS_TIMEOUT = 10.0  # seconds: a server tells its model's facts at once, or not at all
# Ollama's ``options`` that its server takes as they are (what an Ollama door passes on).
OLLAMA_OPTIONS = OPTION_NATIVES


def backend_of(gateway: Gateway, model: str) -> Backend:
    """The backend that serves *model* (a 404 for an unknown one)."""
    return resolve(model, gateway.routes)[1]


def natives_of(gateway: Gateway, model: str) -> frozenset[str]:
    """The request fields *model*'s backend takes under their own names (a text
    server's samplers); none for other backends."""
    backend = backend_of(gateway, model)
    if isinstance(backend, RemoteBackend) and isinstance(backend.adapter, TextAdapter):
        return backend.adapter.native
    return frozenset()


def speaks_messages(gateway: Gateway, model: str) -> bool:
    """Whether *model*'s connection speaks the Messages API itself (Claude), so that
    what only Claude reads (``thinking``, a top-level ``cache_control``) is worth sending."""
    try:
        backend = resolve(model, gateway.routes)[1]
    except ChatgateError:
        return False  # planning says why, in the door's shape
    return isinstance(backend, RemoteBackend) and isinstance(backend.adapter, AnthropicAdapter)


@dataclass(frozen=True, slots=True)
class ModelFacts:
    """What chatgate knows of a model: its context, its chat template and special
    tokens (each None where it does not know), and its generation slots."""

    model: str
    context: int | None = None
    chat_template: str | None = None
    bos_token: str | None = None
    eos_token: str | None = None
    slots: int = 1

    @property
    def context_or_default(self) -> int:
        """The context, else the one chatgate assumes for a text prompt."""
        return self.context or DEFAULT_CONTEXT


async def model_facts(gateway: Gateway, model: str) -> ModelFacts:
    """What the embedded engine, or a text server's own ``/props``-like route, says of
    *model*; a server that cannot tell (or fails to) leaves the facts unknown."""
    backend = backend_of(gateway, model)
    name = model.partition("/")[2]
    if isinstance(backend, LocalBackend):
        engine = backend.connection.engine
        props = await (await backend.ready_worker()).model_props()
        return ModelFacts(
            model,
            engine.context_size,
            _text(props.get("chat_template")),
            _text(props.get("bos_token")),
            _text(props.get("eos_token")),
            engine.parallel,
        )
    if isinstance(backend, RemoteBackend) and isinstance(backend.adapter, TextAdapter):
        adapter = backend.adapter
        configured = backend.connection.text.context_size
        known = adapter.prompter.facts.get(name)
        ask = adapter.facts_request(name)
        if (known is None or adapter.prompter.wants_facts(name)) and ask is not None:
            try:
                data = await backend.transport.send_json(
                    ask, backend.connection.name, FACTS_TIMEOUT, backend.secrets
                )
                known = adapter.read_facts(data)
            except (ChatgateError, TypeError, KeyError, AttributeError, ValueError) as exc:
                where = backend.connection.name
                log.info("connection '%s' did not tell its model's facts: %s", where, exc)
        if known is None:
            return ModelFacts(model, configured)
        return ModelFacts(
            model,
            configured or known.context_size,
            known.chat_template,
            known.bos_token or None,
            known.eos_token or None,
        )
    return ModelFacts(model)


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def engine_loading(gateway: Gateway, model: str) -> bool:
    """Whether *model* is the embedded engine's and it is not serving yet."""
    backend = backend_of(gateway, model)
    return isinstance(backend, LocalBackend) and backend.status()["status"] != "ok"
