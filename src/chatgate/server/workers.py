"""``chatgate serve --workers N``: N server processes sharing one listening socket.

The parent binds the port once and forks; each worker builds its own `Gateway` and
app after the fork (no event loop, thread or upstream connection crosses it) and runs
uvicorn on the inherited socket, so the kernel hands each new connection to whichever
worker accepts first. The parent only forwards SIGINT/SIGTERM and waits.

Workers are for remote connections: each worker would load an embedded engine of its
own (the model's memory N times over, and N queues that know nothing of each other),
so more than one worker with a ``local`` connection is refused. State that must be one
across workers (limits, revocations) must live in Redis or the store, as it must across
machines (docs/performance.md); /metrics is per worker (each scrape reaches one).
"""

from __future__ import annotations

import os
import signal
import socket
import sys
from collections.abc import Callable
from typing import Any

import uvicorn

from chatgate.config import Settings
from chatgate.errors import ConfigError
from chatgate.server.serving import _SPARE_FDS, raise_fd_limit, uvicorn_config
from chatgate.source_row import EMBEDDED


def check_workers(settings: Settings, workers: int) -> None:
    """Refuse several workers with an embedded engine (each would load the model)."""
    if workers > 1 and any(c.source == EMBEDDED for c in settings.connections):
        raise ConfigError(
            f"--workers {workers} with the embedded engine would load the model {workers} "
            "times: use one worker, or set embedded = false and serve remote connections"
        )


def listening_socket(host: str, port: int, backlog: int) -> socket.socket:
    """The one socket every worker accepts on, inheritable across fork."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(backlog)
    sock.set_inheritable(True)
    return sock


def serve_workers(settings: Settings, workers: int, build: Callable[[], Any]) -> int:
    """Fork *workers* processes that each `build` an app and serve it; wait for them."""
    check_workers(settings, workers)
    server = settings.server
    raise_fd_limit(2 * server.max_connections + _SPARE_FDS)  # a client and an upstream each
    sock = listening_socket(server.host, server.port, max(server.max_connections, 128))
    children: list[int] = []
    for _ in range(workers):
        pid = os.fork()
        if pid == 0:  # the worker: its own gateway, engine-free, on the shared socket
            code = 0
            try:
                app = build()
                uvicorn.Server(uvicorn_config(app, server)).run(sockets=[sock])
            except BaseException as exc:  # a worker must not return into the parent's code
                print(f"chatgate worker {os.getpid()} stopped: {exc!r}", file=sys.stderr)
                code = 1
            os._exit(code)
        children.append(pid)

    def forward(signum: int, frame: object) -> None:
        for child in children:
            try:
                os.kill(child, signum)
            except ProcessLookupError:
                pass

    signal.signal(signal.SIGINT, forward)
    signal.signal(signal.SIGTERM, forward)
    status = 0
    for child in children:
        _, code = os.waitpid(child, 0)
        code = os.waitstatus_to_exitcode(code)
        # uvicorn shuts down cleanly, then re-raises the signal it was stopped by.
        if code not in (0, -signal.SIGTERM, -signal.SIGINT):
            status = status or code
    sock.close()
    return 1 if status else 0
