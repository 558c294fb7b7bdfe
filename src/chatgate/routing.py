"""From a model id (``connection/model``) to the backend that serves it."""

from __future__ import annotations

from collections.abc import Mapping

from chatgate.backends.base import Backend
from chatgate.errors import ModelNotFoundError


def split_model_id(model: str) -> tuple[str, str]:
    """``"local/smollm2"`` → ``("local", "smollm2")``; the model part may hold slashes."""
    connection, _, name = model.partition("/")
    return connection, name


def model_id(connection: str, model: str, deployment: str | None = None) -> str:
    """The model id that routes to *model* on *connection* (at *deployment*, one of its
    named base URLs): the inverse of `resolve`."""
    route = f"{connection}@{deployment}" if deployment else connection
    return f"{route}/{model}"


def resolve(model: str, backends: Mapping[str, Backend]) -> tuple[str, Backend]:
    """The route (connection name, or ``name@deployment``) and backend for *model*, or
    a 404 that lists what exists."""
    connection, name = split_model_id(model)
    backend = backends.get(connection)
    if backend is None or not name:
        known = ", ".join(sorted(backends)) or "none"
        raise ModelNotFoundError(
            f"the model '{model}' does not exist: model ids are 'connection/model', "
            f"and the configured connections are: {known}",
            param="model",
        )
    if not backend.open_models and name not in (served := backend.models()):
        raise ModelNotFoundError(
            f"the model '{model}' does not exist: connection '{connection}' serves "
            + ", ".join(f"'{connection}/{m}'" for m in served),
            param="model",
        )
    return connection, backend
