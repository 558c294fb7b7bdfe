"""The four time bounds of an upstream exchange, and the clock that enforces them.

`Timeouts` is what a caller asks for: ``connect`` (TCP and TLS), ``first_byte`` (from
sending to the answer's head; for a stream, to its first body bytes), ``read`` (each
later read) and ``total`` (the whole exchange). A bare number, as callers passed before
`Timeouts` existed, still works and keeps its old meaning (`Clock.of`).

A `Clock` runs one exchange: each wait is opened with `Clock.wait`, which bounds it by
its own timeout or by the end of the total, whichever comes first, and remembers which;
`Clock.expired` then names the bound that passed. ``docs/exchange.md`` has the table.
"""

from __future__ import annotations

import asyncio
import math
from contextlib import AbstractAsyncContextManager, nullcontext
from dataclasses import dataclass, replace
from typing import Literal
from urllib.parse import urlsplit

from chatgate.errors import GatewayTimeoutError, redact

CONNECT_TIMEOUT = 10.0
READ_TIMEOUT = 600.0
# A job that names no total still ends: as a stream does, at the stream default.
JOB_DEADLINE = 600.0
# asyncio may fire a timer up to its clock resolution early; a timeout this close to the
# end of the total is the total's.
_EPSILON = 0.001

Phase = Literal["first_byte", "read"]
Kind = Literal["answer", "stream", "job"]
_HELD: AbstractAsyncContextManager[object] = nullcontext()


@dataclass(frozen=True, slots=True)
class Timeouts:
    """The bounds of one exchange, in seconds; ``first_byte`` None means ``read``, and
    ``total`` None means none for an answer (a stream still has its ``stream_deadline``,
    a job `JOB_DEADLINE`)."""

    connect: float = CONNECT_TIMEOUT
    first_byte: float | None = None
    read: float = READ_TIMEOUT
    total: float | None = None

    def __post_init__(self) -> None:
        for name in ("connect", "first_byte", "read", "total"):
            value = getattr(self, name)
            # timedelta cannot hold an infinity, and a bound of 0 or less is a typo.
            if value is not None and not (0 < value < math.inf):
                raise ValueError(f"Timeouts.{name} must be a positive number, not {value!r}")

    @property
    def head(self) -> float:
        """The first_byte bound in effect."""
        return self.read if self.first_byte is None else self.first_byte


class Clock:
    """One exchange's bounds while it runs: the end of its total, the wait under way."""

    __slots__ = ("_bound_at", "end", "kind", "label", "legacy", "phase", "timeouts", "total")

    def __init__(
        self,
        timeouts: Timeouts,
        kind: Kind,
        total: float | None,
        *,
        label: str = "total timeout",
        legacy: bool = False,
    ) -> None:
        self.timeouts, self.kind, self.total = timeouts, kind, total
        self.label = label  # what the total is called where the user sets it
        self.legacy = legacy  # a bare number: every bound is the connection's `timeout`
        self.end = None if total is None else asyncio.get_running_loop().time() + total
        self.phase: Phase = "first_byte"
        self._bound_at = math.inf  # when the wait under way times out on its own bound

    @classmethod
    def of(
        cls, timeout: float | Timeouts, kind: Kind, stream_deadline: float | None = None
    ) -> Clock:
        """The clock for *timeout* as a caller passed it; its `total` is the one in
        effect (for a stream without one of its own, *stream_deadline*).

        A bare number is the old contract: first_byte and read alike, the default
        connect, and as total the *stream_deadline* of a stream or, for an answer, the
        number itself (the whole answer within it, with the old code ``timeout``).
        """
        if isinstance(timeout, Timeouts):
            if timeout.total is not None:
                return cls(timeout, kind, timeout.total)
            if kind == "stream":
                return cls(timeout, kind, stream_deadline, label="stream_deadline")
            return cls(timeout, kind, JOB_DEADLINE if kind == "job" else None)
        plain = _plain(float(timeout))
        if kind == "stream":
            return cls(plain, kind, stream_deadline, label="stream_deadline", legacy=True)
        if kind == "job":
            return cls(plain, kind, JOB_DEADLINE, legacy=True)
        return cls(plain, kind, plain.read, label="timeout", legacy=True)

    def remaining(self) -> float | None:
        """Seconds left of the total (None without one; never below zero)."""
        if self.end is None:
            return None
        return max(0.0, self.end - asyncio.get_running_loop().time())

    def wait(
        self, phase: Phase, *, held: bool = False, bounded: bool = True
    ) -> AbstractAsyncContextManager[object]:
        """A bound for the next wait, in *phase*: its timeout or the total's end,
        whichever is first. *held*: the client holds both itself (see
        `Transport.pool`), so only the phase is noted, to name the bound if it passes.
        Not *bounded*: the total's end alone (a job's pause has no bound of its own)."""
        self.phase = phase
        loop = asyncio.get_running_loop()
        if bounded:
            seconds = self.timeouts.head if phase == "first_byte" else self.timeouts.read
            self._bound_at = loop.time() + seconds
        else:
            self._bound_at = math.inf
        if held:
            return _HELD
        if self.end is not None and self.end < self._bound_at:
            return asyncio.timeout_at(self.end)
        return asyncio.timeout_at(None if self._bound_at == math.inf else self._bound_at)

    def late(self) -> bool:
        """Whether the wait that just timed out reached the end of the total."""
        if self.end is None or self._bound_at <= self.end:
            return False
        return asyncio.get_running_loop().time() >= self.end - _EPSILON

    def expired(self, connection: str) -> GatewayTimeoutError:
        """The 504 for the wait that just timed out: the total's, or its own bound's."""
        said = f"connection '{connection}': "
        if self.late():
            return self.past_end(connection)
        if self.phase == "first_byte":
            name = "timeout" if self.legacy else "first_byte timeout"
            seconds = self.timeouts.head
            return GatewayTimeoutError(
                f"{said}no answer from the upstream within {seconds:g} s ({name})"
            )
        name = "timeout" if self.legacy else "read timeout"
        return GatewayTimeoutError(
            f"{said}the upstream stopped sending: nothing more within "
            f"{self.timeouts.read:g} s ({name})"
        )

    def past_end(self, connection: str) -> GatewayTimeoutError:
        """The 504 for the end of the total."""
        said = f"connection '{connection}': "
        total = self.total or 0.0
        if self.kind == "stream":
            return GatewayTimeoutError(
                f"{said}the stream did not finish within its {self.label} ({total:g} s)",
                code="stream_deadline",
            )
        if self.kind == "job":
            return GatewayTimeoutError(
                f"{said}the job did not finish within its {self.label} ({total:g} s)",
                code="upstream_deadline",
            )
        if self.legacy:
            # The old contract: a whole answer within `timeout`, the plain code.
            what = "no answer" if self.phase == "first_byte" else "no whole answer"
            return GatewayTimeoutError(
                f"{said}{what} from the upstream within {total:g} s (timeout)"
            )
        return GatewayTimeoutError(
            f"{said}the upstream did not finish its answer within its {self.label} ({total:g} s)",
            code="upstream_deadline",
        )


def _plain(seconds: float) -> Timeouts:
    """The bounds a bare number stands for (kept: callers pass the same few numbers on
    every request)."""
    known = _PLAIN.get(seconds)
    if known is None:
        known = Timeouts(first_byte=seconds, read=seconds)
        if len(_PLAIN) < 256:
            _PLAIN[seconds] = known
    return known


_PLAIN: dict[float, Timeouts] = {}


def connect_expired(
    connection: str, url: str, seconds: float, secrets: list[str]
) -> GatewayTimeoutError:
    """The 504 for a connection (TCP and TLS) not made within *seconds*."""
    where = urlsplit(url)
    port = f":{where.port}" if where.port else ""
    said = (
        f"connection '{connection}': cannot connect to {where.scheme}://{where.hostname}{port} "
        f"within {seconds:g} s (connect timeout)"
    )
    return GatewayTimeoutError(redact(said, secrets))


def bounds(
    timeout: float, connect: float, first_byte: float | None
) -> tuple[float | Timeouts, float | Timeouts]:
    """A connection's bounds for a whole answer and for a stream: a whole answer within
    *timeout*, a stream's waits each within it. A bare number keeps the messages and
    codes that name ``timeout``; the bounds apart only when the connection sets one."""
    if not first_byte and connect == CONNECT_TIMEOUT:
        return timeout, timeout
    stream = Timeouts(connect=connect, first_byte=first_byte, read=timeout)
    return replace(stream, total=timeout), stream
