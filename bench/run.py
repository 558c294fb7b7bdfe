"""``make bench``: chatgate against a direct call and LiteLLM, in one run.

Writes ``bench/results/latest.json`` and ``docs/performance.md`` (``--quick`` writes
``bench/results/quick.json`` only, with tiny counts, to prove the harness works).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from typing import Any

import uvloop

from bench import before, choices, engine, pipeline, report, report_engine, scale
from bench.load import Target, paused, sequential, streaming, tree_memory_mb, wrk
from bench.mock import NginxMock
from bench.peers import (
    ROOT,
    Process,
    chatgate_target,
    free_port,
    litellm_target,
    start_chatgate,
    start_litellm,
)
from bench.profile import profile_under_load

CONCURRENCY = (1, 16, 64)


def import_time(rounds: int) -> float:
    """Seconds ``import chatgate`` adds to a bare interpreter start (median)."""

    def run(code: str) -> float:
        started = time.perf_counter()
        subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)
        return time.perf_counter() - started

    bare = statistics.median(run("pass") for _ in range(rounds))
    return max(0.0, statistics.median(run("import chatgate") for _ in range(rounds)) - bare)


def measure(quick: bool) -> dict[str, Any]:
    """Run every measurement; return the raw figures."""
    seconds = 1 if quick else 8
    rounds = 40 if quick else 2000
    stream_rounds = 5 if quick else 100
    chunks = 100
    mock = NginxMock(free_port(), chunks)
    mock.start()
    processes: list[Process] = []
    out: dict[str, Any] = {"quick": quick, "chunks": chunks, "wrk_seconds": seconds}
    try:
        direct = Target(
            "direct",
            f"{mock.url}/v1/chat/completions",
            "mock-model",
            f"{mock.url}/stream/v1/chat/completions",
            "mock-model",
        )
        print("bench: starting chatgate and LiteLLM", flush=True)
        cg_port, ll_port = free_port(), free_port()
        chatgate = start_chatgate(mock.url, cg_port)
        processes.append(chatgate)
        litellm = start_litellm(mock.url, ll_port)
        processes.append(litellm)
        targets = [direct, chatgate_target(cg_port), litellm_target(ll_port)]
        gateways = {"chatgate": chatgate, "litellm": litellm}
        out["startup_s"] = {name: p.start_seconds for name, p in gateways.items()}
        out["memory_idle_mb"] = {name: tree_memory_mb(p.pid)[0] for name, p in gateways.items()}

        # Each gateway is measured alone (the other paused), taking turns with direct.
        out["sequential"], out["streaming"], out["throughput"] = {}, {}, {}
        with paused(chatgate.pid, litellm.pid):
            print("bench: the mock alone", flush=True)
            out["throughput"]["direct"] = [wrk(direct, c, seconds) for c in CONCURRENCY]
        for target in targets[1:]:
            other = gateways["litellm" if target.name == "chatgate" else "chatgate"]
            with paused(other.pid):
                print(f"bench: {target.name}", flush=True)
                pair = sequential([direct, target], rounds)
                out["sequential"][target.name] = pair[target.name]
                out["sequential"].setdefault("direct", pair["direct"])
                out["sequential"][f"direct_with_{target.name}"] = pair["direct"]
                pair = streaming([direct, target], stream_rounds)
                out["streaming"][target.name] = pair[target.name]
                out["streaming"].setdefault("direct", pair["direct"])
                out["throughput"][target.name] = [wrk(target, c, seconds) for c in CONCURRENCY]
        out["memory_peak_mb"] = {name: tree_memory_mb(p.pid)[1] for name, p in gateways.items()}
        with paused(chatgate.pid, litellm.pid):
            print("bench: upstream HTTP clients and JSON libraries", flush=True)
            out["choices"] = {
                "http_clients": choices.http_clients(direct.url, 100 if quick else 2000),
                "json": choices.json_libraries(200 if quick else 20000),
            }
            out["pipeline_us"] = uvloop.run(pipeline.breakdown(mock.url, 200 if quick else 3000))
        rev = os.environ.get("BENCH_BEFORE")
        if rev:
            print(f"bench: chatgate at {rev}, beside this one", flush=True)
            earlier, then = before.start(mock.url, rev)
            processes.append(earlier)
            with paused(litellm.pid):
                now = targets[1]
                figures = before.measure(direct, now, then, rounds, seconds)
            out["before_after"] = {"before": then.name, "figures": figures}
            earlier.stop()
            processes.remove(earlier)
        with paused(chatgate.pid, litellm.pid):  # the issue-17 rows start their own
            litellm_rps = out["throughput"]["litellm"][-1]["rps"]
            out["scale"] = scale.measure(quick, direct, mock.url, litellm_rps)
        if not quick:
            print("bench: profiling chatgate at 64 connections", flush=True)
            with paused(litellm.pid):
                out["profile"] = profile_under_load(chatgate.pid, targets[1], 64, 5)
    finally:
        for process in processes:
            process.stop()
        mock.stop()
    out["import_s"] = import_time(3 if quick else 10)
    out["engine"] = engine.measure(quick)
    return out


def main(argv: list[str] | None = None) -> int:
    """Measure, then write the JSON and (full runs) the markdown report."""
    parser = argparse.ArgumentParser(prog="bench")
    parser.add_argument("--quick", action="store_true", help="tiny counts: checks the harness")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    results = ROOT / "bench" / "results"
    # The committed figures, read before this run replaces them, to set beside its own.
    before = report_engine.previous(results / "latest.json")
    raw = measure(args.quick)
    raw["previous"] = before
    result = report.summarise(raw)
    result["wall_s"] = time.perf_counter() - started
    results.mkdir(parents=True, exist_ok=True)
    name = "quick.json" if args.quick else "latest.json"
    (results / name).write_text(json.dumps(result, indent=2) + "\n")
    markdown = report.markdown(result)
    if not args.quick:
        (ROOT / "docs" / "performance.md").write_text(markdown)
    print(markdown)
    print(f"bench: wrote bench/results/{name} in {result['wall_s']:.0f} s")
    failed = [t for t in result["throughput_errors"].values() if t]
    if failed:
        print("bench: some requests failed during the load runs", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
