"""Upstream resilience, the running: a plan's alternatives (a balance pool's targets,
then the model's fallbacks) planned as real attempts, and tried in order with retries,
backoff, the request's deadline, outlier ejection and outstanding-request counts.

`Gateway` hands a plan here only when it needs it (`Resilience.engaged`): a request with
no retries, no fallbacks and no pool takes the plain path and pays one check. What
happened is kept in `Plan.trail` (``model:503``, ``model:ok``), which the server sends as
``x-chatgate-attempts``. A stream is retried or fallen back only before its first chunk:
once a chunk has left, a failure reaches the client as the door's error event.

The plain path's outcomes reach the ejector through an observer (`Learner`, added by
`Resilience.learn`), so that a failing connection cools down whatever its requests are
configured with.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar

from chatgate.config import Settings
from chatgate.errors import ChatgateError
from chatgate.plan import Attempt, Caller, Observer, Plan
from chatgate.prompt.policy import Shaping
from chatgate.resilience import (
    NO_DEADLINE_WINDOW,
    RETRY_AFTER_CAP,
    Ejector,
    Learner,
    Pool,
    counts_against,
    reason,
    verdict,
    wait_before,
)
from chatgate.running import Watch, observed, past_deadline, within
from chatgate.types import ChatChunk, ChatRequest, ChatResponse, Usage

if TYPE_CHECKING:
    from chatgate.gateway import Gateway

T = TypeVar("T")
ATTEMPTS_HEADER = "x-chatgate-attempts"
DROPPED_HEADER = "x-chatgate-dropped-params"
log = logging.getLogger("chatgate.resilience")


class Tell:
    """The observers of one resilient request: each try is an attempt they hear of
    (`Watch`), its failure marked not final when another try follows."""

    def __init__(self, observers: list[Observer], plan: Plan, streamed: bool) -> None:
        self.observers, self.plan, self.streamed = observers, plan, streamed
        self.current: Watch | None = None  # the try in flight, not yet told of

    def start(self, attempt: Attempt) -> None:
        """A try of *attempt* begins."""
        self.current = Watch(self.observers, self.plan, attempt, self.streamed)

    def failed(self, exc: BaseException, final: bool = True) -> None:
        """The try in flight failed (nothing to tell if it was told already)."""
        if self.current is not None:
            self.current.failed(exc, final)
            self.current = None

    def done(self, usage: Usage | None) -> None:
        """The try in flight answered."""
        if self.current is not None:
            self.current.done(usage)
            self.current = None


def label(attempt: Attempt) -> str:
    """The model id an attempt answers as (``route/model``)."""
    return f"{attempt.route}/{attempt.request.model_name}"


class Resilience:
    """The gateway's retries, fallbacks, pools and ejection state."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.fallbacks = settings.fallbacks
        self.pools = {k: Pool(b.targets, b.strategy) for k, b in settings.balance.items()}
        # The model ids whose plan has alternatives: one set lookup in `prepare`.
        self.models = frozenset(self.fallbacks) | frozenset(self.pools)
        timings = settings.resilience
        self.ejector = Ejector(timings.eject_after, timings.eject_base, timings.eject_cap)
        self.learner = Learner(self.ejector)
        self.outstanding: defaultdict[str, int] = defaultdict(int)
        self.backoff_base = timings.backoff_base
        self.backoff_cap = timings.backoff_cap
        # Tests shorten these; production keeps the module's defaults.
        self.retry_after_cap = RETRY_AFTER_CAP
        self.window = NO_DEADLINE_WINDOW

    def retries(self, attempt: Attempt) -> int:
        """How often *attempt*'s connection is tried again after a retryable failure."""
        own = attempt.backend.connection.retries
        return self.settings.retries if own is None else own

    def engaged(self, plan: Plan) -> bool:
        """Whether *plan* needs this runner (alternatives, a pool, or retries)."""
        return plan.trail is not None or self.retries(plan.attempts[0]) > 0

    def learn(self, observers: list[Observer]) -> None:
        """Have the plain path's outcomes counted towards ejection too: the `Learner`
        joins *observers* (the gateway's), once. Only where observers are already
        told of every attempt (the server): a gateway without any would otherwise
        have to tell them of each plain request."""
        if self.learner not in observers:
            observers.append(self.learner)

    # --- planning ------------------------------------------------------------------

    def plan(
        self,
        gateway: Gateway,
        req: ChatRequest,
        forgotten: int,
        caller: Caller,
        door: str,
        key_label: str | None,
    ) -> Plan:
        """The plan of a model with alternatives: each one planned for its own backend;
        one that refuses the request is left out, its reason in the trail."""
        pool = self.pools.get(req.model)
        ejected = self.ejector.ejected
        models = [req.model] if pool is None else pool.order(self.outstanding, ejected)
        models += self.fallbacks.get(req.model, ())
        attempts: list[Attempt] = []
        trail: list[str] = []
        first: tuple[ChatRequest, Shaping] | None = None
        refusal: ChatgateError | None = None
        for index, model in enumerate(models):
            asked = req if model == req.model else req.model_copy(update={"model": model})
            try:
                shaped, shaping, attempt = gateway.plan_attempt(asked, key_label)
            except ChatgateError as exc:
                if index == 0 and pool is None:
                    raise  # the model the client named refuses: the client's answer
                log.info("alternative %s left out: %s", model, exc.message)
                trail.append(f"{model}:refused={exc.code or exc.status}")
                refusal = refusal or exc
                continue
            if first is None:
                first = (shaped, shaping)
            attempts.append(attempt)
        if first is None:
            assert refusal is not None
            raise refusal
        return Plan(first[0], tuple(attempts), first[1], forgotten, caller, door, trail)

    # --- running -------------------------------------------------------------------

    async def _try(
        self,
        plan: Plan,
        call: Callable[[Attempt], Awaitable[T]],
        tell: Tell | None,
        end: float,
    ) -> tuple[Attempt, T]:
        """The first answer of *plan*'s attempts in order, each retried as it allows;
        the answering attempt stays counted as outstanding (the caller releases it) and
        its watch open (the caller tells how it ended)."""
        loop = asyncio.get_running_loop()
        trail = plan.trail if plan.trail is not None else []
        plan.trail = trail
        ejected = self.ejector.ejected
        attempts = [a for a in plan.attempts if not ejected(a.route)]
        panic = not attempts
        if panic:  # every one is ejected: the first is tried anyway, once
            attempts = [plan.attempts[0]]
        trail += [f"{label(a)}:ejected" for a in plan.attempts if a not in attempts]
        last: ChatgateError | None = None
        for index, attempt in enumerate(attempts):
            if last is not None and loop.time() >= end:
                break  # out of time for the next alternative
            tries = 1 if panic else 1 + self.retries(attempt)
            for number in range(tries):
                if tell is not None:
                    tell.start(attempt)
                self.outstanding[attempt.route] += 1
                try:
                    result = await call(attempt)
                except ChatgateError as exc:
                    self.release(attempt.route)
                    judged = verdict(exc)
                    if counts_against(exc) and self.ejector.failed(attempt.route):
                        log.warning("connection %s ejected after failures", attempt.route)
                    trail.append(f"{label(attempt)}:{reason(exc)}")
                    wait = None
                    if judged == "retry" and number + 1 < tries and not ejected(attempt.route):
                        delay = wait_before(
                            exc,
                            number,
                            base=self.backoff_base,
                            cap=self.retry_after_cap,
                            ceiling=self.backoff_cap,
                        )
                        # A wait that would outlast the deadline: the next alternative.
                        wait = delay if loop.time() + delay < end else None
                    more = judged != "final" and (
                        wait is not None or (index + 1 < len(attempts) and loop.time() < end)
                    )
                    if tell is not None:
                        tell.failed(exc, final=not more)
                    if judged == "final":
                        raise
                    last = exc
                    if wait is None:
                        break
                    await asyncio.sleep(wait)
                    continue
                except BaseException:
                    self.release(attempt.route)
                    raise
                self.ejector.succeeded(attempt.route)
                trail.append(f"{label(attempt)}:ok")
                # The doors name the model of plan.request in their answers: the one
                # that answered, not the one asked for.
                plan.request = attempt.request
                return attempt, result
        assert last is not None
        raise last

    def release(self, route: str) -> None:
        """One request to *route* is over."""
        left = self.outstanding[route] - 1
        if left > 0:
            self.outstanding[route] = left
        else:
            del self.outstanding[route]

    def _end(self, plan: Plan) -> float:
        deadline = plan.request.deadline
        return asyncio.get_running_loop().time() + (self.window if deadline is None else deadline)

    async def run(self, gateway: Gateway, plan: Plan) -> ChatResponse:
        """*plan* to one whole answer, through its retries and alternatives."""
        tell = Tell(gateway.observers, plan, False) if gateway.observers else None
        deadline = plan.request.deadline
        try:
            if deadline is None:
                attempt, answer = await self._try(plan, _chat, tell, self._end(plan))
            else:
                try:
                    async with asyncio.timeout(deadline):
                        attempt, answer = await self._try(plan, _chat, tell, self._end(plan))
                except TimeoutError:
                    raise past_deadline(deadline) from None
        except BaseException as exc:
            if tell is not None:
                tell.failed(exc)
            raise
        self.release(attempt.route)
        if tell is not None:
            tell.done(answer.usage)
        return answer

    def stream(self, gateway: Gateway, plan: Plan) -> AsyncIterator[ChatChunk]:
        """*plan* as a stream: retried and fallen back until its first chunk, never after."""
        tell = Tell(gateway.observers, plan, True) if gateway.observers else None
        chunks = self._chunks(plan, tell)
        deadline = plan.request.deadline
        if deadline is not None:
            chunks = within(chunks, deadline)
        return chunks if tell is None else observed(chunks, tell)

    async def _chunks(self, plan: Plan, tell: Tell | None) -> AsyncIterator[ChatChunk]:
        attempt, (chunks, first) = await self._try(plan, _first_chunk, tell, self._end(plan))
        try:
            if first is not None:
                yield first
            async for chunk in chunks:
                yield chunk
        except ChatgateError as exc:  # after the first chunk: reported, never retried
            if counts_against(exc):
                self.ejector.failed(attempt.route)
            raise
        finally:
            self.release(attempt.route)
            await _close(chunks)

    def health(self, name: str) -> dict[str, Any] | None:
        """The ejection state of connection *name* (and its deployments), if any."""
        found = {
            route: state
            for route in list(self.ejector.routes)
            if route.partition("@")[0] == name and (state := self.ejector.state(route)) is not None
        }
        if not found:
            return None
        return found.get(name) if list(found) == [name] else found


async def _chat(attempt: Attempt) -> ChatResponse:
    return await attempt.backend.chat(attempt)


async def _first_chunk(attempt: Attempt) -> tuple[AsyncIterator[ChatChunk], ChatChunk | None]:
    """A stream started: its first chunk read (None for an empty stream), so that a
    failure before anything was sent can still be retried."""
    chunks = attempt.backend.stream(attempt)
    try:
        first = await anext(chunks)
    except StopAsyncIteration:
        return chunks, None
    except BaseException:
        await _close(chunks)
        raise
    return chunks, first


async def _close(chunks: AsyncIterator[ChatChunk]) -> None:
    aclose = getattr(chunks, "aclose", None)
    if aclose is not None:
        await aclose()


def trail(plan: Plan) -> dict[str, str]:
    """The ``x-chatgate-attempts`` header of *plan*."""
    return {ATTEMPTS_HEADER: ",".join(plan.trail or ())}


def answered(plan: Plan) -> Attempt:
    """The attempt that answered *plan*: the one of its trail's last ``ok`` (the runner
    writes it when an attempt answers, or sends its first chunk); else the first."""
    found = plan.trail
    if found and found[-1].endswith(":ok"):
        model = found[-1][: -len(":ok")]
        for attempt in plan.attempts:
            if label(attempt) == model:
                return attempt
    return plan.first


def dropped_header(plan: Plan) -> dict[str, str]:
    """The ``x-chatgate-dropped-params`` header: the parameters the answering attempt's
    connection dropped (before anything answered, the first attempt's); {} for none."""
    dropped = answered(plan).dropped
    return {DROPPED_HEADER: ",".join(dropped)} if dropped else {}


def answer_headers(plan: Plan, headers: dict[str, str]) -> dict[str, str]:
    """*headers* made to describe the attempt that answered a resilient *plan*: its
    dropped parameters, and what was tried (``x-chatgate-attempts``)."""
    headers.pop(DROPPED_HEADER, None)
    headers.update(dropped_header(plan))
    headers.update(trail(plan))
    return headers


def trailed(
    frames: AsyncIterator[bytes], plan: Plan, headers: dict[str, str]
) -> AsyncIterator[bytes]:
    """*frames*, with ``x-chatgate-attempts`` and the answering attempt's dropped
    parameters put in *headers* once the first frame is made."""
    return at_first_frame(frames, lambda: answer_headers(plan, headers) if plan.trail else None)


async def at_first_frame(
    frames: AsyncIterator[bytes], then: Callable[[], object]
) -> AsyncIterator[bytes]:
    """*frames*, calling *then* once the first is made: a stream's head is sent after its
    first frame, so headers that *then* sets go out in it."""
    first = True
    try:
        async for frame in frames:
            if first:
                then()
                first = False
            yield frame
    finally:
        aclose = getattr(frames, "aclose", None)
        if aclose is not None:
            await aclose()
