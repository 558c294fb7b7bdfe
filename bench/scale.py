"""The issue-17 rows of ``make bench``: open streams, features on, workers, the server.

Each row starts the chatgate processes it needs (the main run's gateways are paused
meanwhile) in front of the nginx mock, or, for open streams, `bench.streams`' mock.

* open streams: N streams held at once, one stamped chunk every 50 ms for 20 s; the
  per-chunk latency through chatgate minus the same client's directly to the mock;
  chatgate's peak RSS; errors (refused, cut, or short streams);
* features on: sequential p50 and c64 throughput with each feature set (`VARIANTS`),
  beside plain; a variant this tree cannot run (no ``/api/keys`` yet, no Redis) is
  reported as skipped with the reason;
* workers: c64 throughput with ``--workers 1`` and ``2``;
* the server: uvicorn (httptools, ``chatgate serve``) against granian, p50 at c1 and
  c64 throughput, set beside LiteLLM's c64 throughput from the same run.
"""

from __future__ import annotations

import http.client
import json
import os
import resource
import shutil
import socket
import subprocess
import sys
import time
from dataclasses import replace
from typing import Any

import uvloop

from bench import floor as bench_floor
from bench import servers, streams
from bench.load import PeakPss, Target, sequential, tree_cpu_seconds, tree_memory_mb, wrk
from bench.peers import GATEWAY_KEY, Process, chatgate_target, free_port, start_chatgate
from bench.report_scale import SERVER_LABELS

# Short c64 turns per feature variant, taken in turn with the others (`features`).
LOAD_TURNS = 5

CHILD = [sys.executable, "-m", "bench.scale", "child"]
# Feature sets: extra top-level TOML, extra [server] lines, the usage log, and the key
# a variant needs created (its limits) through POST /api/keys, or None for the config key.
VARIANTS: dict[str, dict[str, Any]] = {
    "plain": {"server": "metrics = false", "usage": False},
    # The same as plain, a second process: how far two identical gateways differ here.
    "plain twin": {"server": "metrics = false", "usage": False},
    "usage log": {"server": "metrics = false", "usage": True},
    "metrics": {"server": "metrics = true", "usage": False},
    "usage log + metrics": {"server": "metrics = true", "usage": True},
    "stored key": {"usage": True, "key": {"label": "bench-key"}},
    "limits in-process": {"usage": True, "key": {"label": "bench-rpm", "rpm": 10**9}},
    "limits in Redis": {
        "extra": 'redis_url = "redis://127.0.0.1:{redis_port}/0"',
        "usage": True,
        "key": {"label": "bench-redis", "rpm": 10**9, "tpm": 2 * 10**9},
        "needs": "redis-server",
    },
}


def stream_connection(url: str) -> str:
    """The TOML of the connection to `bench.streams`' mock."""
    return f"""
[[connections]]
name = "streams"
source = "custom"
base_url = "{url}/v1"
models = ["m"]
"""


def stream_rows(spec: str) -> list[tuple[int, float]]:
    """``BENCH_STREAMS`` read: ``1000,10000@1000`` is 1,000 streams at the issue's chunk
    every 50 ms, then 10,000 at one chunk a second (count, interval in seconds)."""
    rows = []
    for item in spec.split(","):
        count, _, every = item.strip().partition("@")
        rows.append((int(count), int(every) / 1000 if every else 0.05))
    return rows


def stream_capacity(wanted: int) -> tuple[int, int, str]:
    """How many streams this machine lets through chatgate, and in how many worker
    processes: two sockets a stream (client and upstream), under each process's hard
    open-files limit, one worker per core at most."""
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    if hard == resource.RLIM_INFINITY:
        return wanted, 1, ""
    fits = (hard - 512) // 2
    if fits >= wanted:
        return wanted, 1, ""
    workers = min(os.cpu_count() or 1, -(-wanted // fits))
    count = min(wanted, fits * workers)
    note = (
        f"one process's open-files hard limit ({hard}) holds {fits} streams, so "
        f"{workers} worker processes (`--workers {workers}`) served them"
    )
    if count < wanted:
        note += f", {count} in all"
    return count, workers, note


def open_streams(
    mock_url: str, wanted_rows: list[tuple[int, float]], seconds: float
) -> list[dict[str, Any]]:
    """For each (count, interval): direct, then through chatgate, the streams held for
    *seconds*, a chunk every *interval* seconds on each; a row that relays (under one
    chunk a second) through the minimal proxy too (`bench.floor`)."""
    streams.raise_fd_limit(resource.getrlimit(resource.RLIMIT_NOFILE)[1])
    rows = []
    for wanted, interval in wanted_rows:
        chunks = round(seconds / interval)
        count, processes, note = stream_capacity(wanted)
        mock = streams.Mock(free_port(), chunks, interval)
        try:
            print(
                f"bench: {count} open streams for {seconds:g} s, every {interval:g} s", flush=True
            )
            timeout = seconds + 60 + count / 200
            direct = uvloop.run(
                streams.hold(mock.port, "/v1/chat/completions", "m", None, count, timeout)
            )
            port = free_port()
            gateway = start_chatgate(
                mock_url,
                port,
                extra=stream_connection(mock.url),
                server=f"max_connections = {count + 64}",
                name="chatgate-streams",
                args=("--workers", str(processes)) if processes > 1 else (),
            )
            try:
                row = _held(gateway.pid, port, GATEWAY_KEY, count, timeout, chunks)
            finally:
                gateway.stop()
            floor = None
            if interval < 1.0 and processes == 1:
                port = free_port()
                proxy = bench_floor.start(
                    bench_floor.routes_for(mock_url, streams=mock.url + "/v1"), port
                )
                try:
                    floor = _held(proxy.pid, port, None, count, timeout, chunks)
                finally:
                    proxy.stop()
        finally:
            mock.stop()
        d = streams.summary(direct, count, chunks)
        c = row["summary"]
        rows.append(
            {
                "streams": count,
                "wanted": wanted,
                "workers": processes,
                "note": note,
                "seconds": seconds,
                "interval_ms": interval * 1000,
                "rss_idle_mb": row["rss_idle_mb"],
                "rss_peak_mb": row["rss_peak_mb"],
                "pss_peak_mb": row["pss_peak_mb"],
                "direct": d,
                "chatgate": c,
                "added_p50_ms": round(c["p50_ms"] - d["p50_ms"], 3),
                "added_p99_ms": round(c["p99_ms"] - d["p99_ms"], 3),
                # chatgate's CPU per chunk relayed: what caps streams × chunk rate.
                "cpu_us_per_chunk": row["cpu_us_per_chunk"],
                "errors": c["errors"],
                "floor": floor
                and {
                    "added_p50_ms": round(floor["summary"]["p50_ms"] - d["p50_ms"], 3),
                    "added_p99_ms": round(floor["summary"]["p99_ms"] - d["p99_ms"], 3),
                    "cpu_us_per_chunk": floor["cpu_us_per_chunk"],
                    "rss_peak_mb": floor["rss_peak_mb"],
                    "errors": floor["summary"]["errors"],
                },
            }
        )
    return rows


def _held(pid: int, port: int, key: str | None, count: int, timeout: float, chunks: int) -> Any:
    """*count* streams held through the server *pid* on *port*: what the clients saw,
    and the server's memory and CPU per chunk meanwhile."""
    idle = tree_memory_mb(pid)[0]
    cpu = tree_cpu_seconds(pid)
    with PeakPss(pid) as pss:
        tally = uvloop.run(
            streams.hold(port, "/v1/chat/completions", "streams/m", key, count, timeout)
        )
    peak = tree_memory_mb(pid)[1]
    cpu = tree_cpu_seconds(pid) - cpu
    summary = streams.summary(tally, count, chunks)
    return {
        "summary": summary,
        "rss_idle_mb": round(idle, 1),
        "rss_peak_mb": round(peak, 1),
        "pss_peak_mb": round(pss.peak, 1),
        "cpu_us_per_chunk": round(cpu * 1e6 / max(1, summary["chunks"]), 1),
    }


def _create_key(port: int, fields: dict[str, Any]) -> tuple[str | None, str]:
    """A stored key made through ``POST /api/keys``, or None and why not."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        headers = {"Authorization": f"Bearer {GATEWAY_KEY}", "Content-Type": "application/json"}
        conn.request("POST", "/api/keys", json.dumps(fields), headers)
        answer = conn.getresponse()
        body = answer.read()
    finally:
        conn.close()
    if answer.status not in (200, 201):
        said = body[:200].decode(errors="replace")
        return None, f"POST /api/keys answered {answer.status}: {said}"
    key = json.loads(body).get("key")
    return (key, "") if isinstance(key, str) else (None, "POST /api/keys gave no key")


def _redis(variant: dict[str, Any]) -> subprocess.Popen[bytes]:
    """A throwaway redis-server (no persistence) for *variant*, its port in the TOML."""
    port = free_port()
    argv = ["redis-server", "--port", str(port), "--save", "", "--appendonly", "no"]
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            time.sleep(0.05)
    variant["extra"] = variant["extra"].format(redis_port=port)
    return proc


def _start(
    mock_url: str, port: int, variant: dict[str, Any], args: tuple[str, ...] = ()
) -> Process:
    env = {**os.environ, "BENCH_USAGE_LOG": "1" if variant.get("usage", True) else "0"}
    return start_chatgate(
        mock_url,
        port,
        command=CHILD,
        env=env,
        extra=variant.get("extra", ""),
        server=variant.get("server", ""),
        args=args,
        name="chatgate-" + str(variant.get("name", "variant")).replace(" ", "-"),
    )


def features(
    direct: Target, mock_url: str, names: list[str], rounds: int, seconds: float
) -> dict[str, Any]:
    """Sequential p50 and c64 throughput for each feature set in *names*.

    Every variant's gateway runs at once, and the measurements take turns: the
    sequential requests round-robin over direct and every variant, and the c64 load
    runs `LOAD_TURNS` short turns per variant, interleaved, reporting the median. Run
    one after another, the variants differed by more than this machine's drift (±20%
    between minutes), which a feature's real cost is smaller than.
    """
    out: dict[str, Any] = {}
    running: dict[str, tuple[Process, Target, subprocess.Popen[bytes] | None]] = {}
    try:
        for name in names:
            variant = {**VARIANTS[name], "name": name}
            needs = variant.get("needs")
            if needs and shutil.which(needs) is None:
                out[name] = {"skipped": f"{needs} is not installed"}
                continue
            print(f"bench: features on: starting {name}", flush=True)
            port = free_port()
            redis = _redis(variant) if needs == "redis-server" else None
            try:
                gateway = _start(mock_url, port, variant)
            except RuntimeError as exc:
                out[name] = {"skipped": f"did not start: {str(exc)[-300:]}"}
                if redis is not None:
                    redis.terminate()
                continue
            target = replace(chatgate_target(port), name=name)
            running[name] = (gateway, target, redis)
            if "key" in variant:
                key, why = _create_key(port, variant["key"])
                if key is None:
                    out[name] = {"skipped": why}
                    continue
                running[name] = (gateway, replace(target, key=key), redis)
        measured = [name for name in running if name not in out]
        print(f"bench: features on: {len(measured)} variants, taking turns", flush=True)
        targets = [running[name][1] for name in measured]
        pair = sequential([direct, *targets], rounds)
        turns: dict[str, list[dict[str, float]]] = {name: [] for name in measured}
        # CPU seconds each gateway spent in its turns: a cost that a noisy neighbour
        # (steal time) moves far less than the requests a second it leaves.
        cpu = dict.fromkeys(measured, 0.0)
        for _ in range(LOAD_TURNS):
            for name in measured:
                pid = running[name][0].pid
                before = tree_cpu_seconds(pid)
                turns[name].append(wrk(running[name][1], 64, max(1.0, 2 * seconds / LOAD_TURNS)))
                cpu[name] += tree_cpu_seconds(pid) - before
        for name in measured:
            rps = sorted(turn["rps"] for turn in turns[name])
            served = sum(turn["requests"] for turn in turns[name])
            out[name] = {
                "p50_ms": pair[name]["p50_ms"],
                "added_p50_ms": pair[name]["p50_ms"] - pair["direct"]["p50_ms"],
                "rps_c64": rps[len(rps) // 2],
                "rps_c64_turns": rps,
                "cpu_us_per_request": cpu[name] / served * 1e6 if served else None,
                "errors": sum(turn["errors"] for turn in turns[name]),
            }
    finally:
        for gateway, _target, redis in running.values():
            gateway.stop()
            if redis is not None:
                redis.terminate()
                redis.wait(timeout=10)
    plain = out.get("plain", {})
    for figures in out.values():
        if "rps_c64" in figures and plain.get("rps_c64"):
            figures["vs_plain_p50_ms"] = figures["added_p50_ms"] - plain["added_p50_ms"]
            figures["vs_plain_rps"] = figures["rps_c64"] / plain["rps_c64"]
        if figures.get("cpu_us_per_request") and plain.get("cpu_us_per_request"):
            figures["vs_plain_cpu"] = figures["cpu_us_per_request"] / plain["cpu_us_per_request"]
    return out


def workers(mock_url: str, counts: tuple[int, ...], seconds: float) -> dict[str, Any]:
    """c64 throughput with ``--workers N`` for each N."""
    out: dict[str, Any] = {}
    for count in counts:
        print(f"bench: --workers {count}", flush=True)
        port = free_port()
        gateway = _start(mock_url, port, {"name": f"workers-{count}"}, ("--workers", str(count)))
        try:
            load = wrk(chatgate_target(port), 64, seconds)
            out[str(count)] = {
                "rps_c64": load["rps"],
                "p50_ms": load["p50_ms"],
                "errors": load["errors"],
            }
        finally:
            gateway.stop()
    return out


def server_choice(
    direct: Target, mock_url: str, rounds: int, seconds: float, litellm_rps: float | None
) -> dict[str, Any]:
    """uvicorn (``chatgate serve``) against granian: added p50 at c1, c64 throughput;
    and the same for the minimal proxy on chatgate's server and client (`bench.floor`),
    the floor under both goals."""
    out: dict[str, Any] = {}
    for name in ("chatgate", "granian", "floor"):
        label = SERVER_LABELS[name]
        print(f"bench: the server: {label}", flush=True)
        port = free_port()
        if name == "floor":
            proc = bench_floor.start(bench_floor.routes_for(mock_url), port)
        else:
            proc = servers.start(name, mock_url, port)
        try:
            target = replace(
                bench_floor.target(port) if name == "floor" else chatgate_target(port),
                name="chatgate",
            )
            pair = sequential([direct, target], rounds)
            load = wrk(target, 64, seconds)
        finally:
            proc.stop()
        out[label] = {
            "added_p50_ms": pair["chatgate"]["p50_ms"] - pair["direct"]["p50_ms"],
            "rps_c64": load["rps"],
            "errors": load["errors"],
            "x_litellm_c64": load["rps"] / litellm_rps if litellm_rps else None,
        }
    return out


def measure(
    quick: bool, direct: Target, mock_url: str, litellm_rps: float | None
) -> dict[str, Any]:
    """Every row, with the counts of a full run or (*quick*) a check of the harness;
    ``BENCH_STREAMS`` (e.g. ``1000,10000@1000``: `stream_rows`) and ``BENCH_FEATURES``
    (names of `VARIANTS`) choose what runs."""
    wanted = stream_rows(os.environ.get("BENCH_STREAMS", "1000,10000@1000"))
    names = os.environ.get("BENCH_FEATURES", ",".join(VARIANTS)).split(",")
    rounds, seconds = (40, 1.0) if quick else (1000, 8.0)
    return {
        "command": "make bench QUICK=1" if quick else "make bench",
        "open_streams": open_streams(
            mock_url, [(50, 0.05)] if quick else wanted, 2 if quick else 20
        ),
        "features": features(direct, mock_url, names, rounds, seconds),
        "workers": workers(mock_url, (1, 2), seconds),
        "server": server_choice(direct, mock_url, rounds, seconds, litellm_rps),
    }


def child(argv: list[str]) -> int:
    """``chatgate`` itself, with the usage log off when ``BENCH_USAGE_LOG=0`` (the store
    has no switch for it: this is the plain row's baseline)."""
    if os.environ.get("BENCH_USAGE_LOG") == "0":
        from chatgate.server import managed

        original = managed.ManagedConnections.__init__

        def without_usage(self: Any, gateway: Any, store: Any) -> None:
            original(self, gateway, store)
            gateway.observers.remove(self.usage)

        managed.ManagedConnections.__init__ = without_usage  # type: ignore[method-assign]
    from chatgate.cli import main

    return main(argv)


def rows(quick: bool) -> dict[str, Any]:
    """These rows alone, beside LiteLLM's c64 throughput measured first in the same run
    (``python -m bench.scale rows [--quick]``): bench/results/scale.json and the
    markdown section, printed."""
    from bench.mock import NginxMock
    from bench.peers import ROOT, litellm_target, start_litellm
    from bench.report_scale import scale_goals, scale_section

    mock = NginxMock(free_port(), 100)
    mock.start()
    try:
        url = f"{mock.url}/v1/chat/completions"
        direct = Target(
            "direct", url, "mock-model", f"{mock.url}/stream{url[len(mock.url) :]}", "mock-model"
        )
        port = free_port()
        litellm = start_litellm(mock.url, port)
        try:
            sequential([direct, litellm_target(port)], 5)  # its first requests are slow
            litellm_rps = wrk(litellm_target(port), 64, 2 if quick else 8)["rps"]
        finally:
            litellm.stop()
        out = measure(quick, direct, mock.url, litellm_rps)
    finally:
        mock.stop()
    out["command"] = f"python -m bench.scale rows{' --quick' if quick else ''}"
    out["litellm_rps_c64"] = litellm_rps
    result: dict[str, Any] = {"scale": out}
    result["goals"] = scale_goals(result)
    name = "scale-quick.json" if quick else "scale.json"
    (ROOT / "bench" / "results" / name).write_text(json.dumps(result, indent=2) + "\n")
    print("\n".join(scale_section(result)))
    print(json.dumps(result["goals"], indent=1))
    return result


if __name__ == "__main__":
    if sys.argv[1:2] == ["child"]:
        sys.exit(child(sys.argv[2:]))
    if sys.argv[1:2] == ["rows"]:
        rows("--quick" in sys.argv)
        sys.exit(0)
    raise SystemExit("usage: python -m bench.scale rows [--quick] | child --config X serve")
