"""The embedded model: llama.cpp in a supervised worker process, never in the gateway.

`Supervisor` runs ``chatgate.engine.worker`` (xllamacpp's prebuilt, portable build of
llama.cpp's server) and restarts it when it dies; `chatgate.adapters.local` speaks to
it over loopback through the shared transport. See ``docs/embedded-engine.md``.
"""

from __future__ import annotations

from chatgate.config import Connection
from chatgate.engine.model_file import resolve_model_path
from chatgate.engine.supervisor import EngineUnavailableError, Supervisor, WorkerSettings

__all__ = [
    "DEFAULT_THREADS",
    "EngineUnavailableError",
    "Supervisor",
    "WorkerSettings",
    "worker_settings",
]

# Chosen by measurement (docs/embedded-engine.md, "Threads"): one thread, for token
# steps and batches alike. Two threads are faster only while nothing else wants the
# cores; beside one busy process they wait on each other at every step and lose half
# their speed or more, where one thread loses nothing. A gateway always shares its
# cores, so the default is the one that never collapses.
DEFAULT_THREADS = 1
DEFAULT_THREADS_BATCH = 1


def worker_settings(connection: Connection) -> WorkerSettings:
    """The worker settings of a ``local`` connection (the model file is checked now)."""
    threads = connection.threads or DEFAULT_THREADS
    return WorkerSettings(
        model=resolve_model_path(connection.model_path),
        context_size=connection.context_size,
        parallel=connection.parallel,
        threads=threads,
        threads_batch=connection.threads_batch or max(threads, DEFAULT_THREADS_BATCH),
        wait_policy=connection.wait_policy,
    )
