"""The per-key checks a planned request passes before it runs (docs/keys.md): the
models and connections its gateway key allows, then its rate limits.

One function, `admit`, called by every door's chat path (`chatgate.server.dispatch`
and the text doors' `plan_all`) after planning, which needs no upstream, and before
anything is sent. The limiter is the app's (``app.state.limiter``): in process, or in
Redis when ``redis_url`` is set. Each 429 it raises is counted in ``/metrics``
(``chatgate_rejections_total``, by door).
"""

from __future__ import annotations

from collections.abc import Sequence
from fnmatch import fnmatchcase

from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from chatgate.errors import PermissionDeniedError, RateLimitError
from chatgate.limits import Limiter
from chatgate.metrics import count_rejection
from chatgate.plan import Attempt, Caller, Plan


def check_allowed(caller: Caller, plan: Plan) -> None:
    """A 403 naming the model when the caller's key does not allow its model or its
    connection. Entries may use shell wildcards (``openai/*``)."""
    model = plan.request.model
    connection = plan.first.route.partition("@")[0]
    if caller.models and not any(fnmatchcase(model, p) for p in caller.models):
        raise PermissionDeniedError(
            f"the gateway key '{caller.id}' may not use the model '{model}'",
            param="model",
            code="model_not_allowed",
        )
    if caller.connections and connection not in caller.connections:
        raise PermissionDeniedError(
            f"the gateway key '{caller.id}' may not use the connection '{connection}' "
            f"(of the model '{model}')",
            param="model",
            code="connection_not_allowed",
        )
    if len(plan.attempts) > 1:  # a fallback or pool target must not reach further
        plan.attempts = tuple(a for a in plan.attempts if _allows(caller, a))


def _allows(caller: Caller, attempt: Attempt) -> bool:
    model, connection = attempt.request.model, attempt.route.partition("@")[0]
    if caller.models and not any(fnmatchcase(model, p) for p in caller.models):
        return False
    return not caller.connections or connection in caller.connections


async def admit(request: Request, plans: Sequence[Plan]) -> dict[str, str]:
    """Check *plans* (one HTTP request's) against their caller's key: a 403 or a 429
    (`RateLimitError`, with its headers) when refused; the rate-limit headers if not."""
    if not plans:
        return {}
    caller = plans[0].caller
    if caller.models or caller.connections:
        for plan in plans:
            check_allowed(caller, plan)
    if not caller.limited:
        return {}
    state = request.app.state
    limiter: Limiter | None = getattr(state, "limiter", None)
    if limiter is None:
        return {}
    try:
        return await limiter.admit(caller)
    except RateLimitError:
        count_rejection(state.gateway, plans[0].door)
        raise


def with_headers(app: ASGIApp, headers: dict[str, str]) -> ASGIApp:
    """*app* with *headers* (the rate-limit ones) added to its answer's start."""
    extra = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()]

    async def wrapped(scope: Scope, receive: Receive, send: Send) -> None:
        async def sending(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", ()), *extra]}
            await send(message)

        await app(scope, receive, sending)

    return wrapped
