"""The embedded model: llama.cpp in a supervised worker process, never in the gateway.

`Supervisor` runs ``chatgate.engine.worker`` (xllamacpp's prebuilt, portable build of
llama.cpp's server) and restarts it when it dies; `chatgate.backends.local` speaks to
it over loopback through the shared transport. See ``docs/embedded-engine.md``.
"""

from __future__ import annotations

import os

from chatgate.config import Connection
from chatgate.engine.model_file import resolve_model_path
from chatgate.engine.supervisor import EngineUnavailableError, Supervisor, WorkerSettings

__all__ = [
    "DEFAULT_THREADS",
    "EngineUnavailableError",
    "Supervisor",
    "WorkerSettings",
    "worker_count",
    "worker_settings",
]

# Chosen by measurement (docs/embedded-engine.md, "Threads and workers"): one thread per
# worker process, and one worker per core. Two threads of one worker wait for each other
# at every step and collapse when another process takes a core; single-thread workers
# never wait for each other, and together they use every core a quiet machine has.
DEFAULT_THREADS = 1


def worker_count(connection: Connection, cores: int | None = None) -> int:
    """How many worker processes a ``local`` connection runs: ``workers``, else one per
    core (each with ``threads`` threads), never more than ``parallel``."""
    if connection.engine.workers:
        return min(connection.engine.workers, connection.engine.parallel)
    cores = cores or os.cpu_count() or 1
    threads = connection.engine.threads or DEFAULT_THREADS
    return max(1, min(cores // threads, connection.engine.parallel))


def worker_settings(connection: Connection, index: int = 0, count: int = 1) -> WorkerSettings:
    """The settings of worker *index* of *count* (the model file is checked now); the
    connection's ``parallel`` sequences are shared out among the workers."""
    threads = connection.engine.threads or DEFAULT_THREADS
    share, extra = divmod(connection.engine.parallel, count)
    return WorkerSettings(
        model=resolve_model_path(connection.engine.model_path),
        context_size=connection.engine.context_size,
        parallel=share + (1 if index < extra else 0),
        threads=threads,
        threads_batch=connection.engine.threads_batch or threads,
        wait_policy=connection.engine.wait_policy,
    )
