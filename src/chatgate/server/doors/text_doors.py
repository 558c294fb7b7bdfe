"""What the three text-completion doors (OpenAI Completions, KoboldCpp, llama.cpp) share.

- Their routes run over dispatch's public pieces (`read_body`, `respond`, `as_error`,
  `error_response`, `live_secrets`): a route here may plan several requests (a list
  prompt), or stop a generation on request (KoboldCpp's abort), which one pass through
  `chatgate.server.dispatch.handle` cannot.
- A server's own request fields are read through a table of `Knob`s: each says what the
  field becomes in chatgate's request, which value of it means "off" (left out, so that
  a backend without that sampler is not asked for it), and which other field it only
  qualifies. A field the chosen backend takes under its own name (its adapter's
  ``native`` fields) is passed on as it is.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.types import ASGIApp

from chatgate.errors import ChatgateError, InvalidRequestError, redact
from chatgate.gateway import Gateway
from chatgate.offload import off_loop
from chatgate.plan import ANONYMOUS, Caller, Plan
from chatgate.redaction import FRAGMENT
from chatgate.server.admission import admit
from chatgate.server.dispatch import (
    OFF_LOOP_BYTES,
    as_error,
    error_response,
    key_label,
    live_secrets,
    read_body,
)
from chatgate.server.doors.base import Door
from chatgate.server.doors.reach import check_reach
from chatgate.server.responses import RenderError
from chatgate.types import ChatRequest
from chatgate.validation import load_body

log = logging.getLogger("chatgate.server")

INT32_MAX = 2**31 - 1

Kind = Literal["int", "number", "bool", "str", "strings", "ints", "object", "any"]
_KIND_WORDS: dict[str, str] = {
    "int": "an integer",
    "number": "a number",
    "bool": "a boolean",
    "str": "a string",
    "strings": "an array of strings",
    "ints": "an array of integers",
    "object": "an object",
    "any": "a value",
}
_UNSET: Any = object()


@dataclass(frozen=True, slots=True)
class Knob:
    """One request field of a server's own API, and what it becomes in chatgate's.

    ``to``: the chatgate field (or shared sampler concept) it becomes, with its value
    through ``convert``; None: it is passed on under the first of its own name and
    ``spellings`` that the backend takes natively, else under its own name (and a
    backend without it refuses it, naming it). ``native_first``: a backend that takes
    the field natively gets it as it is, even where ``to`` is set. ``off``: the value
    that means "not used", which is left out; ``needs``: the knob without which this one
    means nothing (a sampler's parameter), left out while that one is off or absent.
    ``off`` may be a tuple: any of its values. ``hint``: a preference without effect on
    what is generated alone (a sampler order, a cache slot): passed on where the backend
    takes it natively, left out elsewhere. ``ignored``: accepted, checked, left out.
    """

    kind: Kind
    to: str | None = None
    off: Any = _UNSET
    needs: str | None = None
    spellings: tuple[str, ...] = ()
    low: float | None = None
    high: float | None = None
    convert: Callable[[Any], Any] | None = None
    native_first: bool = False
    hint: bool = False
    ignored: bool = False

    def is_off(self, value: Any) -> bool:
        """Whether *value* is this knob's "not used" value."""
        if self.off is _UNSET:
            return False
        offs = self.off if isinstance(self.off, tuple) else (self.off,)
        for off in offs:
            if type(off) is bool or type(value) is bool:
                if value is off:  # 0 == False, yet 0 is not a boolean's "off"
                    return True
            elif value == off:
                return True
        return False


def checked(name: str, value: Any, knob: Knob) -> Any:
    """*value* of the field *name*, of *knob*'s kind and within its bounds; a 400 naming
    the field otherwise. An integral float counts as an integer, as these servers read
    it (``200.0``); a float too large for any integer does not."""
    kind = knob.kind
    ok = True
    if kind == "int":
        if isinstance(value, float) and math.isfinite(value) and value.is_integer():
            value = int(value)
        ok = type(value) is int
    elif kind == "number":
        ok = type(value) in (int, float)
    elif kind == "bool":
        ok = type(value) is bool
    elif kind == "str":
        ok = type(value) is str
    elif kind == "strings":
        ok = type(value) is list and all(type(v) is str for v in value)
    elif kind == "ints":
        ok = type(value) is list and all(type(v) is int for v in value)
    elif kind == "object":
        ok = type(value) is dict
    if not ok:
        raise InvalidRequestError(
            f"'{name}' must be {_KIND_WORDS[kind]}", param=name, code="invalid_type"
        )
    if type(value) in (int, float):
        low, high = knob.low, knob.high
        if kind == "int":
            # Every integer here is a count or an id: a C int on the real servers.
            low = -INT32_MAX - 1 if low is None else low
            high = INT32_MAX if high is None else high
        if (low is not None and value < low) or (high is not None and value > high):
            raise InvalidRequestError(
                f"'{name}' must be between {_bound(low)} and {_bound(high)}, got {_bound(value)}",
                param=name,
                code="invalid_value",
            )
    return value


def _bound(value: float | None) -> str:
    if value is None:
        return "any"
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


# The samplers KoboldCpp and llama.cpp share, by the same names and with the same
# meaning: both doors' tables hold them.
SHARED_KNOBS: dict[str, Knob] = {
    "dynatemp_range": Knob("number", off=0, low=0),
    "dynatemp_exponent": Knob("number", needs="dynatemp_range"),
    "dry_multiplier": Knob("number", off=0, low=0),
    "dry_base": Knob("number", needs="dry_multiplier"),
    "dry_allowed_length": Knob("int", needs="dry_multiplier"),
    "dry_penalty_last_n": Knob("int", needs="dry_multiplier"),
    "dry_sequence_breakers": Knob("strings", needs="dry_multiplier"),
    "xtc_probability": Knob("number", off=0, low=0, high=1),
    "xtc_threshold": Knob("number", needs="xtc_probability"),
    "mirostat": Knob("int", off=0, low=0, high=2),
    "mirostat_tau": Knob("number", needs="mirostat"),
    "mirostat_eta": Knob("number", needs="mirostat"),
}


def read_knobs(
    body: Mapping[str, Any], knobs: Mapping[str, Knob], natives: frozenset[str]
) -> dict[str, Any]:
    """The fields of *body* that *knobs* know, as chatgate request fields; fields they do
    not know are left out (the real servers ignore them too)."""
    values: dict[str, Any] = {}
    for name, knob in knobs.items():
        value = body.get(name)
        if value is not None:
            values[name] = checked(name, value, knob)
    out: dict[str, Any] = {}
    for name, value in values.items():
        knob = knobs[name]
        if knob.ignored or knob.is_off(value):
            continue
        if knob.needs is not None:
            needed = values.get(knob.needs)
            if needed is None or knobs[knob.needs].is_off(needed):
                continue
        spelled = next((s for s in (name, *knob.spellings) if s in natives), None)
        if knob.hint:
            if spelled is not None:
                out[spelled] = value
        elif knob.to is not None and not (knob.native_first and spelled is not None):
            out[knob.to] = knob.convert(value) if knob.convert else value
        else:
            out[spelled or name] = value
    return out


def json_object_body(raw: bytes) -> dict[str, Any]:
    """*raw* as a JSON object, checked (`chatgate.validation.load_body`); a 400 else."""
    body = load_body(raw)
    if not isinstance(body, dict):
        raise InvalidRequestError("the body must be a JSON object", code="invalid_json")
    return body


def caller_of(request: Request) -> Caller:
    """Who sent *request* (authenticated at the edge)."""
    caller: Caller = request.scope.get("state", {}).get("caller") or ANONYMOUS
    return caller


async def plan_all(
    request: Request, door: Door, decode: Callable[[bytes], list[ChatRequest]]
) -> list[Plan]:
    """The body read within its limit, decoded into requests by *decode*, each one
    planned and checked against the door's reach (large bodies off the event loop)."""
    state = request.app.state
    gateway: Gateway = state.gateway
    caller = caller_of(request)
    body = await read_body(request, state.max_body_bytes)

    def plan() -> list[Plan]:
        plans = []
        for chat in decode(body):
            label = key_label(request.scope) if gateway.labelled else None
            planned = gateway.prepare(chat, caller=caller, door=door.name, key_label=label)
            check_reach(gateway, door.name, planned)
            plans.append(planned)
        return plans

    plans = plan() if len(body) < OFF_LOOP_BYTES else await off_loop(plan)
    await admit(request, plans)  # the key's models and limits (docs/keys.md)
    return plans


Endpoint = Callable[[Request], Awaitable[ASGIApp]]


def guarded(door: Door, endpoint: Endpoint) -> Callable[[Request], Awaitable[ASGIApp]]:
    """*endpoint*, every failure of it answered in *door*'s error shape (an unexpected
    one logged redacted, as dispatch does); a client that left gets nothing."""

    async def run(request: Request) -> ASGIApp:
        try:
            return await endpoint(request)
        except ClientDisconnect:
            return Response(status_code=400)
        except Exception as exc:
            gateway: Gateway = request.app.state.gateway
            error = as_error(exc, lambda: live_secrets(gateway), request.scope["path"])
            return error_response(door, error)

    return run


def renderer(door: Door, gateway: Gateway, where: str) -> RenderError:
    """How a failure after planning becomes (status, body, headers) in *door*'s shape."""

    def render(exc: BaseException) -> tuple[int, Any, dict[str, str]]:
        error = as_error(exc, lambda: live_secrets(gateway), where)
        return error.status, door.encode_error(error), error.headers

    return render


def redacted(text: str, secrets: list[str]) -> str:
    """*text* with every secret in it masked (only a text of `FRAGMENT` characters or
    more can hold one)."""
    return redact(text, secrets) if len(text) >= FRAGMENT else text


def sse_schema(description: str) -> dict[str, Any]:
    """The OpenAPI schema of one server-sent event (what schemathesis checks each event
    against): its ``data``, and its ``event`` name where it has one."""
    string = {"type": "string"}
    return {
        "type": "object",
        "required": ["data"],
        "properties": {"data": string, "event": string, "id": string},
        "description": description,
    }


def door_names(knobs: Mapping[str, Knob], **more: str) -> dict[str, str]:
    """chatgate's field → the door's own name for it (*more*: fields a table does not
    map), for errors that name a field in the client's words."""
    names = {knob.to: name for name, knob in knobs.items() if knob.to}
    names.update(more)
    return names


def in_door_words(exc: ChatgateError, names: Mapping[str, str]) -> str:
    """*exc*'s message, the chatgate field it names (a backend's refusal names
    ``repetition_penalty``) called by the door's name for it (``rep_pen``)."""
    own = names.get(exc.param or "")
    if own is None or own == exc.param:
        return exc.message
    return exc.message.replace(f"'{exc.param}'", f"'{own}'")
