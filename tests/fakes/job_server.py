"""A fake queue API and a fake slow stream, on loopback, for the exchange's jobs, time
bounds and cancel hook.

Jobs (the shape of AI Horde's, simplified):

- ``POST /jobs`` with ``{"polls": n}`` queues a job that is done at its n-th poll
  (``null``: never); ``"poll_delay"`` holds each poll's answer that many seconds,
  ``"poll_status"`` makes every poll answer that status instead. Answers 202 ``{"id"}``.
- ``GET /jobs/{id}`` answers ``{"id", "done", "polls", "result"}``.
- ``DELETE /jobs/{id}`` withdraws it: ``{"id", "cancelled": true}``.

Streams: ``POST /events`` with the query ``count`` (events), ``every`` (seconds between
them), ``first_delay`` (seconds before the first body bytes, after the head), ``stall``
(seconds of silence after the events, before the body ends) and ``framing`` (``sse`` or
``ndjson``). ``POST /cancel/{name}`` is a cancel hook's target: it only records.

``POST /echo`` answers what it was sent (content type and body), for request bodies.

Everything is recorded in `JobState.seen` as ``(method, path)``.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from itertools import count
from typing import Any

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from tests.fakes.common import json_response


@dataclass
class QueuedJob:
    """One job of the fake queue."""

    polls: int | None
    poll_delay: float = 0.0
    poll_status: int | None = None
    polled: int = 0


@dataclass
class JobState:
    """What the fake holds and saw; its URL."""

    url: str = ""
    jobs: dict[str, QueuedJob] = field(default_factory=dict)
    seen: list[tuple[str, str]] = field(default_factory=list)
    numbers: count[int] = field(default_factory=count)

    def saw(self, method: str, prefix: str = "") -> list[str]:
        """The paths of the requests of *method* under *prefix*, in order."""
        return [p for m, p in self.seen if m == method and p.startswith(prefix)]


async def _events(query: dict[str, str]) -> AsyncIterator[bytes]:
    number, every = int(query.get("count", "3")), float(query.get("every", "0"))
    ndjson = query.get("framing") == "ndjson"
    await asyncio.sleep(float(query.get("first_delay", "0")))
    for n in range(number):
        if n and every:
            await asyncio.sleep(every)
        yield (
            orjson.dumps({"n": n}) + b"\n"
            if ndjson
            else b"data: " + orjson.dumps({"n": n}) + b"\n\n"
        )
    await asyncio.sleep(float(query.get("stall", "0")))


def build_app(state: JobState) -> Starlette:
    """The fake's routes."""

    async def submit(request: Request) -> Response:
        state.seen.append(("POST", request.url.path))
        body: dict[str, Any] = orjson.loads(await request.body())
        job_id = f"job-{next(state.numbers)}"
        state.jobs[job_id] = QueuedJob(
            body.get("polls"), body.get("poll_delay", 0.0), body.get("poll_status")
        )
        return json_response({"id": job_id}, 202)

    async def poll(request: Request) -> Response:
        state.seen.append(("GET", request.url.path))
        job = state.jobs[request.path_params["job"]]
        if job.poll_delay:
            await asyncio.sleep(job.poll_delay)
        if job.poll_status is not None:
            payload = {"error": {"message": "the queue is unhappy", "code": "queue_error"}}
            return json_response(payload, job.poll_status, {"Retry-After": "3"})
        job.polled += 1
        done = job.polls is not None and job.polled >= job.polls
        return json_response(
            {
                "id": request.path_params["job"],
                "done": done,
                "polls": job.polled,
                "result": "the answer" if done else None,
            }
        )

    async def withdraw(request: Request) -> Response:
        state.seen.append(("DELETE", request.url.path))
        return json_response({"id": request.path_params["job"], "cancelled": True})

    async def events(request: Request) -> Response:
        state.seen.append(("POST", request.url.path))
        query = dict(request.query_params)
        kind = "application/x-ndjson" if query.get("framing") == "ndjson" else "text/event-stream"
        return StreamingResponse(_events(query), media_type=kind)

    async def cancel(request: Request) -> Response:
        state.seen.append(("POST", request.url.path))
        return json_response({"ok": True})

    async def echo(request: Request) -> Response:
        state.seen.append(("POST", request.url.path))
        body = await request.body()
        kind = request.headers.get("content-type", "")
        return json_response({"content_type": kind, "body": body.decode()})

    return Starlette(
        routes=[
            Route("/jobs", submit, methods=["POST"]),
            Route("/jobs/{job}", poll, methods=["GET"]),
            Route("/jobs/{job}", withdraw, methods=["DELETE"]),
            Route("/events", events, methods=["POST"]),
            Route("/cancel/{name}", cancel, methods=["POST"]),
            Route("/echo", echo, methods=["POST"]),
        ]
    )
