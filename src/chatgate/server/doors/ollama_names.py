"""Ollama model names (``name:tag``) and chatgate's model ids (``connection/model``).

`/api/tags` lists each id as it is when its last segment already has a tag
(``ol/llama3:8b``), else with ``:latest`` (``local/smollm2-135m-instruct:latest``), so a
client that appends ``:latest`` to untagged names, as most do, sends back a name that
was listed. A name comes back to an id by `resolve`:

1. the name, the name without ``:latest``, or the name with ``:latest``, if that is an
   id the door may reach (then the same, ignoring case, if exactly one id matches);
2. a name whose first segment is a connection: that connection's model, ``:latest``
   dropped (a remote connection serves whatever its upstream does);
3. a bare name (no connection, or a first segment that is none, such as Ollama's
   ``library/``): ``default_connection/name`` when that connection serves it or takes
   any name; else the one model of that name on exactly one connection; else the door's
   own ``default_model``;
4. else nothing: the door answers 404.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

from chatgate.errors import ModelNotFoundError
from chatgate.gateway import Gateway
from chatgate.server.doors.reach import may_reach

DOOR = "ollama"
LATEST = ":latest"


def display_name(model_id: str) -> str:
    """*model_id* as an Ollama name: with ``:latest`` unless its last segment has a tag."""
    return model_id if ":" in model_id.rpartition("/")[2] else model_id + LATEST


def listed_name(model_id: str, ids: Collection[str]) -> str:
    """The name `/api/tags` shows for *model_id*: `display_name`, except that an id whose
    ``:latest`` form is another id keeps its own (both stay reachable by their names)."""
    name = display_name(model_id)
    return model_id if name != model_id and name in ids else name


def variants(name: str) -> list[str]:
    """*name*, then without ``:latest``, then with it: the spellings of one Ollama name."""
    base = name.removesuffix(LATEST)
    out = [name, base]
    if ":" not in base.rpartition("/")[2]:
        out.append(base + LATEST)
    return list(dict.fromkeys(out))


@dataclass(frozen=True, slots=True)
class Catalogue:
    """What a name can resolve to: the ids the door may reach, the route names
    (connections and ``name@deployment``), and those that serve only their listed ids."""

    ids: tuple[str, ...]
    routes: frozenset[str] = frozenset()
    closed: frozenset[str] = frozenset()
    default_connection: str | None = None
    default_model: str | None = None


def catalogue(gateway: Gateway) -> Catalogue:
    """The door's catalogue now, without I/O (upstream lists as last fetched)."""
    ids = tuple(m.id for m in gateway.models() if may_reach(gateway, DOOR, m.id.partition("/")[0]))
    closed = frozenset(name for name, backend in gateway.routes.items() if not backend.open_models)
    options = gateway.settings.door(DOOR)
    return Catalogue(
        ids, frozenset(gateway.routes), closed, options.default_connection, options.default_model
    )


def resolve(name: str, cat: Catalogue) -> str | None:
    """The model id *name* stands for, or None; a 404 when a bare name is ambiguous."""
    known = set(cat.ids)
    spellings = variants(name)
    for spelling in spellings:
        if spelling in known:
            return spelling
    folded = {s.casefold() for s in spellings}
    matches = {i for i in cat.ids if i.casefold() in folded}
    if len(matches) == 1:
        return matches.pop()
    head, slash, _ = name.partition("/")
    if slash and head in cat.routes:
        return None if head in cat.closed else name.removesuffix(LATEST)
    return _bare(name, spellings, cat, known)


def _bare(name: str, spellings: list[str], cat: Catalogue, known: set[str]) -> str | None:
    """A name without a connection: the default connection's, a unique match, the
    door's default model."""
    home = cat.default_connection
    if home:
        for spelling in spellings:
            if f"{home}/{spelling}" in known:
                return f"{home}/{spelling}"
        if home in cat.routes and home not in cat.closed:
            return f"{home}/{name.removesuffix(LATEST)}"
    matches = sorted({i for i in cat.ids if i.partition("/")[2] in spellings})
    if len(matches) > 1:
        raise ModelNotFoundError(
            f"model '{name}' is ambiguous: {', '.join(matches)} all have that name; "
            "send one of them, or set [doors.ollama] default_connection",
            param="model",
        )
    if matches:
        return matches[0]
    return cat.default_model


def not_found(name: str) -> ModelNotFoundError:
    """Ollama's ``model 'x' not found``, with what to do about it in chatgate."""
    return ModelNotFoundError(
        f"model '{name}' not found: chatgate serves the models of its configured "
        "connections, named connection/model (GET /api/tags lists them); configure a "
        "connection for it, or set [doors.ollama] default_connection or default_model "
        "for names without a connection",
        param="model",
    )


def model_id_for(name: str, gateway: Gateway) -> str:
    """The model id of the Ollama *name*, or Ollama's 404."""
    found = resolve(name, catalogue(gateway)) if name else None
    if found is None:
        raise not_found(name)
    return found
