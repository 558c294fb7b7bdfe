"""AI Horde's text API (``https://aihorde.net/api/v2``): a queue of volunteer workers.

A request is a job (`chatgate.upstream.Job`): ``POST /generate/text/async`` with the
prompt, the samplers under ``params`` and the model under ``models`` answers
``{"id", "kudos"}``; ``GET /generate/text/status/{id}`` is polled every
``text.poll_interval`` seconds (4, as horde_sdk does) until ``"done": true``, when
``generations[0].text`` is the answer; ``DELETE`` on the same URL withdraws a job that
is abandoned (the client left, the deadline passed). A status that says ``"faulted":
true`` or ``"is_possible": false`` ends the job with an error in those words.

The Horde has no streams: a stream request is answered whole, as chunks. It keeps the
stop sequence at the end of the text, so the job cuts the text at the first stop string
of its request (the template's and the client's). It counts no tokens: the usage of an
answer is chatgate's estimate (`estimate_tokens`: characters ÷ 3, rounded up, as the
prompt fitting counts).

Every request carries ``apikey`` (the anonymous ``0000000000`` when none is configured)
and ``Client-Agent: chatgate:<version>:<contact>``, which the Horde asks of clients.
``max_length`` is kept within the Horde's 16–512 (the explain says when it was moved).
Before a request, the model's line of ``GET /status/models?type=text`` (workers, queue,
estimated wait) becomes the preview's note, and the smallest ``max_context_length`` of
the workers serving the model (``GET /workers?type=text``) the context the prompt is
fitted to and sent with; both are asked again after `FACTS_TTL`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from chatgate import __version__
from chatgate.adapters.extras import finish_request
from chatgate.adapters.text_base import Samplers, TextAdapter, TextAnswer
from chatgate.adapters.text_prompt import TEMPLATE_TOPIC, ModelFacts, TextPrompt, max_new_tokens
from chatgate.adapters.wire import Fields, lie
from chatgate.config import Connection
from chatgate.errors import UpstreamError
from chatgate.prompt.fitting import estimate_tokens
from chatgate.types import ChatRequest
from chatgate.upstream import Job, Question, UpstreamRequest

log = logging.getLogger("chatgate.connections")

ANONYMOUS_KEY = "0000000000"
CLIENT_AGENT = f"chatgate:{__version__}:https://github.com/chatgate"
MIN_LENGTH, MAX_LENGTH = 16, 512  # the tokens a Horde job may ask for
# The context when no worker says (the Horde's own default for max_context_length).
HORDE_CONTEXT = 2048
WORKERS_TOPIC = "horde-workers:"
# Where a finished job leaves its answer in the last poll's JSON, for `read_answer`.
ANSWER_KEY = "chatgate.answer"
# Top-level fields of the Horde's payload a client may send as they are; every other
# native field goes under ``params``.
TOP_LEVEL = frozenset(
    {
        "trusted_workers", "slow_workers", "extra_slow_workers", "workers",
        "worker_blacklist", "validated_backends", "allow_downgrade", "disable_batching",
        "softprompt", "proxied_account",
    }
)  # fmt: skip


def cut_at_stop(text: str, stops: tuple[str, ...] | list[str]) -> tuple[str, bool]:
    """*text* up to the earliest of *stops* (which is dropped), and whether one was found."""
    found = [at for at in (text.find(stop) for stop in stops if stop) if at >= 0]
    if not found:
        return text, False
    return text[: min(found)], True


@dataclass(slots=True)
class HordeJob:
    """One text job: the submit request, and what reading its answer needs (the stop
    strings to cut at, the prompt's estimated size, the limits for error messages)."""

    submit: UpstreamRequest
    interval: float
    base_url: str
    headers: dict[str, str]
    connection: Connection
    model: str
    stops: tuple[str, ...]
    prompt_tokens: int
    max_length: int
    context: int
    id: str | None = field(default=None)

    def _id(self, submitted: Any) -> str:
        read = Fields(self.connection)
        answer = read.of(submitted, dict, "the answer to the job's submission")
        self.id = read.need(answer, "id", str)
        kudos = read.number(answer, "kudos")
        log.debug(
            "connection '%s': AI Horde job %s queued (%s kudos)",
            self.connection.name,
            self.id,
            kudos,
        )
        return self.id

    def _url(self, submitted: Any) -> str:
        job_id = self.id or self._id(submitted)
        return f"{self.base_url}/generate/text/status/{quote(job_id, safe='')}"

    def poll(self, submitted: Any) -> UpstreamRequest:
        """``GET /generate/text/status/{id}``."""
        return UpstreamRequest("GET", self._url(submitted), dict(self.headers))

    def cancel(self, submitted: Any) -> UpstreamRequest | None:
        """``DELETE /generate/text/status/{id}``."""
        return UpstreamRequest("DELETE", self._url(submitted), dict(self.headers))

    def progress(self, polled: Any) -> str | None:
        """``AI Horde: queue position 3, about 40 s``, from an unfinished poll."""
        if not isinstance(polled, dict):
            return None
        read = Fields(self.connection)
        position = read.count(polled, "queue_position", -1)
        wait = read.number(polled, "wait_time")
        if position < 0 and wait is None:
            return None
        parts = [f"queue position {position}"] if position >= 0 else []
        if wait is not None:
            parts.append(f"about {wait:g} s")
        return "AI Horde: " + ", ".join(parts)

    def finished(self, polled: Any) -> bool:
        """Whether the job is done; a faulted or impossible one raises. A done job's text
        is cut at its first stop string and left in *polled* for `read_answer`."""
        read = Fields(self.connection)
        status = read.of(polled, dict, "a job's status")
        name = self.connection.name
        if read.field(status, "faulted", bool):
            raise UpstreamError(
                f"connection '{name}': AI Horde job {self.id} faulted (\"faulted\": true): "
                "a worker failed while generating it; send the request again",
                code="upstream_job_faulted",
            )
        if read.field(status, "is_possible", bool) is False:
            raise UpstreamError(
                f"connection '{name}': AI Horde says job {self.id} is not possible "
                f"(\"is_possible\": false): no worker now serves model '{self.model}' with "
                f"max_length {self.max_length} and max_context_length {self.context}; "
                "choose another model (GET /v1/models lists them) or ask for fewer tokens "
                "or a smaller text.context_size",
                code="upstream_job_impossible",
            )
        if not read.field(status, "done", bool):
            log.debug(
                "connection '%s': AI Horde job %s: queue position %s, wait time %s s",
                name,
                self.id,
                read.count(status, "queue_position"),
                read.number(status, "wait_time"),
            )
            return False
        generations = read.items(status, "generations", dict)
        if not generations:
            raise lie(self.connection, "AI Horde says the job is done but sent no generations")
        text, stopped = cut_at_stop(read.need(generations[0], "text", str), self.stops)
        status[ANSWER_KEY] = TextAnswer(
            text, "stop", self.prompt_tokens, estimate_tokens(text) if text else 0
        )
        log.debug("connection '%s': AI Horde job %s done (stop found: %s)", name, self.id, stopped)
        return True


class HordeAdapter(TextAdapter):
    """AI Horde's text generation, as jobs."""

    samplers: Samplers = Samplers(
        max_tokens="max_length",
        repetition_penalty="rep_pen",
        stop="stop_sequence",
        seed=None,
    )
    native: frozenset[str] = frozenset(
        {
            "top_a", "typical", "tfs", "rep_pen_range", "rep_pen_slope", "sampler_order",
            "use_default_badwordsids", "smoothing_factor", "dynatemp_range",
            "dynatemp_exponent", "frmtadsnsp", "frmtrmblln", "frmtrmspch", "frmttriminc",
            "singleline",
        }
        | TOP_LEVEL
    )  # fmt: skip
    id_prefix = "horde-"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.streams = False  # the Horde has no streaming protocol
        # Models whose workers' context is due to be asked, after their status line.
        self._workers_due: set[str] = set()

    def _headers(self) -> dict[str, str]:
        return self.headers({"apikey": self.key or ANONYMOUS_KEY, "Client-Agent": CLIENT_AGENT})

    def secrets(self) -> list[str | None]:
        """The key, unless it is the public anonymous one (masking ten zeros everywhere
        would mangle answers and hide nothing)."""
        return [self.key] if self.key and self.key != ANONYMOUS_KEY else []

    # --- the request -----------------------------------------------------------------

    def build(self, request: ChatRequest, dropped: list[str]) -> UpstreamRequest:
        """The job's submit request, ``max_length`` kept within 16–512."""
        asked = max_new_tokens(request)
        length = min(MAX_LENGTH, max(MIN_LENGTH, asked))
        sent = request
        if length != asked:
            sent = request.without("max_completion_tokens", max_tokens=length)
        upstream = super().build(sent, dropped)
        if length != asked and upstream.explain is not None:
            upstream.explain["max_length"] = (
                f"{asked} tokens asked; AI Horde takes {MIN_LENGTH}-{MAX_LENGTH}, so "
                f"{length} are asked for"
            )
        return upstream

    def body(
        self, request: ChatRequest, prompt: TextPrompt, fields: dict[str, Any]
    ) -> UpstreamRequest:
        """``POST /generate/text/async``."""
        params: dict[str, Any] = {
            "max_context_length": prompt.explain["context_size"],
            "n": 1,
        }
        top: dict[str, Any] = {}
        for name, value in fields.items():
            (top if name in TOP_LEVEL else params)[name] = value
        payload: dict[str, Any] = {
            "prompt": prompt.text,
            "params": params,
            "models": [request.model_name],
            "trusted_workers": False,
            **top,
        }
        return UpstreamRequest(
            "POST", self.base_url + "/generate/text/async", self._headers(), payload
        )

    def job(self, request: ChatRequest, dropped: list[str]) -> Job | None:
        """The request as a Horde job that knows its stop strings."""
        # The runner finishes the requests it builds itself (`RemoteBackend._build`), not
        # a job's: finished here, the job sends what the preview shows.
        submit = finish_request(self.build(request, dropped), request, self.connection)
        explain = submit.explain or {}
        params = (submit.body or {}).get("params")
        params = params if isinstance(params, dict) else {}
        stops = params.get("stop_sequence")
        return HordeJob(
            submit=submit,
            interval=self.connection.text.poll_interval,
            base_url=self.base_url,
            headers={k: v for k, v in submit.headers.items() if k != "Content-Type"},
            connection=self.connection,
            model=request.model_name,
            stops=tuple(s for s in stops if isinstance(s, str)) if isinstance(stops, list) else (),
            prompt_tokens=int(explain.get("estimated_tokens") or 0),
            max_length=int(params.get("max_length") or 0),
            context=int(params.get("max_context_length") or 0),
        )

    # --- the answer --------------------------------------------------------------------

    def read_answer(self, data: Any) -> TextAnswer:
        """What the job's `HordeJob.finished` left; a status read directly (without a
        job's stop strings) otherwise."""
        read = self.read
        status = read.of(data, dict, "a job's status")
        answer = status.get(ANSWER_KEY)
        if isinstance(answer, TextAnswer):
            return answer
        generations = read.items(status, "generations", dict)
        if not generations:
            raise lie(self.connection, "AI Horde's answer has no generations")
        text = read.need(generations[0], "text", str)
        return TextAnswer(text, "stop", 0, estimate_tokens(text) if text else 0)

    def read_piece(self, data: Any) -> TextAnswer | None:
        """Never called: the Horde does not stream."""
        raise lie(self.connection, "AI Horde does not stream")

    # --- what is asked before a request ----------------------------------------------

    def lookup(self, request: ChatRequest) -> Question | None:
        """The model's status line, then its workers' context, then the base's questions."""
        model = request.model_name
        if model in self._workers_due:
            self._workers_due.discard(model)
            ask = UpstreamRequest("GET", self.base_url + "/workers?type=text", self._headers())
            return Question(WORKERS_TOPIC + model, ask)
        return super().lookup(request)

    def learn(self, question: Question, answer: Any, error: str | None) -> None:
        """The model's status line (after which, unless the connection sets the context,
        its workers are asked), or the workers' smallest context."""
        topic = question.topic
        if topic.startswith(TEMPLATE_TOPIC):
            model = topic.removeprefix(TEMPLATE_TOPIC)
            if error is not None:
                note = f"AI Horde could not tell the model's status: {error}"
            else:
                try:
                    note = self._status_line(answer, model)
                except (UpstreamError, TypeError, KeyError, AttributeError, ValueError):
                    note = "AI Horde's models status is unreadable"
            self.prompter.learn_facts(model, ModelFacts(note=note))
            if self.connection.text.context_size is None:
                self._workers_due.add(model)
            return
        if not topic.startswith(WORKERS_TOPIC):
            super().learn(question, answer, error)
            return
        model = topic.removeprefix(WORKERS_TOPIC)
        facts = self.prompter.facts.get(model)
        if facts is None:
            facts = ModelFacts()
            self.prompter.learn_facts(model, facts)
        context = None
        if error is None:
            try:
                context = self._smallest_context(answer, model)
            except (UpstreamError, TypeError, KeyError, AttributeError, ValueError):
                context = None
        if context is None:
            why = error or "no worker serving the model says its context"
            facts.context_size = HORDE_CONTEXT
            facts.note = _joined(
                facts.note, f"context {HORDE_CONTEXT}, the Horde's default ({why})"
            )
        else:
            facts.context_size = context
            facts.note = _joined(facts.note, f"context {context}: the smallest of its workers'")

    def _smallest_context(self, data: Any, model: str) -> int | None:
        read = self.read
        sizes = [
            read.count(worker, "max_context_length")
            for worker in read.of(data, list, "the workers answer")
            if isinstance(worker, dict) and model in read.items(worker, "models", str)
        ]
        sizes = [size for size in sizes if size > 0]
        return min(sizes) if sizes else None

    def facts_request(self, model: str) -> UpstreamRequest | None:
        """``GET /status/models?type=text``: the model's workers, queue and wait."""
        return UpstreamRequest("GET", self.base_url + "/status/models?type=text", self._headers())

    def _status_line(self, data: Any, model: str) -> str:
        read = self.read
        entries = [e for e in read.of(data, list, "the models status") if isinstance(e, dict)]
        entry = next((e for e in entries if e.get("name") == model), None)
        if entry is None:
            return (
                f"AI Horde: no worker serves '{model}' now ({len(entries)} text models are "
                "served); a job for it would not be possible"
            )
        workers = read.count(entry, "count")
        queued = read.count(entry, "queued")
        jobs = read.count(entry, "jobs")
        eta = read.count(entry, "eta")
        return (
            f"AI Horde: {workers} worker{'s' if workers != 1 else ''} serve '{model}'; "
            f"{jobs} job{'s' if jobs != 1 else ''} ({queued} tokens) queued; "
            f"estimated wait {eta} s"
        )

    # --- models ------------------------------------------------------------------------

    def models_request(self, base_url: str | None = None) -> UpstreamRequest:
        """``GET /status/models?type=text``."""
        return UpstreamRequest(
            "GET", (base_url or self.base_url) + "/status/models?type=text", self._headers()
        )

    def parse_models(self, data: Any) -> list[str]:
        """The names of the text models workers serve now."""
        entries = self.read.of(data, list, "the models answer")
        return [str(e["name"]) for e in entries if isinstance(e, dict) and e.get("name")]


def _joined(note: str | None, more: str) -> str:
    return f"{note}; {more}" if note else more
