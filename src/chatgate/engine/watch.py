"""The engine worker's watchdog: a worker alive but stuck in native code is replaced.

llama.cpp's server answers ``/metrics`` from its main loop. Every few seconds, while a
worker serves, it is asked for them: a worker that cannot answer within
``engine_watchdog`` seconds is stuck (a grammar that never compiles, say), and is
killed; the supervisor then starts another, as after any crash.
"""

from __future__ import annotations

import asyncio

from chatgate.engine.client import WorkerClient
from chatgate.errors import ChatgateError, GatewayTimeoutError
from chatgate.upstream import UpstreamRequest

WATCH_EVERY = 5.0  # seconds between two probes of a serving worker


async def watch(client: WorkerClient) -> None:
    """Watch *client*'s worker until cancelled."""
    supervisor = client.supervisor
    limit = client.connection.engine.engine_watchdog
    while True:
        await asyncio.sleep(min(WATCH_EVERY, limit))
        if not supervisor.serving or supervisor.base_url is None:
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
