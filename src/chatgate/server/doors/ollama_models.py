"""The Ollama door's model routes: ``/api/tags``, ``/api/show``, ``/api/ps``,
``/api/version``, and the model-management routes, which chatgate does not have.

chatgate knows a model's id, its connection, and sometimes its context size; it does
not know the weights behind a hosted model. So sizes are 0, the digest is a hash of the
id (stable, not of any file), ``modified_at`` is when chatgate started, and the details
it cannot know are empty strings. ``capabilities`` say what chatgate passes on to the
connection: tools and images to a chat API (the model decides what it does with
them), text alone to the embedded engine and to text-completion servers.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from chatgate.errors import InvalidRequestError
from chatgate.gateway import Gateway
from chatgate.server.dispatch import read_body
from chatgate.server.doors.ollama_names import DOOR, listed_name, model_id_for
from chatgate.server.doors.ollama_request import field, load
from chatgate.server.doors.reach import reachable_models
from chatgate.server.responses import dumps
from chatgate.source_row import EMBEDDED, TEXT_ADAPTERS
from chatgate.sources import get_source

# The Ollama API whose shapes this door answers in (the routes, fields and streams of
# this release); clients that check a minimum version compare against it.
OLLAMA_VERSION = "0.12.6"
# Go's zero time: what Ollama's `expires_at` holds for a model that never unloads.
NEVER = "0001-01-01T00:00:00Z"
NOT_HERE = (
    "chatgate does not {what} models: its models are the ones its configured connections "
    "serve (the embedded model, Ollama servers, hosted APIs), and GET /api/tags lists "
    "them; to add one, configure a connection (docs/connections.md)"
)


def _json(body: Any) -> Response:
    return Response(dumps(body), media_type="application/json")


def _time(seconds: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(seconds))


def _adapter(gateway: Gateway, model_id: str) -> str | None:
    backend = gateway.routes.get(model_id.partition("/")[0])
    source = get_source(backend.connection.source) if backend is not None else None
    return source.adapter if source is not None else None


def context_size(gateway: Gateway, model_id: str) -> int | None:
    """The context size chatgate is configured with for *model_id*, if any."""
    backend = gateway.routes.get(model_id.partition("/")[0])
    if backend is None:
        return None
    connection = backend.connection
    if _adapter(gateway, model_id) == EMBEDDED:
        return connection.engine.context_size
    return connection.text.context_size


def details(gateway: Gateway, model_id: str) -> dict[str, Any]:
    """Ollama's ``details``: what chatgate knows (the embedded engine runs GGUF), the
    rest empty."""
    out: dict[str, Any] = {
        "parent_model": "",
        "format": "gguf" if _adapter(gateway, model_id) == EMBEDDED else "",
        "family": "",
        "families": [],
        "parameter_size": "",
        "quantization_level": "",
    }
    context = context_size(gateway, model_id)
    if context is not None:
        out["context_length"] = context
    return out


def capabilities(gateway: Gateway, model_id: str) -> list[str]:
    """What chatgate passes on to *model_id*'s connection."""
    adapter = _adapter(gateway, model_id)
    if adapter == EMBEDDED or adapter in TEXT_ADAPTERS:
        return ["completion"]
    return ["completion", "tools", "vision"]


def digest(model_id: str) -> str:
    """A stable digest of the id (Ollama's is of the model's manifest)."""
    return hashlib.sha256(model_id.encode()).hexdigest()


def _entry(gateway: Gateway, model_id: str, ids: list[str], modified: str) -> dict[str, Any]:
    name = listed_name(model_id, ids)
    return {
        "name": name,
        "model": name,
        "modified_at": modified,
        "size": 0,
        "digest": digest(model_id),
        "details": details(gateway, model_id),
    }


async def tags(request: Request) -> Response:
    """``GET /api/tags``: every model the door may reach, remote ones included."""
    gateway: Gateway = request.app.state.gateway
    ids = list(dict.fromkeys(m.id for m in await reachable_models(gateway, DOOR)))
    modified = _time(request.app.state.started)
    return _json({"models": [_entry(gateway, i, ids, modified) for i in ids]})


async def show(request: Request) -> Response:
    """``POST /api/show``: one model's details (``model``, or the older ``name``)."""
    gateway: Gateway = request.app.state.gateway
    body = load(await read_body(request, request.app.state.max_body_bytes))
    name = field(body, "model", str, default="") or field(body, "name", str, default="")
    if not name:
        raise InvalidRequestError("model is required", param="model")
    model_id = model_id_for(name, gateway)
    connection = model_id.partition("/")[0]
    info: dict[str, Any] = {}
    context = context_size(gateway, model_id)
    if context is not None:
        # Clients read `<general.architecture>.context_length`; chatgate does not know
        # the architecture, so its own name stands in for it.
        info = {"general.architecture": "chatgate", "chatgate.context_length": context}
    return _json(
        {
            "modelfile": f"# chatgate serves this model through its connection "
            f"'{connection}'; there is no Modelfile.\nFROM {model_id}\n",
            "parameters": "",
            "template": "",
            "details": details(gateway, model_id),
            "model_info": info,
            "capabilities": capabilities(gateway, model_id),
            "modified_at": _time(request.app.state.started),
        }
    )


async def ps(request: Request) -> Response:
    """``GET /api/ps``: the models loaded in memory, which are the embedded ones (a
    remote model runs elsewhere); they stay loaded while chatgate runs."""
    gateway: Gateway = request.app.state.gateway
    models = [m.id for m in await reachable_models(gateway, DOOR)]
    out = []
    for model_id in models:
        if _adapter(gateway, model_id) != EMBEDDED:
            continue
        name = listed_name(model_id, models)
        entry = {"name": name, "model": name, "size": 0, "digest": digest(model_id)}
        entry["details"] = details(gateway, model_id)
        entry.update(expires_at=NEVER, size_vram=0, context_length=context_size(gateway, model_id))
        out.append(entry)
    return _json({"models": out})


async def version(request: Request) -> Response:
    """``GET /api/version``: the Ollama API version this door follows."""
    return _json({"version": OLLAMA_VERSION})


def not_here(what: str) -> Callable[[Request], Awaitable[Response]]:
    """A route for an operation chatgate does not have: a 400 that says why, as
    Ollama answers what a model cannot do."""

    async def endpoint(request: Request) -> Response:
        raise InvalidRequestError(NOT_HERE.format(what=what), code="not_supported")

    endpoint.__doc__ = f"Ollama's {what}: not in chatgate."
    return endpoint
