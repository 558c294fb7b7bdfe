"""The engine worker's watch: a watchdog for native hangs, and the batch-thread tuning.

Every few seconds, while a worker serves:

- its batch threads follow the machine's load (`chatgate.engine.tuning`), changed
  only while the engine is idle;
- it is asked for ``/metrics``, which llama.cpp's server answers from its main loop:
  a worker that cannot answer within ``engine_watchdog`` seconds is stuck in native
  code (a grammar that never compiles, say), and is killed; the supervisor then
  starts another, like after any crash.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from chatgate.adapters.upstream import UpstreamRequest
from chatgate.engine.client import WorkerClient
from chatgate.engine.tuning import BatchThreadTuner, read_times
from chatgate.errors import ChatgateError, GatewayTimeoutError


async def watch(
    client: WorkerClient, tune: bool, idle: Callable[[], bool], every: Callable[[], float]
) -> None:
    """Watch *client*'s worker until cancelled; *idle* says whether a retune may happen
    now, *every* how long to wait between looks."""
    supervisor = client.supervisor
    limit = client.connection.engine_watchdog
    tuner = BatchThreadTuner() if tune else None
    while True:
        await asyncio.sleep(min(every(), limit) if limit > 0 else every())
        if not supervisor.serving or supervisor.base_url is None:
            if tuner is not None:
                tuner.forget()
            continue
        if tuner is not None:
            target = tuner.observe(read_times(supervisor.pid))
            if target is not None and target != supervisor.settings.threads_batch and idle():
                supervisor.retune(target)
                tuner.forget()
                continue
        if limit <= 0:
            continue
        generation = supervisor.generation
        probe = UpstreamRequest("GET", client.url("/metrics"), client.headers())
        try:
            await client.transport.send(probe, client.connection.name, limit, [])
        except GatewayTimeoutError:
            if supervisor.generation == generation and supervisor.serving:
                supervisor.hung(limit)
        except ChatgateError:
            pass  # a dying worker: the supervisor sees the exit itself
