"""Token ids and counts by a model's own tokenizer, for the doors that expose them
(llama.cpp's ``/tokenize``, KoboldCpp's ``/api/extra/tokencount``, Anthropic's
``count_tokens``).

A model's tokenizer lives with the model: in the embedded engine, in a llama.cpp or
KoboldCpp server, in Claude's API. Where there is none, ids are not invented: `tokenize`
and `detokenize` say None, and counts fall back to chatgate's conservative estimate
(`chatgate.prompt.fitting.estimate_tokens`), marked as such.
"""

from __future__ import annotations

import logging
from typing import Any, NamedTuple

import orjson

from chatgate.adapters.anthropic import AnthropicAdapter
from chatgate.adapters.text_base import TextAdapter
from chatgate.backends.base import Backend
from chatgate.backends.local import LocalBackend
from chatgate.backends.remote import RemoteBackend
from chatgate.errors import NotFoundError
from chatgate.gateway import Gateway
from chatgate.prompt.fitting import estimate_tokens
from chatgate.routing import resolve
from chatgate.types import ChatRequest
from chatgate.upstream import UpstreamRequest

log = logging.getLogger("chatgate.tokens")

TOKENIZER_TIMEOUT = 30.0  # seconds: a tokenizer answers at once, or is not there
# What Anthropic's count_tokens takes of a Messages body; the rest it refuses.
COUNTED_FIELDS = ("model", "messages", "system", "tools", "tool_choice", "thinking")


class TokenCount(NamedTuple):
    """A count of tokens, and whether the model's own tokenizer made it."""

    tokens: int
    exact: bool


def _backend(gateway: Gateway, model: str) -> Backend:
    return resolve(model, gateway.routes)[1]


async def _send(backend: RemoteBackend, upstream: UpstreamRequest) -> Any:
    return await backend.transport.send_json(
        upstream, backend.connection.name, TOKENIZER_TIMEOUT, backend.secrets
    )


def _ids(data: Any) -> list[int] | None:
    """``{"tokens": [...]}`` (llama.cpp, vLLM) or ``{"ids": [...]}`` (KoboldCpp); a
    llama.cpp answer with pieces holds ``{"id", "piece"}`` objects."""
    if not isinstance(data, dict):
        return None
    found = data.get("tokens", data.get("ids"))
    if not isinstance(found, list):
        return None
    out = []
    for item in found:
        value = item.get("id") if isinstance(item, dict) else item
        if type(value) is not int:
            return None
        out.append(value)
    return out


async def tokenize(gateway: Gateway, model: str, text: str) -> list[int] | None:
    """*text*'s token ids by *model*'s tokenizer, with no BOS added; None when the
    model's backend has no tokenizer chatgate can reach."""
    backend = _backend(gateway, model)
    if isinstance(backend, LocalBackend):
        return await (await backend.ready_worker()).tokenize(text)
    if isinstance(backend, RemoteBackend) and isinstance(backend.adapter, TextAdapter):
        upstream = backend.adapter.tokenize_request(model.partition("/")[2], text)
        if upstream is not None:
            return _ids(await _send(backend, upstream))
    return None


async def detokenize(gateway: Gateway, model: str, ids: list[int]) -> str | None:
    """The text of token *ids* by *model*'s tokenizer; None when it has none."""
    backend = _backend(gateway, model)
    if isinstance(backend, LocalBackend):
        return await (await backend.ready_worker()).detokenize(ids)
    if isinstance(backend, RemoteBackend) and isinstance(backend.adapter, TextAdapter):
        upstream = backend.adapter.detokenize_request(model.partition("/")[2], ids)
        if upstream is not None:
            data = await _send(backend, upstream)
            text = data.get("content", data.get("result")) if isinstance(data, dict) else None
            return text if isinstance(text, str) else None
    return None


async def count_tokens(gateway: Gateway, model: str, text: str) -> TokenCount:
    """How many tokens *text* is for *model*: its tokenizer's count, else an estimate."""
    backend = _backend(gateway, model)
    if isinstance(backend, RemoteBackend) and isinstance(backend.adapter, TextAdapter):
        adapter = backend.adapter
        upstream = adapter.count_request(model.partition("/")[2], text)
        if upstream is not None:
            return TokenCount(adapter.read_count(await _send(backend, upstream)), True)
        return TokenCount(estimate_tokens(text), False)
    ids = await tokenize(gateway, model, text)
    if ids is not None:
        return TokenCount(len(ids), True)
    return TokenCount(estimate_tokens(text), False)


async def count_chat_tokens(gateway: Gateway, request: ChatRequest) -> TokenCount:
    """How many prompt tokens *request* is once its backend has shaped it: the
    embedded engine's and text servers' tokenizers count the rendered prompt, Claude
    counts its own Messages body; other backends get an estimate of every text, tool
    and schema the request carries."""
    plan = gateway.prepare(request)
    attempt = plan.first
    backend = attempt.backend
    if isinstance(backend, LocalBackend):
        shown = await backend.preview(attempt)
        tokens = shown.get("prompt_tokens")
        if type(tokens) is int:
            return TokenCount(tokens, True)
        return TokenCount(estimate_tokens(str(shown.get("prompt", ""))), False)
    if isinstance(backend, RemoteBackend):
        if isinstance(backend.adapter, AnthropicAdapter):
            counted = await _claude_count(backend, backend.build(attempt))
            if counted is not None:
                return TokenCount(counted, True)
        elif isinstance(backend.adapter, TextAdapter):
            shown = await backend.preview(attempt)
            text = (shown.get("prompt") or {}).get("text")
            if isinstance(text, str):
                return await count_tokens(gateway, plan.request.model, text)
    return TokenCount(_estimate(plan.request), False)


async def _claude_count(backend: RemoteBackend, built: UpstreamRequest) -> int | None:
    """Claude's own count of the Messages body *built*; None where the endpoint is not
    there (a proxy that passes only ``/v1/messages``)."""
    if built.body is None or not built.url.endswith("/messages"):
        return None
    body = {k: built.body[k] for k in COUNTED_FIELDS if k in built.body}
    upstream = UpstreamRequest("POST", built.url + "/count_tokens", built.headers, body)
    try:
        data = await _send(backend, upstream)
    except NotFoundError:
        log.info("connection '%s' has no count_tokens; estimating", backend.connection.name)
        return None
    value = data.get("input_tokens") if isinstance(data, dict) else None
    return value if type(value) is int else None


def _estimate(request: ChatRequest) -> int:
    """An estimate over everything a model reads: texts, tool calls, tools, schema."""
    parts = [m.text() for m in request.messages]
    for message in request.messages:
        for call in message.tool_calls or ():
            parts.append(call.function.name + call.function.arguments)
    if request.tools:
        tools = [t.model_dump(exclude_none=True) for t in request.tools]
        parts.append(orjson.dumps(tools).decode())
    if request.response_format is not None:
        parts.append(orjson.dumps(request.response_format.model_dump(by_alias=True)).decode())
    # Each message costs a few tokens of framing (role markers) beyond its text.
    return estimate_tokens("\n".join(parts)) + 4 * len(request.messages)
