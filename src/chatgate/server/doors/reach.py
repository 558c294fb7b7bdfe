"""Which connections a door may reach, and the model a door uses when a request names
none: ``[doors.<name>]`` in the config (``docs/doors.md``)."""

from __future__ import annotations

from chatgate.errors import ModelNotFoundError
from chatgate.gateway import Gateway, ModelInfo
from chatgate.plan import Plan


def check_reach(gateway: Gateway, door: str, plan: Plan) -> None:
    """A 404 when *plan*'s connection is not one that *door* may reach."""
    allowed = gateway.settings.door(door).connections
    if allowed is None:
        return
    connection = plan.first.route.partition("@")[0]
    if connection not in allowed:
        raise ModelNotFoundError(
            f"the model '{plan.request.model}' is not reachable through the {door} door: "
            f"[doors.{door}] connections allows {', '.join(allowed) or 'none'}",
            param="model",
        )
    if len(plan.attempts) > 1:  # a fallback or pool target must not reach further
        plan.attempts = tuple(a for a in plan.attempts if a.route.partition("@")[0] in allowed)


def may_reach(gateway: Gateway, door: str, connection: str) -> bool:
    """Whether *door* may reach the connection called *connection*."""
    allowed = gateway.settings.door(door).connections
    return allowed is None or connection.partition("@")[0] in allowed


async def reachable_models(gateway: Gateway, door: str) -> list[ModelInfo]:
    """Every model *door* may reach, upstream lists refreshed where stale."""
    return [
        m for m in await gateway.list_models() if may_reach(gateway, door, m.id.partition("/")[0])
    ]


def default_model(gateway: Gateway, door: str) -> str:
    """The model a request on *door* goes to when it names none: the door's
    ``default_model``, else the top-level one; a 404 saying what to set when neither is."""
    model = gateway.settings.door(door).default_model or gateway.settings.default_model
    if not model:
        raise ModelNotFoundError(
            f"requests on the {door} door name no model, and no default_model is "
            f"configured: set default_model at the top level or in [doors.{door}]",
            param="model",
        )
    return model
