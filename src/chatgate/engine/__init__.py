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

# Chosen by measurement (docs/embedded-engine.md, "Threads"): one thread per token
# step, two for prompts and for batches of several sequences, and threads that sleep
# rather than spin while they wait, so a busy machine does not make them fight for
# the cores.
DEFAULT_THREADS = 1
DEFAULT_THREADS_BATCH = 1
DEFAULT_WAIT_POLICY = "ACTIVE"


def worker_settings(connection: Connection) -> WorkerSettings:
    """The worker settings of a ``local`` connection (the model file is checked now)."""
    threads = connection.threads or DEFAULT_THREADS
    return WorkerSettings(
        model=resolve_model_path(connection.model_path),
        context_size=connection.context_size,
        parallel=connection.parallel,
        threads=threads,
        threads_batch=connection.threads_batch or max(threads, DEFAULT_THREADS_BATCH),
        wait_policy=DEFAULT_WAIT_POLICY,
    )
