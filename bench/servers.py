"""Which HTTP server for ``chatgate serve``: slow-client behaviour and hot-path cost.

    python -m bench.servers probe [SERVER ...]   # slowloris scenarios, one server at a time
    python -m bench.servers hot [--turns 3]      # latency and throughput, alternating turns

Servers: ``uvicorn`` (plain, as before issue 13), ``chatgate`` (``chatgate serve``:
uvicorn with ``chatgate.server.serving``'s read deadlines), ``granian`` (embedded,
Rust/hyper HTTP) and ``hypercorn``. Each runs the same app, built the way
``chatgate serve`` builds it, in front of the nginx mock (`bench.mock`). granian and
hypercorn are not dependencies: ``pip install granian hypercorn`` to measure them.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import importlib
import json
import os
import socket
import sys
import threading
import time
from dataclasses import replace
from typing import Any

from bench.load import sequential, wrk
from bench.mock import NginxMock
from bench.peers import GATEWAY_KEY, Process, chatgate_target, free_port, start_chatgate

SERVERS = ("uvicorn", "chatgate", "granian", "hypercorn")
# The probe uses a short deadline so each scenario takes seconds, not minutes.
PROBE_TIMEOUT = 3.0
HEAD = (
    b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\n"
    b"Authorization: Bearer " + GATEWAY_KEY.encode() + b"\r\n"
)


def _app_and_settings(config: str) -> tuple[Any, Any]:
    from chatgate.config import load_settings
    from chatgate.gateway import Gateway
    from chatgate.server.app import create_app

    settings = load_settings(config)
    settings.server.header_timeout = float(os.environ.get("BENCH_HEADER_TIMEOUT", "10"))
    settings.server.body_timeout = float(os.environ.get("BENCH_BODY_TIMEOUT", "60"))
    settings.server.max_connections = int(os.environ.get("BENCH_MAX_CONNECTIONS", "1024"))
    gateway = Gateway(settings)
    asyncio.run(gateway.start(lambda line: None))
    app = create_app(gateway)
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 20, 20)  # as chatgate serve does
    return app, settings.server


def serve(server: str, config: str, port: int) -> None:
    """Run the app under *server* (the child process `start` launches)."""
    app, settings = _app_and_settings(config)
    settings.port = port
    timeout = settings.header_timeout
    if server == "chatgate":
        from chatgate.server.serving import run

        run(app, settings)
    elif server == "uvicorn":
        import uvicorn

        uvicorn.run(app, port=port, log_level="warning", access_log=False, proxy_headers=False)
    elif server == "granian":
        import uvloop

        embed: Any = importlib.import_module("granian.server.embed")
        http: Any = importlib.import_module("granian.http")
        granian = embed.Server(
            app,
            port=port,
            interface="asgi",
            http="1",
            websockets=False,
            backlog=settings.max_connections,
            backpressure=settings.max_connections,
            http1_settings=http.HTTP1Settings(header_read_timeout=int(timeout * 1000)),
            log_level="warning",
        )
        uvloop.run(granian.serve())
    elif server == "hypercorn":
        import uvloop

        hyper: Any = importlib.import_module("hypercorn.asyncio")
        config_module: Any = importlib.import_module("hypercorn.config")
        cfg = config_module.Config()
        cfg.bind = [f"127.0.0.1:{port}"]
        cfg.keep_alive_timeout = timeout  # its idle timer also runs until a head is in
        cfg.backlog = settings.max_connections
        cfg.loglevel = "WARNING"
        uvloop.run(hyper.serve(app, cfg))
    else:
        raise SystemExit(f"unknown server {server}")


def start(server: str, mock_url: str, port: int, env: dict[str, str] | None = None) -> Process:
    """``start_chatgate``'s config and readiness check, under *server*."""
    # chatgate too goes through `serve` above, so that the probe can shorten its deadline;
    # that is the code path of ``chatgate serve`` (chatgate.server.serving.run).
    command = [sys.executable, "-m", "bench.servers", "run", server]
    return start_chatgate(mock_url, port, command=command, env=env, name=server)


# ---- slow clients -------------------------------------------------------------------


def _closed_after(sock: socket.socket, started: float, limit: float, drip: bytes) -> float | None:
    """Seconds from *started* until the server closes *sock* (None: still open at *limit*),
    sending *drip* once a second meanwhile."""
    sock.settimeout(0.2)
    next_drip = time.monotonic() + 1
    while time.monotonic() - started < limit:
        try:
            sock.recv(4096)  # end of stream, or a 408/400 answer that the close follows
            return time.monotonic() - started
        except TimeoutError:
            pass
        except OSError:
            return time.monotonic() - started
        if drip and time.monotonic() >= next_drip:
            next_drip += 1
            try:
                sock.sendall(drip)
            except OSError:
                return time.monotonic() - started
    return None


def _one(port: int, first: bytes, drip: bytes, limit: float) -> float | None:
    sock = socket.create_connection(("127.0.0.1", port))
    started = time.monotonic()
    if first:
        sock.sendall(first)
    try:
        return _closed_after(sock, started, limit, drip)
    finally:
        sock.close()


def _healthz(port: int) -> float:
    """Seconds for one ``GET /healthz`` on a new connection (inf: no 200 answer)."""
    started = time.perf_counter()
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
            answer = b""
            while chunk := sock.recv(65536):
                answer += chunk
    except OSError:
        return float("inf")
    return time.perf_counter() - started if answer.startswith(b"HTTP/1.1 200") else float("inf")


def _crowd(port: int, count: int, limit: float) -> dict[str, Any]:
    """*count* slow sockets (thirds: dripping head, silent, slow body) while a normal
    client calls /healthz; how the normal client fares and when the crowd is closed."""
    kinds = [
        (HEAD, b"X"),
        (b"", b""),
        (HEAD + b"Content-Type: application/json\r\nContent-Length: 100000\r\n\r\n{", b" "),
    ]
    results: list[tuple[int, float | None]] = []

    def worker(kind: int) -> None:
        first, drip = kinds[kind]
        try:
            results.append((kind, _one(port, first, drip, limit)))
        except OSError:
            results.append((kind, 0.0))  # refused at connect

    threads = [threading.Thread(target=worker, args=(i % 3,)) for i in range(count)]
    for thread in threads:
        thread.start()
    time.sleep(0.5)
    times: list[float] = []
    while any(t.is_alive() for t in threads):
        times.append(_healthz(port))
        time.sleep(0.1)
    for thread in threads:
        thread.join()
    served = sorted(x for x in times if x != float("inf"))
    by_kind: dict[str, Any] = {}
    for kind, name in enumerate(("drip_head", "silent", "slow_body")):
        closed = [c for k, c in results if k == kind]
        done = sorted(c for c in closed if c is not None)
        by_kind[name] = {
            "still_open": sum(c is None for c in closed),
            "closed_after_s": [round(done[0], 2), round(done[-1], 2)] if done else None,
        }
    return {
        "healthz_calls": len(times),
        "healthz_failed": len(times) - len(served),
        "healthz_ms_p50_max": [
            round(served[len(served) // 2] * 1000, 1),
            round(served[-1] * 1000, 1),
        ]
        if served
        else None,
        **by_kind,
    }


def probe(servers: list[str]) -> dict[str, Any]:
    """Every slow-client scenario against each server in turn."""
    mock = NginxMock(free_port())
    mock.start()
    env = {
        **os.environ,
        "BENCH_HEADER_TIMEOUT": str(PROBE_TIMEOUT),
        "BENCH_BODY_TIMEOUT": str(PROBE_TIMEOUT * 2),
    }
    limit = PROBE_TIMEOUT * 3 + 2
    report: dict[str, Any] = {"header_timeout_s": PROBE_TIMEOUT, "give_up_after_s": limit}
    try:
        for server in servers:
            port = free_port()
            proc = start(server, mock.url, port, env)
            try:
                slow_body = (
                    HEAD + b"Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{"
                )
                report[server] = {
                    "a_drip_head": _one(port, HEAD, b"X", limit),
                    "b_silent": _one(port, b"", b"", limit),
                    "c_slow_body": _one(port, slow_body, b" ", limit),
                    "d_crowd_210": _crowd(port, 210, limit),
                    "healthz_after_ms": round(_healthz(port) * 1000, 1),
                }
            finally:
                proc.stop()
            print(json.dumps({server: report[server]}), flush=True)
    finally:
        mock.stop()
    return report


# ---- hot path -----------------------------------------------------------------------


def hot(servers: list[str], turns: int, rounds: int, seconds: float) -> dict[str, Any]:
    """Sequential latency (servers take turns per request) and 64-connection throughput
    (servers take turns per run), *turns* times over."""
    mock = NginxMock(free_port())
    mock.start()
    procs: dict[str, Process] = {}
    ports: dict[str, int] = {}
    out: dict[str, dict[str, list[float]]] = {
        s: {"p50_ms": [], "p99_ms": [], "rps": [], "wrk_p50_ms": []} for s in servers
    }
    try:
        for server in servers:
            ports[server] = free_port()
            procs[server] = start(server, mock.url, ports[server])
        targets = {s: replace(chatgate_target(ports[s]), name=s) for s in servers}
        for turn in range(turns):
            order = servers if turn % 2 == 0 else servers[::-1]
            latency = sequential([targets[s] for s in order], rounds)
            for server in order:
                out[server]["p50_ms"].append(round(latency[server]["p50_ms"], 3))
                out[server]["p99_ms"].append(round(latency[server]["p99_ms"], 3))
            for server in order:
                load = wrk(targets[server], 64, seconds)
                out[server]["rps"].append(round(load["rps"]))
                out[server]["wrk_p50_ms"].append(round(load["p50_ms"], 2))
                if load["errors"]:
                    print(f"{server}: {load['errors']} errors", file=sys.stderr)
            print(json.dumps({"turn": turn, **out}), flush=True)
    finally:
        for proc in procs.values():
            proc.stop()
        mock.stop()
    return out


def main() -> None:
    """``probe``, ``hot``, or ``run SERVER --config X serve --port N`` (a child)."""
    parser = argparse.ArgumentParser(prog="bench.servers")
    parser.add_argument("mode", choices=["probe", "hot", "run"])
    parser.add_argument("servers", nargs="*", default=list(SERVERS))
    parser.add_argument("--turns", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=400)
    parser.add_argument("--seconds", type=float, default=5)
    parser.add_argument("--config")
    parser.add_argument("--port", type=int)
    args = parser.parse_intermixed_args()  # `run` gets "--config X serve --port N"
    if args.mode == "run":
        serve(args.servers[0], args.config, args.port)
    elif args.mode == "probe":
        probe(args.servers)
    else:
        hot(args.servers, args.turns, args.rounds, args.seconds)


if __name__ == "__main__":
    main()
