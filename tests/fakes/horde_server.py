"""A fake AI Horde (its text API, ``/api/v2``) on loopback.

Routes:

- ``POST /api/v2/generate/text/async`` (header ``apikey``; body ``{"prompt", "params":
  {"n", "max_length", "max_context_length", "temperature", "top_p", "top_k", "rep_pen",
  "stop_sequence", …}, "models", "workers", …}``) → 202 ``{"id", "kudos"}``.
- ``GET /api/v2/generate/text/status/{id}`` → ``{"finished", "processing", "restarted",
  "waiting", "done", "faulted", "wait_time", "queue_position", "kudos", "is_possible",
  "generations": [{"text", "model", "worker_id", "worker_name", "seed", "state",
  "gen_metadata"}]}``. A job is done at its `HordeState.polls_to_finish`-th poll; until
  then ``queue_position`` counts down (polls left − 1), ``waiting`` is 1 while it is
  above 0 and ``processing`` 1 at the last poll before done. An unknown id → 404
  ``{"message", "rc": "RequestNotFound"}``.
- ``DELETE`` the same URL → the status at that moment (``done`` false, nothing waiting
  or processing; ``"faulted": false``), the id recorded in `HordeState.cancelled`, the
  job gone (a later poll → 404).
- ``GET /api/v2/status/models?type=text`` → ``[{"name", "count", "performance",
  "queued", "jobs", "eta", "type": "text"}]``; ``GET /api/v2/status/heartbeat`` →
  ``{"message": "OK", "version"}``; ``GET /api/v2/workers?type=text`` → workers with
  ``max_context_length`` and ``max_length``.

Keys: no ``apikey`` header → 400 (flask-restx's missing-parameter answer); ``bad-key`` →
401 ``{"message": ..., "rc": "InvalidAPIKey"}``; any other key works, the anonymous
``0000000000`` included. ``Client-Agent`` is only recorded.

Validation → 400 ``{"message": "Input payload validation failed", "rc":
"ValidationError", "errors": {"params.max_length": "8 is less than the minimum of
16"}}``: ``prompt`` a string; ``params.max_length`` 16–4096; ``max_context_length`` ≥ 80;
``n`` 1–20; ``temperature`` 0–5; ``top_p`` 0.001–1; ``top_k`` 0–200; ``rep_pen`` 1–3;
``stop_sequence`` a list of strings.

A job nobody can serve is accepted but its status says ``"is_possible": false`` and it
never finishes: ``models`` none of which a worker offers, or ``max_length`` /
``max_context_length`` above every worker's. A prompt containing `FAULT_MARKER`
(``[[fault]]``) or a model starting ``faulty-`` ends ``"faulted": true`` at the poll it
would have finished.

The text: the prompt's last non-blank line, a word a token (`common.echo_pieces`), cut
at ``max_length`` words and **after** the first ``stop_sequence`` (the Horde keeps it);
``n`` generations, seeds 0…n−1. The model is the first requested one a worker offers.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from itertools import count
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from tests.fakes.common import FakeState, echo_pieces, generate, json_response

ANONYMOUS = "0000000000"
BAD_KEY = "bad-key"
FAULT_MARKER = "[[fault]]"
BOUNDS: dict[str, tuple[float | None, float | None]] = {
    "n": (1, 20),
    "max_length": (16, 4096),
    "max_context_length": (80, None),
    "temperature": (0, 5),
    "top_p": (0.001, 1),
    "top_k": (0, 200),
    "rep_pen": (1, 3),
    "rep_pen_range": (0, 4096),
}


@dataclass
class HordeWorker:
    """A text worker of the fake Horde."""

    name: str
    models: list[str]
    max_length: int = 512
    max_context_length: int = 8192
    id: str = "00000000-0000-0000-0000-000000000001"


def default_workers() -> list[HordeWorker]:
    return [
        HordeWorker("Fake Worker One", ["koboldcpp/Llama-3-8B-Fake"]),
        HordeWorker(
            "Fake Worker Two",
            ["aphrodite/Mistral-7B-Fake", "faulty-model"],
            max_length=256,
            max_context_length=4096,
            id="00000000-0000-0000-0000-000000000002",
        ),
    ]


@dataclass
class HordeJob:
    """One submitted text job."""

    body: dict[str, Any]
    possible: bool
    faulty: bool
    model: str
    worker: HordeWorker
    polls: int = 0


@dataclass
class HordeState(FakeState):
    """What the fake holds and saw, and the knobs tests turn."""

    polls_to_finish: int = 3
    workers: list[HordeWorker] = field(default_factory=default_workers)
    jobs: dict[str, HordeJob] = field(default_factory=dict)
    cancelled: list[str] = field(default_factory=list)
    numbers: count[int] = field(default_factory=count)


def validation(body: Any) -> dict[str, str]:
    """What the Horde's payload model refuses, by field path."""
    if not isinstance(body, dict):
        return {"payload": "Input payload validation failed"}
    errors: dict[str, str] = {}
    if not isinstance(body.get("prompt"), str):
        errors["prompt"] = f"{body.get('prompt')!r} is not of type 'string'"
    params = body.get("params") or {}
    if not isinstance(params, dict):
        return {**errors, "params": f"{params!r} is not of type 'object'"}
    for name, (low, high) in BOUNDS.items():
        value = params.get(name)
        if value is None:
            continue
        if not isinstance(value, int | float) or isinstance(value, bool):
            errors[f"params.{name}"] = f"{value!r} is not of type 'number'"
        elif low is not None and value < low:
            errors[f"params.{name}"] = f"{value} is less than the minimum of {low}"
        elif high is not None and value > high:
            errors[f"params.{name}"] = f"{value} is greater than the maximum of {high}"
    stops = params.get("stop_sequence")
    if stops is not None and not (
        isinstance(stops, list) and all(isinstance(s, str) for s in stops)
    ):
        errors["params.stop_sequence"] = f"{stops!r} is not of type 'array'"
    models = body.get("models")
    if models is not None and not isinstance(models, list):
        errors["models"] = f"{models!r} is not of type 'array'"
    return errors


def build_app(state: HordeState) -> Starlette:
    """The fake's routes."""

    def placed(body: dict[str, Any]) -> tuple[bool, str, HordeWorker]:
        """Whether a worker can take the job; the model and worker it gets."""
        params = body.get("params") or {}
        wanted = body.get("models") or []
        for worker in state.workers:
            offered = [m for m in wanted if m in worker.models] if wanted else worker.models
            fits = (
                params.get("max_length", 80) <= worker.max_length
                and params.get("max_context_length", 2048) <= worker.max_context_length
            )
            if offered and fits:
                return True, offered[0], worker
        return False, (wanted or ["unknown"])[0], state.workers[0]

    def status(job: HordeJob, cancelled: bool = False) -> dict[str, Any]:
        left = state.polls_to_finish - job.polls
        finished = job.possible and left <= 0 and not cancelled
        faulted = finished and job.faulty
        done = finished and not faulted
        generations = []
        if done:
            params = job.body.get("params") or {}
            words = echo_pieces(job.body["prompt"])
            made = generate(
                words, params.get("max_length", 80), params.get("stop_sequence") or [], True
            )
            generations = [
                {
                    "text": made.text,
                    "model": job.model,
                    "worker_id": job.worker.id,
                    "worker_name": job.worker.name,
                    "seed": seed,
                    "state": "ok",
                    "gen_metadata": [],
                }
                for seed in range(int(params.get("n", 1)))
            ]
        active = job.possible and not finished and not cancelled
        return {
            "finished": len(generations),
            "processing": 1 if active and left == 1 else 0,
            "restarted": 0,
            "waiting": 1 if active and left > 1 else 0,
            "done": done,
            "faulted": faulted,
            "wait_time": max(left, 0) * 2 if active else 0,
            "queue_position": max(left - 1, 0) if active else 0,
            "kudos": 10.0,
            "is_possible": job.possible,
            "generations": generations,
        }

    async def submit(request: Request) -> Response:
        body = await state.record(request)
        key = request.headers.get("apikey")
        if key is None:
            message = (
                "The API Key corresponding to a registered user. Missing required parameter"
                " in the HTTP headers"
            )
            return json_response(
                {"errors": {"apikey": message}, "message": "Input payload validation failed"},
                400,
            )
        if key == BAD_KEY:
            message = (
                "No user matching sent API Key. Have you remembered to register at"
                " https://aihorde.net/register ?"
            )
            return json_response({"message": message, "rc": "InvalidAPIKey"}, 401)
        errors = validation(body)
        if errors:
            payload = {
                "message": "Input payload validation failed",
                "rc": "ValidationError",
                "errors": errors,
            }
            return json_response(payload, 400)
        possible, model, worker = placed(body)
        faulty = FAULT_MARKER in body["prompt"] or model.startswith("faulty-")
        job_id = f"00000000-0000-4000-8000-{next(state.numbers):012d}"
        state.jobs[job_id] = HordeJob(body, possible, faulty, model, worker)
        return json_response({"id": job_id, "kudos": 10.0}, 202)

    def missing(job_id: str) -> Response:
        message = f"Processing Request with ID {job_id} does not exist"
        return json_response({"message": message, "rc": "RequestNotFound"}, 404)

    async def poll(request: Request) -> Response:
        await state.record(request)
        job_id = request.path_params["id"]
        job = state.jobs.get(job_id)
        if job is None:
            return missing(job_id)
        if request.method == "DELETE":
            state.cancelled.append(job_id)
            del state.jobs[job_id]
            return json_response(status(job, cancelled=True))
        job.polls += 1
        return json_response(status(job))

    async def models(request: Request) -> Response:
        await state.record(request)
        names = sorted({m for w in state.workers for m in w.models})
        listed = [
            {
                "name": name,
                "count": sum(name in w.models for w in state.workers),
                "performance": 12.5,
                "queued": 0,
                "jobs": 0,
                "eta": 5,
                "type": "text",
            }
            for name in names
        ]
        return json_response(listed)

    async def heartbeat(request: Request) -> Response:
        await state.record(request)
        return json_response({"message": "OK", "version": "4.44.0"})

    async def workers(request: Request) -> Response:
        await state.record(request)
        listed = [
            {
                "name": w.name,
                "id": w.id,
                "type": "text",
                "online": True,
                "trusted": True,
                "maintenance_mode": False,
                "models": w.models,
                "max_length": w.max_length,
                "max_context_length": w.max_context_length,
                "performance": "12.5 tokens per second",
                "requests_fulfilled": 100,
                "threads": 1,
            }
            for w in state.workers
        ]
        return json_response(listed)

    return Starlette(
        routes=[
            Route("/api/v2/generate/text/async", submit, methods=["POST"]),
            Route("/api/v2/generate/text/status/{id}", poll, methods=["GET", "DELETE"]),
            Route("/api/v2/status/models", models, methods=["GET"]),
            Route("/api/v2/status/heartbeat", heartbeat, methods=["GET"]),
            Route("/api/v2/workers", workers, methods=["GET"]),
        ]
    )
