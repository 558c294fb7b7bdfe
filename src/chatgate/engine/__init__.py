"""The embedded model: llama.cpp in a supervised worker process, never in the gateway.

`Supervisor` runs ``chatgate.engine.worker`` (xllamacpp's prebuilt, portable build of
llama.cpp's server) and restarts it when it dies; `chatgate.adapters.local` speaks to
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
    "tunes_threads",
    "worker_settings",
]

# Chosen by measurement (docs/embedded-engine.md, "Threads"): one thread per token step,
# which is near the best whatever else the machine does; the batch threads start at
# every core and then follow the load (`chatgate.engine.tuning`), unless configured.
DEFAULT_THREADS = 1


def tunes_threads(connection: Connection) -> bool:
    """Whether the batch threads follow the machine's load (neither is configured)."""
    return connection.threads is None and connection.threads_batch is None


def worker_settings(connection: Connection) -> WorkerSettings:
    """The worker settings of a ``local`` connection (the model file is checked now)."""
    threads = connection.threads or DEFAULT_THREADS
    if connection.threads_batch:
        batch = connection.threads_batch
    elif connection.threads:
        batch = connection.threads
    else:
        batch = max(1, os.cpu_count() or 1)
    return WorkerSettings(
        model=resolve_model_path(connection.model_path),
        context_size=connection.context_size,
        parallel=connection.parallel,
        threads=threads,
        threads_batch=batch,
        wait_policy=connection.wait_policy,
    )
