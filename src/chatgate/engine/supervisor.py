"""Keeps the engine worker alive: starts it, watches it, restarts it with backoff.

The gateway process never runs llama.cpp code. It starts ``chatgate.engine.worker``
as a child process, waits for its ``ready`` line, and from then on reaches it over
loopback HTTP through the shared transport. When the worker dies (any signal, any
exit), requests in flight fail with a 503 (or an SSE error event once a stream has
started), new requests wait for the next worker within ``restart_wait`` seconds, and
every remote connection keeps serving: none of them shares the worker's fate.

Restarts back off from 0.25 s to 30 s while the worker keeps dying young, and reset
once it has lived a minute. A worker that reports a fatal start-up error (a CPU below
the engine's baseline, a file that is not a model) is not restarted: that would never
help, and `/healthz` says why.
"""

from __future__ import annotations

import asyncio
import collections
import json
import logging
import os
import secrets
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from chatgate.errors import ConfigError, OverloadedError

log = logging.getLogger("chatgate.engine")

State = Literal["stopped", "starting", "ready", "restarting", "failed"]
LOAD_TIMEOUT = 120.0  # seconds a worker may take to load its model and report ready
RESTART_WAIT = 15.0  # seconds a new request waits for a restarting worker
BACKOFF_FIRST = 0.25
BACKOFF_MAX = 30.0
STABLE_AFTER = 60.0  # a worker that lived this long resets the backoff
MAX_UNREADY = 3  # workers in a row that die before ready: the engine has failed


class EngineUnavailableError(OverloadedError):
    """The engine worker is down (dead, restarting, or unable to start)."""

    default_code = "engine_unavailable"


@dataclass(frozen=True, slots=True)
class WorkerSettings:
    """What one worker is started with."""

    model: Path
    context_size: int
    parallel: int
    threads: int
    threads_batch: int
    wait_policy: str | None = None  # OMP_WAIT_POLICY for the worker's OpenMP threads

    def argv(self) -> list[str]:
        """The worker's command line (no secret is ever on it)."""
        settings = {
            "model": str(self.model),
            "context_size": self.context_size,
            "parallel": self.parallel,
            "threads": self.threads,
            "threads_batch": self.threads_batch,
        }
        return [sys.executable, "-m", "chatgate.engine.worker", json.dumps(settings)]


def signal_name(returncode: int) -> str:
    """``-11`` → ``"SIGSEGV"``; a plain exit code → ``"exit 3"``."""
    if returncode < 0:
        try:
            return signal.Signals(-returncode).name
        except ValueError:
            return f"signal {-returncode}"
    return f"exit {returncode}"


class Supervisor:
    """One engine worker process and its restarts."""

    def __init__(
        self, settings: Callable[[], WorkerSettings], *, restart_wait: float = RESTART_WAIT
    ) -> None:
        self._make_settings = settings
        self._settings: WorkerSettings | None = None
        self.restart_wait = restart_wait
        self.token = secrets.token_urlsafe(32)
        self.state: State = "stopped"
        self.restarts = 0
        self.generation = 0  # one more for every worker that became ready
        self.base_url: str | None = None
        self.pid: int | None = None
        self.last_exit: str | None = None
        self.failure: str | None = None
        self.started_at: float | None = None
        self.exited_at: float | None = None  # when the last worker ended
        self._stderr: collections.deque[str] = collections.deque(maxlen=40)
        self._process: asyncio.subprocess.Process | None = None
        self._ready = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self._hang: str | None = None

    # --- life cycle ----------------------------------------------------------------

    async def start(self, progress: Callable[[str], None] | None = None) -> None:
        """Start the worker and wait until it serves; a fatal start is a ConfigError."""
        if self._task is None:
            self._settings = self._make_settings()  # a bad model file is a ConfigError now
            self._closing = False
            self._task = asyncio.get_running_loop().create_task(self._run(progress))
        await self._ready.wait()
        if self.state == "failed":
            raise ConfigError(self.failure or "the embedded engine could not start")

    async def close(self) -> None:
        """Stop the worker for good."""
        self._closing = True
        process = self._process
        if process is not None and process.returncode is None:
            process.terminate()
            try:
                await asyncio.wait_for(process.wait(), 5)
            except TimeoutError:
                process.kill()
                await process.wait()
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None
        self.state = "stopped"
        self._ready.clear()

    async def ready(self) -> int:
        """Wait (at most ``restart_wait`` s) for a serving worker; its generation."""
        if self.state == "ready":
            return self.generation
        if self._task is None:
            await self.start()
            return self.generation
        if self.state == "failed":
            raise EngineUnavailableError(self.failure or "the embedded engine cannot start")
        try:
            async with asyncio.timeout(self.restart_wait):
                await self._ready.wait()
        except TimeoutError:
            raise self.unavailable() from None
        if not self.serving:
            raise self.unavailable()
        return self.generation

    @property
    def serving(self) -> bool:
        """Whether a worker is up and answering."""
        return self.state == "ready"

    def unavailable(self) -> EngineUnavailableError:
        """The 503 a request gets while the worker is down."""
        why = f" ({self.last_exit})" if self.last_exit else ""
        if self.state == "failed":
            return EngineUnavailableError(self.failure or "the embedded engine cannot start")
        return EngineUnavailableError(
            f"the embedded engine worker stopped{why} and is restarting; retry shortly",
            headers={"Retry-After": "1"},
        )

    @property
    def settings(self) -> WorkerSettings:
        """What the worker is started with (known once `start` was called)."""
        if self._settings is None:
            self._settings = self._make_settings()
        return self._settings

    def terminate(self) -> None:
        """Ask the worker to stop now, from sync code (its loop may be gone)."""
        self._closing = True
        if self.pid is not None:
            try:
                os.kill(self.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass

    def hung(self, seconds: float) -> None:
        """The worker stopped answering: kill it, and say why when it is restarted."""
        log.error("engine worker %s did not answer for %g s; killing it", self.pid, seconds)
        self._hang = f"hung: no answer for {seconds:g} s"
        self.kill(signal.SIGKILL)

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Send *sig* to the worker (tests and operators; the supervisor restarts it)."""
        if self.pid is not None:
            os.kill(self.pid, sig)

    def status(self) -> dict[str, Any]:
        """State, restarts and the last exit, for ``/healthz``."""
        up = time.monotonic() - self.started_at if self.started_at and self.state == "ready" else 0
        out: dict[str, Any] = {
            "worker": self.state,
            "pid": self.pid,
            "restarts": self.restarts,
            "last_exit": self.last_exit,
            "uptime_s": round(up, 1),
            "threads": self._settings.threads if self._settings else None,
            "threads_batch": self._settings.threads_batch if self._settings else None,
        }
        if self.failure:
            out["error"] = self.failure
        return out

    # --- the watch loop --------------------------------------------------------------

    async def _run(self, progress: Callable[[str], None] | None) -> None:
        delay = BACKOFF_FIRST
        unready = 0
        first = True
        while not self._closing:
            self.state = "starting" if first else "restarting"
            served = await self._one_worker(progress if first else None)
            first = False
            if self._closing:
                return
            unready = unready + 1 if served is None else 0
            if not self._failed() and unready >= MAX_UNREADY:
                self.state = "failed"
                self.failure = (
                    f"the engine worker failed to start {unready} times in a row "
                    f"(last: {self.last_exit}{self._tail()})"
                )
            if self._failed():
                log.error("engine: %s", self.failure)
                self._ready.set()  # wake every waiter: they get the failure
                return
            self.restarts += 1
            if served is not None and served >= STABLE_AFTER:
                delay = BACKOFF_FIRST
            log.warning(
                "engine worker %s after %.1f s; restart %d in %.2f s%s",
                self.last_exit,
                served or 0.0,
                self.restarts,
                delay,
                self._tail(),
            )
            await asyncio.sleep(delay)
            delay = min(delay * 2, BACKOFF_MAX)

    def _failed(self) -> bool:
        return self.state == "failed"

    def _tail(self) -> str:
        return f"; its last words: {self._stderr[-1][:300]}" if self._stderr else ""

    async def _one_worker(self, progress: Callable[[str], None] | None) -> float | None:
        """Run one worker until it exits; how long it served (None: it never did)."""
        s = self.settings
        if progress:
            size = s.model.stat().st_size / 1e6
            progress(
                f"loading {s.model.name} ({size:.0f} MB) in the engine worker, "
                f"{s.parallel} parallel sequences of {s.context_size} tokens, "
                f"{s.threads} thread{'s' if s.threads != 1 else ''}…"
            )
        begun = time.monotonic()
        env = dict(os.environ, CHATGATE_ENGINE_TOKEN=self.token)
        if s.wait_policy:
            env["OMP_WAIT_POLICY"] = s.wait_policy
        process = await asyncio.create_subprocess_exec(
            *s.argv(),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=env,
            start_new_session=True,  # a ^C in the terminal reaches the gateway, not it
        )
        self._process, self.pid = process, process.pid
        assert process.stdout is not None and process.stderr is not None
        drain = asyncio.get_running_loop().create_task(self._drain(process.stderr))
        report = await self._first_line(process)
        if report.get("ready"):
            self.base_url = str(report["address"]).rstrip("/")
            self.generation += 1
            self.started_at = time.monotonic()
            self.state = "ready"
            self._ready.set()
            if progress:
                progress(f"model ready in {time.monotonic() - begun:.1f} s")
        elif report.get("fatal"):
            self.state = "failed"
            self.failure = str(report.get("error"))
        served_from = time.monotonic()
        code = await process.wait()
        drain.cancel()
        self._ready.clear()
        if not self._failed():
            self.state = "restarting"  # until the next worker is ready, through the backoff
        self._process, self.pid, self.base_url = None, None, None
        self.last_exit = self._hang or signal_name(code)
        self.exited_at = time.monotonic()
        self._hang = None
        if not report.get("ready"):
            if self.state != "failed" and not self._closing:
                log.warning("engine worker did not start: %s", report.get("error", self.last_exit))
            return None
        return time.monotonic() - served_from

    async def _first_line(self, process: asyncio.subprocess.Process) -> dict[str, Any]:
        assert process.stdout is not None
        try:
            async with asyncio.timeout(LOAD_TIMEOUT):
                line = await process.stdout.readline()
        except TimeoutError:
            process.kill()
            return {"error": f"the worker sent no ready line within {LOAD_TIMEOUT:g} s"}
        if not line:
            return {"error": "the worker exited before it was ready"}
        try:
            report = json.loads(line)
        except ValueError:
            return {"error": f"the worker said {line[:200]!r}"}
        return report if isinstance(report, dict) else {"error": "bad ready line"}

    async def _drain(self, stream: asyncio.StreamReader) -> None:
        while True:
            line = await stream.readline()
            if not line:
                return
            self._stderr.append(line.decode("utf-8", errors="replace").rstrip())
